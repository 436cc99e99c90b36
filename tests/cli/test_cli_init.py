"""``policy-engine init``: a starter project passing ``check`` and ``test``; it never overwrites."""

from __future__ import annotations

import io
import json

import pytest

from policy_engine.cli import main
from policy_engine.cli.init import starter_files


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


def test_a_fresh_project_passes_check_strictly_and_its_own_tests(tmp_path, monkeypatch):
    """`init DIR` writes the starter project; in DIR, `check --strict` (no warning either) and
    `test` both exit 0 with the defaults every command uses."""
    code, out, _ = run(["init", str(tmp_path / "proj")])
    assert code == 0
    assert f"next: cd {tmp_path / 'proj'} && policy-engine check && policy-engine test" in out
    monkeypatch.chdir(tmp_path / "proj")
    code, out, _ = run(["check", "--strict"])
    assert code == 0, out
    assert "0 warning(s)" in out
    code, out, _ = run(["test", "--json"])
    result = json.loads(out)
    assert code == 0, out
    assert result["failed"] == 0
    assert result["passed"] == len(result["cases"]) >= 4
    assert {case["got"]["action"] for case in result["cases"]} == {"accepted", "rejected", "logged"}


def test_it_writes_policies_schemas_tests_and_the_format_schema(tmp_path):
    """The files named in the docs are written, and nothing else."""
    code, _, _ = run(["init", str(tmp_path)])
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert code == 0
    assert written == sorted(starter_files())
    assert written == [
        "policies/shop.yaml",
        "policy.schema.json",
        "schemas/shop.OrderPlaced/v1.json",
        "schemas/shop.OrderPlaced/v2.json",
        "tests/policies/payloads/order-without-currency.json",
        "tests/policies/shop.test.yaml",
    ]


def test_the_policy_file_points_editors_at_the_format_schema_written_beside_it(tmp_path):
    """The policy file's first line is yaml-language-server's $schema comment, its path leads
    to the written policy.schema.json, and that file is what `policy-engine schema` prints."""
    run(["init", str(tmp_path)])
    policy = tmp_path / "policies" / "shop.yaml"
    first = policy.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    target = (policy.parent / first[len(prefix) :]).resolve()
    assert target == (tmp_path / "policy.schema.json").resolve()
    _, schema, _ = run(["schema"])
    assert json.loads(target.read_text()) == json.loads(schema)


def test_the_current_directory_is_the_default(tmp_path, monkeypatch):
    """With no DIR the project is written into the current directory."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["init"])
    assert code == 0
    assert (tmp_path / "policies" / "shop.yaml").is_file()
    assert "next: policy-engine check && policy-engine test" in out


@pytest.mark.parametrize("existing", ["policies/shop.yaml", "tests/policies/shop.test.yaml"])
def test_an_existing_file_stops_it_before_anything_is_written(tmp_path, existing):
    """If any file it would write exists, init exits 2, names it, and writes nothing at all."""
    (tmp_path / existing).parent.mkdir(parents=True)
    (tmp_path / existing).write_text("mine\n")
    code, out, err = run(["init", str(tmp_path)])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert code == 2
    assert out == ""
    assert f"{tmp_path / existing} already exists" in err
    assert "nothing written" in err
    assert files == [tmp_path / existing]
    assert (tmp_path / existing).read_text() == "mine\n"


def test_a_file_where_the_directory_should_be_is_a_usage_error(tmp_path):
    """DIR naming an existing file exits 2."""
    (tmp_path / "f").write_text("")
    code, _, err = run(["init", str(tmp_path / "f")])
    assert code == 2
    assert "is not a directory" in err


def test_json_lists_the_created_files(tmp_path):
    """`init --json` prints {dir, created}."""
    code, out, _ = run(["init", str(tmp_path), "--json"])
    result = json.loads(out)
    assert code == 0
    assert result["dir"] == str(tmp_path)
    assert sorted(result["created"]) == sorted(str(tmp_path / name) for name in starter_files())

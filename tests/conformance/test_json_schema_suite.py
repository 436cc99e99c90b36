"""The official JSON Schema Test Suite through ``PolicyEngine.evaluate`` on both backends (SPEC §4).

Every case of ``tests/draft7``, ``tests/draft2019-09`` and ``tests/draft2020-12`` (required and
``optional/``) of the suite in ``../shared/jsonschema-test-suite`` (beside the repository; its
``ORIGIN.md`` says what it is) is evaluated under a strict policy: a valid instance must be
``accepted``, an invalid one ``rejected``. Each group's schema is served by an in-memory
``SchemaSource`` under its own name, with the suite's ``remotes/`` as the document's registry
``references`` (so ``refRemote`` runs, and nothing is fetched), and compiled once per backend.

Where a backend's verdict is not the suite's, the case must be listed in the table of
``docs/validation.md`` with both backends' verdicts and the reason; a test keeps that table equal
to what the run finds. A clone without ``../shared`` skips these tests, unless
``POLICY_ENGINE_REQUIRE_SUITE=1`` (CI) makes the missing suite a failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from policy_engine import Action, Mode, PolicyEngine, Settings
from policy_engine.errors import SchemaNotFoundError
from policy_engine.settings import BACKENDS
from policy_engine.sources import SchemaDocument

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT.parent / "shared" / "jsonschema-test-suite"
DIFFERENCES = ROOT / "docs" / "validation.md"
REQUIRE_SUITE = "POLICY_ENGINE_REQUIRE_SUITE"
#: The drafts run, and the meta-schema a group's schema is read in when it names none.
DRAFTS: Mapping[str, str] = {
    "draft7": "http://json-schema.org/draft-07/schema#",
    "draft2019-09": "https://json-schema.org/draft/2019-09/schema",
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
}
#: The suite serves ``remotes/`` under this base URL; here they are registry references.
REMOTES_URL = "http://localhost:1234/"
#: Remote folders left out: the next JSON Schema release, whose meta-schema neither backend
#: knows and which no test of the drafts above references.
UNKNOWN_DIALECT_FOLDERS = frozenset({"v1"})
#: Verdicts: what the engine did with the instance under a strict policy.
VERDICTS = {Action.ACCEPTED: "valid", Action.REJECTED: "invalid", Action.SKIPPED: "unusable"}
TABLE_START = "<!-- conformance-differences:start -->"
TABLE_END = "<!-- conformance-differences:end -->"


def locate_suite(path: Path, environ: Mapping[str, str]) -> Path:
    """``path`` if the suite is there; else skip, or fail when ``POLICY_ENGINE_REQUIRE_SUITE=1``."""
    if (path / "tests").is_dir() and (path / "remotes").is_dir():
        return path
    reason = (
        f"the JSON Schema Test Suite is not at {path} (it lives in the project's shared/ folder, "
        "beside the repository)"
    )
    if environ.get(REQUIRE_SUITE, "") == "1":
        pytest.fail(f"{reason}, and {REQUIRE_SUITE}=1 requires it", pytrace=False)
    pytest.skip(f"{reason}; set {REQUIRE_SUITE}=1 to make this a failure")


@dataclass(frozen=True, slots=True)
class Case:
    """One test of the suite: an instance, the group's schema, and whether it is valid."""

    draft: str
    file: str
    group: str
    description: str
    schema_name: str
    data: Any
    valid: bool

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(draft, file, group, case): how ``docs/validation.md`` names the case."""
        return (self.draft, self.file, self.group, self.description)

    @property
    def required(self) -> bool:
        """Whether the case is in the required suite (not under ``optional/``)."""
        return not self.file.startswith("optional/")

    @property
    def expected(self) -> str:
        """The verdict the suite asks for."""
        return "valid" if self.valid else "invalid"


def _schema_name(draft: str, file: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", file.removesuffix(".json"))
    return f"suite.{draft.replace('-', '_')}.{stem}.g{index}"


def load_suite(suite: Path) -> tuple[list[Case], dict[str, dict[str, Any]]]:
    """Every case, and per draft the schemas by name (``$schema`` added where a group has none)."""
    cases: list[Case] = []
    schemas: dict[str, dict[str, Any]] = {draft: {} for draft in DRAFTS}
    for draft, dialect in DRAFTS.items():
        base = suite / "tests" / draft
        for path in sorted(base.rglob("*.json")):
            file = path.relative_to(base).as_posix()
            for index, group in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                name = _schema_name(draft, file, index)
                schema = group["schema"]
                if isinstance(schema, dict) and "$schema" not in schema:
                    schema = {"$schema": dialect, **schema}
                schemas[draft][name] = schema
                cases.extend(
                    Case(
                        draft,
                        file,
                        group["description"],
                        t["description"],
                        name,
                        t["data"],
                        t["valid"],
                    )
                    for t in group["tests"]
                )
    return cases, schemas


def load_remotes(suite: Path, draft: str) -> dict[str, Any]:
    """The suite's remote documents a test of ``draft`` may reference, by URL.

    The shared ones and ``draft``'s own folder, read in ``draft``; other drafts' documents only
    where they name their dialect in ``$schema`` (the cross-draft tests reference those), so no
    document is read in a dialect it was not written for.
    """
    root = suite / "remotes"
    remotes: dict[str, Any] = {}
    for path in sorted(root.rglob("*.json")):
        relative = path.relative_to(root)
        folder = relative.parts[0] if len(relative.parts) > 1 else ""
        if folder in UNKNOWN_DIALECT_FOLDERS:
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        foreign = folder.startswith("draft") and folder != draft
        if foreign and not (isinstance(document, dict) and "$schema" in document):
            continue
        remotes[REMOTES_URL + relative.as_posix()] = document
    return remotes


class SuiteSchemaSource:
    """An in-memory ``SchemaSource``: each group's schema under its name, track ``v1``.

    Every document carries the draft's remotes as registry ``references``: the engine resolves
    ``$ref``s to ``http://localhost:1234/...`` with them, and never fetches.
    """

    description = "json-schema-test-suite"

    def __init__(self, schemas: Mapping[str, Any], references: Mapping[str, Any]) -> None:
        self._schemas = dict(schemas)
        self._references = MappingProxyType(dict(references))

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """The group's schema, with the remotes as references."""
        if track != "v1" or schema not in self._schemas:
            raise SchemaNotFoundError(f"no group {schema} {track}", schema=schema, track=track)
        return SchemaDocument(schema, track, "1", self._schemas[schema], self._references)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Every group's name, each with track ``v1``."""
        return {name: ("v1",) for name in self._schemas}

    def close(self) -> None:
        """Nothing to release."""


def run_suite(suite: Path, policies: Path) -> dict[str, dict[tuple[str, str, str, str], str]]:
    """Per backend, the verdict of every case, evaluated under a strict policy."""
    cases, schemas = load_suite(suite)
    verdicts: dict[str, dict[tuple[str, str, str, str], str]] = {}
    for backend in BACKENDS:
        found = verdicts[backend] = {}
        settings = Settings(validator_backend=backend, prefer_track="v1")
        for draft in DRAFTS:
            source = SuiteSchemaSource(schemas[draft], load_remotes(suite, draft))
            with PolicyEngine(policies, source, settings=settings, metrics=False) as engine:
                for case in (c for c in cases if c.draft == draft):
                    decision = engine.evaluate(case.schema_name, case.data, track="v1")
                    assert decision.mode is Mode.STRICT, decision.reason
                    found[case.key] = VERDICTS[decision.action]
    return verdicts


def read_differences(text: str) -> dict[tuple[str, str, str, str], tuple[str, str, str]]:
    """The table of ``docs/validation.md``: case -> (expected, rust, python) verdicts."""
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    rows: dict[tuple[str, str, str, str], tuple[str, str, str]] = {}
    for line in text[start:end].splitlines()[1:]:
        if not line.startswith("| ") or line.startswith(("| draft |", "|---")):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        draft, file, group, case, expected, rust, python = (c.strip("`") for c in cells[:7])
        rows[(draft, file, group, case)] = (expected, rust, python)
    return rows


def _cases() -> Iterator[Any]:
    if not SUITE.is_dir():
        # One placeholder, so the run shows the ``suite`` fixture's reason, not an empty set.
        yield pytest.param(None, None, id="suite-missing")
        return
    cases, _ = load_suite(SUITE)
    for case in cases:
        for backend in BACKENDS:
            yield pytest.param(
                backend,
                case,
                id=f"{backend}:{case.draft}/{case.file}|{case.group}|{case.description}",
            )


@pytest.fixture(scope="module")
def suite() -> Path:
    """The suite's folder, or a skip (a failure with ``POLICY_ENGINE_REQUIRE_SUITE=1``)."""
    return locate_suite(SUITE, os.environ)


@pytest.fixture(scope="module")
def verdicts(
    suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[tuple[str, str, str, str], str]]:
    """Every case's verdict on both backends, under a policy that makes every group strict."""
    policies = tmp_path_factory.mktemp("conformance-policies")
    (policies / "strict.yaml").write_text(
        'version: 1\nschemas:\n  "suite.*":\n    mode: strict\n', encoding="utf-8"
    )
    return run_suite(suite, policies)


@pytest.fixture(scope="module")
def cases(suite: Path) -> list[Case]:
    """Every case of the suite."""
    return load_suite(suite)[0]


@pytest.fixture(scope="module")
def documented() -> dict[tuple[str, str, str, str], tuple[str, str, str]]:
    """The differences ``docs/validation.md`` lists."""
    return read_differences(DIFFERENCES.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("backend", "case"), list(_cases()))
def test_case(
    suite: Path,
    backend: str,
    case: Case,
    verdicts: dict[str, dict[tuple[str, str, str, str], str]],
    documented: dict[tuple[str, str, str, str], tuple[str, str, str]],
) -> None:
    """The backend gives the suite's verdict, or the verdict docs/validation.md lists for it."""
    got = verdicts[backend][case.key]
    if case.key in documented:
        _, rust, python = documented[case.key]
        assert got == {"rust": rust, "python": python}[backend]
    else:
        assert got == case.expected


def test_documented_differences_are_what_the_run_finds(
    cases: list[Case],
    verdicts: dict[str, dict[tuple[str, str, str, str], str]],
    documented: dict[tuple[str, str, str, str], tuple[str, str, str]],
) -> None:
    """docs/validation.md lists exactly the cases where a backend departs from the suite."""
    found = {
        case.key: (case.expected, verdicts["rust"][case.key], verdicts["python"][case.key])
        for case in cases
        if {verdicts["rust"][case.key], verdicts["python"][case.key]} != {case.expected}
    }
    assert found == documented


def test_default_backend_departs_only_on_asserted_formats_in_the_required_suite(
    cases: list[Case], verdicts: dict[str, dict[tuple[str, str, str, str], str]]
) -> None:
    """jsonschema-rs is right on every required case but 2019-09/2020-12's format annotations."""
    wrong = [c for c in cases if c.required and verdicts["rust"][c.key] != c.expected]
    assert wrong  # formats are asserted on purpose, so the annotation-only cases differ
    assert all(
        c.draft in ("draft2019-09", "draft2020-12") and c.file == "format.json" and c.valid
        for c in wrong
    ), [c.key for c in wrong]


def test_backends_agree_on_every_required_case(
    cases: list[Case], verdicts: dict[str, dict[tuple[str, str, str, str], str]]
) -> None:
    """Both backends give the same verdict on every case of the required suite."""
    differ = [
        c.key for c in cases if c.required and verdicts["rust"][c.key] != verdicts["python"][c.key]
    ]
    assert differ == []


@pytest.mark.parametrize("draft", list(DRAFTS))
def test_backends_agree_on_99_percent_of_optional_cases(
    draft: str, cases: list[Case], verdicts: dict[str, dict[tuple[str, str, str, str], str]]
) -> None:
    """Per draft, both backends give the same verdict on at least 99 % of the optional cases."""
    optional = [c for c in cases if c.draft == draft and not c.required]
    agree = sum(verdicts["rust"][c.key] == verdicts["python"][c.key] for c in optional)
    assert optional
    assert agree >= 0.99 * len(optional), f"{agree} of {len(optional)}"


def test_remotes_are_registered_without_unknown_dialects(suite: Path) -> None:
    """Every draft gets the shared remotes and its own folder, and no document of ``v1/``."""
    for draft in DRAFTS:
        remotes = load_remotes(suite, draft)
        assert REMOTES_URL + "integer.json" in remotes
        assert any(url.startswith(f"{REMOTES_URL}{draft}/") for url in remotes)
        assert not any(url.startswith(f"{REMOTES_URL}v1/") for url in remotes)


def test_missing_suite_is_skipped_with_a_reason(tmp_path: Path) -> None:
    """Without the suite and without the CI switch, the conformance tests skip and say why."""
    with pytest.raises(pytest.skip.Exception, match="JSON Schema Test Suite is not at"):
        locate_suite(tmp_path / "nowhere", {})


def test_missing_suite_fails_when_ci_requires_it(tmp_path: Path) -> None:
    """With ``POLICY_ENGINE_REQUIRE_SUITE=1`` a missing suite is a failure, not a skip."""
    with pytest.raises(pytest.fail.Exception, match="POLICY_ENGINE_REQUIRE_SUITE=1"):
        locate_suite(tmp_path / "nowhere", {REQUIRE_SUITE: "1"})

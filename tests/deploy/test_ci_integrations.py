"""The CI integrations (docs/ci.md) call commands that exist, with flags they take, and work.

- ``.pre-commit-hooks.yaml``: the hooks' entries are commands of the CLI, and run green in a
  fresh ``init`` project;
- ``action.yml``: its steps are run here for real, offline, as a runner would run them on a
  pull request: in a clone whose ``origin`` is a local bare repository, with the GitHub API
  replaced by a server on loopback that records the plan comment;
- ``deploy/check.Dockerfile``: its entrypoint and default command are ``policy-engine check``,
  and ``.ci/run`` lints it with hadolint (the image itself is built where Docker runs).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / ".pre-commit-hooks.yaml"
ACTION = ROOT / "action.yml"
CHECK_DOCKERFILE = ROOT / "deploy" / "check.Dockerfile"
BIN = Path(sys.executable).parent
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stdout)."""
    out = io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=io.StringIO(), environ={})
    return code, out.getvalue()


def parses(command: list[str]) -> None:
    """Fail unless the CLI's parser accepts ``command`` (the words after ``policy-engine``)."""
    try:
        build_parser().parse_args(command)
    except SystemExit as exc:
        pytest.fail(f"policy-engine {shlex.join(command)} is not a valid command line ({exc})")


# ---------------------------------------------------------------- pre-commit


def hooks() -> dict[str, dict[str, Any]]:
    """The hooks of .pre-commit-hooks.yaml by id."""
    return {hook["id"]: hook for hook in yaml.safe_load(HOOKS.read_text(encoding="utf-8"))}


def test_the_pre_commit_hooks_are_check_and_test_with_what_pre_commit_requires():
    """Two hooks, each with the keys pre-commit requires, run once per commit on the whole
    project (not per file), when a policy, schema (or policy test) changes."""
    found = hooks()
    assert set(found) == {"policy-engine-check", "policy-engine-test"}
    for hook in found.values():
        assert {"id", "name", "entry", "language"} <= hook.keys()
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False
        parses(shlex.split(hook["entry"])[1:])
    check, test = (
        re.compile(found["policy-engine-check"]["files"]),
        re.compile(found["policy-engine-test"]["files"]),
    )
    assert check.search("policies/payments.yaml")
    assert check.search("schemas/shop.OrderPlaced/v2.json")
    assert not check.search("README.md")
    assert test.search("tests/policies/shop.test.yaml")
    assert test.search("policies/payments.yaml")


def test_the_pre_commit_hooks_pass_in_a_fresh_project(tmp_path, monkeypatch):
    """Run as pre-commit runs them (the entry, no file names) in an `init` project: both pass."""
    assert run_cli(["init", str(tmp_path)])[0] == 0
    monkeypatch.chdir(tmp_path)
    for hook in hooks().values():
        code, out = run_cli(shlex.split(hook["entry"])[1:])
        assert code == 0, out


# ---------------------------------------------------------------- the action, as data


def action() -> dict[str, Any]:
    """action.yml as data."""
    document: dict[str, Any] = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    return document


def test_the_action_is_a_composite_action_whose_scripts_take_values_only_through_env():
    """A composite action: every `run` step names its shell and holds no `${{ }}` expression
    (values come through `env:`, so an input or branch name cannot inject shell code); every
    input it reads is declared; every step output it exports comes from a step it has."""
    document = action()
    steps = document["runs"]["steps"]
    assert document["runs"]["using"] == "composite"
    assert {"name", "description", "inputs", "runs"} <= document.keys()
    declared = set(document["inputs"])
    ids = {step.get("id") for step in steps}
    for step in steps:
        if "run" in step:
            assert step["shell"] == "bash"
            assert "${{" not in step["run"], step["name"]
        for value in (step.get("env") or {}).values():
            for expression in EXPRESSION.findall(str(value)):
                if expression.startswith("inputs."):
                    assert expression.removeprefix("inputs.") in declared
                if expression.startswith("steps."):
                    assert expression.split(".")[1] in ids
    for output in document["outputs"].values():
        assert EXPRESSION.fullmatch(output["value"]).group(1).split(".")[1] in ids  # type: ignore[union-attr]


def test_the_action_calls_check_with_annotations_plan_with_markdown_and_test_with_junit():
    """The policy-engine command lines in the action's steps parse, with the flags the docs
    promise: check --format github, plan --base --format github, test --junit."""
    commands = []
    for step in action()["runs"]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            words = line.strip().split()
            if words[:1] == ["policy-engine"] and words[1:2] != ["--version"]:
                # Shell words as a runner would expand them, with sample values.
                expanded = (
                    line.replace('"${flags[@]}"', "--strict --base origin/main")
                    .replace('"${paths[@]}"', "tests/policies")
                    .replace('> "$plan"', "")
                )
                for name, value in {"POLICIES": "policies", "REGISTRY": "schemas", "BASE":
                                    "origin/main", "junit": "report.xml"}.items():  # fmt: skip
                    expanded = expanded.replace(f'"${name}"', value)
                commands.append(shlex.split(expanded)[1:])
    for command in commands:
        parses(command)
    by_name = {command[0]: command for command in commands}
    assert set(by_name) == {"check", "plan", "test"}
    assert by_name["check"][1:3] == ["--format", "github"]
    assert "--base" in by_name["plan"]
    assert by_name["plan"][by_name["plan"].index("--format") + 1] == "github"
    assert "--junit" in by_name["test"]


# ---------------------------------------------------------------- the action, run


class FakeGitHub(ThreadingHTTPServer):
    """The issue-comments part of the GitHub REST API, in memory, recording every request."""

    def __init__(self, refuse: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _GitHubHandler)
        self.comments: dict[int, str] = {}
        self.requests: list[tuple[str, str, dict[str, Any] | None, str]] = []
        self.refuse = refuse  # answer POST and PATCH with this status
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _GitHubHandler(BaseHTTPRequestHandler):
    server: FakeGitHub

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization") or ""
        self.server.requests.append((self.command, self.path, body, auth))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.path.startswith("/repos/o/r/issues/7/comments"):
            listed = [{"id": i, "body": b} for i, b in self.server.comments.items()]
            self._answer(200, listed)
        else:
            self._answer(404, {"message": "Not Found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.server.refuse:
            self._answer(self.server.refuse, {"message": "Resource not accessible by integration"})
            return
        number = len(self.server.comments) + 100
        self.server.comments[number] = (body or {})["body"]
        self._answer(201, {"id": number})

    def do_PATCH(self) -> None:
        body = self._record()
        number = int(self.path.rsplit("/", 1)[1])
        self.server.comments[number] = (body or {})["body"]
        self._answer(200, {"id": number})

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on loopback."""
    server = FakeGitHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (an identity of its own, no global configuration)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A clone on a pull-request branch: main has an `init` project (pushed to a bare
    `origin`); the branch raises the v2 canary from 10 to 50 % and names a schema the registry
    does not have. The clone has not fetched main's tip separately (the action does)."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    assert run_cli(["init", str(work)])[0] == 0
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "start")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    git(work, "checkout", "-q", "-b", "raise-canary")
    policy = work / "policies" / "shop.yaml"
    policy.write_text(policy.read_text().replace("canary: 10  #", "canary: 50  #"))
    (work / "policies" / "extra.yaml").write_text(
        "version: 1\nschemas:\n  shop.Unknown:\n    mode: warn\n"
    )
    git(work, "commit", "-q", "-am", "raise the canary")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "a rule for a schema to come")
    git(work, "update-ref", "-d", "refs/remotes/origin/main")
    return work


def expand(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``${{ expression }}`` replaced by its value, empty when unknown (as
    GitHub evaluates a missing property)."""
    return EXPRESSION.sub(lambda match: values.get(match.group(1), ""), text)


def run_action(
    work: Path, github: FakeGitHub, inputs: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Run action.yml's steps in ``work`` as a runner would on pull request 7 into main.

    `uses:` steps and the install step are left out (policy-engine and Python are this test's
    own, first on PATH); every other step runs with bash -eo pipefail, its `env:` expressions
    evaluated like GitHub's. Returns, per step name, its exit code, output and outputs.
    """
    document = action()
    runner = work.parent / "runner"
    runner.mkdir(exist_ok=True)
    summary = runner / "summary.md"
    values = {
        f"inputs.{name}": str(spec.get("default", "")) for name, spec in document["inputs"].items()
    }
    values |= {f"inputs.{name}": value for name, value in (inputs or {}).items()}
    values |= {
        "github.token": "t0ken",
        "github.base_ref": "main",
        "github.action_path": str(ROOT),
        "github.event.pull_request.number": "7",
    }
    values = {key: expand(value, values) for key, value in values.items()}
    results: dict[str, dict[str, Any]] = {}
    for step in document["runs"]["steps"]:
        if "run" not in step or step["name"] == "Install policy-engine":
            continue
        output = runner / f"output-{len(results)}"
        output.write_text("")
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(work.parent),
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "RUNNER_TEMP": str(runner),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_API_URL": github.url,
            "GITHUB_REPOSITORY": "o/r",
        }
        for name, value in (step.get("env") or {}).items():
            env[name] = expand(str(value), values)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=work, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        outputs = dict(
            line.split("=", 1) for line in output.read_text().splitlines() if "=" in line
        )
        if "id" in step:
            values |= {f"steps.{step['id']}.outputs.{k}": v for k, v in outputs.items()}
        results[step["name"]] = {
            "code": done.returncode,
            "out": done.stdout + done.stderr,
            "outputs": outputs,
        }
        if done.returncode != 0:
            break
    results["(summary)"] = {"out": summary.read_text() if summary.exists() else ""}
    return results


def test_on_a_pull_request_the_action_annotates_plans_comments_and_tests(pull_request, github):
    """Run on a pull request: check prints annotations (the unknown schema, as a warning), the
    plan against the fetched base branch shows the canary change in the summary and in a PR
    comment posted with the workflow token, and the policy tests run with a JUnit report."""
    steps = run_action(pull_request, github)
    check = steps["Check the policy files"]
    plan = steps["Plan the change against the base revision"]
    tests = steps["Run the policy tests"]
    assert all(step.get("code", 0) == 0 for step in steps.values()), steps
    assert steps["Find the base revision"]["outputs"] == {"ref": "origin/main"}
    assert "::warning file=policies/extra.yaml,line=3,col=3::schema 'shop.Unknown'" in check["out"]
    assert "### policy-engine plan: `origin/main" in plan["out"]
    assert "| `shop.OrderPlaced` | v2 | canary |" in plan["out"]
    assert "| `shop.OrderPlaced` | v2 | canary |" in steps["(summary)"]["out"]
    (comment,) = github.comments.values()
    assert comment.startswith("<!-- policy-engine plan -->\n### policy-engine plan")
    assert "| `shop.OrderPlaced` | v2 | canary |" in comment
    assert {auth for *_, auth in github.requests} == {"Bearer t0ken"}
    junit = Path(tests["outputs"]["junit"])
    assert junit.read_text().count("<testcase ") == 4
    assert "4 passed, 0 failed" in tests["out"]


def test_a_second_run_updates_its_comment_instead_of_adding_one(pull_request, github):
    """The comment carries a marker: the next push's run edits it (PATCH), one comment stays."""
    run_action(pull_request, github)
    run_action(pull_request, github)
    methods = [method for method, *_ in github.requests]
    assert methods.count("POST") == 1
    assert methods.count("PATCH") == 1
    assert len(github.comments) == 1


def test_a_read_only_token_warns_and_does_not_fail_the_job(pull_request, github):
    """A fork's pull request gets a read-only token: posting answers 403, the step warns and
    passes (the plan is still in the summary)."""
    github.refuse = 403
    steps = run_action(pull_request, github)
    step = steps["Comment the plan on the pull request"]
    assert step["code"] == 0
    assert "::warning::policy-engine: cannot comment on the pull request (HTTP 403)" in step["out"]


def test_strict_fails_the_check_on_the_warning_and_stops_the_job(pull_request, github):
    """With `strict: true` the unknown schema's warning fails the check step (as an error
    annotation), and the job stops there."""
    steps = run_action(pull_request, github, {"strict": "true"})
    check = steps["Check the policy files"]
    assert check["code"] == 1
    assert "::error file=policies/extra.yaml" in check["out"]
    assert "Run the policy tests" not in steps


def test_without_tests_the_test_step_passes_saying_so(pull_request, github):
    """With no test files at the `tests` paths, the test step says it skipped and passes."""
    steps = run_action(pull_request, github, {"tests": "nowhere"})
    tests = steps["Run the policy tests"]
    assert tests["code"] == 0
    assert "no policy tests at 'nowhere': skipped" in tests["out"]
    assert tests["outputs"] == {"junit": ""}


# ---------------------------------------------------------------- the check container


def test_the_check_container_runs_policy_engine_check_and_ci_lints_it():
    """deploy/check.Dockerfile's entrypoint is `policy-engine`, its default command `check`
    (a valid command line), the project is the working directory /work, it does not run as
    root, and .ci/run lints it with hadolint next to deploy/Dockerfile."""
    lines = CHECK_DOCKERFILE.read_text(encoding="utf-8").splitlines()
    instructions = {line.split()[0]: line.split(None, 1)[1] for line in lines if line[:1].isupper()}
    assert json.loads(instructions["ENTRYPOINT"]) == ["policy-engine"]
    command = json.loads(instructions["CMD"])
    assert command == ["check"]
    parses(command)
    assert instructions["WORKDIR"] == "/work"
    assert instructions["USER"].split(":")[0] not in ("root", "0")
    assert (ROOT / "deploy" / "check.Dockerfile.dockerignore").is_file()
    hadolint = next(
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if 'hadolint"' in line
    )
    assert "deploy/Dockerfile" in hadolint.split()
    assert "deploy/check.Dockerfile" in hadolint.split()

"""What users read agrees with the code: no citation of a document they do not have, and the
option lists and settings tables of the docs are the parser's and the dataclass's."""

from __future__ import annotations

import ast
import dataclasses
import io
import pkgutil
import re
from pathlib import Path

import pytest

from policy_engine.cli import build_parser, main
from policy_engine.settings import Settings

REPO = Path(__file__).resolve().parents[2]
#: A citation of the design document ("SPEC §4"): users have no such file.
SPEC = re.compile(r"\bSPEC\b")

#: Text users read besides the docstrings: pages, the policy JSON Schema, examples, deployment
#: files and their comments.
USER_FILES = sorted(
    str(path.relative_to(REPO))
    for pattern in (
        "README.md",
        "env.example",
        "action.yml",
        ".pre-commit-hooks.yaml",
        "docs/**/*.md",
        "docs/**/*.json",
        "docs/**/*.yaml",
        "examples/*.md",
        "examples/*.py",
        "deploy/**/*",
    )
    for path in REPO.glob(pattern)
    if path.is_file()
)

PACKAGE = REPO / "engine" / "policy_engine"


def _public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    names = ["policy_engine"]
    for info in pkgutil.walk_packages([str(PACKAGE)], "policy_engine."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _source(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _docstrings(module: str) -> dict[str, str]:
    """Every docstring of ``module``'s source: the module's and those of its classes, functions
    and methods, at any depth. Read from the source, since the compiled build (mypyc) drops a
    module's docstring while the pure-Python one shows it in ``help()``."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    found = {module: ast.get_docstring(tree) or ""}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}.{child.name}"
                found[name] = ast.get_docstring(child) or ""
                visit(child, name)

    visit(tree, module)
    return found


@pytest.mark.parametrize("path", USER_FILES)
def test_pages_and_files_cite_no_spec(path: str) -> None:
    """The README, docs, the policy JSON Schema, examples and deploy files never cite SPEC."""
    text = (REPO / path).read_text(encoding="utf-8", errors="replace")
    cited = [line for line in text.splitlines() if SPEC.search(line)]
    assert not cited, "\n".join(cited)


def test_the_printed_policy_schema_cites_no_spec() -> None:
    """``policy-engine schema`` (what editors read field descriptions from) never cites SPEC."""
    out = io.StringIO()
    assert main(["schema"], stdout=out, stderr=io.StringIO(), environ={}) == 0
    assert not SPEC.search(out.getvalue())


def test_help_of_every_command_cites_no_spec() -> None:
    """``--help``, of the program and of every command, never cites SPEC."""
    for command in [[], *([name] for name in build_parser().commands)]:
        out = io.StringIO()
        assert main([*command, "--help"], stdout=out, stderr=out, environ={}) == 0
        assert "usage:" in out.getvalue(), command
        assert not SPEC.search(out.getvalue()), command


@pytest.mark.parametrize("module", _public_modules())
def test_docstrings_cite_no_spec(module: str) -> None:
    """No docstring of a public module, class, function or method cites SPEC."""
    found = _docstrings(module)
    cited = {name: doc for name, doc in found.items() if SPEC.search(doc)}
    assert not cited, "\n".join(cited)


def test_docstring_walk_sees_every_module_and_method() -> None:
    """The walk above reaches subpackages, module and method docstrings (else it proves little)."""
    modules = _public_modules()
    assert {"policy_engine", "policy_engine.engine", "policy_engine.loop.core"} <= set(modules)
    assert "policy_engine.__main__" not in modules
    found = _docstrings("policy_engine.decision")
    assert found["policy_engine.decision"]
    assert found["policy_engine.decision.Decision.to_dict"]
    assert found["policy_engine.decision.Decision.reason"]


# ------------------------------------------------------------------ cli.md and the parser

CLI_PAGE = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
COMMON = {"--policies", "--registry", "--log-level", "--log-format", "--json", "--color"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _options(command: str) -> set[str]:
    parser = build_parser().commands[command]
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def _section(page: str, title: str) -> str:
    """The text of the ``## title`` section of ``page``, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", page, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def _synopsis(section: str) -> str:
    """The first ```text block of a section (the command's usage as the page writes it), or
    ``""`` for a command shown without one."""
    match = re.search(r"^```text\n(.*?)^```", section, re.M | re.S)
    return match.group(1) if match else ""


def _table_options(section: str) -> set[str]:
    """The options the first column of the section's tables names."""
    cells = re.findall(r"^\| ([^|]*)\|", section, re.M)
    return {option for cell in cells for option in OPTION.findall(cell)}


@pytest.mark.parametrize(
    "command",
    ["check", "schema", "explain", "validate", "replay", "plan", "status", "test", "init"],
)
def test_cli_page_lists_every_option_of_each_command(command: str) -> None:
    """docs/cli.md's usage line and argument table of each command name exactly its options
    beyond the common ones."""
    own = _options(command) - COMMON
    section = _section(CLI_PAGE, command)
    assert set(OPTION.findall(_synopsis(section))) == own
    assert _table_options(section) == own


def test_cli_page_common_options_are_the_parser_s() -> None:
    """The common options table is what every command but ``completion`` takes."""
    assert _table_options(_section(CLI_PAGE, "Common options")) == COMMON
    for command in build_parser().commands:
        expected = {"--color"} if command == "completion" else COMMON - {"--json"}
        assert expected <= _options(command), command


def test_consume_page_lists_every_option() -> None:
    """docs/consume.md's options table names every option of ``consume``, and its redrive
    section every option of ``redrive``."""
    consume_page = (REPO / "docs" / "consume.md").read_text(encoding="utf-8")
    assert _table_options(_section(consume_page, "Options")) == _options("consume") - COMMON
    redrive = set(OPTION.findall(_section(consume_page, "redrive")))
    assert _options("redrive") - COMMON <= redrive


def test_cli_page_help_block_is_the_top_level_help() -> None:
    """The commands of docs/cli.md's ``--help`` block are the parser's, in its order."""
    block = re.search(r"^\$ policy-engine --help\n(.*?)^```", CLI_PAGE, re.M | re.S)
    assert block
    listed = re.findall(r"^    ([a-z][a-z-]*)\s", block.group(1), re.M)
    shown = [name for name in build_parser().commands if name != "replay-dlq"]
    assert listed == shown


# ------------------------------------------------------------------ settings and variables


def _table_column(section: str, header: str) -> list[str]:
    """The first code span of each row of the table whose header row starts with ``header``."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    cells = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        match = re.match(r"\| \[?`([^`]+)`", line)
        assert match, line
        cells.append(match.group(1))
    return cells


def test_python_api_settings_table_lists_every_field() -> None:
    """docs/python-api.md's Settings table has a row per Settings field, in the dataclass's
    order."""
    page = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    fields = [field.name for field in dataclasses.fields(Settings)]
    assert _table_column(_section(page, "Settings"), "field") == fields


def test_configuration_page_lists_every_variable_of_env_example() -> None:
    """docs/configuration.md's table and env.example name the same variables, each with a
    section of its own on the page."""
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = _table_column(page, "variable")
    example = (REPO / "env.example").read_text(encoding="utf-8")
    assigned = re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M)
    assert sorted(table) == sorted(assigned)
    for variable in table:
        assert re.search(rf"^## .*\b{variable}\b", page, re.M), variable


def test_configuration_page_names_the_fleet_settings() -> None:
    """The configuration page tells where the probes are served and how --guardrail-store and
    METRICS_ADDR set them."""
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for needed in ("--guardrail-store", "METRICS_ADDR", "/healthz", "/readyz", "/status"):
        assert needed in page, needed

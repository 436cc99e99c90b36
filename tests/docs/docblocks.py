"""The code blocks of the README and the docs as data: which run, how, and what they print.

``test_doc_examples.py`` turns them into tests. Which blocks run:

- a ```` ```console ```` block whose commands start with ``$ ``: each command runs in a sandbox
  that holds a copy of the example project (``policies/``, ``schemas/``, ``examples/``, the
  policy tests), one sandbox per page, so a file one block writes is there for the next; its
  output is compared with the lines under it;
- a ```` ```python ```` block followed by a ```` ```text ```` block: the text is what it prints.

An HTML comment right before a block steers it (several may follow one another):

- ``<!-- not run: REASON -->``: the block needs what a test machine has not (a Redis server, two
  replicas, a cluster); the test counts these so they cannot grow silently;
- ``<!-- file: PATH -->``: the block's text is written to ``PATH`` in the sandbox (a policy file
  that the commands after it use);
- ``<!-- setup: SHELL -->``: shell commands run by ``bash`` in the sandbox before the block
  (``git commit``, an edit the prose describes);
- ``<!-- cwd: DIR -->`` and ``<!-- env: NAME=VALUE ... -->``: where the block's commands run and
  the variables they see.

``$ policy-engine ...`` runs in this process through ``policy_engine.cli.main`` (with ``VAR=value``
prefixes, ``<``, ``>``, ``2>/dev/null``, ``2>&1 >/dev/null``, ``| head -N``, ``| tail -N``,
``cd DIR &&``); ``$ echo $?`` prints the previous command's exit code; ``$ cat FILE`` with output
under it shows a file the example uses, so the output is written to ``FILE`` first; anything else
runs in ``bash``. Commands see a clock fixed at ``DOCS_TIME`` (the date the docs say their
outputs were made), so ramps give the same canary every day; Python blocks run at the real time
and must fix their own clock where a ramp matters. Paths under ``/tmp/`` are taken inside the
sandbox and shown as ``/tmp/...`` again.

Run as a script (``python docblocks.py SANDBOX``) it runs every runnable block and prints the
results as JSON: the test starts it once, in a process of its own, so that the examples'
``logging.basicConfig``, signal handlers and the fixed clock never touch the test session.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: The pages whose blocks are examples: the README, every page of docs/, the example feed's.
PAGES: tuple[str, ...] = (
    "README.md",
    *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")),
    "examples/README.md",
)
#: The time the command examples are run at: docs/cli.md says its outputs were made then.
DOCS_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()
#: What the sandbox of every page holds, copied from the repository (copied, not linked: an
#: example that writes, a ``redrive`` publishing to the feed say, must not reach the repository).
PROJECT = ("policies", "schemas", "examples", "tests/policies", "tests/policy/cases")
#: The longest one command may run, and a python block.
COMMAND_SECONDS = 60

_FENCE = re.compile(r"^```(\S*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*([a-z][a-z ]*?)\s*:\s*(.*?)\s*-->$", re.DOTALL)
DIRECTIVES = frozenset({"not run", "file", "setup", "cwd", "env"})


@dataclass(frozen=True)
class Command:
    """One ``$ `` command of a console block and the output shown under it."""

    line: int
    text: str
    expected: str


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page, with the directives written right before it."""

    page: str
    line: int
    lang: str
    text: str
    directives: tuple[tuple[str, str], ...] = ()
    #: For a python block: the ```text block right after it, what it prints.
    output: str | None = None

    @property
    def id(self) -> str:
        """``page:line`` of the opening fence."""
        return f"{self.page}:{self.line}"

    def directive(self, name: str) -> str | None:
        """The value of the (last) directive ``name``, or ``None``."""
        found = [value for key, value in self.directives if key == name]
        return found[-1] if found else None

    @property
    def not_run(self) -> str | None:
        """Why the block is not run, if it is marked so."""
        return self.directive("not run")

    @property
    def is_example(self) -> bool:
        """A console block with commands, or a python block with its output under it."""
        if self.lang == "console":
            return any(line.startswith("$ ") for line in self.text.splitlines())
        return self.lang == "python" and self.output is not None

    @property
    def runs(self) -> bool:
        """Whether the test runs it."""
        return self.is_example and self.not_run is None

    def commands(self) -> list[Command]:
        """The commands of a console block, continuation lines (``\\``) joined."""
        commands: list[Command] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1  # text before the first command: not part of any output
                continue
            start = i
            text = lines[i][2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            output: list[str] = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            commands.append(Command(self.line + 1 + start, text, "\n".join(output)))
        return commands


def parse(page: str, text: str | None = None) -> list[Block]:
    """Every fenced block of ``page`` (relative to the repository), in order."""
    if text is None:
        text = (REPO / page).read_text(encoding="utf-8")
    lines = text.splitlines()
    raw: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened or lines[i].startswith("````"):
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        raw.append(
            Block(page, start + 1, opened.group(1), "\n".join(body), _directives(lines, start))
        )
        i += 1
    blocks: list[Block] = []
    for n, block in enumerate(raw):
        after = raw[n + 1] if n + 1 < len(raw) else None
        if (
            block.lang == "python"
            and after is not None
            and after.lang == "text"
            and _only_blank_between(lines, block, after)
        ):
            blocks.append(replace(block, output=after.text))
        else:
            blocks.append(block)
    return blocks


def _only_blank_between(lines: Sequence[str], block: Block, after: Block) -> bool:
    """Whether nothing but blank lines separates ``block``'s closing fence from ``after``."""
    end = block.line + len(block.text.splitlines()) + 1  # the closing fence, 1-based
    return all(not line.strip() for line in lines[end : after.line - 1])


def _directives(lines: Sequence[str], fence: int) -> tuple[tuple[str, str], ...]:
    """The ``<!-- name: value -->`` comments right above the fence at index ``fence``."""
    found: list[tuple[str, str]] = []
    i = fence - 1
    while i >= 0:
        if not lines[i].strip():
            i -= 1
            continue
        if not lines[i].rstrip().endswith("-->"):
            break
        end = i
        while i >= 0 and "<!--" not in lines[i]:
            i -= 1
        if i < 0:
            break
        comment = " ".join(line.strip() for line in lines[i : end + 1])
        matched = _DIRECTIVE.match(comment)
        if matched is None or matched.group(1) not in DIRECTIVES:
            raise ValueError(f"line {i + 1}: not a doc-test directive: {comment}")
        found.append((matched.group(1), matched.group(2)))
        i -= 1
    return tuple(reversed(found))


def all_blocks() -> list[Block]:
    """Every block of every page."""
    return [block for page in PAGES for block in parse(page)]


# ------------------------------------------------------------------ comparing


#: What legitimately differs between two runs, and how both sides are written before comparing.
MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a log record's time, an HTML report's
    (re.compile(r'"time": "[^"]*"'), '"time": "<time>"'),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(?:Z|[+-]\d\d:\d\d)"), "<time>"),
    # durations and rates of a run
    (re.compile(r"\b\d[\d ,.]*\s?(?:msg/s|/s)\b"), "<rate>"),
    (re.compile(r"\bin \d+(?:\.\d+)?\s?(?:s|ms)\b"), "in <duration>"),
    # a consume summary's duration, written just before its rate
    (re.compile(r"\b\d+(?:\.\d+)? s(?=, <rate>)"), "<duration>"),
)


def mask(text: str) -> str:
    """``text`` with times, durations and rates replaced by placeholders."""
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in mask(text).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _line_matches(pattern: str, line: str) -> bool:
    if pattern == line:
        return True
    if "..." not in pattern:
        return False
    parts = [re.escape(part) for part in pattern.split("...")]
    return re.fullmatch(".*".join(parts), line) is not None


def _sequence_matches(expected: Sequence[Any], actual: Sequence[Any], same: Any) -> bool:
    """Whether ``actual`` matches ``expected``, where an ``...`` item stands for any run."""
    # reach[j]: expected[:i] can match actual[:j]
    reach = [True] + [False] * len(actual)
    for item in expected:
        if item == "...":
            seen = False
            for j in range(len(reach)):
                seen = seen or reach[j]
                reach[j] = seen
            continue
        reach = [False] + [reach[j] and same(item, actual[j]) for j in range(len(actual))]
    return reach[-1]


_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|\.\.\.|[{}\[\],:]'
)


def _looks_like_json(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith(("{", "["))


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what ``expected`` shows.

    Line by line after masking, trailing spaces ignored; a line ``...`` stands for any number of
    lines and ``...`` inside a line for any text. JSON that the docs fold onto fewer lines is
    compared token by token, ``...`` standing for any run of tokens.
    """
    want = [line.strip() if line.strip() == "..." else line for line in _lines(expected)]
    if _sequence_matches(want, _lines(actual), _line_matches):
        return True
    if _looks_like_json(expected) and _looks_like_json(actual):
        want_tokens = _TOKEN.findall(mask(expected))
        got_tokens = _TOKEN.findall(mask(actual))
        return _sequence_matches(want_tokens, got_tokens, lambda a, b: a == b)
    return False


# ------------------------------------------------------------------ running


@dataclass
class Result:
    """What one command (or python block) printed, and its exit code."""

    line: int
    command: str
    expected: str
    actual: str
    code: int = 0


@dataclass
class Sandbox:
    """The example project in a directory of its own, and the shell state of one page."""

    root: Path
    last_code: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> Sandbox:
        """A fresh copy of the example project at ``root``."""
        root.mkdir(parents=True)
        for name in PROJECT:
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        (root / "home").mkdir()
        (root / "tmp").mkdir()
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root / "home"),
            "LANG": "C.UTF-8",
            "GIT_AUTHOR_NAME": "docs",
            "GIT_AUTHOR_EMAIL": "docs@example.com",
            "GIT_COMMITTER_NAME": "docs",
            "GIT_COMMITTER_EMAIL": "docs@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        return cls(root, env=env)

    def inside(self, text: str) -> str:
        """``text`` with ``/tmp/`` paths moved into the sandbox."""
        return re.sub(r"(?<![\w./])/tmp/", f"{self.root}/tmp/", text)

    def shown(self, text: str) -> str:
        """``text`` with the sandbox's paths written as the docs write them."""
        return text.replace(f"{self.root}/tmp/", "/tmp/").replace(f"{self.root}/", "")

    def bash(self, script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
        """Run ``script`` in bash; (exit code, stdout and stderr)."""
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout

    def prepare(self, block: Block) -> None:
        """Carry out the block's ``file`` and ``setup`` directives."""
        for name, value in block.directives:
            if name == "file":
                target = self.root / value
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text + "\n", encoding="utf-8")
            elif name == "setup":
                code, out = self.bash(self.inside(value), self.root, self.env)
                if code != 0:
                    raise RuntimeError(f"{block.id}: setup failed ({code}): {value}\n{out}")

    def run_console(self, block: Block) -> list[Result]:
        """Run each command of a console block."""
        cwd = self.root / (block.directive("cwd") or ".")
        env = dict(self.env)
        for assignment in shlex.split(block.directive("env") or ""):
            name, _, value = assignment.partition("=")
            env[name] = value
        results = []
        for command in block.commands():
            try:
                code, out = self.run_line(self.inside(command.text), cwd, env, command.expected)
            except Exception:  # a crash is shown as the command's output, to compare and read
                code, out = -1, traceback.format_exc()
            self.last_code = code
            results.append(
                Result(command.line, command.text, command.expected, self.shown(out), code)
            )
        return results

    def run_line(self, line: str, cwd: Path, env: dict[str, str], expected: str) -> tuple[int, str]:
        """One command line, as a shell would run it; (exit code, what the terminal shows)."""
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        if tokens == ["echo", "$?"]:
            return 0, f"{self.last_code}\n"
        if len(tokens) == 2 and tokens[0] == "cat" and expected.strip():
            path = cwd / tokens[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected + "\n", encoding="utf-8")
            return 0, expected + "\n"
        words = [t for t in tokens if t not in ("&&", "|")]
        runs_engine = "policy-engine" in words and _simple(tokens)
        if not runs_engine:
            return self.bash(line, cwd, env)
        shown = io.StringIO()
        code = 0
        for part in _split(tokens, "&&"):
            if part[:1] == ["cd"]:
                cwd = cwd / part[1]
                continue
            code = self.run_engine(part, cwd, env, shown)
            if code != 0:
                break
        return code, shown.getvalue()

    def run_engine(
        self, tokens: list[str], cwd: Path, env: dict[str, str], shown: io.StringIO
    ) -> int:
        """``VAR=x policy-engine ARGS [redirections] [| head/tail -N]`` in this process."""
        pipeline = _split(tokens, "|")
        words = pipeline[0]
        env = dict(env)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words[:1] != ["policy-engine"]:
            raise ValueError(f"not a policy-engine command: {tokens}")
        argv: list[str] = []
        stdin = b""
        out_to: str | None = None  # None: the terminal
        err_to: str | None = None
        i = 1
        while i < len(words):
            word = words[i]
            fd2 = word == "2" and i + 1 < len(words) and words[i + 1] in (">", ">&")
            if fd2:
                target = words[i + 2]
                err_to = None if words[i + 1] == ">&" and target == "1" else target
                if words[i + 1] == ">&" and target == "1":
                    err_to = out_to
                i += 3
            elif word == ">":
                out_to = words[i + 1]
                i += 2
            elif word == "<":
                stdin = (cwd / words[i + 1]).read_bytes()
                i += 2
            else:
                argv.append(word)
                i += 1
        out, err = io.StringIO(), io.StringIO()
        piped = len(pipeline) > 1
        if out_to is None and err_to is None and not piped:
            out = err = shown  # one terminal: the order of the lines is kept
        from policy_engine.cli import main

        with _fixed_clock(), _working_directory(cwd), _time_limit(COMMAND_SECONDS):
            code = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=env)
        text = out.getvalue() if out is not shown else ""
        for stage in pipeline[1:]:
            text = _filter(stage, text)
        if err is not shown and err_to is None:
            shown.write(err.getvalue())
        if out is not shown:
            if out_to is None:
                shown.write(text)
            elif out_to != "/dev/null":
                (cwd / out_to).write_text(text, encoding="utf-8")
        return code

    def run_python(self, block: Block) -> list[Result]:
        """Run a python block in a namespace of its own; what it printed on stdout."""
        out, err = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        levels = {
            name: logging.getLogger(name).level
            for name in ("policy_engine", "policy_engine.decisions")
        }
        try:
            with (
                _working_directory(self.root),
                _time_limit(COMMAND_SECONDS),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                code = compile(block.text, f"{block.id}", "exec")
                exec(code, {"__name__": "__main__"})
        except BaseException:  # shown as the output, to compare and read
            out.write(traceback.format_exc())
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            for name, old in levels.items():
                logging.getLogger(name).setLevel(old)
        return [Result(block.line, "python", block.output or "", self.shown(out.getvalue()))]


def _simple(tokens: list[str]) -> bool:
    """Whether the pipeline is one this module runs itself (else: bash)."""
    for part in _split(tokens, "&&"):
        stages = _split(part, "|")
        for stage in stages[1:]:
            if stage[:1] not in (["head"], ["tail"]) or len(stage) != 2:
                return False
        if part[:1] == ["cd"]:
            if len(part) != 2:
                return False
            continue
        words = [w for w in stages[0] if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", w)]
        if words[:1] != ["policy-engine"]:
            return False
    return True


def _split(tokens: list[str], operator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == operator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _filter(stage: list[str], text: str) -> str:
    """``head -N`` or ``tail -N`` of ``text``."""
    count = int(stage[1].lstrip("-n"))
    lines = text.splitlines(keepends=True)
    kept = lines[:count] if stage[0] == "head" else lines[-count:]
    return "".join(kept)


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Stop a command that runs longer than ``seconds`` (one waiting for a server, say)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: mark it not run, or fix it")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _fixed_clock() -> Iterator[None]:
    """``time.time`` and every engine's default clock start at ``DOCS_TIME`` and run on."""
    import policy_engine.engine

    real_time, real_engine = time.time, policy_engine.engine.PolicyEngine
    start = time.monotonic()

    def now() -> float:
        return DOCS_TIME + (time.monotonic() - start)

    def engine(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("clock", now)
        return real_engine(*args, **kwargs)

    time.time = now
    policy_engine.engine.PolicyEngine = engine  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        time.time = real_time
        policy_engine.engine.PolicyEngine = real_engine  # type: ignore[misc]


def run_all(base: Path, pages: Sequence[str] = PAGES) -> dict[str, list[dict[str, Any]]]:
    """Run every runnable block of ``pages``, a sandbox per page under ``base``; results by
    block id."""
    os.environ["COLUMNS"] = "80"  # argparse wraps --help to the terminal's width
    results: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        blocks = parse(page)
        if not any(block.runs for block in blocks):
            continue
        sandbox = Sandbox.create(base / page.replace("/", "_"))
        for block in blocks:
            if block.not_run is not None:
                continue
            try:
                sandbox.prepare(block)
            except RuntimeError as exc:
                results[block.id] = [Result(block.line, "setup", "", str(exc), -1).__dict__]
                continue
            if not block.runs:
                continue
            if block.lang == "console":
                ran = sandbox.run_console(block)
            else:
                ran = sandbox.run_python(block)
            results[block.id] = [result.__dict__ for result in ran]
    return results


if __name__ == "__main__":
    json.dump(run_all(Path(sys.argv[1]), sys.argv[2:] or PAGES), sys.stdout)

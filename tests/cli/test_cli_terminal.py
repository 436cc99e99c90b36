"""The command line on a terminal: colour, shell completion, and a progress bar logs never break.

In-process tests pass string streams and ``environ=``; where a real terminal matters (colour on
a tty, the progress bar with logs above it) the program runs in a subprocess on a pseudo-terminal.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from policy_engine.cli import build_parser, main
from policy_engine.cli.terminal import Painter, color_enabled

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--policies", str(REPO / "policies"), "--registry", str(REPO / "schemas")]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process with string streams; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


class FakeTerminal(io.StringIO):
    """A string stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------- when to colour


@pytest.mark.parametrize(
    ("choice", "tty", "environ", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", False, {}, False),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # no-color.org: an empty value does not count
        ("auto", True, {"TERM": "dumb"}, False),
        ("always", False, {}, True),
        ("always", True, {"NO_COLOR": "1"}, True),  # the option given for this run wins
        ("never", True, {}, False),
    ],
)
def test_color_follows_the_terminal_no_color_and_the_option(
    choice: str, tty: bool, environ: dict[str, str], expected: bool
) -> None:
    """Colour is on for a terminal unless NO_COLOR (non-empty) or TERM=dumb; --color decides."""
    stream = FakeTerminal() if tty else io.StringIO()
    assert color_enabled(choice, stream, environ) is expected


def test_a_painter_that_is_off_returns_the_text_unchanged() -> None:
    """With colour off nothing is added; with it on the text is wrapped in SGR codes."""
    assert Painter(False)("failed", "error") == "failed"
    assert Painter(True)("failed", "error") == "\x1b[1;31mfailed\x1b[0m"


def test_output_to_a_string_stream_has_no_colour() -> None:
    """Piped (not a terminal), `check` prints plain text."""
    code, out, _ = run(["check", *COMMON])
    assert code == 0
    assert "\x1b[" not in out
    assert out.startswith("ok: 2 file(s)")


@pytest.mark.parametrize(
    "args",
    [["--color", "always", "check", *COMMON], ["check", *COMMON, "--color", "always"]],
)
def test_color_always_is_accepted_before_or_after_the_command(args: list[str]) -> None:
    """--color is a global option: before the command name or after it, same effect."""
    code, out, _ = run(args, env={"NO_COLOR": "1"})
    assert code == 0
    assert out.startswith("\x1b[32mok\x1b[0m: 2 file(s)")


def test_color_given_after_the_command_wins_over_one_before() -> None:
    """`--color always check --color never` is not coloured: the later choice counts."""
    _, out, _ = run(["--color", "always", "check", *COMMON, "--color", "never"])
    assert "\x1b[" not in out


def test_colour_marks_outcomes_without_changing_the_text(tmp_path: Path) -> None:
    """Coloured `validate` output is the plain output plus escape codes, nothing else."""
    envelope = json.loads((REPO / "examples" / "feed.jsonl").read_text().splitlines()[2])
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(envelope["payload"]))
    args = ["validate", envelope["schema"], str(path), "--key", "AAPL", *COMMON]
    _, plain, _ = run(args)
    _, coloured, _ = run([*args, "--color", "always"])
    assert coloured != plain
    assert ANSI.sub("", coloured) == plain


# ---------------------------------------------------------------- a real terminal


def pty_run(args: list[str], env: dict[str, str], *, on_pty: str) -> tuple[int, bytes, bytes]:
    """Run ``python -m policy_engine ARGS`` with ``on_pty`` ("stdout" or "stderr") on a
    pseudo-terminal 200 columns wide and the other stream on a pipe."""
    master, slave = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, on_pty: slave}
    process = subprocess.Popen(
        [sys.executable, "-m", "policy_engine", *args],
        stdin=subprocess.DEVNULL,
        stdout=streams["stdout"],
        stderr=streams["stderr"],
        env=env,
        cwd=REPO,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as exc:  # EIO: the child closed its end
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    piped = process.stdout if on_pty == "stderr" else process.stderr
    assert piped is not None
    rest = piped.read()
    piped.close()
    return process.wait(), b"".join(chunks), rest


def terminal_env(**extra: str) -> dict[str, str]:
    """The test's environment for a child on a terminal, without colour settings of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def test_colour_is_on_for_a_terminal_and_off_with_no_color() -> None:
    """On a real terminal `check` is coloured; NO_COLOR=1 turns that off."""
    code, screen, _ = pty_run(["check", *COMMON], terminal_env(), on_pty="stdout")
    assert code == 0
    assert b"\x1b[32mok\x1b[0m" in screen
    code, screen, _ = pty_run(["check", *COMMON], terminal_env(NO_COLOR="1"), on_pty="stdout")
    assert code == 0
    assert b"\x1b[" not in screen
    assert b"ok: 2 file(s)" in screen


def screen_lines(raw: bytes) -> list[str]:
    """What a terminal shows after ``raw``: carriage return, newline, erase line and cursor up
    are applied; colours and cursor visibility are dropped."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", raw.decode()):
        if not token:
            continue
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            if row == len(lines):
                lines.append([])
        elif token.startswith("\x1b["):
            if token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
            elif token.endswith("K"):
                lines[row] = lines[row][:col] if token[2:-1] in ("", "0") else []
        else:
            line = lines[row]
            line.extend(" " * (col - len(line)))
            line[col : col + len(token)] = list(token)
            col += len(token)
    return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def test_screen_lines_applies_erase_and_cursor_moves() -> None:
    """The little terminal model of the next test: a line erased and rewritten shows once."""
    above = b"bar 0%\r\x1b[2Kmessage\r\nbar 0%\r\x1b[2Kbar 100%\r\n"
    assert screen_lines(above) == ["message", "bar 100%"]
    moved_up = b"one\r\ntwo\x1b[1A\r\x1b[2Kthree\r\n"
    assert screen_lines(moved_up) == ["three", "two"]


@pytest.fixture
def noisy_feed(tmp_path: Path) -> Path:
    """A feed with good lines, two bad lines, and a schema the registry lacks (logged)."""
    good = json.loads((REPO / "examples" / "feed.jsonl").read_text().splitlines()[2])
    lines = [json.dumps(good)] * 200
    lines[50] = "{oops"
    lines[120] = json.dumps({"schema": "nowhere.Missing", "payload": {}})
    lines[150] = "[1, 2]"
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    return feed


def test_logs_and_bad_lines_print_above_the_progress_bar(noisy_feed: Path) -> None:
    """On a terminal, replay's bad-line messages and log records each get a line of their own
    above the bar, and the finished bar is the last line, drawn once."""
    code, screen, stdout = pty_run(
        ["replay", str(noisy_feed), *COMMON], terminal_env(), on_pty="stderr"
    )
    assert code == 0
    assert b"198 envelope(s) evaluated, 2 bad line(s)" in stdout
    lines = screen_lines(screen)
    assert lines[:3] == [
        f"{noisy_feed}:51: bad line skipped: not JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))",
        "WARNING policy_engine: schema nowhere.Missing track v2 is not in the registry; its "
        "payloads are skipped, not validated",
        f"{noisy_feed}:151: bad line skipped: an envelope is a JSON object, got list",
    ]
    assert len(lines) == 4
    assert re.match(r"━{30} 100% 198 lines \S+/s", lines[3])


def test_progress_is_not_drawn_when_stderr_is_piped(noisy_feed: Path) -> None:
    """Piped, replay draws no bar: stderr holds the plain messages only."""
    code, _, err = run(["replay", str(noisy_feed), *COMMON])
    assert code == 0
    assert err.splitlines() == [
        f"{noisy_feed}:51: bad line skipped: not JSON (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))",
        "WARNING policy_engine: schema nowhere.Missing track v2 is not in the registry; its "
        "payloads are skipped, not validated",
        f"{noisy_feed}:151: bad line skipped: an envelope is a JSON object, got list",
    ]


# ---------------------------------------------------------------- shell completion


def every_option() -> set[str]:
    """Every long option of every command, from the parser itself."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert commands.choices is not None
    found = set()
    for command in [parser, *commands.choices.values()]:
        for action in command._actions:
            found.update(o for o in action.option_strings if o.startswith("--"))
    return found


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_names_every_command_and_option(shell: str) -> None:
    """`completion SHELL` prints a script, made from the parser, with every command and option."""
    code, script, err = run(["completion", shell])
    assert (code, err) == (0, "")
    for command in ("check", "explain", "validate", "replay", "plan", "completion"):
        assert command in script
    # fish names a long option without its dashes: `-l strict`
    spelt = (lambda option: f"-l {option[2:]}") if shell == "fish" else (lambda option: option)
    missing = {o for o in every_option() if spelt(o) not in script}
    assert missing == set()


@pytest.mark.parametrize(("shell", "check"), [("bash", "-n"), ("zsh", "-n"), ("fish", "-n")])
def test_completion_script_is_valid_shell(shell: str, check: str, tmp_path: Path) -> None:
    """The script parses in its shell (skipped where that shell is not installed, unless
    ``POLICY_ENGINE_REQUIRE_SHELLS=1``: CI installs every shell and fails without one)."""
    if shutil.which(shell) is None:
        reason = f"{shell} is not installed here, so its syntax cannot be checked"
        if os.environ.get("POLICY_ENGINE_REQUIRE_SHELLS", "") == "1":
            pytest.fail(f"{reason}, and POLICY_ENGINE_REQUIRE_SHELLS=1 requires it", pytrace=False)
        pytest.skip(reason)
    script = tmp_path / f"completion.{shell}"
    script.write_text(run(["completion", shell])[1])
    result = subprocess.run(
        [shell, check, str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    """Sourced into bash, the script offers `check` for `ch` and `--strict` for `check --st`."""
    script = tmp_path / "completion.bash"
    script.write_text(run(["completion", "bash"])[1])
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(policy-engine ch); COMP_CWORD=1; _shtab_policy_engine; "
        'echo "${COMPREPLY[@]}"\n'
        "COMP_WORDS=(policy-engine check --st); COMP_CWORD=2; _shtab_policy_engine; "
        'echo "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    commands, options = result.stdout.splitlines()
    assert commands.split() == ["check"]
    assert "--strict" in options.split()


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    """`completion tcsh` exits 2 naming the shells supported."""
    code, _, err = run(["completion", "powershel"])
    assert code == 2
    assert "invalid choice: 'powershel'" in err


# ---------------------------------------------------------------- start-up stays light


def test_version_and_piped_output_do_not_import_rich_or_shtab() -> None:
    """--version and plain (piped) output load neither rich nor shtab."""
    probe = (
        "import io, sys\n"
        "from policy_engine.cli import main\n"
        "main(['--version'], stdout=io.StringIO())\n"
        f"main(['check', *{COMMON!r}], stdout=io.StringIO(), environ={{}})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'shtab'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"

"""What the command line does differently on a terminal: colour, and a progress bar.

Colour follows ``--color auto|always|never``: ``auto`` colours a stream only when it is a
terminal, ``NO_COLOR`` is unset or empty (https://no-color.org) and ``TERM`` is not ``dumb``;
``always`` wins over ``NO_COLOR``, as a per-invocation option should. Output piped to a file or
another program is the plain text that the docs show and scripts read.

rich draws both (ANSI styles and the progress bar); it is imported only when a stream is
coloured or a bar is shown, so ``policy-engine --version`` and piped output never load it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from functools import lru_cache
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

ColorChoice = Literal["auto", "always", "never"]
COLOR_CHOICES: tuple[ColorChoice, ...] = ("auto", "always", "never")

#: What each role looks like (rich style syntax); the commands name roles, never colours.
STYLES: Mapping[str, str] = {
    "ok": "green",
    "error": "bold red",
    "warning": "yellow",
    "muted": "dim",
    "heading": "bold",
    "name": "cyan",
    # modes and actions: strict/rejected stand out, off/skipped recede
    "strict": "bold magenta",
    "warn": "yellow",
    "off": "dim",
    "accepted": "green",
    "logged": "yellow",
    "rejected": "bold red",
    "skipped": "dim",
}

#: Seconds between two redraws of the progress bar's numbers (a redraw per line would cost
#: more than evaluating the line).
PROGRESS_INTERVAL = 0.1


def color_enabled(choice: str, stream: IO[str], environ: Mapping[str, str]) -> bool:
    """Whether to colour what goes to ``stream``.

    >>> import io
    >>> color_enabled("auto", io.StringIO(), {}), color_enabled("always", io.StringIO(), {})
    (False, True)
    """
    if choice == "always":
        return True
    if choice == "never" or environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@lru_cache(maxsize=64)
def _ansi(role: str) -> tuple[str, str]:
    """The escape sequences that open and close ``role``'s style (8 colours: any terminal)."""
    from rich.color import ColorSystem
    from rich.style import Style

    marker = "\0"
    rendered = Style.parse(STYLES.get(role, role)).render(marker, color_system=ColorSystem.STANDARD)
    opening, _, closing = rendered.partition(marker)
    return opening, closing


class Painter:
    """Styles text for one stream: ANSI colour when ``enabled``, the text unchanged when not.

    Pad before painting: escape sequences have no width on screen but do have a length.

    >>> Painter(False)("REJECTED", "rejected")
    'REJECTED'
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, role: str) -> str:
        if not self.enabled or not text:
            return text
        opening, closing = _ansi(role)
        return f"{opening}{text}{closing}"


class LinesAbove(io.TextIOBase):
    """A text stream whose complete lines rich prints above its live progress bar.

    Log handlers and bad-line messages write here while the bar is shown, so nothing lands on
    the bar's line; a partial line waits for its newline (or ``close``).
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._print(line)
        return len(text)

    def _print(self, line: str) -> None:
        from rich.text import Text

        # Text.from_ansi keeps a coloured log level coloured; soft_wrap leaves long lines whole.
        self._console.print(Text.from_ansi(line), soft_wrap=True)

    def flush(self) -> None:
        self._console.file.flush()

    def close(self) -> None:
        if self._pending:
            self._print(self._pending)
            self._pending = ""
        super().close()


class ProgressBar:
    """A progress bar on ``stream`` for reading a file: share of bytes, lines, rate, time left.

    Disabled, it draws nothing and ``above`` is ``stream`` itself; enabled, ``above`` is a
    stream that prints whole lines above the bar. Use it as a context manager::

        with ProgressBar(sys.stderr, total_bytes, enabled=True, color=True) as bar:
            bar.update(done_bytes, lines)
    """

    def __init__(
        self, stream: IO[str], total_bytes: int | None, *, enabled: bool, color: bool
    ) -> None:
        self.stream = stream
        self.total = total_bytes or None
        self.enabled = enabled
        self.color = color
        self.above: IO[str] = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> ProgressBar:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(
            file=self.stream,
            force_terminal=True,  # enabled means asked for: a terminal, or --progress always
            force_interactive=True,
            no_color=not self.color,
            color_system="standard" if self.color else None,
            highlight=False,
        )
        self._progress = Progress(
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TextColumn("{task.fields[lines]} lines"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=10,
        )
        self._task = self._progress.add_task("replay", total=self.total, lines="0", rate="")
        self._progress.start()
        # a text stream in all but its static type (TextIOBase is not typing.IO)
        self.above = cast("IO[str]", LinesAbove(console))
        return self

    def update(self, done_bytes: int, lines: int, *, final: bool = False) -> None:
        """Record progress; the bar is redrawn at most every ``PROGRESS_INTERVAL`` seconds."""
        if self._progress is None or self._task is None:
            return
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        rate = lines / max(now - self._started, 1e-9)
        self._progress.update(
            self._task,
            completed=self.total if final and self.total else done_bytes,
            lines=f"{lines:,}",
            rate=f"{rate:,.0f}/s",
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is None:
            return
        self.above.close()
        self._progress.stop()
        self._progress = None
        self.above = self.stream


__all__ = [
    "COLOR_CHOICES",
    "STYLES",
    "ColorChoice",
    "LinesAbove",
    "Painter",
    "ProgressBar",
    "color_enabled",
    "is_terminal",
]

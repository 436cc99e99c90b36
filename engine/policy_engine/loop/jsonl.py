"""JSONL files, stdin and stdout as a ``Source`` and ``Sink`` (the embedded default, SPEC §10).

A file source reads envelopes line by line and ends at the end of the file, unless it follows
the file (``follow=True``: ``consume --follow``), when it waits for more lines, and reopens the
path when the file is rotated (renamed away and created again) or truncated. Acknowledging is a
no-op: a file has no consumer group, so after a crash a file is read again from its start
(at-least-once: downstream may see duplicates, never gaps).

A sink appends one JSON object per line. Each ``write`` is flushed; a DLQ sink is also fsynced
(``fsync=True``), so a dead letter is on disk before its message counts as handled.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import stat
import time
from collections.abc import Callable, Sequence
from typing import IO

from policy_engine.envelope import MAX_LINE_BYTES
from policy_engine.errors import SinkError, SourceError
from policy_engine.loop.records import Message, Position, Record

#: Bytes asked from the file or pipe per read.
CHUNK = 256 * 1024
#: How often a followed file is checked for new lines.
POLL_INTERVAL = 0.1


class JsonlSource:
    """Envelopes from a JSONL file (``path``) or an open binary stream (``stream``, e.g. stdin).

    >>> source = JsonlSource("examples/feed.jsonl")             # doctest: +SKIP
    >>> batch = source.read(100, timeout=0.5)

    Blank lines are skipped (but counted in line numbers); a line over ``limit`` bytes becomes a
    message without data, which the loop dead-letters as a bad envelope.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stream: IO[bytes] | None = None,
        follow: bool = False,
        name: str | None = None,
        limit: int = MAX_LINE_BYTES,
        poll_interval: float = POLL_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonlSource takes a path or a stream")
        self.path = os.fspath(path) if path is not None else None
        self.follow = follow and self.path is not None  # a pipe ends when its writer closes it
        self.limit = limit
        self.poll_interval = poll_interval
        self._sleep = sleep
        self.kind = "file" if self.path is not None else "stdin"
        self.description = name or self.path or "-"
        if stream is None:
            assert self.path is not None
            try:
                stream = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise SourceError(
                    f"{self.path}: cannot read: {exc.strerror or exc}", endpoint=self.path
                ) from exc
        self._stream = stream
        self._pipe = _is_pipe(stream)
        self._buf = bytearray()
        self._pos = 0  # start of the unread part of _buf
        self._base = 0  # file offset of _buf[0]
        self._line = 0
        self._skipping = False  # inside a line over the limit
        self._eof = False  # the stream said end (for a followed file: for now)
        self._rotated = False  # the followed path now names another file
        self._exhausted = False

    @property
    def exhausted(self) -> bool:
        """True once the end was reached and the source does not follow the file."""
        return self._exhausted

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` envelopes; waits up to ``timeout`` s for the first (follow)."""
        out: list[Message] = []
        if self._exhausted:
            return out
        deadline = time.monotonic() + timeout
        while len(out) < max_messages:
            message = self._next_message()
            if message is not None:
                out.append(message)
                continue
            if self._fill(0.0 if out else max(deadline - time.monotonic(), 0.0)):
                continue
            if self._eof and not self.follow:
                last = self._last_line()
                if last is not None:
                    out.append(last)
                self._exhausted = True
                break
            if self._eof and self._rotated:
                # The old file is read to its end (again, after the rotation was seen, for
                # lines its writer added late); its last line may lack a newline.
                last = self._last_line()
                if last is not None:
                    out.append(last)
                self._reopen()
                continue
            if out or time.monotonic() >= deadline:
                break
            if self._eof:  # a followed file at its end: was it rotated or truncated?
                self._check_rotation()
                if not self._rotated:
                    self._sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.0)))
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        """Nothing to do: a file has no consumer group."""

    def close(self) -> None:
        """Close the file (a stream given by the caller is left open)."""
        if self.path is not None:
            self._stream.close()

    # -- reading

    def _fill(self, timeout: float) -> bool:
        """Read more bytes into the buffer; False when none came (end, or nothing in time)."""
        if self._pipe and timeout >= 0:
            try:
                ready, _, _ = select.select([self._stream], [], [], timeout)
            except (OSError, ValueError):
                ready = [self._stream]
            if not ready:
                return False
        try:
            read1 = getattr(self._stream, "read1", None)
            chunk = read1(CHUNK) if read1 is not None else self._stream.read(CHUNK)
        except OSError as exc:
            raise SourceError(
                f"{self.description}: read failed: {exc}", endpoint=self.description
            ) from exc
        if not chunk:
            self._eof = True
            return False
        self._eof = False
        if self._pos > CHUNK and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]  # keep the buffer from growing without end
            self._base += self._pos
            self._pos = 0
        self._buf += chunk
        return True

    def _next_message(self) -> Message | None:
        """The next complete line in the buffer as a message (blank lines skipped)."""
        buf = self._buf
        while True:
            end = buf.find(b"\n", self._pos)
            if end < 0:
                if len(buf) - self._pos > self.limit and not self._skipping:
                    return self._too_long()
                if self._skipping:  # drop what we have of the long line
                    self._base += len(buf)
                    del buf[:]
                    self._pos = 0
                return None
            start = self._pos
            self._pos = end + 1
            if self._skipping:
                self._skipping = False
                continue
            self._line += 1
            if end - start > self.limit:
                return self._message(None, start, problem=self._long_problem())
            line = bytes(buf[start:end])
            if not line.strip():
                continue
            return self._message(line, start)

    def _too_long(self) -> Message:
        self._line += 1
        start = self._pos
        self._skipping = True
        message = self._message(None, start, problem=self._long_problem())
        self._base += len(self._buf)
        del self._buf[:]
        self._pos = 0
        return message

    def _long_problem(self) -> str:
        return f"line longer than {self.limit} bytes"

    def _last_line(self) -> Message | None:
        """A final line without a newline, at the end of a file that is not followed."""
        if self._skipping or self._pos >= len(self._buf):
            return None
        start = self._pos
        line = bytes(self._buf[start:])
        self._pos = len(self._buf)
        self._line += 1
        if not line.strip():
            return None
        return self._message(line, start)

    def _message(self, data: bytes | None, start: int, problem: str | None = None) -> Message:
        position = Position(self.kind, self.description, str(self._line), self._base + start)
        return Message(data, position, problem=problem)

    def _check_rotation(self) -> None:
        if self.path is None:
            return
        try:
            current = os.stat(self.path)
            mine = os.fstat(self._stream.fileno())
        except OSError:
            return  # the path is gone for now; keep the open file
        offset = self._base + len(self._buf)
        if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            self._rotated = True  # read the old file to its end once more, then the new one
        elif current.st_size < offset:
            self._stream.seek(0)  # truncated (copytruncate): start again
            self._reset()

    def _reopen(self) -> None:
        assert self.path is not None
        try:
            stream = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError:
            self._rotated = False  # the new file is not there yet: look again later
            return
        self._stream.close()
        self._stream = stream
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._base = 0
        self._skipping = False
        self._eof = False
        self._rotated = False


def _is_pipe(stream: IO[bytes]) -> bool:
    """Whether reads may block (a pipe, a socket, a terminal), so ``select`` must be asked."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, AttributeError, ValueError):
        return False  # BytesIO and friends: never block
    return not stat.S_ISREG(mode)


class JsonlSink:
    """Appends records as JSON lines to ``path`` or to a stream (stdout).

    ``fsync=True`` (the DLQ) makes every ``write`` durable on disk before it returns.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        stream: IO[str] | IO[bytes] | None = None,
        fsync: bool = False,
        name: str | None = None,
    ) -> None:
        if (path is None) == (stream is None):
            raise ValueError("JsonlSink takes a path or a stream")
        self.path = os.fspath(path) if path is not None else None
        self.fsync = fsync
        self.description = name or self.path or "-"
        self._stream = stream
        self._file: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        assert self.path is not None
        existed = os.path.exists(self.path)
        handle = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        if self.fsync and not existed:  # the new file's directory entry must survive a crash too
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return handle

    def write(self, records: Sequence[Record]) -> None:
        """Append every record; flushed (and fsynced with ``fsync=True``) before returning."""
        if not records:
            return
        data = b"".join([r.to_line() for r in records])
        try:
            if self.path is not None:
                if self._file is None:
                    self._file = self._open()
                self._file.write(data)
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
            else:
                self._write_stream(data)
        except (OSError, ValueError) as exc:
            raise SinkError(
                f"{self.description}: write failed: {exc}", endpoint=self.description
            ) from exc

    def _write_stream(self, data: bytes) -> None:
        stream = self._stream
        assert stream is not None
        binary = getattr(stream, "buffer", None)
        if binary is not None:  # sys.stdout: write the bytes as they are
            stream.flush()
            binary.write(data)
            binary.flush()
        elif isinstance(stream, io.TextIOBase):
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
        else:
            stream.write(data)  # type: ignore[arg-type]
            stream.flush()
        if self.fsync:
            # A pipe or a terminal cannot be fsynced; flushed is what it gets.
            with contextlib.suppress(OSError, AttributeError, ValueError):
                os.fsync(stream.fileno())

    def close(self) -> None:
        """Close the file (a stream given by the caller is only flushed)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

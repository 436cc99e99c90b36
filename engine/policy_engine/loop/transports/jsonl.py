"""JSONL files, stdin and stdout as a ``Source`` and ``Sink`` (the embedded default).

A file source reads envelopes line by line and ends at the end of the file, unless it follows
the file (``follow=True``: ``consume --follow``), when it waits for more lines, and reopens the
path when the file is rotated (renamed away and created again) or truncated. Acknowledging is a
no-op: a file has no consumer group, so after a crash a file is read again from its start
(at-least-once: downstream may see duplicates, never gaps).

A sink appends one JSON object per line (``encode_line``). A file is written unbuffered (each
``write`` goes to the file before it returns, and a failed one leaves nothing behind in memory for
``close`` to fail on again); a DLQ sink is also fsynced (``fsync=True``), so a dead letter is on
disk before its message counts as handled. A DLQ file is read back for ``redrive`` by
``JsonlDeadLetters``, which rewrites it without the redriven lines.

This is the transport of plain paths and ``-`` (``TRANSPORT``, see ``loop.endpoints``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import select
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, assert_never

from policy_engine.envelope import MAX_LINE_BYTES
from policy_engine.errors import ConfigError, SinkError, SourceError
from policy_engine.loop.endpoints import scheme_of
from policy_engine.loop.protocols import (
    AsyncSink,
    AsyncSource,
    SinkOptions,
    SourceOptions,
    ThreadedSink,
    ThreadedSource,
    Transport,
)
from policy_engine.loop.records import (
    DATA_FIELD,
    DeadLetter,
    Message,
    Passed,
    Position,
    Record,
    Redriven,
    StoredDeadLetter,
    UnreadableDeadLetter,
)
from policy_engine.loop.transports.wire import (
    compact_json,
    envelope_with_decision,
    field_bytes,
    field_value,
    text_or_base64,
)

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

    def position(self) -> dict[str, Any]:
        """Where reading is, for ``/status``: the byte ``offset`` just past the last line handed
        out and that line's number (``line``); after a rotation, in the new file."""
        return {"offset": self._base + self._pos, "line": self._line}

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

    ``fsync=True`` (the DLQ) makes every ``write`` durable on disk before it returns. A write
    that fails part way (a disk that fills up) leaves part of a line; the next write ends that
    line first, so the records it writes stay whole lines (the fragment is one unreadable line).
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
        self._file: io.FileIO | None = None
        self._line_open = False  # a failed write left a line without its newline

    def _open(self) -> io.FileIO:
        assert self.path is not None
        existed = os.path.exists(self.path)
        # Unbuffered: nothing written waits in memory, so close() has nothing left to flush.
        handle = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()
        if self.fsync and not existed:  # the new file's directory entry must survive a crash too
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return handle

    def write(self, records: Sequence[Record]) -> None:
        """Append every record; flushed (and fsynced with ``fsync=True``) before returning."""
        if not records:
            return
        data = b"".join([encode_line(r) for r in records])
        try:
            if self.path is not None:
                if self._file is None:
                    self._file = self._open()
                self._append(self._file, data)
                if self.fsync:
                    os.fsync(self._file.fileno())
            else:
                self._write_stream(data)
        except (OSError, ValueError) as exc:
            raise SinkError(
                f"{self.description}: write failed: {exc}", endpoint=self.description
            ) from exc

    def _append(self, handle: io.FileIO, data: bytes) -> None:
        """Write all of ``data`` (a raw write may take part of it), ending a line a failed
        write left open first."""
        if self._line_open:
            data = b"\n" + data
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                count = handle.write(view[done:])
                if not count:
                    raise OSError(f"the file took none of {len(data) - done} bytes")
                done += count
        except OSError:
            if done:
                self._line_open = not data[:done].endswith(b"\n")
            raise
        self._line_open = False

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


# ---------------------------------------------------------------------------- the wire format


def encode_line(record: Record) -> bytes:
    """``record`` as one JSONL line (with its newline).

    - ``Passed``: the envelope, its bytes unchanged, with a ``"decision"`` object spliced in
      before the closing brace;
    - ``DeadLetter``: the context plus the original bytes (``original``, or ``original_base64``
      for bytes that are not UTF-8) and a broker entry's other fields (``fields``);
    - ``Redriven``: the original envelope line as it was read.
    """
    match record:
        case Passed(message=message, decision=decision):
            return envelope_with_decision(message.data or b"", decision) + b"\n"
        case DeadLetter(message=message, context=context):
            line = dict(context)
            line.update(text_or_base64("original", message.data or b""))
            fields = message.fields
            if fields:
                others = {k: v for k, v in fields.items() if k != DATA_FIELD}
                if others:
                    line["fields"] = {
                        k.decode("utf-8", "replace"): field_value(v) for k, v in others.items()
                    }
            return compact_json(line) + b"\n"
        case Redriven(message=message):
            return (message.data or b"").rstrip(b"\r\n") + b"\n"
        case _:
            assert_never(record)


def parse_dead_letter_line(line: bytes, id: str) -> StoredDeadLetter:
    """A JSONL DLQ line read back; ``ValueError`` for a line that is not a dead-letter record."""
    record = json.loads(line)
    if not isinstance(record, dict) or "reason" not in record:
        raise ValueError("not a dead-letter record (no 'reason')")
    if "original" in record:
        data: bytes | None = field_bytes(record.pop("original"))
    elif "original_base64" in record:
        try:
            data = base64.b64decode(record.pop("original_base64"), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"original_base64 is not base64: {exc}") from None
    else:
        raise ValueError("a dead-letter record has 'original' or 'original_base64'")
    fields: dict[bytes, bytes] | None = None
    extra = record.pop("fields", None)
    if isinstance(extra, dict):
        fields = {DATA_FIELD: data or b""}
        fields.update({k.encode("utf-8"): field_bytes(v) for k, v in extra.items()})
    return StoredDeadLetter(id=id, data=data, fields=fields, context=record)


class JsonlDeadLetters:
    """A JSONL DLQ file read back for ``redrive``; ``remove`` rewrites it without the removed
    lines (a temporary file, fsynced, renamed over it), keeping every other line as it was.

    Rewriting must not race a ``consume`` appending to the file: redrive a file DLQ while no
    loop writes to it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = path
        # Every line as read, with its id when it is a dead letter that may be removed.
        self._lines: list[tuple[str | None, bytes]] = []

    def read(self) -> Iterator[StoredDeadLetter | UnreadableDeadLetter]:
        """Every non-blank line: a dead letter, or an unreadable record."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise SourceError(
                f"{self.path}: cannot read: {exc.strerror or exc}", endpoint=self.path
            ) from exc
        self._lines = []
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    self._lines.append((None, line))
                    continue
                try:
                    letter = parse_dead_letter_line(line, str(number))
                except ValueError as exc:
                    self._lines.append((None, line))
                    yield UnreadableDeadLetter(str(number), str(exc))
                    continue
                self._lines.append((letter.id, line))
                yield letter

    def remove(self, letters: Sequence[StoredDeadLetter]) -> int:
        """Rewrite the file without the lines of ``letters``."""
        if not letters:
            return 0
        gone = {letter.id for letter in letters}
        _rewrite(
            self.path, [line for kept, line in self._lines if kept is None or kept not in gone]
        )
        return len(gone)

    def close(self) -> None:
        """Forget the lines read."""
        self._lines = []


def _rewrite(path: str, lines: list[bytes]) -> None:
    """Replace ``path`` with ``lines``: a temporary file, fsynced, renamed over it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dlq-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            for line in lines:
                handle.write(line if line.endswith(b"\n") else line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SinkError(f"{path}: rewriting the DLQ failed: {exc}", endpoint=path) from exc


# ---------------------------------------------------------------------------- the transport


class JsonlTransport:
    """Plain paths and ``-``: ``JsonlSource`` and ``JsonlSink``; the asyncio forms run them in
    worker threads."""

    def open_message_source(self, text: str, options: SourceOptions) -> JsonlSource:
        """A file (``follow`` tails it) or stdin for ``-``."""
        if options.group or options.consumer:
            raise ConfigError(f"{text}: --group and --consumer apply to a redis:// source only")
        if text == "-":
            return JsonlSource(stream=options.stdin, name="-")
        return JsonlSource(text, follow=options.follow)

    def open_async_message_source(self, text: str, options: SourceOptions) -> AsyncSource:
        """``open_message_source`` read in a worker thread."""
        return ThreadedSource(self.open_message_source(text, options))

    def open_message_sink(self, text: str, options: SinkOptions) -> JsonlSink:
        """Appends to a file, or writes to stdout for ``-``."""
        if text == "-":
            return JsonlSink(stream=options.stdout, fsync=options.fsync, name="-")
        return JsonlSink(text, fsync=options.fsync)

    def open_async_message_sink(self, text: str, options: SinkOptions) -> AsyncSink:
        """``open_message_sink`` written in a worker thread."""
        return ThreadedSink(self.open_message_sink(text, options))

    def describe(self, text: str) -> str:
        """The path itself (a path holds no credentials)."""
        return text

    def default_dlq(self, source: str) -> str | None:
        """``None``: a file's or stdin's DLQ must be named."""
        return None

    def open_dead_letters(self, text: str) -> JsonlDeadLetters:
        """The DLQ file ``text``."""
        return JsonlDeadLetters(text)

    def return_address(self, source: Mapping[str, Any], dlq: str) -> str | None:
        """The source file of a line read from a file; ``None`` for stdin and the rest."""
        stream = source.get("stream")
        if source.get("kind") != "file" or not isinstance(stream, str) or not stream:
            return None
        # A file named like "-" or "x://y" must not be read as stdout or a URL when reopened.
        if stream == "-" or scheme_of(stream) is not None:
            return os.path.join(".", stream)
        return stream


#: The transport ``loop.endpoints`` uses for plain paths and ``-``.
TRANSPORT: Transport = JsonlTransport()

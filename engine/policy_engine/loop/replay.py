"""``replay-dlq``: re-evaluate dead letters and publish again those that now pass.

After a producer is fixed, a schema corrected or a policy relaxed, the messages the DLQ holds
are evaluated again with the policies and schemas in force. Those that are no longer rejected
(and are envelopes at all) are published, with their original bytes, back to where they came
from: the source stream recorded in the dead letter (on the DLQ's Redis server) or the source
file (appended), or to ``target`` when one is given. Then they are removed from the DLQ: the
entries are ``XDEL``-ed, a DLQ file is rewritten without their lines (written to a temporary
file, fsynced, renamed over). Publishing comes first, so a crash in between duplicates and never
loses. ``dry_run=True`` only reports; ``keep=True`` publishes and leaves the DLQ alone.

Rewriting a DLQ file must not race a ``consume`` appending to it: replay a file DLQ while no
loop writes to it (Redis DLQs have no such restriction).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

import redis
from redis.exceptions import RedisError

from policy_engine.decision import Action
from policy_engine.engine import PolicyEngine
from policy_engine.envelope import EnvelopeError, parse_envelope
from policy_engine.errors import ConfigError, SinkError, SourceError
from policy_engine.loop.endpoints import open_sink
from policy_engine.loop.jsonl import JsonlSink, _fsync_dir
from policy_engine.loop.protocols import Sink
from policy_engine.loop.records import (
    Message,
    Position,
    StoredDeadLetter,
    parse_dead_letter_entry,
    parse_dead_letter_line,
)
from policy_engine.loop.redis_streams import (
    RedisEndpoint,
    RedisStreamSink,
    is_redis_url,
    parse_redis_url,
)

#: Entries read from a Redis DLQ per ``XRANGE``.
PAGE = 500


@dataclass
class ReplayReport:
    """What ``replay_dead_letters`` found and did."""

    dry_run: bool
    total: int = 0
    passing: int = 0
    still_rejected: int = 0
    bad: int = 0
    unreadable: int = 0
    published: int = 0
    removed: int = 0
    targets: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``replay-dlq --json``)."""
        return {
            "dry_run": self.dry_run,
            "total": self.total,
            "passing": self.passing,
            "still_rejected": self.still_rejected,
            "bad_envelopes": self.bad,
            "unreadable": self.unreadable,
            "published": self.published,
            "removed": self.removed,
            "actions": dict(sorted(self.actions.items())),
            "targets": dict(sorted(self.targets.items())),
        }

    def summary(self) -> str:
        """What a person reads at the end of ``replay-dlq``."""
        verb = "would be published" if self.dry_run else "published"
        lines = [
            f"{self.total} dead letter(s): {self.passing} now pass, "
            f"{self.still_rejected} still rejected, {self.bad} not envelopes, "
            f"{self.unreadable} unreadable"
        ]
        for target, count in sorted(self.targets.items()):
            lines.append(f"  {count} {verb} to {target}")
        if not self.dry_run:
            lines.append(f"{self.published} published, {self.removed} removed from the DLQ")
        return "\n".join(lines) + "\n"


class _Republished:
    """A dead letter going back to a source: its original bytes or fields, unchanged."""

    def __init__(self, letter: StoredDeadLetter) -> None:
        self.letter = letter
        self.message = Message(letter.data, Position("dlq", "", letter.id))

    def to_line(self) -> bytes:
        return self.letter.line()

    def to_fields(self) -> dict[bytes, bytes]:
        return self.letter.entry_fields()


def _read_file(path: str) -> Iterator[tuple[str, bytes, StoredDeadLetter | None]]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}", endpoint=path) from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                yield str(number), line, None
                continue
            try:
                yield str(number), line, parse_dead_letter_line(line, str(number))
            except ValueError:
                yield str(number), line, None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_stream(client: redis.Redis, stream: str) -> Iterator[StoredDeadLetter]:
    start = "-"
    while True:
        entries = client.xrange(stream, min=start, max="+", count=PAGE)
        if not entries:
            return
        for entry_id, fields in entries:
            yield parse_dead_letter_entry(_text(entry_id), cast(dict[bytes, bytes], fields or {}))
        last = _text(entries[-1][0])
        millis, _, seq = last.partition("-")
        start = f"{millis}-{int(seq) + 1}"
        if len(entries) < PAGE:
            return


def _passes(engine: PolicyEngine, letter: StoredDeadLetter, report: ReplayReport) -> bool:
    if letter.data is None:
        report.bad += 1
        return False
    try:
        envelope = parse_envelope(letter.data)
    except EnvelopeError:
        report.bad += 1
        return False
    decision = engine.evaluate(envelope.schema, envelope.payload, envelope.key, envelope.track)
    if decision.action is Action.REJECTED:
        report.still_rejected += 1
        return False
    report.passing += 1
    report.actions[decision.action.value] += 1
    return True


def _source_target(letter: StoredDeadLetter, dlq_endpoint: RedisEndpoint | None) -> str:
    source = letter.context.get("source")
    kind = source.get("kind") if isinstance(source, dict) else None
    stream = source.get("stream") if isinstance(source, dict) else None
    if kind == "redis" and isinstance(stream, str) and stream and dlq_endpoint is not None:
        return f"redis:{stream}"
    if kind == "file" and isinstance(stream, str) and stream:
        return f"file:{stream}"
    raise ConfigError(
        f"dead letter {letter.id} came from {kind or 'an unknown source'}"
        f"{' ' + stream if isinstance(stream, str) else ''}: name where to publish it with --to"
    )


def replay_dead_letters(
    engine: PolicyEngine,
    dlq: str,
    *,
    target: str | None = None,
    dry_run: bool = False,
    keep: bool = False,
    stdout: IO[str] | IO[bytes] | None = None,
) -> ReplayReport:
    """Re-evaluate every dead letter in ``dlq`` (a JSONL file or a ``redis://`` stream) and
    publish those that now pass (see the module docstring)."""
    report = ReplayReport(dry_run=dry_run)
    if is_redis_url(dlq):
        _replay_stream(engine, parse_redis_url(dlq), target, report, keep=keep, stdout=stdout)
    else:
        _replay_file(engine, dlq, target, report, keep=keep, stdout=stdout)
    return report


def _open_target(
    name: str,
    dlq_endpoint: RedisEndpoint | None,
    client: redis.Redis | None,
    stdout: IO[str] | IO[bytes] | None,
) -> Sink:
    if name.startswith("redis:") and dlq_endpoint is not None:
        stream = name[len("redis:") :]
        endpoint = RedisEndpoint(url=dlq_endpoint.url, stream=stream)
        return RedisStreamSink(endpoint, client=client)
    if name.startswith("file:"):
        return JsonlSink(name[len("file:") :], fsync=True)
    return open_sink(name, stdout=stdout if stdout is not None else io.BytesIO(), fsync=True)


def _publish(
    groups: dict[str, list[StoredDeadLetter]],
    report: ReplayReport,
    dlq_endpoint: RedisEndpoint | None,
    client: redis.Redis | None,
    stdout: IO[str] | IO[bytes] | None,
) -> None:
    for name, letters in groups.items():
        sink = _open_target(name, dlq_endpoint, client, stdout)
        try:
            sink.write([_Republished(letter) for letter in letters])
        finally:
            if client is None or not isinstance(sink, RedisStreamSink):
                sink.close()
        report.published += len(letters)


def _replay_stream(
    engine: PolicyEngine,
    endpoint: RedisEndpoint,
    target: str | None,
    report: ReplayReport,
    *,
    keep: bool,
    stdout: IO[str] | IO[bytes] | None,
) -> None:
    client = redis.Redis.from_url(endpoint.url, socket_timeout=30.0, socket_connect_timeout=5.0)
    try:
        groups: dict[str, list[StoredDeadLetter]] = {}
        try:
            for letter in _read_stream(client, endpoint.stream):
                report.total += 1
                if _passes(engine, letter, report):
                    name = target or _source_target(letter, endpoint)
                    groups.setdefault(name, []).append(letter)
                    report.targets[_shown(name, endpoint)] += 1
        except RedisError as exc:
            raise SourceError(
                f"{endpoint.description}: reading the DLQ failed: {exc}",
                endpoint=endpoint.description,
            ) from exc
        if report.dry_run:
            return
        _publish(groups, report, endpoint, client, stdout)
        if keep:
            return
        ids = [letter.id for letters in groups.values() for letter in letters]
        try:
            for i in range(0, len(ids), PAGE):
                report.removed += int(client.xdel(endpoint.stream, *ids[i : i + PAGE]))
        except RedisError as exc:
            raise SinkError(
                f"{endpoint.description}: removing replayed entries failed: {exc}",
                endpoint=endpoint.description,
            ) from exc
    finally:
        client.close()


def _replay_file(
    engine: PolicyEngine,
    path: str,
    target: str | None,
    report: ReplayReport,
    *,
    keep: bool,
    stdout: IO[str] | IO[bytes] | None,
) -> None:
    groups: dict[str, list[StoredDeadLetter]] = {}
    kept: list[bytes] = []
    for _number, line, letter in _read_file(path):
        if letter is None:
            if line.strip():
                report.total += 1
                report.unreadable += 1
            kept.append(line)
            continue
        report.total += 1
        if _passes(engine, letter, report):
            name = target or _source_target(letter, None)
            groups.setdefault(name, []).append(letter)
            report.targets[_shown(name, None)] += 1
        else:
            kept.append(line)
    if report.dry_run:
        return
    _publish(groups, report, None, None, stdout)
    if keep or not groups:
        return
    _rewrite(path, kept)
    report.removed = sum(len(v) for v in groups.values())


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


def _shown(name: str, endpoint: RedisEndpoint | None) -> str:
    if name.startswith("redis:") and endpoint is not None:
        return RedisEndpoint(url=endpoint.url, stream=name[len("redis:") :]).description
    if name.startswith("file:"):
        return name[len("file:") :]
    if is_redis_url(name):
        return parse_redis_url(name).description
    return name

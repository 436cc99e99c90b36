"""``redrive``: re-evaluate dead letters and send those that now pass back where they came from.

After a producer is fixed, a schema corrected or a policy relaxed, the messages the DLQ holds
are evaluated again with the policies and schemas in force. Those that are no longer rejected
(and are envelopes at all) are published, with their original bytes, back to where they came
from: the source recorded in the dead letter (a stream on the DLQ's server, or the source file,
appended), or to ``target`` when one is given. Then they are removed from the DLQ (a stream's
entries deleted, a file rewritten without their lines). Publishing comes first, so a crash in
between duplicates and never loses. ``dry_run=True`` only reports; ``keep=True`` publishes and
leaves the DLQ alone.

Reading and cleaning the DLQ, and publishing, go through the transport table
(``loop.endpoints``), so any registered transport can be redriven. Rewriting a DLQ file must not
race a ``consume`` appending to it: redrive a file DLQ while no loop writes to it (Redis DLQs
have no such restriction).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from policy_engine.engine import PolicyEngine
from policy_engine.envelope import EnvelopeError, parse_envelope
from policy_engine.errors import ConfigError
from policy_engine.loop.endpoints import (
    default_transport,
    describe_endpoint,
    open_dead_letters,
    open_message_sink,
    transport_for,
)
from policy_engine.loop.records import StoredDeadLetter, UnreadableDeadLetter
from policy_engine.modes import Action


@dataclass
class RedriveReport:
    """What ``redrive_dead_letters`` found and did."""

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
        """The JSON form (``redrive --json``)."""
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
        """What a person reads at the end of ``redrive``."""
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


def redrive_dead_letters(
    engine: PolicyEngine,
    dlq: str,
    *,
    target: str | None = None,
    dry_run: bool = False,
    keep: bool = False,
    stdout: IO[str] | IO[bytes] | None = None,
) -> RedriveReport:
    """Re-evaluate every dead letter in the DLQ endpoint ``dlq`` and publish those that now
    pass (see the module docstring). ``target`` is an endpoint to publish them all to instead;
    ``stdout`` is what a target of ``-`` writes to."""
    report = RedriveReport(dry_run=dry_run)
    store = open_dead_letters(dlq)
    try:
        groups: dict[str, list[StoredDeadLetter]] = {}
        for letter in store.read():
            report.total += 1
            if isinstance(letter, UnreadableDeadLetter):
                report.unreadable += 1
                continue
            if _passes(engine, letter, report):
                name = target or _return_address(letter, dlq)
                groups.setdefault(name, []).append(letter)
                report.targets[describe_endpoint(name)] += 1
        if dry_run:
            return report
        for name, letters in groups.items():
            sink = open_message_sink(
                name, stdout=stdout if stdout is not None else io.BytesIO(), fsync=True
            )
            try:
                sink.write([letter.redriven(store.description) for letter in letters])
            finally:
                sink.close()
            report.published += len(letters)
        if not keep:
            report.removed = store.remove([letter for group in groups.values() for letter in group])
    finally:
        store.close()
    return report


def _passes(engine: PolicyEngine, letter: StoredDeadLetter, report: RedriveReport) -> bool:
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


def _return_address(letter: StoredDeadLetter, dlq: str) -> str:
    """Where ``letter`` goes back to: asked of the DLQ's transport (a broker stream on the same
    server), then of the one for plain paths (a file names itself)."""
    source = letter.context.get("source")
    if isinstance(source, dict):
        for transport in (transport_for(dlq), default_transport()):
            address = transport.return_address(source, dlq)
            if address:
                return address
    kind = source.get("kind") if isinstance(source, dict) else None
    stream = source.get("stream") if isinstance(source, dict) else None
    raise ConfigError(
        f"dead letter {letter.id} came from {kind or 'an unknown source'}"
        f"{' ' + stream if isinstance(stream, str) else ''}: name where to publish it with --to"
    )

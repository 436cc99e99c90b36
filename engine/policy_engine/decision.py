"""What the engine decides about one payload: plain, slotted data with no I/O.

A ``Decision`` is returned for every payload, valid or not; faults (a bad payload, a registry
that cannot be reached) come back as data with a reason, never as exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from json import JSONEncoder
from typing import TYPE_CHECKING, Any, Final

from policy_engine.core.bucket import (
    bucket_for,
    canary_threshold,
    key_from_payload,
    payload_hash_key,
)
from policy_engine.modes import Action, Mode

if TYPE_CHECKING:
    from policy_engine.core.resolve import EffectiveRule, RuleRef
    from policy_engine.core.route import KeySource, Route

#: Most violations a Decision carries; validation stops collecting after this many.
MAX_VIOLATIONS = 20

# An array index in a JSON Pointer: "0" or digits without a leading zero (RFC 6901); "007" is
# an object member's name, not an index.
_INDEX_SEGMENT = re.compile(r"(?<=/)(?:0|[1-9][0-9]*)(?=/|$)")


def fold_indices(pointer: str) -> str:
    """A violation path with its array indices folded to ``*``, so the failures of every item of
    a list count together (metrics labels and drift reports both group by it).

    >>> fold_indices("/bars/3/close"), fold_indices("/a/007/b")
    ('/bars/*/close', '/a/007/b')
    """
    return _INDEX_SEGMENT.sub("*", pointer)


#: The JSON encoder of a Decision's pieces: compact, non-ASCII kept as is (as ``to_dict`` is
#: written by the CLI and the consume loop's sinks).
_encode: Final = JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: Most entries ``_JSON_PIECES`` holds; it starts afresh when full (a reload's new routes, or
#: changing guardrail notes, make new keys; the old ones are not needed again).
_MAX_JSON_PIECES: Final = 1024
#: ``Decision.to_json``'s encoded pieces by everything they depend on (see ``_json_pieces``).
_JSON_PIECES: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, bytes]] = {}


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a payload breaks its schema.

    ``path`` is a JSON Pointer into the payload (``""`` is the payload itself), ``keyword`` the
    JSON Schema keyword that failed (``minimum``, ``required``, ...).
    """

    path: str
    keyword: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form, as ``validate --json`` prints it."""
        return {"path": self.path, "keyword": self.keyword, "message": self.message}


class Decision:
    """The outcome of evaluating one payload (docs/python-api.md, "Decision").

    ``mode`` is the mode this payload got; ``valid`` is ``None`` when it was not validated (mode
    off, or no usable schema). When the canary did not need the key (canary 0 or 100, or mode
    equal to baseline), ``bucket`` and ``key_source`` are worked out on first access, which keeps
    key lookup and hashing off the hot path. The Decision then holds a reference to the payload
    until the bucket is read: mutating the payload in between changes the bucket reported (never
    the decision itself, which did not depend on it).
    """

    __slots__ = (
        "_bucket",
        "_key",
        "_key_source",
        "_note",
        "_payload",
        "_route",
        "action",
        "canary",
        "mode",
        "valid",
        "violations",
    )

    def __init__(
        self,
        route: Route[Any],
        mode: Mode,
        valid: bool | None,
        action: Action,
        violations: tuple[Violation, ...],
        canary: float,
        key: str | None,
        key_source: KeySource | None,
        bucket: int,
        payload: Any,
        note: str,
    ) -> None:
        self._route = route
        self.mode = mode
        self.valid = valid
        self.action = action
        self.violations = violations
        self.canary = canary
        self._key = key
        self._key_source = key_source
        self._bucket = bucket
        self._payload = payload
        self._note = note

    @property
    def route(self) -> Route[Any]:
        """What every decision of this (schema, track) under this policy set shares (the rule,
        the canary state, the policy checksum): a ``policy_engine.core.route.Route``."""
        return self._route

    @property
    def schema(self) -> str:
        """The schema name the payload was evaluated as."""
        return self._route.schema

    @property
    def track(self) -> str:
        """The track it was evaluated on (given, preferred or fallback)."""
        return self._route.track

    @property
    def rule(self) -> RuleRef | None:
        """Where the rule that decided is written; ``None`` for the global default."""
        return self._route.rule

    @property
    def effective_rule(self) -> EffectiveRule:
        """The resolved rule that decided (inheritance applied): mode, baseline, canary, ..."""
        return self._route.effective

    @property
    def policy_checksum(self) -> str:
        """The checksum of the policy set that decided."""
        return self._route.checksum

    def _resolve_key(self) -> None:
        key = None
        if self._route.key_path is not None:
            key = key_from_payload(self._payload, self._route.key_path)
        if key is None:
            self._key, self._key_source = payload_hash_key(self._payload), "hash"
        else:
            self._key, self._key_source = key, "payload"

    @property
    def key_source(self) -> KeySource:
        """Where the canary key came from: ``argument``, ``payload`` (rule's path) or ``hash``."""
        if self._key_source is None:
            self._resolve_key()
        assert self._key_source is not None
        return self._key_source

    @property
    def key(self) -> str:
        """The canary key as text (the argument, the value at the rule's key path, or a hash)."""
        if self._key is None:
            self._resolve_key()
        assert self._key is not None
        return self._key

    @property
    def bucket(self) -> int:
        """The payload's canary bucket, 0..9999."""
        if self._bucket < 0:
            if self._key is None:
                self._resolve_key()
            assert self._key is not None
            self._bucket = bucket_for(self._route.salt_prefix, self._key)
            self._payload = None  # the key was the only reason to keep it
        return self._bucket

    @property
    def in_canary(self) -> bool:
        """Whether the key falls inside the canary in force."""
        return self.bucket < canary_threshold(self.canary)

    @property
    def reason(self) -> str:
        """A sentence saying why the payload got its mode and action."""
        if self.rule is None:
            return self._reason_around_bucket(False)[0]
        before, after = self._reason_around_bucket(self.in_canary)
        return f"{before}{self.bucket}{after}"

    def _reason_around_bucket(self, inside: bool) -> tuple[str, str]:
        """``reason`` as the text before and after the bucket number; with no rule (no bucket
        in it) the whole sentence and ``""``. One place for the sentence, which ``to_json``
        encodes once per outcome and fills with each payload's bucket."""
        rule = self.rule
        note = f"; {self._note}" if self._note else ""
        if rule is None:
            return f"no policy rule matches; global default {self.mode}{note}", ""
        side = "inside" if inside else "outside"
        return (
            f"rule {rule}: bucket ",
            f" is {side} canary {self.canary:g}% -> {self.mode}{note}",
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: what ``validate --json`` prints and ``consume`` attaches to a message
        (``to_json`` writes the same object as compact JSON)."""
        rule = self.rule
        return {
            "schema": self.schema,
            "track": self.track,
            "mode": self.mode.value,
            "valid": self.valid,
            "action": self.action.value,
            "violations": [v.to_dict() for v in self.violations],
            "rule": None if rule is None else rule.to_dict(),
            "bucket": self.bucket,
            "canary": self.canary,
            "key_source": self.key_source,
            "policy_checksum": self.policy_checksum,
            "reason": self.reason,
        }

    def to_json(self) -> bytes:
        """``to_dict()`` as compact UTF-8 JSON (non-ASCII kept), byte for byte what
        ``json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":"))`` writes, at a
        fraction of the cost: the consume loop writes it for every message passed on.

        Of a decision's fields only the bucket and the violations differ between payloads of
        one outcome (route, mode, validity, action, canary, key source, side of the canary,
        note); everything else is encoded once per outcome and kept (``_json_pieces``).

        >>> decision.to_json()  # doctest: +SKIP
        b'{"schema":"shop.Order","track":"v1","mode":"strict","valid":true,...}'
        """
        bucket = self.bucket  # first: it resolves the key, and with it key_source
        route = self._route
        inside = self.rule is not None and bucket < canary_threshold(self.canary)
        key = (
            route.schema,
            route.track,
            route.checksum,
            route.rule,
            self.mode,
            self.valid,
            self.action,
            self.canary,
            self.key_source,
            inside,
            self._note,
        )
        pieces = _JSON_PIECES.get(key)
        if pieces is None:
            pieces = self._json_pieces(inside)
            if len(_JSON_PIECES) >= _MAX_JSON_PIECES:
                _JSON_PIECES.clear()
            _JSON_PIECES[key] = pieces
        head, middle, reason_head, tail = pieces
        violations = self.violations
        listed = _encode([v.to_dict() for v in violations]).encode() if violations else b"[]"
        digits = str(bucket).encode()
        if reason_head:
            return b"".join((head, listed, middle, digits, reason_head, digits, tail))
        return b"".join((head, listed, middle, digits, tail))

    def _json_pieces(self, inside: bool) -> tuple[bytes, bytes, bytes, bytes]:
        """The encoded text of ``to_json`` around the violations and the bucket (which shows
        twice, the second time inside the reason; ``reason_head`` is empty when it does not):
        ``head [violations] middle bucket reason_head bucket tail``."""
        rule = self.rule
        head = (
            f'{{"schema":{_encode(self.schema)},"track":{_encode(self.track)},'
            f'"mode":{_encode(self.mode.value)},"valid":{_encode(self.valid)},'
            f'"action":{_encode(self.action.value)},"violations":'
        )
        middle = f',"rule":{_encode(None if rule is None else rule.to_dict())},"bucket":'
        after_bucket = (
            f',"canary":{_encode(self.canary)},"key_source":{_encode(self.key_source)},'
            f'"policy_checksum":{_encode(self.policy_checksum)},"reason":'
        )
        before, after = self._reason_around_bucket(inside)
        if rule is None:
            return (
                head.encode(),
                middle.encode(),
                b"",
                f"{after_bucket}{_encode(before)}}}".encode(),
            )
        # JSON escapes a string character by character: the reason's text before the bucket,
        # the digits, and the text after it encode apart as they would together.
        reason_head = f"{after_bucket}{_encode(before)[:-1]}"
        tail = f"{_encode(after)[1:]}}}"
        return head.encode(), middle.encode(), reason_head.encode(), tail.encode()

    def __repr__(self) -> str:
        return (
            f"Decision(schema={self.schema!r}, track={self.track!r}, mode={self.mode.value!r}, "
            f"action={self.action.value!r}, violations={len(self.violations)})"
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a key of a schema/track gets its mode at a moment (``PolicyEngine.explain``).

    ``bucket`` and ``in_canary`` are ``None`` when no key was given; ``mode`` is then the mode
    the rule gives inside the canary.
    """

    schema: str
    track: str
    mode: Mode
    baseline: Mode
    canary: float
    bucket: int | None
    in_canary: bool | None
    rule: RuleRef | None
    reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as ``explain --json`` prints it."""
        return {
            "schema": self.schema,
            "track": self.track,
            "mode": self.mode.value,
            "baseline": self.baseline.value,
            "canary": self.canary,
            "bucket": self.bucket,
            "in_canary": self.in_canary,
            "rule": None if self.rule is None else self.rule.to_dict(),
            "reason": self.reason,
        }


__all__ = ["MAX_VIOLATIONS", "Decision", "Explanation", "Violation", "fold_indices"]

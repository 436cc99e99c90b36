"""What the engine decides about one payload: plain, slotted data with no I/O.

A ``Decision`` is returned for every payload, valid or not; faults (a bad payload, a registry
that cannot be reached) come back as data with a reason, never as exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from engine.policy.bucket import bucket_for, payload_hash_key

KeySource = Literal["argument", "payload", "hash"]

#: Most violations a Decision carries (SPEC §4); validation stops collecting after this many.
MAX_VIOLATIONS = 20


class Mode(StrEnum):
    """How strictly a payload is treated, weakest first."""

    OFF = "off"
    WARN = "warn"
    STRICT = "strict"

    @property
    def rank(self) -> int:
        """0 for off, 1 for warn, 2 for strict: larger is stricter."""
        return _RANK[self]

    def step_down(self) -> Mode:
        """The default baseline of this mode: strict→warn, warn→off, off→off."""
        return _STEP_DOWN[self]

    def cap(self, ceiling: Mode | None) -> Mode:
        """This mode, but no stricter than ``ceiling`` (``None`` means no ceiling)."""
        if ceiling is None or _RANK[self] <= _RANK[ceiling]:
            return self
        return ceiling


_RANK = {Mode.OFF: 0, Mode.WARN: 1, Mode.STRICT: 2}
_STEP_DOWN = {Mode.STRICT: Mode.WARN, Mode.WARN: Mode.OFF, Mode.OFF: Mode.OFF}


class Action(StrEnum):
    """What happened to the payload (SPEC §5)."""

    ACCEPTED = "accepted"  # validated and valid
    LOGGED = "logged"  # invalid, warn mode: logged and passed on
    REJECTED = "rejected"  # invalid (or no schema with on_registry_error=reject), strict mode
    SKIPPED = "skipped"  # mode off, or no usable schema with on_registry_error=allow


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
        """The JSON form (SPEC §6)."""
        return {"path": self.path, "keyword": self.keyword, "message": self.message}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Where the rule that decided is written: the file and the line of its schema key."""

    file: str
    line: int
    pattern: str

    def to_dict(self) -> dict[str, object]:
        """The JSON form (SPEC §6): file and line."""
        return {"file": self.file, "line": self.line}

    def __str__(self) -> str:
        return f"{self.pattern} ({self.file}:{self.line})"


class Decision:
    """The outcome of evaluating one payload (SPEC §5).

    ``mode`` is the mode this payload got; ``valid`` is ``None`` when it was not validated (mode
    off, or no usable schema). ``bucket`` is computed on first access when the canary did not need
    it (canary 0 or 100), which keeps hashing off the hot path.
    """

    __slots__ = (
        "_bucket",
        "_key",
        "_note",
        "_payload",
        "_salt_prefix",
        "action",
        "canary",
        "key_source",
        "mode",
        "policy_checksum",
        "rule",
        "schema",
        "track",
        "valid",
        "violations",
    )

    def __init__(
        self,
        schema: str,
        track: str,
        mode: Mode,
        valid: bool | None,
        action: Action,
        violations: tuple[Violation, ...],
        rule: RuleRef | None,
        canary: float,
        key_source: KeySource,
        policy_checksum: str,
        bucket: int,
        salt_prefix: str,
        key: str | None,
        payload: Any,
        note: str,
    ) -> None:
        self.schema = schema
        self.track = track
        self.mode = mode
        self.valid = valid
        self.action = action
        self.violations = violations
        self.rule = rule
        self.canary = canary
        self.key_source = key_source
        self.policy_checksum = policy_checksum
        self._bucket = bucket
        self._salt_prefix = salt_prefix
        self._key = key
        self._payload = payload
        self._note = note

    @property
    def bucket(self) -> int:
        """The payload's canary bucket, 0..9999."""
        if self._bucket < 0:
            key = self._key if self._key is not None else payload_hash_key(self._payload)
            self._bucket = bucket_for(self._salt_prefix, key)
            self._payload = None  # the hash was the only reason to keep it
        return self._bucket

    @property
    def in_canary(self) -> bool:
        """Whether the key falls inside the canary in force."""
        return self.bucket < round(self.canary * 100)

    @property
    def reason(self) -> str:
        """A sentence saying why the payload got its mode and action."""
        if self.rule is None:
            why = f"no policy rule matches; global default {self.mode}"
        else:
            side = "inside" if self.in_canary else "outside"
            why = (
                f"rule {self.rule}: bucket {self.bucket} is {side} canary {self.canary:g}%"
                f" -> {self.mode}"
            )
        return f"{why}; {self._note}" if self._note else why

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of SPEC §6."""
        return {
            "schema": self.schema,
            "track": self.track,
            "mode": self.mode.value,
            "valid": self.valid,
            "action": self.action.value,
            "violations": [v.to_dict() for v in self.violations],
            "rule": None if self.rule is None else self.rule.to_dict(),
            "bucket": self.bucket,
            "canary": self.canary,
            "key_source": self.key_source,
            "policy_checksum": self.policy_checksum,
            "reason": self.reason,
        }

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
        """The JSON form of SPEC §6 (``explain --json``)."""
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

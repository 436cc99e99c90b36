"""Modes and actions: the two small vocabularies every other module speaks (a leaf: no imports).

A ``Mode`` is how strictly a payload is treated; an ``Action`` is what happened to it. Both are
``StrEnum`` so they compare equal to their JSON spelling (``Mode.WARN == "warn"``).
"""

from __future__ import annotations

from enum import StrEnum


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
    """What happened to the payload."""

    ACCEPTED = "accepted"  # validated and valid
    LOGGED = "logged"  # invalid, warn mode: logged and passed on
    REJECTED = "rejected"  # invalid (or no schema with on_registry_error=reject), strict mode
    SKIPPED = "skipped"  # mode off, or no usable schema with on_registry_error=allow


__all__ = ["Action", "Mode"]

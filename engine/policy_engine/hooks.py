"""Hooks around evaluation: how metrics, guardrails and audit logs plug into the engine.

The core decides; hooks watch or step in, without the core knowing what they are for:

- a ``ModeAdjuster`` may lower the mode a payload resolved to before it is validated
  (as a tripped guardrail falls back to ``baseline``);
- a ``DecisionObserver`` sees every decision after it is made, with the time it took
  (audit, drift reports);
- a ``DecisionCounter`` counts every decision into cells the engine writes itself (metrics);
- a ``ReloadObserver`` hears about every policy reload, good or bad;
- a ``RegistryObserver`` hears about registry requests and cache lookups (sources that talk to a
  registry report to it).

Pass them as ``PolicyEngine(..., hooks=[...])``; an object may be both. A hook that raises is
logged and ignored: observing must never break enforcement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.core.resolve import EffectiveRule
    from policy_engine.core.route import Route, Tally
    from policy_engine.decision import Decision
    from policy_engine.modes import Action, Mode

#: ``given``: a ``PolicySet`` was handed to the engine, nothing was loaded.
ReloadResult = Literal["success", "unchanged", "error", "given"]

#: One evaluation in this many is timed for ``DecisionObserver``s (the others get ``seconds=None``):
#: two clock reads on every payload would cost as much as the rest of a decision. A hook that
#: sums durations counts each timed one this many times.
TIMING_SAMPLE: Final = 16


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """One policy load attempt, as ``ReloadObserver.after_reload`` hears of it.

    Everything a hook needs comes with the event, so no hook has to reach back into the engine:
    ``policy_set`` is the set in force after the attempt (the old one when it failed),
    ``registry`` the registry's schemas and tracks as this load listed them (``None`` when the
    registry is disabled or could not be listed yet: keep what you knew), ``at`` the wall time.
    """

    result: ReloadResult
    policy_set: PolicySet
    error: BaseException | None = None
    registry: Mapping[str, tuple[str, ...]] | None = None
    at: float = 0.0


@runtime_checkable
class ModeAdjuster(Protocol):
    """Steps in between resolution and validation."""

    def adjust_mode(self, rule: EffectiveRule, mode: Mode, now: float) -> tuple[Mode, str] | None:
        """A replacement mode and the reason for it, or ``None`` to leave ``mode`` alone.

        ``now`` is the engine clock's time (epoch seconds), so tests can drive time.
        """
        ...


@runtime_checkable
class DecisionObserver(Protocol):
    """Sees every decision after it is made."""

    def after_evaluation(self, decision: Decision, seconds: float | None) -> None:
        """Called once per payload. ``seconds`` is the time ``evaluate`` took, measured for one
        evaluation in every ``TIMING_SAMPLE`` and ``None`` for the others: two clock reads per
        payload would cost more than the rest of a decision."""
        ...


# The slots of a ``Tally``: the mode's base plus the outcome's offset. A rejection with
# no schema to validate against (``on_registry_error: reject``) has a slot of its own.
SLOT_ACCEPTED: Final = 0
SLOT_LOGGED: Final = 1
SLOT_REJECTED: Final = 2
SLOT_SKIPPED: Final = 3
SLOT_REJECTED_UNVALIDATED: Final = 4
#: Slots per mode; the bases of off, warn and strict are 0, ``SLOTS_PER_MODE`` and twice it.
SLOTS_PER_MODE: Final = 5
#: Slots in a cell: every (mode, outcome) pair.
CELL_SLOTS: Final = 3 * SLOTS_PER_MODE


_MODE_BASE = {"off": 0, "warn": SLOTS_PER_MODE, "strict": 2 * SLOTS_PER_MODE}
_OUTCOME = {
    "accepted": SLOT_ACCEPTED,
    "logged": SLOT_LOGGED,
    "rejected": SLOT_REJECTED,
    "skipped": SLOT_SKIPPED,
}


def outcome_slot(mode: Mode, action: Action, valid: bool | None) -> int:
    """The ``Tally`` slot of a decision (the engine works it out inline instead)."""
    slot = _MODE_BASE[mode.value] + _OUTCOME[action.value]
    if action.value == "rejected" and valid is not False:
        slot += SLOT_REJECTED_UNVALIDATED - SLOT_REJECTED
    return slot


@runtime_checkable
class DecisionCounter(Protocol):
    """Counts every decision into cells the engine writes inline (the metrics hook).

    A hook call per payload costs about as much as the rest of a decision, so the engine does
    the common part itself: it adds one to ``tally.counts[slot]`` (see ``SLOT_*``) in the
    ``Tally`` its route keeps for the calling thread (``Route.counter``), asking
    ``counter_cell`` for one when the route has none for this thread, and puts the duration of
    a timed evaluation in the tally's histogram (``Tally.observe``). ``count_violations`` then
    sees only what a count cannot say: the violations of an invalid payload. An engine takes
    one such hook.
    """

    def counter_cell(self, route: Route[Any], valid: bool | None, shared: bool) -> Tally:
        """A tally for ``route``: the calling thread's own, or with ``shared`` one every thread
        counts into (``thread=ANY_THREAD``: the engine asks so only when its increments are
        atomic). The hook may store it in ``route.counter``; the engine checks its ``thread``
        before using it."""
        ...

    def count_violations(self, decision: Decision, tally: Tally) -> None:
        """The violations of an invalid decision."""
        ...


@runtime_checkable
class ReloadObserver(Protocol):
    """Hears about every policy reload attempt (metrics, audit)."""

    def after_reload(self, event: ReloadEvent) -> None:
        """Called after every load of the policy files, the engine's first load included.

        ``event.result`` is ``success`` (a new set serves), ``unchanged`` or ``error``; an engine
        built from a ``PolicySet`` calls it once with ``given``.
        """
        ...


@runtime_checkable
class RegistryObserver(Protocol):
    """Hears about schema registry traffic (metrics)."""

    def registry_request(self, outcome: str) -> None:
        """One request to the registry: ``ok``, ``not_found``, ``error``, ``timeout``, ..."""
        ...

    def registry_cache(self, result: str) -> None:
        """One cache lookup that decided whether to ask the registry: ``hit``, ``miss``,
        ``stale``."""
        ...

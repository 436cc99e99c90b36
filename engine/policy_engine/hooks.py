"""Hooks around evaluation: how metrics, guardrails and audit logs plug into the engine.

The core decides; hooks watch or step in, without the core knowing what they are for:

- a ``ModeAdjuster`` may lower the mode a payload resolved to before it is validated
  (a tripped guardrail falls back to ``baseline``, SPEC §3.6);
- a ``DecisionObserver`` sees every decision after it is made, with the time it took
  (metrics, audit);
- a ``ReloadObserver`` hears about every policy reload, good or bad;
- a ``RegistryObserver`` hears about registry requests and cache lookups (sources that talk to a
  registry report to it).

Pass them as ``PolicyEngine(..., hooks=[...])``; an object may be both. A hook that raises is
logged and ignored: observing must never break enforcement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from policy_engine.decision import Decision, Mode
    from policy_engine.policy.load import PolicySet
    from policy_engine.policy.resolve import EffectiveRule


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

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Called once per payload; ``seconds`` is the time ``evaluate`` took."""
        ...


@runtime_checkable
class ReloadObserver(Protocol):
    """Hears about every policy reload attempt (metrics, audit)."""

    def after_reload(
        self, result: str, policy_set: PolicySet | None, error: BaseException | None
    ) -> None:
        """``result`` is ``success``, ``unchanged`` or ``error``.

        ``policy_set`` is the set in force after the attempt; ``error`` is set for ``error``.
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

"""Label values that stay bounded whatever producers send.

A schema name is a label value only if the registry or the policy set knows it (else
``schema="unknown"``), a track only if some schema has it (else ``track="unknown"``), and
``schema_violations_total`` keeps at most ``MAX_PATHS_PER_SERIES`` distinct paths per
(schema, track), array indices folded to ``*``. What is known is rebuilt from each reload's
``ReloadEvent`` (the policy set and the registry's listing); no label code asks the engine.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from policy_engine.core.policy_set import PolicySet
from policy_engine.core.resolve import EffectiveRule, rule_for
from policy_engine.decision import fold_indices
from policy_engine.metrics.catalogue import MAX_PATHS_PER_SERIES
from policy_engine.modes import Mode

log = logging.getLogger("policy_engine.metrics")

#: The label value of a schema (or track) neither the registry nor the policies know.
UNKNOWN = "unknown"
#: The ``path`` label of violations past the per-(schema, track) cap.
OTHER_PATH = "other"
#: The ``path`` label of a violation of the payload itself (JSON Pointer ``""``).
ROOT_PATH = "(root)"
#: A ``path`` label longer than this is cut (a producer's key names are not bounded).
MAX_PATH_LABEL = 200
#: Raw paths remembered per (schema, track) with their label; others are folded each time.
MAX_CACHED_PATHS = 4096
#: Most ``policy_canary_percent`` series (one per known schema/track with a rule).
MAX_CANARY_SERIES = 5000


def fold_path(path: str) -> str:
    """The ``path`` label of a JSON Pointer: array indices as ``*``, the root as ``(root)``.

    >>> fold_path("/bars/3/close")
    '/bars/*/close'
    """
    if not path:
        return ROOT_PATH
    folded = fold_indices(path)
    if len(folded) > MAX_PATH_LABEL:
        folded = folded[: MAX_PATH_LABEL - 1] + "…"
    return folded


class PathBook:
    """The ``path`` labels of one (schema, track) series: at most ``MAX_PATHS_PER_SERIES``.

    ``labels`` maps raw JSON Pointers to their label; it is read without the lock (a dict read
    is atomic) and written by any thread, bounded by ``MAX_CACHED_PATHS``.
    """

    __slots__ = ("admitted", "labels", "lock")

    def __init__(self) -> None:
        self.admitted: set[str] = set()
        self.labels: dict[str, str] = {}
        self.lock = threading.Lock()

    def label(self, path: str) -> str:
        """The label of ``path``: folded, or ``other`` once the series has its 50 paths."""
        folded = fold_path(path)
        if folded not in self.admitted:
            with self.lock:
                if folded not in self.admitted:
                    if len(self.admitted) >= MAX_PATHS_PER_SERIES:
                        folded = OTHER_PATH
                    else:
                        self.admitted.add(folded)
        if len(self.labels) < MAX_CACHED_PATHS:
            self.labels[path] = folded
        return folded


class Known:
    """What the registry and the policy set know, for label folding; replaced whole on reload.

    ``schemas``/``tracks`` also learn, at run time, any name the registry served a schema for.
    ``rules`` are the effective rules behind ``policy_canary_percent``.
    """

    __slots__ = ("checksum", "rules", "schemas", "tracks")

    def __init__(
        self,
        checksum: str | None,
        schemas: set[str],
        tracks: set[str],
        rules: tuple[EffectiveRule, ...],
    ) -> None:
        self.checksum = checksum
        self.schemas = schemas
        self.tracks = tracks
        self.rules = rules


def known_from(
    policy_set: PolicySet | None,
    registry: Mapping[str, Iterable[str]],
    tracks: Iterable[str],
    default_mode: Mode,
) -> Known:
    """Names to keep as labels, and the rules with a canary to report."""
    schemas = set(registry)
    all_tracks = set(tracks)
    for listed in registry.values():
        all_tracks.update(listed)
    rules: list[EffectiveRule] = []
    if policy_set is not None:
        schemas.update(policy_set.exact)
        for entry in policy_set.entries:
            all_tracks.update(entry.rule.tracks or ())
        preferred = next(iter(tracks), "v2")
        for name in sorted(schemas):
            match, _ = policy_set.match(name)
            if match is None:
                continue
            names = set(registry.get(name, ())) | set(match.rule.tracks or ())
            for track in sorted(names or {preferred}):
                rule, _ = rule_for(policy_set, name, track, default_mode)
                if rule.ref is not None:
                    rules.append(rule)
        if len(rules) > MAX_CANARY_SERIES:
            log.warning(
                "%d schema/track pairs have a policy rule; policy_canary_percent reports the "
                "first %d",
                len(rules),
                MAX_CANARY_SERIES,
            )
            del rules[MAX_CANARY_SERIES:]
    checksum = policy_set.checksum if policy_set is not None else None
    return Known(checksum, schemas, all_tracks, tuple(rules))


__all__ = [
    "MAX_CACHED_PATHS",
    "MAX_CANARY_SERIES",
    "MAX_PATH_LABEL",
    "OTHER_PATH",
    "ROOT_PATH",
    "UNKNOWN",
    "Known",
    "PathBook",
    "fold_path",
    "known_from",
]

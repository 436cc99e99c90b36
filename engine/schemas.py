"""The engine's schema cache: compiled validators per (schema, track), refreshed by TTL.

Per payload this is a dict lookup and one comparison with the expiry time. A refresh asks the
``SchemaSource`` again; a new version is compiled once, an unchanged one keeps its validator, and a
failed refresh keeps serving the last good validator (stale-if-error, SPEC §4). Track choice
(SPEC §3.1) is cached the same way and falls back only on a definite "not found".
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from engine.errors import RegistryError, RegistryUnavailableError, SchemaNotFoundError
from engine.sources import SchemaDocument, SchemaSource
from engine.validate import Backend, CompiledSchema, compile_schema

log = logging.getLogger("engine.registry")

#: Most (schema, track) slots kept; names beyond it (a producer inventing names) are evicted
#: oldest first, so memory stays bounded whatever arrives.
MAX_SLOTS = 10_000
#: Retry interval for a schema that failed to load, capped by the cache TTL.
ERROR_RETRY_SECONDS = 10.0
#: A registry error for a (schema, track) is logged at most once per this many seconds.
LOG_INTERVAL_SECONDS = 60.0


class SchemaSlot:
    """What the cache knows about one (schema, track): a validator, or why there is none."""

    __slots__ = ("compiled", "error", "expires", "last_logged", "missing", "schema", "track")

    def __init__(self, schema: str, track: str) -> None:
        self.schema = schema
        self.track = track
        self.compiled: CompiledSchema | None = None
        self.error: RegistryError | None = None
        self.missing = False  # the registry said "not found" (as opposed to failing)
        self.expires = float("-inf")
        self.last_logged = float("-inf")


class SchemaCache:
    """Compiled validators and track choices, shared by every policy set the engine loads."""

    def __init__(
        self,
        source: SchemaSource,
        *,
        backend: Backend,
        ttl: float,
        prefer_track: str,
        fallback_track: str,
        clock: Callable[[], float],
    ) -> None:
        self.source = source
        self.backend = backend
        self.ttl = ttl
        self.prefer_track = prefer_track
        self.fallback_track = fallback_track
        self._clock = clock
        self._slots: OrderedDict[tuple[str, str], SchemaSlot] = OrderedDict()
        self._missing: OrderedDict[tuple[str, str], None] = OrderedDict()  # "not found" slots
        self._tracks: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._compiled: OrderedDict[tuple[str, str, str], CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lookups (hot path)

    def slot(self, schema: str, track: str) -> SchemaSlot:
        """The slot of ``schema``/``track``, created (not yet fetched) on first sight."""
        slot = self._slots.get((schema, track))
        if slot is None:
            slot = SchemaSlot(schema, track)
            with self._lock:
                slot = self._slots.setdefault((schema, track), slot)
                if len(self._slots) > MAX_SLOTS:
                    self._evict()
        return slot

    def _evict(self) -> None:
        # Names the registry does not know go first, oldest first: a producer inventing names
        # must not push out the schemas that real traffic uses. Called with the lock held.
        if self._missing:
            victim, _ = self._missing.popitem(last=False)
            self._slots.pop(victim, None)
        else:
            self._slots.popitem(last=False)

    def choose_track(self, schema: str, now: float) -> tuple[str, float]:
        """The preferred track if the registry has it, else the fallback (SPEC §3.1).

        Returns the track and the time until which the choice holds. Only a definite "not
        found" for the preferred track falls back; an outage keeps the preferred track.
        """
        cached = self._tracks.get(schema)
        if cached is not None and now < cached[1]:
            return cached
        slot = self.slot(schema, self.prefer_track)
        if now >= slot.expires:
            self.refresh(slot, now)
        track = self.prefer_track
        if slot.missing and slot.compiled is None:
            fallback = self.slot(schema, self.fallback_track)
            if now >= fallback.expires:
                self.refresh(fallback, now)
            if not fallback.missing:
                track = self.fallback_track
            elif fallback.compiled is None:
                # Neither track exists: not remembered, so a flood of invented names cannot
                # evict the choices of real schemas (the slots still cache the "not found").
                return track, max(min(slot.expires, fallback.expires), now)
        choice = (track, max(min(slot.expires, now + self.ttl), now))
        with self._lock:
            self._tracks[schema] = choice
            if len(self._tracks) > MAX_SLOTS:
                self._tracks.popitem(last=False)
        return choice

    def needs_fetch(self, schema: str, track: str | None, now: float) -> bool:
        """Whether looking ``schema`` up now would ask the source (async callers prefetch)."""
        if track is None:
            cached = self._tracks.get(schema)
            if cached is None or now >= cached[1]:
                return True
            track = cached[0]
        slot = self._slots.get((schema, track))
        return slot is None or now >= slot.expires

    def prepare(self, schema: str, track: str | None, now: float) -> None:
        """Fetch whatever ``schema``/``track`` needs, so the next lookup is a cache hit."""
        if track is None:
            track = self.choose_track(schema, now)[0]
        slot = self.slot(schema, track)
        if now >= slot.expires:
            self.refresh(slot, now)

    # ------------------------------------------------------------------ refresh

    def refresh(self, slot: SchemaSlot, now: float) -> None:
        """Ask the source for the slot's schema; keep the last good validator if that fails."""
        try:
            doc = self.source.fetch(slot.schema, slot.track)
            compiled = self._compile(doc)
        except SchemaNotFoundError as exc:
            slot.compiled, slot.error, slot.missing = None, exc, True
            slot.expires = now + self.ttl
            with self._lock:
                self._missing[(slot.schema, slot.track)] = None
            return
        except Exception as exc:  # a fault of any kind: keep serving what we have
            if not isinstance(exc, RegistryError):
                exc = RegistryUnavailableError(
                    f"schema source failed: {type(exc).__name__}: {exc}",
                    schema=slot.schema,
                    track=slot.track,
                )
            # ``missing`` is kept: an outage says nothing new about whether the track exists
            slot.error = exc
            slot.expires = now + min(self.ttl, ERROR_RETRY_SECONDS)
            if now - slot.last_logged >= LOG_INTERVAL_SECONDS:
                slot.last_logged = now
                served = "serving the cached schema" if slot.compiled else "no schema to serve"
                log.warning(
                    "schema registry error for %s %s: %s (%s)",
                    slot.schema,
                    slot.track,
                    exc,
                    served,
                    extra={"schema": slot.schema, "track": slot.track},
                )
            return
        slot.compiled, slot.error, slot.missing = compiled, None, False
        slot.expires = now + self.ttl
        if self._missing:
            with self._lock:
                self._missing.pop((slot.schema, slot.track), None)

    def _compile(self, doc: SchemaDocument) -> CompiledSchema:
        # Keyed by version: an unchanged schema is never compiled twice.
        key = (doc.schema, doc.track, doc.version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_schema(doc, self.backend)
            with self._lock:
                self._compiled[key] = compiled
                if len(self._compiled) > MAX_SLOTS:
                    self._compiled.popitem(last=False)
        return compiled

"""The engine's schema cache: compiled validators per (schema, track), refreshed by TTL.

Per payload this is a dict lookup and one comparison with the expiry time. A refresh asks the
``SchemaSource`` again; a new version is compiled once, an unchanged one keeps its validator, and a
failed refresh keeps serving the last good validator (stale-if-error, SPEC §4). Track choice
(SPEC §3.1) is cached the same way and falls back only on a definite "not found".

Track choice and prefetching are written once, as plans (generators yielding the slots that need
a fetch), and driven two ways: ``choose_track``/``prepare`` refresh with ``source.fetch``,
``aprepare`` with ``await source.afetch`` when the source has one (``HttpSchemaSource``), else
``source.fetch`` in a worker thread. Either way the event loop never waits on registry I/O.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator
from typing import TypeAlias, TypeVar

from policy_engine.errors import RegistryError, RegistryUnavailableError, SchemaNotFoundError
from policy_engine.settings import Backend
from policy_engine.sources import SchemaDocument, SchemaSource
from policy_engine.validate import CompiledSchema, compile_schema

log = logging.getLogger("policy_engine.registry")

T = TypeVar("T")
#: A plan yields the slots that must be refreshed before it can go on, and returns its answer.
SlotPlan: TypeAlias = Generator["SchemaSlot", None, T]

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
        # Held while compiling: callers that fetched the same new version at once (after a
        # single-flight registry request) wait for one compilation instead of each compiling.
        self._compile_lock = threading.Lock()

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
        return self._run(self._choose_track_plan(schema, now), now)

    def _choose_track_plan(self, schema: str, now: float) -> SlotPlan[tuple[str, float]]:
        cached = self._tracks.get(schema)
        if cached is not None and now < cached[1]:
            return cached
        slot = self.slot(schema, self.prefer_track)
        if now >= slot.expires:
            yield slot
        track = self.prefer_track
        if slot.missing and slot.compiled is None:
            fallback = self.slot(schema, self.fallback_track)
            if now >= fallback.expires:
                yield fallback
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
        self._run(self._prepare_plan(schema, track, now), now)

    async def aprepare(self, schema: str, track: str | None, now: float) -> None:
        """``prepare`` for asyncio: registry I/O never blocks the event loop.

        A source with ``afetch`` (``HttpSchemaSource``) is awaited on the loop; any other
        source is called in a worker thread.
        """
        afetch = getattr(self.source, "afetch", None)
        if afetch is None:
            await asyncio.to_thread(self.prepare, schema, track, now)
            return
        plan = self._prepare_plan(schema, track, now)
        try:
            slot = next(plan)
            while True:
                await self.arefresh(slot, now, afetch)
                slot = plan.send(None)
        except StopIteration:
            return

    def _prepare_plan(self, schema: str, track: str | None, now: float) -> SlotPlan[None]:
        if track is None:
            track = (yield from self._choose_track_plan(schema, now))[0]
        slot = self.slot(schema, track)
        if now >= slot.expires:
            yield slot

    def _run(self, plan: SlotPlan[T], now: float) -> T:
        """Drive ``plan``, refreshing each slot it asks for with the blocking ``fetch``."""
        try:
            slot = next(plan)
            while True:
                self.refresh(slot, now)
                slot = plan.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

    # ------------------------------------------------------------------ refresh

    def refresh(self, slot: SchemaSlot, now: float) -> None:
        """Ask the source for the slot's schema; keep the last good validator if that fails."""
        try:
            doc = self.source.fetch(slot.schema, slot.track)
            compiled = self._compile(doc)
        except Exception as exc:
            self._failed(slot, now, exc)
            return
        self._succeeded(slot, now, compiled)

    async def arefresh(
        self,
        slot: SchemaSlot,
        now: float,
        afetch: Callable[[str, str], Awaitable[SchemaDocument]],
    ) -> None:
        """``refresh`` for asyncio, fetching with ``afetch``; a new version compiles in a thread."""
        try:
            doc = await afetch(slot.schema, slot.track)
            compiled = self._compiled.get((doc.schema, doc.track, doc.version))
            if compiled is None:
                compiled = await asyncio.to_thread(self._compile, doc)
        except Exception as exc:
            self._failed(slot, now, exc)
            return
        self._succeeded(slot, now, compiled)

    def _expiry(self, now: float, seconds: float) -> float:
        # Counted from when the fetch ended, not began: a source with a TTL cache of its own
        # (HttpSchemaSource) has then always expired too when the slot does, so a changed
        # schema is picked up after one TTL, not two.
        return max(now, self._clock()) + seconds

    def _succeeded(self, slot: SchemaSlot, now: float, compiled: CompiledSchema) -> None:
        slot.compiled, slot.error, slot.missing = compiled, None, False
        slot.expires = self._expiry(now, self.ttl)
        if self._missing:
            with self._lock:
                self._missing.pop((slot.schema, slot.track), None)

    def _failed(self, slot: SchemaSlot, now: float, exc: Exception) -> None:
        if isinstance(exc, SchemaNotFoundError):
            slot.compiled, slot.error, slot.missing = None, exc, True
            slot.expires = self._expiry(now, self.ttl)
            with self._lock:
                self._missing[(slot.schema, slot.track)] = None
            return
        # A fault of any kind: keep serving what we have.
        if not isinstance(exc, RegistryError):
            exc = RegistryUnavailableError(
                f"schema source failed: {type(exc).__name__}: {exc}",
                schema=slot.schema,
                track=slot.track,
            )
        # ``missing`` is kept: an outage says nothing new about whether the track exists
        slot.error = exc
        slot.expires = self._expiry(now, min(self.ttl, ERROR_RETRY_SECONDS))
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

    def _compile(self, doc: SchemaDocument) -> CompiledSchema:
        # Keyed by version: an unchanged schema is never compiled twice.
        key = (doc.schema, doc.track, doc.version)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._compile_lock:
                compiled = self._compiled.get(key)
                if compiled is None:
                    compiled = compile_schema(doc, self.backend)
                    with self._lock:
                        self._compiled[key] = compiled
                        if len(self._compiled) > MAX_SLOTS:
                            self._compiled.popitem(last=False)
        return compiled

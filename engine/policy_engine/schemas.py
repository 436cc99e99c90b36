"""The engine's schema cache: compiled validators per (schema, track), refreshed by TTL.

Per payload this is a dict lookup and one comparison with the expiry time. A refresh asks the
``SchemaSource`` again; a new version is compiled once, an unchanged one keeps its validator, and a
failed refresh keeps serving the last good validator (stale-if-error). Track choice is cached
the same way and falls back only on a definite "not found".

Track choice and prefetching are written once, as scripts (generators yielding the slots that need
a fetch), and driven two ways: ``choose_track``/``prepare`` refresh with ``source.fetch``,
``aprepare`` with ``await source.afetch`` when the source has one (``HttpSchemaSource``), else
``source.fetch`` in a worker thread. Either way the event loop never waits on registry I/O.

No payload waits for a schema it already has: once a slot holds a validator, an expired slot is
refreshed in the background (one refresh per slot at a time, on a few daemon threads) and the
stale validator keeps serving meanwhile, so a registry that hangs costs nothing on the hot path.
A sequence number per fetch makes sure a late answer never puts an older validator back. Only a
schema never fetched is waited for (bounded by the source's timeout).

The registry's listing (``use_listing``, from each policy load) answers "no such schema" for
names it does not hold without asking the source: a producer inventing names costs a set lookup,
not a directory walk or an HTTP request per name. A listing older than the TTL keeps answering
while a new one is fetched in the background.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import TypeAlias, TypeVar

from policy_engine.errors import RegistryError, RegistryUnavailableError, SchemaNotFoundError
from policy_engine.settings import Backend
from policy_engine.sources import SchemaDocument, SchemaSource
from policy_engine.validate import CompiledSchema, compile_schema

log = logging.getLogger("policy_engine.registry")

T = TypeVar("T")
#: A script yields the slots that must be refreshed before it can go on, and returns its answer.
FetchScript: TypeAlias = Generator["SchemaSlot", None, T]

#: Most (schema, track) slots kept; names beyond it (a producer inventing names) are evicted
#: oldest first, so memory stays bounded whatever arrives.
MAX_SLOTS = 10_000
#: Retry interval for a schema that failed to load, capped by the cache TTL.
ERROR_RETRY_SECONDS = 10.0
#: A registry error for a (schema, track) is logged at most once per this many seconds.
LOG_INTERVAL_SECONDS = 60.0
#: Threads refreshing expired schemas in the background, and refreshes that may wait for one;
#: past that, a slot keeps its stale validator and tries again at its next expiry.
REFRESH_THREADS = 2
MAX_QUEUED_REFRESHES = 1_000


class SchemaSlot:
    """What the cache knows about one (schema, track): a validator, or why there is none."""

    __slots__ = (
        "applied",
        "compiled",
        "error",
        "expires",
        "last_logged",
        "missing",
        "refreshing",
        "schema",
        "track",
    )

    def __init__(self, schema: str, track: str) -> None:
        self.schema = schema
        self.track = track
        self.compiled: CompiledSchema | None = None
        self.error: RegistryError | None = None
        self.missing = False  # the registry said "not found" (as opposed to failing)
        self.expires = float("-inf")
        self.last_logged = float("-inf")
        #: Whether a background refresh of this slot is queued or running.
        self.refreshing = False
        #: The sequence number of the fetch whose answer the slot holds (later ones win).
        self.applied = -1


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
        self._sequence = itertools.count()
        self._refresher: _Refresher | None = None
        # The registry's listing: schema -> tracks, trusted until _listing_expires (then it
        # keeps answering while a new one is fetched in the background).
        self._listing: Mapping[str, tuple[str, ...]] | None = None
        self._listing_expires = float("-inf")
        self._listing_refreshing = False
        self._absent: dict[str, SchemaSlot] = {}

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
        """The preferred track if the registry has it, else the fallback.

        Returns the track and the time until which the choice holds. Only a definite "not
        found" for the preferred track falls back; an outage keeps the preferred track.
        """
        return self._run(self._choose_track_script(schema, now), now)

    def _choose_track_script(self, schema: str, now: float) -> FetchScript[tuple[str, float]]:
        cached = self._tracks.get(schema)
        if cached is not None and now < cached[1]:
            return cached
        listing = self._listing
        if listing is not None and schema not in listing:
            # Ruled out by the listing: nothing to fetch, nothing per name kept.
            self._check_listing(now)
            return self.prefer_track, max(self._listing_expires, now)
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
        self._run(self._prepare_script(schema, track, now), now)

    async def aprepare(self, schema: str, track: str | None, now: float) -> None:
        """``prepare`` for asyncio: registry I/O never blocks the event loop.

        A source with ``afetch`` (``HttpSchemaSource``) is awaited on the loop; any other
        source is called in a worker thread.
        """
        afetch = getattr(self.source, "afetch", None)
        if afetch is None:
            await asyncio.to_thread(self.prepare, schema, track, now)
            return
        script = self._prepare_script(schema, track, now)
        try:
            slot = next(script)
            while True:
                await self.arefresh(slot, now, afetch)
                slot = script.send(None)
        except StopIteration:
            return

    def _prepare_script(self, schema: str, track: str | None, now: float) -> FetchScript[None]:
        if track is None:
            track = (yield from self._choose_track_script(schema, now))[0]
        slot = self.slot(schema, track)
        if now >= slot.expires:
            yield slot

    def _run(self, script: FetchScript[T], now: float) -> T:
        """Drive ``script``, refreshing each slot it asks for with the blocking ``fetch``."""
        try:
            slot = next(script)
            while True:
                self.refresh(slot, now)
                slot = script.send(None)
        except StopIteration as done:
            result: T = done.value
            return result

    # ------------------------------------------------------------------ refresh

    def refresh(self, slot: SchemaSlot, now: float) -> None:
        """Bring an expired slot up to date. A slot that holds a validator keeps serving it and
        is refreshed in the background; one with nothing to serve is fetched now."""
        if slot.compiled is not None:
            self._refresh_later(slot, now)
            return
        self._fetch(slot, now)

    async def arefresh(
        self,
        slot: SchemaSlot,
        now: float,
        afetch: Callable[[str, str], Awaitable[SchemaDocument]],
    ) -> None:
        """``refresh`` for asyncio, fetching with ``afetch``; a new version compiles in a thread."""
        if slot.compiled is not None:
            self._refresh_later(slot, now)
            return
        if self._listed_absent(slot, now):
            self._failed(slot, now, self._absent_error(slot), next(self._sequence))
            return
        sequence = next(self._sequence)
        try:
            doc = await afetch(slot.schema, slot.track)
            compiled = self._compiled.get((doc.schema, doc.track, doc.version))
            if compiled is None:
                compiled = await asyncio.to_thread(self._compile, doc)
        except Exception as exc:
            self._failed(slot, now, exc, sequence)
            return
        self._succeeded(slot, now, compiled, sequence)

    def _fetch(self, slot: SchemaSlot, now: float) -> None:
        """Ask the source for the slot's schema (unless the listing says it has none); keep the
        last good validator if that fails."""
        sequence = next(self._sequence)
        if self._listed_absent(slot, now):
            self._failed(slot, now, self._absent_error(slot), sequence)
            return
        try:
            doc = self.source.fetch(slot.schema, slot.track)
            compiled = self._compile(doc)
        except Exception as exc:
            self._failed(slot, now, exc, sequence)
            return
        self._succeeded(slot, now, compiled, sequence)

    def _refresh_later(self, slot: SchemaSlot, now: float) -> None:
        """Queue a background refresh of ``slot`` (one at a time per slot)."""
        if slot.refreshing:
            return
        slot.refreshing = True
        # Until the refresh answers, the slot is not expired: payloads do not ask again.
        slot.expires = now + min(self.ttl, ERROR_RETRY_SECONDS)

        def run() -> None:
            try:
                self._fetch(slot, self._clock())
            finally:
                slot.refreshing = False

        if not self._background(run):
            slot.refreshing = False

    def _background(self, work: Callable[[], None]) -> bool:
        """Run ``work`` on a refresh thread; ``False`` if too many are waiting already."""
        refresher = self._refresher
        if refresher is None:
            with self._lock:
                if self._refresher is None:
                    self._refresher = _Refresher()
                refresher = self._refresher
        return refresher.submit(work)

    def wait_for_refreshes(self, timeout: float = 10.0) -> bool:
        """Wait until no background refresh is queued or running (tests, orderly shutdown)."""
        refresher = self._refresher
        return True if refresher is None else refresher.wait_idle(timeout)

    def close(self) -> None:
        """Stop the refresh threads (a refresh in flight finishes in its daemon thread)."""
        refresher = self._refresher
        if refresher is not None:
            refresher.stop()

    # ------------------------------------------------------------------ the listing

    def use_listing(self, listing: Mapping[str, tuple[str, ...]] | None, now: float) -> None:
        """Trust ``listing`` (the registry's schemas and their tracks) for one TTL to answer
        "not found" without asking; ``None`` (could not list) keeps the last one. An empty
        listing is not trusted: a source that cannot list (a custom one) answers with nothing,
        and must not make every name "not found"."""
        if not listing:
            return
        self._listing = listing
        self._listing_expires = max(now, self._clock()) + self.ttl

    def lists(self, schema: str) -> bool | None:
        """Whether the listing holds ``schema``; ``None`` when there is no listing."""
        listing = self._listing
        return None if listing is None else schema in listing

    @property
    def listing_expires(self) -> float:
        """When the listing should be fetched again (it answers meanwhile)."""
        return self._listing_expires

    def absent_slot(self, track: str) -> SchemaSlot:
        """The one slot every name the listing rules out shares on ``track``: not found, never
        fetched (callers ask ``lists`` again once ``listing_expires`` passes)."""
        slot = self._absent.get(track)
        if slot is None:
            slot = SchemaSlot("(not in the registry's listing)", track)
            slot.missing = True
            slot.expires = float("inf")
            slot.error = SchemaNotFoundError(
                f"the registry lists no such schema with track {track}", track=track
            )
            with self._lock:
                slot = self._absent.setdefault(track, slot)
        return slot

    def _listed_absent(self, slot: SchemaSlot, now: float) -> bool:
        """Whether the listing says the registry has no such schema or track."""
        listing = self._listing
        if listing is None:
            return False
        self._check_listing(now)
        tracks = listing.get(slot.schema)
        return tracks is None or slot.track not in tracks

    def _check_listing(self, now: float) -> None:
        """Fetch a new listing in the background once this one is older than the TTL."""
        if now < self._listing_expires or self._listing_refreshing:
            return
        self._listing_refreshing = True

        def relist() -> None:
            try:
                self.use_listing(dict(self.source.known_schemas()), self._clock())
            except Exception as exc:  # keep the old listing; try again a little later
                log.warning("cannot list the registry's schemas: %s", exc)
                self._listing_expires = self._clock() + min(self.ttl, ERROR_RETRY_SECONDS)
            finally:
                self._listing_refreshing = False

        if not self._background(relist):
            self._listing_refreshing = False

    @staticmethod
    def _absent_error(slot: SchemaSlot) -> SchemaNotFoundError:
        return SchemaNotFoundError(
            f"the registry lists no schema {slot.schema} track {slot.track}",
            schema=slot.schema,
            track=slot.track,
        )

    def _expiry(self, now: float, seconds: float) -> float:
        # Counted from when the fetch ended, not began: a source with a TTL cache of its own
        # (HttpSchemaSource) has then always expired too when the slot does, so a changed
        # schema is picked up after one TTL, not two.
        return max(now, self._clock()) + seconds

    def _succeeded(
        self, slot: SchemaSlot, now: float, compiled: CompiledSchema, sequence: int
    ) -> None:
        if sequence < slot.applied:
            return  # a later fetch has answered already: never put an older validator back
        slot.applied = sequence
        slot.compiled, slot.error, slot.missing = compiled, None, False
        slot.expires = self._expiry(now, self.ttl)
        if self._missing:
            with self._lock:
                self._missing.pop((slot.schema, slot.track), None)

    def _failed(self, slot: SchemaSlot, now: float, exc: Exception, sequence: int) -> None:
        if sequence < slot.applied:
            return  # a later fetch has answered already
        slot.applied = sequence
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


class _Refresher:
    """A few daemon threads running background refreshes from a bounded queue.

    Daemon threads, not a ``ThreadPoolExecutor``: a refresh that hangs on a registry must not
    hold up the interpreter's exit.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(MAX_QUEUED_REFRESHES)
        self._threads = [
            threading.Thread(target=self._run, name=f"policy-engine-registry-{i}", daemon=True)
            for i in range(REFRESH_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; ``False`` when the queue is full."""
        try:
            self._queue.put_nowait(work)
        except queue.Full:
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued piece of work is done; ``False`` on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def stop(self) -> None:
        """Let the threads finish once the queue is drained."""
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                work()
            except Exception:  # a refresh must never kill the thread
                log.exception("background schema refresh failed")
            finally:
                self._queue.task_done()

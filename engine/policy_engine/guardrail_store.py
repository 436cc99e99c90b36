"""Guardrails shared by a fleet of replicas, through Redis (``GUARDRAIL_STORE``).

Each replica counts its strict payloads per guarded rule as usual (``core.guardrail``) and also
keeps them as *pending* counts. A background thread merges them into one shared window per rule
in Redis (the consume loop asks for a merge after every batch; library use merges at least every
``interval`` seconds) with one pipelined round trip: a Lua script per rule adds the replica's
counts to the rule's sub-buckets, sums the window, and trips the guardrail for everyone when the
fleet's rate is over the limit with at least ``min_samples``. Every replica learns of the trip
at its next merge, so the fleet rejects about ``min_samples`` plus one batch per replica before
it falls back, not ``min_samples`` per replica.

Keys live under ``prefix`` (default ``policy-engine:guardrail:``) and the rule's identity (a
hash of everything that decides): ``<prefix><identity>:counts`` (a hash of sub-bucket counts,
expiring after a window) and ``<prefix><identity>:trip`` (the end of the trip, expiring with the
cooldown). A changed rule has another identity and starts afresh.

Evaluation never waits for Redis: merges run on their own thread. If the store cannot be
reached, every replica decides on its own window again (logged once, counted in
``policy_guardrail_store_errors_total``, ``policy_guardrail_store_up`` = 0) until it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from policy_engine.core.guardrail import SLOTS, Guardrails, PendingCounts
from policy_engine.errors import ConfigError
from policy_engine.sources import redact_url

if TYPE_CHECKING:
    import redis

log = logging.getLogger("policy_engine.guardrail")

#: Where the keys live unless the URL says ``?prefix=``.
DEFAULT_PREFIX = "policy-engine:guardrail:"
#: Library use merges at least this often (the loop asks after every batch too).
MERGE_INTERVAL = 0.25
#: How long a merge may wait for Redis before it counts as unreachable.
STORE_TIMEOUT = 1.0

# KEYS: counts hash, trip key. ARGV: current sub-bucket, sub-buckets per window, min_samples,
# max_reject_rate, cooldown (ms), now (s), window (ms), then (sub-bucket, evaluated, rejected)
# triples. Returns {evaluated, rejected, trip end or false} for the window ending now.
MERGE_SCRIPT = """
local current = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
for i = 8, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[1], ARGV[i] .. ':e', ARGV[i + 1])
  redis.call('HINCRBY', KEYS[1], ARGV[i] .. ':r', ARGV[i + 2])
end
local trip = redis.call('GET', KEYS[2])
local evaluated, rejected = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = fields[i]
  local sep = string.find(name, ':', 1, true)
  local bucket = tonumber(string.sub(name, 1, sep - 1))
  if bucket > current - width and bucket <= current then
    if string.sub(name, sep + 1) == 'e' then
      evaluated = evaluated + tonumber(fields[i + 1])
    else
      rejected = rejected + tonumber(fields[i + 1])
    end
  elseif bucket <= current - width then
    redis.call('HDEL', KEYS[1], name)
  end
end
if #fields > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
if not trip and evaluated >= tonumber(ARGV[3]) and rejected > tonumber(ARGV[4]) * evaluated then
  trip = string.format('%.3f', tonumber(ARGV[6]) + tonumber(ARGV[5]) / 1000)
  redis.call('SET', KEYS[2], trip, 'PX', ARGV[5])
  redis.call('DEL', KEYS[1])
end
return {evaluated, rejected, trip or false}
"""


def _connect(redis_url: str, timeout: float) -> redis.Redis:
    """A client of the store that gives up on connecting and on each reply after ``timeout``."""
    import redis as redis_module  # redis-py: only for a fleet that shares guardrails

    return redis_module.Redis.from_url(
        redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def store_keys(prefix: str, identity: str) -> tuple[str, str]:
    """The ``counts`` and ``trip`` keys of the rule whose identity is ``identity``: the one
    place the store's key layout is written down."""
    base = f"{prefix}{identity}"
    return f"{base}:counts", f"{base}:trip"


def read_trips(url: str, identities: Sequence[str], timeout: float) -> dict[str, float]:
    """``identity -> until`` (epoch seconds) for each rule of ``identities`` tripped in the store
    at ``url``: what the fleet shares, read by ``status`` from outside any replica.

    One ``MGET``; raises ``redis.RedisError`` when the store cannot be read, or
    ``ConfigError`` for a URL that is not a store's.
    """
    redis_url, prefix = parse_store_url(url)
    if not identities:
        return {}
    client = _connect(redis_url, timeout)
    try:
        values = client.mget([store_keys(prefix, identity)[1] for identity in identities])
    finally:
        client.close()
    return {
        identity: float(value)
        for identity, value in zip(identities, values, strict=True)
        if value is not None
    }


def parse_store_url(url: str) -> tuple[str, str]:
    """The redis-py URL and the key prefix of ``redis://host:port/db[?prefix=P]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"GUARDRAIL_STORE={redact_url(url)!r}: use redis://host:port/db[?prefix=P]"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((value for key, value in query if key == "prefix"), DEFAULT_PREFIX)
    if not prefix:
        raise ConfigError("GUARDRAIL_STORE: ?prefix= must not be empty")
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisGuardrailStore:
    """Merges a replica's guardrail counts into windows shared through Redis.

    >>> store = RedisGuardrailStore("redis://127.0.0.1:6379/0", engine.guardrails)
    ...                                                           # doctest: +SKIP
    >>> store.start()   # merges in the background; store.merge_soon() after a batch

    ``listener(up, error)`` hears when the store becomes unreachable or reachable again (the
    metrics hook); ``clock`` is the engine's.
    """

    def __init__(
        self,
        url: str,
        guardrails: Guardrails,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = MERGE_INTERVAL,
        timeout: float = STORE_TIMEOUT,
        listener: Callable[[bool, str | None], None] | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        redis_url, self.prefix = parse_store_url(url)
        self.description = redact_url(url)
        self._guardrails = guardrails
        self._clock = clock
        self._interval = interval
        self._listener = listener
        if client is None:
            client = _connect(redis_url, timeout)
        self._client = client
        self._script: Any = client.register_script(MERGE_SCRIPT)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._merge_lock = threading.Lock()
        #: Whether the last merge reached the store (``None`` before the first).
        self.up: bool | None = None
        #: Why the store was last unreachable, and when the last merge succeeded.
        self.last_error: str | None = None
        self.last_merge_at: float | None = None
        guardrails.collecting = True
        guardrails.shared = True  # until a merge fails: the fleet decides

    def start(self) -> None:
        """Merge in the background from now on."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="policy-engine-guardrail-store", daemon=True
            )
            self._thread.start()

    def merge_soon(self) -> None:
        """Ask for a merge now (the consume loop, after a batch); returns at once."""
        self._wake.set()

    def close(self) -> None:
        """Merge what is pending once more, then stop the thread and the connection."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
        try:
            self._client.close()
        except Exception:  # closing must not fail a shutdown
            log.debug("closing the guardrail store connection failed", exc_info=True)
        self._guardrails.collecting = False
        self._guardrails.shared = False

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.merge_now()
        self.merge_now()

    def merge_now(self) -> bool:
        """One merge: every guarded rule's pending counts in, the fleet's windows and trips
        out, in one pipelined round trip. ``False`` if the store could not be reached."""
        with self._merge_lock:
            pending = self._guardrails.take_pending()
            if not pending:
                return True
            now = self._clock()
            try:
                answers = self._merge(pending, now)
            except Exception as exc:  # any failure: decide alone, never break evaluation
                self._guardrails.give_back(_recent(pending, now))
                self._went_down(exc)
                return False
            for item, answer in zip(pending, answers, strict=True):
                evaluated, rejected, trip = int(answer[0]), int(answer[1]), answer[2]
                until = float(trip) if trip else None
                self._guardrails.apply_shared(item.identity, evaluated, rejected, until, now)
            self.last_merge_at = now
            self._came_back()
            return True

    def _merge(self, pending: list[PendingCounts], now: float) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for item in pending:
            config = item.config
            current = int(now // (config.window / SLOTS))
            args: list[Any] = [
                current,
                SLOTS,
                config.min_samples,
                repr(config.max_reject_rate),
                int(config.cooldown * 1000),
                repr(now),
                int(config.window * 1000),
            ]
            for bucket, (evaluated, rejected) in sorted(item.counts.items()):
                args += [bucket, evaluated, rejected]
            self._script(keys=list(store_keys(self.prefix, item.identity)), args=args, client=pipe)
        return list(pipe.execute())

    def _went_down(self, exc: BaseException) -> None:
        self._guardrails.shared = False
        reason = f"{type(exc).__name__}: {exc}"
        first = self.up is not False
        self.up, self.last_error = False, reason
        if first:  # once per outage: in the log and in the metrics
            log.error(
                "guardrail store %s unreachable (%s); each replica decides on its own window "
                "until it is back",
                self.description,
                reason,
            )
            self._tell(False, reason)

    def _came_back(self) -> None:
        if self.up is False:
            log.warning(
                "guardrail store %s reachable again; guardrails are shared", self.description
            )
        was = self.up
        self._guardrails.shared = True
        self.up, self.last_error = True, None
        if was is not True:
            self._tell(True, None)

    def _tell(self, up: bool, error: str | None) -> None:
        if self._listener is None:
            return
        try:
            self._listener(up, error)
        except Exception:
            log.exception("guardrail store listener failed; ignored")

    def to_dict(self) -> dict[str, object]:
        """The store as ``status()`` shows it (the URL without credentials)."""
        return {
            "url": self.description,
            "up": self.up,
            "last_error": self.last_error,
            "last_merge_at": self.last_merge_at,
        }


def _recent(pending: list[PendingCounts], now: float) -> list[PendingCounts]:
    """The pending counts still inside their rule's window: older ones are of no use to a
    merge, and dropping them bounds what an outage keeps."""
    kept = []
    for item in pending:
        current = int(now // (item.config.window / SLOTS))
        counts = {b: c for b, c in item.counts.items() if b > current - SLOTS}
        kept.append(PendingCounts(item.identity, item.rule, item.config, counts))
    return kept


__all__ = ["DEFAULT_PREFIX", "MERGE_INTERVAL", "RedisGuardrailStore", "parse_store_url"]

"""Counting from many threads: no increment lost, and finished threads' counts kept."""

from __future__ import annotations

import sys
import threading
import time

from metrics_support import INVALID, VALID

from policy_engine.hooks import TIMING_SAMPLE
from policy_engine.metrics import FastEngineMetrics

THREADS = 8
PER_THREAD = 5_000


def test_no_increment_is_lost_across_threads(make_engine, value):
    """8 threads evaluating at once, with a tiny switch interval, lose no count."""
    eng = make_engine()
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        start.wait()
        payload = INVALID if n % 2 else VALID
        for _ in range(PER_THREAD):
            eng.evaluate("shop.Order", payload, track="v1")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    half = THREADS // 2 * PER_THREAD
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "accepted") == half
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "logged") == half
    assert value("schema_violations_total", "shop.Order", "v1", "minimum", "/price") == half
    timed = value("schema_validation_duration_seconds_count")
    assert timed % TIMING_SAMPLE == 0  # one evaluation in TIMING_SAMPLE, counted that many times
    assert abs(timed - THREADS * PER_THREAD) <= THREADS * PER_THREAD * 0.1


def test_finished_threads_are_folded_into_one_shard(make_engine, value):
    """A scrape folds the shards of finished threads into one, keeping their counts (the
    compiled engine counts into tallies every thread shares, interpreted code into its own)."""
    eng = make_engine()
    hook = eng.metrics
    assert isinstance(hook, FastEngineMetrics)

    def work() -> None:
        for _ in range(10):
            eng.evaluate("shop.Order", VALID, track="v1")
            hook.after_evaluation(eng.evaluate("shop.Order", VALID, track="v2", key="k"), None)

    def per_thread() -> list[object]:
        return [shard for shard in hook._store.shards if shard is not hook._shared]

    for _ in range(20):  # threads that come and go, as in a pool that recycles them
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "accepted") == 200
    assert value("schema_validations_total", "shop.Order", "v2", "strict", "accepted") == 400
    assert per_thread() == []  # every writer finished: all folded
    work()  # the test's own thread gets a fresh shard (after_evaluation counts in its own)
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "accepted") == 210
    assert value("schema_validations_total", "shop.Order", "v2", "strict", "accepted") == 420
    assert len(per_thread()) == 1


def test_scrape_while_threads_count(make_engine, registry):
    """Scraping while other threads count never fails and never goes backwards."""
    eng = make_engine()
    stop = threading.Event()
    labels = {"schema": "shop.Order", "track": "v1", "mode": "warn", "action": "accepted"}

    def work() -> None:
        while not stop.is_set():
            eng.evaluate("shop.Order", VALID, track="v1")

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    seen: list[float] = []
    deadline = time.monotonic() + 30
    try:  # at least 200 scrapes, and until the threads have counted something
        while (len(seen) < 200 or not seen[-1]) and time.monotonic() < deadline:
            seen.append(registry.get_sample_value("schema_validations_total", labels) or 0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert seen == sorted(seen)
    assert seen[-1] > 0

"""Three `policy-engine consume` replicas on one consumer group: with GUARDRAIL_STORE the fleet
falls back after about ``min_samples`` rejections in all, without it after ``min_samples`` each.

The stream holds a few thousand messages, nine in ten invalid for a strict rule guarded at
10 % over at least ``MIN_SAMPLES`` strict payloads. The replicas start on the empty stream
and block in XREADGROUP (``block_ms``) until the test, having seen all three join the group,
fills it; so each gets a fair share whatever their start-up times. ``--drain`` ends each one
once the stream is consumed (one empty ``block_ms`` read later).
"""

from __future__ import annotations

from pathlib import Path

import redis
from fleet_support import REDIS_URL, fill, start_replica, wait_for

MIN_SAMPLES = 300
BATCH = 50
REPLICAS = 3
MESSAGES = 4_500
#: How long an idle replica waits for new entries before --drain ends it: long enough for the
#: last of three replicas to start on two shared cores after the first is waiting.
BLOCK_MS = 15_000
#: Over min_samples plus one batch per replica, one batch more: for a replica whose merge thread
#: ran only after its loop had evaluated the next batch (two cores shared by three replicas,
#: Redis and the test). The DLQ holds the rejected 9 in 10 of the strict payloads, so the bound
#: still leaves room for about five batches of strict payloads past min_samples in all.
MARGIN = BATCH


def _run_fleet(
    tmp_path: Path, names, shared_redis: redis.Redis, setup_dirs, *, store: bool
) -> tuple[int, int, list[dict], list[str]]:
    """Run the fleet over a fresh stream; (DLQ entries, output entries, each replica's
    summary, each replica's log)."""
    policies, schemas = setup_dirs(MIN_SAMPLES)
    src, out = names("src"), names("out")
    env = {"GUARDRAIL_STORE": f"{REDIS_URL}?prefix={names('store:')}"} if store else {}
    replicas = [
        start_replica(
            f"r{i}",
            [
                f"{REDIS_URL}?stream={src}&group=fleet&block_ms={BLOCK_MS}",
                "--consumer",
                f"r{i}",
                "--output",
                f"{REDIS_URL}?stream={out}",
                "--drain",
                "--batch-size",
                str(BATCH),
                "--policies",
                str(policies),
                "--registry",
                str(schemas),
            ],
            cwd=tmp_path,
            env=env,
        )
        for i in range(REPLICAS)
    ]
    try:

        def all_joined() -> bool:
            try:
                return len(shared_redis.xinfo_consumers(src, "fleet")) == REPLICAS
            except redis.ResponseError:  # the group is not there yet
                return False

        assert wait_for(all_joined), "the replicas did not all join the consumer group"
        fill(shared_redis, src, range(MESSAGES))
        results = [replica.finish() for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()
    logs = [replica.log() for replica in replicas]
    for (code, _), log in zip(results, logs, strict=True):
        assert code == 0, log
    dead, passed = shared_redis.xlen(f"{src}:dlq"), shared_redis.xlen(out)
    summaries = [summary for _, summary in results]
    print(  # the measured counts, for the record (pytest -s shows them)
        f"\nfleet store={store}: DLQ {dead}, passed {passed}, read per replica "
        f"{[s['read'] for s in summaries]}, dead-lettered per replica "
        f"{[s['dead_lettered'] for s in summaries]}"
    )
    return dead, passed, summaries, logs


def test_with_the_store_the_fleet_rejects_about_min_samples(
    tmp_path, names, shared_redis, setup_dirs
):
    """With a shared guardrail store, three replicas dead-letter about min_samples plus one
    batch each before every one of them falls back (not min_samples each)."""
    dead, passed, summaries, logs = _run_fleet(
        tmp_path, names, shared_redis, setup_dirs, store=True
    )
    assert dead + passed == MESSAGES
    assert all(summary["read"] > 0 for summary in summaries)
    assert sum(summary["read"] for summary in summaries) == MESSAGES
    # The fleet trips once min_samples strict payloads were merged, 9 in 10 of them rejected.
    assert dead >= 0.8 * MIN_SAMPLES
    assert dead <= MIN_SAMPLES + REPLICAS * BATCH + MARGIN
    # Every replica fell back because the fleet tripped, not because of its own window.
    for log in logs:
        assert "guardrail tripped for shop.Order v1 by the fleet" in log
        assert "unreachable" not in log


def test_without_the_store_each_replica_rejects_min_samples(
    tmp_path, names, shared_redis, setup_dirs
):
    """Without a store each replica trips on its own window: the DLQ holds about min_samples
    per replica (at least twice min_samples for three)."""
    dead, passed, summaries, logs = _run_fleet(
        tmp_path, names, shared_redis, setup_dirs, store=False
    )
    assert dead + passed == MESSAGES
    assert all(summary["read"] >= MIN_SAMPLES for summary in summaries)
    assert dead >= 2 * MIN_SAMPLES
    tripped_alone = [log for log in logs if "guardrail tripped for shop.Order v1: " in log]
    assert len(tripped_alone) == REPLICAS

"""The guardrail store's Redis dies while `consume` runs: evaluation goes on, every message is
accounted for, and the log says once that the store is unreachable.

The store is a redis-server of the test's own on a free port (killed with SIGKILL mid-run); the
stream lives on the shared Redis, which is never touched beyond the test's own keys.
"""

from __future__ import annotations

import time

import redis
from fleet_support import REDIS_URL, fill, start_replica, wait_for

BATCH = 50
CHUNK = 50
CHUNKS = 40
#: The test waits at most this long between two chunks (a replica stays in its XREADGROUP
#: that long before --drain may end it), so a slow moment in the test never ends the run early.
BLOCK_MS = 15_000


def test_consume_keeps_evaluating_when_the_store_dies(
    tmp_path, names, shared_redis, setup_dirs, own_redis
):
    """Killing the guardrail store's Redis mid-stream does not stop or slow evaluation down to
    a halt: consume handles every message, exits 0, and logs the outage once."""
    policies, schemas = setup_dirs(1_000_000)  # guarded, and never trips in this test
    store = own_redis()
    store.start()
    prefix = names("store:")
    src, out = names("src"), names("out")
    replica = start_replica(
        "alone",
        [
            f"{REDIS_URL}?stream={src}&group=fleet&block_ms={BLOCK_MS}",
            "--consumer",
            "alone",
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
        env={"GUARDRAIL_STORE": f"{store.url}?prefix={prefix}"},
    )
    store_client = redis.Redis.from_url(store.url)

    def handled() -> int:
        return int(shared_redis.xlen(out)) + int(shared_redis.xlen(f"{src}:dlq"))

    def merged() -> bool:
        return any(True for _ in store_client.scan_iter(match=f"{prefix}*"))

    try:
        for chunk in range(CHUNKS):
            fill(shared_redis, src, range(chunk * CHUNK, (chunk + 1) * CHUNK), invalid_share=1)
            if chunk == CHUNKS // 2:
                # Half way: the replica has merged into the store; now the store dies.
                assert wait_for(merged), replica.log()
                assert wait_for(lambda: handled() >= CHUNKS // 4 * CHUNK), replica.log()
                store_client.close()
                store.stop()
            time.sleep(0.05)
        code, summary = replica.finish()
    finally:
        replica.kill()
        store_client.close()
    log = replica.log()
    total = CHUNKS * CHUNK
    assert code == 0, log
    assert (summary["read"], summary["acknowledged"]) == (total, total)
    assert handled() == total
    assert shared_redis.xlen(f"{src}:dlq") == total // 10  # one in ten invalid, all rejected
    outage = [line for line in log.splitlines() if "unreachable" in line]
    assert len(outage) == 1, log
    assert "guardrail store" in outage[0]

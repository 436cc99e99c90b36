"""At-least-once, proven: SIGKILL the consume process 20 times while 10 000 messages flow.

The loop runs as a real ``policy-engine consume`` subprocess against the local Redis. A
producer thread appends 10 000 envelopes (every tenth invalid, so strict mode rejects it) while
the test kills the consumer with SIGKILL at a random moment after it has started working,
restarts it (under one of three consumer names, so both paths back are used: a consumer reading
its own pending entries again, and ``XAUTOCLAIM`` of a dead consumer's), and finally lets one
drain the stream. Every message must then be in the output stream or the DLQ stream: none lost,
duplicates allowed and counted, nothing left pending.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from loop_support import REDIS_URL, order

TOTAL = 10_000
KILLS = 20


def _consume(args: list[str], cwd: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "POLICY_WATCH": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "policy_engine", "consume", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _seqs(client, stream: str) -> list[int]:
    seqs = []
    for _, fields in client.xrange(stream):
        seqs.append(json.loads(fields[b"data"])["payload"]["seq"])
    return seqs


def test_sigkill_twenty_times_loses_nothing(
    redis_client, streams, policy_dir, schema_dir, tmp_path
):
    """Killed with SIGKILL 20 times mid-flow and restarted, the loop still passes on or
    dead-letters every one of 10 000 messages, and leaves nothing pending."""
    rng = random.Random(6)
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    common = [
        "--output",
        f"{REDIS_URL}?stream={out}",
        "--dlq",
        f"{REDIS_URL}?stream={dlq}",
        "--batch-size",
        "50",
        "--claim-idle",
        "0.2",
        "--policies",
        str(policy_dir),
        "--registry",
        str(schema_dir),
    ]
    source = f"{REDIS_URL}?stream={src}&group=g"
    redis_client.xgroup_create(src, "g", id="0", mkstream=True)

    def produce() -> None:
        for start in range(0, TOTAL, 50):
            pipe = redis_client.pipeline(transaction=False)
            for seq in range(start, start + 50):
                pipe.xadd(src, {"data": order(seq, valid=seq % 10 != 0)})
            pipe.execute()
            time.sleep(0.06)

    producer = threading.Thread(target=produce)
    producer.start()

    def progress() -> int:
        return int(redis_client.xinfo_groups(src)[0]["entries-read"] or 0)

    mid_batch = 0
    try:
        for kill in range(KILLS):
            before = progress()
            proc = _consume([source, "--consumer", f"c{kill % 3}", *common], str(tmp_path))
            deadline = time.monotonic() + 60  # generous: a loaded machine starts it slowly
            while progress() == before and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"consume exited early with {proc.returncode}")
                time.sleep(0.002)
            # Mostly while it works through the backlog built up during its start-up (a few
            # hundred messages: some 20 ms of work at 30 000 msg/s), now and then later, when
            # it may be idle.
            time.sleep(rng.uniform(0.0, 0.01) if kill % 3 else rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
            if redis_client.xpending(src, "g")["pending"]:
                mid_batch += 1  # killed between reading a batch and acknowledging it
    finally:
        producer.join()

    final = _consume([source, "--consumer", "final", "--drain", *common], str(tmp_path))
    assert final.wait(60) == 0

    passed, dead = _seqs(redis_client, out), _seqs(redis_client, dlq)
    assert set(passed) | set(dead) == set(range(TOTAL))  # none lost
    assert all(seq % 10 != 0 for seq in passed)
    assert all(seq % 10 == 0 for seq in dead)
    duplicates = len(passed) + len(dead) - TOTAL
    assert duplicates >= 0
    assert redis_client.xpending(src, "g")["pending"] == 0
    assert mid_batch >= 5, f"only {mid_batch} of {KILLS} kills hit a batch in flight"
    print(f"\n{KILLS} kills, {mid_batch} mid-batch, {duplicates} duplicate deliveries")

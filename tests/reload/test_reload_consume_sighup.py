"""``SIGHUP`` to a running ``policy-engine consume`` with a broken policy file: it keeps going.

A real subprocess, as an operator runs it: consume follows a file, the policy file is broken in
a way that once escaped the loader as a bare ``ValueError`` (and killed consume), ``SIGHUP`` is
sent, and consume must log the error with its ``file:line:col``, keep consuming with the last
good policy set, recover on the next good ``SIGHUP``, and stop cleanly on ``SIGTERM``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ORDER_SCHEMA = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {"id": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
}
STRICT = "version: 1\nschemas:\n  shop.Order:\n    mode: strict\n"
RELAXED = "version: 1\nschemas:\n  shop.Order:\n    mode: warn\n"
#: Impossible dates once raised ValueError out of the loader, and out of the SIGHUP handler.
BROKEN = STRICT + "    ramp: [{at: 2026-02-30T00:00:00Z, canary: 5}]\n"


def invalid_order(seq: int) -> bytes:
    """A shop.Order envelope line whose payload fails the schema (negative price)."""
    payload = {"id": f"o-{seq}", "price": -1, "seq": seq}
    return json.dumps({"schema": "shop.Order", "payload": payload}).encode() + b"\n"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (bounded, never a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A registry with shop.Order v1, a strict policy, an empty feed; where outputs go."""
    (tmp_path / "schemas" / "shop.Order").mkdir(parents=True)
    (tmp_path / "schemas" / "shop.Order" / "v1.json").write_text(json.dumps(ORDER_SCHEMA))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "rules.yaml").write_text(STRICT)
    (tmp_path / "feed.jsonl").write_bytes(invalid_order(1))
    return {
        "root": tmp_path,
        "policy": tmp_path / "policies" / "rules.yaml",
        "feed": tmp_path / "feed.jsonl",
        "out": tmp_path / "out.jsonl",
        "dlq": tmp_path / "dlq.jsonl",
        "log": tmp_path / "stderr.log",
    }


def test_sighup_with_a_broken_policy_keeps_consume_running_and_says_why(
    layout: dict[str, Path],
):
    """consume outlives SIGHUP over a broken file: says where, keeps the old set, recovers."""
    root, policy, feed, out, dlq, log = (
        layout[k] for k in ("root", "policy", "feed", "out", "dlq", "log")
    )
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "policy_engine",
                "consume",
                str(feed),
                "--follow",
                "--output",
                str(out),
                "--dlq",
                str(dlq),
                "--log-level",
                "info",
                "--policies",
                str(root / "policies"),
                "--registry",
                str(root / "schemas"),
            ],
            cwd=root,
            env={**os.environ, "POLICY_WATCH": "false"},  # SIGHUP is the only way to reload
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert wait_for(lambda: lines(dlq) == 1)  # strict: the invalid order is rejected

            policy.write_text(BROKEN)
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: b"policy reload failed" in log.read_bytes())
            assert proc.poll() is None, log.read_text()
            assert f"{policy}:5:17: ".encode() in log.read_bytes()
            assert b"Traceback" not in log.read_bytes()

            with feed.open("ab") as handle:  # the last good (strict) set still decides
                handle.write(invalid_order(2))
            assert wait_for(lambda: lines(dlq) == 2)

            policy.write_text(RELAXED)
            proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: b"policy reload error cleared" in log.read_bytes())
            assert wait_for(lambda: b"SIGHUP reload: new policy set" in log.read_bytes())
            with feed.open("ab") as handle:  # now warn: logged and passed on
                handle.write(invalid_order(3))
            assert wait_for(lambda: lines(out) == 1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == 0, log.read_text()
    assert lines(dlq) == 2

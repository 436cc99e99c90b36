"""What the fleet tests share: the policy they run, the messages, `consume` processes, and a
redis-server of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

#: The shared Redis (streams live here; never stopped, never flushed).
REDIS_URL = "redis://127.0.0.1:6379/0"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "price"],
    "properties": {"id": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
}

#: Strict for every key, guarded: over 10 % rejected among at least ``min_samples`` strict
#: payloads in ten minutes falls back to warn for an hour (longer than any run here).
POLICY = """\
version: 1
schemas:
  shop.Order:
    mode: strict
    baseline: warn
    canary: 100
    guardrail:
      max_reject_rate: 0.1
      min_samples: {min_samples}
      window: 10m
      cooldown: 1h
"""


def write_policies(root: Path, min_samples: int) -> tuple[Path, Path]:
    """The policy directory and the embedded registry under ``root``."""
    policies, schemas = root / "policies", root / "schemas"
    policies.mkdir(exist_ok=True)
    (policies / "fleet.yaml").write_text(POLICY.format(min_samples=min_samples), "utf-8")
    (schemas / "shop.Order").mkdir(parents=True, exist_ok=True)
    (schemas / "shop.Order" / "v1.json").write_text(json.dumps(SCHEMA), "utf-8")
    return policies, schemas


def message(seq: int, *, invalid_share: int = 9) -> bytes:
    """Envelope number ``seq``: of every ten, the first ``invalid_share`` have a negative
    price (strict rejects them), the rest are valid."""
    price = -1 if seq % 10 < invalid_share else 2.5
    return json.dumps(
        {"schema": "shop.Order", "key": f"k-{seq}", "payload": {"id": f"o-{seq}", "price": price}}
    ).encode()


def fill(client: Any, stream: str, seqs: range, **kwargs: Any) -> None:
    """XADD the messages numbered ``seqs`` in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    for seq in seqs:
        pipe.xadd(stream, {"data": message(seq, **kwargs)})
    pipe.execute()


def wait_for(predicate: Callable[[], bool], seconds: float = 180.0) -> bool:
    """Poll ``predicate`` until it holds or a generous ``seconds`` pass (two shared cores run
    three interpreters and Redis here); whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def free_port() -> int:
    """A TCP port nothing listens on right now (on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    """One `policy-engine consume` process; its stderr goes to a file (the log)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def finish(self, seconds: float = 300.0) -> tuple[int, dict[str, Any]]:
        """Wait for the exit: the exit code and the ``--json`` summary."""
        try:
            out, _ = self.process.communicate(timeout=seconds)
        finally:
            self._log.close()
        return self.process.returncode, json.loads(out) if out.strip() else {}

    def log(self) -> str:
        """What the process logged."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """Kill it if it still runs (a failed test's clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=60)
        self._log.close()


def start_replica(
    name: str, args: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> Replica:
    """Start `policy-engine consume ARGS --json` as replica ``name`` (its own consumer name)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("GUARDRAIL_STORE", "METRICS_PORT")}
    environ.update({"POLICY_WATCH": "false", **(env or {})})
    log_path = cwd / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by Replica.finish/kill
    process = subprocess.Popen(
        [sys.executable, "-m", "policy_engine", "consume", *args, "--json", "--log-level", "info"],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    return Replica(name, process, log_path, log)


@dataclass
class OwnRedis:
    """A ``redis-server`` of the test's own on a free port: no persistence, loopback only."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its ``redis://`` URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed")
        command = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(self._answers, 60.0):
            pytest.fail(f"redis-server on port {self.port} did not start")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Kill it (SIGKILL: the store crashes, it does not shut down) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=60)

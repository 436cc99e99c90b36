"""Fixtures for the loop tests: an embedded registry, policies, an engine, real local Redis.

Redis tests use stream names unique to the test (``streams("label")``) and delete them after.
A test that needs a Redis it may stop, or configure (a password, an ACL), starts its own
``redis-server`` on a free port (``own_redis``); the shared one on 6379 is never touched.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from loop_support import ORDER, POLICY, free_port
from prometheus_client import CollectorRegistry

from policy_engine import PolicyEngine, Settings


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """An embedded registry with shop.Order, shop.Note and shop.Off on track v1."""
    root = tmp_path / "schemas"
    for name in ("shop.Order", "shop.Note", "shop.Off"):
        (root / name).mkdir(parents=True)
        (root / name / "v1.json").write_text(json.dumps(ORDER), encoding="utf-8")
    return root


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policy directory holding ``POLICY``."""
    root = tmp_path / "policies"
    root.mkdir()
    (root / "rules.yaml").write_text(POLICY, encoding="utf-8")
    return root


@pytest.fixture
def registry() -> CollectorRegistry:
    """A Prometheus registry of the test's own."""
    return CollectorRegistry()


@pytest.fixture
def engine(
    policy_dir: Path, schema_dir: Path, registry: CollectorRegistry
) -> Iterator[PolicyEngine]:
    """An engine over the test policies and schemas, counting into ``registry``."""
    eng = PolicyEngine(
        policies=str(policy_dir),
        registry=str(schema_dir),
        settings=Settings(policy_watch=False),
        metrics_registry=registry,
    )
    yield eng
    eng.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client of the local Redis on 127.0.0.1:6379, db 0."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def streams(redis_client: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Make stream names unique to this test; every one is deleted afterwards."""
    names: list[str] = []

    def new(label: str) -> str:
        name = f"test:loop:{label}:{uuid.uuid4().hex[:12]}"
        names.append(name)
        return name

    yield new
    if names:
        redis_client.delete(*names)


@dataclass
class OwnRedis:
    """A ``redis-server`` of the test's own on ``port`` (no persistence, loopback only)."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, directory: Path) -> None:
        """Start it with extra configuration ``args`` and wait until it accepts connections."""
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed")
        command = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory), *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Kill it (SIGKILL: a crash, not a shutdown) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], OwnRedis]]:
    """Make ``OwnRedis`` servers on free ports (not started yet); all are killed afterwards."""
    made: list[OwnRedis] = []

    def make() -> OwnRedis:
        server = OwnRedis(free_port())
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()

"""Fixtures for the fleet tests: policies and schemas on disk, Redis names of the test's own,
and redis-servers the test may kill.

Every Redis name a test uses (streams, the guardrail store's prefix) starts with
``test:fleet:<id>:`` and is deleted afterwards; the shared Redis on 6379 is never stopped or
flushed. A store that a test stops is a ``redis-server`` of its own on a free port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fleet_support import REDIS_URL, OwnRedis, write_policies


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    """A client of the shared Redis on 127.0.0.1:6379."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} does not answer: {exc}")
    yield client
    client.close()


@pytest.fixture
def names(shared_redis: redis.Redis) -> Iterator[Callable[[str], str]]:
    """Redis names under ``test:fleet:<id>:``; every key under it (a stream, its DLQ, the
    guardrail store's windows) is deleted afterwards."""
    base = f"test:fleet:{uuid.uuid4().hex[:12]}:"

    def name(label: str) -> str:
        return base + label

    yield name
    keys = list(shared_redis.scan_iter(match=f"{base}*", count=1000))
    if keys:
        shared_redis.delete(*keys)


@pytest.fixture
def setup_dirs(tmp_path: Path) -> Callable[[int], tuple[Path, Path]]:
    """Write the fleet's policies (with the given ``min_samples``) and schemas under
    ``tmp_path``; returns (policy directory, schema directory)."""

    def make(min_samples: int) -> tuple[Path, Path]:
        return write_policies(tmp_path, min_samples)

    return make


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], OwnRedis]]:
    """Make ``OwnRedis`` servers on free ports (not started yet); all are killed afterwards."""
    made: list[OwnRedis] = []

    def make() -> OwnRedis:
        server = OwnRedis(directory=tmp_path)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()

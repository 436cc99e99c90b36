"""Fixtures for the loop tests: an embedded registry, policies, an engine, real local Redis.

Redis tests use stream names unique to the test (``streams("label")``) and delete them after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from loop_support import ORDER, POLICY
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

"""Guardrails shared through Redis (GUARDRAIL_STORE): one window and one trip for a fleet.

Replicas are engines in this process, each with its own store client on the shared Redis at
127.0.0.1:6379 and a prefix of the test's own. The outage test starts a redis-server of its own
on a free port and stops it; the shared one is never touched.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from policy_engine import Action, Mode, PolicyEngine, Settings
from policy_engine.errors import ConfigError
from policy_engine.guardrail_store import DEFAULT_PREFIX, parse_store_url

REDIS = "redis://127.0.0.1:6379/0"
VALID, INVALID = {"n": 1}, {"n": "x"}
MIN_SAMPLES = 60


def policy(min_samples: int = MIN_SAMPLES) -> str:
    """Strict for every key of g.S, guarded at 10 % over a minute, a long cooldown."""
    return (
        "version: 1\nschemas:\n  g.S:\n    mode: strict\n    guardrail:\n"
        f"      max_reject_rate: 0.1\n      window: 60s\n"
        f"      min_samples: {min_samples}\n      cooldown: 1h\n"
    )


def wait_for(condition, timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def shared_redis() -> redis.Redis:
    """The shared Redis, or a skip if it does not answer (CI starts one)."""
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS} does not answer: {exc}")
    return client


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A policy directory and a registry with g.S v1 (an object whose n is an integer)."""
    policies, schemas = tmp_path / "p", tmp_path / "s"
    policies.mkdir()
    (schemas / "g.S").mkdir(parents=True)
    (schemas / "g.S" / "v1.json").write_text(
        '{"type": "object", "properties": {"n": {"type": "integer"}}}'
    )
    (policies / "p.yaml").write_text(policy())
    return policies, schemas


@pytest.fixture
def fleet(setup, shared_redis) -> Iterator[list[PolicyEngine]]:
    """Three replicas sharing guardrails under a prefix of this test's own."""
    prefix = f"pe-test:{uuid.uuid4().hex}:"
    policies, schemas = setup
    settings = Settings(policy_watch=False, guardrail_store=f"{REDIS}?prefix={prefix}")
    engines = [
        PolicyEngine(
            str(policies),
            str(schemas),
            settings=settings,
            metrics_registry=CollectorRegistry(),
        )
        for _ in range(3)
    ]
    yield engines
    for engine in engines:
        engine.close()
    for key in shared_redis.scan_iter(f"{prefix}*"):
        shared_redis.delete(key)


def rejections_until_all_trip(fleet: list[PolicyEngine], batch: int) -> int:
    """Feed invalid payloads to the replicas in turn, ``batch`` at a time, merging after each
    batch as the consume loop does, until every replica has fallen back; the rejections."""
    rejected = 0
    for _ in range(1000):
        for engine in fleet:
            for i in range(batch):
                action = engine.evaluate("g.S", INVALID, key=f"k{i}", track="v1").action
                rejected += action is Action.REJECTED
            assert engine.guardrail_store is not None
            engine.guardrail_store.merge_now()
        if all(
            e.evaluate("g.S", INVALID, key="probe", track="v1").mode is Mode.WARN for e in fleet
        ):
            return rejected
    raise AssertionError("the fleet never tripped")


def fallen_back(engine: PolicyEngine) -> bool:
    """Whether ``engine`` holds g.S at its baseline (warn) for an invalid payload."""
    return engine.evaluate("g.S", INVALID, key="probe", track="v1").mode is Mode.WARN


def test_the_fleet_trips_after_min_samples_in_all(fleet):
    """Three replicas reject about min_samples plus one batch each before they all fall back,
    not min_samples each."""
    batch = 10
    rejected = rejections_until_all_trip(fleet, batch)
    assert MIN_SAMPLES <= rejected <= MIN_SAMPLES + len(fleet) * batch
    assert rejected < len(fleet) * MIN_SAMPLES
    for engine in fleet:
        tripped = engine.status().guardrails
        assert [(g.schema, g.track) for g in tripped] == [("g.S", "v1")]


def test_without_a_store_each_replica_waits_for_its_own_min_samples(setup):
    """The baseline: replicas without a store each reject min_samples before tripping."""
    policies, schemas = setup
    engines = [
        PolicyEngine(
            str(policies), str(schemas), metrics=False, settings=Settings(policy_watch=False)
        )
        for _ in range(3)
    ]
    rejected = 0
    for engine in engines:
        while engine.evaluate("g.S", INVALID, key="k", track="v1").action is Action.REJECTED:
            rejected += 1
    assert rejected == 3 * MIN_SAMPLES
    for engine in engines:
        engine.close()


def test_library_use_merges_in_the_background(fleet):
    """Without the loop asking, replicas merge on their own (every 250 ms): a trip made from
    one replica's traffic reaches the others."""
    first, *others = fleet
    for i in range(MIN_SAMPLES + 5):
        first.evaluate("g.S", INVALID, key=f"k{i}", track="v1")
    assert wait_for(
        lambda: all(
            e.evaluate("g.S", INVALID, key="p", track="v1").mode is Mode.WARN for e in fleet
        )
    )
    assert all(e.guardrail_store is not None and e.guardrail_store.up for e in others)


def test_a_changed_rule_starts_a_fresh_shared_window(fleet, setup):
    """Counts belong to the rule's identity: after a change of the rule, the old counts no
    longer count toward a trip."""
    first = fleet[0]
    for i in range(MIN_SAMPLES - 5):
        first.evaluate("g.S", INVALID, key=f"k{i}", track="v1")
    assert first.guardrail_store is not None
    first.guardrail_store.merge_now()
    policies, _ = setup
    (policies / "p.yaml").write_text(policy(MIN_SAMPLES + 1))
    assert first.reload()
    for i in range(10):
        first.evaluate("g.S", INVALID, key=f"k{i}", track="v1")
    first.guardrail_store.merge_now()
    assert first.evaluate("g.S", INVALID, key="p", track="v1").mode is Mode.STRICT


def test_store_url_prefix_and_validation():
    """The prefix comes from ?prefix= (default policy-engine:guardrail:); a non-Redis URL is a
    configuration error that names the variable and hides credentials."""
    assert parse_store_url("redis://h:6379/2?prefix=fleet-a:") == ("redis://h:6379/2", "fleet-a:")
    assert parse_store_url("redis://h:6379/0")[1] == DEFAULT_PREFIX
    with pytest.raises(ConfigError, match="GUARDRAIL_STORE") as info:
        parse_store_url("http://user:secret@h/")
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="GUARDRAIL_STORE"):
        Settings.from_env({"GUARDRAIL_STORE": "postgres://h/db"})


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own on a free port (stopped by the test or at the end)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (CI installs it)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    assert wait_for(lambda: _answers(client)), "the test's redis-server did not start"
    yield port, process
    process.kill()
    process.wait(timeout=30)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_store_outage_leaves_each_replica_on_its_own(setup, own_redis, caplog):
    """With the store's Redis stopped, evaluation goes on without waiting, the replica falls
    back to its own window (logged once, policy_guardrail_store_up 0, one error counted) and
    trips on its own min_samples."""
    port, process = own_redis
    policies, schemas = setup
    registry = CollectorRegistry()
    engine = PolicyEngine(
        str(policies),
        str(schemas),
        settings=Settings(policy_watch=False, guardrail_store=f"redis://127.0.0.1:{port}/0"),
        metrics_registry=registry,
    )
    store = engine.guardrail_store
    assert store is not None
    engine.evaluate("g.S", VALID, key="k", track="v1")
    assert store.merge_now()
    assert registry.get_sample_value("policy_guardrail_store_up") == 1
    process.kill()
    process.wait(timeout=30)
    caplog.set_level(logging.ERROR, logger="policy_engine.guardrail")
    for i in range(3):
        engine.evaluate("g.S", VALID, key=f"v{i}", track="v1")
        assert not store.merge_now()
    assert store.up is False
    assert registry.get_sample_value("policy_guardrail_store_up") == 0
    assert registry.get_sample_value("policy_guardrail_store_errors_total") == 1
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    rejected = 0
    while engine.evaluate("g.S", INVALID, key="k", track="v1").action is Action.REJECTED:
        rejected += 1
    assert MIN_SAMPLES - 5 <= rejected <= MIN_SAMPLES  # its own window: 4 valid ones counted
    assert engine.evaluate("g.S", INVALID, key="k", track="v1").mode is Mode.WARN
    engine.close()

"""Fixtures for the metrics tests: a schema directory, policy files, a clock, a fresh registry.

Every engine here counts into its own ``CollectorRegistry``, so tests never see each other's
counts, and reads them back with ``registry.get_sample_value`` as Prometheus would scrape them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from metrics_support import ORDER, POLICY, Clock
from prometheus_client import CollectorRegistry

from policy_engine import PolicyEngine, Settings
from policy_engine.metrics import METRICS


@pytest.fixture
def clock() -> Clock:
    """A clock standing at ``T0`` until the test moves it."""
    return Clock()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own."""
    return CollectorRegistry()


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """An embedded registry: shop.Order v1 and v2, shop.Off v1."""
    root = tmp_path / "schemas"
    for name, track in (("shop.Order", "v1"), ("shop.Order", "v2"), ("shop.Off", "v1")):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{track}.json").write_text(json.dumps(ORDER), encoding="utf-8")
    return root


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policy directory holding ``POLICY`` as ``rules.yaml``."""
    root = tmp_path / "policies"
    root.mkdir()
    (root / "rules.yaml").write_text(POLICY, encoding="utf-8")
    return root


@pytest.fixture
def make_engine(
    policy_dir: Path, schema_dir: Path, clock: Clock, registry: CollectorRegistry
) -> Iterator[Callable[..., PolicyEngine]]:
    """Build engines over the test's policies and schemas, counting into ``registry``."""
    engines: list[PolicyEngine] = []

    def build(policy: str | None = None, *, source: Any = None, **kwargs: Any) -> PolicyEngine:
        if policy is not None:
            (policy_dir / "rules.yaml").write_text(policy, encoding="utf-8")
        kwargs.setdefault("metrics_registry", registry)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("settings", Settings(policy_watch=False))
        engine = PolicyEngine(
            policies=str(policy_dir),
            registry=str(schema_dir) if source is None else source,
            **kwargs,
        )
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


@pytest.fixture
def value(registry: CollectorRegistry) -> Callable[..., float | None]:
    """``value(name, *label_values, **labels)``: a sample as scraped, ``None`` if absent.

    Positional label values follow the metric's label names in ``policy_engine.metrics.METRICS``:
    ``value("schema_validations_total", "shop.Order", "v2", "strict", "accepted")``.
    """
    names = {spec.name: spec.labels for spec in METRICS}

    def read(name: str, *values: str, **labels: str) -> float | None:
        if values:
            labels = {**dict(zip(names[name], values, strict=True)), **labels}
        return registry.get_sample_value(name, labels)

    return read

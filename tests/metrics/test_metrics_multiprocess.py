"""Multi-process deployments: worker processes count into PROMETHEUS_MULTIPROC_DIR files and one
``MultiProcessCollector`` sums them; ``serve_metrics`` serves ``/metrics`` over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from metrics_support import INVALID, VALID

from policy_engine.hooks import TIMING_SAMPLE
from policy_engine.metrics import METRICS, multiprocess_registry, serve_metrics

LABELS = {spec.name: spec.labels for spec in METRICS}

PER_WORKER = 300

WORKER = textwrap.dedent(
    """
    import json, sys, urllib.request
    from policy_engine import PolicyEngine
    from policy_engine.metrics import MultiprocessEngineMetrics, serve_metrics

    policies, schemas, valid, invalid, n, serve = sys.argv[1:]
    eng = PolicyEngine(policies=policies, registry=schemas)
    assert isinstance(eng.metrics, MultiprocessEngineMetrics), type(eng.metrics)
    for i in range(int(n)):
        eng.evaluate("shop.Order", json.loads(invalid if i % 3 == 0 else valid), track="v1")
    eng.evaluate("x.Invented", {}, track="v1")
    eng.metrics.count_dlq("shop.Order", "rejected")
    eng.metrics.set_guardrail_tripped("shop.Order", "v2", serve == "serve")
    body = ""
    if serve == "serve":
        server, _ = serve_metrics(0, addr="127.0.0.1")
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        body = urllib.request.urlopen(url, timeout=10).read().decode()
        server.shutdown()
    print(json.dumps({"checksum": eng.checksum, "body": body}))
    """
)


def run_workers(policy_dir: Path, schema_dir: Path, directory: Path) -> list[dict[str, str]]:
    """Start two worker processes at once and wait for their reports."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    env.pop("prometheus_multiproc_dir", None)
    args = [str(policy_dir), str(schema_dir), json.dumps(VALID), json.dumps(INVALID)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args, str(PER_WORKER), mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("serve", "quiet")
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_two_processes_are_summed(tmp_path, policy_dir, schema_dir):
    """Counts of two worker processes add up through a MultiProcessCollector."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    reports = run_workers(policy_dir, schema_dir, directory)
    registry = multiprocess_registry(str(directory))

    def value(name: str, *values: str, **labels: str) -> float | None:
        labels.update(zip(LABELS.get(name, ()), values, strict=False))
        return registry.get_sample_value(name, labels)

    invalid = 2 * len(range(0, PER_WORKER, 3))
    valid = 2 * PER_WORKER - invalid
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "logged") == invalid
    assert value("schema_validations_total", "shop.Order", "v1", "warn", "accepted") == valid
    assert value("schema_validation_failures_total", "shop.Order", "warn") == invalid
    assert value("schema_enforcement_actions_total", "shop.Order", "warn", "logged") == invalid
    assert value("schema_violations_total", "shop.Order", "v1", "minimum", "/price") == invalid
    assert value("schema_validations_total", "unknown", "v1", "warn", "skipped") == 2
    timed = value("schema_validation_duration_seconds_count")
    assert timed % TIMING_SAMPLE == 0  # one evaluation in TIMING_SAMPLE, counted that many times
    assert abs(timed - (2 * PER_WORKER + 2)) <= 2 * TIMING_SAMPLE
    assert value("policy_reloads_total", result="success") == 2
    assert value("dlq_messages_total", schema="shop.Order", reason="rejected") == 2
    assert value("policy_info", checksum=reports[0]["checksum"]) == 1
    assert value("policy_guardrail_tripped", schema="shop.Order", track="v2") == 1  # livemax
    assert value("policy_canary_percent", schema="shop.Order", track="v2") == 100
    assert value("policy_last_reload_success_timestamp_seconds") > 0
    # the worker that served /metrics saw at least its own counts, in the text format
    assert 'schema_validations_total{action="accepted",mode="warn"' in reports[0]["body"]


def test_serve_metrics_serves_a_registry_over_http(make_engine, registry):
    """``serve_metrics`` serves the registry's samples on /metrics until shut down."""
    eng = make_engine()
    eng.evaluate("shop.Order", VALID, track="v1")
    server, thread = serve_metrics(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    thread.join(timeout=10)
    assert (
        'schema_validations_total{action="accepted",mode="warn",schema="shop.Order",track="v1"} 1.0'
        in body
    )
    assert "# TYPE schema_validation_duration_seconds histogram" in body

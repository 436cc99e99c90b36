"""`consume`'s probes on the metrics port (/healthz, /readyz, /status), tested against running
`policy-engine consume` subprocesses, and its fleet options (--guardrail-store, METRICS_ADDR)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from loop_support import REDIS_URL, free_port, order

from policy_engine.cli import main

#: A guarded strict rule: falls back to warn once 5 strict payloads are mostly rejected.
GUARDED = """\
version: 1
schemas:
  shop.Order:
    mode: strict
    canary: 100
    guardrail:
      max_reject_rate: 0.1
      min_samples: 5
      window: 10m
      cooldown: 1h
"""
#: What /status must always say (SPEC §11), whatever else it adds.
STATUS_KEYS = {
    "checksum",
    "files",
    "healthy",
    "last_error",
    "last_error_at",
    "last_success_at",
    "guardrails",
    "source",
}


def _get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` on the metrics port: (status, body); (0, "") while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _wait_for(predicate, seconds: float = 90.0) -> bool:
    """Poll ``predicate`` until it holds or a generous ``seconds`` pass (two shared cores start
    a subprocess slowly); whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _status(port: int) -> dict:
    code, body = _get(port, "/status")
    return json.loads(body) if code == 200 else {}


def _everything_served(port: int) -> str:
    """The bodies of every endpoint, joined: what a scraper or a curious person can see."""
    return "\n".join(_get(port, path)[1] for path in ("/healthz", "/readyz", "/status", "/metrics"))


def _spawn(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if k not in ("GUARDRAIL_STORE", "METRICS_ADDR")}
    return subprocess.Popen(
        [sys.executable, "-m", "policy_engine", *args],
        cwd=cwd,
        env={**environ, "POLICY_WATCH": "false", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    """SIGTERM, then the exit code, stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on ``port`` with (Linux /proc/net/tcp)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    found = set()
    for line in table.read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.fixture
def guarded_dir(tmp_path: Path) -> Path:
    """A policy directory with the guarded strict rule."""
    root = tmp_path / "guarded"
    root.mkdir()
    (root / "rules.yaml").write_text(GUARDED, encoding="utf-8")
    return root


def test_a_file_consumer_is_live_ready_and_says_where_it_is(tmp_path, guarded_dir, schema_dir):
    """consume FILE --follow: /healthz and /readyz 200 once the file is read, /status has
    SPEC §11's fields, the tripped guardrail and the file offset; METRICS_ADDR=127.0.0.1 binds
    the port to loopback only; SIGTERM exits 0."""
    lines = [order(i, valid=i > 8) for i in range(1, 21)]
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(line + b"\n" for line in lines))
    port = free_port()
    proc = _spawn(
        [
            "consume",
            str(feed),
            "--follow",
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--metrics-port",
            str(port),
            "--policies",
            str(guarded_dir),
            "--registry",
            str(schema_dir),
        ],
        tmp_path,
        {"METRICS_ADDR": "127.0.0.1"},
    )
    try:
        assert _wait_for(lambda: _status(port).get("source", {}).get("line") == 20)
        status = _status(port)
        probes = (_get(port, "/healthz")[0], _get(port, "/readyz")[0])
        listening = _listening_addresses(port)
    finally:
        code, _, stderr = _stop(proc)
    assert code == 0, stderr
    assert probes == (200, 200)
    assert set(status) >= STATUS_KEYS
    assert status["healthy"] is True
    assert status["last_error"] is None
    assert status["files"] == [str(guarded_dir / "rules.yaml")]
    assert [(g["schema"], g["track"]) for g in status["guardrails"]] == [("shop.Order", "v1")]
    assert status["guardrails"][0]["until"] > time.time()
    assert status["source"]["offset"] == feed.stat().st_size
    assert status["source"]["connected"] is True
    assert listening == {"127.0.0.1"}
    assert _get(port, "/healthz") == (0, "")  # the port closes with the process


def test_a_redis_consumer_is_ready_only_once_its_source_answers(
    tmp_path, policy_dir, schema_dir, own_redis
):
    """With its Redis not up yet: /healthz 200 and /readyz 503 saying why; once a Redis
    answers on that port: /readyz 200 and /status has the stream's last id and the group's
    lag. Neither the password (in the source URL and GUARDRAIL_STORE) nor REGISTRY_TOKEN is
    ever shown by an endpoint or the log."""
    password, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    server = own_redis()
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    port = free_port()
    proc = _spawn(
        [
            "consume",
            f"{url}?stream=events&group=workers&consumer=c1",
            "--metrics-port",
            str(port),
            "--sink-retries",
            "1000",  # keep retrying the read until the test starts the server
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ],
        tmp_path,
        {"GUARDRAIL_STORE": f"{url}?prefix=test:health:", "REGISTRY_TOKEN": token},
    )
    try:
        assert _wait_for(lambda: "reading failed" in _get(port, "/readyz")[1])
        not_ready = _get(port, "/readyz")
        live = _get(port, "/healthz")
        before = _everything_served(port)

        server.start("--requirepass", password, directory=tmp_path)
        assert _wait_for(lambda: _get(port, "/readyz")[0] == 200)
        client = redis.Redis(port=server.port, password=password)
        ids = [client.xadd("events", {"data": order(i)}).decode() for i in range(5)]
        client.close()
        assert _wait_for(
            lambda: (
                _status(port).get("source", {}).get("last_delivered_id") == ids[-1]
                and _status(port)["source"].get("lag") == 0
            )
        )
        status = _status(port)
        after = _everything_served(port)
    finally:
        code, stdout, stderr = _stop(proc)
    assert not_ready[0] == 503
    assert "is not connected" in not_ready[1]
    assert f"127.0.0.1:{server.port}" in not_ready[1]
    assert live == (200, "ok\n")
    assert set(status) >= STATUS_KEYS
    source = status["source"]
    assert (source["stream"], source["group"], source["consumer"]) == ("events", "workers", "c1")
    assert source["last_id"] == ids[-1]
    assert source["pending"] == 0
    assert status["guardrail_store"]["url"].startswith("redis://")
    assert code == 0, stderr
    for text in (before, after, stdout, stderr):
        assert password not in text
        assert token not in text


def test_metrics_addr_is_checked_at_start_up(tmp_path, policy_dir, schema_dir):
    """A METRICS_ADDR that cannot be bound to stops consume at start-up, naming the variable."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(order(1) + b"\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "consume",
            str(feed),
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--metrics-port",
            "0",
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ],
        stdin=io.BytesIO(),
        stdout=out,
        stderr=err,
        environ={"METRICS_ADDR": "not an address"},
    )
    assert code == 2
    assert "METRICS_ADDR='not an address'" in err.getvalue()
    assert not (tmp_path / "dlq.jsonl").exists()


def _store_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}*"))


def test_the_guardrail_store_flag_overrides_the_environment(
    tmp_path, guarded_dir, schema_dir, redis_client
):
    """--guardrail-store replaces GUARDRAIL_STORE (the counts land under the flag's prefix,
    none under the variable's), and --guardrail-store '' turns the store off."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(order(i, valid=False) + b"\n" for i in range(8)))
    run_id = uuid.uuid4().hex[:12]
    from_env, from_flag = f"test:loop:{run_id}:env:", f"test:loop:{run_id}:flag:"

    def consume(*flag: str) -> int:
        return main(
            [
                "consume",
                str(feed),
                "--dlq",
                str(tmp_path / "dlq.jsonl"),
                *flag,
                "--policies",
                str(guarded_dir),
                "--registry",
                str(schema_dir),
            ],
            stdin=io.BytesIO(),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            environ={"GUARDRAIL_STORE": f"{REDIS_URL}?prefix={from_env}"},
        )

    try:
        assert consume("--guardrail-store", f"{REDIS_URL}?prefix={from_flag}") == 0
        flagged, environ = _store_keys(redis_client, from_flag), _store_keys(redis_client, from_env)
        for key in flagged:
            redis_client.delete(key)
        assert consume("--guardrail-store", "") == 0
        after_off = _store_keys(redis_client, f"test:loop:{run_id}:")
    finally:
        for key in _store_keys(redis_client, f"test:loop:{run_id}:"):
            redis_client.delete(key)
    assert flagged
    assert environ == []
    assert after_off == []


def test_a_bad_guardrail_store_url_is_a_usage_error(tmp_path, policy_dir, schema_dir):
    """--guardrail-store that is not a redis:// URL stops consume with exit 2, password hidden."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(order(1) + b"\n")
    err = io.StringIO()
    code = main(
        [
            "consume",
            str(feed),
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--guardrail-store",
            "http://user:hunter2@store:80/",
            "--policies",
            str(policy_dir),
            "--registry",
            str(schema_dir),
        ],
        stdin=io.BytesIO(),
        stdout=io.StringIO(),
        stderr=err,
        environ={},
    )
    assert code == 2
    assert "GUARDRAIL_STORE" in err.getvalue()
    assert "hunter2" not in err.getvalue()


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("0.0.0.0", True),
        ("127.0.0.1", True),
        ("localhost", True),
        ("metrics.pod-1.svc.cluster.local", True),
        ("::1", True),  # served on IPv6
        ("::", True),
        ("fe80::zz", False),
        ("999.1.1.1", False),
        ("1.2.3", False),
        ("two words", False),
    ],
)
def test_metrics_addr_accepts_ip_addresses_and_host_names(value, accepted):
    """METRICS_ADDR takes an IPv4 or IPv6 address or a host name; anything else is a
    ConfigError."""
    from policy_engine.errors import ConfigError
    from policy_engine.settings import Settings

    if accepted:
        assert Settings.from_env({"METRICS_ADDR": value}).metrics_addr == value
    else:
        with pytest.raises(ConfigError, match="METRICS_ADDR"):
            Settings.from_env({"METRICS_ADDR": value})


def test_metrics_addr_defaults_to_every_interface():
    """Unset or empty, METRICS_ADDR is 0.0.0.0, as Prometheus exporters bind."""
    from policy_engine.settings import Settings

    assert Settings.from_env({}).metrics_addr == "0.0.0.0"
    assert Settings.from_env({"METRICS_ADDR": " "}).metrics_addr == "0.0.0.0"

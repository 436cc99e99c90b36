"""``policy-engine status``: every schema/track's rollout, and the replicas' /status.

Replicas are real engines in this process serving ``/status`` on loopback
(``metrics.serve.serve_metrics`` with a ``Health``), as a consume process does.
"""

from __future__ import annotations

import io
import json
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from policy_engine import Mode, PolicyEngine, Settings
from policy_engine.cli import main, status
from policy_engine.errors import PolicyLoadError
from policy_engine.metrics.serve import Health, serve_metrics

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = str(REPO / "schemas")
POLICIES = str(REPO / "policies")
REDIS = "redis://127.0.0.1:6379/0"

#: A strict g.S with a guardrail that trips on the second rejection, and a glob matching nothing.
GUARDED = """\
version: 1
schemas:
  g.S:
    mode: strict
    guardrail: {max_reject_rate: 0.01, min_samples: 2, window: 1h, cooldown: 30m}
  "nothing.*":
    tracks:
      v3: {mode: strict, canary: 5}
"""


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


def epoch(text: str) -> float:
    """Epoch seconds of an RFC 3339 time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def example(*args: str) -> tuple[int, dict[str, Any]]:
    """`status --json` on the example project; (exit code, the object)."""
    code, out, _ = run(["status", "--json", "--policies", POLICIES, "--registry", SCHEMAS, *args])
    return code, json.loads(out)


def rows_by_pair(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The status rows by (schema, track)."""
    return {(row["schema"], row["track"]): row for row in document["rules"]}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """policies/ with GUARDED and schemas/ with g.S v1 (n must be an integer)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(GUARDED)
    (tmp_path / "schemas" / "g.S").mkdir(parents=True)
    (tmp_path / "schemas" / "g.S" / "v1.json").write_text(
        '{"type": "object", "properties": {"n": {"type": "integer"}}}'
    )
    return tmp_path


def common(project: Path) -> list[str]:
    return ["--policies", str(project / "policies"), "--registry", str(project / "schemas")]


class Replica:
    """A real engine whose /status is served on a free loopback port."""

    def __init__(self, policies: Path | str, registry: Path | str, now: float = 1e9) -> None:
        self.engine = PolicyEngine(
            str(policies), str(registry), settings=Settings(policy_watch=False),
            clock=lambda: now, metrics_registry=CollectorRegistry(),
        )  # fmt: skip
        self.server, _ = serve_metrics(
            0, "127.0.0.1", CollectorRegistry(), Health(self.engine, loop=False)
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.engine.close()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    """Replicas made by the test, stopped afterwards."""
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.close()


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the rules


def test_every_schema_and_track_the_registry_names_is_a_row_with_its_rule():
    """The example project: one row per registry (schema, track), each with the SPEC fields,
    mode and baseline from its rule and where the rule is written."""
    code, document = example("--at", "2026-11-25T00:00:00Z")
    rows = rows_by_pair(document)
    assert code == 0
    assert set(rows) == {
        ("marketdata.OHLCVBatch", "v1"),
        ("marketdata.TradeEvent", "v1"),
        ("marketdata.TradeEvent", "v2"),
        ("telemetry.FeedbackEvent", "v1"),
        ("telemetry.FeedbackEvent", "v2"),
        ("telemetry.RateAdjustment", "v1"),
        ("telemetry.RateAdjustment", "v2"),
    }
    for row in document["rules"]:
        assert {"schema", "track", "mode", "baseline", "canary", "next", "guardrail", "rule"} <= (
            row.keys()
        )
    trade = rows[("marketdata.TradeEvent", "v2")]
    assert (trade["mode"], trade["baseline"]) == ("strict", "warn")
    assert trade["rule"] == {"file": f"{POLICIES}/marketdata.yaml", "line": 17}
    assert trade["pattern"] == "marketdata.*"
    assert rows[("telemetry.RateAdjustment", "v1")]["mode"] == "off"
    assert document["replicas"] == []
    assert document["checksum"] == PolicyEngine(POLICIES, SCHEMAS, metrics=False).checksum


@pytest.mark.parametrize(
    ("at", "canary", "step"),
    [
        pytest.param("2026-10-01T00:00:00Z", 0, ("2026-11-01T00:00:00Z", 10), id="before-ramp"),
        pytest.param("2026-11-25T00:00:00Z", 10, ("2026-12-01T00:00:00Z", 50), id="first-step"),
        pytest.param("2026-12-01T00:00:00Z", 50, ("2027-01-05T00:00:00Z", 100), id="on-a-step"),
        pytest.param("2027-01-06T00:00:00Z", 100, None, id="ramp-done"),
    ],
)
def test_at_gives_the_canary_in_force_and_the_next_step_then(at, canary, step):
    """`--at` evaluates the ramp at that time: the canary in force and the next step (its
    time and canary), none once the last step has passed."""
    _, document = example("--at", at)
    row = rows_by_pair(document)[("marketdata.TradeEvent", "v2")]
    assert document["at"] == epoch(at)
    assert row["canary"] == canary
    if step is None:
        assert row["next"] is None
    else:
        assert row["next"] == {"at": epoch(step[0]), "canary": step[1]}


def test_the_text_table_shows_the_next_step_when_and_the_guardrail_settings():
    """The text table has a row per schema/track with the canary, the next step with its time
    and how far off it is, the guardrail's settings and the rule's file:line (and pattern)."""
    code, out, _ = run(
        ["status", "--at", "2026-11-25T00:00:00Z", "--policies", POLICIES, "--registry", SCHEMAS]
    )
    line = next(r for r in out.splitlines() if r.split()[:2] == ["marketdata.TradeEvent", "v2"])
    assert code == 0
    assert line.split()[:5] == ["marketdata.TradeEvent", "v2", "strict", "warn", "10%"]
    assert "50% at 2026-12-01 00:00Z (in 6d)" in line
    assert ">5% in 10m, min 500" in line
    assert line.endswith(f"{POLICIES}/marketdata.yaml:17 (marketdata.*)")
    assert out.splitlines()[0].startswith("policy set ")


def test_a_glob_that_governs_nothing_is_listed_under_its_pattern(project):
    """A glob matching no name the registry or the policies know gets its own row, under its
    pattern and the tracks it writes, with a note saying it matches nothing."""
    code, out, _ = run(["status", "--json", *common(project)])
    rows = rows_by_pair(json.loads(out))
    assert code == 0
    glob = rows[("nothing.*", "v3")]
    assert (glob["mode"], glob["canary"]) == ("strict", 5)
    assert glob["note"] == "matches no schema the registry or the policies name"
    assert rows[("g.S", "v1")]["note"] is None


def test_exact_names_outside_the_registry_and_registry_names_without_a_rule_are_rows(project):
    """An exact policy entry the registry lacks is listed with the tracks it writes; a registry
    schema no rule matches is listed with rule null (the global default)."""
    (project / "policies" / "q.yaml").write_text(
        "version: 1\nschemas:\n  x.Only:\n    tracks:\n      v7: {mode: warn}\n"
    )
    (project / "schemas" / "free.T").mkdir()
    (project / "schemas" / "free.T" / "v1.json").write_text("{}")
    _, out, _ = run(["status", "--json", *common(project)])
    rows = rows_by_pair(json.loads(out))
    assert rows[("x.Only", "v7")]["rule"] == {
        "file": str(project / "policies" / "q.yaml"),
        "line": 5,
    }
    free = rows[("free.T", "v1")]
    assert free["rule"] is None
    assert (free["mode"], free["baseline"]) == ("warn", "off")


def test_a_registry_that_cannot_be_listed_leaves_the_names_the_policies_write(project):
    """With the registry unreachable the rows are the exact policy entries' tracks, the glob
    is listed as matching nothing, and the output says the registry was not listed."""
    registry = f"http://127.0.0.1:{free_port()}"
    args = ["status", "--policies", str(project / "policies"), "--registry", registry]
    code, out, _ = run([*args, "--json"])
    document = json.loads(out)
    assert code == 0
    assert document["registry_listed"] is False
    assert set(rows_by_pair(document)) == {("g.S", "v1"), ("g.S", "v2"), ("nothing.*", "v3")}
    _, out, _ = run(args)
    assert "the registry could not be listed: only the names the policies write are shown" in out


def test_modes_are_coloured_on_request_and_columns_stay_aligned(project):
    """`--color always` paints the table (modes, headings) after padding, so the columns line
    up as in plain output once the escapes are removed."""
    args = ["status", "--at", "2030-01-01T00:00:00Z", *common(project)]
    _, plain, _ = run(args)
    _, coloured, _ = run([*args, "--color", "always"])
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_the_force_cap_is_named_in_the_output():
    """With POLICY_FORCE_MODE the output says every mode is capped (JSON: force_mode)."""
    env = {"POLICY_FORCE_MODE": "warn"}
    code, out, _ = run(["status", "--policies", POLICIES, "--registry", SCHEMAS], env)
    assert code == 0
    assert "POLICY_FORCE_MODE=warn caps every mode below" in out
    _, out, _ = run(["status", "--json", "--policies", POLICIES, "--registry", SCHEMAS], env)
    assert json.loads(out)["force_mode"] == "warn"


def test_a_bad_at_is_a_usage_error():
    """`--at` that is not an RFC 3339 time with an offset exits 2 and says how to write it."""
    code, _, err = run(["status", "--at", "2026-12-01", "--policies", POLICIES])
    assert code == 2
    assert "--at:" in err


# ---------------------------------------------------------------- replicas


def test_healthy_replicas_on_the_same_policy_set_exit_0(replicas):
    """Two replicas serving the local policy set: each is listed with its checksum and health,
    the verdict says all is well, and the exit code is 0."""
    replicas += [Replica(POLICIES, SCHEMAS), Replica(POLICIES, SCHEMAS)]
    args = ["--from", replicas[0].url, "--from", replicas[1].url + "/status"]
    code, document = example(*args)
    assert code == 0
    assert [r["url"] for r in document["replicas"]] == [
        replicas[0].url,
        replicas[1].url + "/status",
    ]
    for entry in document["replicas"]:
        assert entry["checksum"] == document["checksum"]
        assert (entry["healthy"], entry["same_checksum"], entry["ok"]) == (True, True, True)
        assert entry["guardrails"] == []
    code, out, _ = run(["status", "--policies", POLICIES, "--registry", SCHEMAS, *args])
    assert code == 0
    assert f"all 2 replica(s) healthy and running {document['checksum']}" in out


def test_a_replica_running_another_policy_set_exits_1(project, replicas):
    """A replica whose checksum differs from the local policies fails the command (exit 1) and
    is marked as differing."""
    replicas += [Replica(POLICIES, SCHEMAS), Replica(project / "policies", project / "schemas")]
    code, document = example("--from", replicas[0].url, "--from", replicas[1].url)
    assert code == 1
    same, other = document["replicas"]
    assert same["ok"] is True
    assert (other["same_checksum"], other["ok"]) == (False, False)
    _, out, _ = run(
        ["status", "--policies", POLICIES, "--registry", SCHEMAS, "--from", replicas[1].url]
    )
    assert f"{replicas[1].engine.checksum} (differs)" in out
    assert "1 of 1 replica(s) unreachable, unhealthy or running another policy set" in out


def test_an_unhealthy_replica_exits_1_and_shows_its_reload_error(project, replicas):
    """A replica whose last reload failed (still serving the old set) is unhealthy: exit 1,
    with its error."""
    replica = Replica(project / "policies", project / "schemas")
    replicas.append(replica)
    (project / "policies" / "p.yaml").write_text("version: 1\nschemas:\n  g.S: {mode: loud}\n")
    with pytest.raises(PolicyLoadError):
        replica.engine.reload()
    (project / "policies" / "p.yaml").write_text(GUARDED)  # the local files are fine again
    code, out, _ = run(["status", "--json", *common(project), "--from", replica.url])
    (entry,) = json.loads(out)["replicas"]
    assert code == 1
    assert (entry["healthy"], entry["same_checksum"], entry["ok"]) == (False, True, False)
    assert entry["error"].startswith("last policy reload failed: ")


def test_an_unreachable_replica_exits_1_and_says_why():
    """Nothing listening at a --from address: exit 1, the replica listed as unreachable."""
    url = f"http://127.0.0.1:{free_port()}"
    code, out, _ = run(
        ["status", "--policies", POLICIES, "--registry", SCHEMAS, "--from", url, "--timeout", "2"]
    )
    assert code == 1
    assert f"{url}: unreachable: ConnectError" in out


def test_an_endpoint_that_is_not_a_replicas_status_exits_1(replicas):
    """An address answering something else than a policy-engine status (a 404 here) counts as
    a replica that cannot be read."""
    replicas.append(Replica(POLICIES, SCHEMAS))
    code, document = example("--from", replicas[0].url + "/nope")
    assert code == 1
    assert document["replicas"][0]["error"] == "/status answered HTTP 404"


def test_a_tripped_guardrail_on_a_replica_shows_in_its_row_and_in_the_replica_table(
    project, replicas
):
    """A replica whose g.S guardrail tripped: the replica lists it with its end, the g.S row's
    guardrail says tripped (by that replica, until when); the exit code stays 0."""
    now = 1_900_000_000.0
    replica = Replica(project / "policies", project / "schemas", now=now)
    replicas.append(replica)
    for _ in range(3):
        replica.engine.evaluate("g.S", {"n": "x"}, key="k", track="v1")
    assert replica.engine.evaluate("g.S", {"n": "x"}, key="k", track="v1").mode is Mode.WARN
    code, out, _ = run(["status", "--json", *common(project), "--from", replica.url])
    document = json.loads(out)
    row = rows_by_pair(document)[("g.S", "v1")]
    until = now + 30 * 60
    assert code == 0
    assert document["replicas"][0]["guardrails"] == [
        {"schema": "g.S", "track": "v1", "until": until}
    ]
    assert row["guardrail"]["tripped"] == [{"by": replica.url, "until": until}]
    assert row["guardrail"]["max_reject_rate"] == 0.01
    _, out, _ = run(["status", *common(project), "--from", replica.url])
    assert ">1% in 1h, min 2: TRIPPED until 2030-03-17 18:16:40Z (1 source)" in out


def test_guardrails_are_unknown_without_replicas_and_known_with_one(replicas):
    """Without --from (or a store) `tripped` is null, not a claim that nothing tripped; with a
    replica that answered it is the list of trips, empty here, and the table says ok."""
    pair = ("telemetry.FeedbackEvent", "v2")
    _, document = example()
    assert rows_by_pair(document)[pair]["guardrail"]["tripped"] is None
    replicas.append(Replica(POLICIES, SCHEMAS))
    _, document = example("--from", replicas[0].url)
    assert rows_by_pair(document)[pair]["guardrail"]["tripped"] == []
    _, out, _ = run(
        ["status", "--policies", POLICIES, "--registry", SCHEMAS, "--from", replicas[0].url]
    )
    assert ">2% in 10m, min 500: ok" in out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://r:9108", "http://r:9108/status"),
        ("http://r:9108/", "http://r:9108/status"),
        ("http://r:9108/status", "http://r:9108/status"),
        ("r:9108", "http://r:9108/status"),
        ("https://lb/fleet/a/", "https://lb/fleet/a/status"),
    ],
)
def test_a_replica_is_given_by_its_metrics_port_or_its_status_address(given, expected):
    """`--from` takes the metrics port's address (with or without /status, or no scheme)."""
    assert status.status_url(given) == expected


# ---------------------------------------------------------------- the shared store


@pytest.fixture
def store(project) -> Iterator[str]:
    """A GUARDRAIL_STORE URL on the shared Redis under a prefix of this test's own."""
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS} does not answer: {exc}")
    prefix = f"pe-status-test:{uuid.uuid4().hex}:"
    yield f"{REDIS}?prefix={prefix}"
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_trips_in_the_shared_guardrail_store_are_read(project, store):
    """With GUARDRAIL_STORE, a trip the fleet recorded in Redis shows in the row's guardrail,
    by the store (its URL), until the trip's end."""
    settings = Settings(policy_watch=False, guardrail_store=store)
    with PolicyEngine(
        str(project / "policies"), str(project / "schemas"), settings=settings,
        metrics_registry=CollectorRegistry(),
    ) as fleet:  # fmt: skip
        for _ in range(3):
            fleet.evaluate("g.S", {"n": "x"}, key="k", track="v1")
        assert fleet.guardrail_store is not None
        assert fleet.guardrail_store.merge_now()
    code, out, _ = run(["status", "--json", *common(project)], {"GUARDRAIL_STORE": store})
    document = json.loads(out)
    (trip,) = rows_by_pair(document)[("g.S", "v1")]["guardrail"]["tripped"]
    assert code == 0
    assert trip["by"] == store
    assert trip["until"] > 0
    assert document["guardrail_store"] == {"url": store, "error": None}


def test_an_unreachable_store_is_reported_and_does_not_fail_the_command(project):
    """A guardrail store that does not answer is named with its error; trips stay unknown."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, out, _ = run(["status", "--json", *common(project), "--guardrail-store", url])
    document = json.loads(out)
    assert code == 0
    assert document["guardrail_store"]["error"].startswith("ConnectionError")
    assert rows_by_pair(document)[("g.S", "v1")]["guardrail"]["tripped"] is None


# ---------------------------------------------------------------- --watch


class Terminal(io.StringIO):
    """A string stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def stop_after(frames: int, between: Any = None) -> Any:
    """A replacement for the watch's sleep: runs ``between()`` after each frame and interrupts
    after ``frames`` frames, as Ctrl-C would."""
    shown = []

    def sleep(seconds: float) -> None:
        shown.append(seconds)
        if len(shown) >= frames:
            raise KeyboardInterrupt
        if between is not None:
            between()

    return sleep


def test_watch_piped_prints_each_reading_whole_and_rereads_the_policies(project, monkeypatch):
    """Piped, `--watch` prints every reading as a whole block (no control sequences), reading
    the policy files again each time: a change made between two readings shows in the next."""

    def change() -> None:
        (project / "policies" / "p.yaml").write_text(
            GUARDED.replace("mode: strict\n    guard", "mode: warn\n    guard")
        )

    monkeypatch.setattr(status, "_sleep", stop_after(2, change))
    code, out, _ = run(["status", "--watch", "5", *common(project)])
    blocks = out.split("\n\nevery 5s, ")
    assert code == 0
    assert len(blocks) == 2
    assert "\x1b[" not in out
    rows = [[line.split()[:3] for line in block.splitlines()] for block in blocks]
    assert ["g.S", "v1", "strict"] in rows[0]
    assert ["g.S", "v1", "warn"] in rows[1]


def test_watch_on_a_terminal_redraws_in_place(project, monkeypatch):
    """On a terminal each reading goes to the top of the screen with every line cleared to
    its end and the rest of the screen cleared after it; the screen is wiped only once."""
    monkeypatch.setattr(status, "_sleep", stop_after(3))
    terminal = Terminal()
    code = main(
        ["status", "--watch", *common(project)],
        stdin=io.BytesIO(), stdout=terminal, stderr=io.StringIO(), environ={},
    )  # fmt: skip
    out = terminal.getvalue()
    assert code == 0
    assert out.count("\x1b[2J") == 1
    assert out.count("\x1b[H") == 1 + 3
    assert out.count("\x1b[J") == 3
    assert "every 2s, " in out
    assert all(line.endswith("\x1b[K") for line in out.split("\n")[:-1] if "SCHEMA" in line)
    assert out.endswith("\x1b[?25h")  # the cursor is given back


def test_watch_json_prints_one_object_per_line(project, monkeypatch):
    """`--watch --json` prints one status object per reading, one line each (for jq -c)."""
    monkeypatch.setattr(status, "_sleep", stop_after(2))
    code, out, _ = run(["status", "--watch", "1", "--json", *common(project)])
    lines = out.splitlines()
    assert code == 0
    assert len(lines) == 2
    assert all(json.loads(line)["checksum"] for line in lines)


def test_watch_exits_with_the_last_readings_code(monkeypatch):
    """Interrupted, `--watch` exits with what the last reading found (1: a replica is down)."""
    monkeypatch.setattr(status, "_sleep", stop_after(1))
    url = f"http://127.0.0.1:{free_port()}"
    code, _, _ = run(
        ["status", "--watch", "--policies", POLICIES, "--registry", SCHEMAS, "--from", url]
    )
    assert code == 1

"""Drift reports: failure rates, failing paths, worst keys, readiness verdicts, HTML."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from policy_engine import ConfigError, PolicyEngine
from policy_engine.cli import main
from policy_engine.report import LADDER, fold_indices, next_canary

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DOC = (
    '{"type": "object", "properties": {"n": {"type": "integer"},'
    ' "items": {"type": "array", "items": {"type": "integer"}}}}'
)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Policies (d.S: strict, canary 10, keyed by producer) and a registry with d.S v1."""
    policies, schemas = tmp_path / "p", tmp_path / "s"
    policies.mkdir()
    (schemas / "d.S").mkdir(parents=True)
    (schemas / "d.S" / "v1.json").write_text(SCHEMA_DOC)
    (policies / "p.yaml").write_text(
        "version: 1\nschemas:\n  d.S:\n    mode: strict\n    canary: 10\n    key: producer\n"
    )
    return policies, schemas


def feed_lines(valid: int, invalid_by_producer: dict[str, int]) -> list[str]:
    """Envelopes for d.S v1: ``valid`` good payloads, then bad ones per producer."""
    lines = [
        json.dumps({"schema": "d.S", "track": "v1", "payload": {"n": i, "producer": "good"}})
        for i in range(valid)
    ]
    for producer, count in invalid_by_producer.items():
        lines += [
            json.dumps(
                {
                    "schema": "d.S",
                    "track": "v1",
                    "payload": {"n": "x", "items": [1, "two", 3, "four"], "producer": producer},
                }
            )
        ] * count
    return lines


def replay(dirs: tuple[Path, Path], tmp_path: Path, lines: list[str], *extra: str) -> dict:
    policies, schemas = dirs
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    code = main(
        [
            "replay",
            str(feed),
            "--json",
            "--policies",
            str(policies),
            "--registry",
            str(schemas),
            *extra,
        ],
        stdout=out,
        stderr=io.StringIO(),
        environ={},
    )
    assert code == 0
    return json.loads(out.getvalue())


def test_fold_indices_folds_only_array_positions() -> None:
    """Digits-only segments become *; names with digits stay."""
    assert fold_indices("/bars/12/close") == "/bars/*/close"
    assert fold_indices("/a1/0") == "/a1/*"
    assert fold_indices("") == ""


@pytest.mark.parametrize(
    ("current", "ramp", "expected"),
    [
        (0.0, (), 1.0),
        (10.0, (), 25.0),
        (25.0, (), 50.0),
        (100.0, (), None),
        (10.0, (20.0, 60.0), 20.0),
    ],
)
def test_next_canary_follows_the_ramp_else_the_ladder(current, ramp, expected) -> None:
    """The next step is the next ramp canary above the current one, else the next ladder rung."""
    assert next_canary(current, ramp) == expected
    assert list(LADDER) == sorted(LADDER)


def test_report_counts_paths_keys_and_share(dirs, tmp_path: Path) -> None:
    """Failing paths are folded, counted per payload with their share; producers ranked."""
    result = replay(dirs, tmp_path, feed_lines(90, {"bad-1": 7, "bad-2": 3}))
    (group,) = result["groups"]
    drift = group["drift"]
    assert (drift["volume"], drift["invalid"]) == (100, 10)
    assert drift["invalid_rate"] == pytest.approx(10.0)
    paths = {(p["path"], p["keyword"]): p for p in drift["failing_paths"]}
    # two bad items per payload fold into one path, counted once per payload
    assert paths[("/items/*", "type")]["count"] == 10
    assert paths[("/n", "type")]["share"] == pytest.approx(1.0)
    assert drift["top_keys"][:2] == [
        {"key": "bad-1", "failures": 7},
        {"key": "bad-2", "failures": 3},
    ]
    assert sum(point["payloads"] for point in drift["series"]) == 100


def test_verdict_below_the_bar_names_the_next_canary(dirs, tmp_path: Path) -> None:
    """0.5 % invalid under a 1 % bar at canary 10 is ready for canary 25."""
    result = replay(dirs, tmp_path, feed_lines(199, {"p": 1}))
    drift = result["groups"][0]["drift"]
    assert drift["ready"] is True
    assert (
        drift["verdict"]
        == "v1: 0.5 % invalid over 200 payloads, below the 1 % bar: ready for canary 25"
    )


def test_verdict_above_the_bar_is_not_ready_and_the_bar_is_configurable(dirs, tmp_path) -> None:
    """5 % invalid fails a 1 % bar but passes a 10 % bar."""
    lines = feed_lines(95, {"p": 5})
    strict = replay(dirs, tmp_path, lines)["groups"][0]["drift"]
    lenient = replay(dirs, tmp_path, lines, "--bar", "10")["groups"][0]["drift"]
    assert strict["ready"] is False
    assert "above the 1 % bar: not ready" in strict["verdict"]
    assert lenient["ready"] is True


def test_text_output_has_the_readiness_section(dirs, tmp_path: Path) -> None:
    """Without --json, the table is followed by a verdict per schema/track."""
    policies, schemas = dirs
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(feed_lines(199, {"p": 1})) + "\n")
    out = io.StringIO()
    main(
        ["replay", str(feed), "--policies", str(policies), "--registry", str(schemas)],
        stdout=out, stderr=io.StringIO(), environ={},
    )  # fmt: skip
    text = out.getvalue()
    assert "readiness (bar: at most 1 % invalid):" in text
    assert "d.S v1: 0.5 % invalid over 200 payloads" in text


def test_html_report_is_self_contained_with_a_chart(dirs, tmp_path: Path) -> None:
    """--html writes one HTML file with an inline SVG chart, no script and no external
    references (links only to its own sections)."""
    html_path = tmp_path / "report.html"
    replay(dirs, tmp_path, feed_lines(500, {"p": 20}), "--html", str(html_path))
    text = html_path.read_text()

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.seen.append(tag)
            self.links += [v for k, v in attrs if k in ("src", "href") and v]

    tags = Tags()
    tags.feed(text)
    assert "svg" in tags.seen
    assert "polyline" in tags.seen
    assert all(link.startswith("#") for link in tags.links)  # only links within the page
    assert "<script" not in text
    assert "ready" in text or "not ready" in text


def test_engine_report_covers_live_traffic(dirs) -> None:
    """A running engine with record_drift=True reports what it evaluated."""
    policies, schemas = dirs
    with PolicyEngine(str(policies), str(schemas), record_drift=True, metrics=False) as engine:
        for i in range(50):
            engine.evaluate("d.S", {"n": i if i % 10 else "x", "producer": f"p{i % 3}"}, track="v1")
        report = engine.report().to_dict()
    (group,) = report["groups"]
    assert (group["schema"], group["volume"], group["invalid"]) == ("d.S", 50, 5)


def test_engine_report_needs_recording_on(dirs) -> None:
    """report() without record_drift=True is a ConfigError that says how to turn it on."""
    policies, schemas = dirs
    with (
        PolicyEngine(str(policies), str(schemas), metrics=False) as engine,
        pytest.raises(ConfigError, match="record_drift=True"),
    ):
        engine.report()


def test_skipped_payloads_do_not_count_as_valid(tmp_path: Path) -> None:
    """A schema with no usable schema (all skipped) is not judged ready: nothing was validated."""
    policies, schemas = tmp_path / "p", tmp_path / "s"
    policies.mkdir()
    schemas.mkdir()
    (policies / "p.yaml").write_text("version: 1\nschemas:\n  d.Missing: {mode: warn}\n")
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps({"schema": "d.Missing", "track": "v1", "payload": {}}) + "\n")
    out = io.StringIO()
    main(
        ["replay", str(feed), "--json", "--policies", str(policies), "--registry", str(schemas)],
        stdout=out, stderr=io.StringIO(), environ={},
    )  # fmt: skip
    drift = json.loads(out.getvalue())["groups"][0]["drift"]
    assert drift["ready"] is False
    assert "nothing was validated" in drift["verdict"]


def test_verdict_prints_rates_plainly(dirs, tmp_path: Path) -> None:
    """A 100 % invalid feed reads "100 %", not in scientific notation."""
    drift = replay(dirs, tmp_path, feed_lines(0, {"p": 3}))["groups"][0]["drift"]
    assert drift["verdict"].startswith("v1: 100 % invalid over 3 payloads")

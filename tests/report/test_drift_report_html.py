"""The HTML drift report's structure, checked without a browser: what a reader sees first, the
provenance it names, its tables' headings and where the chart's legend stands."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from policy_engine.cli import main
from policy_engine.modes import Mode
from policy_engine.report import DriftRecorder, DriftReport, GroupDrift, nice_ticks

REPO = Path(__file__).resolve().parents[2]
#: 2026-11-26 12:00:00 UTC
NOON = 1795694400.0


class Page(HTMLParser):
    """The page as a list of (tag, attributes) in document order, and the text of each
    heading and table-head cell."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.headings: list[str] = []
        self.table_heads: list[str] = []
        self._open: str | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("h1", "h2", "th"):
            self._open, self._text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            text = " ".join("".join(self._text).split())
            (self.table_heads if tag == "th" else self.headings).append(text)
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def first(self, tag: str, **attrs: str) -> int:
        """Index of the first ``tag`` whose attributes include ``attrs``."""
        return next(
            i
            for i, (name, found) in enumerate(self.tags)
            if name == tag and all(found.get(k, "").split().count(v) for k, v in attrs.items())
        )


def group(
    schema: str, track: str, *, invalid: int, total: int = 1000, **fields: object
) -> GroupDrift:
    """A recorded group with ``invalid`` of ``total`` payloads invalid, in ten slices."""
    g = GroupDrift(schema, track, total=total, invalid=invalid, **fields)  # type: ignore[arg-type]
    g.actions.update({"accepted": total - invalid, "logged": invalid})
    g.paths[("/price", "minimum")] = invalid
    g.keys.update({"AAPL": invalid})
    for n in range(10):
        g.series.append((total // 10, invalid // 10))
        g.ends.append((n + 1) * 200)
    return g


@pytest.fixture
def page() -> str:
    """A report of two groups, one keyed by symbol and one without a key path."""
    report = DriftReport(
        [
            group("md.Trade", "v2", invalid=5, mode=Mode.STRICT, canary=10.0, key_field="symbol"),
            group("tm.Feedback", "v1", invalid=40, mode=Mode.WARN),
        ],
        checksums=("71c37032108b9709",),
        evaluations=2000,
    )
    return report.to_html(1.0, title="replay of feed.jsonl", generated=NOON)


def test_the_summary_comes_first_one_row_per_group(page: str) -> None:
    """Right after the title block the summary table lists each schema/track with its verdict,
    failure rate and next step, before the chart and the per-group sections."""
    parsed = Page(page)
    summary = parsed.first("section", id="summary")
    assert summary < parsed.first("svg") < parsed.first("section", id="g1")
    assert parsed.first("table") > summary
    assert [t for t, _ in parsed.tags[: parsed.first("section")]].count("table") == 0
    assert parsed.headings[1] == "Summary: 1 of 2 schema/track(s) ready for their next step"
    rows = re.findall(r"<tr><td><a href='#g\d'>(.*?)</tr>", page)
    assert len(rows) == 2
    assert "md.Trade</a></td><td>v2</td><td>strict 10 %</td>" in rows[0]
    assert "ready</span></td><td class='num'>0.5 %</td>" in rows[0]
    assert "<td>canary 25</td>" in rows[0]
    assert "not ready</span></td><td class='num'>4 %</td>" in rows[1]
    assert "<td>fix the top failing paths</td>" in rows[1]


def test_the_page_names_the_policy_checksum_and_when_it_was_made(page: str) -> None:
    """The header names the policy set's checksum and the generation time, machine-readable."""
    header = page[: page.index("<section")]
    assert "Policy set <code>71c37032108b9709</code>" in header
    assert "<time datetime='2026-11-26T12:00:00Z'>2026-11-26 12:00:00 UTC</time>" in header


def test_key_tables_are_headed_by_the_rules_key_field(page: str) -> None:
    """The keys table says `symbol` where the rule keys by symbol, plain `key` without a path."""
    heads = Page(page).table_heads
    assert "symbol" in heads
    assert "key (producer)" not in heads
    assert "Most failures by symbol" in page
    assert "Most failures by key" in page


def test_the_legend_stands_beside_the_plot_not_on_it(page: str) -> None:
    """The legend group starts right of the plot area's right edge, and names every line."""
    parsed = Page(page)
    plot = parsed.tags[parsed.first("rect", **{"class": "plot"})][1]
    legend = parsed.tags[parsed.first("g", **{"class": "legend"})][1]
    x, _ = map(float, re.fullmatch(r"translate\((\S+) (\S+)\)", legend["transform"]).groups())
    assert x > float(plot["x"]) + float(plot["width"])
    svg = parsed.tags[parsed.first("svg")][1]
    assert x < float(svg["width"])
    legend_svg = page[page.index("<g class='legend'") : page.index("</g>")]
    assert "md.Trade v2" in legend_svg
    assert "tm.Feedback v1" in legend_svg
    assert "readiness bar (1 %)" in legend_svg


def test_the_chart_has_ticks_on_both_axes(page: str) -> None:
    """Y ticks in percent up to the top of the data, x ticks in payloads read."""
    ticks = re.findall(r"<text class='tick'[^>]*>([^<]+)</text>", page)
    assert ticks[:3] == ["0 %", "1 %", "2 %"]
    assert "4 %" in ticks
    assert {"0", "500", "1k", "1.5k", "2k"} <= set(ticks)


def test_every_point_sits_where_its_slice_ended(page: str) -> None:
    """A line's last point is at the plot's right edge for a group seen to the end of the feed,
    and its first where the first slice ended (200 of 2 000 payloads: a tenth of the width)."""
    parsed = Page(page)
    plot = parsed.tags[parsed.first("rect", **{"class": "plot"})][1]
    left, width = float(plot["x"]), float(plot["width"])
    points = re.findall(r"<polyline[^>]*points='([^']*)'", page)[0].split()
    xs = [float(point.split(",")[0]) for point in points]
    assert xs[0] == pytest.approx(left + width / 10, abs=0.1)
    assert xs[-1] == pytest.approx(left + width, abs=0.1)


def test_nothing_validated_draws_no_line_and_says_why() -> None:
    """A group in mode off is in the summary but not drawn, and the note names it."""
    off = GroupDrift("tm.Rate", "v1", total=10, mode=Mode.OFF)
    off.actions["skipped"] = 10
    off.series, off.ends = [(10, 0)], [10]
    text = DriftReport([off], ("c",), 10).to_html(generated=NOON)
    assert "<polyline" not in text
    assert "Nothing was validated: no failure rate to draw." in text
    assert "<td>start with warn</td>" in text


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (6.2, [0, 2, 4, 6, 8]),
        (0.4, [0, 0.1, 0.2, 0.3, 0.4]),
        (1_000_000, [0, 200_000, 400_000, 600_000, 800_000, 1_000_000]),
    ],
)
def test_nice_ticks_are_round_and_reach_the_top(top: float, ticks: list[float]) -> None:
    """Ticks step by 1, 2, 2.5 or 5 times a power of ten, from 0 to at least the top."""
    assert nice_ticks(top) == pytest.approx(ticks)


def test_replay_html_of_the_example_feed(tmp_path: Path) -> None:
    """`replay --html` on the example feed: the summary lists every schema/track of the JSON
    output, the checksum is the one that decided, and no output mentions the SPEC."""
    html_path = tmp_path / "drift.html"
    out = io.StringIO()
    args = ["replay", str(REPO / "examples" / "feed.jsonl"), "--policies", str(REPO / "policies")]
    args += ["--registry", str(REPO / "schemas")]
    code = main([*args, "--html", str(html_path), "--json"], stdout=out, stderr=io.StringIO())
    assert code == 0
    result = json.loads(out.getvalue())
    text = html_path.read_text()
    summary = text[text.index("id='summary'") : text.index("id='chart'")]
    for g in result["groups"]:
        assert f">{g['schema']}</a></td><td>{g['track']}</td>" in summary
    (checksum,) = result["policy_checksums"]
    assert f"<code>{checksum}</code>" in text
    assert "Most failures by symbol" in text
    assert "Most failures by producer_id" in text
    assert "Most failures by source.id" in text
    text_out = io.StringIO()
    main(args, stdout=text_out, stderr=io.StringIO(), environ={})
    assert "SPEC" not in text + out.getvalue() + text_out.getvalue()


def test_a_short_last_slice_joins_the_one_before() -> None:
    """A remainder under half a slice is added to the slice before it, so a line does not end
    on a jump made of a few payloads; a larger remainder is a point of its own."""

    class Fake:
        """Just what a recorder reads of a decision."""

        def __init__(self, valid: bool) -> None:
            self.schema, self.track, self.valid, self.violations = "d.S", "v1", valid, ()
            self.action = type("A", (), {"value": "logged" if not valid else "accepted"})()
            self.effective_rule = type(
                "R", (), {"mode": Mode.WARN, "ramp_canaries": (), "key_path": None}
            )()
            self.canary, self.key, self.key_source, self.policy_checksum = 100.0, "k", "hash", "c"

    for extra, expected in ((4, [(10, 0), (14, 4)]), (6, [(10, 0), (10, 0), (6, 6)])):
        recorder = DriftRecorder(slice_size=10)
        for n in range(20 + extra):
            recorder.after_evaluation(Fake(valid=n < 20), 0.0)  # type: ignore[arg-type]
        (g,) = recorder.report().groups
        assert g.series == expected
        assert g.ends[-1] == 20 + extra

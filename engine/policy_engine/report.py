"""Drift reports: is a schema/track ready for the next step of strictness?

Per (schema, track): volume, failure rate, the failing paths (array indices folded to ``*``)
with keyword and share, the keys (producers) with the most failures, the failure rate over the
course of the feed, and a verdict against a bar ("v2: 0.3 % invalid over 12 034 payloads, below
the 1 % bar: ready for canary 50"). ``policy-engine replay`` prints one for a feed (text, JSON,
or a self-contained HTML page); ``PolicyEngine(record_drift=True).report()`` gives one for the
traffic a running engine saw.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from policy_engine.decision import Decision, fold_indices
from policy_engine.modes import Mode

#: The default readiness bar: at most this share of payloads invalid (percent).
DEFAULT_BAR = 1.0
#: Canary steps suggested when a rule has no ramp to follow.
LADDER = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
#: Distinct keys remembered per group; more are counted as "(other keys)".
MAX_KEYS = 10_000
#: Distinct failing paths remembered per group; more are counted as "other".
MAX_PATHS = 200
#: Points in the failure-rate series (the feed is cut into this many slices at most).
SERIES_POINTS = 100


def next_canary(current: float, ramp_canaries: Iterable[float]) -> float | None:
    """The next canary to move to: the next ramp step above ``current``, else the ladder's."""
    for step in sorted(ramp_canaries):
        if step > current:
            return step
    for step in LADDER:
        if step > current:
            return step
    return None


#: Colours part of a text report: ``paint(text, role)`` (``policy_engine.cli.terminal.Painter``).
Paint = Callable[[str, str], str]


def _plain(text: str, role: str) -> str:
    """No colour: the text as it is."""
    return text


#: The label of failures whose payload had no key (its hash stood in for one).
NO_KEY = "(no key: payload hash)"


@dataclass(frozen=True)
class Verdict:
    """Whether a group is ready for its next step of strictness, and what that step is.

    ``next_step`` is the short form the HTML summary shows ("canary 50", "fix the top failing
    paths"); ``sentence`` the whole verdict the text report prints.
    """

    ready: bool
    rate: float
    next_step: str
    sentence: str


@dataclass
class GroupDrift:
    """What one (schema, track) looked like.

    ``series`` holds ``(payloads, invalid)`` per slice of the feed and ``ends`` where each slice
    ended, counted in evaluations of every group (so the groups share one x axis).
    ``key_field`` is the rule's key path (``symbol``, ``source.id``), ``None`` without one.
    """

    schema: str
    track: str
    total: int = 0
    invalid: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)
    keys: Counter[str] = field(default_factory=Counter)
    mode: Mode = Mode.WARN
    canary: float = 100.0
    ramp: tuple[float, ...] = ()
    series: list[tuple[int, int]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    key_field: str | None = None
    _slice: list[int] = field(default_factory=lambda: [0, 0])
    _key_path: tuple[str, ...] | None = None
    _last: int = 0  # the position of the latest decision counted
    _slice_size: int = 0

    def add(self, decision: Decision, slice_size: int, position: int = 0) -> None:
        """Count one decision, the ``position``-th the recorder saw."""
        self.total += 1
        self._last = position
        self.actions[decision.action.value] += 1
        rule = decision.effective_rule
        self.mode, self.canary, self.ramp = rule.mode, decision.canary, rule.ramp_canaries
        if rule.key_path is not self._key_path:  # one join per rule, not per payload
            self._key_path = rule.key_path
            self.key_field = ".".join(rule.key_path) if rule.key_path else None
        self._slice[0] += 1
        if decision.valid is False:
            self.invalid += 1
            self._slice[1] += 1
            # each (path, keyword) once per payload: share = payloads with it / invalid payloads
            labels = {(fold_indices(v.path), v.keyword) for v in decision.violations}
            for label in labels:
                if label in self.paths or len(self.paths) < MAX_PATHS:
                    self.paths[label] += 1
                else:
                    self.paths[("other", "*")] += 1
            name = decision.key if decision.key_source != "hash" else NO_KEY
            if name in self.keys or len(self.keys) < MAX_KEYS:
                self.keys[name] += 1
            else:
                self.keys["(other keys)"] += 1
        self._slice_size = slice_size
        if self._slice[0] >= slice_size:
            self._close_slice(position)

    def _close_slice(self, position: int) -> None:
        self.series.append((self._slice[0], self._slice[1]))
        self.ends.append(position)
        self._slice = [0, 0]

    def finish(self) -> None:
        """Close the last slice of the series; a remainder under half a slice joins the slice
        before it, so the line does not end on a jump made of a handful of payloads."""
        payloads, invalid = self._slice
        if not payloads:
            return
        if self.series and 2 * payloads < self._slice_size:
            last_payloads, last_invalid = self.series[-1]
            self.series[-1] = (last_payloads + payloads, last_invalid + invalid)
            self.ends[-1] = self._last
            self._slice = [0, 0]
            return
        self._close_slice(self._last)

    def copy(self) -> GroupDrift:
        """A copy that later ``add`` calls on this one do not change."""
        return replace(
            self,
            actions=Counter(self.actions),
            paths=Counter(self.paths),
            keys=Counter(self.keys),
            series=list(self.series),
            ends=list(self.ends),
            _slice=list(self._slice),
        )

    @property
    def validated(self) -> int:
        """Payloads actually validated (skipped ones say nothing about the data)."""
        return self.total - self.actions.get("skipped", 0)

    @property
    def invalid_rate(self) -> float:
        """Invalid share of the validated payloads, in percent."""
        return 100.0 * self.invalid / self.validated if self.validated else 0.0

    @property
    def key_heading(self) -> str:
        """What the keys are: the rule's key field (``symbol``), else just ``key``."""
        return self.key_field or "key"

    def assess(self, bar: float) -> Verdict:
        """Whether the group is ready for its next step, which step, and the sentence."""
        rate = self.invalid_rate
        shown = f"{rate:.1f}".rstrip("0").rstrip(".")
        volume = f"{self.validated:,}".replace(",", " ")
        head = f"{self.track}: {shown} % invalid over {volume} payloads"
        if self.mode is Mode.OFF:
            step = "start with warn"
            return Verdict(False, rate, step, f"{head}; mode off: validation is not on, {step}")
        if self.validated == 0:
            return Verdict(
                False,
                rate,
                "check the registry has the schema",
                f"{head}; nothing was validated (no traffic, or no usable schema)",
            )
        upcoming = next_canary(self.canary if self.mode is Mode.STRICT else 0.0, self.ramp)
        if rate > bar:
            step = "fix the top failing paths"
            return Verdict(False, rate, step, f"{head}, above the {bar:g} % bar: not ready; {step}")
        if self.mode is Mode.STRICT and upcoming is None:
            return Verdict(
                True,
                rate,
                "none: fully strict",
                f"{head}, below the {bar:g} % bar: fully strict already",
            )
        target = f"canary {upcoming:g}" if upcoming is not None else "strict"
        if self.mode is not Mode.STRICT:
            target = f"strict with canary {upcoming:g}" if upcoming else "strict"
        return Verdict(True, rate, target, f"{head}, below the {bar:g} % bar: ready for {target}")

    def verdict(self, bar: float) -> tuple[bool, str]:
        """Whether the group is ready for its next step, and the sentence that says so."""
        found = self.assess(bar)
        return found.ready, found.sentence

    def to_dict(self, bar: float, top: int) -> dict[str, Any]:
        """The JSON form (``replay --json`` groups carry it under ``drift``)."""
        found = self.assess(bar)
        return {
            "volume": self.total,
            "invalid": self.invalid,
            "invalid_rate": self.invalid_rate,
            "failing_paths": [
                {
                    "path": path,
                    "keyword": keyword,
                    "count": count,
                    "share": count / self.invalid if self.invalid else 0.0,
                }
                for (path, keyword), count in self.paths.most_common(top)
            ],
            "key_field": self.key_field,
            "top_keys": [{"key": k, "failures": n} for k, n in self.keys.most_common(top)],
            "series": [
                {"payloads": p, "invalid": i, "end": end}
                for (p, i), end in zip(self.series, self.ends, strict=True)
            ],
            "ready": found.ready,
            "verdict": found.sentence,
            "next_step": found.next_step,
        }


class DriftRecorder:
    """Collects a drift report from decisions; a ``DecisionObserver``, so it also runs live.

    ``slice_size`` sets the resolution of the failure-rate series (payloads per point).
    """

    def __init__(self, slice_size: int = 1000) -> None:
        self.slice_size = max(1, slice_size)
        self.groups: dict[tuple[str, str], GroupDrift] = {}
        self.position = 0  # decisions seen, every group together
        self.checksums: dict[str, None] = {}  # the policy sets that decided, in order
        self._lock = threading.Lock()

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Count ``decision`` into its group."""
        key = (decision.schema, decision.track)
        with self._lock:
            self.position += 1
            checksum = decision.policy_checksum
            if checksum not in self.checksums and len(self.checksums) < MAX_PATHS:
                self.checksums[checksum] = None
            group = self.groups.get(key)
            if group is None:
                if len(self.groups) >= MAX_KEYS:
                    return  # an invented-names flood must not grow the report without bound
                group = self.groups[key] = GroupDrift(*key)
            group.add(decision, self.slice_size, self.position)

    def report(self) -> DriftReport:
        """A snapshot of what was recorded so far."""
        with self._lock:
            groups = []
            for g in self.groups.values():
                copy = g.copy()
                copy.finish()
                groups.append(copy)
            return DriftReport(
                sorted(groups, key=lambda g: (g.schema, g.track)),
                checksums=tuple(self.checksums),
                evaluations=self.position,
            )


#: Line colours of the chart (Tableau 10: tell apart in print and for most colour vision);
#: past ten groups the colours repeat with a dash pattern.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
DASHES = ("", "6 3", "2 3", "8 3 2 3")
#: Characters of a legend label that fit beside the plot (the full name shows on hover).
LEGEND_CHARS = 29

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
  max-width:980px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.45em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}
.meta{color:#57606a;margin:0 0 1em}
table{border-collapse:collapse;margin:.4em 0 1em}
th,td{padding:.3em .7em;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:0 .55em;border-radius:1em;font-size:.85em;font-weight:600;
  white-space:nowrap}
.badge.ok{background:#dafbe1;color:#116329}.badge.no{background:#ffebe9;color:#a40e26}
.verdict.ok{color:#116329}.verdict.no{color:#a40e26}
.tables{display:flex;gap:2.5em;flex-wrap:wrap;align-items:flex-start}
caption{text-align:left;font-weight:600;padding-bottom:.2em;white-space:nowrap}
section.group{border-top:1px solid #d8dee4;margin-top:1.2em}
.track{color:#57606a;font-weight:400}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
a{color:#0969da;text-decoration:none}
svg{display:block;max-width:100%;height:auto}
.note{color:#57606a;font-size:.9em;margin-top:.2em}
"""


def _count(n: int) -> str:
    """``12 034``: thousands apart with a space, as the text report writes them."""
    return f"{n:,}".replace(",", " ")


def _percent(value: float) -> str:
    """A percentage with at most one decimal: ``5.4 %``, ``0 %``."""
    return f"{value:.1f}".rstrip("0").rstrip(".") + " %"


def _fit(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, cut in the middle (both ends tell: the
    namespace and the track).

    >>> _fit("payments.CardAuthorisationRequestedEvent v3", 29)
    'payments.CardA…uestedEvent v3'
    """
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


def _short(n: float) -> str:
    """An axis label: ``0``, ``500``, ``20k``, ``1.5M``."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 1_000:
        return f"{n / 1_000:g}k"
    return f"{n:g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Tick values from 0 to at least ``top`` on a 1-2-2.5-5 step, about ``count`` of them.

    >>> nice_ticks(6.2), nice_ticks(12_000)
    ([0.0, 2.0, 4.0, 6.0, 8.0], [0.0, 2500.0, 5000.0, 7500.0, 10000.0, 12500.0])
    """
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-9 * top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


@dataclass
class DriftReport:
    """Drift per (schema, track), with text, JSON and HTML renderings.

    ``checksums`` are the policy sets that decided (more than one if they were reloaded while
    recording); ``evaluations`` counts every decision recorded.
    """

    groups: list[GroupDrift]
    checksums: tuple[str, ...] = ()
    evaluations: int = 0

    def to_dict(self, bar: float = DEFAULT_BAR, top: int = 5) -> dict[str, Any]:
        """JSON form: one entry per group, with the verdict."""
        return {
            "bar_percent": bar,
            "policy_checksums": list(self.checksums),
            "groups": [
                {"schema": g.schema, "track": g.track, **g.to_dict(bar, top)} for g in self.groups
            ],
        }

    def to_text(self, bar: float = DEFAULT_BAR, top: int = 5, paint: Paint | None = None) -> str:
        """A readable section per group: verdict, failing paths with share, worst keys.

        ``paint(text, role)`` may colour parts (roles ``ok``, ``error``, ``muted``); the
        command line passes one on a terminal.
        """
        paint = paint or _plain
        out: list[str] = []
        for g in self.groups:
            ready, verdict = g.verdict(bar)
            out.append(f"{paint(g.schema, 'heading')} {paint(verdict, 'ok' if ready else 'error')}")
            for (path, keyword), count in g.paths.most_common(top):
                share = paint(f"{100 * count / g.invalid if g.invalid else 0:5.1f} %", "muted")
                out.append(f"    {share}  {path or '(root)'}  [{keyword}]  ({count})")
            worst = g.keys.most_common(min(top, 3))
            if worst:
                keys = ", ".join(f"{k} ({n})" for k, n in worst)
                out.append(f"    most failures from: {keys}")
        return "\n".join(out) + ("\n" if out else "")

    def to_html(
        self,
        bar: float = DEFAULT_BAR,
        top: int = 10,
        title: str = "drift report",
        generated: float | None = None,
    ) -> str:
        """A self-contained HTML page (no scripts, no external files).

        It opens with the policy checksum, the generation time (``generated``, epoch seconds;
        default now) and a summary, one row per schema/track with its verdict, failure rate and
        next step; then a chart of the failure rate over the feed with its legend beside the
        plot; then a section per group with its failing paths and the keys (headed by the rule's
        key field) with most failures.
        """
        e = html.escape
        when = time.gmtime(time.time() if generated is None else generated)
        parts = [
            "<!doctype html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
            f"<header><h1>{e(title)}</h1>",
            f"<p class='meta'>{self._provenance(when)}<br>{_count(self.evaluations)} payloads "
            f"in {len(self.groups)} schema/track(s); readiness bar: at most {bar:g} % invalid"
            "</p></header>",
            self._summary(bar),
            "<section id='chart'><h2>Failure rate over the feed</h2>",
            self._chart(bar),
            "</section>",
        ]
        for n, g in enumerate(self.groups, 1):
            parts.append(self._group(n, g, bar, top))
        parts.append("</body></html>\n")
        return "\n".join(parts)

    def _provenance(self, when: time.struct_time) -> str:
        """Which policy set decided, and when the page was made."""
        codes = ", ".join(f"<code>{html.escape(c)}</code>" for c in self.checksums)
        if not self.checksums:
            policy = "Policy set: none decided (no payloads)"
        elif len(self.checksums) == 1:
            policy = f"Policy set {codes}"
        else:
            policy = f"Policy sets {codes} (reloaded while recording)"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", when)
        shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", when)
        return f"{policy} · generated <time datetime='{stamp}'>{shown}</time>"

    def _summary(self, bar: float) -> str:
        """One row per group: verdict, failure rate, volume, next step; linked to its section."""
        e = html.escape
        ready = sum(1 for g in self.groups if g.assess(bar).ready)
        rows = [
            f"<section id='summary'><h2>Summary: {ready} of {len(self.groups)} schema/track(s) "
            "ready for their next step</h2>",
            "<table class='summary'><thead><tr><th>schema</th><th>track</th><th>mode</th>"
            "<th>verdict</th><th class='num'>invalid</th><th class='num'>validated</th>"
            "<th>next step</th></tr></thead><tbody>",
        ]
        for n, g in enumerate(self.groups, 1):
            found = g.assess(bar)
            css, word = ("ok", "ready") if found.ready else ("no", "not ready")
            rows.append(
                f"<tr><td><a href='#g{n}'>{e(g.schema)}</a></td><td>{e(g.track)}</td>"
                f"<td>{e(self._mode(g))}</td><td><span class='badge {css}'>{word}</span></td>"
                f"<td class='num'>{_percent(found.rate) if g.validated else '&ndash;'}</td>"
                f"<td class='num'>{_count(g.validated)}</td><td>{e(found.next_step)}</td></tr>"
            )
        rows.append("</tbody></table></section>")
        return "\n".join(rows)

    @staticmethod
    def _mode(group: GroupDrift) -> str:
        if group.mode is Mode.STRICT and group.canary < 100:
            return f"strict {group.canary:g} %"
        return str(group.mode)

    def _group(self, n: int, g: GroupDrift, bar: float, top: int) -> str:
        """A group's section: verdict, counts, failing paths and worst keys side by side."""
        e = html.escape
        found = g.assess(bar)
        css, word = ("ok", "ready") if found.ready else ("no", "not ready")
        counts = ", ".join(
            f"{action} {_count(g.actions.get(action, 0))}"
            for action in ("accepted", "logged", "rejected", "skipped")
        )
        out = [
            f"<section class='group' id='g{n}'>",
            f"<h2>{e(g.schema)} <span class='track'>{e(g.track)}</span> "
            f"<span class='badge {css}'>{word}</span></h2>",
            f"<p class='verdict {css}'>{e(found.sentence)}</p>",
            f"<p>{_count(g.total)} payloads: {counts}; mode {e(self._mode(g))}</p>",
        ]
        tables = []
        if g.paths:
            rows = "".join(
                f"<tr><td><code>{e(path or '(root)')}</code></td><td>{e(keyword)}</td>"
                f"<td class='num'>{_count(count)}</td>"
                f"<td class='num'>{_percent(100 * count / g.invalid if g.invalid else 0)}</td>"
                "</tr>"
                for (path, keyword), count in g.paths.most_common(top)
            )
            tables.append(
                "<table class='paths'><caption>Failing paths</caption><thead><tr><th>path</th>"
                "<th>keyword</th><th class='num'>payloads</th><th class='num'>share</th></tr>"
                f"</thead><tbody>{rows}</tbody></table>"
            )
        if g.keys:
            heading = e(g.key_heading)
            rows = "".join(
                f"<tr><td><code>{e(key)}</code></td><td class='num'>{_count(count)}</td>"
                f"<td class='num'>{_percent(100 * count / g.invalid if g.invalid else 0)}</td>"
                "</tr>"
                for key, count in g.keys.most_common(top)
            )
            tables.append(
                f"<table class='keys'><caption>Most failures by {heading}</caption><thead><tr>"
                f"<th>{heading}</th><th class='num'>failures</th><th class='num'>share</th></tr>"
                f"</thead><tbody>{rows}</tbody></table>"
            )
        if tables:
            out.append(f"<div class='tables'>{''.join(tables)}</div>")
        out.append("</section>")
        return "\n".join(out)

    def _chart(self, bar: float) -> str:
        """The failure rate per slice of the feed, a line per validated group, as inline SVG.

        The plot area (``rect.plot``) has ticks on both axes and the readiness bar dashed; the
        legend (``g.legend``) stands to its right, outside it, so no line runs under a label.
        """
        e = html.escape
        drawn = [g for g in self.groups if g.series and g.validated]
        if not drawn:
            return "<p class='note'>Nothing was validated: no failure rate to draw.</p>"
        left, top, plot_w, plot_h = 64, 16, 600, 280
        right, bottom = left + plot_w, top + plot_h
        legend_x, row = right + 28, 20
        width = legend_x + 240
        height = max(bottom + 52, top + row * (len(drawn) + 1) + 8)
        peak = max(100 * i / p for g in drawn for p, i in g.series if p)
        y_ticks = nice_ticks(max(peak, bar) * 1.05 or 1.0)
        x_ticks = nice_ticks(max(max(g.ends) for g in drawn), 6)
        y_max, x_max = y_ticks[-1], x_ticks[-1]

        def x_of(position: float) -> float:
            return left + plot_w * position / x_max

        def y_of(rate: float) -> float:
            return bottom - plot_h * rate / y_max

        out = [
            f"<svg class='chart' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            "xmlns='http://www.w3.org/2000/svg' role='img' "
            "aria-label='failure rate of each schema/track over the feed' "
            "font-family='system-ui,sans-serif' font-size='12'>",
            f"<rect class='plot' x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' "
            "fill='#fff' stroke='#d0d7de'/>",
        ]
        for tick in y_ticks:
            y = y_of(tick)
            out.append(
                f"<line x1='{left}' x2='{right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eaeef2'/>"
                f"<line x1='{left - 5}' x2='{left}' y1='{y:.1f}' y2='{y:.1f}' stroke='#57606a'/>"
                f"<text class='tick' x='{left - 8}' y='{y + 4:.1f}' text-anchor='end' "
                f"fill='#57606a'>{tick:g} %</text>"
            )
        for tick in x_ticks:
            x = x_of(tick)
            out.append(
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{bottom}' y2='{bottom + 5}' "
                "stroke='#57606a'/>"
                f"<text class='tick' x='{x:.1f}' y='{bottom + 19}' text-anchor='middle' "
                f"fill='#57606a'>{_short(tick)}</text>"
            )
        out.append(
            f"<text x='{left + plot_w / 2:.0f}' y='{bottom + 40}' text-anchor='middle' "
            "fill='#1f2328'>payloads read (position in the feed)</text>"
            f"<text transform='translate(16 {top + plot_h / 2:.0f}) rotate(-90)' "
            "text-anchor='middle' fill='#1f2328'>invalid, % of each slice</text>"
        )
        bar_y = y_of(bar)
        out.append(
            f"<line class='bar' x1='{left}' x2='{right}' y1='{bar_y:.1f}' y2='{bar_y:.1f}' "
            "stroke='#24292f' stroke-width='1.5' stroke-dasharray='6 4'/>"
        )
        legend = [
            f"<g class='legend' transform='translate({legend_x} {top})'>",
            "<line x1='0' x2='26' y1='6' y2='6' stroke='#24292f' stroke-width='1.5' "
            "stroke-dasharray='6 4'/>"
            f"<text x='34' y='10'>readiness bar ({bar:g} %)</text>",
        ]
        for n, group in enumerate(drawn):
            colour = PALETTE[n % len(PALETTE)]
            dash = DASHES[(n // len(PALETTE)) % len(DASHES)]
            dash_attr = f" stroke-dasharray='{dash}'" if dash else ""
            name = f"{group.schema} {group.track}"
            points = [
                (x_of(end), y_of(100 * i / p))
                for (p, i), end in zip(group.series, group.ends, strict=True)
                if p
            ]
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f"<polyline fill='none' stroke='{colour}' stroke-width='1.75' "
                f"stroke-linejoin='round'{dash_attr} points='{coords}'><title>{e(name)}</title>"
                "</polyline>"
            )
            if len(points) < 3:  # too few points for a line to show: mark them
                out.extend(
                    f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{colour}'/>" for x, y in points
                )
            label = _fit(name, LEGEND_CHARS)
            y = row * (n + 1)
            legend.append(
                f"<line x1='0' x2='26' y1='{y + 6}' y2='{y + 6}' stroke='{colour}' "
                f"stroke-width='2.5'{dash_attr}/>"
                f"<text x='34' y='{y + 10}'>{e(label)}<title>{e(name)}</title></text>"
            )
        legend.append("</g>")
        out.extend(legend)
        out.append("</svg>")
        # the recorder's slice size: the usual one (a last slice may be longer or shorter)
        slice_size = Counter(p for g in drawn for p, _ in g.series).most_common(1)[0][0]
        skipped = [g for g in self.groups if not (g.series and g.validated)]
        note = (
            f"Each point is the invalid share of one slice of {_count(slice_size)} payloads of "
            "that schema/track, placed where the slice ended in the feed. A step that lasts is a "
            "change (a deploy, a new producer); a single spike is a burst."
        )
        if skipped:
            names = ", ".join(f"{g.schema} {g.track}" for g in skipped)
            note += f" Not drawn, as nothing was validated: {e(names)}."
        out.append(f"<p class='note'>{note}</p>")
        return "\n".join(out)


__all__ = [
    "DEFAULT_BAR",
    "DriftRecorder",
    "DriftReport",
    "GroupDrift",
    "Verdict",
    "next_canary",
    "nice_ticks",
]

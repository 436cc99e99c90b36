"""Drift reports: is a schema/track ready for the next step of strictness?

Per (schema, track): volume, failure rate, the failing paths (array indices folded to ``*``)
with keyword and share, the keys (producers) with the most failures, the failure rate over the
course of the feed, and a verdict against a bar ("v2: 0.3 % invalid over 12 034 payloads, below
the 1 % bar: ready for canary 50"). ``policy-engine replay`` prints one for a feed;
``PolicyEngine(record_drift=True).report()`` gives one for the traffic a running engine saw.
"""

from __future__ import annotations

import html
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
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


@dataclass
class GroupDrift:
    """What one (schema, track) looked like."""

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
    series: list[tuple[int, int]] = field(default_factory=list)  # (payloads, invalid) per slice
    _slice: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, decision: Decision, slice_size: int) -> None:
        """Count one decision."""
        self.total += 1
        self.actions[decision.action.value] += 1
        rule = decision.effective_rule
        self.mode, self.canary, self.ramp = rule.mode, decision.canary, rule.ramp_canaries
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
            name = decision.key if decision.key_source != "hash" else "(no key: payload hash)"
            if name in self.keys or len(self.keys) < MAX_KEYS:
                self.keys[name] += 1
            else:
                self.keys["(other keys)"] += 1
        if self._slice[0] >= slice_size:
            self.series.append((self._slice[0], self._slice[1]))
            self._slice = [0, 0]

    def finish(self) -> None:
        """Close the last slice of the series."""
        if self._slice[0]:
            self.series.append((self._slice[0], self._slice[1]))
            self._slice = [0, 0]

    @property
    def validated(self) -> int:
        """Payloads actually validated (skipped ones say nothing about the data)."""
        return self.total - self.actions.get("skipped", 0)

    @property
    def invalid_rate(self) -> float:
        """Invalid share of the validated payloads, in percent."""
        return 100.0 * self.invalid / self.validated if self.validated else 0.0

    def verdict(self, bar: float) -> tuple[bool, str]:
        """Whether the group is ready for its next step, and the sentence that says so."""
        rate = self.invalid_rate
        shown = f"{rate:.1f}".rstrip("0").rstrip(".")
        volume = f"{self.validated:,}".replace(",", " ")
        head = f"{self.track}: {shown} % invalid over {volume} payloads"
        if self.mode is Mode.OFF:
            return False, f"{head}; mode off: validation is not on, start with warn"
        if self.validated == 0:
            return False, f"{head}; nothing was validated (no traffic, or no usable schema)"
        upcoming = next_canary(self.canary if self.mode is Mode.STRICT else 0.0, self.ramp)
        if rate > bar:
            return False, f"{head}, above the {bar:g} % bar: not ready; fix the top failing paths"
        if self.mode is Mode.STRICT and upcoming is None:
            return True, f"{head}, below the {bar:g} % bar: fully strict already"
        target = f"canary {upcoming:g}" if upcoming is not None else "strict"
        if self.mode is not Mode.STRICT:
            target = f"strict with canary {upcoming:g}" if upcoming else "strict"
        return True, f"{head}, below the {bar:g} % bar: ready for {target}"

    def to_dict(self, bar: float, top: int) -> dict[str, Any]:
        """The JSON form (``replay --json`` groups carry it under ``drift``)."""
        ready, verdict = self.verdict(bar)
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
            "top_keys": [{"key": k, "failures": n} for k, n in self.keys.most_common(top)],
            "series": [{"payloads": p, "invalid": i} for p, i in self.series],
            "ready": ready,
            "verdict": verdict,
        }


class DriftRecorder:
    """Collects a drift report from decisions; a ``DecisionObserver``, so it also runs live.

    ``slice_size`` sets the resolution of the failure-rate series (payloads per point).
    """

    def __init__(self, slice_size: int = 1000) -> None:
        self.slice_size = max(1, slice_size)
        self.groups: dict[tuple[str, str], GroupDrift] = {}
        self._lock = threading.Lock()

    def after_evaluation(self, decision: Decision, seconds: float) -> None:
        """Count ``decision`` into its group."""
        key = (decision.schema, decision.track)
        with self._lock:
            group = self.groups.get(key)
            if group is None:
                if len(self.groups) >= MAX_KEYS:
                    return  # an invented-names flood must not grow the report without bound
                group = self.groups[key] = GroupDrift(*key)
            group.add(decision, self.slice_size)

    def report(self) -> DriftReport:
        """A snapshot of what was recorded so far."""
        with self._lock:
            groups = []
            for g in self.groups.values():
                copy = GroupDrift(
                    g.schema, g.track, g.total, g.invalid, Counter(g.actions), Counter(g.paths),
                    Counter(g.keys), g.mode, g.canary, g.ramp, list(g.series), list(g._slice),
                )  # fmt: skip
                copy.finish()
                groups.append(copy)
        return DriftReport(sorted(groups, key=lambda g: (g.schema, g.track)))


@dataclass
class DriftReport:
    """Drift per (schema, track), with text, JSON and HTML renderings."""

    groups: list[GroupDrift]

    def to_dict(self, bar: float = DEFAULT_BAR, top: int = 5) -> dict[str, Any]:
        """JSON form: one entry per group, with the verdict."""
        return {
            "bar_percent": bar,
            "groups": [
                {"schema": g.schema, "track": g.track, **g.to_dict(bar, top)} for g in self.groups
            ],
        }

    def to_text(self, bar: float = DEFAULT_BAR, top: int = 5) -> str:
        """A readable section per group: verdict, failing paths with share, worst keys."""
        out: list[str] = []
        for g in self.groups:
            verdict = g.verdict(bar)[1]
            out.append(f"{g.schema} {verdict}")
            for (path, keyword), count in g.paths.most_common(top):
                share = 100 * count / g.invalid if g.invalid else 0
                out.append(f"    {share:5.1f} %  {path or '(root)'}  [{keyword}]  ({count})")
            worst = g.keys.most_common(min(top, 3))
            if worst:
                keys = ", ".join(f"{k} ({n})" for k, n in worst)
                out.append(f"    most failures from: {keys}")
        return "\n".join(out) + ("\n" if out else "")

    def to_html(self, bar: float = DEFAULT_BAR, top: int = 10, title: str = "drift report") -> str:
        """A self-contained HTML page: verdicts, tables and an SVG chart of failure rate."""
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(title)}</title><style>",
            "body{font:14px system-ui,sans-serif;margin:2em;max-width:70em;color:#222}",
            "table{border-collapse:collapse;margin:.5em 0 1.5em}",
            "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}",
            "th{background:#f3f3f3}.ok{color:#176117}.no{color:#a31515}",
            "svg{background:#fafafa;border:1px solid #ddd}",
            "</style></head><body>",
            f"<h1>{e(title)}</h1><p>Readiness bar: at most {bar:g} % invalid.</p>",
            self._chart(bar),
        ]
        for g in self.groups:
            ready, verdict = g.verdict(bar)
            css = "ok" if ready else "no"
            parts.append(f"<h2>{e(g.schema)} <small>{e(g.track)}</small></h2>")
            parts.append(f"<p class='{css}'>{e(verdict)}</p>")
            counts = ", ".join(f"{e(k)}: {v}" for k, v in sorted(g.actions.items()))
            parts.append(
                f"<p>{g.total} payloads ({counts}); mode {g.mode}, canary {g.canary:g} %</p>"
            )
            if g.paths:
                parts.append(
                    "<table><tr><th>path</th><th>keyword</th><th>failures</th><th>share</th></tr>"
                )
                for (path, keyword), count in g.paths.most_common(top):
                    share = 100 * count / g.invalid if g.invalid else 0
                    parts.append(
                        f"<tr><td><code>{e(path or '(root)')}</code></td><td>{e(keyword)}</td>"
                        f"<td>{count}</td><td>{share:.1f} %</td></tr>"
                    )
                parts.append("</table>")
            if g.keys:
                parts.append("<table><tr><th>key (producer)</th><th>failures</th></tr>")
                for key, count in g.keys.most_common(top):
                    parts.append(f"<tr><td><code>{e(key)}</code></td><td>{count}</td></tr>")
                parts.append("</table>")
        parts.append("</body></html>\n")
        return "\n".join(parts)

    def _chart(self, bar: float) -> str:
        """Failure rate (percent) per slice of the feed, one line per group, as inline SVG."""
        width, height, pad = 800, 260, 40
        series = [(g, [100 * i / p for p, i in g.series if p]) for g in self.groups if g.series]
        if not series:
            return "<p>(no traffic)</p>"
        top = max(max((max(points) for _, points in series), default=0.0), bar) * 1.1 or 1.0
        colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
        out = [
            f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            "xmlns='http://www.w3.org/2000/svg' role='img' aria-label='failure rate over the feed'>"
        ]
        bar_y = height - pad - (bar / top) * (height - 2 * pad)
        out.append(
            f"<line x1='{pad}' x2='{width - pad}' y1='{bar_y:.1f}' y2='{bar_y:.1f}' "
            "stroke='#999' stroke-dasharray='4 4'/>"
            f"<text x='{width - pad}' y='{bar_y - 4:.1f}' text-anchor='end' font-size='11'>"
            f"bar {bar:g} %</text>"
        )
        out.append(
            f"<text x='{pad}' y='{pad - 10}' font-size='11'>failure rate, % (max {top:.2g})</text>"
            f"<text x='{width - pad}' y='{height - 10}' text-anchor='end' font-size='11'>"
            "position in the feed →</text>"
        )
        for n, (group, points) in enumerate(series):
            colour = colours[n % len(colours)]
            step = (width - 2 * pad) / max(len(points) - 1, 1)
            coords = " ".join(
                f"{pad + i * step:.1f},{height - pad - (v / top) * (height - 2 * pad):.1f}"
                for i, v in enumerate(points)
            )
            out.append(
                f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{coords}'/>"
            )
            out.append(
                f"<text x='{pad + 5}' y='{pad + 14 * (n + 1)}' font-size='11' fill='{colour}'>"
                f"{html.escape(group.schema)} {html.escape(group.track)}</text>"
            )
        out.append("</svg>")
        return "\n".join(out)


__all__ = ["DriftRecorder", "DriftReport", "GroupDrift", "next_canary"]

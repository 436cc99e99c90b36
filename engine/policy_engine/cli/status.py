"""``policy-engine status``: where every rollout stands, and what the replicas run.

One table for the whole policy set, like ``kubectl argo rollouts get`` for one rollout: every
schema/track that the registry or an exact policy entry names, with its mode, baseline, the
canary in force, the next ramp step and when, its guardrail (tripped or not, where that is
known) and the rule that decides it. A glob that governs none of those names is listed under its
pattern, so a rule that does nothing is seen.

With ``--from URL`` (repeatable) each replica's ``/status`` (on its metrics port) is read: its
policy checksum, health and tripped guardrails. The exit code is 1 when a replica is
unreachable, unhealthy or runs another policy set than the local files, so the command is a
deployment gate as well as a view. With ``GUARDRAIL_STORE`` (or ``--guardrail-store``) the
fleet's shared trips are read from Redis too.

Resolution is the engine's: rules come from ``core.resolve.rule_for`` on the engine's policy
set, with the registry listing the engine loaded.
"""

from __future__ import annotations

import argparse
import json
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    build_engine,
    write_json,
)
from policy_engine.cli.terminal import Painter, is_terminal

if TYPE_CHECKING:
    from policy_engine.core.policy_set import PolicyEntry, PolicySet
    from policy_engine.core.resolve import EffectiveRule
    from policy_engine.engine import PolicyEngine
    from policy_engine.settings import Settings

#: Seconds between two redraws of ``--watch`` when no number is given (as ``watch`` does).
DEFAULT_WATCH_SECONDS: Final = 2.0
#: How long one replica may take to answer ``/status``.
DEFAULT_TIMEOUT: Final = 5.0
#: Replicas asked at once.
MAX_PARALLEL_REPLICAS: Final = 16
#: The track shown for a glob with no ``tracks`` block: the rule applies to every track.
EVERY_TRACK: Final = "*"

# ANSI control sequences for redrawing in place: cursor home, clear to the end of the line and
# of the screen, hide and show the cursor.
_HOME: Final = "\x1b[H"
_CLEAR_SCREEN: Final = "\x1b[2J"
_CLEAR_LINE: Final = "\x1b[K"
_CLEAR_BELOW: Final = "\x1b[J"
_HIDE_CURSOR: Final = "\x1b[?25l"
_SHOW_CURSOR: Final = "\x1b[?25h"

#: How ``--watch`` waits between frames; a test replaces it to run frames without waiting.
_sleep: Callable[[float], None] = time.sleep


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` to the command line."""
    status = sub.add_parser(
        "status",
        help="where every schema/track's rollout stands, and what the replicas run",
        description="A table of every schema/track the registry or an exact policy entry "
        "names (and every glob that governs none of them): mode, baseline, the canary in "
        "force, the next ramp step and when, the guardrail, and the rule. With --from, each "
        "replica's policy checksum, health and tripped guardrails. Exit 0; 1 when a --from "
        "replica is unreachable, unhealthy or runs another policy set than the local files.",
    )
    status.add_argument(
        "--at",
        metavar="TIME",
        help="RFC 3339 time to show the rollout at, e.g. 2026-12-08T00:00:00Z: the canary "
        "in force and the next step then (default: now). Tripped guardrails are always now's",
    )
    status.add_argument(
        "--from",
        dest="replicas",
        action="append",
        default=[],
        metavar="URL",
        help="a replica's metrics port, e.g. http://replica-0:9108 (its /status is read); "
        "repeat for each replica",
    )
    status.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long each replica (and the guardrail store) may take to answer "
        f"(default: {DEFAULT_TIMEOUT:g})",
    )
    status.add_argument(
        "--guardrail-store",
        metavar="URL",
        help="read the fleet's tripped guardrails from this shared store, "
        "redis://host:port/db[?prefix=P] (default: $GUARDRAIL_STORE; '' skips it)",
    )
    status.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH_SECONDS,
        type=_positive,
        metavar="SECONDS",
        help="read the policies and replicas again and redraw every SECONDS "
        f"(default: {DEFAULT_WATCH_SECONDS:g}) until interrupted; on a terminal the table is "
        "redrawn in place, piped each reading is printed whole (with --json: one line each)",
    )
    add_common(status)
    status.set_defaults(run=run_status)


# ---------------------------------------------------------------- the rules


def _pairs(
    policy_set: PolicySet, listing: Mapping[str, tuple[str, ...]], settings: Settings
) -> list[tuple[str, str]]:
    """Every (schema, track) to show: the registry's, plus the tracks exact entries write."""
    from policy_engine.core.diff import pairs_to_compare

    pairs = set(
        pairs_to_compare(
            policy_set, policy_set, listing, (settings.prefer_track, settings.fallback_track)
        )
    )
    for name, entry in policy_set.exact.items():
        pairs.update((name, track) for track in entry.rule.tracks or ())
    return sorted(pairs)


def _next_step(rule: EffectiveRule, now: float) -> dict[str, float] | None:
    """The first ramp step after ``now``, or ``None`` when the ramp is done (or there is none)."""
    i = bisect_right(rule.ramp_times, now)
    if i >= len(rule.ramp_times):
        return None
    return {"at": rule.ramp_times[i], "canary": rule.ramp_canaries[i]}


def _row(
    schema: str, track: str, rule: EffectiveRule, now: float, note: str | None = None
) -> dict[str, Any]:
    guardrail = rule.guardrail
    return {
        "schema": schema,
        "track": track,
        "mode": rule.mode.value,
        "baseline": rule.baseline.value,
        "canary": rule.canary_at(now),
        "next": _next_step(rule, now),
        "guardrail": None if guardrail is None else {**guardrail.model_dump(), "tripped": None},
        "rule": None if rule.ref is None else rule.ref.to_dict(),
        "pattern": None if rule.ref is None else rule.ref.pattern,
        "key": ".".join(rule.key_path) if rule.key_path else None,
        "note": note,
    }


def rule_rows(
    policy_set: PolicySet,
    listing: Mapping[str, tuple[str, ...]],
    settings: Settings,
    now: float,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], EffectiveRule]]:
    """The rows of the table at ``now`` (JSON-ready) and the effective rule of each.

    A glob that governs none of the listed names gets rows of its own, under its pattern,
    for the tracks it writes (``*`` when it writes none).
    """
    from policy_engine.core.resolve import resolve_rule, rule_for

    rows: list[dict[str, Any]] = []
    rules: dict[tuple[str, str], EffectiveRule] = {}
    governing: set[int] = set()
    for schema, track in _pairs(policy_set, listing, settings):
        rule, _ = rule_for(policy_set, schema, track, settings.enforcement)
        entry, _ = policy_set.match(schema)
        if entry is not None:
            governing.add(id(entry))
        rules[(schema, track)] = rule
        rows.append(_row(schema, track, rule, now))
    for entry in policy_set.globs:
        if id(entry) in governing:
            continue
        note = _idle_glob_note(entry, listing, policy_set)
        for track in entry.rule.tracks or (EVERY_TRACK,):
            rule = resolve_rule(entry, entry.pattern, track, settings.enforcement)
            rules[(entry.pattern, track)] = rule
            rows.append(_row(entry.pattern, track, rule, now, note))
    return rows, rules


def _idle_glob_note(
    entry: PolicyEntry, listing: Mapping[str, tuple[str, ...]], policy_set: PolicySet
) -> str:
    names = {*listing, *policy_set.exact}
    if entry.regex is not None and any(entry.regex.match(name) for name in names):
        return "governs nothing: a more specific rule wins for every name it matches"
    return "matches no schema the registry or the policies name"


# ---------------------------------------------------------------- replicas and the store


def status_url(url: str) -> str:
    """The ``/status`` address of a replica given by its metrics port (or by that address)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url if "://" in url else f"http://{url}")
    path = parts.path.rstrip("/")
    if not path.endswith("/status"):
        path += "/status"
    return urlunsplit(parts._replace(path=path))


def read_replica(url: str, timeout: float, checksum: str) -> dict[str, Any]:
    """One replica's entry: what its ``/status`` says, and whether it is as it should be.

    ``ok`` is false when it cannot be read, is not healthy (its last policy reload failed), or
    runs another policy set than ``checksum``; ``error`` says why it could not be read.
    """
    import httpx

    from policy_engine.sources import redact_url

    shown = redact_url(url)
    entry: dict[str, Any] = {
        "url": shown,
        "checksum": None,
        "healthy": None,
        "ready": None,
        "guardrails": [],
        "same_checksum": None,
        "error": None,
        "ok": False,
    }
    try:
        response = httpx.get(status_url(url), timeout=timeout)
    except httpx.HTTPError as exc:
        detail = str(exc)
        entry["error"] = f"unreachable: {type(exc).__name__}" + (f": {detail}" if detail else "")
        return entry
    if response.status_code != 200:
        entry["error"] = f"/status answered HTTP {response.status_code}"
        return entry
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("checksum"), str):
        entry["error"] = "/status did not answer a policy-engine status object"
        return entry
    guardrails = body.get("guardrails")
    entry.update(
        checksum=body["checksum"],
        healthy=body.get("healthy") is True,
        ready=body.get("ready"),
        guardrails=[
            {"schema": g.get("schema"), "track": g.get("track"), "until": g.get("until")}
            for g in (guardrails if isinstance(guardrails, list) else [])
            if isinstance(g, dict)
        ],
        same_checksum=body["checksum"] == checksum,
    )
    if body.get("last_error"):
        entry["error"] = "last policy reload failed: " + "; ".join(map(str, body["last_error"]))
    entry["ok"] = entry["healthy"] and entry["same_checksum"]
    return entry


def read_replicas(urls: Sequence[str], timeout: float, checksum: str) -> list[dict[str, Any]]:
    """Every replica's entry, in the order given; asked in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    if not urls:
        return []
    with ThreadPoolExecutor(max_workers=min(len(urls), MAX_PARALLEL_REPLICAS)) as pool:
        return list(pool.map(lambda url: read_replica(url, timeout, checksum), urls))


def read_store_trips(
    url: str, rules: Mapping[tuple[str, str], EffectiveRule], timeout: float
) -> dict[tuple[str, str], float]:
    """``(schema, track) -> until`` for each guarded rule tripped in the shared store at ``url``.

    The store keeps a trip under the rule's identity (``core.guardrail.rule_identity``, the
    same in every process loading the same policy) until its cooldown ends. Raises
    ``redis.RedisError`` (or ``ConfigError`` for a bad URL).
    """
    from policy_engine.core.guardrail import rule_identity
    from policy_engine.guardrail_store import read_trips

    by_identity = {
        rule_identity(rule): pair for pair, rule in rules.items() if rule.guardrail is not None
    }
    trips = read_trips(url, list(by_identity), timeout)
    return {by_identity[identity]: until for identity, until in trips.items()}


# ---------------------------------------------------------------- one reading


def collect(
    engine: PolicyEngine,
    now: float,
    replicas: Sequence[str],
    timeout: float,
    store: str | None,
) -> dict[str, Any]:
    """The status object (``--json``): the policy set, its rows, the replicas, the store."""
    from policy_engine.sources import redact_url

    settings = engine.settings
    listing = engine.registry_listing or {}
    policy_set = engine.policy_set
    rows, rules = rule_rows(policy_set, listing, settings, now)
    entries = read_replicas(replicas, timeout, policy_set.checksum)
    trips: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for replica in entries:
        for guard in replica["guardrails"]:
            key = (guard["schema"], guard["track"])
            trips.setdefault(key, []).append({"by": replica["url"], "until": guard["until"]})
    store_entry: dict[str, Any] | None = None
    if store:
        store_entry = {"url": redact_url(store), "error": None}
        try:
            for pair, until in read_store_trips(store, rules, timeout).items():
                trips.setdefault(pair, []).append({"by": store_entry["url"], "until": until})
        except Exception as exc:  # an unreachable store costs only what it would have told
            store_entry["error"] = f"{type(exc).__name__}: {exc}"
    # Trips are known where a replica or the store answered; elsewhere they stay null.
    known = store_entry is not None and store_entry["error"] is None
    known = known or any(r["checksum"] is not None for r in entries)
    for row in rows:
        if row["guardrail"] is not None and known:
            row["guardrail"]["tripped"] = trips.get((row["schema"], row["track"]), [])
    force = settings.force_mode if settings.registry_enabled else None
    return {
        "checksum": policy_set.checksum,
        "files": list(policy_set.files),
        "at": now,
        "registry": redact_url(settings.registry_url) if settings.registry_enabled else None,
        "registry_listed": engine.registry_listing is not None,
        "force_mode": None if force is None else force.value,
        "rules": rows,
        "replicas": entries,
        "guardrail_store": store_entry,
    }


def exit_code(document: Mapping[str, Any]) -> int:
    """1 when a replica is unreachable, unhealthy or runs another policy set; else 0."""
    return EXIT_FAIL if any(not r["ok"] for r in document["replicas"]) else EXIT_OK


# ---------------------------------------------------------------- text


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _short(epoch: float) -> str:
    """A time in a table cell: to the minute, UTC, seconds only when there are some."""
    moment = time.gmtime(epoch)
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if moment.tm_sec else "") + "Z", moment)


def _span(seconds: float) -> str:
    """``6d 4h``, ``3h 20m``, ``45s``: the two largest units."""
    seconds = int(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _duration(seconds: float) -> str:
    """A guardrail duration as a policy would write it: ``10m``, ``1h30m``, ``45s``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


#: A table cell: its text and the role it is painted in ("" for none; see ``cli.terminal``).
Cell = tuple[str, str]


def _guardrail_cell(guardrail: Mapping[str, Any] | None) -> Cell:
    if guardrail is None:
        return "-", ""
    text = (
        f">{guardrail['max_reject_rate'] * 100:g}% in {_duration(guardrail['window'])}, "
        f"min {guardrail['min_samples']}"
    )
    tripped = guardrail["tripped"]
    if tripped:
        until = max(float(t["until"] or 0) for t in tripped)
        by = len({t["by"] for t in tripped})
        return f"{text}: TRIPPED until {_short(until)} ({by} source{'s' if by > 1 else ''})", (
            "error"
        )
    if tripped is not None:
        return f"{text}: ok", ""
    return text, ""


def _table(header: Sequence[str], rows: Sequence[Sequence[Cell]], paint: Painter) -> list[str]:
    """Aligned columns; each cell padded first, then painted (escapes have no width). The last
    column is not padded, so no line ends in spaces."""
    lines: list[Sequence[Cell]] = [[(name, "heading") for name in header], *rows]
    widths = [max(len(text) for text, _ in column) for column in zip(*lines, strict=True)]
    widths[-1] = 0
    return [
        "  ".join(
            paint(text.ljust(width), role) if role else text.ljust(width)
            for (text, role), width in zip(line, widths, strict=True)
        )
        for line in lines
    ]


def render_text(document: Mapping[str, Any], paint: Painter | None = None) -> str:
    """The status object as a person reads it: a header, the rules table, the replicas.

    ``paint`` colours modes, trips and verdicts (default: no colour).
    """
    if paint is None:
        paint = Painter(False)
    now = document["at"]
    files = len(document["files"])
    lines = [
        f"policy set {paint(document['checksum'], 'name')} "
        f"({files} file{'s' if files != 1 else ''}), "
        f"registry {document['registry'] or '(disabled)'}, at {_utc(now)}"
    ]
    if document["force_mode"]:
        lines.append(
            paint(f"POLICY_FORCE_MODE={document['force_mode']} caps every mode below", "warning")
        )
    if document["registry"] is None:
        lines.append(
            paint(
                "REGISTRY_ENABLED=false: nothing is validated; the modes below are not used",
                "warning",
            )
        )
    elif not document["registry_listed"]:
        lines.append(
            paint(
                "the registry could not be listed: only the names the policies write are shown",
                "warning",
            )
        )
    lines.append("")
    table: list[list[Cell]] = []
    notes = []
    for row in document["rules"]:
        step = row["next"]
        next_text = "-"
        if step is not None:
            next_text = (
                f"{step['canary']:g}% at {_short(step['at'])} (in {_span(step['at'] - now)})"
            )
        rule = row["rule"]
        where = "(global default)"
        if rule is not None:
            where = f"{rule['file']}:{rule['line']}"
            if row["pattern"] != row["schema"]:
                where += f" ({row['pattern']})"
        if row["note"]:
            notes.append(f"{row['schema']}: {row['note']}")
        table.append(
            [
                (row["schema"], "name"),
                (row["track"], ""),
                (row["mode"], row["mode"]),
                (row["baseline"], row["baseline"]),
                (f"{row['canary']:g}%", ""),
                (next_text, ""),
                _guardrail_cell(row["guardrail"]),
                (where, "muted" if rule is None else ""),
            ]
        )
    if table:
        header = ["SCHEMA", "TRACK", "MODE", "BASELINE", "CANARY", "NEXT STEP", "GUARDRAIL", "RULE"]
        lines += _table(header, table, paint)
    else:
        lines.append("no schema or policy rule to show")
    for note in dict.fromkeys(notes):
        lines.append(paint(f"note: {note}", "warning"))
    store = document["guardrail_store"]
    if store is not None and store["error"]:
        lines.append(paint(f"guardrail store {store['url']} not read: {store['error']}", "warning"))
    replicas = document["replicas"]
    if replicas:
        lines.append("")
        rows: list[list[Cell]] = []
        for replica in replicas:
            checksum: Cell = (replica["checksum"] or "-", "")
            if replica["same_checksum"] is False:
                checksum = (f"{checksum[0]} (differs)", "error")
            tripped = ", ".join(
                f"{g['schema']} {g['track']} until {_short(float(g['until'] or 0))}"
                for g in replica["guardrails"]
            )
            rows.append(
                [
                    (replica["url"], "name"),
                    checksum,
                    _yes_no(replica["healthy"]),
                    _yes_no(replica["ready"]),
                    (tripped, "error") if tripped else ("-", ""),
                ]
            )
        header = ["REPLICA", "CHECKSUM", "HEALTHY", "READY", "TRIPPED GUARDRAILS"]
        lines += _table(header, rows, paint)
        for replica in replicas:
            if replica["error"]:
                lines.append(f"{paint(replica['url'], 'name')}: {paint(replica['error'], 'error')}")
        bad = [r for r in replicas if not r["ok"]]
        if bad:
            lines.append(
                paint(
                    f"{len(bad)} of {len(replicas)} replica(s) unreachable, unhealthy or running "
                    f"another policy set than {document['checksum']}",
                    "error",
                )
            )
        else:
            lines.append(
                paint(
                    f"all {len(replicas)} replica(s) healthy and running {document['checksum']}",
                    "ok",
                )
            )
    return "\n".join(lines) + "\n"


def _yes_no(value: object) -> Cell:
    if value is None:
        return "-", ""
    return ("yes", "ok") if value else ("NO", "error")


# ---------------------------------------------------------------- the command


def run_status(args: argparse.Namespace, streams: Streams) -> int:
    """Print the status once, or again every ``--watch`` seconds until interrupted."""
    from policy_engine.core.resolve import parse_time
    from policy_engine.errors import PolicyLoadError

    at = None
    if args.at:
        try:
            at = parse_time(args.at)
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from None
    store = args.guardrail_store
    if store is None:
        store = streams.environ.get("GUARDRAIL_STORE", "").strip() or None
    # One-shot and read-only: no metrics, and no guardrail store thread merging counts.
    with build_engine(args, streams, metrics=False, guardrails=False) as engine:
        if args.watch is None:
            document = collect(
                engine,
                time.time() if at is None else at,
                args.replicas,
                args.timeout,
                store or None,
            )
            if args.json:
                write_json(streams.stdout, document)
            else:
                streams.stdout.write(render_text(document, streams.painter(streams.stdout)))
            return exit_code(document)

        def reading() -> tuple[dict[str, Any], str | None]:
            problem = None
            try:
                engine.reload()  # a bad edit keeps the last good set showing, as a replica does
            except PolicyLoadError as exc:
                problem = f"policy files do not load (showing the last good set): {exc}"
            now = time.time() if at is None else at
            return collect(engine, now, args.replicas, args.timeout, store or None), problem

        paint = streams.painter(streams.stdout)
        return watch(reading, args.watch, args.json, streams.stdout, paint)


def watch(
    reading: Callable[[], tuple[dict[str, Any], str | None]],
    seconds: float,
    as_json: bool,
    stream: IO[str],
    paint: Painter | None = None,
) -> int:
    """Show ``reading()`` every ``seconds`` until interrupted; the last reading's exit code.

    On a terminal the text is redrawn in place (cursor home, each line cleared to its end, the
    rest of the screen cleared after it), so nothing flickers; piped, every reading is printed
    whole after a blank line, or as one JSON line with ``as_json``.
    """
    in_place = not as_json and is_terminal(stream)
    code = EXIT_OK
    first = True
    try:
        if in_place:
            stream.write(_HIDE_CURSOR + _HOME + _CLEAR_SCREEN)
        while True:
            document, problem = reading()
            code = exit_code(document)
            if as_json:
                if problem:
                    document = {**document, "error": problem}
                stream.write(json.dumps(document, ensure_ascii=False) + "\n")
            else:
                head = f"every {seconds:g}s, {_utc(time.time())}; Ctrl-C stops\n"
                warning = f"{problem}\n" if problem else ""
                body = head + warning + render_text(document, paint)
                if in_place:
                    lines = body.rstrip("\n").split("\n")
                    stream.write(_HOME + "".join(f"{line}{_CLEAR_LINE}\n" for line in lines))
                    stream.write(_CLEAR_BELOW)
                else:
                    stream.write(("" if first else "\n") + body)
            stream.flush()
            first = False
            _sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if in_place:
            stream.write(_SHOW_CURSOR)
            stream.flush()
    return code


__all__ = [
    "collect",
    "exit_code",
    "read_replica",
    "read_store_trips",
    "register",
    "render_text",
    "rule_rows",
    "status_url",
    "watch",
]

"""Generate ``examples/feed.jsonl``: a deterministic JSONL feed of envelopes for ``replay``.

Each line is an envelope ``{"schema", "track"?, "key"?, "payload"}`` ("Envelopes" in
docs/cli.md) for one of the four schemas in ``schemas/``: about 60% ``marketdata.TradeEvent``,
10% ``marketdata.OHLCVBatch``, 20% ``telemetry.FeedbackEvent`` and 10%
``telemetry.RateAdjustment``. Some lines name a track (``v1`` payloads always do), some carry an
explicit key; the rest leave both to the engine. About 3.7% of payloads are invalid in realistic
ways (a negative price, a field missing, a bad date-time, a v1 field left in a v2 payload, ...),
and three lines in the middle are not envelopes at all (not JSON, a JSON array, no ``payload``).

The same ``--seed`` and ``--count`` always give the same bytes::

    python examples/make_feed.py --out examples/feed.jsonl --count 12000 --seed 2026

``generate()`` also reports, per line, the track a payload was written for and the defect put
into it, so a check can confirm that valid payloads validate and defective ones do not.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Payload = dict[str, Any]
Defect = Callable[[random.Random, Payload], None]

START = datetime(2026, 11, 20, 0, 30, tzinfo=UTC)
END = datetime(2026, 11, 25, 12, tzinfo=UTC)

TRADE = "marketdata.TradeEvent"
OHLCV = "marketdata.OHLCVBatch"
FEEDBACK = "telemetry.FeedbackEvent"
RATE = "telemetry.RateAdjustment"

# Share of lines per schema, and of payloads per schema that get a defect.
SCHEMA_WEIGHTS = {TRADE: 60, OHLCV: 10, FEEDBACK: 20, RATE: 10}
INVALID_RATE = {TRADE: 0.03, OHLCV: 0.05, FEEDBACK: 0.04, RATE: 0.035}
# (share written for v1 with "track": "v1", share written for v2 with "track": "v2");
# the rest are v2 payloads (v1 for OHLCVBatch, which has no v2) with no "track".
TRACK_SHARES = {TRADE: (0.20, 0.15), OHLCV: (0.30, 0.0), FEEDBACK: (0.25, 0.15), RATE: (0.20, 0.10)}
KEY_SHARE = 0.3  # lines that carry an explicit "key"

VENUES = ["XNYS", "XNAS", "ARCX", "BATS", "EDGX", "IEXG", "XASE", "XCHI"]
CONDITIONS = ["intermarket_sweep", "opening", "closing", "extended_hours", "derivatively_priced"]
INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
SOURCE_KINDS = ["web", "ios", "android", "api", "batch"]
CATEGORIES = ["rating", "comment", "bug_report", "feature_request"]
SERVICES = ["checkout", "search", "catalog", "payments", "profile"]
V1_REASONS = ["backpressure", "quota_change", "manual", "error_rate"]
V2_REASONS = ["backpressure", "quota_change", "manual_override", "error_rate", "cost_control"]
COMMENTS = [
    "Checkout took forever to load.",
    "Love the new dark mode!",
    "Search results are missing items I bought last week.",
    "Please add export to CSV.",
    "App crashes when I rotate the screen.",
    "Great support, fixed in minutes.",
]
TAGS = ["ux", "performance", "crash", "billing", "search", "mobile", "accessibility"]
REAL_SYMBOLS = [
    "AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "BRK.B", "JPM", "V", "JNJ", "WMT",
    "PG", "XOM", "MA", "HD", "CVX", "KO", "PEP", "ABBV", "MRK", "COST", "AVGO", "ORCL", "BAC",
    "ADBE", "CRM", "NFLX", "AMD", "INTC", "CSCO", "T", "VZ", "DIS", "NKE", "MCD", "IBM", "GE",
    "F", "GM", "UBER", "SHOP", "SQ", "PYPL", "QCOM", "TXN", "BA", "CAT", "GS", "MS", "BF.B",
]  # fmt: skip
BAD_DATE_TIMES = ["2026-13-45T99:00:00Z", "2026-11-22 14:03:11", "21/11/2026 09:30", "yesterday"]


@dataclass(frozen=True, slots=True)
class FeedLine:
    """One line of the feed and what was meant by it."""

    text: str  # the line, without its newline
    schema: str | None  # None for a line that is not an envelope
    track: str | None  # the track the payload was written for
    defect: str | None  # what makes the payload invalid; None when it is valid
    bad_line: str | None = None  # what makes the line not an envelope


@dataclass(slots=True)
class World:
    """The fixed population the feed draws from: symbols, producers, sequence counters."""

    symbols: list[str]
    base_price: dict[str, float]
    md_producers: list[str]
    telemetry_producers: list[str]
    source_kind: dict[str, str]
    sequence: dict[str, int]

    @classmethod
    def build(cls, rng: random.Random) -> World:
        symbols = list(REAL_SYMBOLS)
        while len(symbols) < 200:
            candidate = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(2, 4)))
            if rng.random() < 0.05:
                candidate += "." + rng.choice("AB")
            if candidate not in symbols:
                symbols.append(candidate)
        base_price = {s: round(rng.lognormvariate(4.2, 1.0), 2) + 1.0 for s in symbols}
        md_producers = [f"md-feed-{n:03d}" for n in range(1, 201)]
        telemetry_producers = [
            f"{service}-{kind}-{n:02d}"
            for service in SERVICES
            for kind in ("web", "app", "api", "etl")
            for n in range(1, 11)
        ]
        kind_of = {"web": ["web"], "app": ["ios", "android"], "api": ["api"], "etl": ["batch"]}
        source_kind = {p: rng.choice(kind_of[p.split("-")[1]]) for p in telemetry_producers}
        sequence = {p: rng.randint(1_000, 5_000_000) for p in md_producers}
        return cls(symbols, base_price, md_producers, telemetry_producers, source_kind, sequence)

    def next_sequence(self, producer: str) -> int:
        self.sequence[producer] += 1
        return self.sequence[producer]


def rfc3339(moment: datetime) -> str:
    """Format a UTC time as RFC 3339 with milliseconds: ``2026-11-21T13:45:12.345Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def price_near(rng: random.Random, base: float) -> float:
    return round(max(0.01, base * (1 + rng.gauss(0, 0.004))), 2)


# --- payload builders: one per (schema, track), each valid against that track's schema ---


def trade(rng: random.Random, world: World, now: datetime, track: str) -> Payload:
    symbol = rng.choice(world.symbols)
    venue = rng.choice(VENUES)
    producer = rng.choice(world.md_producers)
    ts = now - timedelta(milliseconds=rng.randint(1, 40))
    odd_lot = rng.random() < 0.15
    size = rng.randint(1, 99) if odd_lot else 100 * rng.randint(1, 50)
    payload: Payload = {
        "symbol": symbol,
        "venue": venue,
        "price": price_near(rng, world.base_price[symbol]),
        "size": size,
        "side": rng.choice(["buy", "sell"]),
        "trade_id": f"{venue}-{ts:%Y%m%d}-{rng.randint(0, 999_999_999):09d}",
        "ts": rfc3339(ts),
        "received_at": rfc3339(now),
        "producer_id": producer,
        "sequence": world.next_sequence(producer),
    }
    if track == "v2":
        conditions = ["odd_lot"] if odd_lot else ["regular"]
        if rng.random() < 0.1:
            conditions.append(rng.choice(CONDITIONS))
        payload["currency"] = "USD"
        payload["conditions"] = conditions
    return payload


def ohlcv(rng: random.Random, world: World, now: datetime, track: str) -> Payload:
    symbol = rng.choice(world.symbols)
    interval = rng.choices(list(INTERVALS), weights=[50, 25, 15, 10])[0]
    step = INTERVALS[interval]
    count = rng.randint(5, 30)
    first = now.replace(microsecond=0) - timedelta(seconds=step * count)
    first -= timedelta(seconds=first.timestamp() % step)  # bars start on interval boundaries
    price = world.base_price[symbol]
    bars = []
    for i in range(count):
        open_ = price
        close = price_near(rng, open_)
        spread = abs(rng.gauss(0, 0.002)) * open_
        bars.append(
            {
                "ts": rfc3339(first + timedelta(seconds=step * i)),
                "open": open_,
                "high": round(max(open_, close) + spread, 2),
                "low": round(max(0.01, min(open_, close) - spread), 2),
                "close": close,
                "volume": rng.randint(0, 20_000) * (step // 60),
            }
        )
        price = close
    return {
        "symbol": symbol,
        "interval": interval,
        "producer_id": rng.choice(world.md_producers),
        "bars": bars,
    }


def feedback(rng: random.Random, world: World, now: datetime, track: str) -> Payload:
    producer = rng.choice(world.telemetry_producers)
    category = rng.choices(CATEGORIES, weights=[50, 25, 15, 10])[0]
    occurred = now - timedelta(seconds=rng.randint(1, 900), milliseconds=rng.randint(0, 999))
    extras: Payload = {}
    if category == "rating" or rng.random() < 0.2:
        extras["rating"] = rng.choices([1, 2, 3, 4, 5], weights=[5, 5, 15, 35, 40])[0]
    if category != "rating" or rng.random() < 0.3:
        extras["comment"] = rng.choice(COMMENTS)
    if rng.random() < 0.25:
        extras["email"] = f"user{rng.randint(1, 99_999)}@example.com"
    version = f"{rng.randint(3, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    tags = rng.sample(TAGS, k=rng.randint(0, 2))
    if track == "v1":
        payload: Payload = {
            "producer_id": producer,
            "feedback_id": f"fb-{rng.getrandbits(40):010x}",
            "event_type": category,
            "created_at": rfc3339(occurred),
            "app_version": version,
        }
        if "email" in extras:
            payload["user_email"] = extras.pop("email")
    else:
        payload = {
            "event_id": new_uuid(rng),
            "source": {"id": producer, "kind": world.source_kind[producer]},
            "category": category,
            "occurred_at": rfc3339(occurred),
            "received_at": rfc3339(now),
            "app_version": version,
            "locale": rng.choice(["en", "en-US", "en-GB", "de-DE", "fr", "ja-JP"]),
        }
        if "email" in extras:
            payload["contact_email"] = extras.pop("email")
    payload.update(extras)
    if tags:
        payload["tags"] = tags
    return payload


def rate_adjustment(rng: random.Random, world: World, now: datetime, track: str) -> Payload:
    old = float(rng.choice([50, 100, 250, 500, 1000, 2000, 5000]))
    new = round(old * rng.choice([0.25, 0.5, 0.8, 1.25, 1.5, 2.0]), 1)
    requested = now - timedelta(seconds=rng.randint(0, 120), milliseconds=rng.randint(0, 999))
    payload: Payload = {
        "producer_id": rng.choice(world.telemetry_producers + world.md_producers),
        "old_rate": old,
        "new_rate": new,
        "requested_at": rfc3339(requested),
    }
    if track == "v1":
        payload["reason"] = rng.choice(V1_REASONS)
        if rng.random() < 0.7:
            payload["applied_at"] = rfc3339(requested + timedelta(seconds=rng.randint(1, 30)))
        if payload["reason"] == "manual":
            payload["comment"] = "raised for the month-end batch"
        return payload
    payload["adjustment_id"] = new_uuid(rng)
    payload["unit"] = rng.choices(["msg/s", "req/s", "bytes/s"], weights=[70, 25, 5])[0]
    payload["reason"] = rng.choice(V2_REASONS)
    payload["effective_at"] = rfc3339(requested + timedelta(seconds=rng.randint(0, 60)))
    payload["requested_by"] = rng.choice(["autoscaler@ops.example.com", "oncall@example.com"])
    if rng.random() < 0.3:
        payload["ttl_seconds"] = rng.choice([300, 900, 3600, 14400])
    return payload


BUILDERS: dict[str, Callable[[random.Random, World, datetime, str], Payload]] = {
    TRADE: trade,
    OHLCV: ohlcv,
    FEEDBACK: feedback,
    RATE: rate_adjustment,
}


# --- defects: each one makes a valid payload of its (schema, track) invalid ---


def drop(field: str) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        del payload[field]

    return apply


def put(field: str, value: Any) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        payload[field] = value

    return apply


def bad_date_time(field: str) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        payload[field] = rng.choice(BAD_DATE_TIMES)

    return apply


def stringify(field: str) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        payload[field] = str(payload[field])

    return apply


def negate(field: str) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        payload[field] = -abs(payload[field]) or -1.0

    return apply


def lower(field: str) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        payload[field] = payload[field].lower()

    return apply


def in_a_bar(field: str, value: Any) -> Defect:
    def apply(rng: random.Random, payload: Payload) -> None:
        rng.choice(payload["bars"])[field] = value

    return apply


def bar_close_not_positive(rng: random.Random, payload: Payload) -> None:
    bar = rng.choice(payload["bars"])
    bar["close"] = rng.choice([0, 0.0, -bar["close"]])


def unknown_condition(rng: random.Random, payload: Payload) -> None:
    payload["conditions"].append("dark_pool")


def unknown_source_kind(rng: random.Random, payload: Payload) -> None:
    payload["source"]["kind"] = "smart_tv"


def rating_without_rating(rng: random.Random, payload: Payload) -> None:
    payload["category"] = "rating"
    payload.pop("rating", None)


TRADE_V1_DEFECTS: dict[str, Defect] = {
    "negative price": negate("price"),
    "zero price": put("price", 0),
    "zero size": put("size", 0),
    "size as string": stringify("size"),
    "unknown side": put("side", "short"),
    "bad ts": bad_date_time("ts"),
    "missing ts": drop("ts"),
    "missing price": drop("price"),
    "lower-case symbol": lower("symbol"),
    "unknown venue": put("venue", "XLON-DARK"),
}
DEFECTS: dict[tuple[str, str], dict[str, Defect]] = {
    (TRADE, "v1"): TRADE_V1_DEFECTS,
    (TRADE, "v2"): TRADE_V1_DEFECTS
    | {
        "missing currency": drop("currency"),
        "lower-case currency": lower("currency"),
        "unknown condition": unknown_condition,
        "extra property": put("exchange_fee", 0.0021),
    },
    (OHLCV, "v1"): {
        "bar close not positive": bar_close_not_positive,
        "bar negative volume": in_a_bar("volume", -500),
        "bar fractional volume": in_a_bar("volume", 1250.5),
        "bar bad ts": in_a_bar("ts", "2026-13-45T99:00:00Z"),
        "bar extra property": in_a_bar("vwap", 101.37),
        "no bars": put("bars", []),
        "unknown interval": put("interval", "15m"),
        "missing producer_id": drop("producer_id"),
    },
    (FEEDBACK, "v1"): {
        "missing producer_id": drop("producer_id"),
        "rating out of range": put("rating", 6),
        "rating as string": put("rating", "5"),
        "bad created_at": bad_date_time("created_at"),
        "unknown event_type": put("event_type", "praise"),
        "bad email": put("user_email", "jane.doe(at)example.com"),
    },
    (FEEDBACK, "v2"): {
        "event_id not a uuid": put("event_id", "evt-20261123-0042"),
        "missing source": drop("source"),
        "unknown source kind": unknown_source_kind,
        "rating missing for category rating": rating_without_rating,
        "bad occurred_at": bad_date_time("occurred_at"),
        "v1 field left in": put("producer_id", "checkout-web-01"),
        "bad locale": put("locale", "en_US"),
        "bad email": put("contact_email", "jane.doe(at)example.com"),
    },
    (RATE, "v1"): {
        "negative new_rate": negate("new_rate"),
        "unknown reason": put("reason", "autoscale"),
        "missing requested_at": drop("requested_at"),
        "rate as string": stringify("old_rate"),
        "bad requested_at": bad_date_time("requested_at"),
    },
    (RATE, "v2"): {
        "negative new_rate": negate("new_rate"),
        "v1 reason": put("reason", "manual"),
        "unknown unit": put("unit", "msg/min"),
        "missing effective_at": drop("effective_at"),
        "adjustment_id not a uuid": put("adjustment_id", "adj-7731"),
        "v1 field left in": put("comment", "raised for the month-end batch"),
        "zero ttl": put("ttl_seconds", 0),
    },
}


def key_for(schema: str, track: str, payload: Payload) -> str | None:
    """The key a producer would put on the envelope: what the policies bucket by."""
    if schema == TRADE:
        return payload.get("symbol")
    if schema == FEEDBACK and track == "v2":
        source = payload.get("source")
        return source.get("id") if isinstance(source, dict) else None
    return payload.get("producer_id")


def bad_lines(rng: random.Random, world: World) -> list[tuple[str, str]]:
    """The three lines that are not envelopes, each with what is wrong with it."""
    symbol = rng.choice(world.symbols)
    truncated = json.dumps({"schema": TRADE, "payload": {"symbol": symbol, "venue": "XNAS"}})
    missing = {"schema": FEEDBACK, "key": rng.choice(world.telemetry_producers)}
    return [
        (truncated[: len(truncated) - 9], "not JSON (truncated write)"),
        (json.dumps([{"schema": RATE, "payload": {}}]), "a JSON array, not an object"),
        (json.dumps(missing), 'an envelope without "payload"'),
    ]


def generate(count: int = 12_000, seed: int = 2026) -> Iterator[FeedLine]:
    """Yield ``count`` feed lines; the same arguments always yield the same lines."""
    rng = random.Random(seed)
    world = World.build(rng)
    schemas = list(SCHEMA_WEIGHTS)
    weights = list(SCHEMA_WEIGHTS.values())
    # The three non-envelope lines sit at a quarter, half and three quarters of the feed.
    specials = dict(zip((count * k // 4 for k in (1, 2, 3)), bad_lines(rng, world), strict=True))
    span = (END - START) / count
    for number in range(1, count + 1):
        if number in specials:
            text, why = specials[number]
            yield FeedLine(text, None, None, None, why)
            continue
        now = START + span * number + timedelta(milliseconds=rng.randint(0, 500))
        schema = rng.choices(schemas, weights)[0]
        v1_share, v2_share = TRACK_SHARES[schema]
        roll = rng.random()
        if roll < v1_share:
            track, named = "v1", True
        else:
            track, named = ("v1", False) if schema == OHLCV else ("v2", roll < v1_share + v2_share)
        payload = BUILDERS[schema](rng, world, now, track)
        envelope: Payload = {"schema": schema}
        if named:
            envelope["track"] = track
        if rng.random() < KEY_SHARE:
            envelope["key"] = key_for(schema, track, payload)
        defect = None
        if rng.random() < INVALID_RATE[schema]:
            defects = DEFECTS[schema, track]
            defect = rng.choice(sorted(defects))
            defects[defect](rng, payload)
        envelope["payload"] = payload
        yield FeedLine(json.dumps(envelope, separators=(",", ":")), schema, track, defect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("examples/feed.jsonl"))
    parser.add_argument("--count", type=int, default=12_000, help="lines to write (>= 4)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.count < 4:
        parser.error("--count must be at least 4 (three lines are deliberately bad)")
    with args.out.open("w", encoding="utf-8", newline="\n") as out:
        for line in generate(args.count, args.seed):
            out.write(line.text + "\n")
    print(f"wrote {args.count} lines to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

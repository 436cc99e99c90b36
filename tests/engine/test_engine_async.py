"""aevaluate / aenforce: the same decisions as the sync forms, registry I/O off the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from policy_engine import Action, SchemaValidationError

VALID = {"id": "o-1", "price": 3.5}
INVALID = {"id": "o-1", "price": -1}
POLICY_BODY = "mode: strict\ncanary: 50\nkey: producer.id"

CASES = [
    ("shop.Order", VALID, "k-1", None),
    ("shop.Order", INVALID, "k-2", None),
    ("shop.Order", INVALID, None, None),
    ("shop.Order", {**INVALID, "producer": {"id": "p-9"}}, None, "v2"),
    ("shop.Order", {"order_id": 5}, 7, "v1"),
    ("shop.Legacy", {"name": 1}, "k-3", None),
    ("shop.Nothing", {"a": 1}, None, None),
    ("shop.Order", None, True, None),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_aevaluate_equals_evaluate(make_engine, one_rule, case):
    """aevaluate returns the same Decision (as JSON) as evaluate for the same inputs."""
    schema, payload, key, track = CASES[case]
    eng = make_engine(one_rule("shop.Order", POLICY_BODY))
    sync = eng.evaluate(schema, payload, key=key, track=track).to_dict()
    fresh = make_engine(one_rule("shop.Order", POLICY_BODY))
    async_ = asyncio.run(fresh.aevaluate(schema, payload, key=key, track=track)).to_dict()
    assert async_ == sync


def test_aenforce_raises_like_enforce(make_engine, one_rule, find_key):
    """aenforce raises SchemaValidationError exactly when enforce does, with the same decision."""
    eng = make_engine(one_rule("shop.Order", POLICY_BODY))
    inside = find_key("shop.Order:v2", lambda b: b < 5000)
    with pytest.raises(SchemaValidationError) as sync_info:
        eng.enforce("shop.Order", INVALID, key=inside)
    with pytest.raises(SchemaValidationError) as async_info:
        asyncio.run(eng.aenforce("shop.Order", INVALID, key=inside))
    assert async_info.value.errors == sync_info.value.errors
    assert async_info.value.decision.to_dict() == sync_info.value.decision.to_dict()


@pytest.mark.parametrize(
    ("payload", "action"), [(VALID, Action.ACCEPTED), (INVALID, Action.LOGGED)]
)
def test_aenforce_returns_decision_unless_rejected(
    make_engine, one_rule, find_key, payload, action
):
    """aenforce returns the Decision for payloads that are not rejected."""
    eng = make_engine(one_rule("shop.Order", POLICY_BODY))
    outside = find_key("shop.Order:v2", lambda b: b >= 5000)
    assert asyncio.run(eng.aenforce("shop.Order", payload, key=outside)).action is action


def test_slow_fetch_runs_off_the_event_loop(make_engine, one_rule, source):
    """While a slow registry fetch runs, other asyncio tasks keep running (fetch is threaded)."""
    source.hold = threading.Event()
    eng = make_engine(one_rule("shop.Order", POLICY_BODY))
    during = 0

    async def ticker() -> None:
        # Ticks while the fetch is held, then lets it answer: on a blocked loop it never ticks
        # and the fetch is only let go by its own 30 s bound, with no ticks counted.
        nonlocal during
        while during < 5:
            if source.fetching.is_set():
                during += 1
            await asyncio.sleep(0.001)
        assert source.hold is not None
        source.hold.set()

    async def main() -> tuple[object, bool]:
        task = asyncio.create_task(ticker())
        decision = await eng.aevaluate("shop.Order", INVALID, key="k")
        released = source.hold is not None and source.hold.is_set()
        await task
        return decision, released

    loop_thread = threading.get_ident()
    decision, released = asyncio.run(main())
    assert released  # the fetch answered only after the loop ticked five times during it
    assert decision.action in (Action.REJECTED, Action.LOGGED)
    assert source.total_fetches >= 1
    assert loop_thread not in source.fetch_threads


def test_cached_schema_needs_no_thread(make_engine, one_rule, source):
    """Once the schema is cached, aevaluate does not ask the source again."""
    eng = make_engine(one_rule("shop.Order", POLICY_BODY))

    async def main() -> list[Action]:
        return [(await eng.aevaluate("shop.Order", VALID, key=f"k{n}")).action for n in range(20)]

    assert asyncio.run(main()) == [Action.ACCEPTED] * 20
    assert source.fetches[("shop.Order", "v2")] == 1


def test_concurrent_aevaluate(make_engine, one_rule):
    """Many concurrent aevaluate calls each get their own correct decision."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))

    async def main() -> list[Action]:
        payloads = [VALID if n % 2 else INVALID for n in range(50)]
        decisions = await asyncio.gather(
            *(eng.aevaluate("shop.Order", p, key=str(n)) for n, p in enumerate(payloads))
        )
        return [d.action for d in decisions]

    expected = [Action.ACCEPTED if n % 2 else Action.LOGGED for n in range(50)]
    assert asyncio.run(main()) == expected

"""Failure logs: structured fields, no payload values unless asked, rate limits, JSON output."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from metrics_support import INVALID, VALID

from policy_engine import ConfigError, Settings
from policy_engine.cli import main
from policy_engine.logs import JsonLogFormatter

FIELDS = ("schema", "track", "mode", "action", "rule", "checksum", "violation_count", "suppressed")


@pytest.fixture
def records(caplog):
    """The ``policy_engine.decisions`` records of the test, captured at WARNING and above."""
    caplog.set_level(logging.WARNING, logger="policy_engine.decisions")

    def read() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "policy_engine.decisions"]

    return read


def test_a_failure_is_one_record_with_structured_fields(make_engine, records):
    """A logged failure is one WARNING with schema, track, mode, action, rule, checksum, count."""
    eng = make_engine()
    eng.evaluate("shop.Order", INVALID, track="v1")
    (record,) = records()
    assert record.levelno == logging.WARNING
    fields = {name: getattr(record, name) for name in FIELDS}
    assert fields == {
        "schema": "shop.Order",
        "track": "v1",
        "mode": "warn",
        "action": "logged",
        "rule": f"shop.Order ({eng.policy_set.files[0]}:3)",
        "checksum": eng.checksum,
        "violation_count": 1,
        "suppressed": 0,
    }
    assert record.getMessage() == "shop.Order v1 logged: 1 violation(s), first /price minimum"


def test_payload_values_stay_out_of_logs_by_default(make_engine, records):
    """Violation messages quote values, so neither the text nor the fields carry them."""
    eng = make_engine()
    secret = {"id": "o-1", "price": -987654}
    eng.evaluate("shop.Order", secret, track="v1")
    (record,) = records()
    assert "987654" not in record.getMessage()
    assert "987654" not in json.dumps(record.__dict__, default=str)
    assert not hasattr(record, "violations")


def test_log_values_opt_in_adds_messages(make_engine, records):
    """With POLICY_LOG_VALUES=true the record carries the violations and the first message."""
    settings = Settings.from_env({"POLICY_LOG_VALUES": "true", "POLICY_WATCH": "false"})
    assert settings.log_values is True
    eng = make_engine(settings=settings)
    eng.evaluate("shop.Order", {"id": "o-1", "price": -987654}, track="v1")
    (record,) = records()
    assert "-987654" in record.getMessage()
    assert record.violations == [
        {"path": "/price", "keyword": "minimum", "message": "-987654 is less than the minimum of 0"}
    ]


def test_log_values_setting_is_validated():
    """POLICY_LOG_VALUES accepts booleans only; unset means false."""
    assert Settings.from_env({}).log_values is False
    with pytest.raises(ConfigError, match="POLICY_LOG_VALUES"):
        Settings.from_env({"POLICY_LOG_VALUES": "sometimes"})


def test_warn_failures_are_rate_limited_with_a_suppressed_count(make_engine, records, clock):
    """One record per 10 s per schema/track; the next says how many were suppressed."""
    eng = make_engine()
    for _ in range(5):
        eng.evaluate("shop.Order", INVALID, track="v1")
    assert len(records()) == 1
    clock.advance(9.9)
    eng.evaluate("shop.Order", INVALID, track="v1")
    assert len(records()) == 1
    clock.advance(0.1)
    eng.evaluate("shop.Order", INVALID, track="v1")
    first, second = records()
    assert first.suppressed == 0
    assert second.suppressed == 5
    assert second.getMessage().endswith("(5 similar suppressed)")
    clock.advance(10)
    eng.evaluate("shop.Order", INVALID, track="v1")
    assert records()[-1].suppressed == 0


def test_rate_limits_are_per_schema_track_and_action(make_engine, records):
    """v1 and v2 have their own budgets, and rejections do not silence warn failures."""
    eng = make_engine()
    eng.evaluate("shop.Order", INVALID, track="v1")  # logged
    eng.evaluate("shop.Order", INVALID, track="v2")  # rejected
    eng.evaluate("shop.Order", INVALID, track="v2")  # rejected, suppressed
    eng.evaluate("shop.Order", INVALID, track="v1")  # logged, suppressed
    got = [(r.track, r.action, r.levelname) for r in records()]
    assert got == [("v1", "logged", "WARNING"), ("v2", "rejected", "ERROR")]


def test_valid_payloads_log_nothing(make_engine, records):
    """Accepted payloads leave no record."""
    eng = make_engine()
    for _ in range(3):
        eng.evaluate("shop.Order", VALID, track="v1")
    assert records() == []


def test_cli_json_log_format(policy_dir, schema_dir, tmp_path):
    """``--log-format json`` writes one JSON object per record with the structured fields."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(INVALID), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    args = ["validate", "shop.Order", str(payload), "--track", "v1"]
    args += ["--policies", str(policy_dir), "--registry", str(schema_dir)]
    code = main(
        [*args, "--log-format", "json", "--log-level", "info"],
        stdout=out,
        stderr=err,
        environ={},
    )
    assert code == 0
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    loaded = next(line for line in lines if line["message"].startswith("policy set"))
    assert loaded["logger"] == "policy_engine"
    assert loaded["level"] == "INFO"
    assert len(loaded["checksum"]) == 16
    failure = next(line for line in lines if line["logger"] == "policy_engine.decisions")
    assert failure["level"] == "WARNING"
    assert {k: failure[k] for k in ("schema", "track", "mode", "action", "violation_count")} == {
        "schema": "shop.Order",
        "track": "v1",
        "mode": "warn",
        "action": "logged",
        "violation_count": 1,
    }
    assert failure["checksum"] == loaded["checksum"]
    assert failure["time"].endswith("+00:00")


def test_cli_text_log_format_is_the_default(policy_dir, schema_dir, tmp_path):
    """Without ``--log-format`` a record is one ``LEVEL logger: message`` line."""
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(INVALID), encoding="utf-8")
    err = io.StringIO()
    args = ["validate", "shop.Order", str(payload), "--track", "v1"]
    args += ["--policies", str(policy_dir), "--registry", str(schema_dir)]
    assert main(args, stdout=io.StringIO(), stderr=err, environ={}) == 0
    assert err.getvalue() == (
        "WARNING policy_engine.decisions: "
        "shop.Order v1 logged: 1 violation(s), first /price minimum\n"
    )


def test_json_formatter_keeps_exceptions_and_odd_values():
    """Exceptions become an ``exception`` field; values JSON cannot hold are written as text."""
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "policy_engine", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info
    )
    record.schema = "shop.Order"
    record.when = {1, 2}.__class__  # not JSON
    data = json.loads(JsonLogFormatter().format(record))
    assert data["message"] == "failed x"
    assert data["schema"] == "shop.Order"
    assert data["when"] == "<class 'set'>"
    assert "ValueError: boom" in data["exception"]

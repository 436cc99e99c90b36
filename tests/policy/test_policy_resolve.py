"""Resolution of the effective rule per (schema, track) (SPEC §2 precedence, §3.2, §3.3).

The scenarios live in ``cases/resolve.yaml``: policy files plus the effective rule expected for
each (schema, track), written by hand from the spec.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.core.policy_set import PolicySet, glob_specificity
from policy_engine.core.resolve import EffectiveRule, parse_time, resolve_rule, rule_for
from policy_engine.modes import Mode
from policy_engine.policy.load import load_policy_set

CASES = Path(__file__).parent / "cases"
SCENARIOS: list[dict[str, Any]] = yaml.safe_load(
    (CASES / "resolve.yaml").read_text(encoding="utf-8")
)

RULE_FIELDS = ("mode", "baseline", "canary", "salt", "on_registry_error")


def _load(root: Path, scenario: dict[str, Any]) -> PolicySet:
    for name, text in scenario["files"].items():
        (root / name).write_text(text, encoding="utf-8")
    return load_policy_set([root], default_mode=Mode(scenario.get("default_mode", "warn")))


def _expectation_id(scenario: dict[str, Any], expect: dict[str, Any]) -> str:
    return f"{scenario['name'][:40]}|{expect['schema']}|{expect['track']}"


CASE_ROWS = [
    pytest.param(scenario, expect, id=_expectation_id(scenario, expect))
    for scenario in SCENARIOS
    for expect in scenario["expect"]
]


def test_resolution_table_is_populated():
    """The resolution table holds its scenarios, so an emptied data file cannot pass."""
    assert len(SCENARIOS) >= 10
    assert len(CASE_ROWS) >= 35


@pytest.mark.parametrize(("scenario", "expect"), CASE_ROWS)
def test_effective_rule_matches_the_table(
    tmp_path: Path, scenario: dict[str, Any], expect: dict[str, Any]
):
    """Each (schema, track) of a scenario resolves to the rule, fields and canaries in the table."""
    default_mode = Mode(scenario.get("default_mode", "warn"))
    policy_set = _load(tmp_path, scenario)
    rule, rival = rule_for(policy_set, expect["schema"], expect["track"], default_mode)
    assert rival is None
    assert rule.schema == expect["schema"]
    assert rule.track == expect["track"]
    if "rule" in expect:
        assert (rule.ref.pattern if rule.ref else None) == expect["rule"]
    if "line" in expect:
        assert rule.ref is not None
        assert rule.ref.line == expect["line"]
    for field in RULE_FIELDS:
        if field in expect:
            assert getattr(rule, field) == expect[field], field
    if "key" in expect:
        wanted = expect["key"]
        assert rule.key_path == (tuple(wanted.split(".")) if wanted else None)
    for moment, canary in expect.get("canary_at", {}).items():
        assert isinstance(moment, datetime)
        assert rule.canary_at(moment.timestamp()) == canary, moment.isoformat()
    if "fixed_mode" in expect:
        assert rule.fixed_mode() == expect["fixed_mode"]


def test_rule_ref_names_the_file(tmp_path: Path):
    """The matched rule's reference names the file it is written in."""
    path = tmp_path / "telemetry.yaml"
    path.write_text("version: 1\nschemas:\n  t.x: {mode: strict}\n", encoding="utf-8")
    rule, _ = rule_for(load_policy_set([tmp_path]), "t.x", "v1", Mode.WARN)
    assert rule.ref is not None
    assert (rule.ref.file, rule.ref.line) == (str(path), 3)


def test_no_rule_has_no_ref_and_the_global_default():
    """Without a matching entry the effective rule is the global default, with no reference."""
    for mode in Mode:
        rule = resolve_rule(None, "a.b", "v9", mode)
        assert rule.ref is None
        assert rule.mode is mode
        assert rule.baseline is mode.step_down()
        assert rule.salt == "a.b:v9"
        assert rule.canary == 100
        assert rule.canary_explicit is False


@pytest.mark.parametrize(
    ("mode", "baseline"),
    [(Mode.STRICT, Mode.WARN), (Mode.WARN, Mode.OFF), (Mode.OFF, Mode.OFF)],
)
def test_mode_steps_down_one_level(mode: Mode, baseline: Mode):
    """The default baseline is one step below the mode: strict→warn, warn→off, off→off."""
    assert mode.step_down() is baseline


# --------------------------------------------------------------------------- rival globs


def test_unseen_name_with_tied_globs_gets_the_first_sorting_pattern_and_a_rival(tmp_path: Path):
    """For a name first seen at runtime, tied globs resolve to the pattern that sorts first."""
    # The first-sorting pattern ("a.*x" < "a.x*") is written in the later file, on purpose.
    (tmp_path / "1.yaml").write_text('version: 1\nschemas:\n  "a.x*": {canary: 20}\n')
    (tmp_path / "2.yaml").write_text('version: 1\nschemas:\n  "a.*x": {canary: 30}\n')
    policy_set = load_policy_set([tmp_path])
    rule, rival = rule_for(policy_set, "a.xx", "v1", Mode.WARN)
    assert rule.ref is not None
    assert rule.ref.pattern == "a.*x"
    assert rule.canary == 30
    assert rival is not None
    assert rival.pattern == "a.x*"


def test_tied_globs_only_one_of_which_matches_have_no_rival(tmp_path: Path):
    """A name matched by just one of two tied globs resolves to it without a rival."""
    (tmp_path / "p.yaml").write_text('version: 1\nschemas:\n  "a.x*": {}\n  "a.*x": {}\n')
    rule, rival = rule_for(load_policy_set([tmp_path]), "a.xy", "v1", Mode.WARN)
    assert rule.ref is not None
    assert rule.ref.pattern == "a.x*"
    assert rival is None


# --------------------------------------------------------------------------- specificity


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        ("marketdata.*", 11),
        ("m?rket[abc]*", 5),
        ("*", 0),
        ("?", 0),
        ("[abc]", 0),
        ("telemetry.Feedback?vent", 22),
        ("marketdata.?uote*", 15),
        ("[mn]arketdata.*", 10),
        ("a[!b]c", 2),
        ("[]]x", 1),  # "]" first in a class is a member, not its end
        ("[!]]x", 1),  # likewise after the negation
        ("[!]x]y", 1),
        ("a[b", 3),  # an unclosed "[" is a literal character to fnmatch
        ("a]b", 3),
        ("**.x", 2),
    ],
)
def test_glob_specificity_counts_literal_characters(pattern: str, literals: int):
    """Specificity is the count of literal characters outside ``*``, ``?`` and ``[...]``."""
    assert glob_specificity(pattern) == literals


# --------------------------------------------------------------------------- canary_at


def _rule(**changes: Any) -> EffectiveRule:
    base: dict[str, Any] = {
        "schema": "s",
        "track": "v1",
        "mode": Mode.STRICT,
        "baseline": Mode.WARN,
        "canary": 100.0,
        "canary_explicit": False,
        "ramp_times": (),
        "ramp_canaries": (),
        "key_path": None,
        "salt": "s:v1",
        "guardrail": None,
        "on_registry_error": "allow",
        "ref": None,
    }
    base.update(changes)
    return EffectiveRule(**base)


def test_canary_at_without_a_ramp_is_the_canary_at_any_time():
    """Without a ramp the canary in force is the rule's canary, whatever the time."""
    rule = _rule(canary=25.0, canary_explicit=True)
    assert [rule.canary_at(t) for t in (0.0, 1e9, 4e9)] == [25.0, 25.0, 25.0]


def test_salt_prefix_is_salt_and_colon():
    """The hashed string starts with the salt and a colon (SPEC §3.5)."""
    assert _rule(salt="ohlcv-2026").salt_prefix == "ohlcv-2026:"


# --------------------------------------------------------------------------- parse_time


def test_parse_time_reads_rfc3339_with_offset():
    """``parse_time`` turns an RFC 3339 time into epoch seconds, honouring its offset."""
    midnight = calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert parse_time("2026-12-01T00:00:00Z") == midnight
    assert parse_time("2026-12-01T01:00:00+01:00") == midnight
    assert parse_time("2026-12-01t00:00:00z") == midnight


def test_parse_time_refuses_a_time_without_offset():
    """A time without an offset is not one instant, so ``parse_time`` refuses it."""
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-12-01T00:00:00")

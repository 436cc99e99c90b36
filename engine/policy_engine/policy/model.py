"""pydantic models of the policy file format, version 1 (docs/policy-reference.md).

These models are the single source of truth for the format: the loader validates against them
and ``policy-engine schema`` publishes their JSON Schema for editors.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from policy_engine.modes import Mode

#: Characters a schema name may hold; ``*``, ``?``, ``[``, ``]`` and ``!`` only in a glob.
SCHEMA_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
SCHEMA_PATTERN_RE = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]+$")
TRACK_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
KEY_PATH_RE = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"45s"``, ``"10m"``, ``"1h30m"``; ``ValueError`` says what is wrong."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10m', not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value.strip())
        if not value.strip() or match is None or not any(match.groups()):
            hint = (
                " (YAML 1.2 has no base-60 numbers: 1:30 is text, not 90 seconds)"
                if ":" in value
                else ""
            )
            raise ValueError(
                f"{value!r} is not a duration; write e.g. '30s', '10m', '1h30m'" + hint
            )
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise ValueError("a duration is a number of seconds or a string like '10m'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _DURATION_RE.pattern},
            ],
            "description": "seconds, or a string such as '30s', '10m', '1h30m'",
        }
    ),
]


def _check_canary(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError(f"canary must be between 0 and 100 (percent), got {value:g}")
    if abs(value * 100 - round(value * 100)) > 1e-6:
        raise ValueError(f"canary has at most two decimals (0.01 % steps), got {value!r}")
    return float(value)


Canary = Annotated[
    float,
    Field(
        strict=True,
        description="percent of keys that get `mode`, 0-100, at most two decimals",
        # No "multipleOf": 0.01 here: in binary floating point 33.33 / 0.01 is not an integer,
        # so JSON Schema validators would reject canaries the loader accepts.
        json_schema_extra={"minimum": 0, "maximum": 100},
    ),
]


#: Python's words for a date that cannot be, in the words of the file.
_TIME_FAULTS = (
    ("month must be", "there is no such month"),
    ("day is out of range", "there is no such day in that month"),
    ("hour must be", "the hour must be 00 to 23"),
    ("minute must be", "the minute must be 00 to 59"),
    ("second must be", "the second must be 00 to 59"),
    ("offset must be", "the offset must be less than 24 hours"),
)


def _parse_time(value: object) -> object:
    # The loader turns an unquoted timestamp into a datetime; a quoted one, or one naming no
    # real instant (2026-02-30, hour 25, offset +99:00), stays a string and is judged here.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            reason = next((say for fault, say in _TIME_FAULTS if fault in str(exc)), None)
            raise ValueError(
                f"{value!r} is not an RFC 3339 time"
                + (f" ({reason})" if reason else "")
                + "; write e.g. 2026-12-01T00:00:00Z"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError("a ramp step needs a time with an offset, e.g. 2026-12-01T00:00:00Z")
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise ValueError(
            "a ramp step's time needs an offset (Z or +01:00), so it means one instant"
        )
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RampStep(_Model):
    """From ``at`` (inclusive) on, the canary is ``canary`` until the next step."""

    at: Timestamp
    canary: Canary

    @field_validator("canary")
    @classmethod
    def _v_canary(cls, value: float) -> float:
        return _check_canary(value)


class Guardrail(_Model):
    """Fall back to ``baseline`` for ``cooldown`` when strict rejects too much."""

    max_reject_rate: Annotated[float, Field(strict=True, gt=0, le=1)] = Field(
        description="trip when rejected / evaluated among strict payloads exceeds this (0-1]"
    )
    window: Duration = Field(600.0, description="the sliding window the rate is measured over")
    min_samples: StrictInt = Field(100, ge=1, description="no trip with fewer strict payloads")
    cooldown: Duration = Field(1800.0, description="how long the rule stays at baseline")


class Rule(_Model):
    """The fields a rule may set; each one overrides the level above it when written."""

    mode: Mode | None = Field(None, description="mode inside the canary: off, warn or strict")
    baseline: Mode | None = Field(
        None, description="mode outside the canary; default one step below `mode`"
    )
    canary: Canary | None = None
    ramp: list[RampStep] | None = Field(
        None, description="the latest step whose `at` has passed sets the canary"
    )
    key: StrictStr | None = Field(
        None, description="dotted path into the payload whose value decides the canary bucket"
    )
    salt: StrictStr | None = Field(None, description='bucketing salt; default "<schema>:<track>"')
    guardrail: Guardrail | None = None
    on_registry_error: Literal["allow", "reject"] | None = Field(
        None, description="what to do with no usable schema: allow (skip) or reject (strict)"
    )

    @field_validator("canary")
    @classmethod
    def _v_canary(cls, value: float | None) -> float | None:
        return None if value is None else _check_canary(value)

    @field_validator("key")
    @classmethod
    def _v_key(cls, value: str | None) -> str | None:
        if value is not None and not KEY_PATH_RE.match(value):
            raise ValueError(f"{value!r} is not a dotted path such as 'source.id'")
        return value

    @field_validator("ramp")
    @classmethod
    def _v_ramp(cls, steps: list[RampStep] | None) -> list[RampStep] | None:
        # Step order is checked by the loader, which can point at the offending step.
        if steps is not None and not steps:
            raise ValueError("a ramp needs at least one step")
        return steps


TrackName = Annotated[str, Field(pattern=TRACK_RE.pattern)]


class SchemaRule(Rule):
    """A rule for one schema name or glob, with optional per-track overrides."""

    tracks: dict[TrackName, Rule] | None = Field(
        None,
        description="per-track overrides, e.g. v1, v2",
        # patternProperties alone lets a key that does not match through unchecked.
        json_schema_extra={"propertyNames": {"pattern": TRACK_RE.pattern}},
    )


SchemaPattern = Annotated[str, Field(pattern=SCHEMA_PATTERN_RE.pattern)]


class PolicyFile(_Model):
    """One policy file: a format version, file-wide defaults and rules per schema."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="policy-engine policy file",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(description="format version; only 1 exists")

    @field_validator("version", mode="before")
    @classmethod
    def _v_version(cls, value: object) -> object:
        # Literal[1] alone would take 1.0 and True; the format version is the integer 1.
        if type(value) is not int:
            raise ValueError("version must be the integer 1")
        return value

    defaults: Rule | None = Field(None, description="inherited by every rule in this file")
    schemas: dict[SchemaPattern, SchemaRule] = Field(
        default_factory=dict,
        description="rules by exact schema name or fnmatch glob; the most specific match wins",
        json_schema_extra={"propertyNames": {"pattern": SCHEMA_PATTERN_RE.pattern}},
    )


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file format, as published by ``policy-engine schema``."""
    schema = PolicyFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}

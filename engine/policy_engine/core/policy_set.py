"""The loaded policy rules as data: ``PolicySet`` (every file together) and its ``PolicyEntry``s.

Built by the YAML loader (``policy_engine.policy.load``), which checks everything first; here the
set is only data plus the one question every other part asks of it: which entry governs a schema
name (precedence: an exact name beats every glob; among globs the most literal characters
win; ties are load errors for names known at load time).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from policy_engine.errors import Problem
from policy_engine.policy.model import Rule, SchemaRule

Mark = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One schema rule as written: where, what, and how specific its pattern is."""

    pattern: str
    rule: SchemaRule
    defaults: Rule | None
    file: str
    line: int
    column: int
    specificity: int
    regex: re.Pattern[str] | None  # None for an exact name
    track_marks: Mapping[str, Mark] = field(default_factory=dict)

    @property
    def is_glob(self) -> bool:
        """Whether the pattern is an fnmatch glob rather than an exact name."""
        return self.regex is not None

    @property
    def where(self) -> str:
        """``file:line:column`` of the schema key."""
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy file loaded together; ``checksum`` is its version.

    Immutable: a reload builds a new set and swaps it in whole.
    """

    checksum: str
    files: tuple[str, ...]
    exact: Mapping[str, PolicyEntry]
    globs: tuple[PolicyEntry, ...]  # most specific first, ties by pattern
    warnings: tuple[Problem, ...] = ()

    def match(self, schema: str) -> tuple[PolicyEntry | None, PolicyEntry | None]:
        """The entry that governs ``schema``, and an equally specific rival glob if there is one."""
        exact = self.exact.get(schema)
        if exact is not None:
            return exact, None
        winner: PolicyEntry | None = None
        for entry in self.globs:
            if winner is not None and entry.specificity < winner.specificity:
                break
            if entry.regex is not None and entry.regex.match(schema):
                if winner is not None:
                    return winner, entry
                winner = entry
        return winner, None

    @property
    def entries(self) -> Iterator[PolicyEntry]:
        """Every entry, exact names first."""
        yield from self.exact.values()
        yield from self.globs


EMPTY_POLICY_SET = PolicySet(
    checksum=hashlib.sha256(b"").hexdigest()[:16], files=(), exact=MappingProxyType({}), globs=()
)


def glob_specificity(pattern: str) -> int:
    """Literal characters in ``pattern`` outside ``*``, ``?`` and ``[...]`` (glob precedence)."""
    count, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            # As fnmatch reads it: a leading "!" negates, then a leading "]" is a member.
            start = i + 1
            if pattern[start : start + 1] == "!":
                start += 1
            if pattern[start : start + 1] == "]":
                start += 1
            end = pattern.find("]", start)
            if end != -1:
                i = end + 1
                continue
        if char not in "*?":
            count += 1
        i += 1
    return count


def is_glob(pattern: str) -> bool:
    """Whether a schema key is a glob rather than an exact name."""
    return any(c in pattern for c in "*?[")

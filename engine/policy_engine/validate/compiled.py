"""What a compiled schema gives the hot path: ``CompiledSchema``, and violations as data.

Both backends build a ``CompiledSchema`` and name violations through ``keyword_of`` and
``json_pointer``, so a violation's keyword and path never depend on the backend. The depth guard
(``exceeds_depth`` past ``MAX_DEPTH``) stands in front of a schema that can recurse, because a
native validator overflows its stack on a payload nested 100 000 deep. ``invalid_schema`` is the
one shape of "this schema is not usable", whichever step finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from policy_engine.decision import Violation
from policy_engine.errors import InvalidSchemaError
from policy_engine.settings import Backend
from policy_engine.sources import SchemaDocument

#: A payload nesting deeper than this is not validated against a schema that can recurse.
MAX_DEPTH = 128
#: Violation messages are cut to this many characters (a message may quote a huge value).
MAX_MESSAGE_CHARS = 300


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer of a path: ``["bars", 3, "close"]`` -> ``/bars/3/close``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def shorten(message: str) -> str:
    """``message`` fit for a violation or an error: at most ``MAX_MESSAGE_CHARS`` characters.

    jsonschema appends the whole failing schema and value ("Failed validating ..."); that part
    is dropped, and what remains is cut, because a message may quote a payload of any size.
    """
    message = message.split("\n\nFailed validating", 1)[0]
    if len(message) > MAX_MESSAGE_CHARS:
        return message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


def exceeds_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers in ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def invalid_schema(doc: SchemaDocument, reason: str) -> InvalidSchemaError:
    """The error for ``doc`` not being a usable schema, naming its schema and track.

    Every step that can refuse a schema (its dialect, an endless ``$ref`` loop, either backend's
    compiler) raises this one shape: the message reads the same whichever step refused it.
    """
    return InvalidSchemaError(
        f"{doc.schema} {doc.track}: not a usable JSON Schema: {shorten(reason)}",
        schema=doc.schema,
        track=doc.track,
    )


# Keywords whose value maps names (of properties, patterns, definitions) to subschemas: in a
# schema path, the part after one of them is a name, not a keyword.
_NAMED_SUBSCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
# Followed, never reported: the keyword that fails is the one in the schema the $ref reaches.
_REFERENCES = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})


def keyword_of(schema_path: Iterable[str | int]) -> str:
    """The keyword that failed, from the schema path of a failure.

    The last keyword on the path, skipping array indexes, the names under ``properties``-like
    keywords and ``$ref``s: ``["properties", "n", "minimum"]`` -> ``minimum``;
    ``["properties", "x"]`` (a ``false`` subschema) -> ``properties``; ``[]`` (the root schema is
    ``false``) -> ``false``. Both backends report through this, so the keyword, a metric label
    and a dead-letter field, never depends on the backend or on a property's name.
    """
    keyword, name_next = "", False
    for part in schema_path:
        if name_next:
            name_next = False
        elif isinstance(part, str) and part not in _REFERENCES:
            keyword = part
            name_next = part in _NAMED_SUBSCHEMAS
    return keyword or "false"


def too_deep_violation() -> Violation:
    """The violation of a payload nested past ``MAX_DEPTH`` for a schema that can recurse."""
    return Violation("", "maxDepth", f"payload nests deeper than {MAX_DEPTH} levels; not validated")


def not_json_violation(exc: BaseException) -> Violation:
    """The violation of a payload holding values JSON cannot (a set, an int dict key, ...)."""
    return Violation("", "type", shorten(f"payload is not JSON data: {exc}"))


def _recursion_violation(payload: Any) -> Violation:
    if exceeds_depth(payload):
        return too_deep_violation()
    # A shallow payload: the schema recursed on its own ($refs the cycle check cannot follow).
    return Violation("", "$ref", "the schema's references recurse without end; not validated")


class CompiledSchema:
    """A validator compiled once per (schema, track, version) and reused for every payload."""

    __slots__ = (
        "_iter_errors",
        "_unresolvable",
        "_violations_of",
        "backend",
        "depth_guard",
        "is_valid",
        "quick_is_valid",
        "source",
    )

    def __init__(
        self,
        source: SchemaDocument,
        backend: Backend,
        is_valid: Callable[[Any], bool],
        iter_errors: Callable[[Any], Iterator[Any]],
        violations_of: Callable[[Iterator[Any]], tuple[Violation, ...]],
        depth_guard: bool,
        unresolvable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.source = source
        self.backend = backend
        #: Fast yes/no; may raise on values that are not JSON data (see ``violations``).
        self.is_valid = is_valid
        self._iter_errors = iter_errors
        self._violations_of = violations_of
        self.depth_guard = depth_guard
        # The backend's "a $ref could not be resolved while validating" exceptions.
        self._unresolvable = unresolvable
        #: The hot path's yes/no: ``is_valid`` itself when the schema cannot recurse, else with
        #: the depth guard in front. May raise on values that are not JSON data.
        self.quick_is_valid: Callable[[Any], bool] = (
            self._guarded_is_valid if depth_guard else is_valid
        )

    def _guarded_is_valid(self, payload: Any) -> bool:
        return not exceeds_depth(payload) and self.is_valid(payload)

    def violations(self, payload: Any) -> tuple[Violation, ...]:
        """Up to ``MAX_VIOLATIONS`` violations of ``payload`` (empty when it is valid).

        Never raises: a payload the validator cannot even read (too deep, not JSON data) is one
        violation at the root that says so.
        """
        if self.depth_guard and exceeds_depth(payload):
            return (too_deep_violation(),)
        try:
            return self._violations_of(self._iter_errors(payload))
        except RecursionError:
            return (_recursion_violation(payload),)
        except self._unresolvable as exc:
            return (
                Violation("", "$ref", shorten(f"unresolvable $ref (nothing is fetched): {exc}")),
            )
        except (ValueError, TypeError, OverflowError) as exc:
            return (not_json_violation(exc),)

    def check(self, payload: Any) -> tuple[Violation, ...]:
        """``()`` for a valid payload, else its violations: the hot path's single call."""
        if self.depth_guard and exceeds_depth(payload):
            return (too_deep_violation(),)
        try:
            if self.is_valid(payload):
                return ()
        except RecursionError:
            return (_recursion_violation(payload),)
        except self._unresolvable:
            pass  # reported by violations()
        except (ValueError, TypeError, OverflowError) as exc:
            return (not_json_violation(exc),)
        return self.violations(payload) or (
            Violation("", "invalid", "the validator rejected the payload without a reason"),
        )

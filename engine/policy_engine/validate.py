"""Compiled validators and violations as data (SPEC §4).

Two backends give the same valid/invalid answers (``tests/test_validate.py`` runs one table of
cases against both):

- ``rust`` (default): jsonschema-rs, about 100x faster than a fresh validator per payload;
- ``python``: the reference implementation, ``jsonschema``, with its format checkers.

Both check formats (``date-time``, ``email``, ``uuid``, ...) and neither fetches anything: a
``$ref`` resolves only within the schema and the ``references`` its registry supplied. A schema
whose ``$ref`` points elsewhere fails to compile with ``InvalidSchemaError``.

A schema without ``$schema`` is read as draft 2020-12 by both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import jsonschema
import jsonschema_rs
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT202012

from policy_engine.decision import MAX_VIOLATIONS, Violation
from policy_engine.errors import InvalidSchemaError
from policy_engine.settings import BACKENDS, Backend
from policy_engine.sources import SchemaDocument

#: A payload nesting deeper than this is not validated against a schema that can recurse.
MAX_DEPTH = 128
#: Violation messages are cut to this many characters (a message may quote a huge value).
MAX_MESSAGE_CHARS = 300


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer of a path: ``["bars", 3, "close"]`` -> ``/bars/3/close``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _short(message: str) -> str:
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


def _refs(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every (location, reference) of ``$ref``/``$dynamicRef``/``$recursiveRef`` in a schema."""
    stack: list[tuple[Any, str]] = [(node, pointer)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                    yield where, ("!dynamic" if key != "$ref" else value)
                else:
                    stack.append((value, f"{where}/{json_pointer([key])[1:]}"))
        elif isinstance(item, list):
            stack.extend((value, f"{where}/{i}") for i, value in enumerate(item))


def can_recurse(document: Any) -> bool:
    """Whether validation depth may follow the payload's depth rather than the schema's.

    A schema whose ``$ref`` graph has no cycle validates no deeper than it is written, so even a
    deeply nested payload is safe. A cycle (``{"$ref": "#"}``), a dynamic reference or a reference
    outside the document can recurse; those schemas get the ``MAX_DEPTH`` guard, because a native
    validator overflows its stack on a payload nested 100 000 deep.
    """
    edges: dict[str, set[str]] = {}
    for location, ref in _refs(document):
        if ref == "!dynamic" or not (ref == "#" or ref.startswith("#/")):
            return True  # dynamic, external or anchor ("#name") refs: assume the worst
        edges.setdefault(location, set()).add(ref[1:])
    targets = {t for ts in edges.values() for t in ts}
    # target T reaches every target referenced from inside T's subtree
    graph = {
        t: {dst for loc, ds in edges.items() if loc == t or loc.startswith(t + "/") for dst in ds}
        for t in targets
    }
    visiting: set[str] = set()
    done: set[str] = set()

    def cyclic(node: str) -> bool:
        if node in done:
            return False
        if node in visiting:
            return True
        visiting.add(node)
        found = any(cyclic(nxt) for nxt in graph.get(node, ()))
        visiting.discard(node)
        done.add(node)
        return found

    return any(cyclic(t) for t in sorted(targets))


class CompiledSchema:
    """A validator compiled once per (schema, track, version) and reused for every payload."""

    __slots__ = (
        "_iter_errors",
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
    ) -> None:
        self.source = source
        self.backend = backend
        #: Fast yes/no; may raise on values that are not JSON data (see ``violations``).
        self.is_valid = is_valid
        self._iter_errors = iter_errors
        self._violations_of = violations_of
        self.depth_guard = depth_guard
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
            return (too_deep_violation(),)
        except referencing.exceptions.Unresolvable as exc:
            return (
                Violation("", "$ref", _short(f"unresolvable $ref (nothing is fetched): {exc}")),
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
            return (too_deep_violation(),)
        except (ValueError, TypeError, OverflowError) as exc:
            return (not_json_violation(exc),)
        except referencing.exceptions.Unresolvable:
            pass  # reported by violations()
        return self.violations(payload) or (
            Violation("", "invalid", "the validator rejected the payload without a reason"),
        )


def too_deep_violation() -> Violation:
    """The violation of a payload nested past ``MAX_DEPTH`` for a schema that can recurse."""
    return Violation("", "maxDepth", f"payload nests deeper than {MAX_DEPTH} levels; not validated")


def not_json_violation(exc: BaseException) -> Violation:
    """The violation of a payload holding values JSON cannot (a set, an int dict key, ...)."""
    return Violation("", "type", _short(f"payload is not JSON data: {exc}"))


def _refuse_retrieval(uri: str) -> Any:
    raise InvalidSchemaError(
        f"$ref {uri!r} is not in the schema or its registry references; nothing is fetched"
    )


def _rust_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    out = []
    for err in islice(errors, MAX_VIOLATIONS):
        path = err.schema_path
        keyword = next((p for p in reversed(path) if isinstance(p, str)), "") if path else ""
        if not keyword:
            keyword = getattr(err.kind, "name", "") or "invalid"
        out.append(Violation(json_pointer(err.instance_path), str(keyword), _short(err.message)))
    return tuple(out)


def _python_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    return tuple(
        Violation(json_pointer(err.absolute_path), str(err.validator), _short(err.message))
        for err in islice(errors, MAX_VIOLATIONS)
    )


def _compile_rust(doc: SchemaDocument) -> CompiledSchema:
    try:
        # Inside the try: building the registry already resolves the references' own $refs.
        registry = None
        if doc.references:
            registry = jsonschema_rs.Registry(
                list(doc.references.items()), retriever=_refuse_retrieval
            )
        validator = jsonschema_rs.validator_for(
            doc.document,
            validate_formats=True,
            retriever=_refuse_retrieval,
            registry=registry,
        )
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise InvalidSchemaError(
            f"{doc.schema} {doc.track}: not a usable JSON Schema: {_short(str(exc))}",
            schema=doc.schema,
            track=doc.track,
        ) from exc
    return CompiledSchema(
        doc,
        "rust",
        validator.is_valid,
        validator.iter_errors,
        _rust_violations,
        can_recurse(doc.document),
    )


def _refuse_python(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


def _compile_python(doc: SchemaDocument) -> CompiledSchema:
    resources = [
        (uri, referencing.Resource.from_contents(body, default_specification=DRAFT202012))
        for uri, body in doc.references.items()
    ]
    registry: referencing.Registry[Any] = referencing.Registry(
        retrieve=_refuse_python  # type: ignore[call-arg]
    ).with_resources(resources)
    cls = jsonschema.validators.validator_for(doc.document, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(doc.document)
        validator = cls(doc.document, registry=registry, format_checker=cls.FORMAT_CHECKER)
        # Resolve every $ref once now, so a schema pointing outside fails here, not per payload.
        _probe_refs(validator, doc.document)
    except referencing.exceptions.Unresolvable as exc:
        raise InvalidSchemaError(
            f"{doc.schema} {doc.track}: $ref {_short(str(exc))!r} is not in the schema or its "
            "registry references; nothing is fetched",
            schema=doc.schema,
            track=doc.track,
        ) from exc
    except jsonschema.SchemaError as exc:
        raise InvalidSchemaError(
            f"{doc.schema} {doc.track}: not a usable JSON Schema: {_short(str(exc))}",
            schema=doc.schema,
            track=doc.track,
        ) from exc
    return CompiledSchema(
        doc,
        "python",
        validator.is_valid,
        validator.iter_errors,
        _python_violations,
        can_recurse(doc.document),
    )


def _probe_refs(validator: Any, document: Any) -> None:
    resolver = validator._resolver  # the registry-backed resolver jsonschema built for us
    for _, ref in _refs(document):
        if ref != "!dynamic":
            resolver.lookup(ref)


_COMPILERS: Mapping[Backend, Callable[[SchemaDocument], CompiledSchema]] = {
    "rust": _compile_rust,
    "python": _compile_python,
}


def compile_schema(doc: SchemaDocument, backend: Backend = "rust") -> CompiledSchema:
    """Compile ``doc`` with ``backend``; ``InvalidSchemaError`` if it is not a usable schema."""
    try:
        compiler = _COMPILERS[backend]
    except KeyError:
        raise ValueError(f"unknown validator backend {backend!r}; use one of {BACKENDS}") from None
    return compiler(doc)

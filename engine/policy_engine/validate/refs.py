"""The ``$ref`` graph of a schema: whether validation can recurse, and whether it can never end.

``can_recurse`` decides whether a compiled schema needs the depth guard; ``endless_ref_cycle``
finds a loop of ``$ref``s that never moves into the payload, which ``compile_schema`` refuses on
both backends. Both only read the document; neither resolves anything outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from policy_engine.validate.compiled import json_pointer
from policy_engine.validate.dialects import DEFAULT_DIALECT


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
    return _find_cycle(graph, sorted(targets)) is not None


def _find_cycle(graph: Mapping[str, Iterable[str]], starts: Iterable[str]) -> list[str] | None:
    """A cycle in ``graph`` reachable from ``starts`` (its nodes, first one repeated), or None."""
    done: set[str] = set()
    for start in starts:
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph.get(start, ())))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(graph.get(child, ()))))
                path.append(child)
                on_path.add(child)
    return None


# Keywords whose subschemas apply to the same value as the schema holding them.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")


def _resolve_pointer(document: Any, pointer: str) -> Any:
    node = document
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _in_place_refs(node: Any, version: int) -> Iterator[str]:
    """The local ``$ref`` targets applied to the same value as ``node`` (not to a part of it)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
            yield ref[1:]
        if version <= 7 and "$ref" in item:
            continue  # before 2019-09 a $ref's siblings are ignored
        stack.extend(item.get(keyword) for keyword in _IN_PLACE_ONE)
        for keyword in _IN_PLACE_LIST:
            if isinstance(item.get(keyword), list):
                stack.extend(item[keyword])
        for keyword in _IN_PLACE_MAP:
            if isinstance(item.get(keyword), dict):
                stack.extend(item[keyword].values())


def _has_nested_ids(document: Any) -> bool:
    stack = [document]
    root = True
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in ("$id", "id"):
                value = item.get(key)
                if not root and isinstance(value, str) and not value.startswith("#"):
                    return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        root = False
    return False


def _without_definitions(node: Any) -> Any:
    """``node`` without its ``$defs``/``definitions``: they apply only where a ``$ref`` says."""
    if isinstance(node, dict):
        return {k: v for k, v in node.items() if k not in ("$defs", "definitions")}
    return node


def endless_ref_cycle(document: Any, version: int = DEFAULT_DIALECT) -> list[str] | None:
    """A loop of local ``$ref``s that never moves into the payload, or ``None``.

    ``{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}``
    sends a validator round in circles on the same value, whatever the payload: the
    specification leaves such schemas undefined, jsonschema-rs accepted every payload and
    jsonschema overflowed its stack. Both backends refuse them instead. Only references by JSON
    Pointer in a document without nested ``$id`` are followed.
    """
    if not isinstance(document, dict) or _has_nested_ids(document):
        return None
    # Only schemas validation can reach: an unused cycle among definitions is harmless.
    graph: dict[str, list[str]] = {}
    pending = [""]
    while pending:
        pointer = pending.pop()
        if pointer in graph:
            continue
        target = document if pointer == "" else _resolve_pointer(document, pointer)
        graph[pointer] = list(_in_place_refs(target, version))
        pending.extend(
            ref[1:]
            for _, ref in _refs(_without_definitions(target))
            if ref == "#" or ref.startswith("#/")
        )
    cycle = _find_cycle(graph, sorted(graph))
    return None if cycle is None else ["#" + node for node in cycle]

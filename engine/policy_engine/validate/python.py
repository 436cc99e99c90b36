"""The ``python`` backend: the ``jsonschema`` package, made to answer as the rust backend does.

Its pattern keywords search with ``ecma262``, its formats are checked by ``formats``, and
``dependencies`` and the draft 6/7 content keywords are enforced as jsonschema-rs enforces them.
``jsonschema`` and ``referencing`` are imported only inside the functions that compile a schema:
importing them costs about a second, and importing this module imports neither.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from policy_engine.decision import MAX_VIOLATIONS, Violation
from policy_engine.sources import SchemaDocument
from policy_engine.validate.compiled import (
    CompiledSchema,
    invalid_schema,
    json_pointer,
    keyword_of,
    shorten,
)
from policy_engine.validate.dialects import VOCABULARIES, Dialect
from policy_engine.validate.ecma262 import (
    EcmaRegexError,
    UnsupportedRegexError,
    compile_ecma_regex,
    is_ecma_regex,
)
from policy_engine.validate.formats import FORMAT_CHECKS
from policy_engine.validate.refs import can_recurse

# The meta-schema URI of each dialect version, as ``referencing`` names its specifications.
_DIALECT_URIS: Mapping[int, str] = {
    4: "http://json-schema.org/draft-04/schema#",
    6: "http://json-schema.org/draft-06/schema#",
    7: "http://json-schema.org/draft-07/schema#",
    2019: "https://json-schema.org/draft/2019-09/schema",
    2020: "https://json-schema.org/draft/2020-12/schema",
}


# jsonschema's own keywords search patterns with Python's ``re`` (``pattern``,
# ``patternProperties``, and inside ``additionalProperties`` and ``unevaluatedProperties``) and
# lose the instance path of a ``false`` subschema; the keywords below replace them. They take
# jsonschema's (validator, value, instance, schema) arguments.


def _error(message: str) -> Any:
    from jsonschema.exceptions import ValidationError

    return ValidationError(message)


def _is_valid_under(validator: Any, instance: Any, schema: Any) -> bool:
    return next(validator.descend(instance, schema), None) is None


def _descend(
    validator: Any, instance: Any, schema: Any, path: str | int, schema_path: str | int | None
) -> Iterator[Any]:
    """``validator.descend``, but a ``false`` subschema's failure keeps its instance path."""
    if schema is not False:
        yield from validator.descend(instance, schema, path=path, schema_path=schema_path)
        return
    from jsonschema.exceptions import ValidationError

    error = ValidationError(
        f"False schema does not allow {instance!r}", instance=instance, schema=schema
    )
    error.relative_path.appendleft(path)
    if schema_path is not None:
        error.relative_schema_path.appendleft(schema_path)
    yield error


def _matches(pattern: str, text: str) -> bool:
    return compile_ecma_regex(pattern).search(text) is not None


def _listed(keys: Iterable[Any]) -> str:
    keys = sorted(keys, key=str)
    return f"{', '.join(repr(k) for k in keys)} {'was' if len(keys) == 1 else 'were'}"


def _kw_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, str) and not _matches(pattern, instance):
        yield _error(f"{instance!r} does not match {pattern!r}")


def _kw_properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, dict):
        for name, subschema in properties.items():
            if name in instance:
                yield from _descend(validator, instance[name], subschema, name, name)


def _kw_pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if isinstance(instance, dict):
        for pattern, subschema in patterns.items():
            for name, value in instance.items():
                if _matches(pattern, name):
                    yield from _descend(validator, value, subschema, name, pattern)


def _kw_additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in properties and not any(_matches(p, name) for p in patterns)
    ]
    if additional is False:
        if extras:
            yield _error(f"Additional properties are not allowed ({_listed(extras)} unexpected)")
        return
    for name in extras:
        yield from _descend(validator, instance[name], additional, name, None)


def _kw_items(validator: Any, items: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """2020-12 ``items``: one schema for every item after the ``prefixItems``."""
    if isinstance(instance, list):
        for index in range(len(schema.get("prefixItems", ())), len(instance)):
            yield from _descend(validator, instance[index], items, index, None)


def _kw_items_legacy(validator: Any, items: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``items`` before 2020-12: one schema for every item, or a list of schemas by position."""
    if not isinstance(instance, list):
        return
    if isinstance(items, list):
        for index, (item, subschema) in enumerate(zip(instance, items, strict=False)):
            yield from _descend(validator, item, subschema, index, index)
    else:
        for index, item in enumerate(instance):
            yield from _descend(validator, item, items, index, None)


def _kw_prefix_items(validator: Any, prefix: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if isinstance(instance, list):
        for index, (item, subschema) in enumerate(zip(instance, prefix, strict=False)):
            yield from _descend(validator, item, subschema, index, index)


def _kw_additional_items(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    items = schema.get("items")  # absent, it is the empty schema: nothing is "additional"
    if not isinstance(instance, list) or not isinstance(items, list):
        return
    if additional is False:
        if len(instance) > len(items):
            extras = _listed(instance[len(items) :])
            yield _error(f"Additional items are not allowed ({extras} unexpected)")
        return
    for index in range(len(items), len(instance)):
        yield from _descend(validator, instance[index], additional, index, None)


def _kw_dependencies(
    validator: Any, dependencies: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 7's ``dependencies``, also under 2019-09 and 2020-12 (as jsonschema-rs does)."""
    if not isinstance(instance, dict):
        return
    for name, dependency in dependencies.items():
        if name not in instance:
            continue
        if isinstance(dependency, list):
            for each in dependency:
                if each not in instance:
                    yield _error(f"{each!r} is a dependency of {name!r}")
        else:
            yield from validator.descend(instance, dependency, schema_path=name)


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The properties of ``instance`` that ``schema`` evaluates (for ``unevaluatedProperties``)."""
    if not isinstance(schema, dict):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
        reference = schema.get(keyword)
        if not isinstance(reference, str):
            continue
        if keyword == "$recursiveRef":
            from referencing.jsonschema import lookup_recursive_ref

            resolved = lookup_recursive_ref(validator._resolver)
        else:
            resolved = validator._resolver.lookup(reference)
        keys |= _evaluated_keys(
            validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
            instance,
            resolved.contents,
        )
    properties = schema.get("properties")
    if isinstance(properties, dict):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword in schema:
            keys |= {
                name
                for name, value in instance.items()
                if _is_valid_under(validator, value, schema[keyword])
            }
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        keys |= {name for name in instance if any(_matches(p, name) for p in patterns)}
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for name, subschema in dependent.items():
            if name in instance:
                keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, ()):
            if _is_valid_under(validator, instance, subschema):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if _is_valid_under(validator, instance, schema["if"]):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            keys |= _evaluated_keys(validator, instance, schema.get("then"))
        else:
            keys |= _evaluated_keys(validator, instance, schema.get("else"))
    return keys


def _kw_unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failing = [
        name
        for name in instance
        if name not in evaluated and not _is_valid_under(validator, instance[name], unevaluated)
    ]
    if failing and unevaluated is False:
        yield _error(f"Unevaluated properties are not allowed ({_listed(failing)} unexpected)")
    elif failing:
        yield _error(
            "Unevaluated properties are not valid under the given schema "
            f"({_listed(failing)} unevaluated and invalid)"
        )


def _decode_base64(text: str) -> bytes | None:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _kw_content_encoding(
    validator: Any, encoding: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 6/7 ``contentEncoding``: a ``base64`` string must decode (jsonschema-rs asserts it)."""
    if isinstance(instance, str) and encoding == "base64" and _decode_base64(instance) is None:
        yield _error(f"{instance!r} is not base64-encoded")


def _kw_content_media_type(
    validator: Any, media_type: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """Draft 6/7 ``contentMediaType``: an ``application/json`` string must parse as JSON."""
    if not isinstance(instance, str) or media_type != "application/json":
        return
    import json

    text: str | bytes = instance
    if schema.get("contentEncoding") == "base64":
        decoded = _decode_base64(instance)
        if decoded is None:
            return  # contentEncoding reports it
        text = decoded
    try:
        json.loads(text)
    except ValueError:
        yield _error(f"{instance!r} is not a JSON document")


def _kw_ignored(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """A keyword of a vocabulary the schema's meta-schema does not list: it does nothing."""
    return iter(())


_PYTHON_KEYWORDS: Mapping[str, Callable[..., Iterator[Any]]] = {
    "pattern": _kw_pattern,
    "properties": _kw_properties,
    "patternProperties": _kw_pattern_properties,
    "additionalProperties": _kw_additional_properties,
}


@functools.cache
def _python_class(dialect: Dialect) -> Any:
    """jsonschema's validator class for ``dialect``, with this module's keywords in place."""
    import jsonschema

    base = {
        4: jsonschema.Draft4Validator,
        6: jsonschema.Draft6Validator,
        7: jsonschema.Draft7Validator,
        2019: jsonschema.Draft201909Validator,
        2020: jsonschema.Draft202012Validator,
    }[dialect.version]
    keywords: dict[str, Callable[..., Iterator[Any]]] = dict(_PYTHON_KEYWORDS)
    if dialect.version >= 2019:
        keywords["unevaluatedProperties"] = _kw_unevaluated_properties
        keywords["dependencies"] = _kw_dependencies
    if dialect.version == 2020:
        keywords["items"] = _kw_items
        keywords["prefixItems"] = _kw_prefix_items
    else:
        keywords["items"] = _kw_items_legacy
        keywords["additionalItems"] = _kw_additional_items
    if dialect.version in (6, 7):
        keywords["contentEncoding"] = _kw_content_encoding
        keywords["contentMediaType"] = _kw_content_media_type
    if dialect.vocabularies is not None:
        listed = {k for v in dialect.vocabularies for k in VOCABULARIES[v]}
        known = {k for keywords_ in VOCABULARIES.values() for k in keywords_}
        for keyword in set(base.VALIDATORS) & known - listed:
            keywords[keyword] = _kw_ignored
    extend: Any = jsonschema.validators.extend  # untyped in jsonschema's stubs
    return extend(base, keywords)


@functools.cache
def _format_checkers() -> tuple[Any, Any]:
    """(every format, only ``regex``): for payloads, and for schemas against their meta-schema."""
    import jsonschema

    def checker(formats: Mapping[str, Callable[[str], bool]]) -> Any:
        found = jsonschema.FormatChecker(formats=())
        for name, check in formats.items():
            found.checks(name)(functools.partial(_check_string, check))
        return found

    return checker(FORMAT_CHECKS), checker({"regex": is_ecma_regex})


def _check_string(check: Callable[[str], bool], value: object) -> bool:
    return not isinstance(value, str) or check(value)


def _python_violations(errors: Iterator[Any]) -> tuple[Violation, ...]:
    return tuple(
        Violation(
            json_pointer(err.absolute_path),
            keyword_of(err.absolute_schema_path),
            shorten(err.message),
        )
        for err in islice(errors, MAX_VIOLATIONS)
    )


def compile_python(doc: SchemaDocument, dialect: Dialect) -> CompiledSchema:
    """``doc`` compiled with jsonschema; ``InvalidSchemaError`` when it does not compile."""
    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema

    specification = referencing.jsonschema.specification_with(_DIALECT_URIS[dialect.version])
    cls = _python_class(dialect)
    payload_formats, schema_formats = _format_checkers()
    try:
        resources = [
            (uri, specification.detect(body).create_resource(body))
            for uri, body in doc.references.items()
        ]
        registry: referencing.Registry[Any] = referencing.Registry(
            retrieve=_refuse_python  # type: ignore[call-arg]
        ).with_resources(resources)
        cls.check_schema(doc.document, format_checker=schema_formats)
        validator = cls(doc.document, registry=registry, format_checker=payload_formats)
        # Resolve every $ref and compile every pattern now, so a schema pointing outside or
        # holding a regex Python cannot run fails here, not per payload.
        _probe(validator._resolver, doc.document, specification)
        for uri, body in doc.references.items():
            resolved = validator._resolver.lookup(uri)
            _probe(resolved.resolver, body, specification.detect(body), follow_refs=False)
    except referencing.exceptions.Unresolvable as exc:
        raise invalid_schema(
            doc, f"$ref {exc} is not in the schema or its registry references; nothing is fetched"
        ) from exc
    except (jsonschema.SchemaError, EcmaRegexError, UnsupportedRegexError) as exc:
        raise invalid_schema(doc, str(exc)) from exc
    return CompiledSchema(
        doc,
        "python",
        validator.is_valid,
        validator.iter_errors,
        _python_violations,
        can_recurse(doc.document),
        (referencing.exceptions.Unresolvable,),
    )


def _refuse_python(uri: str) -> Any:
    import referencing.exceptions

    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


def _probe(resolver: Any, document: Any, specification: Any, *, follow_refs: bool = True) -> None:
    """Resolve each ``$ref`` and compile each pattern in ``document``, in its ``$id`` scope.

    Walks the subschemas the dialect defines (not ``const``/``enum`` values), entering each
    subschema's ``$id`` before resolving its ``$ref``: a nested or URN ``$id`` resolves as the
    validator will resolve it. A registry reference's own ``$ref``s (``follow_refs=False``) are
    left to validation time: the reference may be written in another dialect than the schema
    that uses it, and only the parts a ``$ref`` reaches are ever read.
    """
    import referencing.jsonschema

    stack: list[tuple[Any, Any, Any]] = [(document, resolver, specification)]
    while stack:
        node, scope, spec = stack.pop()
        if not isinstance(node, dict):
            continue
        if node is not document and isinstance(node.get("$schema"), str):
            spec = referencing.jsonschema.specification_with(node["$schema"], default=spec)
        scope = scope.in_subresource(spec.create_resource(node))
        if follow_refs and isinstance(node.get("$ref"), str):
            scope.lookup(node["$ref"])
        if isinstance(node.get("pattern"), str):
            compile_ecma_regex(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                compile_ecma_regex(pattern)
        stack.extend((child, scope, spec) for child in spec.subresources_of(node))

"""Which JSON Schema a document is written in: ``Dialect``, ``dialect_of`` and the vocabularies.

A schema without ``$schema`` is draft 2020-12 (``DEFAULT_DIALECT``); a standard meta-schema URI
names its draft whatever its scheme or trailing ``#`` (``known_dialect``). A custom meta-schema
must be among the registry's references (nothing is fetched), and its ``$vocabulary`` picks the
keywords that apply (``VOCABULARIES``; the python backend switches the others off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from policy_engine.sources import SchemaDocument
from policy_engine.validate.compiled import invalid_schema

#: The dialect of a schema without ``$schema``.
DEFAULT_DIALECT = 2020

# Meta-schema URIs without scheme and trailing "#" -> dialect (draft 4, 6, 7, 2019-09, 2020-12).
_DIALECTS: Mapping[str, int] = {
    "json-schema.org/draft-04/schema": 4,
    "json-schema.org/draft-06/schema": 6,
    "json-schema.org/draft-07/schema": 7,
    "json-schema.org/draft/2019-09/schema": 2019,
    "json-schema.org/draft/2020-12/schema": 2020,
}


def _words(text: str) -> frozenset[str]:
    """The space-separated words of ``text``: keyword tables written as prose."""
    return frozenset(text.split())


_VALIDATION_VOCABULARY = _words(
    "type const enum multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength "
    "minLength pattern maxItems minItems uniqueItems maxContains minContains maxProperties "
    "minProperties required dependentRequired"
)
_META_DATA_VOCABULARY = _words("title description default deprecated readOnly writeOnly examples")
_CONTENT_VOCABULARY = frozenset({"contentEncoding", "contentMediaType", "contentSchema"})
#: Keywords of each vocabulary a custom meta-schema can list in ``$vocabulary``.
VOCABULARIES: Mapping[str, frozenset[str]] = {
    "https://json-schema.org/draft/2020-12/vocab/core": _words(
        "$id $schema $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment $defs"
    ),
    "https://json-schema.org/draft/2020-12/vocab/applicator": _words(
        "prefixItems items contains additionalProperties properties patternProperties "
        "dependentSchemas propertyNames if then else allOf anyOf oneOf not"
    ),
    "https://json-schema.org/draft/2020-12/vocab/unevaluated": frozenset(
        {"unevaluatedItems", "unevaluatedProperties"}
    ),
    "https://json-schema.org/draft/2020-12/vocab/validation": _VALIDATION_VOCABULARY,
    "https://json-schema.org/draft/2020-12/vocab/format-annotation": frozenset({"format"}),
    "https://json-schema.org/draft/2020-12/vocab/format-assertion": frozenset({"format"}),
    "https://json-schema.org/draft/2020-12/vocab/content": _CONTENT_VOCABULARY,
    "https://json-schema.org/draft/2020-12/vocab/meta-data": _META_DATA_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/core": _words(
        "$id $schema $anchor $ref $recursiveRef $recursiveAnchor $vocabulary $comment $defs"
    ),
    "https://json-schema.org/draft/2019-09/vocab/applicator": _words(
        "additionalItems unevaluatedItems items contains additionalProperties "
        "unevaluatedProperties properties patternProperties dependentSchemas propertyNames if "
        "then else allOf anyOf oneOf not"
    ),
    "https://json-schema.org/draft/2019-09/vocab/validation": _VALIDATION_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/format": frozenset({"format"}),
    "https://json-schema.org/draft/2019-09/vocab/content": _CONTENT_VOCABULARY,
    "https://json-schema.org/draft/2019-09/vocab/meta-data": _META_DATA_VOCABULARY,
}


@dataclass(frozen=True, slots=True)
class Dialect:
    """Which JSON Schema a document is written in.

    ``version`` is 4, 6, 7, 2019 (2019-09) or 2020 (2020-12); ``vocabularies`` the vocabulary
    URIs a custom meta-schema's ``$vocabulary`` lists (``None``: every vocabulary of the version).
    """

    version: int
    vocabularies: frozenset[str] | None = None


def known_dialect(uri: str) -> int | None:
    """The version a standard meta-schema URI names, ``None`` for any other URI.

    ``http``/``https`` and a trailing ``#`` do not matter:
    ``https://json-schema.org/draft-07/schema#`` is draft 7, as its author meant.
    """
    for scheme in ("https://", "http://"):
        if uri.startswith(scheme):
            return _DIALECTS.get(uri[len(scheme) :].removesuffix("#"))
    return None


def dialect_of(doc: SchemaDocument) -> Dialect:
    """The dialect of ``doc``'s schema; ``InvalidSchemaError`` for a meta-schema nobody knows.

    A custom meta-schema must be one of the document's ``references`` (nothing is fetched) and
    be written in a standard dialect; its ``$vocabulary`` picks the keywords that apply.
    """
    document = doc.document
    if not isinstance(document, dict) or "$schema" not in document:
        return Dialect(DEFAULT_DIALECT)
    uri = document["$schema"]
    if not isinstance(uri, str):
        raise invalid_schema(doc, f"$schema must be a URI string, not {uri!r}")
    version = known_dialect(uri)
    if version is not None:
        return Dialect(version)
    meta = doc.references.get(uri, doc.references.get(uri.removesuffix("#")))
    meta_uri = meta.get("$schema") if isinstance(meta, dict) else None
    version = known_dialect(meta_uri) if isinstance(meta_uri, str) else None
    if version is None:
        raise invalid_schema(
            doc,
            f"unknown meta-schema {uri!r} ($schema): not a JSON Schema draft and not among the "
            "registry references; nothing is fetched",
        )
    listed = meta.get("$vocabulary") if isinstance(meta, dict) and version >= 2019 else None
    if not isinstance(listed, dict):
        return Dialect(version)
    unknown = sorted(v for v, required in listed.items() if required and v not in VOCABULARIES)
    if unknown:
        raise invalid_schema(doc, f"meta-schema {uri!r} requires unknown vocabularies {unknown}")
    return Dialect(version, frozenset(v for v in listed if v in VOCABULARIES))

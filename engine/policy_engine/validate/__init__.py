"""Compiled validators and violations as data (docs/validation.md).

Two backends, one answer (``tests/conformance`` runs the official JSON Schema Test Suite through
both; ``docs/validation.md`` lists every remaining difference and why):

- ``rust`` (default): jsonschema-rs, about 100x faster than a fresh validator per payload;
- ``python``: the ``jsonschema`` package, with this package's ECMA-262 regular expressions and
  format checks (Python's ``re`` and jsonschema's checkers disagree with the specification in
  places: ``\\d`` matching Bengali digits, ``$`` accepting a trailing newline, lax hostnames).
  ``jsonschema`` and ``referencing`` are imported only when this backend is used: importing them
  costs about a second.

Both check formats (``date-time``, ``email``, ``uuid``, ...), also under 2019-09 and 2020-12
where the specification makes them annotations: a policy that says strict means it. Neither
fetches anything: a ``$ref`` resolves only within the schema and the ``references`` its registry
supplied, and a schema whose ``$ref`` points elsewhere fails to compile with
``InvalidSchemaError``. So does a schema whose ``$ref``s loop without reaching into the payload
(``{"$ref": "#"}``): validating with it could never end.

A schema without ``$schema`` is read as draft 2020-12; a referenced document without ``$schema``
is read in the dialect of the schema that references it. ``http``/``https`` and a trailing ``#``
make no difference in a meta-schema URI. Both backends enforce ``dependencies`` (draft 7's
spelling of ``dependentRequired``/``dependentSchemas``) under 2019-09 and 2020-12 as well.

Violations name the failing keyword and the JSON Pointer of the failing value the same way on
both backends; a ``false`` subschema is reported under the keyword that holds it
(``{"properties": {"x": false}}`` gives keyword ``properties`` at ``/x``), a ``false`` root schema
under keyword ``false``.

What is where (each module imports only those above it; none imports ``jsonschema`` on import):

- ``ecma262``: the ECMA-262 regex translator (``translate_ecma_regex``, ``is_ecma_regex``);
- ``formats``: the python backend's format checks, one per RFC (``FORMAT_CHECKS``);
- ``compiled``: ``CompiledSchema``, violations (``keyword_of``, ``json_pointer``, message
  length), the depth guard (``MAX_DEPTH``, ``exceeds_depth``) and ``InvalidSchemaError``'s shape;
- ``dialects``: ``Dialect``, ``dialect_of``, ``known_dialect`` and the vocabularies;
- ``refs``: the ``$ref`` graph (``can_recurse``, ``endless_ref_cycle``);
- ``rust``, ``python``: one backend each, turning a schema into a ``CompiledSchema``;
- ``backends``: ``compile_schema``, which reads the dialect, refuses an endless ``$ref`` loop and
  hands the schema to a backend.

This module exports what the rest of policy-engine and its tests use; names without an
underscore that it does not export are shared between the modules of this package only.
"""

from __future__ import annotations

from policy_engine.validate.backends import compile_schema
from policy_engine.validate.compiled import (
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    CompiledSchema,
    exceeds_depth,
    json_pointer,
    keyword_of,
)
from policy_engine.validate.dialects import known_dialect
from policy_engine.validate.ecma262 import EcmaRegexError, is_ecma_regex, translate_ecma_regex
from policy_engine.validate.refs import can_recurse, endless_ref_cycle

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_CHARS",
    "CompiledSchema",
    "EcmaRegexError",
    "can_recurse",
    "compile_schema",
    "endless_ref_cycle",
    "exceeds_depth",
    "is_ecma_regex",
    "json_pointer",
    "keyword_of",
    "known_dialect",
    "translate_ecma_regex",
]

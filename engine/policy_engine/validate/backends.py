"""``compile_schema``: the one way to a ``CompiledSchema``, with either backend.

What both backends share happens here, before a backend sees the schema: its dialect is read
(``dialect_of``) and a ``$ref`` loop that could never end is refused (``endless_ref_cycle``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policy_engine.settings import BACKENDS, Backend
from policy_engine.sources import SchemaDocument
from policy_engine.validate.compiled import CompiledSchema, invalid_schema
from policy_engine.validate.dialects import Dialect, dialect_of
from policy_engine.validate.python import compile_python
from policy_engine.validate.refs import endless_ref_cycle
from policy_engine.validate.rust import compile_rust

_COMPILERS: Mapping[Backend, Callable[[SchemaDocument, Dialect], CompiledSchema]] = {
    "rust": compile_rust,
    "python": compile_python,
}


def compile_schema(doc: SchemaDocument, backend: Backend = "rust") -> CompiledSchema:
    """Compile ``doc`` with ``backend``; ``InvalidSchemaError`` if it is not a usable schema."""
    try:
        compiler = _COMPILERS[backend]
    except KeyError:
        raise ValueError(f"unknown validator backend {backend!r}; use one of {BACKENDS}") from None
    dialect = dialect_of(doc)
    cycle = endless_ref_cycle(doc.document, dialect.version)
    if cycle is not None:
        raise invalid_schema(
            doc,
            f"$ref cycle {' -> '.join(cycle)} never reaches into the payload: validating with "
            "it could not end",
        )
    return compiler(doc, dialect)

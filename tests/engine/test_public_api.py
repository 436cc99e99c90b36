"""engine/__init__.py: one way in, with a sorted __all__ whose every name resolves."""

from __future__ import annotations

import importlib

import pytest

import engine

REQUIRED = {"PolicyEngine", "Decision", "Mode", "SchemaValidationError", "Action", "Violation"}


def test_all_is_sorted():
    """__all__ is kept sorted, so additions are reviewed in one obvious place."""
    assert list(engine.__all__) == sorted(engine.__all__)


def test_all_has_no_duplicates():
    """Every public name is listed once."""
    assert len(set(engine.__all__)) == len(engine.__all__)


@pytest.mark.parametrize("name", engine.__all__)
def test_every_name_is_importable(name):
    """Every name in __all__ can be imported from the package."""
    module = importlib.import_module("engine")
    assert getattr(module, name) is not None


def test_spec_names_are_exported():
    """SPEC §5's names are part of the public API."""
    assert set(engine.__all__) >= REQUIRED


def test_star_import_gives_exactly_all():
    """from engine import * brings in the names of __all__."""
    namespace: dict[str, object] = {}
    exec("from engine import *", namespace)
    assert set(engine.__all__) <= set(namespace)


def test_errors_share_one_root():
    """Every exported exception derives from EngineError."""
    errors = [getattr(engine, n) for n in engine.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, engine.EngineError) for e in errors)

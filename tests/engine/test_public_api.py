"""engine/policy_engine/__init__.py: one way in, with a sorted __all__ whose every name resolves."""

from __future__ import annotations

import importlib

import pytest

import policy_engine

REQUIRED = {"PolicyEngine", "Decision", "Mode", "SchemaValidationError", "Action", "Violation"}


def test_all_is_sorted():
    """__all__ is kept sorted, so additions are reviewed in one obvious place."""
    assert list(policy_engine.__all__) == sorted(policy_engine.__all__)


def test_all_has_no_duplicates():
    """Every public name is listed once."""
    assert len(set(policy_engine.__all__)) == len(policy_engine.__all__)


@pytest.mark.parametrize("name", policy_engine.__all__)
def test_every_name_is_importable(name):
    """Every name in __all__ can be imported from the package."""
    module = importlib.import_module("policy_engine")
    assert getattr(module, name) is not None


def test_spec_names_are_exported():
    """SPEC §5's names are part of the public API."""
    assert set(policy_engine.__all__) >= REQUIRED


def test_star_import_gives_exactly_all():
    """from policy_engine import * brings in the names of __all__."""
    namespace: dict[str, object] = {}
    exec("from policy_engine import *", namespace)
    assert set(policy_engine.__all__) <= set(namespace)


def test_errors_share_one_root():
    """Every exported exception derives from EngineError."""
    errors = [getattr(policy_engine, n) for n in policy_engine.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, policy_engine.EngineError) for e in errors)

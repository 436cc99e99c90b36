"""policy-engine: per-schema, per-track JSON Schema enforcement with canaries and ramps.

Everything a user needs is exported here; the CLI is ``policy-engine``
(``python -m policy_engine``).

Names are imported on first use (PEP 562): ``import policy_engine`` itself loads nothing heavy,
so ``policy-engine --version`` starts fast and importing the pure core
(``policy_engine.core``) does not pull in YAML, HTTP, metrics or brokers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_engine.compat import RegistryConfig, SchemaManager
    from policy_engine.core.bucket import bucket_for
    from policy_engine.core.policy_set import PolicySet
    from policy_engine.core.resolve import RuleRef
    from policy_engine.decision import Decision, Explanation, Violation
    from policy_engine.engine import PolicyEngine, raise_for_rejection
    from policy_engine.errors import (
        ConfigError,
        EngineError,
        InvalidSchemaError,
        LoopError,
        PolicyError,
        PolicyLoadError,
        Problem,
        RegistryError,
        RegistryServerError,
        RegistryUnavailableError,
        SchemaIdNotFoundError,
        SchemaNotFoundError,
        SchemaValidationError,
        SinkError,
        SourceError,
        SubjectNotFoundError,
        VersionNotFoundError,
    )
    from policy_engine.hooks import DecisionObserver, ModeAdjuster, ReloadEvent, ReloadObserver
    from policy_engine.loop.middleware import RetryPolicy, enforce_handler
    from policy_engine.modes import Action, Mode
    from policy_engine.policy.load import load_policy_set
    from policy_engine.reload import EngineStatus
    from policy_engine.report import DriftReport
    from policy_engine.settings import Settings
    from policy_engine.sources import SchemaDocument, SchemaSource
    from policy_engine.sources.embedded import DirectorySchemaSource
    from policy_engine.sources.http import HttpSchemaSource

__version__ = "0.1.0"

_ERRORS = "policy_engine.errors"
#: Where each public name lives.
_WHERE: dict[str, str] = {
    "Action": "policy_engine.modes",
    "ConfigError": _ERRORS,
    "Decision": "policy_engine.decision",
    "DecisionObserver": "policy_engine.hooks",
    "DirectorySchemaSource": "policy_engine.sources.embedded",
    "DriftReport": "policy_engine.report",
    "EngineError": _ERRORS,
    "EngineStatus": "policy_engine.reload",
    "Explanation": "policy_engine.decision",
    "HttpSchemaSource": "policy_engine.sources.http",
    "InvalidSchemaError": _ERRORS,
    "LoopError": _ERRORS,
    "Mode": "policy_engine.modes",
    "ModeAdjuster": "policy_engine.hooks",
    "PolicyEngine": "policy_engine.engine",
    "PolicyError": _ERRORS,
    "PolicyLoadError": _ERRORS,
    "PolicySet": "policy_engine.core.policy_set",
    "Problem": _ERRORS,
    "RegistryConfig": "policy_engine.compat",
    "RegistryError": _ERRORS,
    "RegistryServerError": _ERRORS,
    "RegistryUnavailableError": _ERRORS,
    "ReloadEvent": "policy_engine.hooks",
    "ReloadObserver": "policy_engine.hooks",
    "RetryPolicy": "policy_engine.loop.middleware",
    "RuleRef": "policy_engine.core.resolve",
    "SchemaDocument": "policy_engine.sources",
    "SchemaIdNotFoundError": _ERRORS,
    "SchemaManager": "policy_engine.compat",
    "SchemaNotFoundError": _ERRORS,
    "SchemaSource": "policy_engine.sources",
    "SchemaValidationError": _ERRORS,
    "Settings": "policy_engine.settings",
    "SinkError": _ERRORS,
    "SourceError": _ERRORS,
    "SubjectNotFoundError": _ERRORS,
    "VersionNotFoundError": _ERRORS,
    "Violation": "policy_engine.decision",
    "bucket_for": "policy_engine.core.bucket",
    "enforce_handler": "policy_engine.loop.middleware",
    "load_policy_set": "policy_engine.policy.load",
    "raise_for_rejection": "policy_engine.engine",
}

__all__ = [
    "Action",
    "ConfigError",
    "Decision",
    "DecisionObserver",
    "DirectorySchemaSource",
    "DriftReport",
    "EngineError",
    "EngineStatus",
    "Explanation",
    "HttpSchemaSource",
    "InvalidSchemaError",
    "LoopError",
    "Mode",
    "ModeAdjuster",
    "PolicyEngine",
    "PolicyError",
    "PolicyLoadError",
    "PolicySet",
    "Problem",
    "RegistryConfig",
    "RegistryError",
    "RegistryServerError",
    "RegistryUnavailableError",
    "ReloadEvent",
    "ReloadObserver",
    "RetryPolicy",
    "RuleRef",
    "SchemaDocument",
    "SchemaIdNotFoundError",
    "SchemaManager",
    "SchemaNotFoundError",
    "SchemaSource",
    "SchemaValidationError",
    "Settings",
    "SinkError",
    "SourceError",
    "SubjectNotFoundError",
    "VersionNotFoundError",
    "Violation",
    "bucket_for",
    "enforce_handler",
    "load_policy_set",
    "raise_for_rejection",
]


def __getattr__(name: str) -> Any:
    """Import the module a public name lives in on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, for ``dir()`` and completion."""
    return sorted([*__all__, "__version__"])

"""policy-engine: per-schema, per-track JSON Schema enforcement with canaries and ramps.

Everything a user needs is exported here; the CLI is ``policy-engine``
(``python -m policy_engine``).
"""

from policy_engine.compat import RegistryConfig, SchemaManager
from policy_engine.decision import Action, Decision, Explanation, Mode, RuleRef, Violation
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
from policy_engine.hooks import DecisionObserver, ModeAdjuster
from policy_engine.loop.middleware import RetryPolicy, enforce_handler
from policy_engine.policy.bucket import bucket_for
from policy_engine.policy.load import PolicySet, load_policy_set
from policy_engine.settings import Settings
from policy_engine.sources import SchemaDocument, SchemaSource
from policy_engine.sources.embedded import DirectorySchemaSource
from policy_engine.sources.http import HttpSchemaSource

__all__ = [
    "Action",
    "ConfigError",
    "Decision",
    "DecisionObserver",
    "DirectorySchemaSource",
    "EngineError",
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

__version__ = "0.1.0"

"""The exception tree of policy-engine.

::

    EngineError                       root: catch this to catch everything the engine raises
    ├── ConfigError                   a bad setting (env variable or constructor argument)
    ├── PolicyError                   policy files
    │   └── PolicyLoadError           a policy set failed to load; carries every Problem found
    ├── RegistryError                 where schemas come from; .schema, .track, .error_code
    │   ├── SchemaNotFoundError       the registry answered: no such schema or track
    │   │   ├── SubjectNotFoundError  HTTP registry error 40401: no such subject
    │   │   ├── VersionNotFoundError  HTTP registry error 40402: the subject has no such version
    │   │   └── SchemaIdNotFoundError HTTP registry error 40403: no schema with that id
    │   ├── InvalidSchemaError        the registry answered with an unusable schema
    │   └── RegistryUnavailableError  no answer (timeout, connection refused, 5xx, garbage)
    │       └── RegistryServerError   the registry answered with a server error (HTTP 5xx)
    ├── LoopError                     the consume loop (``loop``): brokers, files, the DLQ
    │   ├── SourceError               reading or acknowledging messages failed
    │   └── SinkError                 writing to an output or a dead-letter queue failed
    └── SchemaValidationError         a payload rejected in strict mode (raised by ``enforce`` only)

A bad payload is never an exception by itself: ``evaluate`` returns it as a ``Decision`` with
violations. Only ``enforce`` turns a rejection into ``SchemaValidationError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from policy_engine.decision import Decision

Severity = Literal["error", "warning"]


class EngineError(Exception):
    """Root of every exception policy-engine raises."""


class ConfigError(EngineError, ValueError):
    """A setting has a value the engine cannot use; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a policy file, located as precisely as the YAML allows.

    ``line`` and ``column`` are 1-based, as editors and GitHub annotations count them; 0 means
    the problem concerns the file (or the set) as a whole.
    """

    file: str
    line: int
    column: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line == 0 else f"{self.file}:{self.line}:{self.column}"
        prefix = "" if self.severity == "error" else "warning: "
        return f"{where}: {prefix}{self.message}"

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by ``check --json``."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "severity": self.severity,
        }


class PolicyError(EngineError):
    """Something is wrong with the policy files."""


class PolicyLoadError(PolicyError):
    """A policy set could not be loaded; nothing of it was applied.

    ``problems`` lists every error found (and the warnings seen on the way), so one run of
    ``policy-engine check`` reports them all.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        shown = "\n".join(f"  {p}" for p in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"policy set failed to load ({len(errors)} error(s)):\n{shown}{more}")


class RegistryError(EngineError):
    """Getting a schema from the registry failed.

    ``error_code`` is the registry's own code when it sent one (a Confluent-compatible registry
    answers ``{"error_code": 40401, "message": ...}``), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        schema: str | None = None,
        track: str | None = None,
        error_code: int | None = None,
    ):
        self.schema = schema
        self.track = track
        self.error_code = error_code
        super().__init__(message)


class SchemaNotFoundError(RegistryError):
    """The registry answered and has no such schema or track (a definite "no")."""


class SubjectNotFoundError(SchemaNotFoundError):
    """An HTTP registry has no such subject (error code 40401)."""


class VersionNotFoundError(SchemaNotFoundError):
    """An HTTP registry has the subject but not that version (error code 40402)."""


class SchemaIdNotFoundError(SchemaNotFoundError):
    """An HTTP registry has no schema with that id (error code 40403)."""


class InvalidSchemaError(RegistryError):
    """The registry answered with a document that is not a usable JSON Schema."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be asked (outage, timeout, garbage answer): a transient fault."""


class RegistryServerError(RegistryUnavailableError):
    """An HTTP registry answered with a server error (HTTP 5xx, error codes 5xxxx)."""


class SchemaValidationError(EngineError):
    """A payload was rejected in strict mode.

    Keeps the attributes of the old pipeline's exception (``schema_name``, ``errors``,
    ``track``, ``enforcement_mode``) and adds the full ``decision``.
    """

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.schema_name = decision.schema
        self.track = decision.track
        self.enforcement_mode = decision.mode.value
        # The payload itself has the empty JSON Pointer; "(root)" reads better than ": msg".
        self.errors = [f"{v.path or '(root)'}: {v.message}" for v in decision.violations]
        if not self.errors:
            self.errors = [decision.reason]
        summary = "; ".join(self.errors[:3])
        more = f" (+{len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__(
            f"{decision.schema} ({decision.track}) rejected in {self.enforcement_mode} mode: "
            f"{summary}{more}"
        )


class LoopError(EngineError):
    """The consume loop could not talk to a source or a sink (``policy_engine.loop``).

    ``endpoint`` describes where (a file path or a ``redis://`` URL without credentials).
    """

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class SourceError(LoopError):
    """Reading or acknowledging messages failed; unacknowledged messages will be redelivered."""


class SinkError(LoopError):
    """Writing to an output or a dead-letter queue failed; the messages stay unacknowledged."""

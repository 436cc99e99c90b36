"""Subject names of an HTTP schema registry: one subject per (schema, track).

A Confluent-compatible registry stores schemas under *subjects*. policy-engine maps each
(schema, track) to one subject with a template, ``{schema}-{track}`` by default
(``REGISTRY_SUBJECT_TEMPLATE``), and reads the registry's subject list back through the same
template (``known_schemas``).

>>> template = SubjectTemplate("{schema}-{track}")
>>> template("telemetry.FeedbackEvent", "v2")
'telemetry.FeedbackEvent-v2'
>>> template.parse("telemetry.FeedbackEvent-v2")
('telemetry.FeedbackEvent', 'v2')
"""

from __future__ import annotations

import re
import string

from policy_engine.errors import ConfigError
from policy_engine.settings import DEFAULT_SUBJECT_TEMPLATE, subject_template_problem

# The character classes of SCHEMA_NAME_RE and TRACK_RE (policy/model.py), without anchors.
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"


class SubjectTemplate:
    """Maps (schema, track) to a subject name and a subject name back to (schema, track)."""

    __slots__ = ("_regex", "template")

    def __init__(self, template: str = DEFAULT_SUBJECT_TEMPLATE) -> None:
        problem = subject_template_problem(template)
        if problem is not None:
            raise ConfigError(f"REGISTRY_SUBJECT_TEMPLATE={template!r} {problem}")
        self.template = template
        pattern = []
        for literal, field, _, _ in string.Formatter().parse(template):
            pattern.append(re.escape(literal))
            if field is not None:
                # The schema name is greedy, so "a-b-v2" reads as schema "a-b", track "v2".
                pattern.append(f"(?P<{field}>{_NAME})")
        self._regex = re.compile("".join(pattern) + r"\Z")

    def __call__(self, schema: str, track: str) -> str:
        """The subject of ``schema``/``track``."""
        return self.template.format(schema=schema, track=track)

    def parse(self, subject: str) -> tuple[str, str] | None:
        """The (schema, track) a subject names, or ``None`` if the template does not fit it."""
        match = self._regex.match(subject)
        if match is None:
            return None
        return match["schema"], match["track"]

    def __repr__(self) -> str:
        return f"SubjectTemplate({self.template!r})"


__all__ = ["SubjectTemplate"]

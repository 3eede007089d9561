"""The :class:`Finding` record: one diagnosed problem with its evidence and fix.

Kept apart from the rules that produce findings so that reports, renderers and
CI formatters can use the type without importing the diagnosis machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from deadrelu.errors import ReportError


class Severity(str, Enum):
    """How bad a finding is; orders as error > warning > info."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]

    def __str__(self) -> str:
        return self.value


#: The closed vocabulary of causes.
CAUSES = (
    "learning_rate", "initialization", "weight_decay", "input_scale", "normalization",
    "output_activation", "saturation", "architecture", "insufficient_data", "unknown",
)


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem.

    Attributes:
        code: stable rule code such as ``DR001``; a code never changes meaning.
        severity: ``error``, ``warning`` or ``info``.
        layer: the site name, or ``None`` for a model-wide finding.
        message: what was found, with the numbers behind it.
        cause: one of :data:`CAUSES`.
        fix: concrete changes to make, specific to the layer.
        evidence: the numbers the rule used (JSON-ready).
    """

    code: str
    severity: Severity
    layer: str | None
    message: str
    cause: str
    fix: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}")
        if not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity(self.severity))

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "severity": self.severity.value, "layer": self.layer,
            "message": self.message, "cause": self.cause, "fix": self.fix,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        try:
            return cls(d["code"], Severity(d["severity"]), d.get("layer"), d["message"],
                       d["cause"], d["fix"], dict(d.get("evidence") or {}))
        except (KeyError, ValueError) as exc:
            raise ReportError(f"malformed finding in report ({exc})",
                              "use a report written by deadrelu") from exc

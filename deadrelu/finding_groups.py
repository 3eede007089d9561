"""How findings read to a person: one entry per rule and cause, and the terms explained once.

A report keeps one finding per layer (JSON, SARIF and the DataFrame stay one
record per layer, for machines). Read top to bottom, the same rule with the same
cause on three layers is one problem, so the terminal report shows it once with a
per-layer list, and the fix parts every layer shares once (:func:`group_findings`).

Findings quote numbers a newcomer cannot read ("median row norm 2.4×", "biases at
median −0.16"); :func:`glossary` returns, for the terms that appear in a report's
findings, one sentence each saying what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deadrelu.findings import Finding


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one rule, severity and cause, in report order.

    Attributes:
        findings: one per layer (a single one for most rules).
        common_fix: the fix parts (``"; "``-separated) that every finding shares.
    """

    findings: tuple[Finding, ...]
    common_fix: str

    @property
    def first(self) -> Finding:
        return self.findings[0]

    def own_fix(self, finding: Finding) -> str:
        """The parts of ``finding``'s fix that are not shared by the whole group."""
        common = set(self.common_fix.split("; ")) if self.common_fix else set()
        return "; ".join(p for p in finding.fix.split("; ") if p and p not in common)


def group_findings(findings: Sequence[Finding]) -> list[FindingGroup]:
    """Findings grouped by (code, severity, cause), in the order of each group's first."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.code, finding.severity.value, finding.cause), []).append(finding)
    out = []
    for members in groups.values():
        parts = [f.fix.split("; ") for f in members]
        shared = [p for p in parts[0] if p and all(p in other for other in parts[1:])]
        out.append(FindingGroup(tuple(members), "; ".join(shared)))
    return out


#: (words that mark the term in a finding, the term, what it means).
TERMS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("never fired",), "never fired",
     "the unit's output was zero for every sample scanned; \"fires on < x%\" is the most it "
     "can still fire on without having been seen, at 95% confidence"),
    (("row norm",), "row norm",
     "the length of a unit's incoming weight vector (its row of the layer's weight matrix); "
     "PyTorch's default init gives about 0.58"),
    (("default init",), "× PyTorch's default init",
     "how the layer's weights or biases compare in size with a freshly initialized layer of "
     "the same shape: 1× is untrained scale, 3× grew three-fold in training"),
    (("own init",), "× the model's own init",
     "how the layer's weights compare in size with the same layer drawn by the model's own "
     "initialization code (transformers' _init_weights): 1× is untrained scale"),
    (("mean |bias|",), "mean |bias|", "the average size of the layer's biases, sign ignored"),
    (("at median", "(median"), "median",
     "the middle value over the units named: half are above it, half below; a negative "
     "bias larger than the unit's weighted input keeps it below zero for every input"),
    (("ReDo",), "ReDo",
     "recycling dormant units (Sokar et al., 2023): re-draw a dead unit's incoming weights, "
     "zero its outgoing weights and reset its optimizer state, so it can learn again"),
    (("dead from initialization",), "dead from initialization",
     "freshly initialized copies of the model (new random weights) leave about as many units "
     "dead on the same data, so training did not kill them"),
)


def glossary(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """(term, meaning) for the terms that appear in ``findings``' messages and fixes."""
    text = " ".join(f"{f.message} {f.fix}" for f in findings)
    return [(term, meaning) for marks, term, meaning in TERMS
            if any(mark in text for mark in marks)]

"""SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning, Azure DevOps, SonarQube).

One run; ``tool.driver.rules`` holds one rule per gate that produced a result
and per finding code; ``results`` holds every failed gate (level ``error``) and
every finding (``error``/``warning``/``note`` by severity, ``error`` when a
failed ``fail-on`` gate matched it). Passed gates are not results: SARIF lists
problems. Each result points at the model file (``artifactLocation``; GitHub
also wants ``region.startLine``, so line 1) and names the layer as a
``logicalLocation``. ``partialFingerprints`` (rule + layer) let dashboards match
an alert across runs even though the model file is binary.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun
    from deadrelu.findings import Finding
    from deadrelu.gates import GateResult

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
VERSION = "2.1.0"

_GATE_RULES = {
    "max-dead": "Dead fraction of the whole model above --max-dead",
    "max-dead-layer": "Dead fraction of a layer above its --max-dead-layer limit",
    "fail-on": "A finding matched --fail-on",
    "max-increase": "Dead fraction of the model rose above the baseline by more than --max-increase",
    "max-increase-layer": "Dead fraction of a layer rose above the baseline by more than --max-increase",
}
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _locations(uri: str | None, layer: str | None) -> list[dict[str, Any]]:
    loc: dict[str, Any] = {}
    if uri:
        loc["physicalLocation"] = {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}}
    if layer:
        loc["logicalLocations"] = [{"name": layer, "fullyQualifiedName": layer, "kind": "member"}]
    return [loc] if loc else []


def _fingerprint(*parts: str | None) -> str:
    return hashlib.sha256("|".join(p or "" for p in parts).encode()).hexdigest()[:32]


def render_sarif(run: CheckRun) -> str:
    """The outcome and findings as a SARIF 2.1.0 log (JSON text)."""
    from deadrelu import __version__

    uri = PurePath(run.model_path).as_posix() if run.model_path else None
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def rule_index(rule_id: str, describe: dict[str, Any]) -> int:
        if rule_id not in index:
            index[rule_id] = len(rules)
            rules.append({"id": rule_id, **describe})
        return index[rule_id]

    results: list[dict[str, Any]] = []
    gated: list[Finding] = []
    for r in run.outcome.failures:
        if r.gate == "fail-on":
            gated += r.findings
            continue
        results.append(_gate_result(r, uri, rule_index(r.gate, _gate_rule(r.gate))))
    for f in run.report.findings:
        level = "error" if f in gated else _LEVEL[f.severity.value]
        i = rule_index(f.code, _finding_rule(f))
        results.append({
            "ruleId": f.code, "ruleIndex": i, "level": level,
            "message": {"text": f"{f.message} Fix: {f.fix}"},
            "locations": _locations(uri, f.layer),
            "partialFingerprints": {"deadreluResult/v1": _fingerprint(f.code, f.layer)},
            "properties": {"severity": f.severity.value, "cause": f.cause,
                           "evidence": dict(f.evidence), "layer": f.layer},
        })
    log = {
        "$schema": SCHEMA,
        "version": VERSION,
        "runs": [{
            "tool": {"driver": {"name": "deadrelu", "version": __version__, "rules": rules}},
            "invocations": [{"executionSuccessful": True,
                             "properties": {"passed": run.outcome.passed,
                                            "notes": list(run.outcome.notes)}}],
            "results": results,
            "properties": {"summary": run.report.summary(), "baseline": run.baseline_path},
        }],
    }
    return json.dumps(log, indent=2, default=str)


def _gate_rule(gate: str) -> dict[str, Any]:
    text = _GATE_RULES.get(gate, gate)
    return {"name": gate, "shortDescription": {"text": text},
            "defaultConfiguration": {"level": "error"}, "properties": {"kind": "gate"}}


def _finding_rule(f: Finding) -> dict[str, Any]:
    """The rule's documentation from the registry (``deadrelu rules CODE`` prints the same)."""
    from deadrelu.diagnose.registry import RULES

    described: dict[str, Any] = {
        "name": f.code, "shortDescription": {"text": f"deadrelu rule {f.code} ({f.cause})"},
    }
    if f.code in RULES:
        rule = RULES.get(f.code)
        described = {
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.why},
            "help": {"text": f"{rule.fix}\n\n`deadrelu rules {f.code}` prints the full "
                             "documentation.",
                     "markdown": rule.to_markdown()},
        }
    return {**described, "defaultConfiguration": {"level": _LEVEL[f.severity.value]},
            "properties": {"kind": "finding"}}


def _gate_result(r: GateResult, uri: str | None, rule: int) -> dict[str, Any]:
    text = " ".join([r.message, *r.details[:3]])
    return {
        "ruleId": r.gate, "ruleIndex": rule, "level": "error",
        "message": {"text": text},
        "locations": _locations(uri, r.layer),
        "partialFingerprints": {"deadreluResult/v1": _fingerprint(r.gate, r.layer)},
        "properties": {"actual": r.actual, "limit": r.limit, "measure": r.measure.value,
                       "excess": r.excess, "layer": r.layer},
    }

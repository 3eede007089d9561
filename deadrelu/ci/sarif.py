"""SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning, Azure DevOps, SonarQube).

One run; ``tool.driver.rules`` holds one rule per gate that produced a result
and per finding code; ``results`` holds every failed gate (level ``error``) and
every finding at the level :func:`deadrelu.ci.finding_level` gives it (``error``
only when a failed ``fail-on`` gate matched it, so a passing check has no
``error`` result, and the GitHub annotations of the same run show the same
levels). Passed gates are not results: SARIF lists problems. Each result points
at the model file (``artifactLocation``, a percent-encoded URI reference; GitHub
also wants ``region.startLine``, so line 1) and names the layer as a
``logicalLocation``. ``partialFingerprints`` (rule + layer) let dashboards match
an alert across runs even though the model file is binary.

A check that could not run is a log with no results and one error notification
(:func:`render_sarif_error`). The tests validate every log they produce against
the official OASIS SARIF 2.1.0 schema (``tests/data/sarif-schema-2.1.0.json``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath, PurePosixPath
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


def artifact_uri(path: str) -> str:
    """``path`` as a SARIF ``artifactLocation.uri``: a URI reference, percent-encoded.

    A relative path stays relative (GitHub resolves it against the repository root);
    an absolute one becomes a ``file:`` URI. Spaces, ``#``, ``%`` and non-ASCII
    characters are escaped, which the schema's ``uri-reference`` format requires.
    """
    from urllib.parse import quote

    posix = PurePath(path).as_posix()
    # RFC 3986 path characters stay; a colon only in absolute URIs (in a relative
    # reference "a:b.pt" would read as a scheme).
    safe = "/!$&'()*+,;=@"
    if PurePosixPath(posix).is_absolute() or PurePath(path).is_absolute():
        return "file://" + quote(posix if posix.startswith("/") else "/" + posix, safe=safe + ":")
    return quote(posix, safe=safe)


def _locations(uri: str | None, layer: str | None,
               source: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    """The model file (line 1), or the line of the user's code ``source`` when known."""
    loc: dict[str, Any] = {}
    if source is not None:
        loc["physicalLocation"] = {"artifactLocation": {"uri": artifact_uri(source[0])},
                                   "region": {"startLine": source[1]}}
    elif uri:
        loc["physicalLocation"] = {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}}
    if layer:
        loc["logicalLocations"] = [{"name": layer, "fullyQualifiedName": layer, "kind": "member"}]
    return [loc] if loc else []


def _fingerprint(*parts: str | None) -> str:
    return hashlib.sha256("|".join(p or "" for p in parts).encode()).hexdigest()[:32]


def render_sarif(run: CheckRun) -> str:
    """The outcome and findings as a SARIF 2.1.0 log (JSON text)."""
    from deadrelu import __version__
    from deadrelu.ci.levels import finding_level
    from deadrelu.ci.locations import source_location
    from deadrelu.report import jsonable

    uri = artifact_uri(run.model_path) if run.model_path else None
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def rule_index(rule_id: str, describe: dict[str, Any]) -> int:
        if rule_id not in index:
            index[rule_id] = len(rules)
            rules.append({"id": rule_id, **describe})
        return index[rule_id]

    results: list[dict[str, Any]] = []
    gated = run.gated
    for r in run.outcome.failures:
        if r.gate == "fail-on":
            continue  # its findings are results of their own, at level error
        results.append(_gate_result(r, uri, rule_index(r.gate, _gate_rule(r.gate))))
    for f in run.report.findings:
        level = finding_level(f, gated)
        i = rule_index(f.code, _finding_rule(f, level))
        results.append({
            "ruleId": f.code, "ruleIndex": i, "level": level,
            "message": {"text": f"{f.message} Fix: {f.fix}"},
            "locations": _locations(uri, f.layer, source_location(run.report, f.layer)),
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
    return json.dumps(jsonable(log), indent=2, allow_nan=False)


def _gate_rule(gate: str) -> dict[str, Any]:
    text = _GATE_RULES.get(gate, gate)
    return {"name": gate, "shortDescription": {"text": text},
            "defaultConfiguration": {"level": "error"}, "properties": {"kind": "gate"}}


def render_sarif_error(model_label: str, message: str) -> str:
    """A SARIF log for a check that could not run: no results, one error notification,
    ``executionSuccessful`` false (code-scanning uploads show the run as failed)."""
    from deadrelu import __version__

    log = {
        "$schema": SCHEMA,
        "version": VERSION,
        "runs": [{
            "tool": {"driver": {"name": "deadrelu", "version": __version__, "rules": []}},
            "invocations": [{
                "executionSuccessful": False,
                "exitCode": 2,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": message}}],
                "properties": {"model": model_label},
            }],
            "results": [],
        }],
    }
    return json.dumps(log, indent=2)


def _finding_rule(f: Finding, level: str) -> dict[str, Any]:
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
    return {**described, "defaultConfiguration": {"level": level},
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

"""The machinery around the rules: registry, documentation, `deadrelu rules`, selection,
evidence and data statistics, and re-diagnosis of saved, re-thresholded and merged reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import fixtures_diagnose as F
import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.analyzer import rule_out_rate, samples_needed
from deadrelu.diagnose import RULES, Selection
from deadrelu.diagnose.datameta import input_summary
from deadrelu.diagnose.registry import Registry, rule
from deadrelu.errors import ConfigError
from deadrelu.findings import CAUSES
from deadrelu.report import diagnosed

ROOT = Path(__file__).resolve().parents[1]
X, _ = F.task()


def scan(model: nn.Module, data: torch.Tensor, **kwargs: object) -> deadrelu.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kwargs)  # type: ignore[arg-type]


# -- registry and documentation ------------------------------------------------------------------

def _doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {"code": "DR900", "name": "x", "causes": ("unknown",), "severity": "info",
                              "summary": "s", "checks": "c", "why": "w", "fix": "f", "example": "e"}
    doc.update(overrides)
    return doc


def test_registry_refuses_duplicate_and_malformed_codes():
    registry = Registry()
    rule(registry=registry, **_doc())(lambda ctx: [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        rule(registry=registry, **_doc(name="y"))(lambda ctx: [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="three digits"):
        rule(registry=registry, **_doc(code="DR1"))(lambda ctx: [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown causes"):
        rule(registry=registry, **_doc(code="DR901", causes=("bad_luck",)))(lambda ctx: [])  # type: ignore[arg-type]
    assert registry.codes() == ["DR900"]


def test_every_rule_is_documented():
    names = set()
    for r in RULES:
        assert all(c in CAUSES for c in r.causes)
        for text in (r.name, r.severity, r.summary, r.checks, r.why, r.fix, r.example):
            assert text.strip(), (r.code, text)
        assert r.name not in names
        names.add(r.name)
    assert len(RULES) == 15 and RULES.get("dr004").name == "dead-layer"


def test_docs_rules_md_is_up_to_date():
    from deadrelu.diagnose.docs import render

    committed = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert committed == render(), "regenerate: python -m deadrelu.diagnose.docs > docs/rules.md"


# -- the rules command ---------------------------------------------------------------------------

def _cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "deadrelu", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_rules_command_lists_and_explains_without_torch():
    from typer.testing import CliRunner

    from deadrelu.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["rules"])
    assert listing.exit_code == 0
    for code in RULES.codes():
        assert code in listing.output
    one = runner.invoke(app, ["rules", "DR003"])
    assert one.exit_code == 0
    for part in ("dead-pinned-by-batchnorm", "What it checks:", "Why it matters:", "Fix:", "Example:"):
        assert part in one.output
    as_json = json.loads(runner.invoke(app, ["rules", "--format", "json"]).output)
    assert [r["code"] for r in as_json] == RULES.codes()
    md = runner.invoke(app, ["rules", "DR008", "--format", "markdown"]).output
    assert md.startswith("## DR008 `relu-on-output`")
    # the whole listing in Markdown is docs/rules.md, introduction and table included
    full = runner.invoke(app, ["rules", "--format", "markdown"]).output
    assert full == (ROOT / "docs" / "rules.md").read_text(encoding="utf-8").rstrip() + "\n"
    assert "Every finding deadrelu reports comes from one of these rules." in full

    probe = ("import sys, runpy; sys.argv = ['deadrelu', 'rules', 'DR001'];\n"
             "try: runpy.run_module('deadrelu', run_name='__main__')\n"
             "except SystemExit: pass\n"
             "assert 'torch' not in sys.modules, 'deadrelu rules imported torch'")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_rules_command_unknown_code_is_one_line_exit_2():
    code, out, err = _cli("rules", "DR999")
    assert code == 2 and out == ""
    assert err.startswith("error: no rule 'DR999'") and len(err.strip().splitlines()) == 1


# -- selection -----------------------------------------------------------------------------------

def test_selection_select_ignore_prefix_and_layer_globs():
    sel = Selection.from_options(select=["DR00"], ignore=["DR004"], per_layer_ignores={"head.*": ["DR008"]})
    assert sel.enabled("DR001") and not sel.enabled("DR004") and not sel.enabled("DR010")
    assert sel.enabled("DR008", "body.act") and not sel.enabled("DR008", "head.act")
    assert sel.enabled("DR008", None)  # model-wide findings ignore layer globs
    assert Selection.from_options(select="ALL").enabled("DR013")
    assert Selection.coerce(sel.to_dict()) == sel
    for bad in ({"select": ["DR999"]}, {"ignore": ["XX"]}, {"per_layer_ignores": {"a": ["DR5"]}},
                {"selct": ["DR001"]}):
        with pytest.raises(ConfigError):
            Selection.coerce(bad)


def test_scan_selection_is_kept_through_rethresholding_merge_and_json():
    model = F.planted_dead((10,))
    sel = Selection.from_options(ignore=["DR013"], per_layer_ignores={"1": ["DR010"]})
    report = scan(model, X, selection=sel)
    assert report.meta["selection"] == sel.to_dict()
    assert not [f for f in report.findings if f.code == "DR013"]
    full = scan(model, X)
    assert [f for f in full.findings if f.code == "DR013"]

    again = report.with_thresholds(report.thresholds.replace(always_on=0.9))
    assert not [f for f in again.findings if f.code == "DR013"]
    a, b = scan(model, X[:256], selection=sel), scan(model, X[256:], selection=sel)
    merged = a.merge(b)
    assert not [f for f in merged.findings if f.code == "DR013"]
    loaded = deadrelu.Report.from_dict(json.loads(report.to_json()))
    assert diagnosed(loaded).findings == report.findings
    # an explicit selection overrides the stored one
    assert [f for f in diagnosed(report, Selection()).findings if f.code == "DR013"]


# -- purity, evidence and data statistics --------------------------------------------------------

def test_diagnosis_is_pure_and_survives_a_json_round_trip():
    for model, data in ((F.bn_pinned(), F.images()), (F.relu_on_output(), X), (F.deep_narrow(), X)):
        report = scan(model, data)
        loaded = deadrelu.Report.from_dict(json.loads(report.to_json()))
        assert diagnosed(loaded).findings == report.findings


def test_evidence_is_read_only_and_matches_the_weights():
    model = F.bn_pinned()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = scan(model, F.images())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    layers = report.evidence["layers"]
    norms = model.conv1.weight.detach().reshape(16, -1).norm(dim=1)
    assert layers["conv1"]["weight_norm"] == pytest.approx(norms.tolist(), rel=1e-5)
    assert layers["conv1"]["bias"] is None and layers["conv1"]["fan_in"] == 27
    assert layers["bn1"]["beta"][1] == -5.0 and layers["bn1"]["running_var"] == [1.0] * 16
    assert report.evidence["sites"]["relu1"] == {
        "activation_class": "nn.ReLU", "owner_class": "nn.ReLU", "layer": "conv1", "norm": "bn1",
        "direct": True, "defined_at": f"tests/fixtures_diagnose.py:{_line_of('self.relu1 = ')}"}


def _line_of(text: str) -> int:
    source = (Path(__file__).parent / "fixtures_diagnose.py").read_text().splitlines()
    return next(i for i, line in enumerate(source, 1) if line.strip().startswith(text))


def test_input_statistics_match_torch_and_merge_exactly():
    data = F.unnormalized(X)
    report = scan(F.mlp(), data, batch_size=100)
    s = input_summary(report.meta)
    assert s is not None and s.samples == 512
    # per-batch partials are float32 (accumulated in float64): ~1e-7 relative precision
    assert s.mean == pytest.approx(float(data.double().mean()), rel=1e-6)
    assert s.std == pytest.approx(float(data.double().std(unbiased=False)), rel=1e-6)
    assert s.min == pytest.approx(float(data.min())) and s.max == pytest.approx(float(data.max()))
    col = max(s.features, key=lambda f: abs(f[1]))
    assert col[1] == pytest.approx(float(data[:, col[0]].double().mean()), rel=1e-6)
    a, b = scan(F.mlp(), data[:200]), scan(F.mlp(), data[200:])
    merged = input_summary(a.merge(b).meta)
    assert merged is not None and merged.samples == 512
    assert merged.mean == pytest.approx(s.mean, rel=1e-6) and merged.std == pytest.approx(s.std, rel=1e-6)


def test_output_producer_and_constant_output_are_recorded():
    report = scan(F.relu_on_output(), X)
    assert report.meta["output"] == {"producer": "3", "direct": True}
    assert scan(F.relu_on_output(final_relu=False), X).meta["output"]["producer"] == "2"
    from deadrelu.diagnose.datameta import output_is_constant

    assert output_is_constant(scan(F.saturated_constant(), X).meta)
    assert not output_is_constant(report.meta)


def test_rule_of_three():
    assert rule_out_rate(100) == pytest.approx(1 - 0.05 ** 0.01)
    assert 2.9 / 1000 < rule_out_rate(1000) < 3.0 / 1000
    assert samples_needed(0.01) == 299 and rule_out_rate(299) <= 0.01 < rule_out_rate(298)


def _input_summary_one_by_one(raw):
    """The summary as a loop over the features computes it: the reference."""
    rows = list(zip(raw["count"], raw["sum"], raw["sumsq"], raw["min"], raw["max"], strict=True))
    good = [r for r in rows if all(math.isfinite(v) for v in r[1:])]
    n = float(sum(r[0] for r in good))
    mean = sum(r[1] for r in good) / n
    var = max(sum(r[2] for r in good) / n - mean * mean, 0.0)
    features = []
    for i, (c, total, sq, _, _) in enumerate(rows if len(rows) > 1 else ()):
        if c > 0 and math.isfinite(total) and math.isfinite(sq):
            m = total / c
            features.append((i, m, math.sqrt(max(sq / c - m * m, 0.0))))
    return (mean, math.sqrt(var), min(r[3] for r in good), max(r[4] for r in good),
            tuple(features), len(rows) - len(good))


def test_the_input_summary_equals_adding_the_features_one_by_one():
    rng = np.random.default_rng(3)
    for features in (1, 7, 784, 3000):
        count = rng.integers(0, 5000, features).astype(float)
        total = rng.normal(0, 1e3, features) * rng.choice([1e-3, 1.0, 1e6], features)
        sq = np.abs(total) * rng.uniform(1, 1e4, features)
        lo, hi = -np.abs(rng.normal(0, 9, features)), np.abs(rng.normal(0, 9, features))
        if features > 1:
            total[1], sq[-1], lo[0] = np.nan, np.inf, -np.inf
            count[2] = 0
        raw = {"count": count.tolist(), "sum": total.tolist(), "sumsq": sq.tolist(),
               "min": lo.tolist(), "max": hi.tolist(), "samples": 9, "per_feature": True}
        s = input_summary({"input_stats": raw})
        assert (s.mean, s.std, s.min, s.max, s.features, s.nonfinite) == \
            _input_summary_one_by_one(raw)

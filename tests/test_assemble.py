"""One report assembly: scan() and Monitor.report() build reports the same way, and a
report's findings are derived in one place (report.diagnosed)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

import deadrelu
from deadrelu.assemble import assemble_report
from deadrelu.identity import model_signature, read_weights
from deadrelu.report import diagnosed

IDENTITY = ("torch_version", "model_signature", "weights_fingerprint")


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    with torch.no_grad():
        model[0].bias[:4] = -50.0  # four dead units
    return model


def test_scan_and_monitor_reports_carry_the_same_identity_and_evidence():
    model, x = _model(), torch.randn(400, 6)
    scanned = deadrelu.scan(model, x)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with deadrelu.Monitor(model, every=1, jump=None, findings=False) as monitor:
            model(x)
            watched = monitor.report()
    for key in IDENTITY:
        assert scanned.meta[key] == watched.meta[key]
    assert scanned.meta["model_signature"] == model_signature(model)
    assert scanned.meta["weights_fingerprint"] == read_weights(model).fingerprint
    assert scanned.evidence == watched.evidence
    # the run's own keys come first, then identity, then what the run measured
    keys = list(scanned.meta)
    assert keys.index("notes") + 1 == keys.index("torch_version")
    assert keys.index("weights_fingerprint") < keys.index("input_stats")


def test_findings_are_derived_from_the_report_alone():
    model, x = _model(), torch.randn(400, 6)
    report = deadrelu.scan(model, x)
    assert report.findings  # the planted dead units are found
    again = assemble_report(model, report.sites, report.thresholds,
                            {k: v for k, v in report.meta.items() if k not in IDENTITY})
    assert again.findings == report.findings
    stripped = diagnosed(type(report)(report.sites, report.thresholds, report.meta, (),
                                      report.evidence))
    assert stripped.findings == report.findings


def test_progress_true_keeps_the_recipe_and_the_fresh_init_comparison():
    model, x = _model(), torch.randn(400, 6)
    recipe = {"optimizer": "SGD", "lr": 0.5}
    init = {"method": "test", "layers": {"1": [4]}}
    report = deadrelu.scan(model, x, progress=True, recipe=recipe, init=init)
    assert report.meta["recipe"] == recipe
    assert report.meta["init"] == init

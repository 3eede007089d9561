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


def test_round_6g_equals_formatting_each_value():
    """The vectorized 6-significant-digit rounding of the weight evidence is exactly
    ``float(f"{v:.6g}")``: random magnitudes, random bit patterns, decimal ties, edges."""
    import numpy as np

    from deadrelu.evidence import round_6g

    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(20000) * 10.0 ** rng.integers(-40, 40, 20000),
        rng.integers(0, 2**63, 20000, dtype=np.int64).view(np.float64),
        rng.standard_normal(20000).astype(np.float32).astype(np.float64),
        (rng.integers(1, 10**6, 20000) * 10 + 5) / 10.0 ** rng.integers(0, 12, 20000),  # ties
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, 5e-324, 1.7976931348623157e308, 0.5,
         1234565.0, 0.1234565, 999999.5, 9999995.0, 1e5, 1e6, 1e-16, 1e27, 99999.95, 1.0],
    ])
    values = np.concatenate([values, -values])
    got = round_6g(values)
    want = np.array([float(f"{v:.6g}") for v in values.tolist()])
    same = (got.view(np.int64) == want.view(np.int64)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), values[~same][:5]


def test_verdicts_from_arrays_equal_verdicts_from_the_json_counters():
    """Report.verdicts reads the counters as arrays (UnitStats.arrays); the verdicts equal
    those of the JSON form (to_dict), non-finite sums and an unset max included."""
    import dataclasses

    import numpy as np

    from deadrelu.analyzer import Thresholds, classify

    model = _model()
    x = torch.randn(300, 6)
    x[5, 0] = float("inf")  # non-finite sums in some units
    report = deadrelu.scan(model, x)
    for s in report.sites:
        a = classify(s.stats.arrays(), s.info.can_die, s.info.bounded, Thresholds())
        b = classify(s.stats.to_dict(), s.info.can_die, s.info.bounded, Thresholds())
        for field in dataclasses.fields(a):
            u, v = getattr(a, field.name), getattr(b, field.name)
            if u.dtype == object:
                assert list(u) == list(v)
            else:
                np.testing.assert_array_equal(u, v)

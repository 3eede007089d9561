"""Diagnosis rules on models built to fail: one trigger and one near miss per rule code.

Everything runs through the real pipeline (``deadrelu.scan``). Trained fixtures
are built once per module (a few hundred SGD/Adam steps on CPU each).
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import fixtures_diagnose as F
import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu import Report, Severity

X, _ = F.task()


def scan(model: nn.Module, data: torch.Tensor, **kwargs) -> Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kwargs)


def born_dead(counts: tuple[int, ...]) -> Callable[[], tuple[nn.Module, torch.Tensor, dict]]:
    """planted_dead((10,)) with a fresh-init comparison that found ``counts`` dead units in
    the planted layer (one count per fresh copy)."""
    def build():
        model = F.planted_dead((10,))
        dead_site = next(r["layer"] for r in scan(model, X).layer_records() if r["dead"])
        init = {"method": "planted", "runs": len(counts), "layers": {dead_site: list(counts)}}
        return model, X, {"init": init}
    return build


def found(report: Report, code: str) -> list[deadrelu.Finding]:
    return [f for f in report.findings if f.code == code]


def codes(report: Report) -> set[str]:
    return {f.code for f in report.findings}


@functools.cache
def trained(name: str) -> nn.Module:
    """Trained fixtures, built once per test session."""
    torch.manual_seed(0)
    if name == "high_lr":
        return F.high_lr()
    if name == "moderate_lr":
        return F.high_lr(0.05)
    if name == "healthy":
        return F.healthy()
    if name == "weight_decay":
        return F.heavy_weight_decay()
    if name == "no_weight_decay":
        return F.heavy_weight_decay(0.0)
    if name == "unnormalized":
        model = F.mlp()
        x, y = F.task()
        return F.train(model, F.AdamW(model.parameters(), lr=1e-3), data=(F.unnormalized(x), y))
    raise KeyError(name)


# -- one trigger and one near miss per code -----------------------------------------------------

#: code → (build (model, data), expected cause, near miss (model, data))
Case = Callable[[], tuple[nn.Module, torch.Tensor]]
TRIGGERS: dict[str, tuple[Case, str, Case]] = {
    "DR001": (lambda: (trained("high_lr"), X), "learning_rate", lambda: (trained("moderate_lr"), X)),
    "DR002": (lambda: (trained("weight_decay"), X), "weight_decay",
              lambda: (trained("no_weight_decay"), X)),
    "DR003": (lambda: (F.bn_pinned(), F.images()), "normalization",
              lambda: (F.bn_pinned(beta=-0.5), F.images())),
    "DR004": (lambda: (F.deep_narrow(), X), "initialization",
              lambda: (F.deep_narrow(width=64, depth=4, he=True), X)),
    "DR005": (lambda: (F.planted_dead((0, 2, 8, 16, 20)), X), "initialization",
              lambda: (F.planted_dead((6, 6, 6, 6, 6), he=True), X)),
    "DR006": (lambda: (F.saturated_constant(), X), "saturation", lambda: (F.sigmoid_net(), X)),
    "DR007": (lambda: (F.mlp(), F.unnormalized(X)), "input_scale", lambda: (F.mlp(), X)),
    "DR008": (lambda: (F.relu_on_output(), X), "output_activation",
              lambda: (F.relu_on_output(final_relu=False), X)),
    "DR009": (lambda: (F.sigmoid_net(), X), "saturation", lambda: (F.sigmoid_net(std=None), X)),
    "DR010": (lambda: (F.always_on(), X), "architecture", lambda: (F.always_on(bias=0.5), X)),
    "DR011": (lambda: (F.planted_dead((4,)), X[:40]), "insufficient_data",
              lambda: (F.planted_dead((4,)), X)),
    "DR012": (lambda: (F.nan_weights(), X), "learning_rate", lambda: (F.mlp(depth=2), X)),
    "DR013": (lambda: (F.planted_dead((10,)), X), "unknown",
              lambda: (F.planted_dead((0,), he=True), X)),
    "DR014": (lambda: (F.deep_narrow(width=6, depth=12, seed=0), X), "initialization",
              lambda: (F.deep_narrow(width=6, depth=6, seed=5), X)),  # not deep: DR013
    # fresh copies had as many dead units: born dead; near miss: fresh copies had none
    "DR015": (born_dead((9, 12, 10)), "initialization", born_dead((0, 0, 0))),
}


def test_every_rule_has_a_trigger_and_a_near_miss():
    from deadrelu.diagnose import RULES

    assert sorted(TRIGGERS) == RULES.codes()


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_rule_triggers(code):
    build, cause, _ = TRIGGERS[code]
    report = scan(*build()[:2], **_kwargs(build()))
    hits = found(report, code)
    assert hits, f"{code} not reported; got {[(f.code, f.layer) for f in report.findings]}"
    for f in hits:
        assert f.cause == cause
        assert f.message and f.fix and f.evidence
        json.dumps(f.to_dict())  # evidence is JSON-ready


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_rule_near_miss(code):
    _, _, near = TRIGGERS[code]
    report = scan(*near()[:2], **_kwargs(near()))
    assert code not in codes(report), [f.message for f in found(report, code)]


def _kwargs(case: tuple) -> dict:
    return case[2] if len(case) > 2 else {}


def test_fresh_init_comparison_splits_born_dead_from_died():
    model, data, kwargs = born_dead((4, 6, 5))()   # 10+ dead; fresh copies: up to 6
    report = scan(model, data, **kwargs)
    (dr015,) = found(report, "DR015")
    (dr013,) = found(report, "DR013")
    died = dr015.evidence["count"] - 6
    assert died >= 4
    assert dr015.evidence["born_dead"] == 6 and dr015.evidence["died_in_training"] == died
    assert dr013.evidence["dead_at_init"] == 6 and dr013.evidence["died_in_training"] == died
    assert f"about {died} died in training" in dr013.message
    assert "6 of 32 units" in dr015.message and "were dead from initialization" in dr015.message
    # all within a fresh init: no unknown-cause finding at all
    model, data, kwargs = born_dead((15, 16))()
    report = scan(model, data, **kwargs)
    assert "DR013" not in codes(report)
    assert found(report, "DR015")[0].evidence["died_in_training"] == 0


# -- models built to fail the classic ways get the matching cause --------------------------------

CLASSIC: dict[str, tuple[Case, str]] = {
    "too-high learning rate": (lambda: (trained("high_lr"), X), "learning_rate"),
    "too much weight decay": (lambda: (trained("weight_decay"), X), "weight_decay"),
    "deep narrow ReLU stack": (lambda: (F.deep_narrow(), X), "initialization"),
    "deep narrow ReLU stack, scattered dead units": (
        lambda: (F.deep_narrow(width=6, depth=12, seed=0), X), "initialization"),
    "deep narrow ReLU stack, another seed": (
        lambda: (F.deep_narrow(width=6, depth=12, seed=2), X), "initialization"),
    "sigmoid net, huge init": (lambda: (F.sigmoid_net(), X), "saturation"),
    "unnormalized inputs": (lambda: (trained("unnormalized"), F.unnormalized(X)), "input_scale"),
}


@pytest.mark.parametrize("case", list(CLASSIC))
def test_classic_failures_get_the_matching_cause(case):
    build, cause = CLASSIC[case]
    report = scan(*build())
    serious = [f for f in report.findings if f.severity is not Severity.INFO]
    assert serious and all(f.cause == cause for f in serious), \
        [(f.code, f.cause, f.layer) for f in serious]


def test_healthy_model_has_no_errors():
    report = scan(trained("healthy"), X)
    assert not [f for f in report.findings if f.severity is Severity.ERROR]


def test_deep_narrow_with_he_init_is_initialization_too():
    report = scan(F.deep_narrow(he=True), X)
    (dead_layer,) = found(report, "DR004")
    assert "deep (20 ReLU layers) and narrow (as few as 3 units)" in dead_layer.fix
    assert "kaiming" not in dead_layer.fix  # its weights already have He scale
    assert {f.cause for f in report.findings} == {"initialization"}


# -- what the findings say ----------------------------------------------------------------------

def test_large_update_finding_names_layer_numbers_and_fix():
    report = scan(trained("high_lr"), X)
    (f,) = [f for f in found(report, "DR001") if f.layer == "3"]
    dead = report.units_in_state("3", "dead")
    assert f.severity is Severity.ERROR
    assert f.evidence["count"] == len(dead) and f.evidence["units"] == 64
    assert f"{len(dead)} of 64 units" in f.message and "512 samples" in f.message
    assert "`2` (nn.Linear)" in f.message and f.evidence["bias_growth"] >= 3
    assert f.fix.startswith("lower the learning rate 3–10× or add warm-up")
    assert "replace `3` (nn.ReLU) with nn.LeakyReLU(0.01)" in f.fix


def test_bias_pinned_units_are_learning_rate_without_grown_weights():
    model = F.mlp(depth=2)
    with torch.no_grad():
        model[2].bias[7] = -5.0  # one unit kicked far below zero by one step
    report = scan(model, X)
    (f,) = found(report, "DR001")
    assert f.layer == "3" and f.evidence["unit_indices"] == [7] and not f.evidence["update_trace"]
    assert "twice the most negative default init" in f.message


def test_collapsed_weights_finding():
    report = scan(trained("weight_decay"), X)
    for f in found(report, "DR002"):
        assert f.evidence["dead_weight_norm_median"] < 0.1 * f.evidence["live_weight_norm_median"]
        assert "lower weight_decay" in f.fix and f"`{int(f.layer) - 1}` (nn.Linear)" in f.fix


def test_batchnorm_pinning_names_channels():
    report = scan(F.bn_pinned(), F.images())
    (f,) = found(report, "DR003")
    assert f.layer == "relu1" and f.evidence["unit_indices"] == [1, 4, 9, 12]
    assert "`bn1` (nn.BatchNorm2d)" in f.message and "5.0σ below zero" in f.message
    assert "`bn1.bias.data[[1, 4, 9, 12]] = 0`" in f.fix
    assert report.evidence["sites"]["relu1"]["layer"] == "conv1"  # the conv feeding the BN


def test_dead_layer_says_what_it_does_to_the_rest():
    report = scan(F.deep_narrow(), X)
    (f,) = found(report, "DR004")
    assert f.severity is Severity.ERROR
    assert "no gradient passes back through it" in f.message
    assert "the model's output is the same for every input" in f.message
    assert "kaiming_normal_(w, nonlinearity='relu')" in f.fix
    assert "DR006" not in codes(report)  # the constant output is this finding's consequence
    assert "DR001" not in codes(report)
    # sites after the dead layer see a constant input and get no findings of their own
    after = set(f.evidence["constant_sites_after"])
    assert after and not [g for g in report.findings if g.layer in after]


def test_whole_layer_killed_by_large_updates_is_not_initialization():
    model = F.mlp(depth=2)
    with torch.no_grad():
        model[2].bias[:] = -5.0
    report = scan(model, X)
    (f,) = found(report, "DR001")
    assert f.severity is Severity.ERROR and "The whole layer is dead" in f.message
    assert "DR004" not in codes(report)


def test_unnormalized_input_shows_the_input_statistics():
    report = scan(F.mlp(), F.unnormalized(X))
    first = found(report, "DR007")[0]
    assert first.layer == "1"
    assert first.evidence["input"]["mean"] == pytest.approx(float(F.unnormalized(X).mean()), rel=1e-6)
    assert first.evidence["input"]["std"] == pytest.approx(float(F.unnormalized(X).std()), rel=1e-2)
    assert "mean 99.9" in first.message or "mean 100" in first.message
    assert "(x - mean) / std" in first.fix and "`0` (nn.Linear)" in first.fix


def test_large_but_harmless_input_is_not_flagged():
    report = scan(F.mlp(), F.unnormalized(X, scale=100.0, offset=50.0))
    assert "DR007" not in codes(report)  # the first layer copes: no dead or saturated units


def test_relu_on_output():
    report = scan(F.relu_on_output(), X)
    (f,) = found(report, "DR008")
    assert f.severity is Severity.ERROR and f.evidence["dead"] == 1
    assert "remove `3` (nn.ReLU)" in f.fix and "`2` (nn.Linear)" in f.fix


def test_functional_relu_on_output_names_the_call():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x))

    report = scan(Net(), X)
    (f,) = found(report, "DR008")
    assert f.layer == "<model>:relu" and "`torch.relu`" in f.fix and "`fc` (nn.Linear)" in f.fix


def test_saturation_advice_is_ranked_by_evidence():
    report = scan(F.sigmoid_net(), X)
    first = found(report, "DR009")[0]
    assert first.severity is Severity.ERROR and first.evidence["position_share"] > 0.5
    assert first.fix.startswith("re-initialize `0` (nn.Linear): nn.init.xavier_uniform_")
    # without large weights there is no re-initialization advice
    model = F.mlp(act=nn.Sigmoid)
    with torch.no_grad():
        model[2].bias.fill_(8.0)  # saturated through the bias, not the weights
    f = found(scan(model, X), "DR009")[0]
    assert "biases are" in f.fix and "weights are" not in f.fix


def test_always_on_is_info():
    report = scan(F.always_on(), X)
    (f,) = found(report, "DR010")
    assert f.severity is Severity.INFO and f.evidence["count"] == 8
    assert f.evidence["always_on_bias_median"] > 9


def test_too_few_samples_states_the_rule_out_rate():
    report = scan(F.planted_dead((4,)), X[:40])
    (f,) = found(report, "DR011")
    bound = 1 - 0.05 ** (1 / 40)
    assert f.evidence["rule_out_fire_rate"] == pytest.approx(bound)
    assert f.evidence["samples_needed"] == 299  # rules out rates above the 1% 'rare' threshold
    assert "7.2%" in f.message and "--limit 299" in f.fix
    # every dead-unit finding states the bound too
    assert "< 7.2% of inputs" in found(report, "DR013")[0].message


def test_nonfinite_cause_follows_the_evidence():
    (f,) = found(scan(F.nan_weights(), X), "DR012")
    assert f.cause == "learning_rate" and f.evidence["nonfinite_params"] == {"0.weight": 3}
    x = X.clone()
    x[:5, 0] = float("nan")
    (g,) = found(scan(F.mlp(depth=2), x), "DR012")
    assert g.cause == "input_scale" and g.evidence["input_nonfinite"] == 1  # one feature


def test_findings_are_ordered_by_severity_then_forward_order():
    report = scan(F.deep_narrow(), X)
    report = scan(F.planted_dead((10,)), X[:40])
    ranks = [f.severity.rank for f in report.findings]
    assert ranks == sorted(ranks, reverse=True)
    order = {s.info.name: s.info.order for s in report.sites}
    for sev in Severity:
        layers = [order.get(f.layer, -1) if f.layer else -1
                  for f in report.findings if f.severity is sev]
        assert layers == sorted(layers)


def test_every_fix_names_a_module():
    reports = [scan(*TRIGGERS[c][0]()) for c in ("DR001", "DR002", "DR003", "DR004", "DR007",
                                                  "DR008", "DR009", "DR013")]
    for report in reports:
        for f in report.findings:
            if f.layer is not None and f.code not in ("DR010", "DR011", "DR012"):
                assert "`" in f.fix and "(nn." in f.fix, (f.code, f.fix)


# -- the sample checkpoints ----------------------------------------------------------------------

SM = Path(__file__).resolve().parents[1] / "sample_models"


def _sample(name: str) -> nn.Module:
    sys.path.insert(0, str(SM))
    try:
        import models
    finally:
        sys.path.remove(str(SM))
    model = models.DigitsMLP()
    model.load_state_dict(torch.load(SM / name, map_location="cpu"))
    return model.eval()


@pytest.mark.skipif(not (SM / "mlp_high_lr.pt").exists(), reason="sample models not built")
def test_sample_models():
    x = torch.from_numpy(np.load(SM / "data" / "digits_test.npy"))
    high = scan(_sample("mlp_high_lr.pt"), x)
    lr = found(high, "DR001")
    assert {f.layer for f in lr} == {"net.1", "net.3", "net.5"}
    assert all(f.cause == "learning_rate" and f.severity is Severity.ERROR for f in lr)
    healthy = scan(_sample("mlp_healthy.pt"), x)
    assert not [f for f in healthy.findings if f.severity is Severity.ERROR]
    assert "learning_rate" not in {f.cause for f in healthy.findings}


def test_nonfinite_weight_count_is_exact_when_the_sum_overflows():
    # The weights pass skips the exact count when a tensor's sum is finite; a sum that
    # overflows (large finite half-precision weights) must still count exactly 0,
    # and a single inf among them exactly 1.
    from torch import nn as tnn

    from deadrelu.identity import read_weights

    model = tnn.Sequential(tnn.Linear(4, 8), tnn.ReLU()).half()
    with torch.no_grad():
        model[0].weight.fill_(60000.0)  # finite in float16; their sum is not
        assert not torch.isfinite(model[0].weight.sum())
    assert read_weights(model).nonfinite == {}
    with torch.no_grad():
        model[0].weight[1, 2] = float("inf")
        model[0].bias[3] = float("nan")
    assert read_weights(model).nonfinite == {"0.weight": 1, "0.bias": 1}

"""Edge cases of the diagnosis found by reading its output as a user would.

Each test pins one wording or attribution that was once wrong: a whole layer
shrunk by weight decay, a crashing code snippet in a fix, σ-units on a collapsed
BatchNorm, rounding that made "above the threshold" read as equal, "1 samples",
always-on verdicts on units whose weights are gone, a broken config file skipped
in silence.
"""

from __future__ import annotations

import re
import warnings

import fixtures_diagnose as F
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.config import find_config
from deadrelu.errors import ConfigError

X, _ = F.task()


def scan(model: nn.Module, data: torch.Tensor) -> deadrelu.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data)


def by_code(report: deadrelu.Report, code: str) -> list[deadrelu.Finding]:
    return [f for f in report.findings if f.code == code]


def test_layer_shrunk_by_weight_decay_is_weight_decay_not_normal():
    model = F.mlp()
    with torch.no_grad():  # what strong L2 decay leaves: every row ~5x below default init
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.15)
        F.kill_units(model[2], 6)
        model[2].weight.mul_(1.0)
    report = scan(model.eval(), X)
    causes = {(f.code, f.cause) for f in report.findings if f.layer == "3"}
    assert ("DR002", "weight_decay") in causes, causes
    text = " ".join(f.message for f in report.findings)
    assert "look normal" not in text and "whole layer shrank" in text


def test_collapsed_always_on_units_are_not_called_linear():
    model = F.always_on()
    with torch.no_grad():
        model[0].weight[:8] = 0.0  # the always-on units now output a constant bias
    report = scan(model, X)
    assert not by_code(report, "DR010")


@pytest.mark.parametrize("act, kind", [(nn.Sigmoid, "sigmoid"), (nn.Hardtanh, "linear")])
def test_saturation_fix_code_runs(act, kind):
    model = F.mlp(act=act)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 5.0)
    report = scan(model.eval(), X)
    fixes = " ".join(f.fix for f in report.findings)
    calls = re.findall(r"calculate_gain\(([^)]*)\)", fixes)
    assert calls, fixes
    for arg in calls:
        assert arg == f"'{kind}'"
        nn.init.calculate_gain(eval(arg))  # the snippet a user pastes must not raise


def test_collapsed_batchnorm_gamma_is_not_described_in_sigma():
    model = F.bn_pinned(beta=-0.01)
    with torch.no_grad():
        model.bn1.weight[[1, 4, 9, 12]] = 1e-6
    report = scan(model, F.images())
    (finding,) = by_code(report, "DR003")
    assert "σ" not in finding.message and "gamma is ~0" in finding.message


def test_rule_out_bound_just_above_threshold_is_shown_above_it():
    report = scan(F.planted_dead((4,)), X[:298])
    (finding,) = by_code(report, "DR011")
    shown = re.search(r"up to ([\d.]+)%", finding.message).group(1)
    assert float(shown) > 1.0, finding.message


def test_one_sample_is_singular():
    report = scan(F.planted_dead((4,)), X[:1])
    text = " ".join(f.message for f in report.findings)
    assert "1 samples" not in text and "1 sample" in text


def test_broken_deadrelu_table_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.deadrelu]\nignore = ["DR010"\n')
    with pytest.raises(ConfigError, match="pyproject.toml is not valid TOML"):
        find_config(tmp_path)


def test_broken_unrelated_pyproject_is_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.black]\nline-length = \n')
    assert find_config(tmp_path) is None or find_config(tmp_path).parent != tmp_path


@pytest.mark.parametrize("n, severity", [(20, "error"), (100, "warning")])
def test_too_few_samples_is_an_error_when_no_verdict_can_stand(n, severity):
    (finding,) = by_code(scan(F.planted_dead((4,)), X[:n]), "DR011")
    assert finding.severity.value == severity

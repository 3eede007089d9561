"""deadrelu.swap_activations: modules replaced in place, functional calls listed with file and line."""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from pathlib import Path

import fix_models as fm
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.errors import ConfigError

SM = Path(__file__).resolve().parents[1] / "sample_models"


def _sample_models():
    spec = importlib.util.spec_from_file_location("_swap_sample_models", SM / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_modules_replaced_and_the_functional_relu_listed_with_file_and_line():
    models = _sample_models()
    model = models.DigitsCNN()
    result = deadrelu.swap_activations(model, to="leaky_relu", negative_slope=0.05)
    assert [r.path for r in result.replaced] == ["relu1", "relu3"]
    assert isinstance(model.relu1, nn.LeakyReLU) and model.relu1.negative_slope == 0.05
    [call] = result.functional
    source = (SM / "models.py").read_text().splitlines()
    assert call.file is not None and Path(call.file).resolve() == (SM / "models.py").resolve()
    assert call.line is not None and "F.relu(self.bn2" in source[call.line - 1]
    assert call.call == "F.relu(...)" and call.cls == "DigitsCNN"
    assert "models.py" in str(call)


def test_resnet_shared_inplace_relu_and_scan_sees_leaky_units_afterwards():
    model, data, _ = fm.resnet()
    result = deadrelu.swap_activations(model)
    assert sorted(r.path for r in result.replaced) == [
        "layer1.0.relu", "layer1.1.relu", "layer2.0.relu", "relu"]
    assert all(isinstance(m, nn.LeakyReLU) and m.inplace for n, m in model.named_modules()
               if n.endswith("relu"))
    assert not any(type(m) is nn.ReLU for m in model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, data)
    assert {s.info.kind for s in report.sites} == {"leaky_relu"}


def test_transformer_stored_function_becomes_a_module():
    model, data, _ = fm.transformer()
    with torch.no_grad():
        before = model(data)
    result = deadrelu.swap_activations(model, layers="layers.0*")
    assert [r.path for r in result.replaced] == ["layers.0.activation"]
    assert isinstance(model.layers[0].activation, nn.LeakyReLU)
    assert model.layers[1].activation is torch.nn.functional.relu
    with torch.no_grad():
        after = model(data)
    assert after.shape == before.shape and not torch.allclose(after, before)


def test_gated_functional_call_listed_and_bad_arguments_refused():
    model, _, _ = fm.gated()
    result = deadrelu.swap_activations(model, to="gelu")
    assert result.replaced == ()
    [call] = result.functional
    assert call.cls == "GatedMLP" and call.call == "F.relu(...)"
    lines, start = inspect.getsourcelines(fm.GatedMLP.forward)
    assert start <= call.line < start + len(lines)
    with pytest.raises(ConfigError, match="unknown activation"):
        deadrelu.swap_activations(model, to="sigmoid")
    with pytest.raises(ConfigError, match="matches no module"):
        deadrelu.swap_activations(model, layers="encoder.*")


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h)


def test_fix_text_names_the_functional_call_with_file_and_line():
    torch.manual_seed(0)
    model = _Functional()
    with torch.no_grad():
        model.fc1.bias[:4] = -50.0  # far below the default init: a large-update trace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, torch.randn(300, 6))
    lines, start = inspect.getsourcelines(_Functional.forward)
    line = start + next(i for i, text in enumerate(lines) if "torch.relu" in text)
    where = f"test_fix_swap.py:{line}"
    assert report.evidence["sites"]["<model>:relu"]["call_site"].endswith(where)
    fixes = [f.fix for f in report.findings if f.layer == "<model>:relu"]
    assert fixes and any("`torch.relu` call in the model's forward" in fix and where in fix
                         for fix in fixes), fixes

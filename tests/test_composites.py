"""Activations composed from other ops are one site of the right kind, counted on the input.

transformers' Python activations (by qualified name: recognized without importing
transformers), modules whose forward computes a known composite, and inline
``x * f(x)`` patterns, whose tanh/sigmoid must not be diagnosed as saturated.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu

pytestmark = pytest.mark.usefixtures("stats_path")


def scan(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kw)


class Block(nn.Module):
    """Linear → act → Linear; records the act's input and output per call."""

    def __init__(self, act, width=8):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.act = act
        self.out = nn.Linear(width, 2)
        self.xs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []
        self.act.register_forward_hook(self._keep)
        with torch.no_grad():
            self.fc.bias[:2] = -100.0  # planted: never positive

    def _keep(self, module, args, out):
        self.xs.append(args[0].detach().clone())
        self.ys.append(out.detach().clone())

    def forward(self, x):
        return self.out(self.act(self.fc(x)))


def _check(act, kind, n=64):
    model = Block(act)
    report = scan(model, torch.randn(n, 4), batch_size=16)
    assert [s.info.name for s in report.sites] == ["act"]
    site = report.site("act")
    assert (site.info.kind, site.info.op, site.info.input_level) == (kind, "module", 0.0)
    assert_matches(site.stats, brute(model.ys, 1, xs=model.xs))
    assert report.units_in_state("act", "dead") == [0, 1]
    assert not [f for f in report.findings if f.code == "DR009"]  # never "saturated"
    return report


class NewGELUActivation(nn.Module):
    """transformers' gelu_new, copied: recognized by its qualified name alone."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


NewGELUActivation.__module__ = "transformers.activations"


def test_a_transformers_class_is_known_by_name_without_importing_transformers():
    _check(NewGELUActivation(), "gelu")


TRANSFORMERS = ["gelu_new", "quick_gelu", "gelu_fast", "gelu_pytorch_tanh", "gelu_python_tanh",
                "gelu_accurate", "gelu_10", "gelu", "gelu_python", "mish", "silu", "relu2"]


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformers_act2fn_entries(name):
    activations = pytest.importorskip("transformers.activations")
    kind = {"mish": "mish", "silu": "silu", "relu2": "relu"}.get(name, "gelu")
    _check(activations.ACT2FN[name], kind)


class TanhGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


class ErfGELU(nn.Module):  # no activation call inside at all: seen only by what it computes
    def forward(self, x):
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class Mish(nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


@pytest.mark.parametrize("act, kind", [
    (TanhGELU(), "gelu"), (ErfGELU(), "gelu"), (QuickGELU(), "gelu"), (Swish(), "silu"),
    (Mish(), "mish"),
])
def test_a_module_whose_forward_is_a_known_composite(act, kind):
    _check(act, kind)


class Scaled(nn.Module):
    def forward(self, x):  # x * sigmoid(x) * 2: no known activation
        return 2.0 * x * torch.sigmoid(x)


class Inline(nn.Module):
    """Composites written inline in a larger forward, with saturating inputs."""

    def __init__(self, body):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.body = body
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(self.fc(x) * 20.0))


@pytest.mark.parametrize("body, site", [
    (lambda h: h * torch.sigmoid(1.702 * h), "<model>:sigmoid"),
    (lambda h: 0.5 * h * (1.0 + torch.tanh(0.79788456 * (h + 0.044715 * h ** 3))), "<model>:tanh"),
])
def test_inline_composites_are_marked_and_not_diagnosed_as_saturation(body, site):
    report = scan(Inline(body), torch.randn(200, 4))
    info = report.site(site).info
    assert info.part_of == "x * f(x)"
    assert report.verdicts[site].saturated_rate.max() > 0.5  # it does sit in the flat tails
    assert not [f for f in report.findings if f.layer == site and f.cause == "saturation"]
    assert any("probably parts of composite activations" in n and site in n for n in report.notes)


def test_an_unknown_module_composite_keeps_its_inner_site_marked():
    report = scan(Inline(Scaled()), torch.randn(64, 4))
    assert report.site("body:sigmoid").info.part_of == "x * f(x)"


def test_a_plain_saturated_sigmoid_is_still_diagnosed():
    report = scan(Inline(torch.sigmoid), torch.randn(200, 4))
    assert report.site("<model>:sigmoid").info.part_of is None
    assert [f for f in report.findings if f.cause in ("saturation", "input_scale")]


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(4, 8)
        self.up = nn.Linear(4, 8)
        self.down = nn.Linear(8, 4)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def test_gated_mlps_keep_their_site_on_the_gate_activation():
    report = scan(SwiGLU(), torch.randn(32, 4))
    (site,) = report.sites
    assert (site.info.name, site.info.kind, site.info.input_layer) == ("<model>:silu", "silu", "gate")
    assert site.info.part_of is None


class Wrapper(nn.Module):
    def forward(self, x):
        return F.relu(x)


def test_a_module_that_wraps_one_activation_call_keeps_that_call_as_its_site():
    model = nn.Sequential(nn.Linear(4, 8), Wrapper())
    report = scan(model, torch.randn(32, 4) * 3)
    (site,) = report.sites
    assert (site.info.name, site.info.op, site.info.input_level) == ("1:relu", "F.relu", None)


def test_the_new_site_fields_are_in_the_report_schema():
    import schemas

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.act = nn.PReLU()

        def forward(self, x):  # x: (N, 3, 4), raw: the first relu's units are guessed
            h = self.act(self.fc(torch.relu(x)))
            return h * torch.sigmoid(1.702 * h)

    report = scan(Mixed(), torch.randn(16, 3, 4))
    doc = schemas.validate_json("report", report.to_json())
    sites = {layer["name"]: layer["site"] for layer in doc["layers"]}
    assert sites["<model>:relu"]["unit_axis_source"] == "guessed"
    assert sites["act"]["input_level"] == 0.0
    assert sites["<model>:sigmoid"]["part_of"] == "x * f(x)"

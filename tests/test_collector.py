"""Exact counts against the brute-force reference on planted cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu
from deadrelu.errors import ModelError

pytestmark = pytest.mark.usefixtures("stats_path")


def _scan(model, data, **kw):
    kw.setdefault("batch_size", 64)
    with pytest.warns(deadrelu.InsufficientDataWarning) if _n(data) < 100 else _nullcontext():
        return deadrelu.scan(model, data, **kw)


def _n(data):
    return data.shape[0] if isinstance(data, torch.Tensor) else 1000


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class PlantedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 8)
        self.act2 = nn.ReLU()
        with torch.no_grad():
            self.fc1.bias[3] = -1e4  # dead
            self.fc1.bias[5] = 1e4  # always on
            self.fc2.bias[:2] = -1e4

    def forward(self, x):
        return self.act2(self.fc2(self.act1(self.fc1(x))))


def test_planted_dead_and_always_on_units_exact():
    model = PlantedMLP().eval()
    x = torch.randn(500, 10)
    report = _scan(model, x)
    with torch.no_grad():
        h1 = F.relu(model.fc1(x))
        h2 = F.relu(model.fc2(h1))
    assert [s.info.name for s in report.sites] == ["act1", "act2"]
    assert_matches(report.site("act1").stats, brute(h1, 1))
    assert_matches(report.site("act2").stats, brute(h2, 1))
    assert 3 in report.units_in_state("act1", "dead")
    assert 5 in report.units_in_state("act1", "always_on")
    assert report.units_in_state("act2", "dead")[:2] == [0, 1]
    row = report.layers.set_index("layer").loc["act1"]
    assert row["kind"] == "relu" and row["units"] == 16 and row["input_layer"] == "fc1"
    assert row["dead"] == int((h1 > 0).sum(0).eq(0).sum())


def test_streaming_equals_one_batch_and_merge_equals_union():
    model = PlantedMLP().eval()
    x = torch.randn(640, 10)
    one = deadrelu.scan(model, x, batch_size=640)
    many = deadrelu.scan(model, x, batch_size=7)
    a = deadrelu.scan(model, x[:300], batch_size=50)
    b = deadrelu.scan(model, x[300:], batch_size=50)
    merged = a.merge(b)
    for r in (many, merged):
        for s1, s2 in zip(one.sites, r.sites, strict=True):
            d1, d2 = s1.stats.to_dict(), s2.stats.to_dict()
            for key in ("active", "sample_active", "saturated", "nonfinite", "positions", "samples"):
                assert d1[key] == d2[key], key
            np.testing.assert_allclose(d1["sum"], d2["sum"], rtol=1e-6)  # float32 forward
            np.testing.assert_allclose(d1["max"], d2["max"], rtol=1e-6)


def test_functional_forms_are_each_a_site():
    class Funcs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            a = F.relu(self.fc(x))
            b = torch.relu(a - 0.5)
            c = (b - 0.1).relu()
            d = (c - 0.05).clone()
            d.relu_()
            return F.gelu(d) + torch.tanh(d) + torch.sigmoid(d) + F.silu(d) + F.leaky_relu(d)

    model = Funcs().eval()
    x = torch.randn(200, 6)
    report = _scan(model, x)
    names = [s.info.name for s in report.sites]
    assert names == ["<model>:relu", "<model>:relu#1", "<model>:relu#2", "<model>:relu#3",
                     "<model>:gelu", "<model>:tanh", "<model>:sigmoid", "<model>:silu",
                     "<model>:leaky_relu"]
    ops = [s.info.op for s in report.sites]
    assert ops[:4] == ["F.relu", "torch.relu", "Tensor.relu", "Tensor.relu_"]
    with torch.no_grad():
        a = F.relu(model.fc(x))
        b = F.relu(a - 0.5)
        c = F.relu(b - 0.1)
        d = F.relu(c - 0.05)
    for name, y in zip(names[:4], (a, b, c, d), strict=True):
        assert_matches(report.site(name).stats, brute(y, 1))
    assert_matches(report.site("<model>:sigmoid").stats, brute(torch.sigmoid(d), 1, level=0.5,
                                                                 sat_low=0.01, sat_high=0.99))
    assert_matches(report.site("<model>:gelu").stats, brute(F.gelu(d), 1))
    assert report.site("<model>:relu").info.input_layer == "fc"
    assert [s.info.order for s in report.sites] == list(range(9))


class SharedReLU(nn.Module):
    """A ResNet-style block reusing one self.relu on tensors of different widths."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-1, 1)
            self.bn1.bias[2] = -1e4  # channel 2 pinned below zero after BN

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.conv2(x))


def test_shared_relu_called_twice_with_different_widths_and_inplace_after_bn():
    model = SharedReLU().eval()
    x = torch.randn(120, 3, 6, 6)
    report = _scan(model, x)
    assert [(s.info.name, s.info.units) for s in report.sites] == [("relu", 8), ("relu#1", 16)]
    with torch.no_grad():
        y1 = F.relu(model.bn1(model.conv1(x)))
        y2 = F.relu(model.conv2(y1))
    assert_matches(report.site("relu").stats, brute(y1, 1))
    assert_matches(report.site("relu#1").stats, brute(y2, 1))
    assert 2 in report.units_in_state("relu", "dead")
    assert report.site("relu").info.input_layer == "bn1"
    assert report.site("relu#1").info.input_layer == "conv2"
    assert report.site("relu").info.shape == (8, 6, 6)


def test_transformer_encoder_layer_fast_path_is_seen():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(150, 5, 16)
    report = _scan(layer, x)
    assert [s.info.name for s in report.sites] == ["<model>:relu"]
    site = report.site("<model>:relu")
    assert site.info.units == 32 and site.info.input_layer == "linear1"
    captured = []
    h = layer.linear1.register_forward_hook(lambda m, i, o: captured.append(F.relu(o)))
    with torch.no_grad():
        layer.train(False)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            layer(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    h.remove()
    assert_matches(site.stats, brute(captured[0], 2))


def test_sequence_batch_second_uses_batch_axis_for_samples():
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0).eval()  # (T, N, C)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):  # x: (N, T, C) batch first
            return self.layer(x.transpose(0, 1))

    x = torch.randn(130, 4, 8)
    report = _scan(Wrap().eval(), x)
    site = report.sites[0]
    assert site.info.sample_axis == 1 and site.info.unit_axis == 2
    assert site.stats.samples == 130 and site.stats.positions == 130 * 4


def test_dict_inputs():
    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 5)
            self.act = nn.ReLU()

        def forward(self, x, bias):
            return self.act(self.a(x) + bias)

    data = [{"x": torch.randn(40, 4), "bias": torch.randn(40, 5)} for _ in range(3)]
    model = D().eval()
    report = deadrelu.scan(model, data)
    with torch.no_grad():
        ys = [F.relu(model.a(d["x"]) + d["bias"]) for d in data]
    assert_matches(report.site("act").stats, brute(ys, 1))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_conv_nd_units_are_channels(dims):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](2, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(110, 2, *([5] * dims))
    report = _scan(model, x)
    site = report.site("1")
    assert site.info.unit_axis == 1 and site.info.units == 4
    with torch.no_grad():
        y = F.relu(conv(x))
    assert_matches(site.stats, brute(y, 1))


def test_linear_on_3d_input_units_are_features():
    model = nn.Sequential(nn.Linear(6, 7), nn.GELU()).eval()
    x = torch.randn(100, 9, 6)
    report = _scan(model, x)
    site = report.site("1")
    assert site.info.unit_axis == 2 and site.info.units == 7
    with torch.no_grad():
        y = F.gelu(model[0](x))
    assert_matches(site.stats, brute(y, 2))
    assert site.stats.positions == 900


def test_unit_axis_override():
    model = nn.Sequential(nn.Linear(6, 7), nn.ReLU()).eval()
    x = torch.randn(100, 9, 6)
    report = _scan(model, x, unit_axis={"1": 1})
    assert report.site("1").info.units == 9


def test_saturated_sigmoid_tanh_and_relu6():
    class Sat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 6)
            self.sig = nn.Sigmoid()
            self.tanh = nn.Tanh()
            self.r6 = nn.ReLU6()
            with torch.no_grad():
                self.fc.bias[0] = 50.0
                self.fc.bias[1] = -50.0

        def forward(self, x):
            h = self.fc(x)
            return self.sig(h) + self.tanh(h) + self.r6(h)

    model = Sat().eval()
    x = torch.randn(300, 5)
    report = _scan(model, x)
    with torch.no_grad():
        h = model.fc(x)
    assert_matches(report.site("sig").stats, brute(torch.sigmoid(h), 1, 0.5, 0, 0.01, 0.99))
    assert_matches(report.site("tanh").stats, brute(torch.tanh(h), 1, 0.0, 0, -0.99, 0.99))
    assert_matches(report.site("r6").stats, brute(F.relu6(h), 1, 0.0, 0, None, 6.0))
    assert report.site("r6").info.kind == "relu6"
    assert report.units_in_state("sig", "saturated") == [0, 1]
    assert report.units_in_state("tanh", "saturated") == [0, 1]
    assert report.units_in_state("r6", "saturated") == [0]
    assert report.units_in_state("r6", "dead") == [1]


def test_nan_is_reported_not_counted_as_dead():
    class N(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            x = x.clone()
            x[:10, 1] = float("nan")
            return self.act(x)

    x = torch.randn(200, 3)
    x[:, 1] = -1.0
    report = _scan(N().eval(), x)
    assert report.units_in_state("act", "nonfinite") == [1]
    assert report.layers.iloc[0]["nonfinite"] == 1 and report.layers.iloc[0]["dead"] == 0


def test_model_state_restored_and_hooks_removed_after_error():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.act = nn.ReLU()
            self.drop = nn.Dropout()

        def forward(self, x):
            x = self.act(self.fc(x))
            raise ValueError("kaboom")

    model = Boom().train()
    model.drop.eval()  # mixed flags must come back exactly
    with pytest.raises(ModelError, match="after site 'act'.*kaboom"):
        deadrelu.scan(model, torch.randn(4, 3))
    assert model.training and model.fc.training and not model.drop.training
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    from torch.overrides import _get_current_function_mode_stack

    assert not _get_current_function_mode_stack()


def test_weights_unchanged_results_identical_and_mode_restored():
    model = SharedReLU().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(150, 3, 6, 6)
    r1 = deadrelu.scan(model, x)
    r2 = deadrelu.scan(model, x)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert r1.to_dict()["layers"] == r2.to_dict()["layers"]


def test_compiled_model_is_scanned_through_original_module():
    model = PlantedMLP().eval()
    compiled = torch.compile(model)
    report = deadrelu.scan(compiled, torch.randn(200, 10))
    assert [s.info.name for s in report.sites] == ["act1", "act2"]
    assert any("torch.compile" in n for n in report.meta["notes"])


def test_model_without_activations_is_an_error():
    with pytest.raises(ModelError, match="no activation sites"):
        deadrelu.scan(nn.Linear(3, 2), torch.randn(200, 3))


def test_limit_cuts_the_last_batch():
    report = deadrelu.scan(PlantedMLP(), torch.randn(500, 10), batch_size=64, limit=150)
    assert report.samples == 150


def test_collector_guards_its_lifecycle():
    c = deadrelu.Collector(PlantedMLP())
    c.attach()
    with pytest.raises(RuntimeError, match="already attached"):
        c.attach()
    c.detach()
    c.detach()


def test_torch_export_program_sites_named_by_original_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(8, 3)

        def forward(self, x):
            return torch.sigmoid(self.fc2(F.gelu(self.act(self.fc(x)))))

    model = Net().eval()
    with torch.no_grad():
        model.fc.bias[0] = -1e4
    batch = torch.randn(50, 4)
    program = torch.export.export(model, (batch,)).module()
    data = [torch.randn(50, 4) for _ in range(4)]
    report = deadrelu.scan(program, data)
    assert [s.info.name for s in report.sites] == ["act", "<model>:gelu", "<model>:sigmoid"]
    with torch.no_grad():
        ys = [F.relu(model.fc(x)) for x in data]
    assert_matches(report.site("act").stats, brute(ys, 1))
    assert report.units_in_state("act", "dead")[0] == 0


def test_report_of_nonfinite_units_is_strict_json_and_round_trips():
    import json

    class AllNaN(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x * float("nan"))

    report = _scan(AllNaN().eval(), torch.randn(150, 4))
    text = report.to_json()

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    again = deadrelu.Report.from_dict(json.loads(text, parse_constant=refuse))
    assert again.units_in_state("act", "nonfinite") == [0, 1, 2, 3]
    assert again.site("act").stats.tensors["max"].isneginf().all()


def test_merge_takes_the_union_of_sites_from_data_dependent_branches():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.a = nn.ReLU()
            self.b = nn.Tanh()

        def forward(self, x):
            h = self.fc(x)
            return self.a(h) if x[0, 0] > 0 else self.b(h)

    model = Branchy().eval()
    pos = torch.randn(150, 3).abs()
    neg = -torch.randn(150, 3).abs()
    merged = deadrelu.scan(model, pos).merge(deadrelu.scan(model, neg))
    assert [s.info.name for s in merged.sites] == ["a", "b"]
    assert merged.site("a").stats.samples == 150 and merged.site("b").stats.samples == 150
    assert merged.meta["samples"] == 300


@pytest.mark.parametrize("exact_limit", [None, 1000])
def test_chunked_and_int_count_paths_match_brute_force(monkeypatch, exact_limit):
    import deadrelu.stats as stats_mod

    if exact_limit is not None:  # force the float64 counting fallback
        monkeypatch.setattr(stats_mod, "_FLOAT_EXACT", exact_limit)
    monkeypatch.setattr(stats_mod, "CHUNK", 3 * 4 * 25)  # several chunks per batch
    conv = nn.Conv2d(2, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.Hardtanh(-0.5, 0.5), nn.Conv2d(4, 4, 1), nn.GELU()).eval()
    x = torch.randn(130, 2, 5, 5)
    report = _scan(model, x, batch_size=37)
    with torch.no_grad():
        h = F.hardtanh(conv(x), -0.5, 0.5)
        g = F.gelu(model[2](h))
    assert_matches(report.site("1").stats, brute(h, 1, 0.0, 0, -0.5, 0.5))
    assert_matches(report.site("3").stats, brute(g, 1))


def test_forward_error_names_the_module_that_raised_and_its_input():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ModelError) as info:
        deadrelu.scan(model, torch.randn(200, 8))
    message = str(info.value)
    assert "in `2` (Linear), which received a tensor of shape (200, 4), after site '1'" in message
    assert "check that the data matches" in message

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            torch.relu(self.fc(x))
            raise ValueError("bad branch")

    with pytest.raises(ModelError) as info:
        deadrelu.scan(Own(), torch.randn(200, 8))
    message = str(info.value)
    assert "in `<model>` (Own)" in message and "forward code of `<model>` (Own)" in message


def test_a_failure_in_a_later_batch_still_names_the_layer_that_raised():
    # after the first forward, built-in leaves such as Linear run without hooks
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh())
    batches = [torch.randn(100, 8), torch.randn(100, 8), torch.randn(100, 9)]
    with pytest.raises(ModelError) as info:
        deadrelu.scan(model, batches)
    message = str(info.value)
    assert "batch 2" in message
    assert "in `0` (Linear), which received a tensor of shape (100, 9)" in message


def test_hooks_of_leaf_layers_are_dropped_after_the_first_forward_only():
    from deadrelu.collector import Collector

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.skip = nn.Linear(4, 4)

        def forward(self, x, branch=False):
            return torch.relu(self.skip(x) if branch else self.fc(x))

    model = nn.Sequential(Block(), nn.ReLU()).eval()
    with torch.no_grad(), Collector(model) as collector:
        hooked = {key for key, _ in collector._handles}
        model(torch.randn(3, 4))
        kept = {key for key, _ in collector._handles}
        assert id(model[0].fc) in hooked - kept  # ran, hosted no activation
        assert id(model[0].skip) in kept  # did not run: a later branch may use it
        assert {id(model), id(model[0]), id(model[1])} <= kept
        model[0](torch.randn(3, 4), branch=True)
    assert "0:relu" in collector.sites and "1" in collector.sites


def _builtin_model():
    """torch.nn modules only: a shared ReLU called twice, GELU, ReLU6, a conv and Sigmoid."""
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 12), relu, nn.Linear(12, 12), relu, nn.Linear(12, 8),
                          nn.GELU(), nn.Linear(8, 8), nn.ReLU6(), nn.Unflatten(1, (2, 2, 2)),
                          nn.Conv2d(2, 4, 1), nn.Sigmoid())
    with torch.no_grad():
        model[0].bias[2] = -1e4  # dead
        model[6].bias[0] = 50.0  # ReLU6 saturates
    return model.eval()


def _record(model, batches):
    from deadrelu.collector import Collector

    with torch.no_grad(), Collector(model) as collector:
        for b in batches:
            model(b)
    return collector


def test_models_of_torch_nn_modules_alone_are_recorded_by_module_hooks_with_the_same_counts(
        monkeypatch):
    from deadrelu.collector import Collector

    model = _builtin_model()
    batches = [torch.randn(n, 6) for n in (64, 64, 17, 64)]  # a new geometry mid-scan
    hooked = _record(model, batches)
    assert hooked._hooked and hooked._mode is None
    monkeypatch.setattr(Collector, "_hook_only", lambda self: False)
    moded = _record(model, batches)
    assert not moded._hooked
    assert list(hooked.sites) == list(moded.sites) == ["1", "1#1", "5", "7", "10"]
    x = torch.cat(batches)
    with torch.no_grad():
        h1 = F.relu(model[0](x))
        h2 = F.relu(model[2](h1))
        h3 = F.gelu(model[4](h2))
        h4 = F.relu6(model[6](h3))
        h5 = torch.sigmoid(model[9](model[8](h4)))
    expected = {"1": brute(h1, 1), "1#1": brute(h2, 1), "5": brute(h3, 1),
                "7": brute(h4, 1, 0.0, 0, None, 6.0), "10": brute(h5, 1, 0.5, 0, 0.01, 0.99)}
    for name, reference in expected.items():
        assert_matches(hooked.sites[name].stats, reference)
        assert_matches(moded.sites[name].stats, reference)
    assert int(hooked.sites["1"].stats.active[2]) == 0
    assert int(hooked.sites["7"].stats.saturated.sum()) > 0


def test_models_with_forward_code_keep_the_interception():
    model = SharedReLU().eval()  # its own forward: a later call could take another path
    collector = _record(model, [torch.randn(8, 3, 6, 6)] * 2)
    assert not collector._hooked
    functional = nn.Sequential(nn.Linear(4, 4), nn.TransformerEncoderLayer(4, 1, 8)).eval()
    collector = _record(functional, [torch.randn(2, 3, 4)] * 2)  # F.relu inside torch.nn
    assert not collector._hooked and any(":" in name for name in collector.sites)


def test_the_hooked_steady_state_hooks_only_the_root_and_the_activation_modules():
    model = _builtin_model()
    collector = _record(model, [torch.randn(8, 6)])
    collector.attach()
    try:
        hooked = {key for key, _ in collector._handles}
        from deadrelu.kinds import MODULES

        activations = {id(m) for m in model.modules() if type(m) in MODULES}
        assert hooked == {id(model)} | activations
        assert not any(m._forward_pre_hooks for m in model.modules() if m is not model)
    finally:
        collector.detach()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_the_hooked_steady_state_names_the_module_that_raised():
    model = _builtin_model()
    collector = _record(model, [torch.randn(8, 6)])
    with torch.no_grad(), collector:
        with pytest.raises(RuntimeError):
            model(torch.randn(8, 5))  # the first Linear refuses 5 features
        assert collector.failure is not None
        assert collector.failure.path == "0" and collector.failure.shape == (8, 5)
        model(torch.randn(8, 6))  # the next forward records as usual
    assert collector.sites["1"].stats.samples == 16


def test_the_hooked_steady_state_records_an_activation_called_on_its_own_and_none_when_disabled():
    model = _builtin_model()
    collector = _record(model, [torch.randn(8, 6)])
    with torch.no_grad(), collector:
        model[1](torch.randn(5, 12))  # outside the model's forward: a forward of its own
        assert collector.sites["1"].stats.samples == 13
        assert collector.sites["1#1"].stats.samples == 8
        collector.enabled = False
        model(torch.randn(8, 6))
        model[1](torch.randn(5, 12))
        collector.enabled = True
    assert collector.sites["1"].stats.samples == 13 and collector.sites["10"].stats.samples == 8

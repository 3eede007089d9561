"""deadrelu.prune: exact removal of constant units on planted models and real architectures."""

from __future__ import annotations

import warnings

import fix_models as fm
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deadrelu
from deadrelu.errors import ConfigError, ModelError

pytest.importorskip("torch_pruning")


def _scan(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deadrelu.scan(model, data)


def _dead(report, name):
    return report.units_in_state(name, "dead")


def _assert_same_outputs(a, b, data):
    with torch.no_grad():
        ya, yb = a.eval()(data), b.eval()(data)
    assert ya.shape == yb.shape
    assert float((ya - yb).abs().max()) <= 1e-5 * float(ya.abs().max())


def _prune_and_check(build):
    model, data, planted = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = _scan(model, data)
    pruned, result = deadrelu.prune(model, report, data)
    # the input is never changed
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    _assert_same_outputs(model, pruned, data)
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5 * result.output_scale
    assert result.params_after < result.params_before
    # the pruned model's scan: each pruned site lost exactly its removed dead units
    rescan = _scan(pruned, data)
    removed = {r.layer: r for r in result.removed}
    for name, r in removed.items():
        dead_removed = [u for u, v in zip(r.units, r.values, strict=True) if v == 0.0]
        assert len(_dead(rescan, name)) == len(_dead(report, name)) - len(dead_removed)
        assert rescan.site(name).info.units == report.site(name).info.units - len(r.units)
    return model, data, planted, report, pruned, result, removed


def test_mlp_linear_relu_linear_removes_planted_units_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    with torch.no_grad():
        model[0].bias[[1, 4, 7]] = fm.DEAD
        model[2].bias[[0, 5]] = fm.DEAD
    data = torch.randn(300, 8)
    report = _scan(model, data)
    pruned, result = deadrelu.prune(model, report, data)
    assert {r.layer: r.units for r in result.removed} == {"1": (1, 4, 7), "3": (0, 5)}
    assert (pruned[0].out_features, pruned[2].in_features, pruned[2].out_features,
            pruned[4].in_features) == (13, 13, 10, 10)
    # brute-force reference: delete the rows/columns by hand
    keep1 = [i for i in range(16) if i not in (1, 4, 7)]
    keep2 = [i for i in range(12) if i not in (0, 5)]
    with torch.no_grad():
        h = F.relu(data @ model[0].weight[keep1].T + model[0].bias[keep1])
        h = F.relu(h @ model[2].weight[keep2][:, keep1].T + model[2].bias[keep2])
        ref = h @ model[4].weight[:, keep2].T + model[4].bias
        assert torch.allclose(pruned(data), ref, atol=1e-6)
    assert result.units_removed == 5
    assert result.macs_before == 8 * 16 + 16 * 12 + 12 * 3
    assert result.macs_after == 8 * 13 + 13 * 10 + 10 * 3
    assert result.params_after == 8 * 13 + 13 + 13 * 10 + 10 + 10 * 3 + 3


def test_resnet_residual_channel_goes_only_when_dead_in_every_tensor_it_is_added_to():
    _, _, _, report, pruned, result, removed = _prune_and_check(fm.resnet)
    assert set(removed["layer1.0.relu"].units) == {1, 3}
    assert {4, 9} <= set(removed["layer2.0.relu"].units)
    # stream channel 2 is dead in the stem and after every add of stage 1: it goes everywhere
    assert 2 in removed["relu"].units
    for name in ("layer1.0.relu#1", "layer1.1.relu#1"):
        assert 2 in removed[name].units
    assert pruned.conv1.out_channels == 7 and pruned.layer2[0].downsample[0].in_channels == 7
    # channel 5 is dead after the stem only; a live residual branch is added to it later
    kept = {(k.layer, u): k.reason for k in result.kept for u in k.units}
    assert "not constant" in kept[("relu", 5)]
    assert 5 in _dead(report, "relu")


def test_transformer_encoder_feed_forward():
    _, _, planted, _, pruned, _, removed = _prune_and_check(fm.transformer)
    assert {k: list(v.units) for k, v in removed.items()} == planted
    assert pruned.layers[0].linear1.out_features == 45 and pruned.layers[0].linear2.in_features == 45
    assert pruned.layers[1].linear1.out_features == 47


def test_gated_mlp_prunes_gate_and_up_together():
    _, _, planted, _, pruned, _, removed = _prune_and_check(fm.gated)
    assert {k: list(v.units) for k, v in removed.items()} == planted
    assert (pruned.gate.out_features, pruned.up.out_features, pruned.down.in_features) == (29, 29, 29)


def test_conv_pool_flatten_linear_maps_a_channel_to_its_block_of_features():
    model, _, _, _, pruned, _, removed = _prune_and_check(fm.convnet)
    assert set(removed["relu"].units) == {1, 6}
    assert 3 in removed["relu2"].units
    assert pruned.conv.out_channels == 6 and pruned.bn.num_features == 6
    assert pruned.fc1.in_features == 6 * 16  # 16 pooled positions per channel
    keep = [c for c in range(8) if c not in (1, 6)]
    cols = [c * 16 + k for c in keep for k in range(16)]
    kept_rows = [r for r in range(20) if r not in removed["relu2"].units]
    assert torch.equal(pruned.fc1.weight, model.fc1.weight[kept_rows][:, cols])


def test_mobilenet_depthwise_block_and_a_relu6_stuck_where_padding_breaks_it():
    _, _, _, _, pruned, result, removed = _prune_and_check(fm.mobilenet)
    assert removed["2"].units == (3,)
    assert (pruned[0].out_channels, pruned[3].groups, pruned[3].in_channels, pruned[6].in_channels) \
        == (23, 23, 23, 23)
    assert pruned[6].bias is not None  # the depthwise path's constant went into a new bias
    assert result.widths["6"]["bias"] is True
    kept = {(k.layer, u): k.reason for k in result.kept for u in k.units}
    assert ("2", 10) in kept  # stuck at 6, but the depthwise conv's zero padding varies its value


def test_relu6_stuck_at_six_and_batchnorm_after_the_activation_fold_into_the_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU6(), nn.Linear(10, 8), nn.ReLU(),
                          nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    with torch.no_grad():
        model[0].bias[3] = -fm.DEAD  # always 6
        model[2].bias[5] = fm.DEAD   # 0, then BatchNorm turns it into a non-zero constant
        model[4].running_mean.fill_(0.3)
        model[4].bias.fill_(0.7)
    data = torch.randn(200, 6)
    report = _scan(model, data)
    pruned, result = deadrelu.prune(model, report, data)
    removed = {r.layer: r for r in result.removed}
    assert removed["1"].units == (3,) and removed["1"].values == (6.0,)
    assert 5 in removed["3"].units
    _assert_same_outputs(model, pruned, data)
    assert pruned[4].num_features == 8 - len(removed["3"].units)


def test_leaky_and_smooth_dead_units_are_kept_with_the_reason():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.LeakyReLU(0.1), nn.Linear(10, 2))
    with torch.no_grad():
        model[0].bias[2] = -5.0
    data = torch.randn(200, 6)
    report = _scan(model, data)
    assert _dead(report, "1") == [2]
    pruned, result = deadrelu.prune(model, report, data)
    assert result.units_removed == 0
    assert result.kept[0].units == (2,) and "not constant" in result.kept[0].reason
    assert pruned[0].out_features == 10


def test_a_unit_reaching_the_model_output_is_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4), nn.ReLU())
    with torch.no_grad():
        model[2].bias[1] = fm.DEAD
    data = torch.randn(200, 6)
    _, result = deadrelu.prune(model, _scan(model, data), data)
    assert [(k.layer, k.units) for k in result.kept] == [("3", (1,))]
    assert "output" in result.kept[0].reason


class _SoftmaxSide(nn.Module):
    """A softmax over the units: dropping a zero unit changes its normaliser."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 3)

    def forward(self, x):
        y = F.relu(self.fc1(x))
        return self.fc2(y) + torch.softmax(y, -1).amax(-1, keepdim=True)


class _HardCodedWidth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)).reshape(-1, 10))


@pytest.mark.parametrize(("cls", "words"), [(_SoftmaxSide, "changed the output"),
                                            (_HardCodedWidth, "forward fail")])
def test_a_prune_that_changes_the_output_is_rolled_back_and_names_the_layer(cls, words):
    torch.manual_seed(0)
    model = cls()
    with torch.no_grad():
        model.fc1.bias[4] = fm.DEAD
    data = torch.randn(200, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match=words) as info:
        deadrelu.prune(model, _scan(model, data), data)
    assert "<model>:relu" in str(info.value) and "nothing was pruned" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_guards_min_samples_unknown_glob_and_one_shot_data():
    model, data, _ = fm.gated()
    report = _scan(model, data[:50])
    with pytest.raises(ConfigError, match="only 50 samples"):
        deadrelu.prune(model, report, data[:50])
    deadrelu.prune(model, report, data[:50], min_samples=50)
    with pytest.raises(ConfigError, match="matches no activation layer"):
        deadrelu.prune(model, report, data[:50], min_samples=0, layers="nope.*")
    with pytest.raises(ConfigError, match="one-shot"):
        deadrelu.prune(model, report, iter([data[:50]]), min_samples=0)


def test_layers_glob_limits_the_prune():
    model, data, _ = fm.convnet()
    _, result = deadrelu.prune(model, _scan(model, data), data, layers="relu2")
    assert [r.layer for r in result.removed] == ["relu2"]


def test_state_dict_route_round_trips_through_load_pruned(tmp_path):
    model, data, _ = fm.mobilenet()
    pruned, result = deadrelu.prune(model, _scan(model, data), data)
    from deadrelu.fix.persist import plan_path, save_model, save_state_dict

    save_state_dict(pruned, tmp_path / "m.safetensors", result.widths)
    assert plan_path(tmp_path / "m.safetensors").exists()
    _, _, _ = fm.mobilenet()
    fresh = fm.mobilenet()[0]
    rebuilt = deadrelu.load_pruned(fresh, tmp_path / "m.safetensors")
    _assert_same_outputs(pruned, rebuilt, data)
    # without the JSON beside it, the plan in the safetensors metadata serves
    plan_path(tmp_path / "m.safetensors").unlink()
    rebuilt = deadrelu.load_pruned(lambda: fm.mobilenet()[0], tmp_path / "m.safetensors")
    _assert_same_outputs(pruned, rebuilt, data)
    # the whole-model route loads safely with deadrelu's loader and with torch.load
    save_model(pruned, tmp_path / "m.pt")
    from deadrelu.loading import load_model

    loaded = load_model(tmp_path / "m.pt").model
    _assert_same_outputs(pruned, loaded, data)
    _assert_same_outputs(pruned, torch.load(tmp_path / "m.pt", weights_only=False), data)


def test_a_model_in_train_mode_is_traced_and_measured_in_eval_mode_and_left_as_it_was():
    model, data, _ = fm.convnet()
    report = _scan(model, data)
    model.train()
    stats = model.bn.running_mean.clone()
    pruned, result = deadrelu.prune(model, report, data)
    assert torch.equal(model.bn.running_mean, stats) and model.training and pruned.training
    assert result.units_removed >= 4
    _assert_same_outputs(model, pruned, data)  # both compared in eval mode


def test_concatenated_branches_map_each_unit_to_its_offset_in_the_reader():
    model, _, planted, _, pruned, _, removed = _prune_and_check(fm.inception)
    assert {k: list(v.units) for k, v in removed.items()} == planted
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.mix.in_channels) == (5, 3, 8)
    keep = [c for c in range(11) if c not in (4, 6 + 0, 6 + 3)]
    assert torch.equal(pruned.mix.weight, model.mix.weight[:, keep])


def test_a_train_mode_report_from_a_monitor_is_refused():
    model, data, _ = fm.gated()
    report = _scan(model, data)
    from dataclasses import replace

    with pytest.raises(ConfigError, match="train mode"):
        deadrelu.prune(model, replace(report, meta={**report.meta, "mode": "train"}), data)

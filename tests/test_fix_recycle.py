"""deadrelu.recycle (ReDo): re-drawn incoming weights, zeroed outgoing weights and optimizer state,
and the network's output unchanged at the moment of recycling."""

from __future__ import annotations

import warnings

import fix_models as fm
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.errors import ConfigError


def _scan(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deadrelu.scan(model, data)


def _mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 12),
                          nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    with torch.no_grad():
        model[0].bias[[1, 4]] = fm.DEAD
        model[4].bias[[2]] = fm.DEAD
    return model


def _train_steps(model, opt, data, steps=3):
    for _ in range(steps):
        loss = model(data).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True),
    lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
])
def test_output_unchanged_weights_redrawn_and_optimizer_state_zeroed(make_opt):
    model = _mlp()
    data = torch.randn(200, 8)
    opt = make_opt(model.parameters())
    model.train()
    _train_steps(model, opt, data)
    report = _scan(model, data)
    dead1, dead2 = report.units_in_state("1", "dead"), report.units_in_state("5", "dead")
    assert {1, 4} <= set(dead1) and 2 in dead2
    snapshot = _copy(model)
    old = model[0].weight.detach().clone()
    result = deadrelu.recycle(model, report, opt, generator=torch.Generator().manual_seed(0))
    assert result.units_recycled == len(dead1) + len(dead2)
    assert {r.layer: r.units for r in result.recycled} == {"1": tuple(dead1), "5": tuple(dead2)}
    assert {r.layer: r.readers for r in result.recycled} == {"1": ("3",), "5": ("6",)}
    for mode in ("eval", "train"):  # train: BatchNorm batch statistics and the same dropout
        outputs = []
        for m in (snapshot, model):
            m = _copy(m).train(mode == "train")
            torch.manual_seed(5)
            with torch.no_grad():
                outputs.append(m(data))
        assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    # incoming weights re-drawn within the default init bound, bias 0; others untouched
    bound = 1 / 8 ** 0.5
    for unit in dead1:
        assert not torch.equal(model[0].weight[unit], old[unit])
        assert float(model[0].weight[unit].detach().abs().max()) <= bound
        assert model[0].bias[unit] == 0
        assert torch.count_nonzero(model[3].weight[:, unit]) == 0
    live = [u for u in range(16) if u not in dead1]
    assert torch.equal(model[0].weight[live], old[live])
    # BatchNorm between producer and activation reset
    for unit in dead2:
        assert (model[4].running_mean[unit], model[4].running_var[unit]) == (0, 1)
        assert (model[4].weight[unit], model[4].bias[unit]) == (1, 0)
    # optimizer moments of every touched slice are zero; others are not
    for param, index, dim in ((model[0].weight, dead1, 0), (model[0].bias, dead1, 0),
                              (model[3].weight, dead1, 1), (model[4].weight, dead2, 0)):
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"):
            buf = opt.state[param].get(key)
            if buf is None:
                continue
            assert torch.count_nonzero(buf.index_select(dim, torch.tensor(index))) == 0
    assert torch.count_nonzero(opt.state[model[0].weight][
        "momentum_buffer" if "momentum_buffer" in opt.state[model[0].weight] else "exp_avg"][live]) > 0
    # recycled units can learn again: one more step moves their incoming weights
    _train_steps(model, opt, data, steps=1)


def test_conv_flatten_linear_zeroes_each_channels_block_of_features():
    model, data, _ = fm.convnet()
    report = _scan(model, data)
    with torch.no_grad():
        before = model(data)
    result = deadrelu.recycle(model, report)
    recycled = {r.layer: r for r in result.recycled}
    assert set(recycled["relu"].units) == {1, 6}
    for c in (1, 6):
        assert torch.count_nonzero(model.fc1.weight[:, c * 16:(c + 1) * 16]) == 0
    assert torch.count_nonzero(model.fc1.weight[:, 0:16]) > 0
    with torch.no_grad():
        assert torch.allclose(model(data), before, atol=1e-6)


def test_residual_sites_and_untraceable_models_are_skipped_with_reasons():
    model, data, _ = fm.resnet()
    model.eval()
    report = _scan(model, data)
    with torch.no_grad():
        before = model(data)
    result = deadrelu.recycle(model, report)
    recycled = {r.layer for r in result.recycled}
    skipped = {s.layer: s.reason for s in result.skipped}
    assert "layer1.0.relu" in recycled and "layer2.0.relu" in recycled  # conv → bn → relu → conv
    assert "residual" in skipped["layer1.0.relu#1"]  # after the add
    with torch.no_grad():
        assert torch.allclose(model(data), before, atol=1e-5)
    model, data, _ = fm.transformer()
    result = deadrelu.recycle(model, _scan(model, data))
    assert result.units_recycled == 0 and "torch.fx" in result.skipped[0].reason


def test_gated_functional_and_output_sites():
    model, data, _ = fm.gated()
    result = deadrelu.recycle(model, _scan(model, data))
    assert result.units_recycled == 0  # the gate is multiplied with up(x): not a plain path
    assert "mul" in result.skipped[0].reason
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4), nn.ReLU())
    with torch.no_grad():
        model[2].bias[1] = fm.DEAD
    result = deadrelu.recycle(model, _scan(model, torch.randn(200, 6)))
    assert [(s.layer, "output" in s.reason) for s in result.skipped] == [("3", True)]


def test_definitions_select_dormant_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 2))
    with torch.no_grad():
        model[0].weight[3] *= 1e-4  # fires, but barely: dormant for ReDo, not dead
        model[0].bias[3] = 0.0
        model[0].bias[5] = fm.DEAD
    data = torch.randn(300, 6)
    report = _scan(model, data)
    assert deadrelu.recycle(_copy(model), report).recycled[0].units == (5,)
    redo = deadrelu.recycle(_copy(model), report, definition="redo", tau=0.025)
    assert redo.recycled[0].units == (3, 5)
    with pytest.raises(ConfigError, match="unknown definition"):
        deadrelu.recycle(model, report, definition="zombie")


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_monitor_recycle_option_recycles_at_each_report():
    model = _mlp()
    data = torch.randn(64, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with deadrelu.Monitor(model, every=1, recycle=True, optimizer=opt) as monitor:
        for _ in range(3):
            loss = model(data).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monitor.report()
    step, result = monitor.recycled[0]
    # the step of the report that found them, as in monitor.history (0-based: steps 0-2)
    assert step == monitor.history['step'].iloc[0] == 2 and result.units_recycled >= 3
    assert torch.count_nonzero(model[3].weight[:, [1, 4]]) == 0


class _Untraceable(nn.Module):
    """A wrapper fx cannot trace (it branches on data), around a network it can."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _mlp()
        self.head_act = nn.ReLU()

    def forward(self, x):
        if x.sum() > 1e9:  # data-dependent: symbolic tracing fails here
            x = x * 0
        return self.head_act(self.body(x))


def test_an_untraceable_wrapper_falls_back_to_the_traceable_module_inside():
    model = _Untraceable()
    data = torch.randn(200, 8)
    report = _scan(model, data)
    model.eval()  # dropout off: the same forward twice
    before = model(data).detach()
    result = deadrelu.recycle(model, report, generator=torch.Generator().manual_seed(0))
    # names stay the model's own, though the trace was of `body`
    assert {r.layer: (r.producer, r.readers) for r in result.recycled} == {
        "body.1": ("body.0", ("body.3",)), "body.5": ("body.3", ("body.6",))}
    assert result.units_recycled == 3
    torch.testing.assert_close(model(data), before)
    # head_act's output leaves every traceable scope: skipped with a reason, never guessed
    skipped = {s.layer: s.reason for s in result.skipped}
    assert set(skipped) <= {"head_act"}
    if skipped:
        assert "cannot trace" in skipped["head_act"]

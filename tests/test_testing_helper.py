"""``deadrelu.testing.assert_no_dead_units`` and the ``deadrelu_scan`` pytest fixture."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

from deadrelu.errors import ConfigError
from deadrelu.testing import assert_no_dead_units

pytest_plugins = ["pytester"]


def planted(dead_enc=(), dead_dec=()) -> nn.Module:
    """Sites ``enc.1`` (8 units) and ``dec.1`` (4 units); the listed units never fire."""
    model = nn.Module()
    model.enc = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    model.dec = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    with torch.no_grad():
        for layer, dead in ((model.enc[0], dead_enc), (model.dec[0], dead_dec)):
            layer.weight.uniform_(-0.01, 0.01)
            layer.bias.fill_(1.0)
            layer.bias[list(dead)] = -10.0
    model.forward = lambda x: model.dec(model.enc(x))  # type: ignore[method-assign]
    return model


DATA = torch.rand(128, 3)


def test_passes_and_returns_the_report():
    report = assert_no_dead_units(planted(), DATA)
    assert report.summary()["dead"] == 0


def test_failure_message_lists_each_offending_layer():
    with pytest.raises(AssertionError) as info:
        assert_no_dead_units(planted(dead_enc=[0, 1, 5], dead_dec=[3]), DATA, max_fraction=0.2)
    lines = str(info.value).splitlines()
    assert lines[0].endswith("have more than 20.0% dead units:")
    assert lines[0].startswith("2 layer(s) of ")
    assert lines[1].split() == ["enc.1", "3/8", "dead", "(37.5%)", "units", "0-1,", "5"]
    assert lines[2].split() == ["dec.1", "1/4", "dead", "(25.0%)", "units", "3"]
    assert lines[3] == "(scanned 128 samples; a unit is dead when it never fired on them)"


def test_within_max_fraction_passes():
    assert_no_dead_units(planted(dead_enc=[0, 1]), DATA, max_fraction=0.25)


def test_layers_limits_the_check():
    model = planted(dead_dec=[0, 1])
    assert_no_dead_units(model, DATA, layers=["enc.*"])
    assert_no_dead_units(model, DATA, layers="enc.*")
    with pytest.raises(AssertionError, match="dec.1"):
        assert_no_dead_units(model, DATA, layers=["enc.*", "dec.*"])


def test_usage_errors_are_not_assertion_failures():
    with pytest.raises(ConfigError, match=r"layers='head.\*' matches no activation layer"):
        assert_no_dead_units(planted(), DATA, layers=["head.*"])
    with pytest.raises(ConfigError, match="max_fraction must be a share"):
        assert_no_dead_units(planted(), DATA, max_fraction=5)


def test_scan_kwargs_are_passed_on():
    report = assert_no_dead_units(planted(), DATA, limit=100, batch_size=16)
    assert report.samples == 100


def test_model_is_left_as_it_was():
    model = planted(dead_enc=[0])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AssertionError):
        assert_no_dead_units(model, DATA)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- the pytest plugin ------------------------------------------------------------------------------


def _plugin_args() -> list[str]:
    # Once pyproject.toml declares the pytest11 entry point the plugin loads by itself;
    # registering it a second time with -p would be an error.
    registered = any(ep.value.startswith("deadrelu.pytest_plugin")
                     for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "deadrelu.pytest_plugin"]


TEST_FILE = """
import torch
from torch import nn

def model(dead):
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with torch.no_grad():
        m[0].weight.fill_(0.01)
        m[0].bias.fill_(1.0)
        m[0].bias[list(dead)] = -10.0
    return m

def test_alive(deadrelu_scan):
    report = deadrelu_scan(model([]), torch.rand(128, 3))
    assert report.summary()["dead"] == 0

def test_dead(deadrelu_scan):
    report = deadrelu_scan(model([1, 2]), torch.rand(128, 3))
    assert report.summary()["dead"] == 0
"""


def test_fixture_and_failure_section(pytester):
    pytester.makepyfile(test_models=TEST_FILE)
    result = pytester.runpytest(*_plugin_args(), "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_dead _*",
        "*",
        "*- deadrelu -*",
        "Sequential on 128 samples",
        "layer *units*dead*dead %",
        "1 * 4 * 2 * 50.0%",
        "total * 4 * 2 * 50.0%",
    ])
    assert sum("- deadrelu -" in line for line in result.stdout.lines) == 1  # failed test only


def test_plugin_module_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; import deadrelu.pytest_plugin; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)

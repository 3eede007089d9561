"""``deadrelu.track_checkpoints.track`` and ``deadrelu track``: ordering, one model instance, jumps, units that died."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from deadrelu.errors import CheckpointError, ConfigError
from deadrelu.loading import load_weights
from deadrelu.track_checkpoints import MODEL, Checkpoint, discover, step_of, track

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"


# -- step numbers and ordering ------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("step_100.pt", (100, "step")),
    ("epoch-3.ckpt", (3, "epoch")),
    ("ckpt_000500.pt", (500, "checkpoint")),
    ("model-00010.pt", (10, "number")),
    ("epoch=3-step=1200.ckpt", (1200, "step")),
    ("model_global_step2000.pt", (2000, "step")),
    ("iter_40.pth", (40, "iteration")),
    ("resnet50_ep12.pth", (12, "epoch")),
    ("runs/checkpoint-500/model.safetensors", (500, "checkpoint")),
    ("runs/exp2/last.ckpt", None),
    ("last.ckpt", None),
])
def test_step_of(name, expected):
    assert step_of(name) == expected


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"x")


def test_discover_orders_by_number_not_by_string(tmp_path):
    _touch(tmp_path, "step_1000.pt", "step_200.pt", "step_30.pt", "last.ckpt", "notes.txt")
    found, notes = discover(tmp_path)
    assert [c.path.name for c in found] == ["step_30.pt", "step_200.pt", "step_1000.pt"]
    assert [c.step for c in found] == [30, 200, 1000]
    assert notes == ["skipped last.ckpt: no step number in the name"]


def test_discover_by_glob_and_nested_folders(tmp_path):
    for step in (500, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
        _touch(tmp_path / f"checkpoint-{step}", "model.safetensors")
    found, _ = discover(str(tmp_path / "checkpoint-*" / "model.safetensors"))
    assert [c.step for c in found] == [100, 500]


@pytest.mark.parametrize("names, needle", [
    (["step_1.pt"], "found 1 checkpoint with a step number"),
    (["a.pt", "b.pt"], "found 0 checkpoints"),
    (["step_1.pt", "ema_step_1.pt"], "both have step 1"),
])
def test_discover_refuses(tmp_path, names, needle):
    _touch(tmp_path, *names)
    with pytest.raises(CheckpointError, match=needle):
        discover(tmp_path)


def test_discover_nothing_there(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint files"):
        discover(tmp_path)
    with pytest.raises(CheckpointError, match="no files match"):
        discover(str(tmp_path / "*.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        discover(tmp_path / "nope")


# -- a planted run: units killed at a known step --------------------------------------------------

DIED_AT_400 = {"enc.1": [1, 4, 6], "dec.1": [2]}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(8, 4), nn.ReLU())

    def forward(self, x):
        return self.dec(self.enc(x))


def _planted_series(folder: Path) -> list[Path]:
    """Five checkpoints of one 'run'. What an LR spike does to a ReLU unit is planted
    directly: between step 300 and step 400 a huge update drives the biases of the units in
    DIED_AT_400 far negative, so they never fire again; unit 0 of enc.1 is dead throughout."""
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for layer in (net.enc[0], net.dec[0]):
            layer.weight.uniform_(-0.1, 0.1)
            layer.bias.fill_(0.5)
        net.enc[0].bias[0] = -10.0
    paths = []
    for step in (100, 200, 300, 400, 500):
        with torch.no_grad():
            if step == 400:
                for name, units in DIED_AT_400.items():
                    layer = net.get_submodule(name.replace(".1", ".0"))
                    layer.bias[units] = -10.0
            net.enc[0].weight.add_(0.001)  # small drift, like ordinary training
        path = folder / f"step_{step}.pt"
        torch.save(net.state_dict(), path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    _planted_series(folder)
    # scrambled names order: step_1000-style string sorting would be wrong anyway
    return folder


def test_track_names_the_step_and_units_that_died(planted):
    data = torch.rand(200, 4)
    trend = track(Net(), planted, data)
    assert trend.steps == [100, 200, 300, 400, 500]
    assert trend.jump_step == 400 and trend.first_jump == (300, 400)
    jumps = {t.layer: t for t in trend.jumps}
    assert set(jumps) == {"enc.1", "dec.1"}
    for layer, units in DIED_AT_400.items():
        assert (jumps[layer].from_step, jumps[layer].to_step) == (300, 400)
        assert list(jumps[layer].died) == units
    # units dead throughout never "die" again; nothing revives
    moves = [t for t in trend.transitions if t.died or t.revived]
    assert [(t.layer, t.to_step, t.died) for t in moves] == [
        ("enc.1", 400, (1, 4, 6)), ("dec.1", 400, (2,))]
    table = trend.table()
    assert list(table.index) == ["enc.1", "dec.1", MODEL]
    assert table.loc["enc.1", 300] == 1 / 8 and table.loc["enc.1", 400] == 4 / 8
    assert table.loc[MODEL, 400] == 5 / 12


def test_track_reuses_one_model_instance(planted):
    model = Net()
    seen = []
    loads = []
    original = model.load_state_dict

    def spy_load(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    model.load_state_dict = spy_load  # type: ignore[method-assign]

    def fake_scan(m, data, **kwargs):
        from deadrelu.scanning import scan

        seen.append(id(m))
        return scan(m, data, **kwargs)

    track(model, planted, torch.rand(128, 4), scan_fn=fake_scan)
    assert seen == [id(model)] * 5 and len(loads) == 5
    # it ends holding the last checkpoint's weights
    last = torch.load(planted / "step_500.pt")
    assert torch.equal(model.enc[0].bias, last["enc.0.bias"])


def test_trend_writers(planted, tmp_path):
    trend = track(Net(), planted, torch.rand(128, 4))
    frame = pd.read_csv(trend.write_csv(tmp_path / "t.csv"))
    assert list(frame.columns) == ["step", "checkpoint", "layer", "units", "dead",
                                   "dead_fraction", "died", "revived"]
    assert len(frame) == 5 * 3
    row = frame[(frame.step == 400) & (frame.layer == "enc.1")].iloc[0]
    assert (row.dead, row.died, row.revived) == (4, 3, 0)
    data = json.loads(trend.write_json(tmp_path / "t.json").read_text())
    assert data["jump_step"] == 400
    assert data["jumps"][0] == {"layer": "enc.1", "from_step": 300, "to_step": 400,
                                "before": 0.125, "after": 0.5, "change": 0.375,
                                "died": [1, 4, 6], "revived": []}
    assert isinstance(data["rows"][0]["dead"], int)


def test_no_jump_below_the_threshold(planted):
    trend = track(Net(), planted, torch.rand(128, 4), min_jump=0.5)
    assert trend.jumps == [] and trend.jump_step is None
    assert [t.died for t in trend.transitions if t.died]  # units still died, just no "jump"


def test_plot(planted, tmp_path):
    pytest.importorskip("matplotlib")
    trend = track(Net(), planted, torch.rand(128, 4))
    png = trend.plot(tmp_path / "trend.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in trend.plot(tmp_path / "trend.svg").read_bytes()[:500]
    with pytest.raises(ConfigError, match="unknown image type .gif"):
        trend.plot(tmp_path / "trend.gif")


def test_plot_without_matplotlib_says_what_to_install(planted, tmp_path, monkeypatch):
    import sys

    trend = track(Net(), planted, torch.rand(128, 4))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'deadrelu\[plot\]'"):
        trend.plot(tmp_path / "trend.png")


def test_one_shot_iterator_is_refused(planted):
    with pytest.raises(ConfigError, match="one-shot iterator"):
        track(Net(), planted, iter([torch.rand(8, 4)]))


def test_load_weights_refuses_a_mismatched_checkpoint(planted, tmp_path):
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(other, planted / "step_100.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(Net(), tmp_path / "nope.pt")


def test_load_weights_nested_and_prefixed(planted, tmp_path):
    state = torch.load(planted / "step_300.pt")
    path = tmp_path / "epoch_3.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = Net()
    notes = load_weights(model, path)
    assert torch.equal(model.enc[0].bias, state["enc.0.bias"])
    assert any("state_dict" in n for n in notes) and any("module." in n for n in notes)


def test_checkpoint_objects_are_accepted(planted):
    ckpts = [Checkpoint(planted / f"step_{s}.pt", s) for s in (300, 100, 200)]
    assert track(Net(), ckpts, torch.rand(128, 4)).steps == [100, 200, 300]


# -- the sample run: a real learning-rate spike between step 300 and 400 -------------------------


@pytest.mark.skipif(not (SM / "series" / "step_500.pt").exists(), reason="sample models not built")
def test_cli_track_names_the_spike_in_the_sample_series(capsys, tmp_path):
    from deadrelu.cli import main

    main(["track", str(SM / "series"), "--arch", f"{SM / 'models.py'}:DigitsMLP",
          "--data", str(SM / "data" / "digits_test.npy"), "--csv", str(tmp_path / "t.csv"),
          "--json", str(tmp_path / "t.json")])
    out, err = capsys.readouterr()
    assert "=> units first died between step 300 and step 400" in out
    assert "  net.1: step 300 -> 400: dead 3.9% -> 90.6% (+86.7 pp), 111 unit(s) died:" in out
    assert "[5/5] scanning" in err
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["jump_step"] == 400
    # the trend agrees with the brute-force counts written when the series was trained
    metrics = json.loads((SM / "metrics.json").read_text())["series"]["checkpoints"]
    frame = pd.read_csv(tmp_path / "t.csv")
    for entry in metrics:
        for layer, (dead, units) in entry["dead_test"].items():
            row = frame[(frame.step == entry["step"]) & (frame.layer == layer)].iloc[0]
            assert (row.dead, row.units) == (dead, units)


@pytest.mark.skipif(not (SM / "series" / "step_500.pt").exists(), reason="sample models not built")
def test_cli_track_quiet_prints_one_line(capsys):
    from deadrelu.cli import main

    main(["track", str(SM / "series"), "--arch", f"{SM / 'models.py'}:DigitsMLP",
          "--data", str(SM / "data" / "digits_test.npy"), "--quiet"])
    out, err = capsys.readouterr()
    assert out.strip().splitlines() == [
        "5 checkpoints, steps 100..500: units first died between step 300 and step 400 "
        "(net.1, net.3, net.5)"]
    assert err == ""


def test_cli_track_errors_are_one_line(capsys, tmp_path):
    from deadrelu.cli import main

    _touch(tmp_path, "last.ckpt")
    with pytest.raises(SystemExit) as info:
        main(["track", str(tmp_path), "--data", "x.npy"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "found 0 checkpoints" in err


def test_cli_track_never_writes_over_its_config_file(capsys, tmp_path):
    from deadrelu.cli import main

    config = tmp_path / "deadrelu.toml"
    config.write_text("[tool.deadrelu]\nrare = 0.02\n")
    with pytest.raises(SystemExit) as info:
        main(["track", str(SM / "series"), "--arch", f"{SM / 'models.py'}:DigitsMLP",
              "--data", str(SM / "data" / "digits_test.npy"), "--config", str(config),
              "--csv", str(config), "--quiet"])
    assert info.value.code == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert config.read_text() == "[tool.deadrelu]\nrare = 0.02\n"


def test_cli_track_plot_without_matplotlib_fails_before_scanning(capsys, tmp_path, monkeypatch):
    import sys

    from deadrelu import scanning
    from deadrelu.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned before checking the plot extra")

    monkeypatch.setattr(scanning, "scan", no_scan)
    with pytest.raises(SystemExit) as info:
        main(["track", str(SM / "series"), "--arch", f"{SM / 'models.py'}:DigitsMLP",
              "--data", str(SM / "data" / "digits_test.npy"), "--plot",
              str(tmp_path / "trend.png")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: plotting needs matplotlib, which is not installed — "
                   "pip install 'deadrelu[plot]'\n")
    assert not (tmp_path / "trend.png").exists()


def test_the_old_module_path_still_imports() -> None:
    # docs before the rename showed deadrelu.track.track(model, "runs/a", data)
    import deadrelu.track as old
    import deadrelu.track_checkpoints as new

    assert old.track is new.track and old.Trend is new.Trend and old.discover is new.discover

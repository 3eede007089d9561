"""The commands hand their options on by name (``deadrelu.cli.settings``): check the names.

``scan``, ``check``, ``track`` and ``prune`` pass ``dict(locals())`` to
:func:`~deadrelu.cli.settings.load_options` and
:func:`~deadrelu.cli.settings.command_settings`, which read the parameters named in
``LOAD_PARAMS`` and ``SETTINGS_PARAMS``. A parameter declared under another name
would be dropped silently; these tests make that a failure.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from deadrelu.cli import check, prune, scan, track
from deadrelu.cli.settings import LOAD_PARAMS, SETTINGS_PARAMS, command_settings, load_options
from deadrelu.config import Config
from deadrelu.errors import ConfigError
from deadrelu.loading import LoadOptions

#: Option alias (as written in the command's signature) → the parameter name it must have.
ALIASES = {
    "ModelArg": "model", "DataOpt": "data", "ArchOpt": "arch", "WeightsArchOpt": "arch",
    "ArchKwargsOpt": "arch_kwargs", "ImportPathOpt": "import_path",
    "TrustCheckpointOpt": "trust_checkpoint", "WeightsTrustOpt": "trust_checkpoint",
    "BatchSizeOpt": "batch_size", "LimitOpt": "limit", "ImageSizeOpt": "image_size",
    "NormalizeOpt": "normalize", "TargetOpt": "target", "ChannelsOpt": "channels",
    "TokenizerOpt": "tokenizer", "TextColumnOpt": "text_column", "MaxLengthOpt": "max_length",
    "DtypeOpt": "dtype", "DeviceMapOpt": "device_map", "CenterCropOpt": "center_crop",
    "ConfigOpt": "config", "RareOpt": "rare", "AlwaysOnOpt": "always_on",
    "SaturatedOpt": "saturated", "DormancyOpt": "dormancy", "TauOpt": "tau",
    "DeviceOpt": "device", "SelectOpt": "select", "IgnoreOpt": "ignore",
}
COMMANDS = [scan.scan_command, check.check_command, track.track_command, prune.prune_command]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_every_loading_option_has_the_name_the_settings_read(command) -> None:
    for name, param in inspect.signature(command).parameters.items():
        alias = str(param.annotation)
        if alias in ALIASES:
            assert name == ALIASES[alias], f"{command.__name__}: {alias} declared as {name!r}"
            assert name in (*LOAD_PARAMS, *SETTINGS_PARAMS)


def test_every_name_read_is_an_option() -> None:
    assert set(LOAD_PARAMS) | set(SETTINGS_PARAMS) == set(ALIASES.values())


def test_load_options_reads_every_load_param(tmp_path: Path) -> None:
    values = {
        "model": "m.pt", "data": "d/", "arch": "m.py:Net", "arch_kwargs": '{"w": 2}',
        "import_path": [Path("src")], "trust_checkpoint": True, "batch_size": 8, "limit": 100,
        "image_size": "32", "normalize": "imagenet", "target": "y", "channels": 3,
        "tokenizer": Path("tok"), "text_column": "text", "max_length": 16, "dtype": "float16",
        "device_map": "auto", "center_crop": "224",
        "rare": "5%", "quiet": True,  # not loading options: ignored
    }
    assert set(values) >= set(LOAD_PARAMS)
    config = Config(source=tmp_path / "pyproject.toml")
    opts = load_options(values, config, device="cpu")
    assert opts == LoadOptions(
        model=Path("m.pt"), data="d/", arch="m.py:Net", arch_kwargs={"w": 2},
        import_paths=(Path("src"),), trust_checkpoint=True, batch_size=8, limit=100,
        image_size="32", normalize="imagenet", target="y", channels=3,
        config_file=tmp_path / "pyproject.toml", tokenizer=Path("tok"), text_column="text",
        max_length=16, dtype="float16", device_map="auto", device="cpu", center_crop="224",
        normalize_given=True,
    )


def test_load_options_defaults_come_from_the_config() -> None:
    opts = load_options({"model": "m.pt", "data": "d/", "batch_size": None, "limit": None},
                        Config(batch_size=16, limit=50))
    assert (opts.batch_size, opts.limit, opts.normalize, opts.normalize_given) == (16, 50, "none", False)
    assert load_options({"model": "m.pt", "data": "d/"}).batch_size == 64
    with pytest.raises(ConfigError, match="--batch-size 0 is not positive"):
        load_options({"model": "m.pt", "data": "d/", "batch_size": 0})
    with pytest.raises(ConfigError, match="--arch-kwargs"):
        load_options({"model": "m.pt", "data": "d/", "arch_kwargs": "[1]"})


def test_command_settings_reads_the_flags(tmp_path: Path) -> None:
    config = tmp_path / "deadrelu.toml"
    config.write_text('rare = 0.2\nexclude-layers = ["head.*"]\n')
    settings = command_settings({"config": config, "always_on": "90%", "device": "cpu",
                                 "model": "ignored.pt"})
    assert settings.thresholds.rare == 0.2 and settings.thresholds.always_on == 0.9
    assert settings.device == "cpu"
    assert settings.scan_kwargs()["exclude_layers"] == ("head.*",)

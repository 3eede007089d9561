from pathlib import Path

import pytest

from deadrelu.config import find_config, load_config
from deadrelu.errors import ConfigError

GOOD = """
[project]
name = "x"

[tool.deadrelu]
rare = 0.05
always-on = 0.95
dormancy = "dohare"
select = ["DR0"]
ignore = ["DR008"]
exclude-layers = ["head*"]
batch-size = 32

[tool.deadrelu.per-layer-ignores]
"fc_out*" = ["DR005"]

[tool.deadrelu.unit-axis]
"enc.*" = -1

[tool.deadrelu.check]
max-dead = "5%"
baseline = "base.json"

[tool.deadrelu.check.max-dead-layer]
"enc.*" = "20%"
"""


def test_found_from_subdirectory_and_parsed(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(GOOD)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert find_config(sub) == tmp_path / "pyproject.toml"
    cfg = load_config(start=sub)
    t = cfg.make_thresholds()
    assert (t.rare, t.always_on, t.dormancy) == (0.05, 0.95, "dohare")
    assert cfg.make_thresholds(rare=0.2).rare == 0.2  # CLI flag overrides
    assert cfg.select == ("DR0",) and cfg.ignore == ("DR008",)
    assert cfg.per_layer_ignores == {"fc_out*": ("DR005",)}
    assert cfg.unit_axis == {"enc.*": -1} and cfg.batch_size == 32
    assert cfg.check["max_dead"] == "5%"
    assert cfg.check["baseline"] == str(tmp_path / "base.json")
    assert cfg.check["max_dead_layer"] == {"enc.*": "20%"}


def test_no_config_is_empty(tmp_path: Path):
    cfg = load_config(start=tmp_path)
    assert cfg.source is None and cfg.make_thresholds().rare == 0.01


@pytest.mark.parametrize("body, needle", [
    ("rarre = 0.1", "unknown key 'rarre'"),
    ("rare = 2.0", "rare=2.0 is outside"),
    ("select = 3", "select must be a list"),
    ("batch-size = 0", "batch-size must be an integer"),
    ("[tool.deadrelu.check]\nmax-ded = 1", "unknown key 'max-ded'"),
])
def test_bad_keys_and_values_are_named(tmp_path: Path, body: str, needle: str):
    text = "[tool.deadrelu]\n" + body if not body.startswith("[") else "[tool.deadrelu]\n" + body
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(start=tmp_path)


def test_explicit_config_file(tmp_path: Path):
    f = tmp_path / "deadrelu.toml"
    f.write_text("rare = 0.2\n")
    assert load_config(f).make_thresholds().rare == 0.2
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_config_from_an_empty_non_regular_file_is_empty(tmp_path: Path):
    """``--config /dev/null`` means "no settings", not "does not exist"."""
    null = Path("/dev/null")
    if not null.exists():
        pytest.skip("no /dev/null here")
    cfg = load_config(null)
    assert cfg.select is None and cfg.ignore == () and cfg.source == null
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_ignore_flag_adds_to_the_config_files_ignore_select_replaces(tmp_path: Path):
    from deadrelu.cli.settings import load_settings

    config = tmp_path / "deadrelu.toml"
    config.write_text('select = ["DR0"]\nignore = ["DR010"]\n')
    settings = load_settings(config, select=["DR001,dr002"], ignore=["DR004", "DR005"])
    assert settings.config.ignore == ("DR010", "DR004", "DR005")
    assert settings.config.select == ("DR001", "DR002")
    assert load_settings(config).config.ignore == ("DR010",)

"""Command-line values → :class:`ScanSettings` (how to scan) and :class:`LoadOptions` (what to load).

The commands that load a model (``scan``, ``check``, ``track``, ``prune``) declare
their options in :mod:`deadrelu.cli.options` and hand their parameters here as one
mapping (``dict(locals())`` at the top of the command), so the dozen loading options
are read in one place instead of being forwarded by hand in every command. A
command declares the subset it offers; :data:`LOAD_PARAMS` and :data:`SETTINGS_PARAMS`
name the parameters read (``tests/test_cli_options.py`` checks that every command
spells them so).

Config (``[tool.deadrelu]``, see :mod:`deadrelu.config`) is read by
:func:`load_settings`; a flag given on the command line always wins over the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.analyzer import Thresholds
    from deadrelu.config import Config
    from deadrelu.loading.options import LoadOptions

#: Command parameters read into :class:`~deadrelu.loading.LoadOptions` (by these names).
LOAD_PARAMS = (
    "model", "data", "arch", "arch_kwargs", "import_path", "trust_checkpoint", "batch_size",
    "limit", "image_size", "normalize", "target", "channels", "tokenizer", "text_column",
    "max_length", "dtype", "device_map", "center_crop",
)
#: Command parameters read by :func:`load_settings` (by these names).
SETTINGS_PARAMS = ("config", "rare", "always_on", "saturated", "dormancy", "tau", "device",
                   "select", "ignore")


# -- parsing ---------------------------------------------------------------------------------


def parse_share(value: str | float | None, option: str) -> float | None:
    """``"5%"`` → 0.05, ``"0.05"`` → 0.05, ``None`` → ``None``.

    Raises:
        ConfigError: not a number, or outside [0, 1].
    """
    from deadrelu.errors import ConfigError

    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        share = float(value)
    else:
        text = str(value).strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"{option} {value!r} is not a share",
                              f"write e.g. {option} 0.01 or {option} 1%") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{option} {value!r} is outside 0..1 (0%..100%)",
                          f"write e.g. {option} 0.01 or {option} 1%")
    return share


def parse_arch_kwargs(value: str | None) -> dict[str, Any] | None:
    """The ``--arch-kwargs`` JSON object as a dict.

    Raises:
        ConfigError: not JSON, or JSON that is not an object.
    """
    from deadrelu.errors import ConfigError

    if value is None or not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--arch-kwargs {value!r} is not valid JSON ({exc.msg})",
                          'write a JSON object, e.g. --arch-kwargs \'{"hidden": 256}\'') from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"--arch-kwargs {value!r} is a JSON {type(parsed).__name__}, not an object",
                          'write a JSON object, e.g. --arch-kwargs \'{"hidden": 256}\'')
    return parsed


# -- settings: config file + flags -----------------------------------------------------------


def load_config_file(path: Path | None) -> Config:
    """``[tool.deadrelu]`` from ``--config`` or the nearest pyproject.toml (empty if none)."""
    from deadrelu.config import load_config

    return load_config(path)


@dataclass(frozen=True)
class ScanSettings:
    """Everything about *how* to scan, after merging the config file with the flags.

    Attributes:
        thresholds: the analyzer thresholds.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        unit_axis: site-name glob → unit dimension (config only).
        saturation_margin: sigmoid/tanh saturation band (config only).
        config: the config file's settings (diagnosis selection, check gates...).
    """

    thresholds: Thresholds
    device: str
    unit_axis: Mapping[str, int]
    saturation_margin: float
    config: Config

    def scan_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`deadrelu.scan` (and :func:`~deadrelu.cli.running.run_scan`)
        besides the thresholds and the device: rule selection and ``exclude-layers``
        happen inside the scan, so they survive merges and re-diagnosis."""
        from deadrelu.diagnose.selection import Selection

        cfg = self.config
        selection = None
        if cfg.select is not None or cfg.ignore or cfg.per_layer_ignores:
            selection = Selection.from_options(cfg.select, cfg.ignore, cfg.per_layer_ignores)
        return {"unit_axis": dict(self.unit_axis) or None,
                "saturation_margin": self.saturation_margin, "selection": selection,
                "exclude_layers": cfg.exclude_layers}


def load_settings(
    config: Path | None = None,
    *,
    rare: str | float | None = None,
    always_on: str | float | None = None,
    saturated: str | float | None = None,
    dormancy: Enum | str | None = None,
    tau: float | None = None,
    device: str | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
) -> ScanSettings:
    """Merge ``[tool.deadrelu]`` with command-line flags (flags win; ``None`` = not given).

    Raises:
        ConfigError: a malformed config file or flag value.
    """
    from deadrelu.errors import ConfigError

    cfg = load_config_file(config)
    # As in ruff: --select replaces the file's select, --ignore adds to its ignore.
    extra_ignore = _codes(ignore)
    cfg = cfg.with_overrides(select=_codes(select),
                             ignore=(*cfg.ignore, *extra_ignore) if extra_ignore else None)
    if tau is not None and tau < 0:
        raise ConfigError(f"--tau {tau} is negative", "ReDo uses 0, 0.025 or 0.1")
    thresholds = cfg.make_thresholds(
        rare=parse_share(rare, "--rare"),
        always_on=parse_share(always_on, "--always-on"),
        saturated=parse_share(saturated, "--saturated"),
        dormancy=dormancy.value if isinstance(dormancy, Enum) else dormancy,
        tau=tau,
    )
    margin = cfg.saturation_margin if cfg.saturation_margin is not None else 0.01
    return ScanSettings(thresholds, device or cfg.device or "auto", dict(cfg.unit_axis),
                        margin, cfg)


def _codes(values: list[str] | None) -> tuple[str, ...] | None:
    """``["DR001,DR002", "DR01"]`` → ``("DR001", "DR002", "DR01")``; ``None`` when not given."""
    if not values:
        return None
    return tuple(code.strip().upper() for value in values for code in value.split(",")
                 if code.strip())




def command_settings(params: Mapping[str, Any]) -> ScanSettings:
    """:func:`load_settings` from a command's parameters (:data:`SETTINGS_PARAMS` it declares)."""
    return load_settings(**{k: params[k] for k in SETTINGS_PARAMS if k in params})


def load_options(params: Mapping[str, Any], config: Config | None = None,
                 **overrides: Any) -> LoadOptions:
    """A :class:`~deadrelu.loading.LoadOptions` from a command's parameters.

    Reads the :data:`LOAD_PARAMS` the command declares (``overrides`` win: ``track``
    names the model file it found, ``scan`` and ``check`` the device); parses the
    strings; ``batch_size``/``limit`` fall back to the config, then the defaults.

    Raises:
        ConfigError: bad ``--arch-kwargs`` JSON or a non-positive number.
    """
    from deadrelu.errors import ConfigError
    from deadrelu.loading.options import LoadOptions

    values = {**{k: params[k] for k in LOAD_PARAMS if k in params}, **overrides}
    batch_size = values.pop("batch_size", None)
    limit = values.pop("limit", None)
    if batch_size is None:
        batch_size = config.batch_size if config and config.batch_size else 64
    if limit is None and config is not None:
        limit = config.limit
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} is not positive", "pass --batch-size 1 or more")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} is not positive", "pass --limit 1 or more, or leave it out")
    normalize = values.pop("normalize", None)
    return LoadOptions(
        model=Path(values.pop("model")),
        arch_kwargs=parse_arch_kwargs(values.pop("arch_kwargs", None)),
        import_paths=tuple(Path(p) for p in values.pop("import_path", None) or ()),
        batch_size=batch_size, limit=limit,
        normalize=normalize or "none", normalize_given=normalize is not None,
        config_file=config.source if config is not None else None,
        **values,
    )

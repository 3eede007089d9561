"""``[tool.deadrelu]`` configuration, found like ruff finds ``[tool.ruff]``.

Lookup: ``--config FILE`` if given, else the nearest ``pyproject.toml`` from the
current directory upwards that has a ``[tool.deadrelu]`` table. CLI flags
override file values. Keys may be written ``kebab-case`` or ``snake_case``;
an unknown key is an error that names it (a typo must never be ignored
silently). Example::

    [tool.deadrelu]
    rare = 0.01                 # thresholds (see deadrelu.Thresholds)
    always-on = 0.99
    saturated = 0.99
    dormancy = "redo"           # redo | dohare | dead
    tau = 0.025
    saturation-margin = 0.01
    select = ["DR"]             # rule codes or prefixes to report
    ignore = ["DR008"]
    exclude-layers = ["head.*"] # sites never diagnosed nor gated
    batch-size = 128
    device = "auto"

    [tool.deadrelu.per-layer-ignores]
    "fc_out*" = ["DR005"]

    [tool.deadrelu.unit-axis]
    "encoder.*" = -1

    [tool.deadrelu.check]       # gates for `deadrelu check`
    max-dead = "5%"
    fail-on = ["error"]
    max-increase = "2%"
    baseline = "reports/baseline.json"   # relative to this file

    [tool.deadrelu.check.max-dead-layer]
    "encoder.*" = "20%"
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deadrelu.errors import ConfigError

_THRESHOLD_KEYS = ("rare", "always_on", "saturated", "dormancy", "tau", "dohare")
_CHECK_KEYS = ("max_dead", "max_dead_layer", "fail_on", "baseline", "max_increase", "exit_zero")


@dataclass(frozen=True)
class Config:
    """Settings from ``[tool.deadrelu]`` (all optional).

    Attributes:
        thresholds: keyword arguments for :class:`deadrelu.Thresholds` that were set.
        saturation_margin: sigmoid/tanh saturation band.
        select, ignore: rule codes or prefixes (``None`` select: all rules).
        per_layer_ignores: site-name glob → codes ignored there.
        exclude_layers: site-name globs left out of diagnosis and gates.
        unit_axis: site-name glob → unit dimension.
        batch_size, limit, device: scan defaults.
        check: gate settings for ``deadrelu check`` (keys in snake_case, values as written).
        source: the file the settings came from, if any.
    """

    thresholds: Mapping[str, Any] = field(default_factory=dict)
    saturation_margin: float | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    per_layer_ignores: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    exclude_layers: tuple[str, ...] = ()
    unit_axis: Mapping[str, int] = field(default_factory=dict)
    batch_size: int | None = None
    limit: int | None = None
    device: str | None = None
    check: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def make_thresholds(self, **overrides: Any) -> Any:
        """A :class:`deadrelu.Thresholds` from file values with non-``None`` overrides applied."""
        from deadrelu.analyzer import Thresholds

        values = dict(self.thresholds)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Thresholds(**values)

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy where every non-``None`` override replaces the file value."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _toml_load(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.object[exc.start:exc.start + 1]!r})",
                          "save it as UTF-8, as TOML requires") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", "check the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", "fix the TOML syntax") from exc


def _norm(key: str) -> str:
    return key.replace("-", "_")


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` with a ``[tool.deadrelu]`` table."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                if "deadrelu" in _toml_load(candidate).get("tool", {}):
                    return candidate
            except ConfigError:
                # a broken unrelated pyproject must not stop the search, but a broken
                # deadrelu table must not be skipped silently either
                if _mentions_deadrelu(candidate):
                    raise
                continue
    return None


def _mentions_deadrelu(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "[tool.deadrelu" in text.replace(" ", "")


def load_config(path: str | Path | None = None, *, start: Path | None = None) -> Config:
    """Load settings from ``path`` (or the nearest pyproject.toml); empty :class:`Config` if none.

    Raises:
        ConfigError: the file is missing or malformed, a key is unknown or a value has the wrong type.
    """
    if path is not None:
        p = Path(path)
        # Not is_file(): /dev/null or a pipe (<(echo ...)) is a fine, if unusual, config.
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist", "check the --config path")
        if p.is_dir():
            raise ConfigError(f"config file {p} is a directory",
                              "pass a pyproject.toml or TOML file, e.g. --config pyproject.toml")
        data = _toml_load(p)
        table = data.get("tool", {}).get("deadrelu", data if p.name != "pyproject.toml" else None)
        if table is None:
            raise ConfigError(f"{p} has no [tool.deadrelu] table", "add one, or drop --config")
        return parse_config(table, source=p)
    found = find_config(start)
    if found is None:
        return Config()
    return parse_config(_toml_load(found)["tool"]["deadrelu"], source=found)


def _strings(key: str, value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}{key} must be a list of strings, got {value!r}",
                          f'write e.g. {key} = ["DR001"]')
    return tuple(value)


def _int(key: str, value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise ConfigError(f"{where}{key} must be an integer{f' ≥ {minimum}' if minimum is not None else ''}, "
                          f"got {value!r}", f"write e.g. {key} = {max(minimum or 0, 1)}")
    return value


def _known_items(table: Mapping[str, Any], known: Sequence[str], where: str,
                 section: str) -> Iterator[tuple[str, str, Any]]:
    """``(key as written, key in snake_case, value)`` for each entry of ``table``.

    Raises:
        ConfigError: a key that is not in ``known``, named with the keys there are
            (a typo must never be ignored silently).
    """
    for raw_key, value in table.items():
        key = _norm(raw_key)
        if key not in known:
            raise ConfigError(f"{where}unknown key {raw_key!r} in {section}",
                              f"known keys: {', '.join(k.replace('_', '-') for k in known)}")
        yield raw_key, key, value


def parse_config(table: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate a ``[tool.deadrelu]`` table into a :class:`Config`."""
    where = f"{source}: " if source else ""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}[tool.deadrelu] must be a table", "see docs/cli.md for the keys")
    known = sorted({f.name for f in fields(Config)} - {"thresholds", "source"} | set(_THRESHOLD_KEYS))
    kwargs: dict[str, Any] = {"source": source}
    thresholds: dict[str, Any] = {}
    for raw_key, key, value in _known_items(table, known, where, "[tool.deadrelu]"):
        if key in _THRESHOLD_KEYS:
            thresholds[key] = value
        elif key in ("select", "ignore", "exclude_layers"):
            kwargs[key] = _strings(raw_key, value, where)
        elif key == "per_layer_ignores":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}per-layer-ignores must be a table of glob = [codes]",
                                  '[tool.deadrelu.per-layer-ignores] "head.*" = ["DR005"]')
            kwargs[key] = {g: _strings(f"per-layer-ignores.{g}", v, where) for g, v in value.items()}
        elif key == "unit_axis":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}unit-axis must be a table of glob = dim",
                                  '[tool.deadrelu.unit-axis] "encoder.*" = -1')
            kwargs[key] = {g: _int(f"unit-axis.{g}", v, where) for g, v in value.items()}
        elif key in ("batch_size", "limit"):
            kwargs[key] = _int(raw_key, value, where, minimum=1)
        elif key == "device":
            if not isinstance(value, str):
                raise ConfigError(f"{where}device must be a string, got {value!r}", 'write device = "auto"')
            kwargs[key] = value
        elif key == "saturation_margin":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}saturation-margin must be a number, got {value!r}",
                                  "write e.g. saturation-margin = 0.01")
            kwargs[key] = float(value)
        elif key == "check":
            kwargs[key] = _parse_check(value, where, source)
    config = Config(thresholds=thresholds, **kwargs)
    if thresholds:
        try:  # validate values now, with the file named in the error
            config.make_thresholds()
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc.problem}", exc.fix) from exc
    return config


def _parse_check(value: Any, where: str, source: Path | None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}[tool.deadrelu.check] must be a table", "see docs/ci.md for the keys")
    out: dict[str, Any] = {}
    for raw_key, key, v in _known_items(value, _CHECK_KEYS, where, "[tool.deadrelu.check]"):
        if key == "fail_on":
            v = _strings(raw_key, v, where)
        elif key == "max_dead_layer" and not isinstance(v, Mapping):
            raise ConfigError(f"{where}check.max-dead-layer must be a table of glob = limit",
                              '[tool.deadrelu.check.max-dead-layer] "encoder.*" = "20%"')
        elif key == "exit_zero" and not isinstance(v, bool):
            raise ConfigError(f"{where}check.exit-zero must be true or false, got {v!r}",
                              "write exit-zero = true")
        elif key == "baseline":
            if not isinstance(v, str):
                raise ConfigError(f"{where}check.baseline must be a path string, got {v!r}",
                                  'write baseline = "reports/baseline.json"')
            base = source.parent if source else Path.cwd()
            v = str(base / v)  # relative to the config file; an absolute v wins
        out[key] = dict(v) if isinstance(v, Mapping) else v
    return out

"""Which rules run: ``select``, ``ignore`` and per-layer ignores, as in ruff.

A selector is a full code (``DR004``), a code prefix (``DR00`` selects DR001–DR009)
or ``ALL``. ``select`` picks the rules (default: all), ``ignore`` removes rules
from that set, and ``per_layer_ignores`` maps a site-name glob (``fnmatch``, e.g.
``"head.*"`` or ``"net.5"``) to selectors that are dropped for findings on
matching layers. Model-wide findings (``layer`` is ``None``) are only subject to
``select``/``ignore``.

A selector that matches no rule is an error naming it, so a typo never silences
nothing quietly. Torch-free.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deadrelu.errors import ConfigError


def _as_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what} must be a list of rule codes, got {value!r}",
                          'write e.g. ["DR001", "DR010"]')
    return tuple(v.strip().upper() for v in value)


@dataclass(frozen=True)
class Selection:
    """Rule selection. See the module docstring.

    Attributes:
        select: selectors of the rules to run; ``None`` means all rules.
        ignore: selectors of rules never to report.
        per_layer_ignores: site-name glob → selectors not reported on matching layers.
    """

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    per_layer_ignores: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        select: Iterable[str] | str | None = None,
        ignore: Iterable[str] | str | None = None,
        per_layer_ignores: Mapping[str, Iterable[str] | str] | None = None,
    ) -> Selection:
        """Build and validate a selection from config-style values (raises :class:`ConfigError`)."""
        sel = cls(
            None if select is None else _as_tuple(select, "select"),
            _as_tuple(ignore, "ignore"),
            {str(glob): _as_tuple(codes, f"per-layer-ignores[{glob!r}]")
             for glob, codes in (per_layer_ignores or {}).items()},
        )
        sel.validate()
        return sel

    @classmethod
    def coerce(cls, value: Selection | Mapping[str, Any] | None) -> Selection | None:
        """A :class:`Selection` from itself, its :meth:`to_dict` form, or ``None``."""
        if value is None or isinstance(value, Selection):
            if value is not None:
                value.validate()
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"selection must be a Selection or a mapping, got {type(value).__name__}",
                              "pass Selection.from_options(select=..., ignore=...)")
        known = {"select", "ignore", "per_layer_ignores", "per-layer-ignores"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown selection key {unknown[0]!r}",
                              "use select, ignore and per_layer_ignores")
        return cls.from_options(
            value.get("select"), value.get("ignore"),
            value.get("per_layer_ignores", value.get("per-layer-ignores")),
        )

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a selector that matches no known rule."""
        from deadrelu.diagnose.registry import RULES

        codes = RULES.codes()
        groups = [("select", self.select or ()), ("ignore", self.ignore)]
        groups += [(f"per-layer-ignores[{g!r}]", s) for g, s in self.per_layer_ignores.items()]
        for where, selectors in groups:
            for selector in selectors:
                if not _matching(selector, codes):
                    raise ConfigError(
                        f"{where}: {selector!r} matches no rule",
                        f"known rules: {', '.join(codes)} (see `deadrelu rules`)",
                    )

    def enabled(self, code: str, layer: str | None = None) -> bool:
        """Whether a finding with ``code`` on ``layer`` is reported."""
        if self.select is not None and not any(_matches(s, code) for s in self.select):
            return False
        if any(_matches(s, code) for s in self.ignore):
            return False
        if layer is not None:
            for glob, selectors in self.per_layer_ignores.items():
                if fnmatch.fnmatchcase(layer, glob) and any(_matches(s, code) for s in selectors):
                    return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in ``report.meta["selection"]``."""
        return {
            "select": None if self.select is None else list(self.select),
            "ignore": list(self.ignore),
            "per_layer_ignores": {g: list(s) for g, s in self.per_layer_ignores.items()},
        }


def excluding(selection: Selection | None, globs: Sequence[str] | str) -> Selection:
    """``selection`` with every rule ignored on the layers matching ``globs``.

    The one meaning of ``exclude_layers`` (``exclude-layers`` in ``[tool.deadrelu]``),
    shared by :func:`deadrelu.scan` and :class:`deadrelu.Monitor`: the same as
    ``per_layer_ignores={glob: ["ALL"]}``, so the findings on those layers are never
    reported while their statistics stay in the report.

    Raises:
        ConfigError: ``globs`` is not a glob or a list of them.
    """
    given: tuple[Any, ...] = (globs,) if not isinstance(globs, (list, tuple, set, frozenset)) \
        else tuple(globs)
    if not all(isinstance(g, str) for g in given):
        raise ConfigError(f"exclude_layers must be a list of site-name globs, got {globs!r}",
                          'pass e.g. exclude_layers=["head.*"]')
    base = selection or Selection()
    ignores = dict(base.per_layer_ignores)
    for glob in given:
        ignores[glob] = (*ignores.get(glob, ()), "ALL")
    return Selection(base.select, base.ignore, ignores)


def _matches(selector: str, code: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def _matching(selector: str, codes: Iterable[str]) -> list[str]:
    return [c for c in codes if _matches(selector, c)]

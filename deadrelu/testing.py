"""Assertions for test suites: fail a test when a model has dead units.

::

    from deadrelu.testing import assert_no_dead_units

    def test_encoder_is_alive(model, val_batches):
        assert_no_dead_units(model, val_batches, max_fraction=0.05, layers=["encoder.*"])

The message lists every offending layer with its dead fraction, so a failing
test says what is wrong without re-running anything. With pytest, the
``deadrelu_scan`` fixture (:mod:`deadrelu.pytest_plugin`) does the same scan and
adds the layer table to a failing test's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from deadrelu.report import Report

__all__ = ["assert_no_dead_units", "dead_units_message"]


def assert_no_dead_units(
    model: nn.Module,
    data: Any,
    max_fraction: float = 0.0,
    layers: str | Sequence[str] | None = None,
    **scan_kwargs: Any,
) -> Report:
    """Scan ``model`` on ``data`` and fail if a layer has more than ``max_fraction`` dead units.

    Args:
        model: the network (its weights and train/eval mode are left as they were).
        data: anything :func:`deadrelu.scan` accepts (tensor, DataLoader, iterable of batches).
        max_fraction: the largest allowed share of dead units per layer, in [0, 1]
            (``0.0``: no dead unit at all).
        layers: site-name globs to check (``"encoder.*"``); default: every layer.
        **scan_kwargs: passed to :func:`deadrelu.scan` (``limit``, ``thresholds``...).

    Returns:
        The report, for further checks, when every checked layer passes.

    Raises:
        AssertionError: some layer is over the limit; the message lists each one with its
            dead units and fraction.
        ConfigError: ``max_fraction`` is out of range, or a ``layers`` glob matches no layer.
    """
    import fnmatch

    from deadrelu.errors import ConfigError
    from deadrelu.gates import Gates, LayerLimit, evaluate
    from deadrelu.scanning import scan

    __tracebackhide__ = True  # pytest: show the assertion message, not this helper's source
    if isinstance(max_fraction, bool) or not isinstance(max_fraction, (int, float)) \
            or not 0 <= max_fraction <= 1:
        raise ConfigError(f"max_fraction must be a share in [0, 1], got {max_fraction!r}",
                          "pass e.g. max_fraction=0.05 for 5%")
    patterns = [layers] if isinstance(layers, str) else list(layers or ["*"])
    report = scan(model, data, **scan_kwargs)
    names = [site.info.name for site in report.sites]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"layers={pattern!r} matches no activation layer of the model",
                              f"use one of: {', '.join(names[:12])}" + (" ..." if len(names) > 12 else ""))
    gates = Gates(max_dead_layer=tuple(LayerLimit(p, float(max_fraction)) for p in patterns))
    outcome = evaluate(report, gates)
    if not outcome.passed:
        raise AssertionError(dead_units_message(report, outcome.failures, max_fraction))
    return report


def dead_units_message(report: Report, failures: Sequence[Any], max_fraction: float) -> str:
    """The multi-line failure message: one line per offending layer, then how many samples."""
    lines = [f"{len(failures)} layer(s) of {report.meta.get('model', 'the model')} have more than "
             f"{max_fraction * 100:.1f}% dead units:"]
    from deadrelu.gates import units_list

    width = max(len(str(r.layer)) for r in failures)
    for r in failures:
        dead = report.units_in_state(r.layer, "dead")
        units = report.site(r.layer).info.units
        lines.append(f"  {r.layer:<{width}}  {len(dead):>5}/{units:<5} dead "
                     f"({r.actual * 100:.1f}%)  units {units_list(dead, limit=8)}")
    lines.append(f"(scanned {report.samples:,} samples; a unit is dead when it never fired on them)")
    return "\n".join(lines)

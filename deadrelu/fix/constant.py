"""Which units of a scanned site output one exact constant on every position it saw.

Only these can be removed without changing the network on that data: their
contribution to every consumer is a constant, which folds into the consumer's bias.

* A dead ReLU (never fired) outputs exactly 0; a dead ReLU6 also 0; a dead clipped
  ReLU (``hardtanh`` with ``min_val >= 0``) exactly ``min_val``. Read from the
  counters: ``active == 0`` and, since these kinds never go below their level, the
  output equals the level everywhere.
* A ReLU6 or clipped ReLU saturated at every position outputs exactly its upper bound.
* Other kinds that "die" (leaky ReLU, GELU, SiLU, ELU...) keep a non-constant output
  for negative inputs: they are listed as not removable, with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from deadrelu.collector import Site

#: Kinds whose output below the firing level is exactly the level.
_FLOORED = frozenset({"relu", "relu6", "hardtanh"})
#: Kinds whose output at the upper saturation bound is exactly that bound.
_CAPPED = frozenset({"relu6", "hardtanh"})


@dataclass(frozen=True)
class ConstantUnits:
    """The constant units of one site.

    Attributes:
        values: unit index → the constant it output everywhere.
        varying: units the report calls dead whose output is nonetheless not constant
            (a leaky or smooth activation), which pruning must leave alone.
    """

    values: dict[int, float]
    varying: tuple[int, ...]


def constant_units(site: Site) -> ConstantUnits:
    """The units of ``site`` whose output was one exact constant on all scanned data."""
    info, stats = site.info, site.stats
    if stats.positions <= 0:
        return ConstantUnits({}, ())
    active = stats.tensors["active"].numpy()
    nonfinite = stats.tensors["nonfinite"].numpy()
    saturated = stats.tensors["saturated"].numpy()
    peak = stats.tensors["max"].numpy()
    values: dict[int, float] = {}
    varying: list[int] = []
    floored = info.kind in _FLOORED and info.can_die and info.nonneg
    for unit in range(info.units):
        if nonfinite[unit] > 0:
            continue
        if active[unit] == 0:
            if floored and peak[unit] <= info.level:
                values[unit] = float(info.level)
            elif info.can_die:
                varying.append(unit)
        elif (info.kind in _CAPPED and info.sat_high is not None
              and saturated[unit] == stats.positions):
            values[unit] = float(info.sat_high)
    return ConstantUnits(values, tuple(varying))

"""Classify units from their counters. Pure: reads statistics, never a model.

Unit states, first match wins:

========== ==================================================================
nonfinite  the unit produced NaN/Inf on some sample (never read as "not firing")
dead       can-die kinds (ReLU family): never fired on the data seen
rare       can-die kinds: fired in fewer than ``rare`` of the samples
saturated  bounded kinds: in a flat region at ≥ ``saturated`` of positions
always_on  can-die kinds: fired at ≥ ``always_on`` of positions (acts linearly)
healthy    none of the above
========== ==================================================================

Published dormancy definitions, selectable by name (:data:`DORMANCY`):

* ``redo`` — Sokar et al. 2023: ``s_i = E|h_i| / (mean_k E|h_k| + 1e-9)``,
  dormant when ``s_i <= tau`` (τ = 0.025 by default; 0 and 0.1 are also used).
* ``dohare`` — Dohare et al. 2024: active on fewer than ``dohare`` (1%) of the
  (sample × position) pairs.
* ``dead`` — the classic definition: never active.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

import numpy as np

from deadrelu.errors import ConfigError

#: Confidence used for "the smallest fire rate the scan can rule out".
CONFIDENCE = 0.95


def rule_out_rate(samples: int, confidence: float = CONFIDENCE) -> float:
    """Smallest fire rate that ``samples`` samples with no firing rule out (≈ 3/n at 95%).

    A unit firing with probability p stays unseen in n samples with probability
    (1 - p)^n; that drops below 1 - confidence once p > 1 - (1 - confidence)^(1/n).
    """
    if samples <= 0:
        return 1.0
    return 1.0 - (1.0 - confidence) ** (1.0 / samples)


def samples_needed(rate: float, confidence: float = CONFIDENCE) -> int:
    """Samples needed so that a unit unseen firing fires on fewer than ``rate`` of inputs."""
    if rate <= 0:
        return 0
    if rate >= 1:
        return 1
    return math.ceil(math.log(1.0 - confidence) / math.log(1.0 - rate))


class UnitState(str, Enum):
    """The verdict on one unit."""

    NONFINITE = "nonfinite"
    DEAD = "dead"
    RARE = "rare"
    SATURATED = "saturated"
    ALWAYS_ON = "always_on"
    HEALTHY = "healthy"

    def __str__(self) -> str:
        return self.value


DORMANCY = ("redo", "dohare", "dead")


@dataclass(frozen=True)
class Thresholds:
    """Analyzer settings, all shares in [0, 1].

    Attributes:
        rare: a unit firing in fewer than this share of samples is ``rare`` (default 1%).
        always_on: a ReLU-family unit firing at ≥ this share of positions is ``always_on``.
        saturated: a bounded unit in its flat region at ≥ this share of positions is ``saturated``.
        dormancy: the published definition used for the ``dormant`` columns: ``redo``,
            ``dohare`` or ``dead``.
        tau: ReDo's τ for ``dormancy="redo"``.
        dohare: the activity share below which a unit is dormant for ``dormancy="dohare"``.
    """

    rare: float = 0.01
    always_on: float = 0.99
    saturated: float = 0.99
    dormancy: str = "redo"
    tau: float = 0.025
    dohare: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dormancy":
                if value not in DORMANCY:
                    raise ConfigError(
                        f"unknown dormancy definition {value!r}",
                        f"use one of: {', '.join(DORMANCY)}",
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"threshold {f.name} must be a number, got {value!r}",
                                  "give a share between 0 and 1, e.g. 0.01")
            if not 0.0 <= float(value) <= 1.0 and f.name != "tau":
                raise ConfigError(f"threshold {f.name}={value} is outside [0, 1]",
                                  "give a share between 0 and 1, e.g. 0.01 for 1%")
            if f.name == "tau" and value < 0:
                raise ConfigError(f"tau must be ≥ 0, got {value}", "ReDo uses 0, 0.025 or 0.1")
            if f.name in ("always_on", "saturated") and float(value) <= 0.5:
                # at or below one half, "almost always" would call a typical unit always-on
                raise ConfigError(f"threshold {f.name}={value} must be above 0.5",
                                  f"it is the share of positions that counts as almost all, "
                                  f"e.g. {f.name}=0.99")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown threshold {unknown[0]!r}",
                              f"known thresholds: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> Thresholds:
        return replace(self, **changes)


@dataclass(frozen=True)
class UnitVerdicts:
    """Per-unit derived numbers of one site (numpy arrays of length ``units``)."""

    fire_rate: np.ndarray
    sample_fire_rate: np.ndarray
    saturated_rate: np.ndarray
    mean: np.ndarray
    mean_abs: np.ndarray
    redo_score: np.ndarray
    state: np.ndarray  # of UnitState values (str)
    dormant: np.ndarray  # bool, by Thresholds.dormancy


def _rate(num: np.ndarray, den: int) -> np.ndarray:
    return num / den if den > 0 else np.zeros_like(num, dtype=float)


def redo_scores(abs_sum: np.ndarray, positions: int) -> np.ndarray:
    """Sokar et al.'s per-unit score: mean |h| over the layer's average mean |h|."""
    mean_abs = _rate(abs_sum, positions)
    return mean_abs / (mean_abs.mean() + 1e-9) if mean_abs.size else mean_abs


def classify(counters: dict[str, Any], can_die: bool, bounded: bool, thresholds: Thresholds) -> UnitVerdicts:
    """Derive rates, states and dormancy for one site.

    Args:
        counters: ``UnitStats.to_dict()``-style mapping (arrays or lists per counter).
        can_die: the kind has a flat region below zero (dead/rare/always_on apply).
        bounded: the kind saturates (saturated applies).
        thresholds: the verdict thresholds.
    """
    positions = int(counters["positions"])
    samples = int(counters["samples"])
    active = np.asarray(counters["active"], dtype=float)
    fire_rate = _rate(active, positions)
    sample_fire_rate = _rate(np.asarray(counters["sample_active"], dtype=float), samples)
    saturated_rate = _rate(np.asarray(counters["saturated"], dtype=float), positions)
    abs_sum = np.asarray(counters["abs_sum"], dtype=float)
    mean = _rate(np.asarray(counters["sum"], dtype=float), positions)
    mean_abs = _rate(abs_sum, positions)
    redo = redo_scores(abs_sum, positions)
    nonfinite = np.asarray(counters["nonfinite"], dtype=float) > 0

    state = np.full(active.shape, UnitState.HEALTHY.value, dtype=object)
    seen = positions > 0
    if bounded and seen:
        state[saturated_rate >= thresholds.saturated] = UnitState.SATURATED.value
    if can_die and seen:
        on = (fire_rate >= thresholds.always_on) & (state == UnitState.HEALTHY.value)
        state[on] = UnitState.ALWAYS_ON.value
        state[sample_fire_rate < thresholds.rare] = UnitState.RARE.value
        state[active == 0] = UnitState.DEAD.value
    state[nonfinite] = UnitState.NONFINITE.value

    if thresholds.dormancy == "redo":
        dormant = redo <= thresholds.tau
    elif thresholds.dormancy == "dohare":
        dormant = fire_rate < thresholds.dohare
    else:
        dormant = active == 0
    if not seen:
        dormant = np.zeros(active.shape, dtype=bool)
    return UnitVerdicts(fire_rate, sample_fire_rate, saturated_rate, mean, mean_abs, redo,
                        state, dormant & ~nonfinite)

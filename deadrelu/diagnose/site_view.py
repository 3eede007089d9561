"""One activation site as the rules see it: its verdicts joined with its weight evidence.

Pure and torch-free. :class:`SiteView` derives the per-site facts several rules
quote (weight growth against PyTorch's default init, a bias trace, the saturated
share) and the phrases that name the site and its fixes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.analyzer import UnitState, UnitVerdicts
from deadrelu.diagnose.criteria import (
    BIAS_GROWTH,
    COLLAPSE_ABS,
    DEFAULT_INIT_NORM,
    FLAT_RELU_KINDS,
    GROWTH,
    GROWTH_NO_BIAS,
    LARGE_INIT,
)
from deadrelu.wording import num

if TYPE_CHECKING:
    from deadrelu.collector import SiteInfo


@dataclass(eq=False)
class SiteView:
    """One site as the rules see it: info, verdicts and its weight evidence."""

    info: SiteInfo
    verdicts: UnitVerdicts
    samples: int
    evidence: Mapping[str, Any]
    layer: Mapping[str, Any] | None
    norm: Mapping[str, Any] | None
    dead_causes: dict[str, np.ndarray] = field(default_factory=dict)
    saturation_causes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def units(self) -> int:
        return self.info.units

    def indices(self, state: UnitState) -> np.ndarray:
        return np.flatnonzero(self.verdicts.state == state.value)

    @cached_property
    def dead(self) -> np.ndarray:
        return self.indices(UnitState.DEAD)

    @cached_property
    def saturated(self) -> np.ndarray:
        return self.indices(UnitState.SATURATED)

    @cached_property
    def always_on(self) -> np.ndarray:
        return self.indices(UnitState.ALWAYS_ON)

    @property
    def all_dead(self) -> bool:
        return self.info.can_die and self.units > 0 and len(self.dead) == self.units

    @property
    def direct(self) -> bool:
        return bool(self.evidence.get("direct"))

    # -- weights ------------------------------------------------------------------------

    @cached_property
    def weight_norm(self) -> np.ndarray | None:
        values = self.layer.get("weight_norm") if self.layer else None
        return np.asarray(values, dtype=float) if values is not None else None

    @cached_property
    def bias(self) -> np.ndarray | None:
        values = self.layer.get("bias") if self.layer else None
        return np.asarray(values, dtype=float) if values is not None else None

    @property
    def weight_norm_median(self) -> float | None:
        wn = self.weight_norm
        return float(np.median(wn)) if wn is not None and wn.size else None

    @property
    def fan_in(self) -> int:
        return int(self.layer.get("fan_in", 0)) if self.layer else 0

    @property
    def init(self) -> dict[str, Any] | None:
        """The layer's scale at the model's own initialization, when the model has one
        (:func:`deadrelu.evidence.init_reference`); ``None``: PyTorch's default init."""
        found = self.layer.get("init") if self.layer else None
        return found if isinstance(found, dict) and found.get("weight_norm") else None

    # Two references. Shrinking (weight decay) is judged against where the layer started:
    # the model's own init when it has one. Growth (the trace of large updates) is judged
    # against the larger of that and PyTorch's default scale, since growing from a small
    # init (normal(0, 0.02) in transformers) up to that natural scale is ordinary training.

    @property
    def shrink_norm(self) -> float:
        """Median incoming row norm at initialization: the model's own, else 1/√3."""
        return float(self.init["weight_norm"]) if self.init else DEFAULT_INIT_NORM

    @property
    def shrink_name(self) -> str:
        return "the model's own init" if self.init else "PyTorch's default init"

    @property
    def growth_norm(self) -> float:
        return max(self.shrink_norm, DEFAULT_INIT_NORM)

    @property
    def growth_name(self) -> str:
        return "the model's own init" if self.shrink_norm > DEFAULT_INIT_NORM else \
            "PyTorch's default init"

    @property
    def collapse_abs(self) -> float:
        """A row norm this small has collapsed: ``COLLAPSE_ABS`` at PyTorch's default init,
        the same share (1/20) of the model's own init scale otherwise."""
        return COLLAPSE_ABS * self.shrink_norm / DEFAULT_INIT_NORM

    @property
    def weight_growth(self) -> float | None:
        """Median incoming row norm over :attr:`growth_norm`."""
        wn = self.weight_norm
        return float(np.median(wn)) / self.growth_norm if wn is not None and wn.size else None

    @property
    def weight_shrink(self) -> float | None:
        """Median incoming row norm over :attr:`shrink_norm` (≤ ``SHRUNK``: the layer shrank)."""
        wn = self.weight_norm
        return float(np.median(wn)) / self.shrink_norm if wn is not None and wn.size else None

    @property
    def bias_growth(self) -> float | None:
        """Mean |bias| over that at initialization: PyTorch's default U(±1/√fan_in) gives
        0.5/√fan_in (also the reference when the model's own init is smaller or zero)."""
        b = self.bias
        if b is None or not b.size or self.fan_in <= 0:
            return None
        reference = 0.5 / math.sqrt(self.fan_in)
        if self.init and self.init.get("bias_abs"):
            reference = max(reference, float(self.init["bias_abs"]))
        return float(np.mean(np.abs(b))) / reference

    @property
    def update_trace(self) -> bool:
        """The layer's biases (or weights and biases) grew far beyond the default init scale."""
        gw, gb = self.weight_growth, self.bias_growth
        if gw is None:
            return False
        if gb is None:
            return gw >= GROWTH_NO_BIAS
        return gb >= BIAS_GROWTH or (gw >= GROWTH and gb >= GROWTH)

    @property
    def bias_floor(self) -> float:
        """Twice the most negative bias PyTorch's default init draws (-1/√fan_in)."""
        return -2.0 / math.sqrt(self.fan_in) if self.fan_in > 0 else -math.inf

    def pinned_by_bias(self, units: np.ndarray) -> np.ndarray:
        """Per unit: bias below :attr:`bias_floor` and more negative than the weight norm."""
        if self.bias is None or self.weight_norm is None:
            return np.zeros(len(units), dtype=bool)
        b = self.bias[units]
        return (b <= self.bias_floor) & (b <= -self.weight_norm[units])

    @property
    def saturated_share(self) -> float:
        """Share of all positions of the site in a flat region (mean of the per-unit rates)."""
        rates = self.verdicts.saturated_rate
        return float(np.mean(rates)) if rates.size else 0.0

    @property
    def mean_abs(self) -> float:
        """Average over units of the mean |output|."""
        values = self.verdicts.mean_abs
        return float(np.mean(values)) if values.size else 0.0

    # -- phrases for messages -----------------------------------------------------------

    @property
    def label(self) -> str:
        """```net.1` (nn.ReLU)`` or ```<model>:relu` (F.relu)``."""
        cls = self.evidence.get("activation_class")
        return f"`{self.name}` ({cls or self.info.op})"

    @property
    def layer_label(self) -> str | None:
        path = self.evidence.get("layer")
        return f"`{path}` ({self.layer['class']})" if path and self.layer else None

    @property
    def norm_label(self) -> str | None:
        path = self.evidence.get("norm")
        return f"`{path}` ({self.norm['class']})" if path and self.norm else None

    def replace_with(self, new_module: str, new_function: str) -> str:
        """"replace X with Y" naming the module, or the call site of a functional activation."""
        if self.info.op == "module":
            return f"replace {self.label} with {new_module}"
        owner = self.info.module
        where = "the model's forward" if owner == "<model>" else f"`{owner}`'s forward"
        cls = self.evidence.get("owner_class")
        if cls and owner != "<model>":
            where += f" ({cls})"
        call_site = self.evidence.get("call_site")
        if call_site:
            where += f" at {call_site}"
        return f"replace the `{self.info.op}` call in {where} (site `{self.name}`) with {new_function}"

    @property
    def flat_band(self) -> str:
        """Where a bounded activation's output is flat: ``output ≤ 0.01 or ≥ 0.99``."""
        lo, hi = self.info.sat_low, self.info.sat_high
        if lo is not None and hi is not None:
            return f"output ≤ {num(lo)} or ≥ {num(hi)}"
        if hi is not None:
            return f"output at its ceiling {num(hi)}"
        return f"output at its floor {num(lo or 0.0)}"

    def scale_fix(self) -> str | None:
        """Re-initialization advice when the feeding layer's weights or biases are far above default."""
        gw, gb = self.weight_growth, self.bias_growth
        large = []
        if gw is not None and gw >= LARGE_INIT:
            large.append(f"weights are {gw:.1f}×")
        if gb is not None and gb >= LARGE_INIT:
            large.append(f"biases are {gb:.1f}×")
        if not large or not self.layer_label:
            return None
        # calculate_gain only knows nonlinearity names; 'linear' gives gain 1.0
        gain = {"sigmoid": "sigmoid", "tanh": "tanh"}.get(self.info.kind, "linear")
        return (f"re-initialize {self.layer_label}: nn.init.xavier_uniform_(w, "
                f"gain=nn.init.calculate_gain('{gain}')) and zero biases (its "
                f"{' and its '.join(large)} {self.growth_name} scale)")

    def leaky_fix(self) -> str | None:
        """The LeakyReLU swap, for ReLU-like kinds only."""
        if self.info.kind not in FLAT_RELU_KINDS:
            return None
        return self.replace_with("nn.LeakyReLU(0.01)", "F.leaky_relu(x, 0.01)")

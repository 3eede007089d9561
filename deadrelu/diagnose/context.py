"""What the rules read: a report's verdicts joined with its weight evidence. Pure, torch-free.

:class:`Context` is built once per diagnosis. It decides, for every dead unit,
which cause the evidence points to, so that each dead unit is explained by at
most one rule. The order is fixed, most specific evidence first:

1. ``output_activation`` — the site's output is the model's output (ReLU family).
2. ``normalization`` — a BatchNorm feeds the site directly and its shift pins the
   channel: ``beta <= -BN_PIN * |gamma|`` (the BN output sits ≥2σ below zero).
3. ``weight_decay`` — the unit's incoming weight norm collapsed: at most
   ``COLLAPSE_RATIO`` of the median of the layer's live units, or below
   ``COLLAPSE_ABS`` outright; or the whole layer's weights shrank to at most
   ``SHRUNK``× PyTorch's default init scale.
4. ``input_scale`` — the input is far from zero mean / unit scale, the first site
   has dead or saturated units, and the site is the first one or follows it through
   sites whose mean |output| stays ≥ ``INPUT_FAR`` (the large scale propagates).
5. ``learning_rate`` — a trace of large updates on a directly fed Linear/Conv whose
   dead units have negative biases: the layer's biases grew ≥ ``BIAS_GROWTH``× beyond
   PyTorch's default init (mean |b| of U(±1/√fan_in)), or its weights and biases both
   grew ≥ ``GROWTH``× (weights alone ≥ ``GROWTH_NO_BIAS``× for a layer without bias);
   or, per unit, a bias below ``-2/√fan_in`` (twice the most negative default init)
   that also exceeds the unit's weight norm.
6. ``unexplained`` — none of the above.

Saturation (bounded kinds, never the output site) is a problem for a site when
some unit is in state ``saturated`` or at least ``SAT_LAYER`` of all its
positions are in the flat region; it goes to ``input_scale`` on the sites of
step 4, else to ``saturation``.

Sites after the first entirely dead layer whose units all have fire rate exactly
0 or 1 see a constant input; they are *consequences* and get no findings of their own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.analyzer import UnitState, UnitVerdicts
from deadrelu.diagnose.datameta import InputSummary, input_summary, output_is_constant, output_range
from deadrelu.findings import Severity

if TYPE_CHECKING:
    from deadrelu.collector import SiteInfo
    from deadrelu.diagnose.subject import Subject

#: A finding covering at least this share of a layer's units is an error...
ERROR_SHARE = 0.25
#: ...at least this share a warning, below it info.
WARNING_SHARE = 0.05
#: Incoming weight row norm of PyTorch's default Linear/Conv init (kaiming_uniform_(a=√5)): 1/√3.
DEFAULT_INIT_NORM = 1.0 / math.sqrt(3.0)
#: Weights and biases this many times the default init scale are a trace of large updates...
GROWTH = 2.0
#: ...as are biases alone this many times it.
BIAS_GROWTH = 3.0
#: Without a bias, weights alone must have grown this much (He init already gives ≈2.45×).
GROWTH_NO_BIAS = 3.0
#: A BatchNorm channel with ``beta <= -BN_PIN * |gamma|`` is pinned below zero.
BN_PIN = 2.0
#: A layer whose median weight row norm is at most this multiple of the default init has
#: shrunk as a whole (weight decay); its dead units are put down to weight decay.
SHRUNK = 0.3
#: Weight scales from this multiple of the default init up to ``GROWTH`` read as "normal".
NORMAL_LOW = 0.5
#: A dead unit's weight norm at most this share of the live units' median has collapsed...
COLLAPSE_RATIO = 0.1
#: ...as has any row norm below this (1/20 of the default init scale).
COLLAPSE_ABS = 0.03
#: A bounded site with at least this share of all positions saturated has a saturation problem.
SAT_LAYER = 0.5
#: Input far from normalized: some feature's |mean| or std at least this...
INPUT_FAR = 3.0
#: ...or the overall std at most this (and not zero).
INPUT_TINY = 0.01
#: Activations whose negative region is exactly flat (a ReLU on the output clips it to ≥ 0).
FLAT_RELU_KINDS = frozenset({"relu", "relu6", "threshold", "hardtanh"})
#: Kinds whose negative side is a line with a (possibly learned, possibly negative) slope.
SLOPED_KINDS = frozenset({"prelu", "rrelu", "leaky_relu"})
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


def pct(share: float) -> str:
    """A share as a short percentage: ``19%``, ``0.83%``."""
    value = 100.0 * share
    if value == 0 or value >= 10:
        return f"{value:.0f}%"
    return f"{value:.2g}%"


def pct_beside(share: float, other: float) -> str:
    """``share`` as a percentage with enough digits to differ from ``pct(other)``."""
    for digits in range(2, 7):
        a, b = f"{100.0 * share:.{digits}g}%", f"{100.0 * other:.{digits}g}%"
        if a != b:
            return a
    return pct(share)


def num(x: float) -> str:
    """A number in three significant digits, signed with a true minus sign when negative."""
    if math.isnan(x) or math.isinf(x):
        return f"{x}"
    text = f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"
    return text.replace("-", "−")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 unit``, ``3 units``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def severity_for(share: float) -> Severity:
    """error at ≥ ERROR_SHARE of a layer's units, warning at ≥ WARNING_SHARE, else info."""
    if share >= ERROR_SHARE:
        return Severity.ERROR
    if share >= WARNING_SHARE:
        return Severity.WARNING
    return Severity.INFO


def unit_list(indices: np.ndarray | list[int], limit: int = 32) -> list[int]:
    """JSON-ready unit indices, at most ``limit`` of them."""
    return [int(i) for i in list(indices)[:limit]]


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
    def weight_growth(self) -> float | None:
        """Median incoming row norm over PyTorch's default-init norm (1/√3)."""
        wn = self.weight_norm
        return float(np.median(wn)) / DEFAULT_INIT_NORM if wn is not None and wn.size else None

    @property
    def bias_growth(self) -> float | None:
        """Mean |bias| over that of PyTorch's default init (U(±1/√fan_in): 0.5/√fan_in)."""
        b = self.bias
        if b is None or not b.size or self.fan_in <= 0:
            return None
        return float(np.mean(np.abs(b))) / (0.5 / math.sqrt(self.fan_in))

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

    def leaky_fix(self) -> str | None:
        """The LeakyReLU swap, for ReLU-like kinds only."""
        if self.info.kind not in FLAT_RELU_KINDS:
            return None
        return self.replace_with("nn.LeakyReLU(0.01)", "F.leaky_relu(x, 0.01)")


class Context:
    """A diagnosis subject prepared for the rules (see the module docstring)."""

    def __init__(self, subject: Subject) -> None:
        self.thresholds = subject.thresholds
        #: how the model was trained, from its checkpoint (see deadrelu.loading.recipe)
        recipe = subject.recipe
        self.recipe: Mapping[str, Any] | None = recipe if isinstance(recipe, Mapping) else None
        #: dead units per site in freshly initialized copies (deadrelu.init_compare), per run
        init = subject.init
        init_layers = init.get("layers") if isinstance(init, Mapping) else None
        self.init_dead: dict[str, list[int]] = (
            {str(k): [int(x) for x in v] for k, v in init_layers.items()}
            if isinstance(init_layers, Mapping) else {})
        self.init_method: str = str(init.get("method", "")) if isinstance(init, Mapping) else ""
        evidence = subject.evidence or {}
        self.evidence: Mapping[str, Any] = evidence
        layers: Mapping[str, Any] = evidence.get("layers") or {}
        site_ev: Mapping[str, Any] = evidence.get("sites") or {}
        verdicts = subject.verdicts
        self.sites: list[SiteView] = []
        for s in subject.sites:
            ev = site_ev.get(s.info.name) or {}
            layer = layers.get(str(ev.get("layer"))) if ev.get("layer") else None
            norm = layers.get(str(ev.get("norm"))) if ev.get("norm") else None
            if not ev.get("direct"):
                layer = norm = None  # an op between (e.g. a residual sum): the weights alone do not decide
            if layer is not None and int(layer.get("units", -1)) != s.info.units:
                layer = None
            if norm is not None and int(norm.get("units", -1)) != s.info.units:
                norm = None
            self.sites.append(SiteView(s.info, verdicts[s.info.name], s.stats.samples, ev, layer, norm))
        self.by_name = {v.name: v for v in self.sites}
        self.samples = subject.samples
        self.rule_out = rule_out_rate(self.samples)
        self.input: InputSummary | None = input_summary(subject.data)
        self.output_constant = output_is_constant(subject.data)
        self.output_range = output_range(subject.data)
        #: which site made the model's output and whether directly (``{"producer", "direct"}``)
        self.output: Mapping[str, Any] = subject.output or {}
        producer = self.output.get("producer")
        self.output_site: SiteView | None = self.by_name.get(producer) if producer else None
        self.first_site: SiteView | None = self.sites[0] if self.sites else None
        self.first_dead: SiteView | None = next((v for v in self.sites if v.all_dead), None)
        self.consequences: list[SiteView] = self._consequences()
        consequence_names = {v.name for v in self.consequences}
        self.diagnosable = [v for v in self.sites if v.name not in consequence_names]
        self.input_chain: list[SiteView] = self._input_chain()
        for view in self.diagnosable:
            self._assign(view)

    # -- model-wide facts -----------------------------------------------------------------

    @property
    def input_far(self) -> bool:
        """The input is far from zero mean / unit scale (see :data:`INPUT_FAR`)."""
        s = self.input
        if s is None:
            return False
        _, m = s.worst_mean
        _, sd = s.worst_std
        return abs(m) >= INPUT_FAR or sd >= INPUT_FAR or 0.0 < s.std <= INPUT_TINY

    def _input_chain(self) -> list[SiteView]:
        """Sites that the unnormalized input reaches at full scale (module docstring, step 4)."""
        if not self.input_far or not self.sites:
            return []
        first = self.sites[0]
        bounded = first.info.sat_low is not None or first.info.sat_high is not None
        saturating = bounded and (len(first.saturated) > 0 or first.saturated_share >= SAT_LAYER)
        if not (first.info.can_die and len(first.dead)) and not saturating:
            return []  # the first layer copes with the input: no evidence against its scale
        chain = [first]
        for view in self.sites[1:]:
            if chain[-1].mean_abs < INPUT_FAR:
                break
            chain.append(view)
        return chain

    def _consequences(self) -> list[SiteView]:
        first = self.first_dead
        if first is None:
            return []
        out = []
        for v in self.sites:
            if v.info.order <= first.info.order or not v.units:
                continue
            fr = v.verdicts.fire_rate
            if np.all((fr == 0.0) | (fr == 1.0)):
                out.append(v)
        return out

    def consequence_text(self, view: SiteView) -> str:
        """What an entirely dead layer does to the rest of the network, from the evidence."""
        before = [v for v in self.sites if v.info.order < view.info.order]
        text = "no gradient passes back through it"
        if before:
            text += f", so the {len(before)} activation site{'s' if len(before) != 1 else ''} before it stop learning"
        if self.consequences:
            n = len(self.consequences)
            text += f"; the {n} site{'s' if n != 1 else ''} after it see a constant input"
        if self.output_constant:
            text += "; the model's output is the same for every input"
        elif self.output_range is not None:
            text += "; the output still varies, so a skip path bypasses it"
        return text

    # -- per-unit causes ------------------------------------------------------------------

    def _assign(self, view: SiteView) -> None:
        dead = view.dead
        if len(dead) and view.info.can_die:
            view.dead_causes = self._dead_causes(view, dead)
        sat = view.saturated
        bounded = view.info.sat_low is not None or view.info.sat_high is not None
        problem = len(sat) > 0 or view.saturated_share >= SAT_LAYER
        # a tanh/sigmoid inside an inline composite (x * sigmoid(1.702 * x)) saturates by
        # design wherever the composite is linear or zero: not a problem of its own
        inline = view.info.part_of is not None
        if bounded and problem and view is not self.output_site and not inline:
            key = "input_scale" if view in self.input_chain else "saturation"
            view.saturation_causes = {key: sat}

    def _dead_causes(self, view: SiteView, dead: np.ndarray) -> dict[str, np.ndarray]:
        causes: dict[str, np.ndarray] = {}
        remaining = dead

        def take(name: str, mask: np.ndarray) -> None:
            nonlocal remaining
            if mask.any():
                causes[name] = remaining[mask]
                remaining = remaining[~mask]

        if view is self.output_site and view.info.kind in FLAT_RELU_KINDS:
            return {"output_activation": dead}
        if view.direct and view.norm is not None:
            gamma, beta = view.norm.get("gamma"), view.norm.get("beta")
            if gamma is not None and beta is not None:
                g = np.abs(np.asarray(gamma, dtype=float))[remaining]
                b = np.asarray(beta, dtype=float)[remaining]
                take("normalization", b <= -BN_PIN * g)
        elif view.direct and view.weight_norm is not None:
            wn = view.weight_norm
            live = np.setdiff1d(np.arange(view.units), dead)
            collapsed = wn[remaining] <= COLLAPSE_ABS
            if len(live) >= 3:
                collapsed |= wn[remaining] <= COLLAPSE_RATIO * float(np.median(wn[live]))
            growth = view.weight_growth
            if growth is not None and growth <= SHRUNK:  # the whole layer shrank: decay
                collapsed = np.ones(len(remaining), dtype=bool)
            take("weight_decay", collapsed)
        if len(remaining) and view in self.input_chain:
            take("input_scale", np.ones(len(remaining), dtype=bool))
        if len(remaining) and view.direct and view.norm is None and view.weight_norm is not None:
            negative = view.bias is None or float(np.median(view.bias[remaining])) < 0
            if view.update_trace and negative:
                take("learning_rate", np.ones(len(remaining), dtype=bool))
            else:
                take("learning_rate", view.pinned_by_bias(remaining))
        if len(remaining):
            causes["unexplained"] = remaining
        return causes

    # -- helpers for rules ----------------------------------------------------------------

    def born_dead(self, view: SiteView) -> int | None:
        """Dead units this site had in the freshly initialized copies (the largest count
        of the runs), or ``None`` when no fresh copy was scanned."""
        runs = self.init_dead.get(view.name)
        return max(runs) if runs else (0 if self.init_dead else None)

    def dead_phrase(self, view: SiteView, count: int) -> str:
        """"12 of 64 units (19%) of `x` (nn.ReLU) never fired on 360 samples (each fires on < 0.83%…)"."""
        # a sloped negative side (PReLU, leaky ReLU) still passes a gradient: say what
        # "never fired" means there
        sloped = (" (their pre-activation never crossed zero: they act linearly with the "
                  "negative-side slope)" if view.info.kind in SLOPED_KINDS else "")
        return (f"{count} of {view.units} units ({pct(count / view.units)}) of {view.label} "
                f"never fired on {plural(view.samples, 'sample')}{sloped} (so each fires on < "
                f"{pct(self.rule_out)} of inputs, {CONFIDENCE:.0%} confidence)")

    def base_evidence(self, view: SiteView, units: np.ndarray) -> dict[str, Any]:
        """The numbers every per-layer finding carries."""
        return {
            "units": view.units, "count": len(units), "share": len(units) / view.units if view.units else 0.0,
            "unit_indices": unit_list(units), "unit_indices_truncated": len(units) > 32,
            "samples": view.samples,
            "rule_out_fire_rate": self.rule_out, "dead_total": int(len(view.dead)),
        }

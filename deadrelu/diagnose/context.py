"""What the rules read: a report's verdicts joined with its weight evidence. Pure, torch-free.

:class:`Context` is built once per diagnosis. It decides, for every dead unit,
which cause the evidence points to, so that each dead unit is explained by at
most one rule. The order is fixed, most specific evidence first:

1. ``output_activation`` — the site's output is the model's output (ReLU family).
2. ``normalization`` — a BatchNorm feeds the site directly and its shift pins the
   channel: ``beta <= -BN_PIN * |gamma|`` (the BN output sits ≥2σ below zero).
3. ``weight_decay`` — the unit's incoming weight norm collapsed: at most
   ``COLLAPSE_RATIO`` of the median of the layer's live units, or below
   ``COLLAPSE_ABS`` outright (both scaled to the model's own init when it has one);
   or the whole layer's weights shrank to at most ``SHRUNK``× their init scale
   (:attr:`SiteView.shrink_norm`: the model's own, else PyTorch's default).
4. ``input_scale`` — the input is far from zero mean / unit scale, the first site
   has dead or saturated units, and the site is the first one or follows it through
   sites whose mean |output| stays ≥ ``INPUT_FAR`` (the large scale propagates).
5. ``learning_rate`` — a trace of large updates on a directly fed Linear/Conv whose
   dead units have negative biases: the layer's biases grew ≥ ``BIAS_GROWTH``× beyond
   PyTorch's default init (mean |b| of U(±1/√fan_in), or the model's own init when
   larger: :attr:`SiteView.growth_norm`), or its weights and biases both
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

After the causes, the model-wide patterns are computed once, in this order (each
excludes the ones before it): entirely dead layers whose dead units are mostly
unexplained (``init_dead_layers``, DR004), a dead share rising with depth
(``depth_trend``, DR005), a deep, narrow stack with dead units spread through it
(``deep_narrow``, DR014), and the sites these cover (``covered_by_initialization``,
which DR010, DR013 and DR015 leave alone). Rules read them here and never import
each other. The numbers behind every decision are in :mod:`.criteria`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.analyzer import CONFIDENCE, rule_out_rate
from deadrelu.diagnose.criteria import (
    BN_PIN,
    COLLAPSE_RATIO,
    DEEP,
    FLAT_RELU_KINDS,
    INPUT_FAR,
    INPUT_TINY,
    NARROW,
    SAT_LAYER,
    SHRUNK,
    SLOPED_KINDS,
    SPREAD_SHARE,
    TREND_FACTOR,
    TREND_RISE,
)
from deadrelu.diagnose.datameta import InputSummary, input_summary, output_is_constant, output_range
from deadrelu.diagnose.site_view import SiteView
from deadrelu.wording import percent, plural

if TYPE_CHECKING:
    from deadrelu.diagnose.subject import Subject


def unit_list(indices: np.ndarray | list[int], limit: int = 32) -> list[int]:
    """JSON-ready unit indices, at most ``limit`` of them."""
    return [int(i) for i in list(indices)[:limit]]


def unexplained_share(view: SiteView) -> float:
    """Share of the site's units that are dead with no specific cause."""
    units = view.dead_causes.get("unexplained")
    return len(units) / view.units if units is not None and view.units else 0.0


def site_views(subject: Subject) -> list[SiteView]:
    """Each site joined with its verdicts and the evidence of the layer (or BatchNorm)
    feeding it, when that layer feeds it directly and has the site's width."""
    evidence = subject.evidence or {}
    layers: Mapping[str, Any] = evidence.get("layers") or {}
    site_ev: Mapping[str, Any] = evidence.get("sites") or {}
    views = []
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
        views.append(SiteView(s.info, subject.verdicts[s.info.name], s.stats.samples, ev, layer, norm))
    return views


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
        self.evidence: Mapping[str, Any] = subject.evidence or {}
        self.sites: list[SiteView] = site_views(subject)
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
        self._find_patterns()

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
        saturating = first.info.bounded and (len(first.saturated) > 0 or first.saturated_share >= SAT_LAYER)
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

    # -- model-wide patterns --------------------------------------------------------------

    def _find_patterns(self) -> None:
        """The model-wide patterns, each computed once: several rules read them."""
        self.relu_chain: list[SiteView] = [v for v in self.diagnosable if v.info.can_die
                                           and v is not self.output_site and v.units]
        #: entirely dead sites whose dead units are mostly unexplained by training damage (DR004)
        self.init_dead_layers: list[SiteView] = [
            v for v in self.diagnosable
            if v.all_dead and v is not self.output_site and unexplained_share(v) > 0.5]
        #: the ReLU chain when its dead share rises sharply with depth (DR005), else ``None``
        self.depth_trend: list[SiteView] | None = (
            None if self.init_dead_layers else self._depth_trend())
        #: the ReLU chain when a deep, narrow stack has dead units spread through it (DR014)
        self.deep_narrow: list[SiteView] | None = (
            None if self.init_dead_layers or self.depth_trend is not None
            else self._deep_narrow())
        #: whether a model-wide initialization finding (DR004, DR005 or DR014) applies
        self.init_pattern = bool(self.init_dead_layers) or self.depth_trend is not None \
            or self.deep_narrow is not None
        #: sites whose unexplained dead units those findings cover
        self.covered_by_initialization: set[str] = self._covered_by_initialization()

    def _depth_trend(self) -> list[SiteView] | None:
        chain = self.relu_chain
        if len(chain) < 4:
            return None
        shares = [unexplained_share(v) for v in chain]
        half = len(chain) // 2
        shallow, deep = float(np.mean(shares[:half])), float(np.mean(shares[half:]))
        if deep >= shallow + TREND_RISE and deep >= TREND_FACTOR * shallow:
            return chain
        return None

    def _deep_narrow(self) -> list[SiteView] | None:
        """Lu et al. (2019): the deeper and narrower a ReLU net, the likelier that
        initialization alone leaves units, then whole layers, dead — with or without a
        clean rise with depth (which DR005 reports)."""
        chain = self.relu_chain
        if len(chain) < DEEP or min(v.units for v in chain) > NARROW:
            return None
        shares = [unexplained_share(v) for v in chain]
        if sum(1 for s in shares if s > 0) < 2 or float(np.mean(shares)) < SPREAD_SHARE:
            return None
        return chain

    def _covered_by_initialization(self) -> set[str]:
        covered = {v.name for v in self.init_dead_layers}
        for chain in (self.depth_trend, self.deep_narrow):
            if chain is not None:
                covered.update(v.name for v in chain)
        first = self.first_dead
        if first is not None and first.name in covered:
            covered.update(v.name for v in self.sites if v.info.order < first.info.order)
        return covered

    # -- per-unit causes ------------------------------------------------------------------

    def _assign(self, view: SiteView) -> None:
        dead = view.dead
        if len(dead) and view.info.can_die:
            view.dead_causes = self._dead_causes(view, dead)
        sat = view.saturated
        problem = len(sat) > 0 or view.saturated_share >= SAT_LAYER
        # a tanh/sigmoid inside an inline composite (x * sigmoid(1.702 * x)) saturates by
        # design wherever the composite is linear or zero: not a problem of its own
        inline = view.info.part_of is not None
        if view.info.bounded and problem and view is not self.output_site and not inline:
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
            collapsed = wn[remaining] <= view.collapse_abs
            if len(live) >= 3:
                collapsed |= wn[remaining] <= COLLAPSE_RATIO * float(np.median(wn[live]))
            growth = view.weight_shrink
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
        return (f"{count} of {view.units} units ({percent(count / view.units)}) of {view.label} "
                f"never fired on {plural(view.samples, 'sample')}{sloped} (so each fires on < "
                f"{percent(self.rule_out)} of inputs, {CONFIDENCE:.0%} confidence)")

    def saturation_phrase(self, view: SiteView, units: np.ndarray) -> str:
        """"41% of all activations of `x` sit in the flat region (...); 3 of 64 units on ≥99% of positions"."""
        text = (f"{percent(view.saturated_share)} of all activations of {view.label} sit in the "
                f"flat region ({view.flat_band}) over {plural(view.samples, 'sample')}")
        if len(units):
            text += (f"; {len(units)} of {view.units} units ({percent(len(units) / view.units)}) "
                     f"are saturated on ≥{percent(self.thresholds.saturated)} of positions")
        return text

    def base_evidence(self, view: SiteView, units: np.ndarray) -> dict[str, Any]:
        """The numbers every per-layer finding carries."""
        return {
            "units": view.units, "count": len(units), "share": len(units) / view.units if view.units else 0.0,
            "unit_indices": unit_list(units), "unit_indices_truncated": len(units) > 32,
            "samples": view.samples,
            "rule_out_fire_rate": self.rule_out, "dead_total": int(len(view.dead)),
        }

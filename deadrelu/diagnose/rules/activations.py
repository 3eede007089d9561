"""The activations themselves: a ReLU on the output, saturated bounded units, always-on ReLUs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from deadrelu.diagnose.context import Context
from deadrelu.diagnose.criteria import FLAT_RELU_KINDS, severity_for
from deadrelu.diagnose.registry import rule
from deadrelu.findings import Finding, Severity
from deadrelu.wording import num, percent, plural

#: An always-on share at which the layer counts as mostly linear.
MOSTLY_LINEAR = 0.5


@rule(
    code="DR008",
    name="relu-on-output",
    causes=("output_activation",),
    severity="error when some output unit is dead (0 for every sample), else warning",
    summary="A ReLU is applied to the model's output.",
    checks="""The model's output is produced by a ReLU-family activation with a flat negative
        region (ReLU, ReLU6, Threshold, a clipping Hardtanh), detected by following the output
        tensor back to the call that made it.""",
    why="""A ReLU on the output clips every negative prediction to 0 with zero gradient: logits
        cannot be negative, regression targets below zero are unreachable, and an output unit
        whose pre-activation goes negative for all inputs is stuck at 0 for good.""",
    fix="""Return the last Linear/Conv's output directly (raw logits for CrossEntropyLoss); if
        the output must be non-negative, use nn.Softplus(), which keeps a gradient everywhere.""",
    example="""nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4), nn.ReLU()): "the
        model's output comes straight from `3` (nn.ReLU) ... 2 of 4 output units are 0 for every
        sample".""",
)
def relu_on_output(ctx: Context) -> Iterator[Finding]:
    view = ctx.output_site
    if view is None or view.info.kind not in FLAT_RELU_KINDS:
        return
    direct = bool(ctx.output.get("direct", True))
    how = "straight from" if direct else "through an elementwise op from"
    message = f"the model's output comes {how} {view.label}: it can never be below {num(view.info.level)}"
    n_dead = len(view.dead)
    if n_dead:
        message += (f"; {n_dead} of {view.units} output units {'is' if n_dead == 1 else 'are'} "
                    f"{num(view.info.level)} for every one of the {plural(view.samples, 'sample')} and get"
                    f"{'s' if n_dead == 1 else ''} no gradient")
    source = view.layer_label or view.norm_label
    keep = f"return the output of {source} directly" if source else "return the pre-activation directly"
    if view.info.op == "module":
        drop = f"remove {view.label} from the model's output"
    else:
        drop = f"drop the final `{view.info.op}` call (site `{view.name}`)"
    fix = (f"{drop} and {keep} (raw logits for nn.CrossEntropyLoss, unconstrained values for "
           "regression); if the output must be non-negative, use nn.Softplus() instead")
    yield Finding(
        "DR008", Severity.ERROR if n_dead else Severity.WARNING, view.name, message,
        "output_activation", fix,
        {"units": view.units, "dead": n_dead, "unit_indices": [int(i) for i in view.dead[:32]],
         "samples": view.samples, "direct": direct, "kind": view.info.kind},
    )


@rule(
    code="DR009",
    name="saturated-units",
    causes=("saturation",),
    severity="by the larger of the saturated units' share and the saturated share of all "
             "positions: error at ≥25%, warning at ≥5%, else info",
    summary="Bounded activations stuck in their flat region.",
    checks="""Bounded activations (sigmoid, tanh, ReLU6, Hardtanh, Hardsigmoid) stuck in a flat
        region: some unit is saturated on at least the `saturated` share (99%) of its positions,
        or at least half of all the layer's activations are. Not applied to the model's output
        (a confident sigmoid output is saturated by design).""",
    why="""In its flat region a bounded activation has (near) zero gradient: the unit passes
        on a constant and its incoming weights stop learning. Large initial weights, large
        inputs or missing normalization push pre-activations there.""",
    fix="""Re-initialize the feeding layer at a smaller scale (xavier_uniform_ with the
        activation's gain) when its weights are large, normalize the pre-activations
        (LayerNorm/BatchNorm), or use an unbounded activation in hidden layers.""",
    example="""A sigmoid MLP initialized with weights ~N(0, 5²): "82% of all activations of `1`
        (nn.Sigmoid) sit in the flat region ...; incoming weights of `0` (nn.Linear): median
        row norm 20 (35× PyTorch's default init)".""",
)
def saturated_units(ctx: Context) -> Iterator[Finding]:
    for view in ctx.diagnosable:
        units = view.saturation_causes.get("saturation")
        if units is None:
            continue
        share = max(len(units) / view.units, view.saturated_share)
        parts = [ctx.saturation_phrase(view, units)]
        gw, gb = view.weight_growth, view.bias_growth
        if view.layer_label and gw is not None:
            scale = f"median row norm {num(view.weight_norm_median or 0.0)} ({gw:.1f}× {view.growth_name})"
            if gb is not None:
                scale += f", mean |bias| {gb:.1f}× the default"
            parts.append(f"incoming weights of {view.layer_label}: {scale}")
        fixes = []
        rescale = view.scale_fix()
        if rescale:
            fixes.append(rescale)
        if view.norm is None:
            target = view.layer_label or "the layer feeding it"
            fixes.append(f"add a normalization layer (nn.LayerNorm or nn.BatchNorm1d/2d) between {target} "
                         f"and {view.label} to keep pre-activations near zero")
        else:
            fixes.append(f"check {view.norm_label}: its shift and scale push the units into the flat region")
        if view.info.op == "module":
            fixes.append(f"or replace {view.label} with an unbounded activation (nn.ReLU, nn.GELU) "
                         "if it is a hidden layer")
        yield Finding(
            "DR009", severity_for(share), view.name, "; ".join(parts), "saturation", "; ".join(fixes),
            {"units": view.units, "count": len(units), "unit_share": len(units) / view.units,
             "position_share": view.saturated_share, "unit_indices": [int(i) for i in units[:32]],
             "samples": view.samples, "layer": view.evidence.get("layer"), "weight_growth": gw,
             "bias_growth": gb, "normalized": view.norm is not None,
             "sat_low": view.info.sat_low, "sat_high": view.info.sat_high},
        )


@rule(
    code="DR010",
    name="always-on-units",
    causes=("architecture",),
    severity="info",
    summary="ReLU units that fire on every input and act linearly.",
    checks="""ReLU-family units that fire at ≥ the `always_on` share (99%) of positions: for
        them the activation is the identity, so they act as linear units.""",
    why="""A layer of always-on units adds no nonlinearity: together with the next linear layer
        it collapses to one linear map. A few such units are common and harmless; a mostly
        linear layer wastes depth. Not reported for the first layer when the input is
        unnormalized (DR007 covers it), for layers covered by an initialization finding
        (DR004, DR005), or for layers downstream of an entirely dead one.""",
    fix="""Nothing for a few units. For a mostly linear layer, lower the feeding layer's biases
        or normalize its input, or drop the layer.""",
    example="""A layer whose bias was set to +10 on 8 of 32 units: "8 of 32 units (25%) of `1`
        (nn.ReLU) fired at ≥99% of positions ...".""",
)
def always_on_units(ctx: Context) -> Iterator[Finding]:
    covered = ctx.covered_by_initialization
    for view in ctx.diagnosable:
        units = view.always_on
        if view.weight_norm is not None and len(view.weight_norm) == view.units and len(units):
            # a unit whose incoming weights collapsed outputs a constant, not a linear function
            units = units[view.weight_norm[units] > view.collapse_abs]
        if not len(units) or not view.info.can_die or view is ctx.output_site:
            continue
        if view.name in covered or "input_scale" in view.dead_causes:
            continue
        share = len(units) / view.units
        message = (f"{len(units)} of {view.units} units ({percent(share)}) of {view.label} fired at "
                   f"≥{percent(ctx.thresholds.always_on)} of positions over {plural(view.samples, 'sample')}: for "
                   "them the activation is the identity (they act linearly)")
        b = view.bias
        evidence = {"units": view.units, "count": len(units), "share": share,
                    "unit_indices": [int(i) for i in units[:32]], "samples": view.samples}
        if b is not None:
            others = np.setdiff1d(np.arange(view.units), units)
            on_b = float(np.median(b[units]))
            rest_b = float(np.median(b[others])) if len(others) else None
            evidence.update({"always_on_bias_median": on_b, "other_bias_median": rest_b})
            message += (f"; their biases in {view.layer_label}: median {num(on_b)}"
                        + (f" vs {num(rest_b)} for the other units" if rest_b is not None else ""))
        if share >= MOSTLY_LINEAR:
            source = view.layer_label or "the layer feeding it"
            fix = (f"the layer is mostly linear: lower the biases of {source} or normalize its input "
                   f"so {view.label} is nonlinear again, or merge it with the next linear layer")
        else:
            fix = ("no change needed: a few linear units are common; act only if most of the layer "
                   "becomes linear")
        yield Finding("DR010", Severity.INFO, view.name, message, "architecture", fix, evidence)

"""The data side: input scale, too few samples for a verdict, non-finite values."""

from __future__ import annotations

from collections.abc import Iterator

from deadrelu.analyzer import CONFIDENCE, UnitState, samples_needed
from deadrelu.diagnose.context import Context
from deadrelu.diagnose.criteria import (
    INPUT_FAR,
    INPUT_TINY,
    severity_for,
)
from deadrelu.diagnose.datameta import InputSummary
from deadrelu.diagnose.registry import rule
from deadrelu.findings import Finding, Severity
from deadrelu.wording import num, percent, percent_beside, plural


@rule(
    code="DR007",
    name="unnormalized-input",
    causes=("input_scale",),
    severity="error when the affected units are ≥25% of the first layer, warning at ≥5%, else info",
    summary="Dead or saturated first-layer units on an unnormalized input.",
    checks="""Dead or saturated units in the first activation layer, and in the layers after
        it while their input stays large (mean |activation| of the previous layer ≥ 3), while
        the model's input is far from zero mean / unit scale: some input feature has |mean| ≥ 3
        or std ≥ 3, or the whole input has std ≤ 0.01. The input statistics are measured during
        the scan.""",
    why="""With a large offset or scale in the input, the first layer's pre-activations are
        dominated by it: ReLU units end up off (or on) for every input and bounded activations
        saturate, and the large inputs also make the first layer's gradients large.""",
    fix="""Standardize the input per feature ((x - mean) / std from the training set), or put a
        normalization layer at the model's input.""",
    example="""An MLP fed x·10 + 100: "24 of 64 units (38%) of `1` (nn.ReLU) never fired on 512
        samples ...; 27 units fire on every input (they act linearly). The model's input is far
        from zero mean / unit scale: mean 100, std 10 ...".""",
)
def unnormalized_input(ctx: Context) -> Iterator[Finding]:
    summary = ctx.input
    if summary is None:
        return
    reported: str | None = None  # the first finding carries the input statistics and fix
    first = ctx.first_site.layer_label if ctx.first_site is not None else None
    first = first or "the first layer"
    for view in ctx.input_chain:
        if view not in ctx.diagnosable:
            continue
        dead = view.dead_causes.get("input_scale")
        sat = view.saturation_causes.get("input_scale")
        if dead is None and sat is None:
            continue
        n_dead = len(dead) if dead is not None else 0
        parts = []
        if dead is not None:
            parts.append(ctx.dead_phrase(view, n_dead))
        if sat is not None:
            parts.append(ctx.saturation_phrase(view, sat))
        n_on = len(view.always_on)
        if n_on:
            parts.append(f"{plural(n_on, 'unit')} fire{'s' if n_on == 1 else ''} on every input "
                         "(acting linearly)")
        message = "; ".join(parts)
        if view is not ctx.first_site:
            previous = ctx.sites[ctx.sites.index(view) - 1]
            message += f"; it is fed through {previous.label}, whose outputs average {num(previous.mean_abs)} in magnitude"
        if reported is not None:
            message += f". Same cause as DR007 at `{reported}`: the input's scale carries through"
            fix = (f"standardize the input as advised for `{reported}` (or normalize in front of "
                   f"{first}): it fixes this layer too")
        else:
            message += f". The model's input is far from zero mean / unit scale: {summary.describe()}"
            fix = _input_fix(summary, first)
        n_sat = len(sat) if sat is not None else 0
        share = (n_dead + n_sat) / view.units
        position_share = view.saturated_share if sat is not None else None
        reported = reported or view.name
        yield Finding(
            "DR007", severity_for(max(share, position_share or 0.0)), view.name, message,
            "input_scale", fix,
            {"units": view.units, "dead": n_dead, "saturated": n_sat, "always_on": n_on,
             "share": share, "saturated_position_share": position_share,
             "samples": view.samples, "input": summary.to_dict(),
             "mean_abs_input_of_site": None if view is ctx.first_site else
             ctx.sites[ctx.sites.index(view) - 1].mean_abs,
             "far_threshold": INPUT_FAR, "tiny_threshold": INPUT_TINY},
        )


def _input_fix(summary: InputSummary, first: str) -> str:
    if 0 < summary.std <= INPUT_TINY and abs(summary.worst_mean[1]) < INPUT_FAR:
        return (f"scale the input up to unit std: x = (x - mean) / std (here std ≈ {num(summary.std)}), "
                f"computed on the training set; or add a normalization layer before {first}")
    return (f"standardize the input per feature before the model: x = (x - mean) / std "
            f"(here mean ≈ {num(summary.mean)}, std ≈ {num(summary.std)}), with statistics from "
            f"the training set (e.g. torchvision.transforms.Normalize or sklearn's StandardScaler); "
            f"or put nn.BatchNorm1d/nn.LayerNorm in front of {first}")


#: DR011 is an error when a scan cannot rule out fire rates this large.
FIRM_BOUND = 0.1


@rule(
    code="DR011",
    name="too-few-samples",
    causes=("insufficient_data",),
    severity="error when the scan cannot even rule out fire rates of 10% (fewer than 29 "
             "samples), else warning",
    summary="Too few samples for the dead verdicts to be firm.",
    checks="""Some units are called dead, but the scan saw too few samples for that verdict:
        a unit that fires with probability p goes unseen in n samples with probability
        (1 - p)^n, so n samples only rule out fire rates above 1 - 0.05^(1/n) ≈ 3/n (95%
        confidence). Reported when that bound exceeds the `rare` threshold.""",
    why="""A "dead" verdict on a small scan may just be a unit that fires rarely. Acting on it
        (re-initializing, pruning) can remove a working feature.""",
    fix="""Scan more data: about ln(0.05)/ln(1 - r) samples rule out fire rates above r
        (≈ 300 for r = 1%).""",
    example="""A scan of 40 samples: "only 40 samples scanned: a unit never seen firing may still
        fire on up to 7.2% of inputs ...".""",
)
def too_few_samples(ctx: Context) -> Iterator[Finding]:
    rare = ctx.thresholds.rare
    if ctx.samples <= 0 or ctx.rule_out <= rare:
        return
    dead = {v.name: len(v.dead) for v in ctx.sites if len(v.dead)}
    if not dead:
        return
    need = samples_needed(rare)
    total = sum(dead.values())
    message = (f"only {plural(ctx.samples, 'sample')} scanned: a unit never seen firing may still "
               f"fire on up to {percent_beside(ctx.rule_out, rare)} of inputs ({CONFIDENCE:.0%} "
               f"confidence, 1 − 0.05^(1/n)), above the {percent(rare)} 'rare' threshold; "
               f"{plural(total, 'dead verdict')} in {plural(len(dead), 'layer')} rest on this")
    always = sum(len(v.always_on) for v in ctx.sites if v.info.can_die)
    if always and ctx.samples < samples_needed(1.0 - ctx.thresholds.always_on):
        # with few samples, "fired on ≥99% of positions" is as weak as "never fired"
        message += f", and so do {plural(always, 'always-on verdict')}"
    fix = (f"scan at least {need} samples (e.g. `--limit {need}` with more data) to rule out fire "
           f"rates above {percent(rare)} before acting on the dead units")
    # below ~29 samples a "dead" unit may fire on one input in ten: no verdict stands
    severity = Severity.ERROR if ctx.rule_out >= FIRM_BOUND else Severity.WARNING
    yield Finding(
        "DR011", severity, None, message, "insufficient_data", fix,
        {"samples": ctx.samples, "rule_out_fire_rate": ctx.rule_out, "rare_threshold": rare,
         "samples_needed": need, "dead_by_layer": dead, "confidence": CONFIDENCE},
    )


@rule(
    code="DR012",
    name="non-finite-activations",
    causes=("learning_rate", "input_scale", "unknown"),
    severity="error",
    summary="Units that produced NaN or Inf.",
    checks="""Units that produced NaN or ±Inf. Reported once, at the first site where it
        happens, with the cause the evidence supports: non-finite weights (training diverged,
        `learning_rate`), non-finite values in the input (`input_scale`), or neither (`unknown`).""",
    why="""NaN spreads through every later layer and poisons the loss; it is never counted as
        "not firing", so these units have no meaningful verdict.""",
    fix="""If the weights hold NaN/Inf, restart from an earlier checkpoint with a lower learning
        rate and gradient clipping; if the input does, clean the data; otherwise look for an
        overflow (e.g. half precision) in the layer named.""",
    example="""A checkpoint saved after a loss spike: "12 of 64 units of `act1` (nn.ReLU) produced
        NaN/Inf ...; 3 parameters hold NaN/Inf: `fc1.weight` ...".""",
)
def non_finite_activations(ctx: Context) -> Iterator[Finding]:
    bad = [v for v in ctx.sites if len(v.indices(UnitState.NONFINITE))]
    if not bad:
        return
    view = bad[0]
    units = view.indices(UnitState.NONFINITE)
    params = dict(ctx.evidence.get("nonfinite_params") or {})
    input_bad = ctx.input.nonfinite if ctx.input is not None else 0
    message = (f"{len(units)} of {view.units} units of {view.label} produced NaN/Inf on some of the "
               f"{plural(view.samples, 'sample')}")
    if len(bad) > 1:
        message += f" ({len(bad) - 1} later site{'s' if len(bad) > 2 else ''} too)"
    if params:
        names = ", ".join(f"`{n}`" for n in list(params)[:4])
        message += (f"; {plural(len(params), 'parameter tensor')} "
                    f"hold{'s' if len(params) == 1 else ''} NaN/Inf: {names}")
        cause = "learning_rate"
        fix = ("training diverged: restart from an earlier checkpoint with a 3–10× lower learning "
               "rate and gradient clipping (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))")
    elif input_bad:
        per_feature = bool(ctx.input is not None and ctx.input.features) or input_bad > 1
        where = f" (in {plural(input_bad, 'input feature')})" if per_feature else ""
        message += f"; the input itself holds NaN/Inf values{where}"
        cause = "input_scale"
        fix = "clean the data: drop or impute the NaN/Inf input values before they reach the model"
    else:
        cause = "unknown"
        fix = (f"the weights and the input are finite, so something in or before {view.label} "
               "overflows: check for half-precision overflow, division by zero or log of zero there")
    yield Finding(
        "DR012", Severity.ERROR, view.name, message, cause, fix,
        {"units": view.units, "count": len(units), "unit_indices": [int(i) for i in units[:32]],
         "later_sites": [v.name for v in bad[1:]], "nonfinite_params": params,
         "input_nonfinite": input_bad},
    )

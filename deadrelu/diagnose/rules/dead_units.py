"""Why the dead units of one layer died: large updates, weight decay, BatchNorm, or no clear cause.

The per-unit cause comes from :class:`deadrelu.diagnose.context.Context` (one cause
per dead unit, most specific evidence first); each rule here reports one cause's
units of one layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from deadrelu.diagnose.advice import lr_fix, weight_decay_fix
from deadrelu.diagnose.context import Context
from deadrelu.diagnose.criteria import (
    BN_PIN,
    COLLAPSE_ABS,
    COLLAPSE_RATIO,
    ERROR_SHARE,
    GROWTH,
    NORMAL_LOW,
    SHRUNK,
    WARNING_SHARE,
    severity_for,
)
from deadrelu.diagnose.registry import rule
from deadrelu.diagnose.site_view import SiteView
from deadrelu.findings import Finding, Severity
from deadrelu.wording import num, percent, plural

#: Without a specific cause, a layer is an error only when at least half of it is dead.
UNEXPLAINED_ERROR_SHARE = 0.5


def _severity(view: SiteView, count: int) -> Severity:
    return Severity.ERROR if view.all_dead else severity_for(count / view.units)


def _whole(ctx: Context, view: SiteView, message: str) -> str:
    if view.all_dead:
        return f"{message}. The whole layer is dead: {ctx.consequence_text(view)}"
    return message


def _median(values: np.ndarray | None, idx: np.ndarray) -> float | None:
    if values is None or not len(idx):
        return None
    return float(np.median(values[idx]))


def _live(view: SiteView) -> np.ndarray:
    return np.setdiff1d(np.arange(view.units), view.dead)


def _reinit(view: SiteView, count: int) -> str:
    where = view.layer_label or "the layer feeding it"
    return (f"re-initialize the {count} dead unit{'s' if count != 1 else ''} with ReDo "
            f"(their incoming weights are in {where})")


@rule(
    code="DR001",
    name="dead-after-large-update",
    causes=("learning_rate",),
    severity="error when the units are ≥25% of the layer (or all of it), warning at ≥5%, else info",
    summary="Dead units with the trace of too-large updates in the weights that feed them.",
    checks="""Dead units fed directly by a Linear/Conv layer that carries the trace of too-large
        updates: the layer's biases grew to ≥3× PyTorch's default init scale (or weights and
        biases both to ≥2×) while the dead units' biases are negative; or a unit's own bias is
        below twice the most negative default-init bias (-2/√fan_in) and larger in magnitude
        than its incoming weight norm.""",
    why="""One oversized step can push a ReLU unit's pre-activation below zero for every input.
        From then on it gets no gradient and never recovers: its capacity is lost for the rest
        of training. Dying this way is the classic symptom of a learning rate that is too high
        or of missing warm-up.""",
    fix="""Lower the learning rate 3–10× or add warm-up, and re-initialize the dead units (ReDo)
        or swap the ReLU for nn.LeakyReLU(0.01) so units can come back. When the checkpoint
        carries its optimizer state (a training checkpoint, a Lightning .ckpt) the fix names
        the optimizer, its learning rate and step, and whether a warm-up was found: "trained
        with Adam, lr 3e-2 at step 460 (no warm-up found): try lr ≤ 3e-3 with a linear
        warm-up". Clipping gradients is offered only for SGD-like optimizers: an Adam-family
        step is about lr in size whatever the gradient, so clipping barely changes it.""",
    example="""An MLP trained with SGD(lr=2.0): "41 of 64 units (64%) of `3` (nn.ReLU) never
        fired on 512 samples ...; the weights of `2` (nn.Linear) carry the trace of large
        updates: mean |bias| 8.0× and median row norm 2.3× PyTorch's default init, with the
        dead units' biases at median −0.29".""",
)
def dead_after_large_update(ctx: Context) -> Iterator[Finding]:
    for view in ctx.diagnosable:
        units = view.dead_causes.get("learning_rate")
        if units is None:
            continue
        wn, b = view.weight_norm, view.bias
        if wn is None:  # the cause is only assigned with weight evidence
            continue
        live = _live(view)
        gw, gb = view.weight_growth, view.bias_growth
        parts = [ctx.dead_phrase(view, len(units))]
        dead_b = _median(b, units)
        if view.update_trace and gw is not None:
            growth = f"median row norm {gw:.1f}×"
            if gb is not None:
                growth = f"mean |bias| {gb:.1f}× and {growth}"
            text = (f"the weights of {view.layer_label} carry the trace of large updates: {growth} "
                    f"{view.growth_name}")
            if dead_b is not None:
                text += f", with the dead units' biases at median {num(dead_b)}"
            parts.append(text)
        else:
            pinned = units[view.pinned_by_bias(units)]
            parts.append(
                f"their biases in {view.layer_label} (median {num(float(np.median(b[pinned])))}) "
                f"are below {num(view.bias_floor)}, twice the most negative default init, and "
                f"outweigh their incoming weights (median row norm {num(float(np.median(wn[pinned])))})"
                if b is not None and len(pinned) else "their biases pin them below zero")
        message = _whole(ctx, view, "; ".join(parts))
        fixes = [lr_fix(ctx.recipe)]
        leaky = view.leaky_fix()
        if leaky:
            fixes.append(leaky)
        fixes.append(_reinit(view, len(units)))
        yield Finding(
            "DR001", _severity(view, len(units)), view.name, message, "learning_rate",
            "; ".join(fixes),
            {**ctx.base_evidence(view, units), "layer": view.evidence.get("layer"),
             "weight_growth": gw, "bias_growth": gb, "update_trace": view.update_trace,
             "dead_weight_norm_median": _median(wn, units), "live_weight_norm_median": _median(wn, live),
             "dead_bias_median": dead_b, "live_bias_median": _median(b, live),
             "bias_floor": view.bias_floor, "recipe": dict(ctx.recipe) if ctx.recipe else None},
        )


@rule(
    code="DR002",
    name="dead-with-collapsed-weights",
    causes=("weight_decay",),
    severity="error when the units are ≥25% of the layer (or all of it), warning at ≥5%, else info",
    summary="Dead units whose incoming weights have collapsed towards zero.",
    checks="""Dead units whose incoming weight norm has collapsed towards zero: at most 10% of
        the median of the layer's live units, or below 0.03 (1/20 of PyTorch's default init),
        or in a layer whose weights shrank as a whole to at most 0.3× the default init scale.""",
    why="""A dead unit gets no gradient, so weight decay is the only force on its weights and
        shrinks them to zero; strong decay can also starve live units until they die. Collapsed
        units are capacity the network pays for and cannot use.""",
    fix="""Lower weight_decay (e.g. 10×; the checkpoint's value is named when it carries its
        optimizer state), make sure it is decoupled (AdamW) and not applied to biases and
        normalization parameters, and re-initialize the collapsed units.""",
    example="""An MLP trained with AdamW(weight_decay=2.0): "6 of 64 units (9.4%) of `3`
        (nn.ReLU) never fired ...; their incoming weights in `2` (nn.Linear) collapsed to a
        median row norm of 0.0021 vs 0.58 for the layer's live units".""",
)
def dead_with_collapsed_weights(ctx: Context) -> Iterator[Finding]:
    for view in ctx.diagnosable:
        units = view.dead_causes.get("weight_decay")
        if units is None:
            continue
        wn = view.weight_norm
        if wn is None:
            continue
        live = _live(view)
        dead_med = float(np.median(wn[units]))
        live_med = _median(wn, live)
        gw = view.weight_shrink
        if gw is not None and gw <= SHRUNK:  # the live units shrank too: compare with init
            against = (f"{num(view.shrink_norm)} at {view.shrink_name} (the whole layer "
                       f"shrank to {gw:.2g}× of it)")
        elif live_med is not None and len(live) >= 3:
            against = f"{num(live_med)} for the layer's live units"
        else:
            against = f"{num(view.shrink_norm)} at {view.shrink_name}"
        message = _whole(ctx, view, (
            f"{ctx.dead_phrase(view, len(units))}; their incoming weights in {view.layer_label} "
            f"collapsed to a median row norm of {num(dead_med)} vs {against}"))
        fixes = [weight_decay_fix(ctx.recipe)]
        fixes.append(_reinit(view, len(units)))
        leaky = view.leaky_fix()
        if leaky:
            fixes.append(leaky)
        yield Finding(
            "DR002", _severity(view, len(units)), view.name, message, "weight_decay", "; ".join(fixes),
            {**ctx.base_evidence(view, units), "layer": view.evidence.get("layer"),
             "dead_weight_norm_median": dead_med, "live_weight_norm_median": live_med,
             "collapse_ratio": COLLAPSE_RATIO, "collapse_abs": COLLAPSE_ABS,
             "weight_decay": (ctx.recipe or {}).get("weight_decay")},
        )


@rule(
    code="DR003",
    name="dead-pinned-by-batchnorm",
    causes=("normalization",),
    severity="error when the channels are ≥25% of the layer (or all of it), warning at ≥5%, else info",
    summary="Dead units pinned below zero by the BatchNorm that feeds them.",
    checks="""Dead units fed directly by a BatchNorm whose shift pins them below zero:
        beta ≤ -2·|gamma|, so the normalized output sits at least two standard deviations below
        zero for typical inputs (a collapsed gamma with beta ≤ 0 pins it for every input).""",
    why="""BatchNorm's output for a channel is gamma·x̂ + beta with x̂ roughly standard; a strongly
        negative beta (or a gamma decayed to zero) makes the following ReLU output zero
        everywhere. The channel then gets no gradient through the ReLU and stays dead.""",
    fix="""Reset beta to 0 and gamma to 1 for the pinned channels and fine-tune; keep BatchNorm
        parameters out of weight decay; lower the learning rate if beta drifted.""",
    example="""A Conv-BN-ReLU block whose BN bias is -5 on 4 of 16 channels: "4 of 16 units (25%)
        of `relu1` (nn.ReLU) never fired ...; `bn1` (nn.BatchNorm2d) shifts them below zero:
        beta median −5 with |gamma| median 1 (the BN output sits 5σ below zero)".""",
)
def dead_pinned_by_batchnorm(ctx: Context) -> Iterator[Finding]:
    for view in ctx.diagnosable:
        units = view.dead_causes.get("normalization")
        if units is None or view.norm is None:
            continue
        gamma = np.abs(np.asarray(view.norm["gamma"], dtype=float))
        beta = np.asarray(view.norm["beta"], dtype=float)
        live = _live(view)
        g_med, b_med = float(np.median(gamma[units])), float(np.median(beta[units]))
        live_g = _median(gamma, live)
        collapsed = live_g is not None and live_g > 0 and g_med <= 0.05 * live_g
        if g_med > max(1e-3, 1e-3 * abs(b_med)):
            sigma = f"the BN output sits {-b_med / g_med:.1f}σ below zero"
        else:  # σ-units mean nothing once gamma is ~0: the output is just beta
            sigma = f"gamma is ~0, so the BN output is about {num(b_med)} for every input"
        message = _whole(ctx, view, (
            f"{ctx.dead_phrase(view, len(units))}; {view.norm_label} shifts them below zero: beta "
            f"median {num(b_med)} with |gamma| median {num(g_med)} ({sigma})"))
        path = view.evidence.get("norm")
        idx = str([int(i) for i in units[:16]])
        if len(units) > 16:
            idx = idx[:-1] + ", ...]"
        reset = (f"reset the pinned channels and fine-tune: `{path}.bias.data[{idx}] = 0` and "
                 f"`{path}.weight.data[{idx}] = 1`")
        no_decay = "exclude BatchNorm weight and bias from weight decay"
        fixes = [no_decay + f" (gamma collapsed to {num(g_med)} vs {num(live_g or 0.0)} on live channels)",
                 reset] if collapsed else [reset, no_decay + " and lower the learning rate if beta drifted"]
        leaky = view.leaky_fix()
        if leaky:
            fixes.append(leaky)
        yield Finding(
            "DR003", _severity(view, len(units)), view.name, message, "normalization", "; ".join(fixes),
            {**ctx.base_evidence(view, units), "norm_layer": path, "gamma_abs_median": g_med,
             "beta_median": b_med, "live_gamma_abs_median": live_g, "pin": BN_PIN,
             "gamma_collapsed": collapsed},
        )


@rule(
    code="DR013",
    name="dead-units",
    causes=("unknown",),
    severity="error when the units are ≥50% of the layer, warning at ≥5%, else info",
    summary="Dead units that no specific evidence explains.",
    checks="""Dead units that none of the specific rules explains: the weights feeding them
        look normal, no BatchNorm pins them, and no model-wide pattern (dead layer, depth trend)
        covers them. Also used where the input of the site is not a plain Linear/Conv/BatchNorm
        (a residual sum, a pooling layer), so no weight evidence applies.""",
    why="""Dead units are wasted capacity and receive no gradient. Without a specific trace the
        cause cannot be told from a single checkpoint; scanning earlier checkpoints
        (`deadrelu track`) shows when they died.""",
    fix="""Swap the ReLU for nn.LeakyReLU(0.01), or re-initialize the dead units (ReDo); compare
        checkpoints over training to find when they died.""",
    example="""A trained MLP with 18% dead units in its last hidden layer and default-scale
        weights: "23 of 128 units (18%) of `net.5` (nn.ReLU) never fired on 360 samples ...".""",
)
def dead_units(ctx: Context) -> Iterator[Finding]:
    covered = ctx.covered_by_initialization
    for view in ctx.diagnosable:
        units = view.dead_causes.get("unexplained")
        if units is None or view.name in covered:
            continue
        born = ctx.born_dead(view)
        died = len(units) - (born or 0)
        if died <= 0:
            continue  # all of them within what a fresh init leaves dead: DR015
        parts = [ctx.dead_phrase(view, len(units))]
        if born:
            parts.append(f"freshly initialized copies have up to {born} dead here, so about "
                         f"{died} died in training")
        gw = view.weight_growth
        if view.layer_label and gw is not None:
            looks = "look normal" if NORMAL_LOW <= gw <= GROWTH else "show no collapse or bias trace"
            parts.append(f"the weights feeding them in {view.layer_label} {looks} "
                         f"(median row norm {num(view.weight_norm_median or 0.0)}, {gw:.2g}× "
                         f"{view.growth_name})")
        elif not view.direct and view.info.input_layer:
            parts.append(f"its input is `{view.info.input_layer}` combined with other tensors "
                         f"(e.g. a residual sum), so no single layer's weights explain it")
        fixes = []
        leaky = view.leaky_fix()
        if leaky:
            fixes.append(leaky)
        fixes.append(_reinit(view, len(units)))
        fixes.append("scan earlier checkpoints (`deadrelu track`) to see when they died")
        share = died / view.units
        if share >= UNEXPLAINED_ERROR_SHARE:
            severity = Severity.ERROR
        else:
            severity = Severity.WARNING if share >= WARNING_SHARE else Severity.INFO
        yield Finding(
            "DR013", severity, view.name, "; ".join(parts), "unknown",
            "; ".join(fixes),
            {**ctx.base_evidence(view, units), "layer": view.evidence.get("layer"),
             "weight_growth": gw, "bias_growth": view.bias_growth, "dead_at_init": born,
             "died_in_training": died if born is not None else None},
        )


@rule(
    code="DR015",
    name="dead-from-initialization",
    causes=("initialization",),
    severity="warning when the born-dead units are ≥25% of the layer, else info",
    summary="Dead units that were already dead in a freshly initialized copy of the model.",
    checks="""With a fresh-init comparison (`--compare-init`, `auto` by default: on for small models
        that can be re-initialized): freshly initialized copies of the architecture are scanned
        on the same data, and a layer's dead units that no specific rule explains, up to the
        largest count among the fresh copies, are born dead. Units beyond that count died in
        training and stay with DR013.""",
    why="""Units dead at initialization never received a gradient: the architecture and its
        init leave their pre-activation below zero for every input (typical with non-negative
        inputs and PyTorch's default init). They are not a sign of a training problem, and the
        optimizer cannot bring them back; the init or the architecture can.""",
    fix="""Initialize for ReLU (nn.init.kaiming_normal_ with nonlinearity='relu', a small
        positive bias), center the input (zero mean), or add normalization before the ReLU;
        re-initialize the born-dead units of a trained model (ReDo).""",
    example="""The shipped healthy MLP: "23 of 128 units (18%) of `net.5` (nn.ReLU) were dead
        from initialization, not killed by training: freshly initialized copies leave 31, 29 and
        31 units dead here on the same data, and the trained model has 23 that never fired on
        360 samples".""",
)
def dead_from_initialization(ctx: Context) -> Iterator[Finding]:
    if not ctx.init_dead:
        return
    covered = ctx.covered_by_initialization
    for view in ctx.diagnosable:
        units = view.dead_causes.get("unexplained")
        born = ctx.born_dead(view)
        if units is None or view.name in covered or not born:
            continue
        count = min(len(units), born)
        died = len(units) - count
        runs = ctx.init_dead.get(view.name, [])
        counts = ", ".join(str(n) for n in runs[:-1]) + (" and " if len(runs) > 1 else "") + \
            str(runs[-1])
        message = (f"{count} of {view.units} units ({percent(count / view.units)}) of {view.label} "
                   f"were dead from initialization, not killed by training: freshly "
                   f"initialized copies leave {counts} units dead here on the same data, and "
                   f"the trained model has {len(units)} that never fired on "
                   f"{plural(view.samples, 'sample')}; the fresh copies are {ctx.init_method}")
        if died > 0:
            message += f"; about {died} more died in training (DR013)"
        where = view.layer_label or "the layer feeding it"
        fixes = [f"initialize {where} for ReLU (nn.init.kaiming_normal_(weight, "
                 "nonlinearity='relu') and a small positive bias such as 0.01), center the input "
                 "(zero mean) or add normalization before the activation",
                 _reinit(view, count)]
        share = count / view.units
        severity = Severity.WARNING if share >= ERROR_SHARE else Severity.INFO
        yield Finding(
            "DR015", severity, view.name, message, "initialization", "; ".join(fixes),
            {**ctx.base_evidence(view, units), "layer": view.evidence.get("layer"),
             "dead_at_init_runs": runs, "born_dead": count, "died_in_training": max(died, 0),
             "init_method": ctx.init_method},
        )

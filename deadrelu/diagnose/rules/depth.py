"""Patterns across layers: an entirely dead layer, dead share rising with depth, constant output."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from deadrelu.diagnose.context import Context, unexplained_share
from deadrelu.diagnose.criteria import DEEP, DEFAULT_INIT_NORM, NARROW, SHRUNK
from deadrelu.diagnose.registry import rule
from deadrelu.diagnose.site_view import SiteView
from deadrelu.findings import Finding, Severity
from deadrelu.wording import num, percent, plural


def _chain_shares(chain: list[SiteView]) -> tuple[dict[str, float], SiteView, Severity]:
    """Unexplained dead share per site, the worst site, and the severity it sets (DR005/DR014)."""
    shares = {v.name: unexplained_share(v) for v in chain}
    worst = max(chain, key=lambda v: shares[v.name])
    return shares, worst, Severity.ERROR if shares[worst.name] >= 0.5 else Severity.WARNING


def _constant_output_text(ctx: Context) -> str:
    if not ctx.output_constant:
        return ""
    return ("; the model's output is the same for every input, so the loss gives no useful "
            "gradient")


def _init_fixes(ctx: Context, view: SiteView | None) -> list[str]:
    """Initialization advice ranked by what the weights and the architecture show."""
    chain = [v for v in ctx.sites if v.info.can_die and v.units and v is not ctx.output_site]
    # layers of models with their own init scheme are not at PyTorch's default scale
    growths = [g for v in ctx.sites if v.init is None and (g := v.weight_growth) is not None]
    fixes = []
    if growths:
        g = float(np.median(growths))
        if g <= 1.5:
            fixes.append(
                "init every Linear/Conv with nn.init.kaiming_normal_(w, nonlinearity='relu') and "
                f"zero the biases: the weights have PyTorch's default scale (median row norm "
                f"{num(g * DEFAULT_INIT_NORM)}, {g:.1f}× of 1/√3), which shrinks a ReLU signal's "
                "variance about 6× per layer")
    depth = len(chain)
    width = min((v.units for v in chain), default=0)
    if depth >= DEEP and 0 < width <= NARROW:
        fixes.append(
            f"the stack is deep ({depth} ReLU layers) and narrow (as few as {width} units): such "
            "nets are born dead with high probability (Lu et al. 2019) — widen the hidden layers, "
            "use fewer of them, or add residual connections or BatchNorm")
    if view is not None:
        leaky = view.leaky_fix()
        if leaky:
            fixes.append(leaky)
    if not fixes:
        fixes.append("re-initialize the model (nn.init.kaiming_normal_(w, nonlinearity='relu'), "
                     "zero biases) and check the layer's input scale")
    return fixes


@rule(
    code="DR004",
    name="dead-layer",
    causes=("initialization",),
    severity="error",
    summary="A whole ReLU layer is dead, with no trace of training damage.",
    checks="""A ReLU-family layer in which every unit is dead, with no trace of training
        damage (large updates, collapsed weights, a pinning BatchNorm) to explain it.""",
    why="""An entirely dead layer outputs a constant, so no gradient passes back through it: the
        layers before it stop learning, the layers after it see a constant input, and unless a
        skip path bypasses it the model's output no longer depends on its input. Deep, narrow
        ReLU nets are born this way with high probability (Lu et al. 2019, "Dying ReLU and
        Initialization"), and PyTorch's default init shrinks ReLU signals layer by layer.""",
    fix="""Use He init (nn.init.kaiming_normal_(w, nonlinearity='relu')) with zero biases; make
        the layers wider or fewer, or add residual connections or BatchNorm; LeakyReLU keeps
        a gradient flowing.""",
    example="""A 20-layer, width-3 ReLU MLP with default init: "all 3 units of `21` (nn.ReLU)
        never fired on 512 samples: no gradient passes back through it, so the 10 activation
        sites before it stop learning; ... the model's output is the same for every input".""",
)
def dead_layer(ctx: Context) -> Iterator[Finding]:
    for view in ctx.init_dead_layers:
        before = [v for v in ctx.relu_chain if v.info.order < view.info.order]
        message = (f"all {view.units} units of {view.label} never fired on {plural(view.samples, 'sample')}: "
                   f"{ctx.consequence_text(view)}")
        if len(before) >= 2:
            shares = [len(v.dead) / v.units for v in before]
            message += (f". Dead share before it: {percent(shares[0])} at `{before[0].name}` rising to "
                        f"{percent(max(shares))}")
        yield Finding(
            "DR004", Severity.ERROR, view.name, message, "initialization",
            "; ".join(_init_fixes(ctx, view)),
            {**ctx.base_evidence(view, view.dead), "sites_before": len(before),
             "constant_sites_after": [v.name for v in ctx.consequences],
             "output_constant": ctx.output_constant,
             "dead_share_before": {v.name: len(v.dead) / v.units for v in before},
             "weight_growth": view.weight_growth},
        )


@rule(
    code="DR005",
    name="dead-share-rises-with-depth",
    causes=("initialization",),
    severity="error when some layer is ≥50% dead, else warning",
    summary="The share of dead units rises sharply with depth.",
    checks="""Across at least four ReLU-family layers (no layer entirely dead), the mean share
        of unexplained dead units in the deeper half exceeds the shallower half's by ≥25
        percentage points and is at least twice it.""",
    why="""Dead units accumulating with depth are the signature of an initialization (or
        architecture) that does not preserve the signal's scale through ReLU layers: each layer
        loses units, and deep narrow nets head towards a layer that is dead altogether.""",
    fix="""He init (nn.init.kaiming_normal_(w, nonlinearity='relu')) with zero biases; wider or
        fewer layers; residual connections or normalization between layers.""",
    example="""A 12-layer, width-6 MLP whose dead share climbs from 0% in the first layers to 50%
        in the last ones.""",
)
def dead_share_rises_with_depth(ctx: Context) -> Iterator[Finding]:
    chain = ctx.depth_trend
    if chain is None:
        return
    shares, worst, severity = _chain_shares(chain)
    half = len(chain) // 2
    shallow = float(np.mean([shares[v.name] for v in chain[:half]]))
    deep = float(np.mean([shares[v.name] for v in chain[half:]]))
    message = (f"the share of dead units rises with depth over {len(chain)} ReLU layers: "
               f"{percent(shallow)} on average in the first {half}, {percent(deep)} in the last "
               f"{len(chain) - half}, up to {percent(shares[worst.name])} at {worst.label}; "
               f"deeper layers keep losing units{_constant_output_text(ctx)}")
    yield Finding(
        "DR005", severity, None, message, "initialization", "; ".join(_init_fixes(ctx, worst)),
        {"dead_share": shares, "shallow_mean": shallow, "deep_mean": deep,
         "samples": ctx.samples, "rule_out_fire_rate": ctx.rule_out},
    )


@rule(
    code="DR006",
    name="constant-output",
    causes=("saturation", "weight_decay", "unknown"),
    severity="error",
    summary="The model's output is the same for every input.",
    checks="""The model's output took the same value for every sample of the scan, and no
        entirely dead layer or initialization pattern explains it (those are reported by
        DR004, DR005 or DR014, or by the rule of their cause, with the constant output in
        their message).""",
    why="""A model whose output ignores its input cannot learn from the loss: either every
        path from input to output passes a layer that is flat for all inputs (saturated or
        dead), or the output is overwritten by a constant.""",
    fix="""Find the layer where activations stop depending on the input (saturated layers are
        named in the message) and re-initialize or normalize it.""",
    example="""A sigmoid MLP whose hidden layer is saturated on every unit: "the model's output
        is the same for all 512 samples ... every unit of `act1` (nn.Sigmoid) is saturated".""",
)
def constant_output(ctx: Context) -> Iterator[Finding]:
    if not ctx.output_constant or ctx.first_dead is not None or ctx.output_range is None:
        return
    if ctx.init_pattern:
        return  # DR004/DR005/DR014 name the cause and say the output is constant
    spread, scale = ctx.output_range
    message = (f"the model's output is the same for all {plural(ctx.samples, 'sample')} (largest range of "
               f"any output element {num(spread)} at magnitude {num(scale)})")
    flat = [v for v in ctx.sites if v.units and len(v.saturated) == v.units]
    shrunk = [v for v in ctx.sites if (g := v.weight_shrink) is not None and g <= SHRUNK]
    if shrunk and not flat:
        view = shrunk[0]
        message += (f"; the weights of {view.layer_label or 'the layer feeding ' + view.label} "
                    f"shrank to {view.weight_shrink or 0.0:.2g}× {view.shrink_name} scale")
        if len(shrunk) > 1:
            message += f" ({len(shrunk) - 1} more layer{'s' if len(shrunk) > 2 else ''} too)"
        fix = ("lower weight_decay ~10× and keep it decoupled (torch.optim.AdamW), excluding "
               "biases and normalization parameters; retrain from an earlier checkpoint")
        cause = "weight_decay"
    elif flat:
        view = flat[0]
        message += f"; every unit of {view.label} is saturated"
        rescale = view.scale_fix() or (f"normalize the input of {view.label} (nn.LayerNorm or "
                                       "nn.BatchNorm1d/2d before it)")
        fix = f"fix the saturation of {view.label} first (see DR009): {rescale}"
        cause = "saturation"
    else:
        fix = ("compare each layer's activations for two different inputs to find where they "
               "become identical, then re-initialize or normalize that layer")
        cause = "unknown"
    yield Finding(
        "DR006", Severity.ERROR, None, message, cause, fix,
        {"samples": ctx.samples, "output_range": spread, "output_scale": scale,
         "saturated_layers": [v.name for v in flat]},
    )


@rule(
    code="DR014",
    name="deep-narrow-stack",
    causes=("initialization",),
    severity="error when some layer is ≥50% dead, else warning",
    summary="A deep, narrow ReLU stack with dead units spread through its layers.",
    checks="""At least 8 ReLU-family layers, the narrowest at most 16 units wide, with dead units
        no training trace explains in at least two layers and on average at least 10% of each
        layer (no layer entirely dead, no clean rise with depth: those are DR004 and DR005).""",
    why="""Deep, narrow ReLU nets are born with dead units with high probability, and the
        probability that some layer dies altogether grows with depth (Lu et al. 2019, "Dying
        ReLU and Initialization"). The dead units are scattered rather than rising neatly
        with depth, so they look unexplained one layer at a time; together they are the
        architecture and its initialization.""",
    fix="""Widen the hidden layers or use fewer of them, add residual connections or
        normalization, and use He init (nn.init.kaiming_normal_(w, nonlinearity='relu')) with
        zero biases; LeakyReLU keeps a gradient flowing.""",
    example="""A 12-layer, width-6 MLP at PyTorch's default init: "dead units in 9 of 12 ReLU
        layers of a deep, narrow stack (width 6): 31% of units on average, up to 67% at `16`
        (nn.ReLU)".""",
)
def deep_narrow_stack(ctx: Context) -> Iterator[Finding]:
    chain = ctx.deep_narrow
    if chain is None:
        return
    shares, worst, severity = _chain_shares(chain)
    hit = sum(1 for v in chain if shares[v.name] > 0)
    width = min(v.units for v in chain)
    mean = float(np.mean(list(shares.values())))
    message = (f"dead units in {hit} of {len(chain)} ReLU layers of a deep, narrow stack (width "
               f"{width}): {percent(mean)} of units on average, up to {percent(shares[worst.name])} at "
               f"{worst.label}, on {plural(ctx.samples, 'sample')}{_constant_output_text(ctx)}")
    yield Finding(
        "DR014", severity, None, message, "initialization", "; ".join(_init_fixes(ctx, worst)),
        {"dead_share": shares, "mean_share": mean, "depth": len(chain), "width": width,
         "samples": ctx.samples, "rule_out_fire_rate": ctx.rule_out,
         "output_constant": ctx.output_constant},
    )

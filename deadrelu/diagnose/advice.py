"""Fix texts that use how the model was trained (``report.meta["recipe"]``). Pure, torch-free.

A training checkpoint that carries its optimizer state says which optimizer ran,
at what learning rate, with which weight decay and schedule (read by
:mod:`deadrelu.loading.recipe`). The advice then names those numbers instead of
"3–10×", and follows the optimizer: clipping gradients caps an SGD step, but an
Adam-family step is about ``lr`` in size whatever the gradient, so under an
adaptive optimizer clipping is never offered as the fix for large updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The learning rate to try, as a share of the one that killed the units.
LR_CUT = 10.0
#: Likewise for weight decay.
WD_CUT = 10.0

_CLIP = "clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))"
_WARMUP = "a linear warm-up over the first ~5% of steps"


def sci(value: float) -> str:
    """A learning rate as people write it: ``3e-2``, ``2.5e-4``, ``0.1``, ``1``."""
    if value == 0:
        return "0"
    if 0.1 <= abs(value) < 1000:
        return f"{value:g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def recipe_phrase(recipe: Mapping[str, Any] | None) -> str | None:
    """``"Adam, lr 3e-2 at step 460 (no warm-up found)"``, or ``None`` without a known lr."""
    if not recipe or recipe.get("lr") is None:
        return None
    lr = float(recipe.get("initial_lr") or recipe["lr"])
    text = f"{recipe.get('optimizer') or 'the optimizer'}, lr {sci(lr)}"
    if recipe.get("step") is not None:
        text += f" at step {int(recipe['step']):,}"
    warmup = recipe.get("warmup")
    if warmup is False:
        text += " (no warm-up found)"
    elif warmup:
        text += " (with warm-up)"
    return text


def lr_fix(recipe: Mapping[str, Any] | None) -> str:
    """The learning-rate part of a fix: concrete with a recipe, optimizer-aware without."""
    phrase = recipe_phrase(recipe)
    if phrase is None or recipe is None:
        return ("lower the learning rate 3–10× or add warm-up (with SGD, clipping gradients "
                "also helps; with Adam-family optimizers it barely does: their step size is set "
                "by the learning rate)")
    lr = float(recipe.get("initial_lr") or recipe["lr"])
    target = f"try lr ≤ {sci(lr / LR_CUT)}"
    if not recipe.get("warmup"):
        target += f" with {_WARMUP}"
    if recipe.get("adaptive") is False:
        target += f", or {_CLIP}"
    return f"trained with {phrase}: {target}"


def weight_decay_fix(recipe: Mapping[str, Any] | None) -> str:
    """The weight-decay part of a fix, naming the checkpoint's value when it has one."""
    generic = ("lower weight_decay ~10× and keep it decoupled (torch.optim.AdamW), excluding "
               "biases and normalization parameters from decay")
    if not recipe or recipe.get("weight_decay") is None:
        return generic
    wd = float(recipe["weight_decay"])
    name = recipe.get("optimizer") or "the optimizer"
    if wd == 0:
        return (f"the checkpoint's optimizer ({name}) uses weight_decay 0, so look for an L2 term "
                "in the loss or a decay applied elsewhere; keep biases and normalization "
                "parameters out of any decay")
    text = f"{name} ran with weight_decay {wd:g}: try ≤ {wd / WD_CUT:g}"
    if name == "Adam" and not recipe.get("decoupled_weight_decay"):
        text += (" and switch to torch.optim.AdamW (Adam's weight_decay is an L2 term that the "
                 "adaptive step scales)")
    return text + ", excluding biases and normalization parameters from decay"

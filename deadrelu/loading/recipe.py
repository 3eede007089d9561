"""How a model was trained, read from its training checkpoint as data.

Training checkpoints often carry the recipe next to the weights: a Lightning
``.ckpt`` (``optimizer_states``, ``lr_schedulers``, ``hyper_parameters``,
``global_step``, ``epoch``), or a plain dict with ``optimizer``/``optim`` and
``scheduler`` entries and ``epoch``/``step`` counters. :func:`read_recipe` reads
them from the object the loader has already unpickled (safely: this module never
loads anything and never calls into the objects it is given; it only reads
dicts, lists, numbers and strings) and returns a small JSON-ready dict that goes
into ``report.meta["recipe"]``, where the diagnosis turns it into concrete advice
("Adam, lr 3e-2 at step 4,000, no warm-up found: try lr ≤ 3e-3 with warm-up").

An optimizer's ``state_dict()`` does not name its class, so the optimizer is
recognised by its hyper-parameters (``betas`` → the Adam family, ``momentum`` and
``dampening`` → SGD, ``alpha`` and ``centered`` → RMSprop, ...). A learning-rate
schedule with a warm-up is recognised when its state shows one (``LinearLR``
with ``start_factor < 1``, ``OneCycleLR``, a ``warmup`` key, a ``SequentialLR``
that starts with one); a scheduler whose state cannot tell (a ``LambdaLR``) leaves
the warm-up unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Optimizers whose step size is set by the learning rate whatever the gradient's size:
#: clipping gradients barely changes their updates.
ADAPTIVE = frozenset({"Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Adagrad", "Adafactor"})

_OPTIMIZER_KEYS = ("optimizer", "optim", "optimizer_state_dict", "optimizer_state", "opt")
_SCHEDULER_KEYS = ("scheduler", "lr_scheduler", "scheduler_state_dict", "sched")
_STEP_KEYS = ("global_step", "step", "steps", "iteration", "iter")
_HPARAM_KEYS = ("hyper_parameters", "hparams", "config", "args")
_HPARAM_LR = ("lr", "learning_rate")
_HPARAM_WD = ("weight_decay", "wd")
_HPARAM_WARMUP = ("warmup_steps", "warmup", "warmup_ratio", "num_warmup_steps", "warmup_epochs")


def read_recipe(obj: Any) -> dict[str, Any] | None:
    """The training recipe in a loaded checkpoint, or ``None`` when it holds none.

    Args:
        obj: what ``torch.load`` returned (only mappings are read).

    Returns:
        A JSON-ready dict with the keys found among ``optimizer`` (class name, or
        ``None`` when not recognised), ``adaptive``, ``lr``, ``initial_lr``,
        ``weight_decay``, ``decoupled_weight_decay``, ``momentum``, ``betas``,
        ``step``, ``epoch``, ``scheduler``, ``warmup`` (``True``/``False``/``None``
        for unknown) and ``source`` (where it was found).
    """
    if not isinstance(obj, Mapping):
        return None
    recipe: dict[str, Any] = {}
    optimizer, where = _first_optimizer(obj)
    if optimizer is not None:
        recipe.update(_optimizer_recipe(optimizer))
        recipe["source"] = where
    scheduler = _first_scheduler(obj)
    if scheduler is not None:
        name, warmup = _scheduler_kind(scheduler)
        recipe["scheduler"] = name
        recipe["warmup"] = warmup
    elif optimizer is not None:
        # an optimizer saved without any scheduler state: no schedule, so no warm-up,
        # unless the param groups were set up by one (``initial_lr`` is its mark)
        recipe["scheduler"] = None
        recipe["warmup"] = None if "initial_lr" in recipe else False
    hparams = _hparams(obj)
    for key in _HPARAM_LR:
        if "lr" not in recipe and _number(hparams.get(key)) is not None:
            recipe["lr"] = _number(hparams[key])
            recipe.setdefault("source", "hyper-parameters")
    for key in _HPARAM_WD:
        if "weight_decay" not in recipe and _number(hparams.get(key)) is not None:
            recipe["weight_decay"] = _number(hparams[key])
    for key in _HPARAM_WARMUP:
        value = _number(hparams.get(key))
        if value is not None:
            recipe["warmup"] = value > 0
            break
    if not recipe:
        return None
    step = next((_int(obj.get(k)) for k in _STEP_KEYS if _int(obj.get(k)) is not None), None)
    if step is None:
        step = recipe.pop("optimizer_step", None)
    else:
        recipe.pop("optimizer_step", None)
    if step is not None:
        recipe["step"] = step
    epoch = _int(obj.get("epoch"))
    if epoch is not None:
        recipe["epoch"] = epoch
    return recipe


def _first_optimizer(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    states = obj.get("optimizer_states")
    if (isinstance(states, Sequence) and not isinstance(states, str) and states
            and _is_optimizer_state(states[0])):
        return states[0], "Lightning optimizer_states"
    for key in _OPTIMIZER_KEYS:
        value = obj.get(key)
        if _is_optimizer_state(value):
            return value, f"checkpoint key {key!r}"
    return None, ""


def _is_optimizer_state(value: Any) -> bool:
    return (isinstance(value, Mapping) and isinstance(value.get("param_groups"), Sequence)
            and bool(value["param_groups"]) and isinstance(value["param_groups"][0], Mapping))


def _optimizer_recipe(state: Mapping[str, Any]) -> dict[str, Any]:
    group = state["param_groups"][0]
    name = _optimizer_name(group, state.get("state"))
    out: dict[str, Any] = {"optimizer": name, "adaptive": name in ADAPTIVE if name else None}
    lr = _number(group.get("lr"))
    initial = _number(group.get("initial_lr"))
    if lr is not None:
        out["lr"] = lr
    if initial is not None:
        out["initial_lr"] = initial
    wd = _number(group.get("weight_decay"))
    if wd is not None:
        out["weight_decay"] = wd
    if "decoupled_weight_decay" in group:
        out["decoupled_weight_decay"] = bool(group["decoupled_weight_decay"])
    momentum = _number(group.get("momentum"))
    if momentum is not None:
        out["momentum"] = momentum
    betas = group.get("betas")
    if isinstance(betas, Sequence) and len(betas) == 2 and all(_number(b) is not None for b in betas):
        out["betas"] = [_number(b) for b in betas]
    step = _optimizer_step(state.get("state"))
    if step is not None:
        out["optimizer_step"] = step
    return out


def _optimizer_name(group: Mapping[str, Any], state: Any) -> str | None:
    """The optimizer class, recognised by the hyper-parameters its param groups hold."""
    if "betas" in group:
        if group.get("decoupled_weight_decay") is True:
            return "AdamW"
        if "momentum_decay" in group:
            return "NAdam"
        if "decoupled_weight_decay" in group or "amsgrad" in group:
            return "Adam"
        return "Adamax" if not _has_state_key(state, "exp_avg_sq") else "Adam"
    if "centered" in group and "alpha" in group:
        return "RMSprop"
    if "lr_decay" in group:
        return "Adagrad"
    if "dampening" in group and "momentum" in group:
        return "SGD"
    return None


def _has_state_key(state: Any, key: str) -> bool:
    if not isinstance(state, Mapping):
        return False
    return any(isinstance(s, Mapping) and key in s for s in state.values())


def _optimizer_step(state: Any) -> int | None:
    """The step count the optimizer keeps per parameter (Adam's ``step``), if any."""
    if not isinstance(state, Mapping):
        return None
    for per_param in state.values():
        if isinstance(per_param, Mapping) and "step" in per_param:
            return _int(per_param["step"])
    return None


def _first_scheduler(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    states = obj.get("lr_schedulers")
    if (isinstance(states, Sequence) and not isinstance(states, str) and states
            and isinstance(states[0], Mapping)):
        return states[0]
    for key in _SCHEDULER_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and ("last_epoch" in value or "base_lrs" in value):
            return value
    return None


def _scheduler_kind(state: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    """(scheduler class, whether it warms up) as far as its state tells."""
    if any("warmup" in str(key).lower() for key in state):
        return None, True
    if "start_factor" in state:
        start = _number(state.get("start_factor"))
        return "LinearLR", start is not None and start < 1
    if ("total_steps" in state and "pct_start" in state) or "_schedule_phases" in state:
        return "OneCycleLR", True
    inner = state.get("_schedulers")
    if isinstance(inner, Sequence) and inner and isinstance(inner[0], Mapping):
        _, first = _scheduler_kind(inner[0])
        return "SequentialLR", first
    if "lr_lambdas" in state:
        return "LambdaLR", None  # the lambda is code: its shape cannot be read
    if "T_max" in state:
        return "CosineAnnealingLR", False
    if "step_size" in state and "gamma" in state:
        return "StepLR", False
    if "milestones" in state:
        return "MultiStepLR", False
    if "gamma" in state:
        return "ExponentialLR", False
    if "patience" in state:
        return "ReduceLROnPlateau", False
    return None, None


def _hparams(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in _HPARAM_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping):
            return value
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    import torch

    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex():
        return float(value.item())  # a 0-d tensor: Adam's step count, a tensor lr
    return None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else None

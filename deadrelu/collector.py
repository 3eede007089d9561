"""The collector: sees every activation call in a model's forward and feeds its counters.

How it sees calls (see ../shared/REFERENCE.md, "PyTorch gotchas"):

* Module hooks alone miss ``F.relu``, ``torch.relu``, ``x.relu_()`` and friends,
  so the collector enters a :class:`torch.overrides.TorchFunctionMode` for the
  duration of each forward. ``nn.ReLU`` itself calls ``F.relu``, so one mechanism
  sees module and functional activations alike. The mode is entered by the
  outermost module's forward pre-hook and left by its forward hook
  (``always_call=True``), so nothing outside the model's forward (data
  transforms, the loss) is ever recorded.
* Pre/post hooks on every submodule keep a stack of running modules; each call
  is attributed to the innermost one (as PyTorch's ``ModuleTracker`` does).
* A site is one *call position* in the forward, not one module: a shared
  ``self.relu`` called three times is three sites (``relu``, ``relu#1``,
  ``relu#2``), counted per forward.
* Statistics are computed inside the handler from the activation's *output*,
  so in-place activations are read before anything can overwrite them. For kinds
  whose output does not tell whether the input was positive (PReLU, softplus...,
  see :mod:`deadrelu.kinds`), firing comes from a mask of the *input* taken before
  the call.
* Composite activation modules (transformers' ``NewGELUActivation``..., or a module
  that computes one) are one site, recorded by their forward hook from their input
  and output; the activation calls inside them are not sites.
* An active mode disables ``nn.TransformerEncoderLayer``'s fused fast path, so
  its ``F.relu`` is seen in eval mode under ``no_grad`` too.

Site names: the module path for activation modules (``layer1.0.relu``), else the
calling module's path plus the op (``layer1.0:relu``; ``<model>:relu`` for the
top-level forward), with ``#k`` for the k-th repeat within one forward.

Padding (per forward): an ``attention_mask`` (N, T) among the outermost forward's
keyword arguments marks the real tokens; sites whose positions are those tokens
count only them, and a sample stays a sequence when tokens are flattened to
(N*T, F) rows (see ``_set_mask``).

Unit axis (per site, decided at its first call; the rules live in
:mod:`deadrelu.layout`): the dim that holds the units of the layer that made the
tensor (channels of a conv, pooling or batch/instance/group norm; features of a
Linear), followed through every op in between (transposes, permutes, views that
keep it, normalizations, elementwise ops, ``cat``/``stack``/``chunk``...). Only where
that is lost or unknown does the default rule apply (dim 1 from 4 dims up, else the
last dim), and the site's ``unit_axis_source`` says ``guessed``. ``unit_axis``
overrides by site-name glob.
"""

from __future__ import annotations

import fnmatch
import math
import sys
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, NamedTuple, TypeVar

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from deadrelu import layout, native
from deadrelu.errors import ConfigError, ModelError
from deadrelu.guard import ForwardGuard
from deadrelu.kinds import (
    COMPOSITE_CLASSES,
    FUNCTIONS,
    MODULES,
    ActivationKind,
    class_name,
    identify_composite,
    make_kind,
)
from deadrelu.stats import CounterArena, UnitStats, scratch_size

ROOT = "<model>"

@dataclass(frozen=True)
class SiteInfo:
    """Where an activation site is and how its tensor is read.

    Attributes:
        name: unique, stable site name (see module docstring).
        order: 0-based position of the site's first call in the forward pass.
        kind: canonical activation kind (``relu``, ``gelu``...).
        op: how it was called: ``module`` for activation modules, else the function
            name as written in code (``F.relu``, ``Tensor.relu_``...).
        module: path of the activation module, or of the module whose forward made the call.
        call_index: k for the k-th call of the same site base within one forward.
        input_layer: path of the module whose output fed this activation (possibly
            through elementwise ops such as a residual add), if known.
        input_direct: the input came straight from ``input_layer`` with no op between.
        unit_axis: dimension of the activation tensor holding units.
        unit_axis_source: how it was decided: ``known`` (followed from the layer that
            made the tensor), ``config`` (the ``unit_axis`` option) or ``guessed`` (the
            default rule; see :mod:`deadrelu.layout`). ``unrecorded`` in reports
            written before deadrelu recorded it.
        sample_axis: dimension holding samples.
        shape: shape of one sample's activation (sample axis removed).
        units: number of units.
        level, sat_low, sat_high, can_die, nonneg, input_level: see
            :class:`deadrelu.kinds.ActivationKind` (``input_level`` set: firing was read
            from the activation's input).
        part_of: set when the site is probably part of a composite activation written
            inline (``x * sigmoid(1.702 * x)``, ``0.5 * x * (1 + tanh(...))``): its
            counts are those of the inner function, and no saturation is diagnosed.
    """

    name: str
    order: int
    kind: str
    op: str
    module: str
    call_index: int
    input_layer: str | None
    input_direct: bool
    unit_axis: int
    sample_axis: int
    shape: tuple[int, ...]
    units: int
    level: float
    sat_low: float | None
    sat_high: float | None
    can_die: bool
    nonneg: bool
    unit_axis_source: str = "unrecorded"
    input_level: float | None = None
    part_of: str | None = None

    @property
    def bounded(self) -> bool:
        """Whether saturation is measured at this site (as :attr:`ActivationKind.bounded`)."""
        return self.sat_low is not None or self.sat_high is not None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SiteInfo:
        optional = ("unit_axis_source", "input_level", "part_of")  # older reports lack them
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d or k not in optional}
        fields["shape"] = tuple(fields["shape"])
        return cls(**fields)


@dataclass
class Site:
    """One activation site: what it is, and its running counters."""

    info: SiteInfo
    stats: UnitStats


@dataclass(slots=True)
class Frame:
    """One module running in the forward (the collector keeps a stack of them)."""

    module: nn.Module
    path: str
    #: the op of an activation module (its own call is the site), else None
    op: str | None
    #: activation calls made while this module was the innermost one
    calls: int = 0
    #: the kind of a composite activation module (its calls inside are not sites)
    composite: str | None = None
    #: how many sites existed when it started (first forward: the sites made inside it)
    first_site: int = 0


class Producer(NamedTuple):
    """Where a tensor came from: the site or module path that made it."""

    path: str
    #: made by that module itself, with no op in between
    direct: bool


class Derived(NamedTuple):
    """A tensor computed elementwise from ``root`` by scalar arithmetic and the activation
    sites in ``sites`` (first forward only): ``tanh(0.79 * (x + 0.04 * x**3))`` is one of
    ``x`` through the tanh site. Multiplied by its own root, it is most likely part of a
    composite activation written inline (``x * sigmoid(1.702 * x)``)."""

    root: weakref.ref[Tensor]
    sites: tuple[str, ...]
    #: id of the root: a root freed early (``fc(x) * 20`` frees ``fc(x)``) still
    #: matches notes that name the same id and whose reference is dead too
    root_id: int = 0


#: Elementwise arithmetic that keeps a tensor "a function of the same root".
_ARITHMETIC = frozenset({
    "__mul__", "__rmul__", "mul", "__add__", "__radd__", "add", "__sub__", "__rsub__", "sub",
    "__truediv__", "__rtruediv__", "div", "__pow__", "pow", "__neg__", "neg", "square",
    "mul_", "add_", "sub_", "div_", "__iadd__", "__imul__", "erf", "exp", "log1p", "sqrt",
})


class _Plan(NamedTuple):
    """A site's kernel view of tensors of one geometry (see ``Collector._plan``)."""

    view: native.KernelView
    #: the fused ReLU takes it: dense (contiguous or channels-last) with ``empty_like``
    #: keeping its strides, so that the output can be written through the same view, and
    #: not a Linear output (one value per sample and unit), where torch's ReLU and a
    #: statistics pass cost less than the fused pass (benchmarks/bench_kernel.py)
    fuse: bool
    #: the statistics kernel's arguments after the tensors: the view's, then the site
    #: kind's level and bounds (:func:`deadrelu.native.stats_view`), built once here; for
    #: a kind counted on its input the level is infinite (no output value fires)
    args: tuple[Any, ...]
    #: for a kind counted on its input: the arguments of the input's pass, which counts
    #: only where it fires (its level, no bounds)
    firing_args: tuple[Any, ...] | None


#: Geometries remembered per site; past this (text batches of every length) start over.
_PLANS_PER_SITE = 16


class Failure(NamedTuple):
    """The innermost module whose forward raised, and the shape of its first input."""

    path: str
    module: nn.Module
    shape: tuple[int, ...] | None


def _failure(path: str, module: nn.Module, args: tuple[Any, ...]) -> Failure:
    """The failure of ``module`` at ``path``, called with ``args``."""
    first = _first_tensor(args, {})
    return Failure(path, module, tuple(first.shape) if first is not None else None)


_T = TypeVar("_T")


class TensorNotes(Generic[_T]):
    """A note per tensor of one forward, keyed by identity.

    A freed tensor's id can be reused by a new one, so a note is only read back
    for the very tensor it was written for (a weak reference checks that).
    """

    def __init__(self) -> None:
        self._notes: dict[int, tuple[weakref.ref[Tensor], _T]] = {}

    def set(self, tensor: Tensor, value: _T) -> None:
        self._notes[id(tensor)] = (weakref.ref(tensor), value)

    def get(self, tensor: Any) -> _T | None:
        if not isinstance(tensor, Tensor):
            return None
        known = self._notes.get(id(tensor))
        return known[1] if known is not None and known[0]() is tensor else None

    def clear(self) -> None:
        self._notes.clear()


def _op_label(func: Any) -> str:
    qual: str = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or "call"
    mod: str = getattr(func, "__module__", None) or ""
    name = qual.split(".")[-1].lstrip("_")
    if qual.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    if mod.startswith("torch.nn.functional") or mod == "torch._C._nn":
        return f"F.{name}"
    return f"torch.{name}"


def _tensors(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterator[Tensor]:
    """The tensor operands of a call, in order (one level into lists, as for torch.cat)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from (item for item in value if isinstance(item, Tensor))


def _first_tensor(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Tensor | None:
    return next(_tensors(args, kwargs), None)


class _Mode(TorchFunctionMode):
    """Routes every torch call inside the forward to the collector."""

    def __init__(self, collector: Collector) -> None:
        super().__init__()
        self.collector = collector

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = FUNCTIONS.get(func)
        c = self.collector
        if op is not None and c._stack and not c._muted:
            return c._activation(func, op, args, kwargs)
        out = func(*args, **kwargs)
        if c._tracing and args and isinstance(out, (Tensor, tuple, list)):
            c._propagate(func, args, kwargs, out)
        return out


class Collector:
    """Records per-unit statistics of every activation site of ``model``.

    The collector only records; it decides nothing. Use it as a context manager
    (or :meth:`attach`/:meth:`detach`); while attached, every forward of the model
    updates the counters unless :attr:`enabled` is False (then the hooks return at
    once and no torch call is intercepted).

    Args:
        model: the module to watch (already unwrapped from ``torch.compile``/DDP).
        unit_axis: site-name glob → unit dimension, overriding the default rule.
        saturation_margin: band width of sigmoid/tanh saturation (see :mod:`deadrelu.kinds`).
        batch_dim: the dim of the model's input that holds the samples (1 for time-major
            sequences); inside the model, the dim of that size holds them.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        unit_axis: Mapping[str, int] | None = None,
        saturation_margin: float = 0.01,
        batch_dim: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"expected a torch.nn.Module, got {type(model).__name__}",
                "pass the model object itself",
            )
        if not 0.0 < saturation_margin < 0.5:
            raise ConfigError(
                f"saturation_margin must be in (0, 0.5), got {saturation_margin}",
                "use a small value such as 0.01",
            )
        self.model = model
        self.unit_axis = dict(unit_axis or {})
        for pattern, axis in self.unit_axis.items():
            if not isinstance(axis, int) or isinstance(axis, bool):
                raise ConfigError(
                    f"unit_axis[{pattern!r}] must be an int dimension, got {axis!r}",
                    "give the dimension index, e.g. {'encoder.*': -1}",
                )
        self.saturation_margin = saturation_margin
        self.batch_dim = batch_dim
        self.enabled = True
        self.sites: dict[str, Site] = {}
        self.last_site: str | None = None
        #: (module path, module, shape of its first input) of the innermost module whose
        #: forward raised during the last forward, if one did; read by scan's error message.
        self.failure: Failure | None = None
        #: (site name or module path, direct) that produced the model's output on the
        #: first forward, if known; read by the diagnosis (a ReLU on the output).
        self.output_producer: Producer | None = None
        self._names: dict[int, str] = {}
        for name, m in model.named_modules(remove_duplicate=False):
            # a torch.compile'd submodule is named by its path in the user's code
            name = name.replace("._orig_mod", "").removeprefix("_orig_mod.")
            self._names.setdefault(id(m), name)  # a shared module keeps its first path
        self._graph_paths = _graph_module_paths(model)
        #: id of a composite activation module → its kind (see deadrelu.kinds)
        self._composites: dict[int, str] = {
            id(m): kind for m in model.modules()
            if (kind := COMPOSITE_CLASSES.get(class_name(type(m)))) is not None
        }
        self._muted = 0  # depth of composite modules running: their calls are not sites
        self._handles: list[tuple[int, RemovableHandle]] = []  # (id of module, handle)
        # first forward: ids of the modules that ran, and of those that were the
        # innermost module when an activation ran
        self._ran: set[int] = set()
        self._hosts: set[int] = set()
        # built-in leaf modules that need no hooks once the first forward is done
        self._quiet: frozenset[int] = frozenset()
        self._stack: list[Frame] = []
        self._calls: dict[str, int] = {}
        self._mode: _Mode | None = None
        self._guard: ForwardGuard | None = None
        self._batch = 0
        self._tracing = False
        self._traced_once = False
        #: after the first forward: sites are recorded by module hooks, no mode (_hook_only)
        self._hooked = False
        self._depth = 0  # nesting of the root's forward, while hooked (_attach_hooked)
        self._producers: TensorNotes[Producer] = TensorNotes()
        #: each tensor's unit dim, where it is known (see deadrelu.layout)
        self._layouts: TensorNotes[int] = TensorNotes()
        #: tensors computed from another one through activation sites (see Derived)
        self._derived: TensorNotes[Derived] = TensorNotes()
        self._scratch: dict[torch.device, Tensor] = {}
        self._arena = CounterArena()  # the sites' counters, a few buffers for all
        #: per unit count: a reused block for the kernel's pass over an input (_input_firing)
        self._firing_counts: dict[int, Tensor] = {}
        #: per site name, its kernel views by tensor geometry (see _plan)
        self._plans: dict[str, dict[tuple[Any, ...], _Plan | None]] = {}
        # this forward's padding mask: bool (N, T), its true count, and copies per device
        self._mask: Tensor | None = None
        self._mask_real = 0
        self._seq: tuple[int, int] | None = None  # (N, T) of this forward's attention mask
        self._seq_real = 0
        self._seq_seen = False  # a site's positions were the mask's tokens
        self._masks: dict[torch.device, Tensor] = {}
        #: real (unpadded) tokens of the forwards recorded so far whose attention mask
        #: matched some site's positions (0: none did)
        self.tokens = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> Collector:
        """Register the hooks. Raises if already attached."""
        if self._handles:
            raise RuntimeError("this Collector is already attached; detach() it first")
        if self._hooked:
            self._attach_hooked()
        else:
            for module in self.model.modules():
                if id(module) in self._quiet:
                    continue
                self._handles.append(
                    (id(module), module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
                )
                self._handles.append(
                    (id(module), module.register_forward_hook(self._post_hook, always_call=True))
                )
        # A KeyboardInterrupt skips the always_call hooks: the guard leaves the forward then.
        self._guard = ForwardGuard(self.model, self._leave_forward)
        return self

    def detach(self) -> None:
        """Remove every hook and leave any half-finished forward. Safe to call twice."""
        for _, handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._guard is not None:
            self._guard.remove()
            self._guard = None
        self._leave_forward()

    def _quiet_leaves(self) -> None:
        """After a complete first forward, drop the hooks of built-in leaf modules.

        A ``Conv2d`` or ``BatchNorm2d`` never calls an activation, so its frame never
        names a site, and its output's provenance is only needed in the first forward.
        Their hooks are what per-module hooks cost most of (about 0.5% of a ResNet
        forward). Kept: the root, containers, activation modules, custom modules, any
        module that was innermost when an activation ran, and any that did not run (a
        branch not taken may call one later). A failure inside a
        quiet module is still attributed to it, from the traceback (see _post_hook).
        """
        quiet = {
            id(m) for m in self.model.modules()
            if m is not self.model and next(m.children(), None) is None
            and type(m) not in MODULES and id(m) in self._ran and id(m) not in self._hosts
            and type(m).__module__.startswith("torch.nn.modules.")
        }
        for key, handle in self._handles:
            if key in quiet:
                handle.remove()
        self._handles = [(key, h) for key, h in self._handles if key not in quiet]
        self._quiet = frozenset(quiet)

    def _hook_only(self) -> bool:
        """Whether, after the first complete forward, module hooks alone see every site.

        The interception mode sees every torch call of the forward, which costs a few
        microseconds per op and per activation (docs/performance.md). It can be left
        off when that changes nothing: every module is one of torch.nn's own (no user
        forward code, so no functional activation call can appear in a later forward,
        and each module makes the same calls every time), every activation module ran
        in the first forward, and every site is an activation module read from its
        output. Then each site is recorded by its module's forward hook, with the same
        name and counters; the ReLU is computed by torch and its output read once more
        by the kernel instead of the fused pass.
        """
        if self._graph_paths or not self.sites:
            return False
        modules = list(self.model.modules())
        if not all(type(m).__module__.startswith("torch.nn.modules.") for m in modules):
            return False
        if any(type(m) in MODULES and id(m) not in self._ran for m in modules):
            return False
        return all(s.info.op == "module" and s.info.input_level is None and s.info.part_of is None
                   for s in self.sites.values())

    def _attach_hooked(self) -> None:
        """The hooks of the steady state where module hooks alone see every site (see
        _hook_only): the root's, which start and end a forward, and one forward hook per
        activation module, which records its call. No other module is hooked and no frame
        is kept per call: what a hook costs per call is most of the steady state's Python
        (docs/performance.md, "Python per activation call")."""
        root, add = self.model, self._handles.append
        add((id(root), root.register_forward_pre_hook(self._hooked_enter, with_kwargs=True)))
        for module in root.modules():  # a shared module once: its calls are counted
            if type(module) in MODULES:
                hook = self._activation_hook(self._names.get(id(module), "?"))
                add((id(module), module.register_forward_hook(hook)))
        # after the activation hooks: the root may be an activation module itself
        add((id(root), root.register_forward_hook(self._hooked_leave, always_call=True)))

    def _hooked_enter(self, module: nn.Module, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> None:
        if self._depth:
            self._depth += 1  # the root called within its own forward
        elif self.enabled and self._starts_forward(module):
            self._enter_forward(args, kwargs)
            self._depth = 1

    def _hooked_leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        error = sys.exc_info()[1]
        if error is not None and self.failure is None:
            self.failure = self._traceback_failure(error, None) or _failure(ROOT, module, args)
        self._leave_forward()

    def _activation_hook(self, base: str) -> Any:
        """The forward hook of the activation module at path ``base`` (_attach_hooked):
        its k-th call in a forward is site ``base#k``, as the interception names it."""
        calls = self._calls

        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if not isinstance(out, Tensor):
                return
            if not self._depth:  # called on its own, outside the model's forward
                if self.enabled and self._starts_forward(module):
                    self._enter_forward(args, {})
                    self._depth = 1
                    try:
                        hook(module, args, out)
                    finally:
                        self._leave_forward()
                return
            index = calls.get(base, 0)
            calls[base] = index + 1
            site = self.sites.get(base if index == 0 else f"{base}#{index}")
            if site is not None:  # always, by _hook_only's conditions
                self._on_activation(site, args, out)

        return hook

    def __enter__(self) -> Collector:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def reset(self) -> None:
        """Zero every site's counters (sites and their names are kept)."""
        for site in self.sites.values():
            site.stats.reset()

    def snapshot(self) -> list[Site]:
        """Sites in forward order with counters copied to the CPU (one host sync)."""
        ordered = sorted(self.sites.values(), key=lambda s: s.info.order)
        return [Site(s.info, s.stats.copy("cpu")) for s in ordered]

    # -- forward tracking ----------------------------------------------------------------------

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self._stack:
            if not self._starts_forward(module):
                return
            self._enter_forward(args, kwargs)
        op = MODULES.get(type(module))
        composite = self._composites.get(id(module))
        if composite is not None:
            self._muted += 1
        if self._tracing:
            self._ran.add(id(module))
        self._stack.append(Frame(module, self._names.get(id(module), "?"), op, 0, composite,
                                 len(self.sites)))

    def _starts_forward(self, module: nn.Module) -> bool:
        """Whether a forward entered through ``module`` is recorded (subclasses narrow it)."""
        return True

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._stack or self._stack[-1].module is not module:
            return
        frame = self._stack.pop()
        path = frame.path
        error = sys.exc_info()[1]
        if frame.composite is not None:
            self._muted -= 1
        if error is None and (frame.composite is not None or self._tracing):
            self._composite_call(frame, args, output)
        if output is None and self.failure is None and error is not None:
            # always_call hooks run (with the call's args) while an exception unwinds the
            # forward: the first hooked module to see it raised, or a quiet one inside it
            self.failure = _failure(path or ROOT, module, args)
            if self._quiet:
                self.failure = self._traceback_failure(error, self._quiet) or self.failure
        if self._tracing and not self._stack:  # before the root module claims the output
            self.output_producer = self._producers.get(_first_tensor((output,), {}))
        if self._tracing and isinstance(output, Tensor):
            self._note_producer(output, path, True)
        if self._tracing:
            first_out = _first_tensor((output,), {})
            if first_out is not None:
                made = layout.module_layout(module, self._layouts.get(_first_tensor(args, {})),
                                            first_out.ndim)
                if made is not None:
                    self._layouts.set(first_out, made)
        if not self._stack:
            complete = self._tracing and error is None
            self._leave_forward()
            if complete:
                self._quiet_leaves()
                self._hooked = self._hook_only()
                if self._hooked:  # from the next forward on: the root's and activations' hooks
                    for _, handle in self._handles:
                        handle.remove()
                    self._handles.clear()
                    self._attach_hooked()

    def _composite_call(self, frame: Frame, args: tuple[Any, ...], output: Any) -> None:
        """Record a call of a composite activation module as one site, on its input.

        In the first forward, a parameter-free leaf module whose output is one of the
        known composites of its input (:func:`deadrelu.kinds.identify_composite`)
        becomes one: the sites its calls made are withdrawn, and later forwards do
        not record them.
        """
        x, out = _first_tensor(args, {}), output
        if not isinstance(x, Tensor) or not isinstance(out, Tensor) or x.shape != out.shape:
            return
        with torch._C.DisableTorchFunction():  # the collector's own ops are not the model's
            kind = frame.composite
            if kind is None:
                kind = self._probe(frame, x, out)
                if kind is None:
                    return
            base = frame.path or ROOT
            index = self._calls.get(base, 0)
            self._calls[base] = index + 1
            name = base if index == 0 else f"{base}#{index}"
            site = self.sites.get(name)
            fired = self._input_firing(site, x, 0.0)
            if site is None:
                made = replace(make_kind(kind, (), {}, self.saturation_margin), input_level=0.0)
                site = self._new_site(name, made, "module", base, index, x, out)
            self._on_activation(site, (x,), out, fired)

    def _probe(self, frame: Frame, x: Tensor, out: Tensor) -> str | None:
        module = frame.module
        if (frame.op is not None or next(module.children(), None) is not None
                or next(module.parameters(recurse=False), None) is not None
                or next(module.buffers(recurse=False), None) is not None
                or type(module).__module__.startswith("torch.")):
            return None
        kind = identify_composite(x, out)
        inner = list(self.sites)[frame.first_site:]
        if kind is None or (len(inner) == 1 and self.sites[inner[0]].info.kind == kind):
            return None  # not a composite, or a wrapper around that very activation call
        for name in inner:
            del self.sites[name]  # its tanh/sigmoid calls were parts of it
        self._composites[id(module)] = kind
        return kind

    def _traceback_failure(self, error: BaseException,
                           among: frozenset[int] | None) -> Failure | None:
        """(path, module, input shape) of the innermost module of the model (of those
        whose ids are ``among``, if given) whose forward is in the traceback, if any."""
        found = None
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            owner = frame.f_locals.get("self")
            if (isinstance(owner, nn.Module) and id(owner) in self._names
                    and (among is None or id(owner) in among)):
                code = frame.f_code
                arg = frame.f_locals.get(code.co_varnames[1]) if code.co_argcount > 1 else None
                shape = tuple(arg.shape) if isinstance(arg, Tensor) else None
                found = Failure(self._names.get(id(owner), "?"), owner, shape)
            tb = tb.tb_next
        return found

    def _enter_forward(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        first = _first_tensor(args, kwargs)
        d = self.batch_dim
        self._batch = int(first.shape[d]) if first is not None and first.ndim > d else 1
        self._calls.clear()
        self.last_site = None
        self.failure = None
        self._set_mask(kwargs.get("attention_mask") if d == 0 else None)
        self._tracing = not self._traced_once
        if not self._hooked:
            self._mode = _Mode(self)
            self._mode.__enter__()

    def _leave_forward(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if self._tracing:
            self._traced_once = True
            self._tracing = False
        self._producers.clear()
        self._layouts.clear()
        self._derived.clear()
        self._stack.clear()
        self._depth = 0
        self._muted = 0
        if self._seq is not None and self._seq_seen:
            self.tokens += self._seq_real
        self._mask, self._seq, self._seq_seen = None, None, False
        self._masks.clear()

    # -- padding -------------------------------------------------------------------------------

    def _set_mask(self, mask: Any) -> None:
        """Take the forward's ``attention_mask`` (N, T) as the positions that count.

        Hugging Face models take padded batches with an ``attention_mask`` of 1 for
        real tokens and 0 for padding. A pad position is not a position a unit could
        fire on, so sites whose tensor has these (N, T) positions count only the
        real ones (:meth:`UnitStats.update_masked`). A mask without padding is
        dropped, so unpadded batches keep the fast path; its (N, T) shape is kept,
        so tokens flattened to (N*T, F) rows (OPT's feed-forward) are still read as
        N sequences of T tokens. One host sync per forward.
        """
        self._mask, self._seq, self._seq_seen = None, None, False
        if not isinstance(mask, Tensor) or mask.ndim != 2 or int(mask.shape[0]) != self._batch:
            return
        keep = mask if mask.dtype == torch.bool else mask != 0
        real = int(keep.sum())
        self._seq, self._seq_real = (int(keep.shape[0]), int(keep.shape[1])), real
        if real < keep.numel():
            self._mask, self._mask_real = keep, real

    def _view(self, t: Tensor, info: SiteInfo, sample_axis: int) -> tuple[Tensor, int]:
        """``t`` laid out for the counters (see :func:`_layout`); token rows flattened
        to (N*T, F) are viewed as (N, T, F), so that a sample is still a sequence."""
        seq = self._seq
        if (seq is not None and t.ndim == 2 and sample_axis == 0 and info.unit_axis == 1
                and seq[1] > 1 and t.shape[0] == seq[0] * seq[1]):
            return t.view(seq[0], seq[1], t.shape[1]) if t.is_contiguous() else \
                t.reshape(seq[0], seq[1], t.shape[1]), 1
        return _layout(t, info.unit_axis, sample_axis)

    def _mask_for(self, out: Tensor, info: SiteInfo, sample_axis: int,
                  y3: Tensor, rd: int) -> tuple[Tensor, int] | None:
        """The padding mask laid out as ``y3``'s (S, R), with its true count; None if it
        does not apply (no padding, or the site's positions are not the mask's tokens).

        It applies when the first dim after the sample and unit dims has the mask's
        length T: then R is T, or T times the dims after it (e.g. (N, T, heads, D)),
        flattened T-major, so each token's mask entry repeats over them. Token rows
        (N*T, F) viewed as (N, T, F) by :meth:`_view` have R == T. A site that matches
        marks the forward's tokens as counted (:attr:`tokens`), padded or not: a mask
        that matches no site (an audio model's mask over raw samples) claims nothing.
        """
        if self._seq is None:
            return None
        n, t = self._seq
        r = int(y3.shape[rd])
        if y3.shape[0] != n:
            return None
        if out.ndim == 2:  # token rows, if _view unflattened them
            if r != t or y3.shape[3 - rd] != out.shape[1]:
                return None
        else:
            rest = [d for d in range(out.ndim) if d not in (sample_axis % out.ndim, info.unit_axis)]
            if not rest or out.shape[rest[0]] != t:
                return None
        self._seq_seen = True
        mask = self._mask
        if mask is None:
            return None
        device_mask = self._masks.get(y3.device)
        if device_mask is None:
            device_mask = self._masks[y3.device] = mask.to(y3.device, non_blocking=True)
        if r != t:
            return device_mask.repeat_interleave(r // t, dim=1), self._mask_real * (r // t)
        return device_mask, self._mask_real

    # -- provenance (first forward only) ------------------------------------------------------

    def _note_producer(self, tensor: Tensor, path: str, direct: bool) -> None:
        known = self._producers.get(tensor)
        if direct and known is not None and known.direct:
            return  # nested modules returning one tensor: the innermost module wins
        self._producers.set(tensor, Producer(path, direct))

    def _propagate(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any],
                   out: Any) -> None:
        """What the output(s) of one torch call of the first forward came from.

        The producer: out = op(x, ...) inherits x's producer, marked indirect (e.g. a
        residual add) unless the op only rearranges x and keeps its unit dim (a
        transpose, a view); an in-place op (out is x) makes x's producer indirect too. Any
        operand may carry it: in ``x + bn(conv(x))`` or ``gain * conv(h)`` the first
        one is the raw input or a parameter. The layout: see :func:`layout.follow`.
        ``chunk``/``split``/``unbind`` return several tensors; each gets both.
        """
        outs = [out] if isinstance(out, Tensor) else [t for t in out if isinstance(t, Tensor)]
        operands = list(_tensors(args, kwargs))
        src = next((p for t in operands if (p := self._producers.get(t)) is not None), None)
        x, known = next(((t, lay) for t in operands if (lay := self._layouts.get(t)) is not None),
                        (None, None))
        name = layout.op_name(func)
        head = args[0] if args else None
        first = x is not None and (x is head or (isinstance(head, (tuple, list))
                                                 and any(t is x for t in head)))
        for o in outs:
            made = layout.produced(name, known, o.ndim, args)
            if made is None and x is not None and known is not None:
                made = layout.LOST if known == layout.LOST else layout.follow(
                    name, args, kwargs, known, tuple(x.shape), tuple(o.shape), first=first)
                made = layout.LOST if made is None else made
            if made is not None:
                self._layouts.set(o, made)
            if src is not None:
                # a transpose or view that keeps the units keeps them the layer's own
                direct = (src.direct and name in layout.REARRANGING and len(operands) == 1
                          and made is not None and made >= 0)
                self._producers.set(o, Producer(src.path, direct))
        if name in _ARITHMETIC and isinstance(out, Tensor):
            self._follow_arithmetic(name, operands, out)

    def _root(self, tensor: Tensor) -> Derived:
        known = self._derived.get(tensor)
        return known if known is not None else Derived(weakref.ref(tensor), (), id(tensor))

    def _follow_arithmetic(self, name: str, operands: list[Tensor], out: Tensor) -> None:
        """Track scalar arithmetic on one tensor, and spot ``x * f(x)`` (see Derived)."""
        big = [t for t in operands if t.ndim > 0 and t.numel() > 1]
        if not big:
            return
        notes = [self._root(t) for t in big]
        first = notes[0]
        if any(n.root_id != first.root_id or n.root() is not first.root() for n in notes):
            return  # two different tensors: a gate times a value, a residual add...
        if len(notes) == 2 and name in ("__mul__", "__rmul__", "mul", "mul_", "__imul__"):
            # x * f(x): f's sites are those the one operand went through and the other not
            # (x may itself be an activation's output: both then share its site)
            small, big_ = sorted((set(n.sites) for n in notes), key=len)
            extra = tuple(site for site in notes[0].sites + notes[1].sites if site not in small)
            if small < big_ and extra:
                self._mark_composite(extra)
                return
        sites = tuple(dict.fromkeys(site for n in notes for site in n.sites))
        self._derived.set(out, Derived(first.root, sites, first.root_id))

    def _mark_composite(self, names: tuple[str, ...]) -> None:
        for name in names:
            site = self.sites.get(name)
            if site is not None and site.info.part_of is None:
                site.info = replace(site.info, part_of="x * f(x)")

    # -- activations ---------------------------------------------------------------------------

    def _activation(self, func: Any, op: str, args: tuple[Any, ...],
                    kwargs: Mapping[str, Any]) -> Any:
        """Run one activation call inside a recorded forward and record its output."""
        name, label, owner, index = self._site_key(func, op)
        site = self.sites.get(name)
        if site is not None and func in _FUSED_RELU and not self._tracing and self._mask is None:
            out = self._fused_relu(func, site, args, kwargs)
            if out is not None:
                self.last_site = name
                return out
        kind = make_kind(op, args, kwargs, self.saturation_margin) if site is None else None
        level = site.info.input_level if site is not None else kind.input_level if kind else None
        x = args[0] if args else kwargs.get("input")
        fired = None
        if level is not None and isinstance(x, Tensor):
            # firing is the input's sign here (see deadrelu.kinds): read it before the
            # call, which may write its output into x
            fired = self._input_firing(site, x, level)
        out = func(*args, **kwargs)
        if isinstance(out, Tensor):
            if kind is not None:
                site = self._new_site(name, kind, label or _op_label(func), owner, index, x, out)
            if site is not None:
                self._on_activation(site, args, out, fired)
        return out

    def _site_key(self, func: Any, op: str) -> tuple[str, str, str, int]:
        """(name, op label, owner, call index) of this call; counts it. An empty label
        stands for ``_op_label(func)``."""
        frame = self._stack[-1]
        if self._tracing:
            self._hosts.add(id(frame.module))
        if frame.op is not None and frame.calls == 0:
            base, label, owner = frame.path, "module", frame.path
        elif self._graph_paths and len(self._stack) == 1:
            base, label, owner = self._graph_site(func, op)
        else:  # the label is only needed for a new site: worked out there (_op_label)
            owner = frame.path or ROOT
            base, label = f"{owner}:{op}", ""
        frame.calls += 1
        index = self._calls.get(base, 0)
        self._calls[base] = index + 1
        return (base if index == 0 else f"{base}#{index}"), label, owner, index

    def _fused_relu(self, func: Any, site: Site, args: tuple[Any, ...],
                    kwargs: Mapping[str, Any]) -> Tensor | None:
        """Compute a known ReLU site's output and its statistics in one pass (CPU).

        Returns None, having done nothing, where the fused kernel does not apply
        (not a plain contiguous float32 CPU tensor, gradients needed, kernel not
        built); the caller then runs ``func`` and records its output as usual.
        """
        x = args[0] if args else kwargs.get("input")
        info = site.info
        if (type(x) is not Tensor or info.kind != "relu" or info.level != 0.0
                or not native.loaded() or (x.requires_grad and torch.is_grad_enabled())):
            return None
        inplace = _FUSED_RELU[func]
        if inplace is None:
            inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        if self._seq is not None:  # a forward with an attention mask: the general path
            return self._fused_relu_masked(site, x, inplace)
        plan = self._plan(site, x)
        if plan is None or not plan.fuse:
            return None
        out = x if inplace else torch.empty_like(x)
        if not site.stats.relu_view(x, out, plan.view):
            return None
        if inplace and not x.is_inference():
            torch.autograd.graph.increment_version(x)  # as torch.relu_ would
        return out

    def _fused_relu_masked(self, site: Site, x: Tensor, inplace: bool) -> Tensor | None:
        """:meth:`_fused_relu` in a forward with an attention mask but no padding (the
        site's positions may be the mask's tokens, which :meth:`_view` reads as such)."""
        info = site.info
        if (x.dtype != torch.float32 or x.device.type != "cpu"
                or not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))):
            return None
        sample_axis = self._sample_axis(x, info)
        x3, rd = self._view(x, info, sample_axis)
        if not _views(x3, x):
            return None
        self._mask_for(x, info, sample_axis, x3, rd)  # no padding here: only note the match
        out = x if inplace else torch.empty_like(x)
        o3 = x3 if inplace else self._view(out, info, sample_axis)[0]
        if not (inplace or _views(o3, out)) or not site.stats.relu_(x3, o3, rd):
            return None
        if inplace and not x.is_inference():
            torch.autograd.graph.increment_version(x)  # as torch.relu_ would
        return out

    def _plan(self, site: Site, t: Tensor) -> _Plan | None:
        """How the kernel reads ``t`` at this site, worked out once per shape, strides and
        batch size (the steady state then makes no view in Python); None where the
        kernel does not take it. Forwards with an attention mask do not come here."""
        plans = self._plans.get(site.info.name)
        if plans is None:
            plans = self._plans[site.info.name] = {}
        key = (t.shape, t.stride(), t.dtype, t.is_cpu, self._batch)
        try:
            return plans[key]
        except KeyError:
            pass
        plan = None
        if t.dtype == torch.float32 and t.is_cpu:
            t3, rd = _layout(t, site.info.unit_axis, self._sample_axis(t, site.info))
            view = native.kernel_view(t, t3, rd)
            if view is not None:
                dense = (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last))
                info = site.info
                from_input = info.input_level is not None
                flat = not view.slice_layout and view.dims[1] == 1
                plan = _Plan(view, dense and not flat and torch.empty_like(t, device="meta").stride() == t.stride(),
                             (*view.args, math.inf if from_input else info.level, info.sat_low,
                              info.sat_high, info.nonneg),
                             (*view.args, info.input_level, None, None, True) if from_input
                             else None)
        if len(plans) >= _PLANS_PER_SITE:  # varying shapes (text of every length): start over
            plans.clear()
        plans[key] = plan
        return plan

    def _input_firing(self, site: Site | None, x: Tensor, level: float) -> Tensor:
        """Where a kind counted on its input fired in this call: ``x > level``, read before
        the call may write into ``x``. For a known site where the kernel applies, the
        per-unit ``(active, sample_active)`` counts of ``x`` (float64, 2 × units) in one
        pass; else the boolean mask. :meth:`_on_activation` adds either to the counters."""
        x = x.detach()
        if site is not None and self._seq is None and native.loaded():
            plan = self._plan(site, x)
            if plan is not None and plan.firing_args is not None:
                counts = self._firing_counts.get(site.stats.units)
                if counts is None:
                    counts = self._firing_counts[site.stats.units] = torch.empty(
                        7, site.stats.units, dtype=torch.float64)
                counts.zero_()
                native.stats_view(counts, x, plan.firing_args)
                return counts[:2]
        with torch.no_grad():
            return torch.gt(x, level)

    def _on_activation(self, site: Site, args: tuple[Any, ...], out: Tensor,
                       fired: Tensor | None = None) -> None:
        """Record one activation output. ``fired``, for kinds counted on their input, is
        where the input says the units fired (:meth:`_input_firing`): a boolean mask like
        ``out``, or the per-unit counts the kernel took from the input."""
        self.last_site = site.info.name
        if self._tracing:  # whatever consumes this output was fed by this site
            self._producers.set(out, Producer(site.info.name, True))
            if args and isinstance(args[0], Tensor):
                root = self._root(args[0])
                self._derived.set(out, Derived(root.root, (*root.sites, site.info.name),
                                               root.root_id))
            known = self._layouts.get(args[0] if args else None)
            if known is not None:  # elementwise: the dims keep their meaning
                self._layouts.set(out, known)
        info = site.info
        mask = fired is not None and fired.dtype == torch.bool
        if fired is not None and (fired.shape != out.shape if mask
                                  else fired.shape[-1] != site.stats.units):
            fired = None  # not elementwise after all: firing is read off the output
        if (self._seq is None and native.loaded() and not mask
                and (fired is not None or info.input_level is None)):
            plan = self._plan(site, out)
            # the steady state: one kernel call (and the input's counts), no view made here
            if plan is not None and site.stats.update_view(
                    out.detach() if out.requires_grad else out, plan.view, plan.args):
                if fired is not None:
                    site.stats.add_counts(fired)
                return
        with torch.no_grad():  # during training: never part of the autograd graph
            sample_axis = self._sample_axis(out, info)
            y3, rd = self._view(out.detach(), info, sample_axis)
            masked = self._mask_for(out, info, sample_axis, y3, rd)
            # where the input says where units fired, the output says nothing about
            # firing: no value exceeds an infinite level, so the output's pass counts
            # none, and the input's firing is added instead
            level = math.inf if fired is not None else info.level
            if masked is not None:
                site.stats.update_masked(y3, rd, masked[0], masked[1], level, info.sat_low,
                                         info.sat_high, info.nonneg, self._scratch_for(y3))
            else:
                site.stats.update(y3, rd, level, info.sat_low, info.sat_high, info.nonneg,
                                  self._scratch_for(y3))
            if fired is not None and not mask:
                site.stats.add_counts(fired)
            elif fired is not None:
                site.stats.add_firing(*self._view(fired, info, sample_axis),
                                      mask=None if masked is None else masked[0])

    def _graph_site(self, func: Any, op: str) -> tuple[str, str, str]:
        # An exported graph runs its nodes in order, so the k-th call of an op in this
        # forward is the k-th node with that target: name it by the module it came from.
        key = f"graph:{func}"
        k = self._calls.get(key, 0)
        self._calls[key] = k + 1
        paths = self._graph_paths.get(func, [])
        if k >= len(paths):
            return f"{ROOT}:{op}", str(func), ROOT
        path, is_activation = paths[k]
        if is_activation:
            return path, "module", path
        return f"{path or ROOT}:{op}", str(func), path or ROOT

    def _sample_axis(self, out: Tensor, info: SiteInfo) -> int:
        # Batches are batch-first; a (T, N, C) tensor inside the model keeps the axis
        # found at the site's first call while it still holds the batch (a batch whose
        # size equals T must not switch it to dim 0); else the first dim that does.
        if out.ndim <= 1:
            return 0
        axis = info.sample_axis if info.sample_axis < out.ndim else 0
        if out.shape[axis] == self._batch:
            return axis
        for d in range(out.ndim):
            if d != info.unit_axis and out.shape[d] == self._batch:
                return d
        return axis

    def _new_site(
        self,
        name: str,
        kind: ActivationKind,
        label: str,
        owner: str,
        index: int,
        x: Any,
        out: Tensor,
    ) -> Site:
        producer = self._producers.get(x)
        unit_axis, source = self._unit_axis_for(name, out, producer.path if producer else None,
                                                self._layouts.get(x))
        sample_axis = self._guess_sample_axis(out, unit_axis)
        if out.ndim >= 2 and unit_axis == sample_axis:
            raise ConfigError(
                f"unit_axis {unit_axis} for site {name!r} is its sample dimension (it holds the "
                f"batch of {self._batch})",
                "choose the dimension that holds the units, e.g. 1 for conv channels or -1 for "
                "features",
            )
        nd = out.ndim
        shape = tuple(int(s) for d, s in enumerate(out.shape) if nd > 1 and d != sample_axis)
        units = int(out.shape[unit_axis]) if nd > 0 else 1
        stats = UnitStats.zeros(units, out.device, self._arena)
        info = SiteInfo(
            name=name, order=len(self.sites), kind=kind.name, op=label, module=owner,
            call_index=index, input_layer=producer.path if producer else None,
            input_direct=bool(producer and producer.direct), unit_axis=unit_axis if nd > 0 else 0,
            unit_axis_source=str(source),
            sample_axis=sample_axis, shape=shape or (units,), units=units, level=kind.level,
            sat_low=kind.sat_low, sat_high=kind.sat_high, can_die=kind.can_die, nonneg=kind.nonneg,
            input_level=kind.input_level,
        )
        site = Site(info, stats)
        self.sites[name] = site
        return site

    def _unit_axis_for(self, name: str, out: Tensor, producer: str | None,
                       known: int | None = None) -> tuple[int, layout.AxisSource]:
        nd = out.ndim
        for pattern, axis in self.unit_axis.items():
            if fnmatch.fnmatchcase(name, pattern):
                if not -nd <= axis < max(nd, 1):
                    raise ConfigError(
                        f"unit_axis {axis} for site {name!r} is out of range for its {nd}-d output",
                        f"use a dimension between {-nd} and {nd - 1}",
                    )
                return (axis % nd if nd else 0), layout.AxisSource.CONFIG
        return layout.unit_axis(nd, known, self._module_at(producer))

    def _guess_sample_axis(self, out: Tensor, unit_axis: int) -> int:
        if out.ndim <= 1 or out.shape[0] == self._batch:
            return 0
        for d in range(1, out.ndim):
            if d != unit_axis and out.shape[d] == self._batch:
                return d
        return 0

    def _module_at(self, path: str | None) -> nn.Module | None:
        if path is None or path == ROOT:
            return None
        try:
            return self.model.get_submodule(path)
        except AttributeError:
            return None

    def _scratch_for(self, y3: Tensor) -> Tensor:
        buf = self._scratch.get(y3.device)
        n = scratch_size(y3)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=torch.float32, device=y3.device)
            self._scratch[y3.device] = buf
        return buf


def _graph_module_paths(model: nn.Module) -> dict[Any, list[tuple[str, bool]]]:
    """For a ``torch.export`` graph: activation target → [(module path, is activation module)].

    Each node keeps the module stack it was traced from in ``meta["nn_module_stack"]``.
    Empty for ordinary modules.
    """
    graph = getattr(model, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return {}
    activation_types = {f"{cls.__module__}.{cls.__qualname__}" for cls in MODULES}
    out: dict[Any, list[tuple[str, bool]]] = {}
    for node in graph.nodes:
        if node.op != "call_function" or node.target not in FUNCTIONS:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path, type_name = ("", "")
        if stack:
            path, cls = list(stack.values())[-1]
            type_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
        out.setdefault(node.target, []).append((path, type_name in activation_types))
    return out


#: The ReLU callables the fused kernel may stand in for → whether they write into their
#: input (None: F.relu's ``inplace`` argument says). Exported graphs' aten ops are left
#: to run themselves.
_FUSED_RELU: Mapping[Any, bool | None] = {
    torch.nn.functional.relu: None, torch.relu: False, Tensor.relu: False,
    torch.relu_: True, Tensor.relu_: True,
}


def _views(part: Tensor, whole: Tensor) -> bool:
    """Whether ``part`` (a reshaped ``whole``) is a view rather than a copy."""
    return part.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()


def _layout(y: Tensor, unit_axis: int, sample_axis: int) -> tuple[Tensor, int]:
    """View ``y`` as (S, U, R) or (S, R, U), whichever avoids a copy; returns (view, R's dim)."""
    nd = y.ndim
    if nd == 0:
        return y.reshape(1, 1, 1), 2
    if nd == 1:
        return y.reshape(1, 1, -1), 1
    if nd == 2:
        if unit_axis == sample_axis:
            raise ModelError(f"unit axis and sample axis are both {unit_axis}", "set unit_axis for this site")
        y2 = y if sample_axis == 0 else y.t()
        return y2.unsqueeze(1), 1
    s = sample_axis % nd
    u = unit_axis % nd
    if y.stride(u) == 1:
        moved = y.movedim(s, 0)
        u_after = u + (1 if u < s else 0)
        moved = moved.movedim(u_after, -1)
        return moved.reshape(moved.shape[0], -1, moved.shape[-1]), 1
    moved = y.movedim((s, u), (0, 1))
    return moved.reshape(moved.shape[0], moved.shape[1], -1), 2


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each module's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
    except NotImplementedError:
        # torch.export programs refuse .eval(): their train/eval behaviour was fixed
        # when they were exported, so there is nothing to switch.
        flags = []
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag

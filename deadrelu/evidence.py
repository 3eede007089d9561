"""Read-only, JSON-ready summary of the weights that feed each activation site.

Runs once after a scan. For every site it looks up the module that produced the
activation's input (``SiteInfo.input_layer``) and summarises, per unit:

* a Linear/Conv layer: the incoming weights' L2 norm (row norm for Linear, per
  output channel for Conv) and the bias;
* a BatchNorm: ``gamma``, ``beta``, ``running_mean``, ``running_var`` and ``eps``,
  plus the Linear/Conv feeding the BatchNorm when it can be found (the nearest
  earlier sibling in the same parent whose output width matches).

Weight layers are summarised once even when several sites read them. Nothing is
written to the model, no forward is run, and everything is copied to plain
Python floats, so the diagnosis that reads it never touches the model.

Schema (``report.evidence``)::

    {"version": 1,
     "layers": {path: {"class", "kind": "weight"|"norm", ...per-unit lists,
                       "init" (weight layers of models with their own init scheme:
                               {"by", "weight_norm", "bias_abs"}, see init_reference)}},
     "sites": {site: {"activation_class", "owner_class", "layer", "norm", "direct",
                      "call_site" (functional calls whose file:line the source tells),
                      "defined_at" (modules: file:line of the ``self.x = ...`` that
                                    creates them, see callsites.definition_site)}},
     "nonfinite_params": {path: count}}

``nonfinite_params`` is not read here: the one pass over the weights that
fingerprints them (:func:`deadrelu.identity.read_weights`) finds them, and
:func:`deadrelu.assemble.assemble_report` passes them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from deadrelu.collector import Site, SiteInfo

VERSION = 1

_WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)
_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm,)


def class_label(module: nn.Module | None) -> str | None:
    """``nn.Linear`` for torch.nn classes, the bare class name otherwise."""
    if module is None:
        return None
    cls = type(module)
    prefix = "nn." if cls.__module__.startswith("torch.nn") else ""
    return f"{prefix}{cls.__name__}"


def _floats(t: torch.Tensor | None) -> list[float] | None:
    """The values of ``t`` as Python floats rounded to 6 significant digits, each exactly
    ``float(f"{v:.6g}")`` (:func:`round_6g`)."""
    if t is None:
        return None
    return round_6g(t.detach().to("cpu", torch.float64).reshape(-1).numpy()).tolist()


def _values(t: torch.Tensor | None) -> np.ndarray | None:
    """The values of ``t`` as a flat float64 array, rounded later by :func:`_round_layers`
    (one :func:`round_6g` for all layers, not one per vector)."""
    if t is None:
        return None
    return t.detach().to("cpu", torch.float64).reshape(-1).numpy().copy()


def _round_layers(layers: dict[str, dict[str, Any]]) -> None:
    """Replace every array :func:`_values` left in ``layers`` by its :func:`_floats` list."""
    slots = [(entry, key) for entry in layers.values() for key, value in entry.items()
             if isinstance(value, np.ndarray)]
    if not slots:
        return
    arrays = [entry[key] for entry, key in slots]
    flat = round_6g(np.concatenate(arrays)).tolist()
    start = 0
    for (entry, key), array in zip(slots, arrays, strict=True):
        entry[key] = flat[start:start + array.size]
        start += array.size


#: Exact powers of ten in float64 (10**22 is the largest).
_POW10 = np.array([10.0 ** k for k in range(23)])


def round_6g(values: np.ndarray) -> np.ndarray:
    """``float(f"{v:.6g}")`` of every value of a float64 array, vectorized.

    Formatting each value costs about a microsecond, tens of milliseconds per scan of a
    wide CNN's BatchNorms. Here the six-digit mantissa ``m = v · 10^(5-e)`` is computed in
    float64 with one rounding (``10^k`` is exact for ``k ≤ 22``), which is at most about
    1e-10 from the exact product, so rounding it to the nearest integer is the correctly
    rounded mantissa unless its fraction lies within 1e-6 of one half; ``m · 10^(e-5)`` (a
    product or quotient of two exact doubles, one rounding) is then the double nearest the
    six-digit decimal, as parsing it would give. Values outside that range (ties,
    subnormals, |exponent| past the exact powers, NaN/Inf) are formatted one by one;
    zeros are their own rounding.
    """
    v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    out = np.empty_like(v)
    a = np.abs(v)
    with np.errstate(all="ignore"):
        ok = np.isfinite(v) & (a >= 1e-16) & (a < 1e27)
        e = np.where(ok, np.floor(np.log10(np.where(ok, a, 1.0))), 0.0).astype(np.int64)
        k = 5 - e  # scale to six integer digits: x = a · 10^k
        up = k >= 0
        scale = _POW10[np.clip(np.abs(k), 0, 22)]
        x = np.where(up, a * scale, a / scale)
        m = np.rint(x)
        frac = x - np.floor(x)
        ok &= (np.abs(frac - 0.5) > 1e-6) & (m >= 1e5) & (m <= 1e6) & (np.abs(k) <= 22)
        r = np.where(up, m / scale, m * scale)
    out[ok] = np.copysign(r[ok], v[ok])
    zero = v == 0.0
    out[zero] = v[zero]  # "0" and "-0" parse back to themselves
    rest = np.flatnonzero(~(ok | zero))
    if rest.size:
        out[rest] = [float(f"{x:.6g}") for x in v[rest].tolist()]
    return out


def _out_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear | nn.Bilinear):
        return int(module.out_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        # ConvTranspose stores weights as (in, out/groups, ...); both expose out_channels.
        return int(module.out_channels)
    if isinstance(module, _NORM_TYPES):
        return int(cast(int, module.num_features))
    return None


def _offloaded(module: nn.Module) -> bool:
    """Whether the module's weights are offloaded (on the ``meta`` device, brought in by
    accelerate's hooks only while it runs), so that there is nothing to read."""
    return any(p.is_meta for p in module.parameters(recurse=False))


#: Rows of a layer re-initialized to measure its init scale (row norms depend on fan-in only).
_INIT_ROWS = 64


def init_reference(model: nn.Module, module: nn.Module,
                   parent: nn.Module | None = None, name: str = "") -> dict[str, Any] | None:
    """The scale ``module`` had at the model's own initialization, when it is not PyTorch's.

    Models that initialize their layers themselves (transformers' ``_init_weights``:
    normal(0, ``initializer_range``) weights and zero biases for most) start far from
    PyTorch's default scale, so "0.24× PyTorch's default init" would read as weight decay
    on an untrained model. A stand-in of the layer, parameters set to NaN and cut to
    :data:`_INIT_ROWS` rows (a row's norm depends on its fan-in only), is given to the
    model's own ``_init_weights``; schemes that initialize a layer from its parent block
    (T5's ``wi``/``wo``) get a stand-in of the ``parent`` holding it as ``name``. The
    model is never touched, and the global RNG state is left as it was. ``None`` when
    the model has no such method or leaves the layer to PyTorch's default init.
    """
    init = getattr(model, "_init_weights", None)
    weight = getattr(module, "weight", None)
    if (not callable(init) or not isinstance(weight, torch.Tensor) or weight.ndim < 2
            or "weight" not in module._parameters):  # e.g. a parametrized (weight-norm) layer
        return None
    try:
        fresh = _stand_in(module)
        tries = [fresh]
        if parent is not None and name:
            holder = _stand_in(parent, depth=1)
            holder._modules[name] = fresh
            tries.append(holder)
    except Exception:  # a module that refuses to be copied
        return None
    # in the order of model.apply (a child before its parent): the last write wins, as in
    # the model's own initialization
    for target in tries:
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.default_generator.manual_seed(0)  # the CPU stand-ins draw from it
                init(target)
        except Exception:  # a scheme that needs more than this block (names, config fields)
            continue
    drawn = fresh._parameters["weight"]
    if drawn is None or bool(torch.isnan(drawn).any()):
        return None  # not initialized by the model's scheme: PyTorch's default applies
    bias = fresh._parameters.get("bias")
    rows = int(drawn.shape[0])
    norms = torch.linalg.vector_norm(drawn.reshape(rows, -1).float(), dim=1)
    return {
        "by": f"{type(model).__name__}._init_weights",
        "weight_norm": float(f"{float(norms.median()):.6g}"),
        "bias_abs": (float(f"{float(bias.abs().mean()):.6g}")
                     if bias is not None and not bool(torch.isnan(bias).any()) else None),
    }


def _stand_in(module: nn.Module, depth: int = 0) -> nn.Module:
    """A shallow copy of ``module`` whose parameters are new NaN tensors on the CPU (at
    most :data:`_INIT_ROWS` rows), so that an init function can write into it without
    reaching the real weights; children are stand-ins too, ``depth`` levels down (deeper
    ones, and all buffers, are left out)."""
    clone = object.__new__(type(module))  # no __reduce__: parametrized modules refuse it
    clone.__dict__.update(module.__dict__)
    clone._parameters = {
        key: None if p is None else nn.Parameter(
            torch.full((min(int(p.shape[0]), _INIT_ROWS), *p.shape[1:]) if p.ndim else (),
                       math.nan, device="cpu"), requires_grad=False)
        for key, p in module._parameters.items()}
    clone._buffers = {}
    clone._modules = ({key: _stand_in(child, depth - 1) for key, child in module._modules.items()
                       if child is not None} if depth > 0 else {})
    return clone


def _weight_summary(module: nn.Module) -> dict[str, Any]:
    w = cast(torch.Tensor, module.weight).detach()
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        w = w.transpose(0, 1)  # stored as (in, out/groups, *k)
    rows = w.reshape(w.shape[0], -1)
    with torch.no_grad():
        norms = torch.linalg.vector_norm(rows.float(), dim=1)  # no float64 copy of the weights
    bias = getattr(module, "bias", None)
    return {
        "kind": "weight",
        "class": class_label(module),
        "fan_in": int(rows.shape[1]),
        "units": int(rows.shape[0]),
        "weight_norm": _values(norms),
        "bias": _values(bias) if isinstance(bias, torch.Tensor) else None,
    }


def _norm_summary(module: nn.Module) -> dict[str, Any]:
    def get(name: str) -> torch.Tensor | None:
        value = getattr(module, name, None)
        return value if isinstance(value, torch.Tensor) else None

    return {
        "kind": "norm",
        "class": class_label(module),
        "units": int(cast(int, module.num_features)),
        "gamma": _values(get("weight")),
        "beta": _values(get("bias")),
        "running_mean": _values(get("running_mean")),
        "running_var": _values(get("running_var")),
        "eps": float(getattr(module, "eps", 1e-5)),
    }


def _feeding_weight_layer(model: nn.Module, norm_path: str, width: int) -> str | None:
    """The Linear/Conv registered just before ``norm_path`` in its parent, if its width matches."""
    parent_path, _, leaf = norm_path.rpartition(".")
    try:
        parent = model.get_submodule(parent_path) if parent_path else model
    except AttributeError:
        return None
    found: str | None = None
    for name, child in parent.named_children():
        if name == leaf:
            break
        if isinstance(child, _WEIGHT_TYPES):
            found = name if _out_width(child) == width else None
    if found is None:
        return None
    return f"{parent_path}.{found}" if parent_path else found


def _call_site(owner: nn.Module | None, info: SiteInfo, sites: Sequence[Site]) -> str | None:
    """``file:line`` of the functional call behind ``info``, when the source says which one.

    The k-th call of an op in a forward is the k-th written call when the forward has as
    many written calls as the scan saw sites (no loops or branches in between); a forward
    with one written call has only that one.
    """
    from deadrelu.callsites import forward_calls

    if owner is None:
        return None
    written = forward_calls(type(owner), info.kind)
    if not written:
        return None
    seen = sum(1 for s in sites if s.info.module == info.module and s.info.kind == info.kind
               and s.info.op != "module")
    if len(written) == 1:
        return written[0].where
    if len(written) == seen and info.call_index < len(written):
        return written[info.call_index].where
    return None


def collect_evidence(model: nn.Module, sites: Sequence[Site],
                     nonfinite_params: Mapping[str, int]) -> dict[str, Any]:
    """Read-only, JSON-ready summary of the weights feeding each site (see the module docstring).

    Args:
        model: the scanned module (already unwrapped).
        sites: the scan's sites (only their :class:`~deadrelu.collector.SiteInfo` is read).
        nonfinite_params: parameters holding NaN/Inf, with counts
            (:attr:`deadrelu.identity.Weights.nonfinite`: the pass that fingerprints the
            weights reads them, so they are not read twice).

    Returns:
        The evidence dict stored in ``Report.evidence``.
    """
    modules = dict(model.named_modules())
    layers: dict[str, dict[str, Any]] = {}
    entries: dict[str, dict[str, Any]] = {}

    def summarise(path: str) -> None:
        if path not in layers:
            module = modules[path]
            if isinstance(module, _NORM_TYPES):
                layers[path] = _norm_summary(module)
                return
            layers[path] = _weight_summary(module)
            parent_path, _, leaf = path.rpartition(".")
            reference = init_reference(model, module, modules.get(parent_path), leaf)
            if reference is not None:
                layers[path]["init"] = reference

    for site in sites:
        info = site.info
        owner = modules.get(info.module) if info.module != "<model>" else model
        entry: dict[str, Any] = {
            "activation_class": class_label(owner) if info.op == "module" else None,
            "owner_class": class_label(owner),
            "layer": None,
            "norm": None,
            "direct": bool(info.input_direct),
        }
        path = info.input_layer or ""
        source = modules.get(path) if path else None
        if source is not None and _offloaded(source):
            source = None  # weights offloaded (accelerate): not readable here, so no evidence
        if source is not None and _out_width(source) == info.units:
            if isinstance(source, _NORM_TYPES):
                entry["norm"] = path
                summarise(path)
                feeder = _feeding_weight_layer(model, path, info.units)
                if feeder is not None and not _offloaded(modules[feeder]):
                    entry["layer"] = feeder
                    summarise(feeder)
            elif isinstance(source, _WEIGHT_TYPES) and getattr(source, "weight", None) is not None:
                entry["layer"] = path
                summarise(path)
        if info.op != "module":
            call_site = _call_site(owner, info, sites)
            if call_site is not None:
                entry["call_site"] = call_site
        else:
            from deadrelu.callsites import definition_site

            defined = definition_site(model, info.module)
            if defined is not None and defined.file is not None:
                entry["defined_at"] = defined.where
        entries[info.name] = entry

    _round_layers(layers)
    return {"version": VERSION, "layers": layers, "sites": entries,
            "nonfinite_params": dict(nonfinite_params)}

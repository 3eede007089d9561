"""Weight evidence for a ``torch.export`` program, read from its graph.

An exported program is one flat graph of aten ops: its Linear and Conv layers are
``aten.linear``/``aten.conv*`` nodes reading ``get_attr`` parameters, not modules,
so :func:`~deadrelu.evidence.collect_evidence` (which looks modules up)
finds no layer feeding any activation, and the output looks like it comes from
the last activation. Each node keeps the module it was traced from
(``meta["nn_module_stack"]``), so the same evidence can be read from the graph:
for every activation node whose input is a Linear/Conv node, that layer's
per-unit weight norms and biases under the layer's original path and class, and
the activation's class for its label. Then a program of the same weights gets the
same diagnosis as the module it was exported from.

Nothing is run and nothing is written: parameters are read and copied to floats.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from deadrelu.evidence import _floats

if TYPE_CHECKING:
    from torch import nn

    from deadrelu.collector import Site

_LINEAR = {"aten.linear.default"}
_CONV = {"aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default",
         "aten.convolution.default"}


def is_export_graph(model: nn.Module) -> bool:
    """Whether ``model`` is an exported program's module (a graph with module stacks)."""
    graph = getattr(model, "graph", None)
    nodes = getattr(graph, "nodes", None)
    return nodes is not None and any(n.meta.get("nn_module_stack") for n in nodes)


def _class_label(type_name: Any) -> str:
    name = type_name if isinstance(type_name, str) else \
        f"{type_name.__module__}.{type_name.__qualname__}"
    module, _, cls = name.rpartition(".")
    return f"nn.{cls}" if module.startswith("torch.nn") else cls


def _frame(node: Any) -> tuple[str, str] | None:
    """(module path, class label) of the innermost module ``node`` was traced from."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    return str(path), _class_label(cls)


def _tensor(model: nn.Module, node: Any) -> torch.Tensor | None:
    if getattr(node, "op", None) != "get_attr":
        return None
    try:
        value = functools.reduce(getattr, str(node.target).split("."), model)
    except AttributeError:
        return None
    return value if isinstance(value, torch.Tensor) else None


def _weight_entry(model: nn.Module, node: Any, label: str) -> dict[str, Any] | None:
    args = list(node.args)
    weight = _tensor(model, args[1]) if len(args) > 1 else None
    if weight is None or weight.ndim < 2:
        return None
    bias = _tensor(model, args[2]) if len(args) > 2 else None
    rows = weight.detach().reshape(weight.shape[0], -1)
    with torch.no_grad():
        norms = torch.linalg.vector_norm(rows.float(), dim=1)
    return {"kind": "weight", "class": label, "fan_in": int(rows.shape[1]),
            "units": int(rows.shape[0]), "weight_norm": _floats(norms),
            "bias": _floats(bias) if bias is not None else None}


def graph_evidence(model: nn.Module, sites: Sequence[Site],
                   evidence: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``evidence`` completed from the graph, and the output producer for ``meta["output"]``.

    Returns:
        The evidence (layers and sites filled in where the graph shows a Linear/Conv
        feeding an activation module directly), and ``{"producer", "direct"}`` when the
        graph's output is an activation's output, else ``None`` (a layer after the last
        activation, as in the module the program came from).
    """
    by_name = {site.info.name: site for site in sites}
    layers = dict(evidence.get("layers") or {})
    entries = {k: dict(v) for k, v in (evidence.get("sites") or {}).items()}
    activation_nodes: dict[Any, str] = {}
    for node in model.graph.nodes:  # type: ignore[union-attr]
        frame = _frame(node)
        if node.op != "call_function" or frame is None or frame[0] not in by_name:
            continue
        path, act_label = frame
        site = by_name[path]
        activation_nodes[node] = path
        entry = entries.setdefault(path, {"layer": None, "norm": None, "direct": False})
        entry["activation_class"] = entry["owner_class"] = act_label
        source = node.args[0] if node.args else None
        source_frame = _frame(source) if hasattr(source, "meta") else None
        target = str(getattr(source, "target", ""))
        if source_frame is None or (target not in _LINEAR and target not in _CONV):
            continue
        layer_path, layer_label = source_frame
        summary = layers.get(layer_path) or _weight_entry(model, source, layer_label)
        if summary is None or summary["units"] != site.info.units:
            continue
        layers[layer_path] = summary
        entry.update(layer=layer_path, direct=True)
    output = None
    for node in model.graph.nodes:  # type: ignore[union-attr]
        if node.op == "output":
            first = node.args[0]
            while isinstance(first, (tuple, list)) and first:
                first = first[0]
            if first in activation_nodes:
                output = {"producer": activation_nodes[first], "direct": True}
    return {**evidence, "layers": layers, "sites": entries}, output

"""Assembling a :class:`~deadrelu.report.Report` from what a run recorded: written once.

:func:`deadrelu.scan` (one pass over data) and :meth:`deadrelu.Monitor.report` (a
window of training steps) both end in :func:`assemble_report`: it adds the model's
identity to the run's metadata, reads the weight evidence the diagnosis needs, and
derives the findings (:func:`deadrelu.report.diagnosed`). The weights are read once:
the pass that fingerprints them also finds the parameters holding NaN/Inf (a scan hashes
them on a background thread during its forwards and hands the result in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from deadrelu.analyzer import Thresholds
from deadrelu.collector import Site
from deadrelu.evidence import collect_evidence
from deadrelu.identity import Weights, model_signature, read_weights
from deadrelu.report import Report, diagnosed


def assemble_report(
    module: nn.Module,
    sites: Sequence[Site],
    thresholds: Thresholds,
    run: Mapping[str, Any],
    measured: Mapping[str, Any] | None = None,
    weights: Weights | None = None,
) -> Report:
    """The diagnosed report of ``sites`` recorded on ``module``.

    Args:
        module: the model that ran (unwrapped); read, never written.
        sites: the recorded sites (CPU counters).
        thresholds: the verdict thresholds.
        run: what describes the run (``model``, ``data``, ``device``, ``samples``,
            ``mode``, ``notes``...); comes first in ``meta``.
        measured: what the run measured or was told besides (data statistics, the
            output's producer, the selection, the recipe...); follows the model's
            identity (``torch_version``, ``model_signature``, ``weights_fingerprint``).
        weights: ``read_weights(module)`` if already read: a scan hashes the weights on a
            background thread during its forwards (:func:`deadrelu.identity.start_reading`);
            ``None`` reads them here (a Monitor's weights change as it trains).

    Returns:
        The report, its findings derived from its counters.
    """
    if weights is None:
        weights = read_weights(module)
    meta: dict[str, Any] = {
        **run,
        "torch_version": torch.__version__,
        "model_signature": model_signature(module),
        "weights_fingerprint": weights.fingerprint,
        **(measured or {}),
    }
    evidence = collect_evidence(module, sites, weights.nonfinite)
    from deadrelu.graph_evidence import graph_evidence, is_export_graph

    if is_export_graph(module):  # a torch.export program: its layers are graph nodes
        evidence, output = graph_evidence(module, sites, evidence)
        meta.pop("output", None)
        if output is not None:
            meta["output"] = output
    return diagnosed(Report(tuple(sites), thresholds, meta, (), evidence))

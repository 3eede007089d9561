"""Carry out the fixes a scan suggests: prune dead units, recycle them in training, swap activations.

* :mod:`~deadrelu.fix.constant`: which units of a report output an exact constant.
* :mod:`~deadrelu.fix.depgraph`: which layers share a unit's channel (torch-pruning's
  dependency graph), and whether a channel can leave them all without changing the output.
* :mod:`~deadrelu.fix.measure`: what each consuming layer actually reads, parameter and
  multiply-add counts, latency, output differences.
* :mod:`~deadrelu.fix.prune`: :func:`prune` and :class:`PruneResult`.
* :mod:`~deadrelu.fix.persist`: saving a pruned model, and :func:`load_pruned`.
* :mod:`~deadrelu.fix.recycle`: ReDo recycling (:func:`recycle`).
* :mod:`~deadrelu.fix.swap`: :func:`swap_activations`.
"""

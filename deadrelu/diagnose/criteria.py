"""The numeric criteria of the diagnosis, in one place: what counts as grown, collapsed,
pinned, saturated, far from normalized, deep and narrow; and the confidence bound.

Each constant is named in the rule documentation that uses it (``deadrelu rules``).
"""

from __future__ import annotations

import math

from deadrelu.findings import Severity

#: A finding covering at least this share of a layer's units is an error...
ERROR_SHARE = 0.25
#: ...at least this share a warning, below it info.
WARNING_SHARE = 0.05
#: Incoming weight row norm of PyTorch's default Linear/Conv init (kaiming_uniform_(a=√5)): 1/√3.
DEFAULT_INIT_NORM = 1.0 / math.sqrt(3.0)
#: Weights and biases this many times the default init scale are a trace of large updates...
GROWTH = 2.0
#: ...as are biases alone this many times it.
BIAS_GROWTH = 3.0
#: Without a bias, weights alone must have grown this much (He init already gives ≈2.45×).
GROWTH_NO_BIAS = 3.0
#: A BatchNorm channel with ``beta <= -BN_PIN * |gamma|`` is pinned below zero.
BN_PIN = 2.0
#: A layer whose median weight row norm is at most this multiple of the default init has
#: shrunk as a whole (weight decay); its dead units are put down to weight decay.
SHRUNK = 0.3
#: Weight scales from this multiple of the default init up to ``GROWTH`` read as "normal".
NORMAL_LOW = 0.5
#: A dead unit's weight norm at most this share of the live units' median has collapsed...
COLLAPSE_RATIO = 0.1
#: ...as has any row norm below this (1/20 of the default init scale; scaled with a
#: model's own init, see SiteView.collapse_abs).
COLLAPSE_ABS = 0.03
#: A bounded site with at least this share of all positions saturated has a saturation problem.
SAT_LAYER = 0.5
#: Input far from normalized: some feature's |mean| or std at least this...
INPUT_FAR = 3.0
#: ...or the overall std at most this (and not zero).
INPUT_TINY = 0.01
#: Activations whose negative region is exactly flat (a ReLU on the output clips it to ≥ 0).
FLAT_RELU_KINDS = frozenset({"relu", "relu6", "threshold", "hardtanh"})
#: Kinds whose negative side is a line with a (possibly learned, possibly negative) slope.
SLOPED_KINDS = frozenset({"prelu", "rrelu", "leaky_relu"})


#: A depth trend: the deeper half's mean dead share exceeds the shallower half's by this...
TREND_RISE = 0.25
#: ...and is at least this many times it.
TREND_FACTOR = 2.0
#: A stack at least this deep and at most this wide is "deep and narrow" (Lu et al. 2019).
DEEP = 8
NARROW = 16
#: A deep, narrow stack counts as born dead when its unexplained dead units average at
#: least this share of each layer and sit in at least two layers.
SPREAD_SHARE = 0.1
#: Weights this many times PyTorch's default init scale are "large" for a bounded activation.
LARGE_INIT = 3.0


def severity_for(share: float) -> Severity:
    """error at ≥ ERROR_SHARE of a layer's units, warning at ≥ WARNING_SHARE, else info."""
    if share >= ERROR_SHARE:
        return Severity.ERROR
    if share >= WARNING_SHARE:
        return Severity.WARNING
    return Severity.INFO

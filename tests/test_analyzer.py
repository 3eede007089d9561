"""The analyzer's verdicts at their boundaries, and the dormancy scores by hand.

Counters are written by hand, so each threshold is tested exactly at its value:
a unit on the boundary is on one documented side of it (``rare``: fewer than;
``always_on`` / ``saturated``: at least), and the ReDo score and
``Report.dormant`` equal the published formulas computed here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deadrelu.analyzer import Thresholds, classify, redo_scores
from deadrelu.collector import Site, SiteInfo
from deadrelu.report import Report
from deadrelu.stats import UnitStats


def counters(positions, samples, active, sample_active, saturated=None, abs_sum=None):
    u = len(active)
    return {
        "positions": positions, "samples": samples, "active": active,
        "sample_active": sample_active, "saturated": saturated or [0] * u,
        "sum": abs_sum or [1.0] * u, "abs_sum": abs_sum or [1.0] * u, "max": [1.0] * u,
        "nonfinite": [0] * u,
    }


def test_rare_is_strictly_below_its_share_of_samples():
    # 100 samples: fired in 1 (exactly the 1% threshold) is not rare; in 1 of 101 it is
    at = classify(counters(100, 100, [1, 2], [1, 2]), True, False, Thresholds(rare=0.01))
    below = classify(counters(101, 101, [1, 2], [1, 2]), True, False, Thresholds(rare=0.01))
    assert list(at.state) == ["healthy", "healthy"]
    assert list(below.state) == ["rare", "healthy"]


def test_always_on_starts_at_its_share_of_positions():
    v = classify(counters(100, 10, [99, 98, 100], [10, 10, 10]), True, False,
                 Thresholds(always_on=0.99))
    assert list(v.state) == ["always_on", "healthy", "always_on"]


def test_saturated_starts_at_its_share_of_positions():
    v = classify(counters(100, 10, [50, 50, 50], [10, 10, 10], saturated=[99, 98, 100]),
                 False, True, Thresholds(saturated=0.99))
    assert list(v.state) == ["saturated", "healthy", "saturated"]


def test_dead_beats_rare_and_the_kind_decides_which_states_apply():
    c = counters(100, 100, [0, 1], [0, 1], saturated=[100, 100])
    assert list(classify(c, True, False, Thresholds()).state) == ["dead", "healthy"]
    assert list(classify(c, False, True, Thresholds()).state) == ["saturated", "saturated"]


ABS = [0.0, 1.0, 2.0, 97.0]  # per-unit sum of |h| over 10 positions


def test_redo_score_by_hand():
    mean_abs = np.array(ABS) / 10  # 0, .1, .2, 9.7; layer mean 2.5
    expected = mean_abs / (2.5 + 1e-9)
    np.testing.assert_allclose(redo_scores(np.array(ABS), 10), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, [0.0, 0.04, 0.08, 3.88], rtol=1e-8)


def _report() -> Report:
    units = len(ABS)
    info = SiteInfo(
        name="act", order=0, kind="relu", op="module", module="act", call_index=0,
        input_layer="fc", input_direct=True, unit_axis=1, sample_axis=0, shape=(units,),
        units=units, level=0.0, sat_low=None, sat_high=None, can_die=True, nonneg=True)
    stats = UnitStats.from_dict({
        "units": units, "positions": 10, "samples": 10, "active": [0, 1, 3, 10],
        "sample_active": [0, 1, 3, 10], "sum": ABS, "abs_sum": ABS, "max": [0.0, 1, 1, 20],
        "saturated": [0] * units, "nonfinite": [0] * units,
    })
    return Report((Site(info, stats),))


@pytest.mark.parametrize("tau, units", [(0.0, [0]), (0.025, [0]), (0.04, [0, 1]), (0.1, [0, 1, 2])])
def test_report_dormant_redo_against_the_formula(tau, units):
    table = _report().dormant("redo", tau=tau)
    assert table["unit"].tolist() == units
    np.testing.assert_allclose(table["redo_score"], np.array([0.0, 0.04, 0.08])[units],
                               rtol=1e-8)


@pytest.mark.parametrize("threshold, units", [(0.1, [0]), (0.11, [0, 1]), (0.3, [0, 1]),
                                               (0.31, [0, 1, 2])])
def test_report_dormant_dohare_is_active_on_fewer_than_the_share(threshold, units):
    # fire rates 0, .1, .3, 1: "fewer than" the share, so a rate equal to it is not dormant
    assert _report().dormant("dohare", threshold=threshold)["unit"].tolist() == units


def test_report_dormant_dead_and_the_default_column():
    r = _report()
    assert r.dormant("dead")["unit"].tolist() == [0]
    assert r.units["dormant"].tolist() == [True, False, False, False]  # redo, τ = 0.025
    assert r.layers.loc[0, "dormant"] == 1
    assert float(r.units["redo_score"][3]) == pytest.approx(3.88)


def test_a_unit_of_a_layer_with_no_positions_is_never_dormant():
    v = classify(counters(0, 0, [0, 0], [0, 0]), True, False, Thresholds())
    assert not v.dormant.any() and list(v.state) == ["healthy", "healthy"]
    assert torch.tensor(v.fire_rate).eq(0).all()

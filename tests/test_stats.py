"""UnitStats.update against the brute-force reference, path by path.

The update has several code paths chosen by shape and content (flat Linear
outputs, per-slice outputs reduced over the last or middle dim, short rows that
are transposed first, all-finite batches that skip masking); each must give the
reference's counters exactly.
"""

from __future__ import annotations

import pytest
import torch

from deadrelu.stats import UnitStats, scratch_size
from tests.reference import assert_matches, brute

pytestmark = pytest.mark.usefixtures("stats_path")


def _update(y: torch.Tensor, rd: int, **kind) -> UnitStats:
    units = y.shape[3 - rd]
    stats = UnitStats.zeros(units)
    scratch = torch.empty(scratch_size(y))
    args = dict(level=0.0, sat_low=None, sat_high=None, nonneg=False) | kind
    for part in y.split(7):  # several batches: streaming
        stats.update(part, rd, args["level"], args["sat_low"], args["sat_high"], args["nonneg"],
                     scratch)
    return stats


@pytest.mark.parametrize("positions", [2, 4, 16, 31, 32, 40])
@pytest.mark.parametrize("reduce_dim", [1, 2])
@pytest.mark.parametrize("poison", [False, True])
def test_slice_paths_match_brute_force(positions, reduce_dim, poison):
    torch.manual_seed(positions)
    y = torch.randn(23, 5, positions) if reduce_dim == 2 else torch.randn(23, positions, 5)
    y[:, 0] = -1.0 if reduce_dim == 2 else y[:, 0]  # a dead unit (layout S, U, R)
    if poison:  # NaN and Inf in a few (sample, unit) slices only
        if reduce_dim == 2:
            y[3, 1, 0] = float("nan")
            y[9, 2, -1] = float("inf")
        else:
            y[3, 0, 1] = float("nan")
            y[9, -1, 2] = float("-inf")
    stats = _update(y, reduce_dim, sat_low=-0.5, sat_high=1.5)
    layout = y if reduce_dim == 2 else y.transpose(1, 2)
    assert_matches(stats, brute(layout, 1, 0.0, 0, -0.5, 1.5))
    assert int(stats.nonfinite.sum()) == (2 if poison else 0)


@pytest.mark.parametrize("nonneg", [False, True])
def test_flat_path_matches_brute_force_when_finite(nonneg):
    torch.manual_seed(0)
    y = torch.randn(50, 6)
    y = y.relu() if nonneg else y
    y[:, 2] = 0.0  # dead
    stats = _update(y.unsqueeze(1), 1, nonneg=nonneg)
    assert_matches(stats, brute(y, 1))


def test_flat_path_counts_each_nonfinite_value_and_drops_that_units_batch():
    y = torch.randn(14, 3)
    y[2, 1] = float("nan")
    y[5, 1] = float("inf")
    y[8, 2] = float("nan")
    stats = _update(y.unsqueeze(1), 1)
    assert stats.nonfinite.tolist() == [0.0, 2.0, 1.0]
    assert stats.active[0] == (y[:, 0] > 0).sum()
    assert stats.active[1] == (y[:, 1] > 0).sum()  # Inf fires, NaN does not
    # unit 0 is whole; units 1 and 2 keep only their finite batches (7 rows each)
    assert torch.isclose(stats.sum[0], y[:, 0].double().sum())
    assert torch.isclose(stats.sum[1], y[7:, 1].double().sum())
    assert torch.isclose(stats.sum[2], y[:7, 2].double().sum())


@pytest.mark.parametrize("level, sat", [(0.0, None), (0.5, (0.01, 0.99))])
@pytest.mark.parametrize("positions", [1, 5, 40])
def test_a_value_exactly_at_the_level_does_not_fire(level, sat, positions):
    # f(0) itself (0 for ReLU, 0.5 for sigmoid) is "not firing", on every path;
    # a value just above it fires
    y = torch.full((10, 3, positions), level)
    y[:, 1] = torch.nextafter(torch.tensor(level), torch.tensor(1.0))  # one ulp above
    y[4, 2, 0] = level + 1.0
    low, high = sat if sat else (None, None)
    stats = _update(y, 2, level=level, sat_low=low, sat_high=high)
    assert stats.active.tolist() == [0.0, 10.0 * positions, 1.0]
    assert stats.sample_active.tolist() == [0.0, 10.0, 1.0]
    assert_matches(stats, brute(y, 1, level, 0, low, high))


def test_firing_added_from_an_input_mask():
    # PReLU-like: the output's sign says nothing; the input's mask is added instead
    x = torch.randn(9, 4, 6)
    x[:, 0] = 0.0  # exactly at the kink: never fires
    y = torch.where(x > 0, x, -0.5 * x)
    stats = _update(y, 2, level=float("inf"))
    assert stats.active.sum() == 0
    for part in x.split(7):
        stats.add_firing(part > 0, 2)
    assert_matches(stats, brute(y, 1, xs=x))


def test_the_counter_arena_carves_disjoint_zeroed_blocks_from_few_buffers():
    from deadrelu.stats import CounterArena

    arena = CounterArena()
    blocks = [arena.zeros(7, units, torch.float64, torch.device("cpu"))
              for units in (3, 512, 1, 2048, 100) * 4]
    for b, units in zip(blocks, (3, 512, 1, 2048, 100) * 4, strict=True):
        assert b.shape == (7, units) and b.is_contiguous() and not b.any()
        b.fill_(1.0)
    assert all(bool((b == 1.0).all()) for b in blocks)  # no block overlaps another
    assert len({b.untyped_storage().data_ptr() for b in blocks}) == 1  # 1 MiB holds them all
    big = arena.zeros(7, 10_000, torch.float64, torch.device("cpu"))  # over a quarter buffer
    assert big.untyped_storage().nbytes() == 7 * 10_000 * 8


def test_a_collectors_sites_share_their_counters_buffers():
    from deadrelu.collector import Collector

    layers = []
    for _ in range(40):
        layers += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).eval()
    with torch.no_grad(), Collector(model) as collector:
        model(torch.randn(8, 64))
    storages = {s.stats.active.untyped_storage().data_ptr() for s in collector.sites.values()}
    assert len(collector.sites) == 40 and len(storages) == 1

"""Padding is not a position: with an ``attention_mask`` in the forward's arguments, pad
positions add to no counter, for every layout whose positions are the mask's tokens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu
from deadrelu.stats import UnitStats

PAD = 0
pytestmark = pytest.mark.filterwarnings("ignore::deadrelu.scanning.InsufficientDataWarning")
AXES = {"<model>:relu#2": -1}  # the (N, T, 2, 3) view: units on the last dim


class TokenNet(nn.Module):
    """Embedding → Linear → ReLU (N, T, U); Conv1d over tokens → ReLU (N, C, T); a
    (N, T, 2, 3) view → ReLU. Unit 0 of the first site fires on the pad token only."""

    def __init__(self, vocab: int = 12, dim: int = 4, units: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lin = nn.Linear(dim, units)
        self.conv = nn.Conv1d(units, 5, kernel_size=1)
        with torch.no_grad():
            self.emb.weight[:, 0] = 0.0
            self.emb.weight[PAD] = torch.tensor([1.0, 0.0, 0.0, 0.0])
            self.lin.weight[0] = torch.tensor([4.0, 0.0, 0.0, 0.0])
            self.lin.bias[0] = -1.0  # fires only where emb dim 0 is 1: the pad token

    def parts(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = F.relu(self.lin(self.emb(input_ids)))
        c = torch.relu(self.conv(h.transpose(1, 2)))
        v = torch.relu(h.view(*h.shape[:2], 2, 3) - 0.1)
        return h, c, v

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        h, c, v = self.parts(input_ids)
        return c.mean(dim=(1, 2)) + v.sum(dim=(1, 2, 3))


def _batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of varying lengths; the last one has no padding at all."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lengths in ([3, 7, 1, 5], [2, 2, 6], [4, 4]):
        t = max(lengths)
        ids = torch.randint(1, 12, (len(lengths), t), generator=g)
        mask = torch.zeros(len(lengths), t, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
            ids[i, n:] = PAD
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def _real(batches, index: int, model: TokenNet, unit_axis: int) -> list[torch.Tensor]:
    """Site ``index``'s output for each sequence's real tokens only (for the reference)."""
    parts = []
    for batch in batches:
        with torch.no_grad():
            y = model.parts(batch["input_ids"])[index]
        for i, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            seq = y[i:i + 1]
            parts.append(seq.narrow(2, 0, n) if index == 1 else seq.narrow(1, 0, n))
    return parts


def test_pad_positions_are_excluded_exactly(stats_path: str) -> None:
    model = TokenNet()
    batches = _batches()
    report = deadrelu.scan(model, batches, unit_axis=AXES)
    names = [s.info.name for s in report.sites]
    assert names == ["<model>:relu", "<model>:relu#1", "<model>:relu#2"]
    assert report.meta["tokens"] == sum(int(b["attention_mask"].sum()) for b in batches)
    for index, unit_axis in ((0, 2), (1, 1), (2, 3)):
        site = report.sites[index]
        expected = brute(_real(batches, index, model, unit_axis), unit_axis=unit_axis)
        if index == 2:  # (N, T, 2, 3): the site's positions are tokens x 2
            assert site.stats.positions == 2 * report.meta["tokens"]
        assert_matches(site.stats, expected)


def test_a_unit_firing_only_on_padding_is_dead() -> None:
    model = TokenNet()
    batches = _batches()
    report = deadrelu.scan(model, batches, unit_axis=AXES)
    first = report.verdicts["<model>:relu"]
    assert first.state[0] == "dead"
    # the same data without the mask: the pad tokens count, and the unit looks alive
    unmasked = deadrelu.scan(model, [{"input_ids": b["input_ids"]} for b in batches],
                             unit_axis=AXES)
    assert unmasked.verdicts["<model>:relu"].state[0] != "dead"
    assert "tokens" not in unmasked.meta


@pytest.mark.parametrize("kind", ["relu", "relu6", "tanh"])  # the zero-fill path, and the plain one
def test_masked_update_equals_update_on_the_real_positions(kind: str, stats_path: str) -> None:
    torch.manual_seed(1)
    y = torch.randn(3, 5, 4)  # (S, R, U)
    nonneg, sat_low, sat_high = False, -0.5, 0.5
    if kind != "tanh":
        y = (y * 4).relu() if kind == "relu" else (y * 4).clamp(0, 6)
        nonneg, sat_low, sat_high = True, None, (6.0 if kind == "relu6" else None)
    y[1, 2, 0] = float("nan")  # a real position
    y[0, 4, 1] = float("nan")  # a pad position: must not count
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    # unit 3 fires only on pad positions
    y[:, :, 3] = torch.where(mask, -1.0 if kind == "tanh" else 0.0, 5.0)
    got = UnitStats.zeros(4)
    scratch = torch.empty(y.numel() * 2)
    got.update_masked(y, 1, mask, int(mask.sum()), 0.0, sat_low, sat_high, nonneg, scratch)
    expected = brute([y[i:i + 1, : int(n)] for i, n in enumerate(mask.sum(1))], unit_axis=2,
                     sat_low=sat_low, sat_high=sat_high)
    assert_matches(got, expected)
    counters = got.to_dict()
    assert counters["nonfinite"][0] == 1 and counters["nonfinite"][1] == 0
    assert counters["active"][3] == 0


def test_header_names_sequences_and_tokens() -> None:
    from deadrelu.render import header_rows

    report = deadrelu.scan(TokenNet(), _batches(), unit_axis=AXES)
    rows = dict(header_rows(report))
    tokens = report.meta["tokens"]
    assert rows["samples"].startswith(f"9 sequences, {tokens:,} tokens")
    merged = report.merge(report)
    assert merged.meta["tokens"] == 2 * tokens


@pytest.mark.parametrize("batch_size", [1, 2])
def test_no_padding_means_no_mask(batch_size: int) -> None:
    """Equal lengths: the mask is all ones, dropped, and results equal an unmasked scan."""
    ids = torch.randint(1, 12, (4, 6))
    batches = [{"input_ids": ids[i:i + batch_size],
                "attention_mask": torch.ones(batch_size, 6, dtype=torch.long)}
               for i in range(0, 4, batch_size)]
    model = TokenNet()
    masked = deadrelu.scan(model, batches, unit_axis=AXES)
    plain = deadrelu.scan(model, [{"input_ids": b["input_ids"]} for b in batches],
                          unit_axis=AXES)
    for a, b in zip(masked.sites, plain.sites, strict=True):
        assert a.stats.to_dict() == b.stats.to_dict()
    assert masked.meta["tokens"] == 24  # counted although no batch needed the mask


class _Pooled(nn.Module):
    """Its mask is over raw positions (as an audio model's over samples); no site has them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 4)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(input_values.view(input_values.shape[0], -1, 8).mean(1)))


def test_a_mask_that_matches_no_site_claims_no_tokens() -> None:
    x = torch.randn(6, 32)
    mask = torch.ones(6, 32, dtype=torch.long)
    mask[:, 20:] = 0
    report = deadrelu.scan(_Pooled(), [{"input_values": x, "attention_mask": mask}])
    assert "tokens" not in report.meta
    assert report.sites[0].stats.samples == 6


class RowsNet(nn.Module):
    """Tokens flattened to (N*T, F) rows before the ReLU, as OPT's feed-forward does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TokenNet()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        x = self.net.lin(self.net.emb(input_ids))
        return F.relu(x.reshape(-1, x.shape[-1])).sum()


def test_token_rows_are_sequences_and_padding_is_excluded(stats_path: str) -> None:
    model = RowsNet()
    batches = _batches()
    report = deadrelu.scan(model, batches)
    (site,) = report.sites
    assert site.stats.samples == 9  # sequences, not N*T rows
    expected = brute(_real(batches, 0, model.net, 2), unit_axis=2)
    assert_matches(site.stats, expected)
    assert report.verdicts[site.info.name].state[0] == "dead"


class PReLUTokens(nn.Module):
    """Embedding → Linear → PReLU (N, T, U): firing is read from the PReLU's input, and
    unit 0's input is positive on the pad token only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TokenNet()
        self.act = nn.PReLU(init=0.2)  # one slope: PReLU(6) would take dim 1 as channels

    def pre(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net.lin(self.net.emb(input_ids))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.act(self.pre(input_ids)).sum(-1)


def test_input_read_firing_excludes_padding_too() -> None:
    # PReLU counts firing from its input mask; that mask must be cut to the real tokens
    model = PReLUTokens()
    batches = _batches()
    report = deadrelu.scan(model, batches)
    site = report.site("act")
    ys, xs = [], []
    for batch in batches:
        with torch.no_grad():
            x = model.pre(batch["input_ids"])
            y = model.act(x)
        for i, n in enumerate(batch["attention_mask"].sum(1).tolist()):
            xs.append(x[i:i + 1, :n])
            ys.append(y[i:i + 1, :n])
    assert_matches(site.stats, brute(ys, unit_axis=2, xs=xs))
    assert report.verdicts["act"].state[0] == "dead"

"""``deadrelu merge``: shard reports merge into exactly the whole scan; clear one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.report import SCHEMA_VERSION, Report

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]


def _comparable(data: dict) -> dict:
    """A report's JSON without what legitimately differs between a merge and one scan."""
    data = json.loads(json.dumps(data))
    for key in ("seconds", "data", "merged_from", "samples"):
        data["meta"].pop(key, None)
    return data


def _assert_same(got, want, where="report"):
    """Equal, except float sums that may differ in the last bits (another addition order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), where
    else:
        assert got == want, where


def test_cli_merge_of_shard_scans_equals_whole_scan(cli, tmp_path):
    x = np.load(SM / "data" / "digits_test.npy")
    shards = [x[: len(x) // 3], x[len(x) // 3: 2 * len(x) // 3], x[2 * len(x) // 3:]]
    paths = []
    for i, shard in enumerate(shards):
        np.save(tmp_path / f"shard{i}.npy", shard)
        out = tmp_path / f"s{i}.json"
        # --compare-init off: fresh-init counts are per shard and do not merge (merge drops them)
        result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", tmp_path / f"shard{i}.npy",
                     "--format", "json", "--output", out, "--quiet", "--compare-init", "off")
        assert result.code == 0, result.err
        paths.append(out)
    whole = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", SM / "data" / "digits_test.npy",
                "--format", "json", "--quiet", "--compare-init", "off")
    assert whole.code == 0, whole.err

    merged = cli("merge", *paths, "--format", "json")
    assert merged.code == 0, merged.err
    got, want = json.loads(merged.out), json.loads(whole.out)
    assert got["meta"]["merged_from"] == 3
    assert got["summary"] == want["summary"]
    _assert_same(_comparable(got), _comparable(want))


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh())
    with torch.no_grad():
        model[0].bias[:4] = -1e3
    return model


@pytest.fixture
def shard_reports(tmp_path) -> tuple[list[Path], Report]:
    model = _model()
    x = torch.randn(300, 4)
    paths = []
    for i, part in enumerate(x.split(100)):
        path = tmp_path / f"part{i}.json"
        path.write_text(deadrelu.scan(model, part, data_name=f"part{i}").to_json())
        paths.append(path)
    return paths, deadrelu.scan(model, x)


def test_merge_to_output_file_defaults_to_json(cli, tmp_path, shard_reports):
    paths, whole = shard_reports
    out = tmp_path / "all.json"
    result = cli("merge", *paths, "--output", out, "--quiet")
    assert result.code == 0, result.err
    merged = Report.load(out)
    assert merged.summary() == whole.summary()
    assert merged.meta["data"] == "part0 + part1 + part2"
    for a, b in zip(merged.sites, whole.sites, strict=True):
        assert a.stats.to_dict()["active"] == b.stats.to_dict()["active"]


def test_merge_prints_the_table_by_default(cli, shard_reports):
    paths, _ = shard_reports
    result = cli("merge", *paths)
    assert result.code == 0, result.err
    assert "0" in result.out and result.out.strip()
    assert not result.out.lstrip().startswith("{")


def _edit(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_merging_different_models_is_a_clear_error(cli, tmp_path, shard_reports):
    paths, _ = shard_reports
    other = tmp_path / "other.json"
    other.write_text(deadrelu.scan(nn.Sequential(nn.Linear(4, 5), nn.ReLU()),
                                   torch.randn(100, 4)).to_json())
    line = cli("merge", paths[0], other).one_error_line()
    assert "cannot merge reports of different architectures" in line


def test_merging_different_checkpoints_is_a_clear_error(cli, tmp_path, shard_reports):
    paths, _ = shard_reports
    model = _model()
    with torch.no_grad():
        model[0].weight.mul_(2)
    other = tmp_path / "other.json"
    other.write_text(deadrelu.scan(model, torch.randn(100, 4)).to_json())
    line = cli("merge", paths[0], other).one_error_line()
    assert "different weights (different checkpoints)" in line


def test_incompatible_schema_version_names_the_file(cli, shard_reports):
    paths, _ = shard_reports
    _edit(paths[1], lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    line = cli("merge", *paths).one_error_line()
    assert str(paths[1]) in line and f"schema version {SCHEMA_VERSION + 1} is not supported" in line


def test_train_and_eval_reports_do_not_merge(cli, shard_reports):
    paths, _ = shard_reports
    _edit(paths[1], lambda d: d["meta"].update(mode="train"))
    line = cli("merge", *paths).one_error_line()
    assert "different modes (eval, train)" in line


@pytest.mark.parametrize("case", ["missing", "not-json", "not-a-report", "twice", "overwrite"])
def test_bad_inputs_one_line(cli, tmp_path, shard_reports, case):
    paths, _ = shard_reports
    args: list[object]
    if case == "missing":
        args = [paths[0], tmp_path / "nope.json"]
        expect = "does not exist"
    elif case == "not-json":
        (tmp_path / "bad.json").write_text("{not json")
        args = [paths[0], tmp_path / "bad.json"]
        expect = "cannot read report"
    elif case == "not-a-report":
        (tmp_path / "x.json").write_text("[1, 2]")
        args = [paths[0], tmp_path / "x.json"]
        expect = "not a deadrelu report"
    elif case == "twice":
        args = [paths[0], paths[0]]
        expect = "given twice"
    else:
        args = [*paths, "--output", paths[0]]
        expect = "would overwrite"
    assert expect in cli("merge", *args).one_error_line()


def test_merging_monitor_windows_of_one_checkpoint(cli, tmp_path):
    # Two Monitor windows taken without weight updates merge like shards.
    model = _model().train()
    paths = []
    with deadrelu.Monitor(model, every=1, jump=None) as monitor:
        for i in range(2):
            for _ in range(3):
                model(torch.randn(50, 4))
            path = tmp_path / f"w{i}.json"
            path.write_text(monitor.report().to_json())
            paths.append(path)
    result = cli("merge", *paths, "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["summary"]["samples"] == 300


def _wide_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10)).eval()


def test_merge_of_scans_taken_with_different_thread_counts(cli, tmp_path):
    # The fingerprint was a float sum per tensor; with 8 threads it came out different
    # from 1 thread for this model, so merge refused two shards of one checkpoint.
    model = _wide_mlp()
    x = torch.randn(64, 256)
    before = torch.get_num_threads()
    paths = []
    try:
        for i, threads in enumerate((1, 8)):
            torch.set_num_threads(threads)
            report = deadrelu.scan(model, [x[i * 32:(i + 1) * 32]])
            paths.append(tmp_path / f"s{i}.json")
            paths[-1].write_text(report.to_json())
    finally:
        torch.set_num_threads(before)
    result = cli("merge", *paths, "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["summary"]["samples"] == 64


def test_weights_fingerprint_is_exact_over_dtypes_and_layouts():
    from deadrelu.identity import weights_fingerprint

    model = _wide_mlp()
    base = weights_fingerprint(model)
    threads = torch.get_num_threads()
    try:
        for n in (1, 3, 8):
            torch.set_num_threads(n)
            assert weights_fingerprint(model) == base
    finally:
        torch.set_num_threads(threads)
    # one ulp in one weight changes it
    nudged = _wide_mlp()
    with torch.no_grad():
        w = nudged[2].weight
        w[7, 9] = torch.nextafter(w[7, 9], torch.tensor(float("inf")))
    assert weights_fingerprint(nudged) != base
    # a non-contiguous parameter hashes as its values, not its storage
    strided = _wide_mlp()
    with torch.no_grad():
        strided[2].weight = nn.Parameter(strided[2].weight.detach().t().contiguous().t())
    assert not strided[2].weight.is_contiguous()
    assert weights_fingerprint(strided) == base
    # half and bfloat16 hash their own bytes (no float conversion), and differ from float32
    prints = {weights_fingerprint(_wide_mlp().to(d)) for d in (torch.float16, torch.bfloat16)}
    assert len(prints) == 2 and base not in prints
    assert weights_fingerprint(_wide_mlp().bfloat16()) == weights_fingerprint(_wide_mlp().bfloat16())

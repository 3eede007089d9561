"""Distributed scans and monitors: 2 CPU processes (gloo) equal one process over all the data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import deadrelu
from deadrelu import distributed
from deadrelu.collector import Site, SiteInfo
from deadrelu.errors import ConfigError, ModelError
from deadrelu.report import Report
from deadrelu.stats import UnitStats

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

WORLD = 2


class Branchy(nn.Module):
    """An MLP with a branch that only batches with a large mean reach (data-dependent sites)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 16)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 8)
        self.extra = nn.Linear(8, 8)
        with torch.no_grad():
            self.fc1.bias[:3] = -1e4  # dead

    def forward(self, x):
        h = F.relu(self.fc2(self.act1(self.fc1(x))))
        if x.mean() > 5:
            h = torch.relu(self.extra(h))
        return h


def _model() -> Branchy:
    torch.manual_seed(123)
    return Branchy()


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    out = [torch.randn(32, 5, generator=gen) for _ in range(8)]
    out[3] = out[3] + 10.0  # batch 3 goes to rank 1 only: rank 0 never sees `extra`
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


def _scan_worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    try:
        assert distributed.is_distributed() and distributed.get_rank() == rank
        report = deadrelu.scan(_model(), distributed.shard(_batches()))
        Path(f"{out}.{rank}").write_text(report.to_json())
    finally:
        dist.destroy_process_group()


def _monitor_worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    try:
        model = _model().train()
        ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.0)
        with deadrelu.Monitor(ddp, every=1, jump=None) as monitor:
            for x in distributed.shard(_batches()):
                ddp(x).sum().backward()
                opt.step()
                opt.zero_grad()
            report = monitor.report()
        Path(f"{out}.{rank}").write_text(report.to_json())
    finally:
        dist.destroy_process_group()


def _spawn(fn, tmp_path: Path) -> list[Report]:
    out = str(tmp_path / "report")
    mp.spawn(fn, args=(_free_port(), out), nprocs=WORLD, join=True)
    return [Report.load(f"{out}.{r}") for r in range(WORLD)]


def _assert_same_counters(got: Report, want: Report) -> None:
    assert [s.info.name for s in got.sites] == [s.info.name for s in want.sites]
    for g, w in zip(got.sites, want.sites, strict=True):
        gd, wd = g.stats.to_dict(), w.stats.to_dict()
        for key in ("units", "positions", "samples", "active", "sample_active", "saturated",
                    "nonfinite"):
            assert gd[key] == wd[key], (g.info.name, key)
        for key in ("sum", "abs_sum", "max"):
            np.testing.assert_allclose(gd[key], wd[key], rtol=1e-9, err_msg=key)
        assert g.info.units == w.info.units and g.info.kind == w.info.kind
    assert got.summary() == want.summary()


def test_two_process_scan_equals_single_process_scan(tmp_path):
    reports = _spawn(_scan_worker, tmp_path)
    whole = deadrelu.scan(_model(), _batches())
    assert [s.info.name for s in whole.sites] == ["act1", "<model>:relu", "<model>:relu#1"]
    for report in reports:  # every rank gets the combined report
        _assert_same_counters(report, whole)
        assert report.meta["samples"] == whole.meta["samples"] == 256
    assert reports[0].meta["input_stats"]["count"] == whole.meta["input_stats"]["count"]


def test_two_process_ddp_monitor_equals_single_process(tmp_path):
    reports = _spawn(_monitor_worker, tmp_path)
    model = _model().train()
    with deadrelu.Monitor(model, every=1, auto_step=False, jump=None) as monitor:
        for x in _batches():  # one "step" with every batch
            model(x)
    whole = monitor.report()
    _assert_same_counters(reports[0], whole)
    assert reports[0].meta["mode"] == "train"
    assert reports[0].meta["world_size"] == WORLD
    assert any("DistributedDataParallel" in note for note in reports[0].meta["notes"])


def test_torchrun_script_with_env_init_and_sharding(tmp_path):
    # The integration point the CLI uses: maybe_init_from_env(), shard(), is_main_process().
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        import deadrelu
        from deadrelu import distributed
        from test_distributed import _batches, _model

        assert distributed.maybe_init_from_env()
        report = deadrelu.scan(_model(), distributed.shard(_batches()))
        if distributed.is_main_process():
            Path({str(tmp_path / "out.json")!r}).write_text(report.to_json())
        import torch.distributed as dist
        dist.destroy_process_group()
    """))
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run(
        [str(torchrun), "--nproc-per-node", str(WORLD), "--master-port", str(_free_port()),
         str(script)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = Report.from_dict(json.loads((tmp_path / "out.json").read_text()))
    _assert_same_counters(report, deadrelu.scan(_model(), _batches()))


def test_cli_scan_under_torchrun_prints_once_and_equals_single_process(tmp_path):
    import inspect

    import deadrelu.cli.scan as cli_scan

    if "process_group_from_env" not in inspect.getsource(cli_scan):
        pytest.skip("`deadrelu scan` does not join torchrun's process group in this checkout")
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    root = Path(__file__).resolve().parents[1]
    args = ["scan", str(root / "sample_models" / "mlp_high_lr.pt"),
            "--arch", f"{root}/sample_models/models.py:DigitsMLP",
            "--data", str(root / "sample_models" / "data" / "digits_test.npy"),
            "--batch-size", "32", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    proc = subprocess.run(
        [str(torchrun), "--nproc-per-node", str(WORLD), "--master-port", str(_free_port()),
         "-m", "deadrelu", *args],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "deadrelu", *args], capture_output=True,
                            text=True, timeout=240, env=env, check=True)
    got = Report.from_dict(json.loads(proc.stdout))  # one report: only rank 0 printed
    _assert_same_counters(got, Report.from_dict(json.loads(single.stdout)))


# -- single-process behaviour ----------------------------------------------------------------------


def test_without_a_process_group_nothing_changes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.is_distributed()
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
    assert distributed.is_main_process()
    assert distributed.maybe_init_from_env() is False
    assert list(distributed.shard(range(5))) == [0, 1, 2, 3, 4]
    assert distributed.device_for_scan() is None
    with distributed.process_group_from_env() as sharded:
        assert sharded is False
    distributed.shutdown()  # nothing to leave: no error


def test_shard_is_disjoint_and_complete():
    parts = [list(distributed.shard(range(10), rank=r, world_size=3)) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ConfigError):
        list(distributed.shard(range(3), rank=2, world_size=2))


def test_env_without_rendezvous_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        distributed.maybe_init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="not an integer"):
        distributed.maybe_init_from_env()


def _site(name: str, units: int, order: int = 0, kind: str = "relu") -> Site:
    info = SiteInfo(name=name, order=order, kind=kind, op="module", module=name, call_index=0,
                    input_layer=None, input_direct=False, unit_axis=1, sample_axis=0,
                    shape=(units,), units=units, level=0.0, sat_low=None, sat_high=None,
                    can_die=True, nonneg=True)
    stats = UnitStats.zeros(units)
    stats.update(torch.rand(4, units, 1), 2, 0.0, None, None, True, torch.empty(4 * units))
    return Site(info, stats)


def _mismatch_worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    try:
        try:
            distributed.reduce_sites([_site("act", 4 if rank == 0 else 5)])
        except ModelError as exc:
            Path(f"{out}.{rank}").write_text(str(exc))
    finally:
        dist.destroy_process_group()


def test_ranks_running_different_models_is_a_clear_error(tmp_path):
    out = str(tmp_path / "err")
    mp.spawn(_mismatch_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    message = Path(f"{out}.0").read_text()
    assert "rank 1 saw site 'act' as 5 relu units, an earlier rank as 4" in message


def test_single_rank_group_reduce_is_identity(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0,
                                world_size=1)
    try:
        sites = [_site("a", 3), _site("b", 2, order=1)]
        reduced = distributed.reduce_sites(sites)
        for before, after in zip(sites, reduced, strict=True):
            assert before.stats.to_dict() == after.stats.to_dict()
    finally:
        dist.destroy_process_group()

"""Weights & Biases in offline mode: ``loggers=[wandb.log]`` never loses the user's or
deadrelu's values, whatever the user's own logging pattern (issue 16)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch
from integration_models import Net

import deadrelu

wandb = pytest.importorskip("wandb")
pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")

STEPS = 10


def _history(run_dir) -> list[dict]:
    """The history rows of an offline run, read from its ``.wandb`` transaction log (a
    LevelDB-style log of protobuf records after a 7-byte header)."""
    path = next(run_dir.glob("run-*.wandb"))
    for _ in range(100):  # the writer may still be closing the file
        records = _records(path.read_bytes())
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def _records(data: bytes) -> list:
    records, pos, block, chunk = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def _init(tmp_path):
    return wandb.init(project="deadrelu-test", dir=str(tmp_path), mode="offline",
                      settings=wandb.Settings(console="off", silent=True))


def _user_logs_once(log, step, loss):
    log({"loss": loss})


def _user_logs_twice(log, step, loss):
    log({"loss": loss})
    log({"lr": 0.1})


def _user_logs_with_step(log, step, loss):
    log({"loss": loss}, step=step)


def _user_logs_twice_with_step(log, step, loss):
    log({"loss": loss}, step=step)
    log({"acc": 0.5}, step=step)


@pytest.mark.parametrize("pattern", [_user_logs_once, _user_logs_twice, _user_logs_with_step,
                                     _user_logs_twice_with_step])
@pytest.mark.parametrize("via", ["wandb.log", "run.log"])
def test_no_value_is_lost_whatever_the_users_logging(tmp_path, monkeypatch, pattern, via):
    # Before: deadrelu called log(values, step=monitor_step). Logging twice per step ran
    # W&B's counter ahead, and the reports were dropped; logging with step= made the
    # user's next values "older" than deadrelu's step, and they were dropped.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = _init(tmp_path)
    log = wandb.log if via == "wandb.log" else run.log
    try:
        model = Net().train()
        with deadrelu.Monitor(model, every=1, report_every=4, loggers=[log], jump=None,
                              findings=False):
            for step in range(STEPS):
                loss = model(torch.randn(8, 6)).square().mean()
                loss.backward()
                pattern(log, step, float(step))
    finally:
        run_dir = Path(run.dir).parent
        run.finish()
    rows = _history(run_dir)
    assert sorted(r["loss"] for r in rows if "loss" in r) == list(range(STEPS))
    ours = [r for r in rows if "deadrelu/step" in r]
    # reports after steps 3 and 7, and the last window (8-9) when the with block ends
    assert [r["deadrelu/step"] for r in ours] == [3, 7, 9]
    assert all(r["deadrelu/act/dead_fraction"] == 0.5 for r in ours)


def test_wandb_log_is_wrapped_in_the_wandb_logger(tmp_path, monkeypatch):
    from deadrelu.integrations import as_logger
    from deadrelu.integrations.wandb import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = _init(tmp_path)
    try:
        assert isinstance(as_logger(wandb.log), WandbLogger)
        assert as_logger(run.log).run is run
    finally:
        run.finish()

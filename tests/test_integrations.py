"""Integrations with the real libraries: Lightning, transformers' Trainer, TensorBoard, log(dict, step)."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from integration_models import Net
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import deadrelu
from deadrelu.errors import ConfigError
from deadrelu.integrations import as_logger, metrics
from deadrelu.integrations.logging import CallableLogger


def _run_monitor(loggers, steps=4):
    model = Net().train()
    with deadrelu.Monitor(model, every=1, report_every=2, loggers=loggers, jump=None):
        for _ in range(steps):
            model(torch.randn(8, 6)).sum().backward()


def test_metrics_keys_and_values():
    model = Net().eval()
    report = deadrelu.scan(model, torch.randn(200, 6))
    values = metrics(report)
    assert values == {
        "deadrelu/act/dead_fraction": 0.5,
        "deadrelu/act/rare_fraction": pytest.approx(report.layer_records()[0]["rare"] / 10),
        "deadrelu/act/saturated_fraction": 0.0,
        "deadrelu/dead_fraction": 0.5,
        "deadrelu/dead_units": 5.0,
    }
    assert set(metrics(report, prefix="x")) == {k.replace("deadrelu", "x", 1) for k in values}


def test_callable_logger_like_wandb_log():
    calls = []

    def log(values, step=None, commit=None):  # wandb.log's signature
        calls.append((step, values))

    _run_monitor([log])
    assert [step for step, _ in calls] == [1, 3]  # after the user's steps 0-1 and 2-3
    assert calls[0][1]["deadrelu/act/dead_fraction"] == 0.5
    assert isinstance(as_logger(log), CallableLogger)
    with pytest.raises(ConfigError):
        as_logger(42)  # type: ignore[arg-type]


def test_tensorboard_logger_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from deadrelu.integrations.tensorboard import TensorBoardLogger

    writer = SummaryWriter(str(tmp_path))
    _run_monitor([TensorBoardLogger(writer, flush=True)])
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "deadrelu/act/dead_fraction" in tags and "deadrelu/dead_fraction" in tags
    points = events.Scalars("deadrelu/act/dead_fraction")
    assert [p.step for p in points] == [1, 3]
    assert all(p.value == 0.5 for p in points)
    with pytest.raises(ConfigError, match="add_scalar"):
        TensorBoardLogger(object())


def test_a_finding_during_training_reaches_loggers_that_take_text():
    # findings=True: a conclusive window with a likely cause is told once, to the
    # loggers with log_finding (here a writer recording add_text) and as a warning
    from deadrelu.integrations.tensorboard import TensorBoardLogger
    from deadrelu.monitor import DeadUnitsWarning

    class Writer:
        def __init__(self):
            self.texts = []

        def add_scalar(self, tag, value, global_step=None):
            pass

        def add_text(self, tag, text, global_step=None):
            self.texts.append((tag, global_step, text))

    writer = Writer()
    model = Net().train()
    with pytest.warns(DeadUnitsWarning, match="likely cause"), \
            deadrelu.Monitor(model, every=1, report_every=2, loggers=[TensorBoardLogger(writer)]):
        for _ in range(4):
            model(torch.randn(400, 6)).sum().backward()
    assert len(writer.texts) == 1  # once, not at every report
    tag, step, text = writer.texts[0]
    assert tag == "deadrelu/findings" and step == 1 and text.startswith("DR001 act:")


# -- Lightning -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
def _lightning_module(pl):
    """A LightningModule around :class:`Net` (validation logs a loss, never recorded)."""

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = Net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Module


def _lightning_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(64, 6, generator=gen), torch.randint(0, 2, (64,), generator=gen))


def test_lightning_callback_logs_through_the_trainer(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger

    from deadrelu.integrations.lightning import DeadReluCallback

    Module = _lightning_module(pl)
    data = _lightning_data()
    callback = DeadReluCallback(every=2, log_every=4)
    trainer = pl.Trainer(
        max_steps=8, accelerator="cpu", devices=1, logger=CSVLogger(str(tmp_path), name="run"),
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, val_check_interval=4,
        limit_val_batches=2, num_sanity_val_steps=1,
    )
    trainer.fit(Module(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))

    history = callback.history
    # steps 0-3 and 4-7, logged where Lightning logs the loss of steps 3 and 7
    assert history["step"].tolist() == [3, 7]
    assert history["dead_fraction"].tolist() == [0.5, 0.5]
    # two sampled steps per window (0 and 2, then 4 and 6), 8 samples each; the
    # eval-mode validation batches (sanity check included) are not recorded
    assert history["samples"].tolist() == [16, 16]
    assert trainer.callback_metrics["deadrelu/dead_fraction"] == pytest.approx(0.5)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("deadrelu/net.act/dead_fraction")]
    assert [int(r["step"]) for r in rows] == [3, 7]
    assert not callback.monitor.attached


def test_lightning_callback_recycles_with_the_trainers_optimizer():
    pl = pytest.importorskip("lightning.pytorch")

    from deadrelu.integrations.lightning import DeadReluCallback

    Module = _lightning_module(pl)
    callback = DeadReluCallback(every=2, log_every=4, recycle=True)
    trainer = pl.Trainer(
        max_steps=4, accelerator="cpu", devices=1, logger=False, callbacks=[callback],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    module = Module()
    trainer.fit(module, DataLoader(_lightning_data(), batch_size=8))
    assert callback.monitor.optimizer is trainer.optimizers[0]
    (step, result), = callback.monitor.recycled
    assert step == 3 and result.units_recycled == 5
    # the planted biases were re-drawn: the units can fire again
    assert module.net.fc1.bias[:5].abs().max() < 1.0


def test_lightning_callback_records_accumulated_steps_whole():
    pl = pytest.importorskip("lightning.pytorch")

    from deadrelu.integrations.lightning import DeadReluCallback

    Module = _lightning_module(pl)
    data = _lightning_data()
    callback = DeadReluCallback(every=2, log_every=4)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=[callback],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accumulate_grad_batches=2,
    )
    trainer.fit(Module(), DataLoader(data, batch_size=8))
    # 8 batches = 4 optimizer steps; steps 0 and 2 sampled, both micro-batches of each,
    # reported once when step 4 is reached (never a half step at step 0)
    history = callback.history
    assert history["step"].tolist() == [3]
    assert history["samples"].tolist() == [32]


def test_lightning_callback_state_goes_into_the_checkpoint_and_resumes(tmp_path):
    # Before: a resumed run started a new history, and its first window had no
    # baseline for the jump check.
    pl = pytest.importorskip("lightning.pytorch")

    from deadrelu.integrations.lightning import DeadReluCallback

    Module = _lightning_module(pl)
    data = _lightning_data()

    def fit(max_steps, ckpt_path=None):
        # rare=5%: 59 samples make a window conclusive, so it becomes the jump baseline
        callback = DeadReluCallback(every=1, log_every=4, thresholds=deadrelu.Thresholds(rare=0.05))
        trainer = pl.Trainer(
            max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
            callbacks=[callback], default_root_dir=str(tmp_path), enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(Module(), DataLoader(data, batch_size=16), ckpt_path=ckpt_path)
        return callback, trainer

    first, trainer = fit(8)
    assert first.history["step"].tolist() == [3, 7]
    ckpt = trainer.checkpoint_callback.best_model_path
    state = torch.load(ckpt, weights_only=True)["callbacks"]
    assert any(k.startswith("DeadReluCallback") for k in state)
    assert first.monitor.state_dict()["baseline"] == {"net.act": [0.5, 7]}
    second, _ = fit(16, ckpt_path=ckpt)
    assert second.history["step"].tolist() == [3, 7, 11, 15]
    assert second.history["samples"].tolist() == [64] * 4


def test_lightning_callback_passes_exclude_layers_to_its_monitor():
    pl = pytest.importorskip("lightning.pytorch")

    from deadrelu.integrations.lightning import DeadReluCallback

    Module = _lightning_module(pl)

    def fit(**kwargs):
        torch.manual_seed(0)
        # rare=5%: the window's 64 samples are enough for a finding to be announced
        callback = DeadReluCallback(every=1, log_every=4,
                                    thresholds=deadrelu.Thresholds(rare=0.05), **kwargs)
        trainer = pl.Trainer(
            max_steps=4, accelerator="cpu", devices=1, logger=False, callbacks=[callback],
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(Module(), DataLoader(_lightning_data(), batch_size=16))
        said = [str(w.message) for w in caught if w.category is deadrelu.DeadUnitsWarning]
        return callback, said

    kept, kept_said = fit()
    callback, said = fit(exclude_layers=["net.*"])
    assert callback.monitor.exclude_layers == ("net.*",)
    # without exclusion the planted half is a finding, announced; with it, neither
    assert any(f.layer == "net.act" for f in kept.monitor.last_report.findings)
    assert any("net.act" in s for s in kept_said)
    assert not any(f.layer == "net.act" for f in callback.monitor.last_report.findings)
    assert not any("net.act" in s for s in said)
    # the counters are the same: still logged and in the history
    assert callback.history["dead_fraction"].tolist() == [0.5]
    assert callback.history.equals(kept.history)


# -- transformers ----------------------------------------------------------------------------------


class _DictData(Dataset):
    def __init__(self, n=64):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=gen)
        self.y = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class _HFModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def _hf_trainer(tmp_path, callbacks=(), report_to=(), **kwargs):
    transformers = pytest.importorskip("transformers")
    settings = {"save_strategy": "no", **kwargs}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8, logging_steps=4,
        report_to=list(report_to), use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, **settings,
    )
    return transformers.Trainer(model=_HFModel(), args=args, train_dataset=_DictData(),
                                callbacks=list(callbacks))


def test_transformers_callback_logs_through_trainer_log(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    trainer = _hf_trainer(tmp_path, report_to=["tensorboard"])
    callback = DeadReluTrainerCallback(trainer, every=2)
    trainer.add_callback(callback)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "deadrelu/net.act/dead_fraction" in e]
    assert [e["step"] for e in logged] == [4, 8]
    assert all(e["deadrelu/net.act/dead_fraction"] == 0.5 for e in logged)
    # the trainer's own logging is unchanged: the loss is still logged every 4 steps
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [4, 8]
    assert callback.history["samples"].tolist() == [16, 16]
    assert not callback.monitor.attached
    # and the values reached the trainer's reporting integration (here TensorBoard)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [p.step for p in events.Scalars("train/deadrelu/dead_fraction")] == [4, 8]


def test_transformers_callback_without_trainer_adds_to_the_next_log(tmp_path):
    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    callback = DeadReluTrainerCallback(every=1, log_every=4)
    trainer = _hf_trainer(tmp_path, callbacks=[callback], gradient_accumulation_steps=2)
    trainer.train()
    entries = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in entries] == [4, 8]
    assert all(e["deadrelu/dead_fraction"] == 0.5 for e in entries)
    # every optimizer step sampled, both micro-batches of 8 samples each
    assert callback.history["samples"].tolist() == [64, 64]


def test_transformers_callback_logs_a_compact_set_of_keys(tmp_path):
    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    trainer = _hf_trainer(tmp_path)
    callback = DeadReluTrainerCallback(trainer, every=2, worst_layers=0)
    trainer.add_callback(callback)
    trainer.train()
    keys = {k for e in trainer.state.log_history for k in e if k.startswith("deadrelu/")}
    assert keys == {"deadrelu/dead_fraction", "deadrelu/dead_units"}
    assert set(callback.history["layer"]) == {"net.act"}  # the history keeps every layer


@pytest.mark.parametrize("recreate", [False, True])
def test_transformers_callback_state_is_saved_and_restored_on_resume(tmp_path, recreate):
    # Before: resume_from_checkpoint started a new history. With
    # restore_callback_states_from_checkpoint the Trainer re-creates the callback from
    # its JSON state; without it the callback reads that state itself.
    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    def run(max_steps, resume=None):
        trainer = _hf_trainer(tmp_path, save_strategy="steps", save_steps=8,
                              restore_callback_states_from_checkpoint=recreate)
        trainer.args.max_steps = max_steps
        trainer.add_callback(DeadReluTrainerCallback(trainer, every=2, jump=0.2))
        trainer.train(resume_from_checkpoint=resume)
        return trainer, next(cb for cb in trainer.callback_handler.callbacks
                             if isinstance(cb, DeadReluTrainerCallback))

    trainer, first = run(8)
    assert first.history["step"].tolist() == [4, 8]
    trainer, second = run(16, resume=str(tmp_path / "checkpoint-8"))
    assert second.history["step"].tolist() == [4, 8, 12, 16]
    assert second.monitor.jump == 0.2
    assert second.trainer is trainer
    # the restored callback still logs through the trainer
    assert [e["step"] for e in trainer.state.log_history
            if "deadrelu/dead_fraction" in e] == [4, 8, 12, 16]


def test_transformers_callback_passes_exclude_layers_and_keeps_them_in_its_state(tmp_path):
    import json

    from deadrelu.integrations.transformers import DeadReluTrainerCallback

    callback = DeadReluTrainerCallback(every=1, log_every=4, exclude_layers=["net.*"])
    trainer = _hf_trainer(tmp_path, callbacks=[callback])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert callback.monitor.exclude_layers == ("net.*",)
    assert not any(f.layer == "net.act" for f in callback.monitor.last_report.findings)
    assert not any("net.act" in str(w.message) for w in caught
                   if w.category is deadrelu.DeadUnitsWarning)
    assert callback.history["dead_fraction"].tolist() == [0.5, 0.5]  # counters kept
    # a Trainer re-creating the callback from trainer_state.json keeps the exclusion
    args = json.loads(json.dumps(callback.state()))["args"]
    assert args["exclude_layers"] == ["net.*"]
    again = DeadReluTrainerCallback(**args)
    trainer = _hf_trainer(tmp_path, callbacks=[again])
    trainer.train()
    assert again.monitor.exclude_layers == ("net.*",)
    assert not any(f.layer == "net.act" for f in again.monitor.last_report.findings)


# -- optional imports ------------------------------------------------------------------------------


def test_import_deadrelu_pulls_in_no_framework():
    code = ("import sys, deadrelu, deadrelu.integrations, deadrelu.monitor; "
            "print(sorted(m for m in ('lightning', 'transformers', 'tensorboard', 'wandb') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

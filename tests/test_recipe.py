"""The training recipe read from checkpoints, and the advice built from it (issue 16)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deadrelu.diagnose.advice import lr_fix, sci, weight_decay_fix
from deadrelu.loading import load_model
from deadrelu.loading.recipe import read_recipe

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"


def _stepped(opt_cls, sched=None, steps=3, **kwargs):
    """A real optimizer (and scheduler) after a few steps, as a training loop saves them."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    opt = opt_cls(net.parameters(), **kwargs)
    scheduler = sched(opt) if sched is not None else None
    for _ in range(steps):
        net(torch.randn(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
        if scheduler is not None:
            scheduler.step()
    return net, opt, scheduler


def test_plain_dict_checkpoint_with_adam_and_no_scheduler():
    net, opt, _ = _stepped(torch.optim.Adam, lr=3e-2, steps=4)
    recipe = read_recipe({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 2})
    assert recipe is not None
    assert recipe["optimizer"] == "Adam" and recipe["adaptive"] is True
    assert recipe["lr"] == pytest.approx(3e-2)
    assert recipe["step"] == 4  # from Adam's own step count
    assert recipe["epoch"] == 2
    assert recipe["warmup"] is False and recipe["scheduler"] is None
    json.dumps(recipe)  # JSON-ready: it goes into report.meta


@pytest.mark.parametrize(("opt_cls", "kwargs", "name", "adaptive"), [
    (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.5}, "AdamW", True),
    (torch.optim.SGD, {"lr": 0.5, "momentum": 0.9}, "SGD", False),
    (torch.optim.RMSprop, {"lr": 1e-2}, "RMSprop", True),
    (torch.optim.Adagrad, {"lr": 1e-2}, "Adagrad", True),
])
def test_optimizer_is_recognised_from_its_hyper_parameters(opt_cls, kwargs, name, adaptive):
    net, opt, _ = _stepped(opt_cls, **kwargs)
    recipe = read_recipe({"state_dict": net.state_dict(), "optim": opt.state_dict(), "step": 4000})
    assert recipe["optimizer"] == name and recipe["adaptive"] is adaptive
    assert recipe["lr"] == pytest.approx(kwargs["lr"])
    assert recipe["step"] == 4000  # the checkpoint's own counter wins
    if "weight_decay" in kwargs:
        assert recipe["weight_decay"] == pytest.approx(0.5)


@pytest.mark.parametrize(("sched", "name", "warmup"), [
    (lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=10), "LinearLR", True),
    (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10), "StepLR", False),
    (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=100), "OneCycleLR", True),
    (lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0), "LambdaLR", None),
    (lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, start_factor=0.01, total_iters=5),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50)], milestones=[5]),
     "SequentialLR", True),
])
def test_scheduler_and_warm_up(sched, name, warmup):
    net, opt, scheduler = _stepped(torch.optim.SGD, sched, lr=0.1)
    recipe = read_recipe({"model": net.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": scheduler.state_dict()})
    assert recipe["scheduler"] == name
    assert recipe["warmup"] is warmup
    assert recipe["initial_lr"] == pytest.approx(0.1) or name == "OneCycleLR"


def test_real_lightning_checkpoint(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(pl.LightningModule):
        def __init__(self, lr=0.03):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=100)]

    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, default_root_dir=str(tmp_path),
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Module(), DataLoader(data, batch_size=4))
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    recipe = read_recipe(ckpt)
    assert recipe["optimizer"] == "Adam" and recipe["lr"] == pytest.approx(0.03)
    assert recipe["step"] == 6 and recipe["source"] == "Lightning optimizer_states"
    assert recipe["scheduler"] == "StepLR" and recipe["warmup"] is False


def test_no_recipe_in_a_bare_state_dict_or_a_module():
    net = nn.Linear(3, 2)
    assert read_recipe(net.state_dict()) is None
    assert read_recipe(net) is None
    assert read_recipe({"model": net.state_dict(), "epoch": 3}) is None


def test_hyper_parameters_alone_give_the_lr_and_warm_up():
    recipe = read_recipe({"state_dict": {}, "hyper_parameters": {"learning_rate": 5e-4,
                                                                "warmup_steps": 0}})
    assert recipe == {"lr": 5e-4, "source": "hyper-parameters", "warmup": False}


# -- advice ----------------------------------------------------------------------------------------


def test_sci_writes_learning_rates_as_people_do():
    assert [sci(x) for x in (3e-2, 3e-3, 2.5e-4, 0.1, 1.0, 0)] == \
        ["3e-2", "3e-3", "2.5e-4", "0.1", "1", "0"]


def test_lr_fix_is_concrete_and_never_clips_under_adam():
    adam = {"optimizer": "Adam", "adaptive": True, "lr": 3e-2, "step": 4000, "warmup": False}
    text = lr_fix(adam)
    assert text.startswith("trained with Adam, lr 3e-2 at step 4,000 (no warm-up found): "
                           "try lr ≤ 3e-3 with a linear warm-up")
    assert "clip" not in text
    sgd = {"optimizer": "SGD", "adaptive": False, "lr": 2.0, "warmup": True}
    text = lr_fix(sgd)
    assert "try lr ≤ 0.2" in text and "(with warm-up)" in text and "clip_grad_norm_" in text
    # without a recipe the advice stays generic and says when clipping helps
    assert "barely does" in lr_fix(None)


def test_weight_decay_fix_names_the_value():
    text = weight_decay_fix({"optimizer": "Adam", "weight_decay": 0.5})
    assert "Adam ran with weight_decay 0.5: try ≤ 0.05" in text and "AdamW" in text
    assert "weight_decay 0," in weight_decay_fix({"optimizer": "AdamW", "weight_decay": 0.0})
    assert "~10×" in weight_decay_fix(None)


# -- end to end ------------------------------------------------------------------------------------


def test_the_sample_training_checkpoint_gets_a_concrete_learning_rate():
    loaded = load_model(SM / "mlp_high_lr_ckpt.pt", arch=f"{SM / 'models.py'}:DigitsMLP")
    assert loaded.recipe["optimizer"] == "Adam" and loaded.recipe["lr"] == pytest.approx(3e-2)
    import numpy as np

    import deadrelu

    x = torch.from_numpy(np.load(SM / "data" / "digits_test.npy"))
    report = deadrelu.scan(loaded.model, x, recipe=loaded.recipe)
    dr001 = [f for f in report.findings if f.code == "DR001"]
    assert dr001
    for finding in dr001:
        assert "Adam, lr 3e-2 at step 460 (no warm-up found): try lr ≤ 3e-3" in finding.fix
        assert "clip" not in finding.fix
        assert finding.evidence["recipe"]["lr"] == pytest.approx(3e-2)
    assert report.meta["recipe"]["optimizer"] == "Adam"

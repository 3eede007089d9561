"""deadrelu.Monitor: sampling, step detection, train-mode recording, windows, history, jumps."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn
from torch.utils.checkpoint import checkpoint

import deadrelu
from deadrelu.errors import ConfigError
from deadrelu.monitor import HISTORY_COLUMNS, DeadUnitsWarning, Monitor
from deadrelu.scanning import InsufficientDataWarning


class MLP(nn.Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.act1 = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(12, 3)
        with torch.no_grad():
            self.fc1.bias[2] = -1e4  # planted dead unit

    def forward(self, x):
        return self.fc2(self.act1(self.fc1(x)))


class SmallCNN(nn.Module):
    """Conv + BatchNorm + in-place ReLU + dropout + a functional ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        h = self.drop(self.relu(self.bn(self.conv(x))))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(F.relu(h))


def _train(model, steps, monitor=None, *, batch=16, lr=0.05, seed=1, explicit=False):
    """A plain SGD loop; returns the inputs of every step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xs = []
    for _ in range(steps):
        x = torch.randn(batch, *_input_shape(model), generator=gen)
        xs.append(x)
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if explicit:
            monitor.step()
    return xs


def _input_shape(model):
    return (3, 8, 8) if isinstance(model, SmallCNN) else (6,)


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# -- recording -------------------------------------------------------------------------------------


def test_sampled_steps_match_brute_force_in_train_mode():
    torch.manual_seed(0)
    model = MLP().train()
    twin = copy.deepcopy(model)
    with Monitor(model, every=3) as monitor:
        xs = _train(model, 10)
    report = monitor.report()
    # Replay on the twin to get the activations the monitored steps saw (steps 0, 3, 6, 9).
    outs = []
    opt = torch.optim.SGD(twin.parameters(), lr=0.05)
    for i, x in enumerate(xs):
        h = F.relu(twin.fc1(x))
        if i % 3 == 0:
            outs.append(h.detach().clone())
        twin.fc2(h).square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert_matches(report.site("act1").stats, brute(outs, 1))
    assert report.meta["mode"] == "train"
    assert report.meta["sampled_steps"] == 4
    assert report.meta["step"] == 9  # the last of the user's 0-based steps 0..9
    assert report.samples == 4 * 16
    assert 2 in report.units_in_state("act1", "dead")


def test_monitor_does_not_change_training():
    # In-place ReLU, BatchNorm running stats, dropout: the monitored run is bit-identical.
    torch.manual_seed(0)
    plain = SmallCNN().train()
    watched = copy.deepcopy(plain)
    torch.manual_seed(7)
    _train(plain, 4)
    torch.manual_seed(7)
    with Monitor(watched, every=1):
        _train(watched, 4)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_unsampled_steps_carry_no_collector_hooks():
    model = SmallCNN().train()
    baseline = _hook_count(model)
    seen = []

    class Spy(nn.Module):
        pass

    with Monitor(model, every=4) as monitor:
        for _ in range(8):
            seen.append((monitor.steps, monitor.collector.attached, _hook_count(model) - baseline))
            _train(model, 1)
    for step, attached, hooks in seen:
        if step % 4 == 0:
            assert attached and hooks > 3
        else:
            assert not attached and hooks == 3  # the monitor's own: pre, always, post on the root
    assert _hook_count(model) == baseline


def test_eval_forwards_are_not_recorded_or_counted():
    model = MLP().train()
    with Monitor(model, every=1) as monitor:
        _train(model, 2)
        model.eval()
        with torch.no_grad():
            model(torch.randn(50, 6))
        model.train()
    assert monitor.steps == 2
    assert monitor.report().samples == 32


def test_checkpointed_forwards_recomputed_in_backward_are_not_counted_twice():
    class Ckpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
            self.out = nn.Linear(8, 1)

        def forward(self, x):
            return self.out(checkpoint(self.inner, x, use_reentrant=False))

    model = Ckpt().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, every=1, auto_step=False) as monitor:
        for _ in range(3):
            model(torch.randn(10, 6)).sum().backward()
            opt.step()
            monitor.step()
    assert monitor.report().samples == 30


# -- steps -----------------------------------------------------------------------------------------


def test_explicit_step_takes_over_and_counts_several_forwards_per_step():
    model = MLP().train()
    with Monitor(model, every=2) as monitor:
        for step in range(4):
            for _ in range(3):  # three forwards per training step
                model(torch.randn(5, 6)).sum().backward()
            monitor.step()
            if step == 0:
                # Until the first step() call each forward counted as a step; that call
                # ends step 0 whatever was counted.
                assert monitor.steps == 1
                monitor.report()
    report = monitor.report()
    assert monitor.steps == 4
    assert report.meta["sampled_steps"] == 1  # step 2, with all three forwards
    assert report.samples == 15


def test_auto_step_false_records_every_forward_of_a_sampled_step():
    model = MLP().train()
    with Monitor(model, every=2, auto_step=False) as monitor:
        for _ in range(4):
            for _ in range(3):
                model(torch.randn(5, 6))
            monitor.step()
    assert monitor.report().samples == 2 * 15


def test_step_can_follow_a_framework_counter():
    model = MLP().train()
    with Monitor(model, every=5, auto_step=False) as monitor:
        for global_step in [0, 0, 1, 1, 5, 5, 6]:  # gradient accumulation: 2 batches per step
            monitor.step(global_step)
            model(torch.randn(4, 6))
    report = monitor.report()
    assert report.meta["sampled_steps"] == 2  # steps 0 and 5
    assert report.samples == 4 * 4


def test_submodule_calls_without_root_forward_warn_once():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = MLP()

    wrapper = Wrapper().train()
    with Monitor(wrapper, every=1) as monitor, pytest.warns(UserWarning, match="monitor.step"):
        wrapper.net(torch.randn(4, 6))
        wrapper.net(torch.randn(4, 6))
    assert monitor.report().samples == 8


# -- reports, history, jumps -----------------------------------------------------------------------


def test_report_windows_reset_and_history_rows():
    model = MLP().train()
    with Monitor(model, every=2) as monitor:
        _train(model, 4)
        first = monitor.report()
        _train(model, 4)
        second = monitor.report(reset=False)
        _train(model, 2)
        third = monitor.report()
    # windows name the first and last step that ran in them, 0-based like the loop
    assert first.meta["window"] == [0, 3] and first.samples == 32
    assert second.meta["window"] == [4, 7] and second.samples == 32
    assert third.meta["window"] == [4, 9] and third.samples == 48  # not reset after second
    history = monitor.history
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["step"].tolist() == [3, 7, 9]
    assert (history["layer"] == "act1").all()
    assert history["dead_fraction"].iloc[0] == pytest.approx(1 / 12)


def test_empty_window_warns_and_adds_no_rows():
    model = MLP().train()
    with Monitor(model, every=100) as monitor:
        _train(model, 3)
        monitor.report()
        _train(model, 3)
        with pytest.warns(InsufficientDataWarning, match="no sampled step"):
            report = monitor.report()
    assert report.samples == 0
    assert monitor.history["step"].tolist() == [2]


def _kill_half(model):
    with torch.no_grad():
        model.fc1.bias[:6] = -1e4


def test_jump_in_dead_fraction_calls_on_jump():
    model = MLP().train()
    jumps = []
    with Monitor(model, every=1, on_jump=lambda *a: jumps.append(a)) as monitor:
        _train(model, 2, lr=0.0, batch=200)
        monitor.report()
        _kill_half(model)
        _train(model, 2, lr=0.0, batch=200)
        monitor.report()
    assert jumps == [("act1", pytest.approx(1 / 12), pytest.approx(6 / 12), 3)]


def test_jump_warns_with_dead_units_warning_and_can_be_turned_off():
    model = MLP().train()
    with Monitor(model, every=1, findings=False) as monitor:
        _train(model, 2, lr=0.0, batch=200)
        monitor.report()
        _kill_half(model)
        _train(model, 2, lr=0.0, batch=200)
        with pytest.warns(DeadUnitsWarning, match=r"act1: dead units rose from 8\.3% \(window "
                          r"ending at step 1\) to 50% by step 3, in a window of 400 samples"):
            monitor.report()
    quiet = Monitor(MLP().train(), every=1, jump=None, findings=False)
    with quiet, warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        _train(quiet.model, 2, lr=0.0, batch=200)
        quiet.report()
        _kill_half(quiet.model)
        _train(quiet.model, 2, lr=0.0, batch=200)
        quiet.report()


def test_report_every_and_loggers():
    model = MLP().train()
    logged = []
    with Monitor(model, every=1, report_every=3,
                 loggers=[lambda values, step: logged.append((step, values))]) as monitor:
        _train(model, 7)
    # after steps 0-2 and 3-5, and leaving the with block reports step 6's window
    assert [step for step, _ in logged] == [2, 5, 6]
    assert monitor.history["step"].tolist() == [2, 5, 6]
    assert logged[0][1]["deadrelu/act1/dead_fraction"] == pytest.approx(1 / 12)


# -- lifecycle and wrappers ------------------------------------------------------------------------


def test_lifecycle_guards_and_detach_restores_model():
    model = SmallCNN().train()
    baseline = _hook_count(model)
    monitor = Monitor(model, every=1).attach()
    with pytest.raises(RuntimeError, match="already attached"):
        monitor.attach()
    monitor.detach()
    monitor.detach()
    assert _hook_count(model) == baseline


def test_forward_error_leaves_monitor_usable():
    model = MLP().train()
    with Monitor(model, every=1) as monitor:
        with pytest.raises(RuntimeError):
            model(torch.randn(4, 7))
        _train(model, 1)
    assert monitor.report().samples == 16
    assert not torch.overrides._get_current_function_mode_stack()


@pytest.mark.parametrize("bad", [
    {"every": 0}, {"every": 1.5}, {"jump": 0.0}, {"jump": 2}, {"report_every": 0},
    {"on_jump": 3},
])
def test_invalid_arguments(bad):
    with pytest.raises(ConfigError):
        Monitor(MLP(), **bad)


def test_not_a_module():
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        Monitor("model.pt")


def test_torch_compiled_model_records_sampled_steps_eagerly_without_recompiling():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = MLP().train()
    compiled = torch.compile(model, backend="eager")
    compiled(torch.randn(16, 6))
    graphs = counters["stats"]["unique_graphs"]
    with Monitor(compiled, every=3) as monitor:
        _train(compiled, 9)
    report = monitor.report()
    assert report.meta["sampled_steps"] == 3 and report.samples == 48
    assert counters["stats"]["unique_graphs"] == graphs
    assert any("torch.compile" in note for note in report.meta["notes"])


def test_compiled_in_place_is_refused():
    model = MLP()
    model.compile(backend="eager")
    with pytest.raises(ConfigError, match="torch.compile"):
        Monitor(model).attach()


def test_public_api_exports_monitor():
    assert deadrelu.Monitor is Monitor
    assert deadrelu.DeadUnitsWarning is DeadUnitsWarning


# -- no false alarms (issue 16) --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2, 5])
def test_tiny_windows_never_raise_a_jump(batch):
    # Before: one window of 2 (or 5) samples in which half the units happened not to
    # fire read as "dead units rose from 8% to 50%".
    model = MLP().train()
    with Monitor(model, every=1, findings=False) as monitor, warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        _train(model, 1, lr=0.0, batch=400)  # a conclusive baseline
        monitor.report()
        _kill_half(model)
        _train(model, 1, lr=0.0, batch=batch)
        monitor.report()
    history = monitor.history
    assert history["samples"].tolist() == [400, batch]
    assert history["conclusive"].tolist() == [True, False]
    assert history["dead_fraction"].iloc[1] >= 0.5  # a jump of 42+ points, by chance in part
    # the bound a dead verdict rests on: 1 - 0.05^(1/n)
    assert history["fire_rate_bound"].iloc[1] == pytest.approx(1 - 0.05 ** (1 / batch))


def test_jump_compares_with_the_last_conclusive_window():
    model = MLP().train()
    jumps = []
    with Monitor(model, every=1, findings=False, on_jump=lambda *a: jumps.append(a)) as monitor:
        _train(model, 1, lr=0.0, batch=400)
        monitor.report()                      # step 0: 1/12 dead, conclusive
        _kill_half(model)
        _train(model, 1, lr=0.0, batch=3)
        monitor.report()                      # step 1: too few samples, skipped
        _train(model, 1, lr=0.0, batch=400)
        monitor.report()                      # step 2: compared with step 0
    assert jumps == [("act1", pytest.approx(1 / 12), pytest.approx(6 / 12), 2)]


def test_eval_mode_during_training_is_named_as_the_cause():
    # Before: "no sampled step since step 0 ...: report less often or sample more often".
    model = MLP().eval()
    with Monitor(model, every=1) as monitor:
        _train(model, 3)
        with pytest.warns(InsufficientDataWarning, match=r"3 forwards since step 0, all in eval "
                          r"mode.*call model\.train\(\)"):
            report = monitor.report()
    assert report.samples == 0


def test_steps_are_the_users_across_epochs_and_the_with_block_reports_the_last_window():
    # The README loop: a global step across epochs, report_every, nothing after the loop.
    model = MLP().train()
    seen_steps = []
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, every=2, report_every=4, findings=False) as monitor:
        step = 0
        for _epoch in range(2):
            for _ in range(5):                    # 5 batches per epoch, 10 steps in all
                model(torch.randn(8, 6)).square().mean().backward()
                opt.step()
                opt.zero_grad()
                seen_steps.append(step)
                step += 1
    history = monitor.history
    # reports after steps 3 and 7, and the last window (8-9) when the with block ends
    assert history["step"].tolist() == [3, 7, 9]
    assert monitor.last_report.meta["window"] == [8, 9]
    assert monitor.last_report.meta["sampled_steps"] == 1  # step 8
    assert seen_steps[-1] == 9
    # a report() after the block returns that last window, not an empty one
    assert monitor.report() is monitor.last_report
    assert len(monitor.history) == 3


def test_explicit_steps_follow_the_callers_numbers():
    model = MLP().train()
    with Monitor(model, every=5, auto_step=False, findings=False) as monitor:
        for global_step in range(100, 110):
            monitor.step(global_step)             # the step about to run
            model(torch.randn(4, 6))
        monitor.step(110)
        report = monitor.report()
    assert report.meta["step"] == 109
    assert report.meta["sampled_steps"] == 2      # steps 100 and 105


def test_a_finding_with_a_likely_cause_is_announced_once():
    model = MLP().train()
    with Monitor(model, every=1) as monitor:
        _train(model, 2, lr=0.0, batch=200)
        with pytest.warns(DeadUnitsWarning, match=r"step 1: DR001 .*likely cause: learning_rate"):
            monitor.report()
        _train(model, 2, lr=0.0, batch=200)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeadUnitsWarning)
            monitor.report()                      # the same finding again: silent


def test_a_small_window_announces_no_finding():
    model = MLP().train()
    with Monitor(model, every=1) as monitor, warnings.catch_warnings():
        warnings.simplefilter("error", DeadUnitsWarning)
        _train(model, 2, lr=0.0, batch=8)
        monitor.report()


def test_the_optimizer_makes_the_advice_concrete():
    model = MLP().train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    with Monitor(model, every=1, optimizer=opt) as monitor:
        for _ in range(2):
            model(torch.randn(200, 6)).square().mean().backward()
            opt.zero_grad()  # no update: the planted unit stays dead
        with pytest.warns(DeadUnitsWarning, match=r"trained with Adam, lr 3e-2 at step 1 "
                          r"\(no warm-up found\): try lr ≤ 3e-3"):
            report = monitor.report()
    assert report.meta["recipe"]["optimizer"] == "Adam"
    assert "clip" not in next(f.fix for f in report.findings if f.code == "DR001")


class _Interrupted(nn.Module):
    """Raises KeyboardInterrupt after its first activation when ``boom`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act1 = nn.ReLU()
        self.act2 = nn.ReLU()
        self.fc2 = nn.Linear(8, 2)
        self.boom = False

    def forward(self, x):
        h = self.act1(self.fc1(x))
        if self.boom:
            raise KeyboardInterrupt
        return self.fc2(F.relu(self.act2(h)))


@pytest.mark.parametrize("wrap", ["plain", "dataparallel"])
def test_interrupt_caught_by_the_loop_leaves_no_forward_state(wrap: str) -> None:
    # torch skips always_call hooks for a BaseException: before the guard, the next
    # steps recorded bogus sites act1#1, act1#2 (the stack and mode stayed entered).
    torch.manual_seed(0)
    inner = _Interrupted().train()
    model = nn.DataParallel(inner) if wrap == "dataparallel" else inner
    x = torch.randn(16, 4)
    with Monitor(model, every=1) as monitor:
        for step in range(4):
            inner.boom = step == 1
            try:
                model(x).sum().backward()
            except KeyboardInterrupt:
                assert not torch._C._is_torch_function_mode_enabled()
            # outside the forward, nothing is intercepted (the loss, the optimizer)
            assert not torch._C._is_torch_function_mode_enabled()
            assert not monitor.collector._stack
        report = monitor.report()
    names = [s.info.name for s in report.sites]
    assert names == ["act1", "act2", "<model>:relu"]
    # three complete forwards and the interrupted one's first activation
    assert report.site("act1").stats.samples == 4 * 16
    assert report.site("act2").stats.samples == 3 * 16
    assert type(inner).forward is _Interrupted.forward and "forward" not in inner.__dict__


def test_guard_keeps_forward_signature_and_copies_unwatched() -> None:
    import inspect
    import pickle

    model = _Interrupted().train()
    before = inspect.signature(model.forward)
    with Monitor(model, every=1) as monitor:
        assert "forward" in model.__dict__  # the guard is in place
        assert inspect.signature(model.forward) == before
        ema = copy.deepcopy(model)  # an EMA copy made while watched: its own, unwatched forward
        clone = pickle.loads(pickle.dumps(model))
        for other in (ema, clone):
            assert other.forward.__self__ is other
            other.boom = True  # runs the copy's own forward, not the watched model's
            with pytest.raises(KeyboardInterrupt):
                other(torch.randn(3, 4))
        model(torch.randn(5, 4))
        assert monitor.report().site("act1").stats.samples == 5
    assert "forward" not in model.__dict__


# -- exclude_layers: findings left out, as in scan ----------------------------------------------


class BodyHead(nn.Module):
    """A body and an output head, one unit of each planted dead (``kill_half`` plants more)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 12), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
        with torch.no_grad():
            self.body[0].bias[2] = -1e4
            self.head[0].bias[5] = -1e4

    def forward(self, x):
        return self.head(self.body(x))

    def kill_half(self, part: str) -> None:
        with torch.no_grad():
            layer = getattr(self, part)[0]
            layer.bias[: layer.out_features // 2] = -1e4


def _watch_body_head(exclude, *, kill=(), **kwargs):
    """Two conclusive windows of 400 samples each, the ``kill`` parts half-killed between
    them; returns the monitor, its reports, every warning it gave, an untrained copy of
    the model and each window's inputs."""
    torch.manual_seed(0)  # the same weights in every call
    model = BodyHead().train()
    twin = copy.deepcopy(model)
    reports, inputs = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Monitor(model, every=1, exclude_layers=exclude, **kwargs) as monitor:
            inputs.append(_train(model, 2, lr=0.0, batch=200))
            reports.append(monitor.report())
            for part in kill:
                model.kill_half(part)
            inputs.append(_train(model, 2, lr=0.0, batch=200, seed=2))
            reports.append(monitor.report())
    said = [str(w.message) for w in caught if w.category is DeadUnitsWarning]
    return monitor, reports, said, twin, inputs


def test_excluded_layers_have_no_findings_but_keep_their_counters():
    kept, kept_reports, *_ = _watch_body_head(())
    monitor, reports, said, twin, inputs = _watch_body_head(["head.*"])
    for report, full, xs in zip(reports, kept_reports, inputs, strict=True):
        # the head's findings are gone, the body's are there, all else as without exclusion
        assert report.findings == tuple(f for f in full.findings if f.layer != "head.1")
        assert any(f.layer == "head.1" for f in full.findings)  # the planted head unit is found
        assert {f.code for f in report.findings if f.layer == "body.1"} >= {"DR001"}
        assert not any(f.layer is not None and f.layer.startswith("head.") for f in report.findings)
        # ... and re-diagnosis (other thresholds, a merge) leaves them out too
        assert report.meta["selection"]["per_layer_ignores"] == {"head.*": ["ALL"]}
        rediagnosed = report.with_thresholds(report.thresholds.replace(rare=0.02))
        assert not any(f.layer == "head.1" for f in rediagnosed.findings)
        # the counters are recorded as without exclusion: exclusion is about findings only
        with torch.no_grad():  # lr=0: the weights of every step are the twin's
            assert_matches(report.site("head.1").stats,
                           brute([twin.head[:2](twin.body(x)) for x in xs], 1))
        assert report.verdicts["head.1"].fire_rate[5] == 0  # the planted unit, dead
    history = monitor.history
    assert history.equals(kept.history)
    head = history[history["layer"] == "head.1"]
    dead = [int((r.verdicts["head.1"].fire_rate == 0).sum()) for r in reports]
    assert head["dead"].tolist() == dead and min(dead) >= 1
    # the finding warnings name the body only
    assert any("body.1" in s for s in said) and not any("head.1" in s for s in said)
    assert monitor.exclude_layers == ("head.*",)


def test_excluded_layers_raise_no_jump_while_kept_layers_do():
    jumps: list[tuple] = []
    *_, said, _, _ = _watch_body_head(("head.*",), kill=("body", "head"), findings=False)
    assert [s.split(":")[0] for s in said] == ["body.1"]      # the head's jump is silent
    monitor, *_ = _watch_body_head("head.*", kill=("body", "head"), findings=False,
                                   on_jump=lambda *a: jumps.append(a))
    assert [layer for layer, *_ in jumps] == ["body.1"]
    # its rise is still in the history, for whoever reads it
    head = monitor.history[monitor.history["layer"] == "head.1"]
    before, after = head["dead_fraction"].tolist()
    assert after - before >= 0.1  # a rise the jump check warns about (the near miss below)
    *_, said, _, _ = _watch_body_head((), kill=("head",), findings=False)
    assert [s.split(":")[0] for s in said] == ["head.1"]      # near miss: not excluded, it warns


@pytest.mark.parametrize("bad", [[3], b"head.*", {"head.*": 1}, [["head.*"]]])
def test_exclude_layers_that_are_not_globs_raise_scans_error(bad):
    with pytest.raises(ConfigError) as from_scan:
        deadrelu.scan(MLP(), torch.randn(8, 6), exclude_layers=bad)
    with pytest.raises(ConfigError) as from_monitor:
        Monitor(MLP(), exclude_layers=bad)
    assert "exclude_layers must be a list of site-name globs" in str(from_monitor.value)
    assert str(from_monitor.value) == str(from_scan.value)

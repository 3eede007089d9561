"""One rule with one cause on several layers reads as one entry; terms explained once (issue 16)."""

from __future__ import annotations

import io

import numpy as np
import torch
from rich.console import Console

import deadrelu
from deadrelu.finding_groups import glossary, group_findings
from deadrelu.render import render_findings
from deadrelu.report import Report

SM = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_models"


def _high_lr_report() -> Report:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_sm_models_groups", SM / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.DigitsMLP()
    model.load_state_dict(torch.load(SM / "mlp_high_lr.pt"))
    return deadrelu.scan(model, torch.from_numpy(np.load(SM / "data" / "digits_test.npy")))


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue()


def test_same_cause_on_three_layers_is_one_entry_and_json_keeps_three_records():
    # Before: the same DR001 paragraph and fix, word for word, once per layer.
    report = _high_lr_report()
    assert [f.code for f in report.findings] == ["DR001"] * 3  # machines: one per layer
    (group,) = group_findings(report.findings)
    assert [f.layer for f in group.findings] == ["net.1", "net.3", "net.5"]
    assert group.common_fix.startswith("lower the learning rate 3–10×")
    assert "net.1" in group.own_fix(group.findings[0]) and "lower the" not in \
        group.own_fix(group.findings[0])
    text = _text(render_findings(report))
    assert text.count("DR001") == 1
    assert "3 layers: net.1, net.3, net.5" in text
    assert text.count("lower the learning rate") == 1
    assert all(f"• {layer}:" in text for layer in ("net.1", "net.3", "net.5"))


def test_terms_a_newcomer_cannot_read_are_explained_once():
    report = _high_lr_report()
    terms = dict(glossary(report.findings))
    assert {"row norm", "median", "mean |bias|", "ReDo", "× PyTorch's default init"} <= set(terms)
    text = _text(render_findings(report))
    assert text.count("the length of a unit's incoming weight vector") == 1
    assert "Terms used above" in text

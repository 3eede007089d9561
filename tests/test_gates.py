"""Gates: value parsing, and every gate passing and failing on models with planted dead units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.errors import ConfigError
from deadrelu.findings import Finding, Severity
from deadrelu.gates import (
    DEFAULT_GATES,
    Gates,
    LayerLimit,
    Measure,
    evaluate,
    parse_fail_on,
    parse_fraction,
    parse_layer_limit,
    parse_layer_limits,
    parse_points,
    units_list,
)


class Planted(nn.Module):
    """Two ReLU layers (sites ``enc.1`` with 8 units, ``dec.1`` with 4) whose dead units are
    chosen: zero weights, bias -1 (dead) or +1 (fires on every input)."""

    def __init__(self, dead_enc: Sequence[int] = (), dead_dec: Sequence[int] = (),
                 extra: bool = False) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
        self.extra = nn.Sequential(nn.Linear(4, 2), nn.ReLU()) if extra else None
        with torch.no_grad():
            for layer, dead in ((self.enc[0], dead_enc), (self.dec[0], dead_dec)):
                layer.weight.zero_()
                layer.bias.fill_(1.0)
                for unit in dead:
                    layer.bias[unit] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dec(self.enc(x))
        return self.extra(y) if self.extra is not None else y


def planted_report(dead_enc: Sequence[int] = (), dead_dec: Sequence[int] = (),
                   extra: bool = False) -> deadrelu.Report:
    return deadrelu.scan(Planted(dead_enc, dead_dec, extra), torch.randn(128, 3))


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, share", [
    ("5%", 0.05), ("0.05", 0.05), (0.05, 0.05), ("100%", 1.0), (0, 0.0), (" 12.5% ", 0.125),
    (1, 1.0),
])
def test_parse_fraction(text, share):
    assert parse_fraction(text) == pytest.approx(share)


@pytest.mark.parametrize("text, needle", [
    ("5", "write 5% for 5 percent"),
    ("-1%", "between 0% and 100%"),
    ("150%", "between 0% and 100%"),
    ("five", "is not a number"),
    (True, "must be a number"),
    ("nan", "not a finite number"),
    ([5], "must be a number"),
])
def test_parse_fraction_refuses_with_the_value(text, needle):
    with pytest.raises(ConfigError, match="--max-dead") as info:
        parse_fraction(text)
    assert needle in str(info.value)


@pytest.mark.parametrize("text, share", [
    (2, 0.02), ("2", 0.02), ("2pp", 0.02), ("2 pp", 0.02), ("2%", 0.02), ("0.5", 0.005), (0, 0.0),
])
def test_parse_points(text, share):
    assert parse_points(text) == pytest.approx(share)


@pytest.mark.parametrize("text", ["-1", "101", "lots", "2ppx"])
def test_parse_points_refuses(text):
    with pytest.raises(ConfigError, match="--max-increase"):
        parse_points(text)


def test_parse_layer_limit():
    assert parse_layer_limit("encoder.*=20%") == LayerLimit("encoder.*", 0.2)
    assert parse_layer_limit("a=b=0.5") == LayerLimit("a=b", 0.5)  # the glob may hold "="
    for bad, needle in (("encoder.*", "is not GLOB=LIMIT"), ("=5%", "empty layer glob"),
                        ("enc=5", "write 5% for 5 percent")):
        with pytest.raises(ConfigError, match="--max-dead-layer") as info:
            parse_layer_limit(bad)
        assert needle in str(info.value)


def test_parse_layer_limits_from_a_table_or_a_list():
    assert parse_layer_limits({"enc*": "20%", "dec*": 0.1}) == (
        LayerLimit("enc*", 0.2), LayerLimit("dec*", 0.1))
    assert parse_layer_limits(["enc*=20%"]) == (LayerLimit("enc*", 0.2),)
    with pytest.raises(ConfigError, match="table of glob = limit"):
        parse_layer_limits(3)


def test_parse_fail_on():
    assert parse_fail_on(["DR001,dr0", "Error", "warning", "DR001"]) == (
        "DR001", "DR0", "error", "warning")
    with pytest.raises(ConfigError, match="'DR-1' is neither a rule code"):
        parse_fail_on(["DR-1"])


def test_gates_from_config_table_as_config_py_returns_it():
    check = {"max_dead": "5%", "max_dead_layer": {"enc.*": "20%"}, "fail_on": ("error",),
             "max_increase": "2%", "baseline": "/x/base.json", "exit_zero": True}
    gates = Gates.from_config(check, exclude_layers=("head*",))
    assert gates == Gates(0.05, (LayerLimit("enc.*", 0.2),), ("error",), 0.02, ("head*",))
    with pytest.raises(ConfigError, match=r"\[tool.deadrelu.check\] max-dead"):
        Gates.from_config({"max_dead": "5"})


def test_flags_override_config_and_layer_limits_append():
    file = Gates(0.05, (LayerLimit("*", 0.1),), ("error",), None)
    merged = file.override(max_dead=0.2, max_dead_layer=[LayerLimit("enc.1", 0.5)])
    assert merged.max_dead == 0.2 and merged.fail_on == ("error",)
    assert merged.max_dead_layer == (LayerLimit("*", 0.1), LayerLimit("enc.1", 0.5))
    assert file.override(fail_on=["DR001"]).fail_on == ("DR001",)
    assert Gates().empty and not DEFAULT_GATES.empty


def test_units_list():
    assert units_list([0, 1, 2, 3, 7, 9, 10, 11, 12]) == "0-3, 7, 9-12"
    assert units_list([]) == ""
    assert units_list(list(range(0, 40, 2)), limit=3) == "0, 2, 4, ..."


# -- evaluation: each gate passing and failing ---------------------------------------------------


def test_max_dead_passes_at_the_limit_and_fails_above_it():
    report = planted_report(dead_enc=[0, 1, 2])  # 3 of 12 units: 25%
    ok = evaluate(report, Gates(max_dead=0.25))
    assert ok.passed and ok.exit_code() == 0
    (result,) = ok.results
    assert (result.gate, result.scope, result.actual, result.limit) == ("max-dead", "model", 0.25, 0.25)

    bad = evaluate(report, Gates(max_dead=0.05))
    (result,) = bad.failures
    assert not bad.passed and bad.exit_code() == 1 and bad.exit_code(exit_zero=True) == 0
    assert result.measure is Measure.FRACTION
    assert result.message == ("dead 25.0% > limit 5.0% (+20.0 pp) in the whole model (3/12 units)")
    assert result.format_excess() == "+20.0 pp"


def test_float_slack_at_the_limit():
    report = planted_report(dead_enc=[0])  # 1/12 = 8.333..%
    assert evaluate(report, Gates(max_dead=1 / 12)).passed


def test_max_dead_layer_one_result_per_matched_layer_last_glob_wins():
    report = planted_report(dead_enc=[0, 1, 2, 3], dead_dec=[0])  # enc 50%, dec 25%
    gates = Gates(max_dead_layer=(LayerLimit("*", 0.3), LayerLimit("enc.*", 0.6)))
    outcome = evaluate(report, gates)
    assert [(r.name, r.passed, r.limit, r.rule) for r in outcome.results] == [
        ("max-dead-layer[enc.1]", True, 0.6, "enc.*"),
        ("max-dead-layer[dec.1]", True, 0.3, "*"),
    ]
    tight = evaluate(report, Gates(max_dead_layer=(LayerLimit("*", 0.3),)))
    (fail,) = tight.failures
    assert fail.layer == "enc.1" and fail.where == "layer enc.1"
    assert fail.message.startswith("dead 50.0% > limit 30.0% (+20.0 pp) in layer enc.1 (4/8 units)")
    assert "limit from '*'" in fail.message


def test_layer_glob_that_matches_nothing_is_an_error():
    with pytest.raises(ConfigError, match="'encoder.*' matches no layer") as info:
        evaluate(planted_report(), Gates(max_dead_layer=(LayerLimit("encoder.*", 0.1),)))
    assert "enc.1, dec.1" in str(info.value)


def test_all_gates_evaluated_and_all_failures_listed():
    report = planted_report(dead_enc=range(8), dead_dec=[0, 1])
    outcome = evaluate(report, Gates(max_dead=0.1, max_dead_layer=(LayerLimit("*", 0.1),)))
    assert [r.name for r in outcome.failures] == [
        "max-dead", "max-dead-layer[enc.1]", "max-dead-layer[dec.1]"]


def test_exclude_layers_leaves_a_layer_out_of_every_gate():
    report = planted_report(dead_enc=range(8))
    gates = Gates(max_dead=0.0, max_dead_layer=(LayerLimit("*", 0.0),), exclude_layers=("enc.*",))
    outcome = evaluate(report, gates)
    assert outcome.passed
    assert [r.name for r in outcome.results] == ["max-dead", "max-dead-layer[dec.1]"]
    assert "excluded from the gates by exclude-layers: enc.1" in outcome.notes


def _with_findings(report, *findings):
    return replace(report, findings=tuple(findings))


F_ERR = Finding("DR001", Severity.ERROR, "enc.1", "most units dead", "learning_rate", "lower the LR")
F_WARN = Finding("DR005", Severity.WARNING, None, "few samples", "insufficient_data", "scan more")
F_INFO = Finding("DR010", Severity.INFO, "dec.1", "always on", "architecture", "none")


@pytest.mark.parametrize("token, hits", [
    ("error", ["DR001"]), ("warning", ["DR001", "DR005"]), ("info", ["DR001", "DR005", "DR010"]),
    ("DR001", ["DR001"]), ("DR00", ["DR001", "DR005"]), ("DR", ["DR001", "DR005", "DR010"]),
    ("DR009", []),
])
def test_fail_on_codes_prefixes_and_severities(token, hits):
    report = _with_findings(planted_report(), F_ERR, F_WARN, F_INFO)
    (result,) = evaluate(report, Gates(fail_on=(token,))).results
    assert [f.code for f in result.findings] == hits
    assert result.passed is (not hits)
    assert (result.actual, result.limit, result.measure) == (len(hits), 0, Measure.COUNT)
    assert result.name == f"fail-on[{token}]"


def test_fail_on_message_says_where():
    report = _with_findings(planted_report(), F_ERR)
    (result,) = evaluate(report, Gates(fail_on=("error",))).failures
    assert result.message == "1 finding(s) match severity error or worse: DR001 in enc.1"
    assert result.details == ("DR001 [error] enc.1: most units dead",)


def test_fail_on_ignores_findings_in_excluded_layers():
    report = _with_findings(planted_report(), F_ERR)
    assert evaluate(report, Gates(fail_on=("error",), exclude_layers=("enc.*",))).passed


# -- baselines --------------------------------------------------------------------------------


def test_max_increase_passes_within_the_limit_and_fails_above_it():
    base = planted_report(dead_enc=[0])
    now = planted_report(dead_enc=[0, 1, 2])  # model +2 of 12 (16.7 pp), enc.1 +25 pp
    outcome = evaluate(now, Gates(max_increase=0.20), base)
    assert [(r.name, r.passed) for r in outcome.results] == [
        ("max-increase", True), ("max-increase-layer[enc.1]", False),
        ("max-increase-layer[dec.1]", True)]
    fail = outcome.failures[0]
    assert fail.measure is Measure.INCREASE and fail.actual == pytest.approx(0.25)
    assert fail.message == ("dead 37.5% vs baseline 12.5%: +25.0 pp > limit +20.0 pp "
                            "(+5.0 pp over) in layer enc.1")
    assert fail.details == ("2 unit(s) dead now but not in the baseline: 1-2",)
    assert evaluate(now, Gates(max_increase=0.25), base).passed


def test_max_increase_zero_passes_an_unchanged_or_better_model():
    base = planted_report(dead_enc=[0, 1])
    assert evaluate(planted_report(dead_enc=[0, 1]), Gates(max_increase=0.0), base).passed
    better = evaluate(planted_report(dead_enc=[0]), Gates(max_increase=0.0), base)
    assert better.passed and better.results[0].actual < 0


def test_baseline_with_other_layers_compares_the_common_ones_and_says_so():
    base = planted_report(dead_enc=[0], extra=True)
    now = planted_report(dead_enc=[0, 1, 2, 3])
    outcome = evaluate(now, Gates(max_increase=0.0), base)
    assert [r.layer for r in outcome.results] == [None, "enc.1", "dec.1"]
    assert any("skipped baseline layers missing now: extra.1" in n for n in outcome.notes)
    assert any("different architecture" in n for n in outcome.notes)
    # the model-wide comparison uses the common layers only: 4/12 now vs 1/12 then
    assert outcome.results[0].actual == pytest.approx(3 / 12)


def test_max_increase_without_baseline_is_an_error():
    with pytest.raises(ConfigError, match="needs a baseline"):
        evaluate(planted_report(), Gates(max_increase=0.02))


def test_outcome_to_dict_is_json_ready():
    import json

    outcome = evaluate(planted_report(dead_enc=[0]), Gates(max_dead=0.0))
    data = json.loads(json.dumps(outcome.to_dict()))
    assert data["passed"] is False and data["failed"] == 1
    assert data["results"][0]["name"] == "max-dead" and data["gates"] == ["max-dead 0.0%"]

"""CI gates: limits on dead units that turn a report into pass/fail.

Pure: reads :class:`~deadrelu.report.Report` objects (and an optional baseline
report), never a model. Every gate is evaluated and every result kept, so one
run lists all failures.

Gates, and how their values are written (CLI flag or ``[tool.deadrelu.check]``):

=================== ===================================================================
``max-dead``        whole-model dead fraction: ``"5%"`` or ``0.05``
``max-dead-layer``  per-layer limits by site-name glob: ``"encoder.*=20%"``; for a
                    layer matched by several globs the *last* one wins (like
                    ``.gitattributes``), so a later, specific glob can loosen or
                    tighten an earlier, general one
``fail-on``         findings whose code equals or starts with a token (``DR001``,
                    ``DR0``), or whose severity is at least a token (``error``,
                    ``warning``, ``info``)
``max-increase``    rise in dead fraction against ``baseline``, in percentage points,
                    whole model and each common layer: ``2`` / ``"2pp"`` / ``"2%"``
=================== ===================================================================

Invariants: fractions are stored in [0, 1] (``max-increase`` too: 2 pp is
0.02); comparisons allow a 1e-9 slack so that ``1/20`` dead passes a ``5%``
limit; a value a user wrote wrongly is a :class:`~deadrelu.errors.ConfigError`
that quotes it.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from deadrelu.errors import ConfigError
from deadrelu.findings import Finding, Severity
from deadrelu.wording import percent

if TYPE_CHECKING:
    from deadrelu.report import Report

#: Slack for float comparisons (``0.15 - 0.10`` is not exactly ``0.05``).
EPS = 1e-9
_SEVERITIES = {s.value: s for s in Severity}
_CODE = re.compile(r"[A-Za-z]+[0-9]*")


class Measure(str, Enum):
    """What a gate's ``actual`` and ``limit`` measure."""

    FRACTION = "fraction"  # dead units / units
    INCREASE = "increase"  # difference of two fractions (shown in percentage points)
    COUNT = "count"  # number of matching findings

    def __str__(self) -> str:
        return self.value


# -- parsing ------------------------------------------------------------------------------


def parse_fraction(value: Any, *, option: str = "--max-dead") -> float:
    """A share in [0, 1] from ``"5%"``, ``"0.05"`` or ``0.05``.

    Raises:
        ConfigError: not a number, negative, or above 1 (``5`` is refused rather than
            guessed: write ``5%``).
    """
    number, percent = _number(value, option, example="5%")
    share = number / 100 if percent else number
    if not 0 <= share <= 1:
        hint = f"write {number:g}% for {number:g} percent" if not percent and 1 < number <= 100 else \
            "use a percentage from 0% to 100% or a fraction from 0 to 1"
        raise ConfigError(f"{option} {value!r} is not a share between 0% and 100%", hint)
    return share


def parse_points(value: Any, *, option: str = "--max-increase") -> float:
    """An increase in percentage points, returned as a fraction (``2``, ``"2pp"``, ``"2%"`` → 0.02).

    A bare number means percentage points here, as the option's name says.

    Raises:
        ConfigError: not a number, negative or above 100 points.
    """
    text = value.strip().lower() if isinstance(value, str) else value
    if isinstance(text, str) and text.endswith("pp"):
        text = text[:-2].strip() + "%"
    number, _ = _number(text, option, example="2pp")
    if not 0 <= number <= 100:
        raise ConfigError(f"{option} {value!r} must be between 0 and 100 percentage points",
                          "write e.g. 2pp (two percentage points)")
    return number / 100


def _number(value: Any, option: str, *, example: str) -> tuple[float, bool]:
    """``(number, had_percent_sign)``; refuses booleans, NaN and non-numbers."""
    if isinstance(value, bool):
        raise ConfigError(f"{option} must be a number, got {value!r}", f"write e.g. {example}")
    if isinstance(value, (int, float)):
        number, percent = float(value), False
    elif isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = float(text[:-1] if percent else text)
        except ValueError:
            raise ConfigError(f"{option} {value!r} is not a number", f"write e.g. {example}") from None
    else:
        raise ConfigError(f"{option} must be a number or a string like {example!r}, got {value!r}",
                          f"write e.g. {example}")
    if math.isnan(number) or math.isinf(number):
        raise ConfigError(f"{option} {value!r} is not a finite number", f"write e.g. {example}")
    return number, percent


@dataclass(frozen=True)
class LayerLimit:
    """A per-layer limit: layers whose site name matches ``pattern`` may be ``limit`` dead."""

    pattern: str
    limit: float

    def matches(self, layer: str) -> bool:
        return fnmatch.fnmatchcase(layer, self.pattern)

    def __str__(self) -> str:
        return f"{self.pattern}={percent(self.limit, 1)}"


def parse_layer_limit(value: str, *, option: str = "--max-dead-layer") -> LayerLimit:
    """``"encoder.*=20%"`` → ``LayerLimit("encoder.*", 0.2)``; the glob may itself hold ``=``."""
    if not isinstance(value, str) or "=" not in value:
        raise ConfigError(f"{option} {value!r} is not GLOB=LIMIT", f"write e.g. {option} 'encoder.*=20%'")
    pattern, _, limit = value.rpartition("=")
    pattern = pattern.strip()
    if not pattern:
        raise ConfigError(f"{option} {value!r} has an empty layer glob",
                          f"write e.g. {option} 'encoder.*=20%' ('*' for every layer)")
    return LayerLimit(pattern, parse_fraction(limit, option=f"{option} {pattern}"))


def parse_layer_limits(value: Any, *, option: str = "max-dead-layer") -> tuple[LayerLimit, ...]:
    """Layer limits from a table ``{"glob": "20%"}`` or a list of ``"glob=20%"`` strings."""
    if isinstance(value, Mapping):
        return tuple(LayerLimit(str(g), parse_fraction(v, option=f"{option} {g}")) for g, v in value.items())
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Sequence):
        return tuple(parse_layer_limit(v, option=option) for v in value)
    raise ConfigError(f"{option} must be a table of glob = limit, got {value!r}",
                      '[tool.deadrelu.check.max-dead-layer] "encoder.*" = "20%"')


def parse_fail_on(values: Iterable[str], *, option: str = "--fail-on") -> tuple[str, ...]:
    """Normalised ``fail-on`` tokens: severities in lower case, codes/prefixes in upper case.

    Comma-separated values are split (``--fail-on DR001,DR002``).
    """
    tokens: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise ConfigError(f"{option} entries must be strings, got {raw!r}", 'write e.g. ["error"]')
        for part in raw.split(","):
            token = part.strip()
            if not token:
                continue
            if token.lower() in _SEVERITIES:
                tokens.append(token.lower())
            elif _CODE.fullmatch(token):
                _check_known_code(token.upper(), option)
                tokens.append(token.upper())
            else:
                raise ConfigError(
                    f"{option} {token!r} is neither a rule code (DR001), a code prefix (DR0) "
                    "nor a severity",
                    "use codes such as DR001, prefixes such as DR0, or error / warning / info "
                    "(`deadrelu rules` lists the codes)",
                )
    return tuple(dict.fromkeys(tokens))


def _check_known_code(token: str, option: str) -> None:
    """Refuse a code or prefix that selects no rule: a typo must not make a gate a no-op."""
    from deadrelu.diagnose.registry import RULES

    codes = RULES.codes()
    if codes and not any(code.startswith(token) for code in codes):
        raise ConfigError(f"{option} {token!r} matches no rule code",
                          f"rules are {', '.join(codes)} (`deadrelu rules` explains each)")


def _matches_token(finding: Finding, token: str) -> bool:
    severity = _SEVERITIES.get(token)
    if severity is not None:
        return finding.severity.rank >= severity.rank
    return finding.code.upper().startswith(token)


# -- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Gates:
    """The gate settings for one ``check``; ``None``/empty means the gate is off.

    Attributes:
        max_dead: whole-model dead fraction limit.
        max_dead_layer: per-layer limits; for each layer the last matching glob wins.
        fail_on: codes, code prefixes or severities (see :func:`parse_fail_on`).
        max_increase: allowed rise of the dead fraction over the baseline (a fraction:
            0.02 is 2 percentage points), whole model and per layer.
        exclude_layers: site-name globs left out of every gate (and of the model total).
    """

    max_dead: float | None = None
    max_dead_layer: tuple[LayerLimit, ...] = ()
    fail_on: tuple[str, ...] = ()
    max_increase: float | None = None
    exclude_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_dead", "max_increase"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ConfigError(f"{name} must be a fraction in [0, 1], got {value!r}",
                                  "use parse_fraction / parse_points to read user input")

    @property
    def empty(self) -> bool:
        """No gate is set (``exclude_layers`` alone gates nothing)."""
        return (self.max_dead is None and not self.max_dead_layer and not self.fail_on
                and self.max_increase is None)

    @classmethod
    def from_config(cls, check: Mapping[str, Any], *, exclude_layers: Sequence[str] = ()) -> Gates:
        """Gates from a ``[tool.deadrelu.check]`` table (snake_case keys, values as written).

        Keys other than the gates (``baseline``, ``exit_zero``) are ignored here.
        """
        where = "[tool.deadrelu.check] "
        return cls(
            max_dead=(parse_fraction(check["max_dead"], option=f"{where}max-dead")
                      if check.get("max_dead") is not None else None),
            max_dead_layer=parse_layer_limits(check.get("max_dead_layer") or {},
                                              option=f"{where}max-dead-layer"),
            fail_on=parse_fail_on(check.get("fail_on") or (), option=f"{where}fail-on"),
            max_increase=(parse_points(check["max_increase"], option=f"{where}max-increase")
                          if check.get("max_increase") is not None else None),
            exclude_layers=tuple(exclude_layers),
        )

    def override(
        self,
        *,
        max_dead: float | None = None,
        max_dead_layer: Sequence[LayerLimit] = (),
        fail_on: Sequence[str] = (),
        max_increase: float | None = None,
    ) -> Gates:
        """Command-line values over file values: scalars replace, layer limits are appended
        (so they win over the file's for the layers they match), ``fail_on`` replaces."""
        return replace(
            self,
            max_dead=self.max_dead if max_dead is None else max_dead,
            max_dead_layer=(*self.max_dead_layer, *max_dead_layer),
            fail_on=tuple(fail_on) or self.fail_on,
            max_increase=self.max_increase if max_increase is None else max_increase,
        )

    def describe(self) -> list[str]:
        """One line per active gate, e.g. ``"max-dead 5.0%"``."""
        lines = []
        if self.max_dead is not None:
            lines.append(f"max-dead {percent(self.max_dead, 1)}")
        lines += [f"max-dead-layer {limit}" for limit in self.max_dead_layer]
        if self.fail_on:
            lines.append(f"fail-on {', '.join(self.fail_on)}")
        if self.max_increase is not None:
            lines.append(f"max-increase {_pp(self.max_increase)}")
        return lines


#: Used when no gate is configured anywhere, so that ``check`` is never a silent no-op.
DEFAULT_GATES = Gates(fail_on=("error",))


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate on one scope.

    Attributes:
        gate: ``max-dead``, ``max-dead-layer``, ``fail-on``, ``max-increase`` or
            ``max-increase-layer``.
        layer: the site name for layer-scope results, else ``None``.
        passed: whether the gate holds.
        actual: the measured value (see ``measure``).
        limit: the allowed value.
        measure: what ``actual``/``limit`` are (fraction, increase or count).
        message: one line saying what was measured against what, and where.
        rule: what set the limit: the layer glob, or the ``fail-on`` token.
        details: extra lines (units that died, matching findings...).
        findings: the findings a ``fail-on`` gate matched.
    """

    gate: str
    layer: str | None
    passed: bool
    actual: float
    limit: float
    measure: Measure
    message: str
    rule: str | None = None
    details: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def scope(self) -> str:
        """``"model"`` or ``"layer"``."""
        return "layer" if self.layer is not None else "model"

    @property
    def where(self) -> str:
        """``"model"`` or ``"layer net.1"``."""
        return f"layer {self.layer}" if self.layer is not None else "model"

    @property
    def name(self) -> str:
        """Unique, stable name: ``max-dead``, ``max-dead-layer[net.1]``, ``fail-on[error]``."""
        if self.layer is not None:
            return f"{self.gate}[{self.layer}]"
        if self.rule is not None:
            return f"{self.gate}[{self.rule}]"
        return self.gate

    @property
    def excess(self) -> float:
        """How far over the limit (negative: headroom)."""
        return self.actual - self.limit

    def format_actual(self) -> str:
        return format_value(self.actual, self.measure)

    def format_limit(self) -> str:
        return format_value(self.limit, self.measure)

    def format_excess(self) -> str:
        """``"+7.5 pp"`` for fractions and increases, ``"+2"`` for counts; ``""`` when passed."""
        if self.passed:
            return ""
        if self.measure is Measure.COUNT:
            return f"+{self.excess:g}"
        return f"+{self.excess * 100:.1f} pp"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "gate": self.gate, "scope": self.scope, "layer": self.layer,
            "passed": self.passed, "actual": self.actual, "limit": self.limit,
            "measure": self.measure.value, "excess": self.excess, "rule": self.rule,
            "where": self.where, "message": self.message, "details": list(self.details),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class GateOutcome:
    """All gate results of one check, plus notes on what was skipped or assumed."""

    results: tuple[GateResult, ...]
    notes: tuple[str, ...] = ()
    gates: Gates = field(default_factory=Gates)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def exit_code(self, *, exit_zero: bool = False) -> int:
        """0 when every gate passes (or ``exit_zero``), else 1."""
        return 0 if self.passed or exit_zero else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": len(self.failures),
            "gates": self.gates.describe(),
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
        }

    def __iter__(self) -> Iterator[GateResult]:
        return iter(self.results)


def format_value(value: float, measure: Measure) -> str:
    if measure is Measure.COUNT:
        return f"{value:g}"
    if measure is Measure.INCREASE:
        return _pp(value)
    return percent(value, 1)


def _pp(diff: float) -> str:
    return f"{diff * 100:+.1f} pp"


def units_list(units: Sequence[int], *, limit: int = 12) -> str:
    """Compact unit indices: ``"0-3, 7, 9-12"``, cut to ``limit`` runs with ``", ..."``."""
    runs: list[list[int]] = []
    for u in sorted(units):
        if runs and u == runs[-1][1] + 1:
            runs[-1][1] = u
        else:
            runs.append([u, u])
    text = ", ".join(f"{a}-{b}" if b != a else f"{a}" for a, b in runs[:limit])
    return text + (", ..." if len(runs) > limit else "")


# -- evaluation ---------------------------------------------------------------------------


def evaluate(report: Report, gates: Gates, baseline: Report | None = None) -> GateOutcome:
    """Evaluate every gate on ``report``; none stops at the first failure.

    Args:
        report: the scan to judge.
        gates: the settings; :data:`DEFAULT_GATES` is *not* substituted here.
        baseline: an earlier report for ``max_increase``; layers present in only one
            of the two are skipped and named in the outcome's notes.

    Returns:
        One result per gate and scope, in a stable order: max-dead, max-dead-layer
        (forward order), fail-on (token order), max-increase, max-increase-layer.

    Raises:
        ConfigError: ``max_increase`` without a baseline, or a ``max_dead_layer`` glob
            that matches no layer of the report.
    """
    records = report.layer_records()
    names = [r["layer"] for r in records]
    _check_globs(gates, names)
    excluded = [n for n in names if _excluded(n, gates.exclude_layers)]
    kept = [r for r in records if r["layer"] not in excluded]
    notes: list[str] = []
    if excluded:
        notes.append(f"excluded from the gates by exclude-layers: {', '.join(excluded)}")
    if report.partial:
        notes.append("the scan was interrupted: results cover part of the data only")

    results: list[GateResult] = []
    if gates.max_dead is not None:
        dead, units = sum(r["dead"] for r in kept), sum(r["units"] for r in kept)
        results.append(_limit_result("max-dead", None, dead, units, gates.max_dead, None))
    if gates.max_dead_layer:
        for r in kept:
            rule = next((lim for lim in reversed(gates.max_dead_layer) if lim.matches(r["layer"])), None)
            if rule is not None:
                results.append(_limit_result("max-dead-layer", r["layer"], r["dead"], r["units"],
                                             rule.limit, rule.pattern))
    findings = [f for f in report.findings if f.layer is None or f.layer not in excluded]
    for token in gates.fail_on:
        results.append(_fail_on_result(token, findings))
    if gates.max_increase is not None:
        if baseline is None:
            raise ConfigError("max-increase needs a baseline report to compare with",
                              "pass --baseline report.json (written by `deadrelu scan --format json`)")
        more, base_notes = _increase_results(report, baseline, gates.max_increase, set(excluded))
        results += more
        notes += base_notes
    return GateOutcome(tuple(results), tuple(notes), gates)


def _excluded(name: str, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _check_globs(gates: Gates, names: Sequence[str]) -> None:
    # A glob that matches nothing is almost always a typo, and a typo in a CI gate
    # must not pass silently.
    # (exclude-layers is not checked: it is shared with `scan` and may name layers
    # that only some models have.)
    for limit in gates.max_dead_layer:
        if not any(limit.matches(n) for n in names):
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise ConfigError(f"max-dead-layer glob {limit.pattern!r} matches no layer of this model",
                              f"layers are: {shown}")


def _limit_result(gate: str, layer: str | None, dead: int, units: int, limit: float,
                  rule: str | None) -> GateResult:
    actual = dead / units if units else 0.0
    passed = actual <= limit + EPS
    where = f"layer {layer}" if layer is not None else "the whole model"
    if passed:
        message = f"dead {percent(actual, 1)} <= limit {percent(limit, 1)} in {where} ({dead}/{units} units)"
    else:
        message = (f"dead {percent(actual, 1)} > limit {percent(limit, 1)} ({(actual - limit) * 100:+.1f} pp) "
                   f"in {where} ({dead}/{units} units)")
    if rule is not None and rule != layer:
        message += f"; limit from {rule!r}"
    return GateResult(gate, layer, passed, actual, limit, Measure.FRACTION, message, rule)


def _fail_on_result(token: str, findings: Sequence[Finding]) -> GateResult:
    hits = tuple(f for f in findings if _matches_token(f, token))
    what = f"severity {token} or worse" if token in _SEVERITIES else f"code {token}"
    if not hits:
        message = f"no finding matches {what}"
    else:
        shown = "; ".join(f"{f.code} in {f.layer or 'the model'}" for f in hits[:5])
        more = f"; and {len(hits) - 5} more" if len(hits) > 5 else ""
        message = f"{len(hits)} finding(s) match {what}: {shown}{more}"
    details = tuple(f"{f.code} [{f.severity}] {f.layer or 'model'}: {f.message}" for f in hits)
    return GateResult("fail-on", None, not hits, float(len(hits)), 0.0, Measure.COUNT, message,
                      token, details, hits)


def _increase_results(report: Report, baseline: Report, limit: float,
                      excluded: set[str]) -> tuple[list[GateResult], list[str]]:
    now = {r["layer"]: r for r in report.layer_records() if r["layer"] not in excluded}
    before = {r["layer"]: r for r in baseline.layer_records() if r["layer"] not in excluded}
    notes = []
    sig_now, sig_base = report.meta.get("model_signature"), baseline.meta.get("model_signature")
    if sig_now and sig_base and sig_now != sig_base:
        notes.append("the baseline was scanned from a different architecture; "
                     "only layers present in both with the same width are compared")
    common = [n for n in now if n in before and now[n]["units"] == before[n]["units"]]
    only_now = [n for n in now if n not in before]
    only_base = [n for n in before if n not in now]
    resized = [n for n in now if n in before and now[n]["units"] != before[n]["units"]]
    if only_now:
        notes.append(f"skipped layers not in the baseline: {', '.join(only_now)}")
    if only_base:
        notes.append(f"skipped baseline layers missing now: {', '.join(only_base)}")
    if resized:
        notes.append(f"skipped layers whose width changed: {', '.join(resized)}")
    if not common:
        raise ConfigError("the baseline report has no layer in common with this model",
                          "pass a baseline scanned from the same architecture")

    def frac(rows: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
        return sum(rows[n]["dead"] for n in common), sum(rows[n]["units"] for n in common)

    results = []
    (d1, u1), (d0, u0) = frac(now), frac(before)
    results.append(_increase_result(None, d1 / u1 if u1 else 0.0, d0 / u0 if u0 else 0.0,
                                    limit, ()))
    for n in common:
        died = sorted(set(report.units_in_state(n, "dead")) - set(baseline.units_in_state(n, "dead")))
        details = (f"{len(died)} unit(s) dead now but not in the baseline: {units_list(died)}",) \
            if died else ()
        results.append(_increase_result(n, now[n]["dead_fraction"], before[n]["dead_fraction"],
                                        limit, details))
    return results, notes


def _increase_result(layer: str | None, now: float, before: float, limit: float,
                     details: tuple[str, ...]) -> GateResult:
    actual = now - before
    passed = actual <= limit + EPS
    where = f"layer {layer}" if layer is not None else "the whole model"
    verdict = f"<= limit {_pp(limit)}" if passed else \
        f"> limit {_pp(limit)} ({(actual - limit) * 100:+.1f} pp over)"
    message = f"dead {percent(now, 1)} vs baseline {percent(before, 1)}: {_pp(actual)} {verdict} in {where}"
    gate = "max-increase-layer" if layer is not None else "max-increase"
    return GateResult(gate, layer, passed, actual, limit, Measure.INCREASE, message, None, details)

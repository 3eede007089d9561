"""The :class:`Report`: the result of a scan, as tables, a dict, or a rich renderable.

A report holds the raw per-unit counters of every site (on the CPU), the
thresholds it was judged with, metadata about the scan, the diagnosis findings
and the read-only weight evidence the diagnosis used. Everything else (rates,
states, tables) is derived, so ``Report.from_dict(r.to_dict())`` round-trips
and two reports of disjoint data shards merge exactly by adding counters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deadrelu.analyzer import Thresholds, UnitState, UnitVerdicts, classify
from deadrelu.collector import Site, SiteInfo
from deadrelu.errors import DeadReluError, ReportError
from deadrelu.findings import Finding
from deadrelu.stats import UnitStats

if TYPE_CHECKING:
    import pandas as pd

    from deadrelu.diagnose.selection import Selection
    from deadrelu.diagnose.subject import Subject

SCHEMA_VERSION = 1

_STATES = [s.value for s in UnitState]


@dataclass(frozen=True)
class Report:
    """Result of a scan.

    Attributes:
        sites: activation sites in forward order, with CPU counters.
        thresholds: the thresholds the verdicts use.
        meta: scan metadata: ``model``, ``data``, ``device``, ``seconds``, ``partial``,
            ``mode`` (eval/train), ``model_signature``, ``weights_fingerprint``...
        findings: diagnosed problems (see :mod:`deadrelu.diagnose`).
        evidence: read-only weight summaries per site used by the diagnosis.
    """

    sites: tuple[Site, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    meta: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict)

    # -- derived views -------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Number of samples scanned.

        The scan's own count when it recorded one; a site whose tensor has no batch
        dimension (a gate computed from a parameter, tokens flattened to ``(N*T, C)``)
        counts its leading dimension instead, which must not inflate this number.
        """
        recorded = self.meta.get("samples")
        if isinstance(recorded, int) and recorded > 0:
            return recorded
        return max((s.stats.samples for s in self.sites), default=0)

    @property
    def partial(self) -> bool:
        """True when the scan was interrupted and covers only part of the data."""
        return bool(self.meta.get("partial", False))

    @property
    def notes(self) -> tuple[str, ...]:
        """Notes to show with the results: the scan's own, then what the data implies.

        A site whose unit axis was guessed (nothing told where its units are) is named
        here, so that a reader knows which per-unit verdicts rest on the default rule.
        """
        notes = [str(n) for n in self.meta.get("notes") or ()]
        guessed = [s for s in self.sites if s.info.unit_axis_source == "guessed"]
        if guessed:
            names = ", ".join(f"{s.info.name} (dim {s.info.unit_axis})" for s in guessed[:5])
            more = f" and {len(guessed) - 5} more" if len(guessed) > 5 else ""
            notes.append(f"unit axis guessed for {names}{more}: nothing showed which dim holds "
                         "the units; set unit_axis in the config if it is another")
        parts = [s.info.name for s in self.sites if s.info.part_of]
        if parts:
            notes.append(f"probably parts of composite activations written inline (x * f(x), as "
                         f"in x * sigmoid(1.702 * x)): {', '.join(parts[:5])}"
                         f"{f' and {len(parts) - 5} more' if len(parts) > 5 else ''}; their "
                         "counts are the inner function's and no saturation is diagnosed there. "
                         "An activation module (nn.GELU, nn.SiLU...) is counted as one site")
        return tuple(notes)

    def site(self, name: str) -> Site:
        """The site called ``name``; raises ``KeyError`` listing close names."""
        for s in self.sites:
            if s.info.name == name:
                return s
        raise KeyError(f"no site {name!r}; sites: {', '.join(s.info.name for s in self.sites)}")

    @cached_property
    def verdicts(self) -> dict[str, UnitVerdicts]:
        """Per-site derived rates and unit states."""
        return {
            s.info.name: classify(s.stats.arrays(), s.info.can_die, s.info.bounded,
                                  self.thresholds)
            for s in self.sites
        }

    def units_in_state(self, name: str, state: UnitState | str) -> list[int]:
        """Sorted unit indices of site ``name`` in ``state``."""
        v = self.verdicts[name]
        return [int(i) for i in np.flatnonzero(v.state == str(state))]

    def layer_records(self) -> list[dict[str, Any]]:
        """One plain dict per site with counts and the fire-rate spread (no pandas needed)."""
        rows = []
        for s in self.sites:
            info, v = s.info, self.verdicts[s.info.name]
            counts = {st: int((v.state == st).sum()) for st in _STATES}
            fr = v.fire_rate if v.fire_rate.size else np.zeros(1)
            rows.append({
                "layer": info.name, "order": info.order, "kind": info.kind, "op": info.op,
                "module": info.module, "input_layer": info.input_layer, "units": info.units,
                "unit_axis": info.unit_axis, "unit_axis_source": info.unit_axis_source,
                "samples": s.stats.samples, "positions": s.stats.positions,
                "dead": counts["dead"], "rare": counts["rare"], "always_on": counts["always_on"],
                "saturated": counts["saturated"], "nonfinite": counts["nonfinite"],
                "healthy": counts["healthy"], "dormant": int(v.dormant.sum()),
                "dead_fraction": counts["dead"] / info.units if info.units else 0.0,
                "dormant_fraction": float(v.dormant.mean()) if info.units else 0.0,
                "fire_rate_mean": float(fr.mean()), "fire_rate_min": float(fr.min()),
                "fire_rate_p10": float(np.quantile(fr, 0.1)),
                "fire_rate_median": float(np.median(fr)),
                "fire_rate_p90": float(np.quantile(fr, 0.9)), "fire_rate_max": float(fr.max()),
            })
        return rows

    @property
    def layers(self) -> pd.DataFrame:
        """One row per site in forward order (see the README for the columns).

        A new DataFrame on every access (built once, copied after): the report is
        frozen, so adding or changing a column of the frame a caller got never shows
        in what the next call returns.
        """
        return self._layers.copy()

    @cached_property
    def _layers(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.layer_records())

    @property
    def units(self) -> pd.DataFrame:
        """One row per unit: ``layer``, ``unit``, ``fire_rate``, ``sample_fire_rate``, ``state``...

        A new DataFrame on every access, as :attr:`layers`.
        """
        return self._units.copy()

    @cached_property
    def _units(self) -> pd.DataFrame:
        import pandas as pd

        frames = []
        for s in self.sites:
            v = self.verdicts[s.info.name]
            n = s.info.units
            frames.append(pd.DataFrame({
                "layer": [s.info.name] * n, "order": s.info.order, "kind": s.info.kind,
                "unit": np.arange(n), "fire_rate": v.fire_rate,
                "sample_fire_rate": v.sample_fire_rate, "saturated_rate": v.saturated_rate,
                "mean": v.mean, "mean_abs": v.mean_abs, "max": s.stats.tensors["max"].numpy(),
                "redo_score": v.redo_score,
                "nonfinite": s.stats.tensors["nonfinite"].numpy().astype(np.int64),
                "state": v.state.astype(str), "dormant": v.dormant,
            }))
        if not frames:
            return pd.DataFrame(columns=["layer", "unit", "fire_rate", "sample_fire_rate", "state"])
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> dict[str, Any]:
        """Model-wide totals: units, dead, rare, saturated... and the dead fraction."""
        rows = self.layer_records()
        total = sum(r["units"] for r in rows)
        out: dict[str, Any] = {"layers": len(rows), "units": total, "samples": self.samples}
        for key in ("dead", "rare", "always_on", "saturated", "nonfinite", "dormant"):
            out[key] = sum(r[key] for r in rows)
        out["dead_fraction"] = out["dead"] / total if total else 0.0
        out["partial"] = self.partial
        return out

    def dormant(self, definition: str = "redo", *, tau: float = 0.025,
                threshold: float = 0.01) -> pd.DataFrame:
        """Units dormant under a published definition (``redo``, ``dohare`` or ``dead``).

        Returns the rows of :attr:`units` for those units, so results can be compared
        with Sokar et al. 2023 (``redo``, τ) or Dohare et al. 2024 (``dohare``).
        """
        other = self.with_thresholds(
            self.thresholds.replace(dormancy=definition, tau=tau, dohare=threshold)
        )
        units = other.units
        return units[units["dormant"]].reset_index(drop=True)

    # -- transformations -------------------------------------------------------------------

    def with_thresholds(self, thresholds: Thresholds) -> Report:
        """The same counters judged with other thresholds (findings re-diagnosed)."""
        return diagnosed(replace(self, thresholds=thresholds, findings=()))

    def merge(self, *others: Report) -> Report:
        """Combine reports of the same model over disjoint data into one exact report."""
        return merge_reports([self, *others])

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (schema :data:`SCHEMA_VERSION`)."""
        from deadrelu import __version__

        layers = []
        for rec, s in zip(self.layer_records(), self.sites, strict=True):
            name = s.info.name
            entry = {
                "name": name, "order": rec["order"], "kind": rec["kind"], "op": rec["op"],
                "module": rec["module"], "input_layer": rec["input_layer"],
                "units": rec["units"], "dead": rec["dead"], "rare": rec["rare"],
                "always_on": rec["always_on"], "saturated": rec["saturated"],
                "nonfinite": rec["nonfinite"], "dormant": rec["dormant"],
                "dead_fraction": rec["dead_fraction"],
                "fire_rate": {k[len("fire_rate_"):]: rec[k] for k in rec if k.startswith("fire_rate_")},
            }
            for state in ("dead", "rare", "always_on", "saturated", "nonfinite"):
                entry[f"{state}_units"] = self.units_in_state(name, state)
            entry["site"] = s.info.to_dict()
            entry["counters"] = s.stats.to_dict()
            layers.append(entry)
        return {
            "schema_version": SCHEMA_VERSION,
            "deadrelu_version": __version__,
            "meta": jsonable(dict(self.meta)),
            "thresholds": self.thresholds.to_dict(),
            "summary": self.summary(),
            "layers": layers,
            "findings": [jsonable(f.to_dict()) for f in self.findings],
            "evidence": jsonable(dict(self.evidence)),
        }

    def to_json(self, **kwargs: Any) -> str:
        """Strict JSON (no NaN/Infinity tokens); keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output.

        The data is checked against ``deadrelu/schemas/report.schema.json`` first, and
        the per-unit lists against each site's unit count, so that nothing malformed
        reaches the code that merges, diagnoses or renders it.

        Raises:
            ReportError: not a report, an unsupported schema version, or a malformed
                field (the message gives its path, e.g. ``layers[0].counters.active``).
        """
        from deadrelu.schemas import validate

        if not isinstance(data, Mapping) or "schema_version" not in data:
            raise ReportError("not a deadrelu report (no schema_version)",
                              "pass a JSON file written by `deadrelu scan --format json`")
        version = data["schema_version"]
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise ReportError(
                f"report schema version {json.dumps(version)[:40]} is not supported (this "
                f"deadrelu reads {SCHEMA_VERSION})",
                "re-run the scan with this version of deadrelu",
            )
        data = dict(data)
        validate(data, "report")
        _check_lengths(data)
        sites = tuple(
            Site(SiteInfo.from_dict(layer["site"]), UnitStats.from_dict(layer["counters"]))
            for layer in data["layers"]
        )
        try:
            thresholds = Thresholds.from_dict(dict(data.get("thresholds") or {}))
        except DeadReluError as exc:
            raise ReportError(f"report field thresholds: {exc.problem}",
                              "re-run the scan, or fix the thresholds in the file") from exc
        findings = tuple(Finding.from_dict(f) for f in data.get("findings") or [])
        meta = dict(data.get("meta") or {})
        for key in ("input_stats", "output_stats"):  # strict JSON wrote non-finite values as null
            if isinstance(meta.get(key), dict):
                meta[key] = {k: [math.nan if x is None else x for x in v] if isinstance(v, list)
                             and k not in ("shape", "count") else v
                             for k, v in meta[key].items()}
        return cls(sites, thresholds, meta, findings, dict(data.get("evidence") or {}))

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """Read a JSON report file (a regular file; see :meth:`from_dict` for the checks)."""
        from deadrelu.files import require_regular

        p = Path(path)
        require_regular(p, what="report file", error=ReportError)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ReportError(f"report file {p} does not exist", "check the path") from exc
        except RecursionError as exc:
            raise ReportError(f"report {p} is nested too deeply to be a report",
                              "pass a JSON file written by `deadrelu scan --format json`") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ReportError(f"cannot read report {p}: {exc}",
                              "pass a JSON file written by `deadrelu scan --format json`") from exc
        try:
            return cls.from_dict(data)
        except ReportError as exc:  # name the file
            raise ReportError(f"{p}: {exc.problem}", exc.fix) from exc

    def __rich_console__(self, console: Any, options: Any) -> Iterable[Any]:
        from deadrelu.render import render_report

        yield from render_report(self)

    def __repr__(self) -> str:
        """One line (model, samples, sites, dead units): never the counters' tensors."""
        units = sum(s.info.units for s in self.sites)
        dead = sum(int((v.state == "dead").sum()) for v in self.verdicts.values())
        partial = ", partial" if self.partial else ""
        return (f"<Report {self.meta.get('model', '?')}: {self.samples:,} samples, "
                f"{len(self.sites)} sites, {dead:,} of {units:,} units dead{partial}>")

    def _repr_html_(self) -> str:
        """Jupyter's view: header, per-layer overview chart and findings (no script)."""
        from deadrelu.html import report_fragment

        return report_fragment(self)


def _check_lengths(data: Mapping[str, Any]) -> None:
    """Per-unit lists the schema cannot size: each as long as its site's (or layer's) units."""
    fix = "the report file is corrupt or was edited; re-run the scan"
    for i, layer in enumerate(data["layers"]):
        site, counters = layer["site"], layer["counters"]
        if site["units"] != counters["units"]:
            raise ReportError(f"report field layers[{i}]: the site has {site['units']} units but "
                              f"its counters {counters['units']}", fix)
    layers = (data.get("evidence") or {}).get("layers") or {}
    for name, entry in layers.items():
        for key, values in entry.items():
            if isinstance(values, list) and len(values) != entry["units"]:
                raise ReportError(f"report field evidence.layers[{json.dumps(name)}].{key} has "
                                  f"{len(values)} values for {entry['units']} units", fix)
    meta = data.get("meta") or {}
    for key in ("input_stats", "output_stats"):
        stats = meta.get(key)
        if isinstance(stats, dict):
            sizes = {k: len(v) for k, v in stats.items() if isinstance(v, list) and k != "shape"}
            if len(set(sizes.values())) > 1:
                raise ReportError(f"report field meta.{key}: its lists differ in length "
                                  f"({', '.join(f'{k} {n}' for k, n in sizes.items())})", fix)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python ones and non-finite floats as
    ``None`` (strict JSON has no NaN/Infinity); anything else unknown as its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None  # strict JSON
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def merge_reports(reports: Sequence[Report]) -> Report:
    """Combine reports of one model over disjoint data shards into one exact report.

    Counters add (maxima take the max), so the result equals one scan over all shards.
    A site that only some shards reached (a data-dependent branch) keeps the counts of
    the shards that ran it.

    Raises:
        ReportError: the reports come from different architectures or weights, mix
            train-mode (Monitor) and eval-mode reports, or disagree on a site's units.
    """
    if not reports:
        raise ReportError("no reports to merge", "pass at least one report")
    first = reports[0]
    for key in ("model_signature", "weights_fingerprint"):
        values = {r.meta.get(key) for r in reports}
        if len(values) > 1:
            what = "architectures" if key == "model_signature" else "weights (different checkpoints)"
            raise ReportError(f"cannot merge reports of different {what}",
                              "merge only reports of the same checkpoint scanned on disjoint data")
    modes = {r.meta.get("mode", "eval") for r in reports}
    if len(modes) > 1:
        raise ReportError(
            "cannot merge train-mode (Monitor) reports with eval-mode scans",
            "merge reports taken the same way: all from `deadrelu scan` or all from one Monitor",
        )
    # Shards may reach different branches of the model: the merged report has the union
    # of sites, in the order they were first seen, and a shard that never ran a site
    # adds nothing to it.
    merged: dict[str, Site] = {}
    for r in reports:
        for s in r.sites:
            target = merged.get(s.info.name)
            if target is None:
                info = replace(s.info, order=len(merged))
                merged[s.info.name] = Site(info, s.stats.copy("cpu"))
                continue
            if target.info.units != s.info.units or target.info.kind != s.info.kind:
                raise ReportError(
                    f"site {s.info.name!r} is {target.info.units} {target.info.kind} units in one "
                    f"report and {s.info.units} {s.info.kind} units in another",
                    "merge only reports of the same model",
                )
            target.stats.merge_(s.stats)
    names = list(merged)
    meta = dict(first.meta)
    meta["seconds"] = sum(float(r.meta.get("seconds", 0.0)) for r in reports)
    meta["samples"] = sum(int(r.meta.get("samples", r.samples)) for r in reports)
    meta["data"] = " + ".join(str(r.meta.get("data", "?")) for r in reports)
    meta["partial"] = any(r.partial for r in reports)
    meta["merged_from"] = len(reports)
    from deadrelu.datastats import merge_data_meta

    for key in ("input_stats", "output_stats", "tokens"):
        meta.pop(key, None)
    # fresh-init dead counts were taken per shard: units dead on every shard cannot be
    # told from counts, so the merged report has no fresh-init comparison
    meta.pop("init", None)
    meta.update(merge_data_meta([r.meta for r in reports]))
    return diagnosed(Report(tuple(merged[n] for n in names), first.thresholds, meta, (), first.evidence))


def diagnosis_subject(report: Report) -> Subject:
    """What the diagnosis of ``report`` reads (see :class:`~deadrelu.diagnose.subject.Subject`)."""
    from deadrelu.diagnose.subject import Subject

    meta = report.meta
    return Subject(
        sites=report.sites, verdicts=report.verdicts, thresholds=report.thresholds,
        samples=report.samples, evidence=report.evidence or {},
        data={k: meta[k] for k in ("input_stats", "output_stats") if k in meta},
        output=meta.get("output"), recipe=meta.get("recipe"), init=meta.get("init"),
        selection=meta.get("selection"),
    )


def diagnosed(report: Report, selection: Selection | Mapping[str, Any] | None = None) -> Report:
    """``report`` with its findings derived from its counters, thresholds, evidence and meta.

    The one place a report's findings are computed: :func:`deadrelu.scan`,
    :meth:`deadrelu.Monitor.report`, :meth:`Report.with_thresholds` and
    :func:`merge_reports` all end here.

    Args:
        report: a report (its own findings are ignored and replaced).
        selection: which rules to report; default: ``report.meta["selection"]`` if the
            scan stored one, else every rule (the report's meta is not changed).
    """
    from deadrelu.diagnose import diagnose

    return replace(report, findings=tuple(diagnose(diagnosis_subject(report), selection)))

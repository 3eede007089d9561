"""JUnit XML: one ``<testcase>`` per gate and scope, so CI test dashboards list them.

The layout most JUnit consumers (Jenkins, GitLab, Azure, CircleCI, the GitHub
test-reporter actions) read: ``<testsuites>`` holding one ``<testsuite>`` whose
``tests``/``failures`` counts match its cases; a failed gate gets a
``<failure message=... type=...>`` with the details as text. Built with
:mod:`xml.etree`, so names and messages are always escaped correctly.

The attributes are those the Jenkins xunit plugin's JUnit XSD (``junit-10.xsd``)
allows, which the stricter consumers validate against: ``<testsuites>`` has no
``skipped`` (only ``<testsuite>`` may carry it), and times are plain decimals.
The tests validate every document against that XSD (``tests/data/junit-10.xsd``).
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun


def render_junit(run: CheckRun) -> str:
    """The outcome as a JUnit XML document (UTF-8, with an XML declaration)."""
    outcome, report = run.outcome, run.report
    seconds = f"{float(report.meta.get('seconds', 0.0)):.3f}"
    counts = {"tests": str(len(outcome.results)), "failures": str(len(outcome.failures)),
              "errors": "0", "time": seconds}
    root = ET.Element("testsuites", {"name": "deadrelu", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"deadrelu check {run.model_label}", **counts, "skipped": "0",
        "timestamp": dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(),
    })
    props = ET.SubElement(suite, "properties")
    summary = report.summary()
    for name, value in (("model", run.model_label), ("baseline", run.baseline_path or ""),
                        ("samples", summary["samples"]), ("units", summary["units"]),
                        ("dead", summary["dead"]),
                        ("dead_fraction", f"{summary['dead_fraction']:.6f}")):
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    for r in outcome.results:
        name = r.layer or (r.rule if r.gate == "fail-on" else None) or "model"
        case = ET.SubElement(suite, "testcase", {
            "classname": f"deadrelu.{r.gate}", "name": str(name), "time": "0",
        })
        if not r.passed:
            failure = ET.SubElement(case, "failure", {"message": r.message, "type": r.gate})
            failure.text = "\n".join([r.message, *r.details])
        elif r.details:
            ET.SubElement(case, "system-out").text = "\n".join(r.details)
    if outcome.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(outcome.notes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render_junit_error(model_label: str, message: str) -> str:
    """A JUnit document for a check that could not run (bad input): one erroring test case.

    Without it a CI dashboard reading the XML would show nothing, or an old file.
    """
    counts = {"tests": "1", "failures": "0", "errors": "1", "time": "0"}
    root = ET.Element("testsuites", {"name": "deadrelu", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": f"deadrelu check {model_label}", **counts,
                                              "skipped": "0"})
    case = ET.SubElement(suite, "testcase", {"classname": "deadrelu.check", "name": "run",
                                             "time": "0"})
    ET.SubElement(case, "error", {"message": message, "type": "error"}).text = message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

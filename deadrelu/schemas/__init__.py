"""JSON Schemas of deadrelu's JSON outputs, shipped with the package.

``check.schema.json`` describes ``deadrelu check --format json``; the scan report
(``deadrelu scan --format json``, :meth:`deadrelu.report.Report.to_dict`) has its own
file here. Read one with ``importlib.resources.files("deadrelu.schemas") / NAME``.
"""

"""Validators for what deadrelu writes, against the schemas its consumers use.

* SARIF logs: the official OASIS SARIF 2.1.0 schema (``tests/data``), with format
  checks (``uri-reference`` and the like) switched on, as GitHub's upload does.
* JUnit XML: the Jenkins xunit plugin's ``junit-10.xsd`` (``tests/data``).
* deadrelu's own JSON documents: the schemas shipped in ``deadrelu/schemas``
  (every ``*.schema.json`` there, whichever exist).

Each validator raises ``AssertionError`` listing every violation.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")


@cache
def _sarif_validator() -> Any:
    import jsonschema

    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    # The OASIS file declares draft-04 but uses later formats (uri-reference): check them all.
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


@cache
def _junit_schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema10(str(DATA / "junit-10.xsd"))


def deadrelu_schemas() -> dict[str, Path]:
    """``{"check": path, "report": path, ...}``: every schema deadrelu ships."""
    folder = resources.files("deadrelu.schemas")
    return {Path(str(p)).name.removesuffix(".schema.json"): Path(str(p))
            for p in folder.iterdir() if str(p).endswith(".schema.json")}


@cache
def _deadrelu_validator(name: str) -> Any:
    import jsonschema

    schema = json.loads(deadrelu_schemas()[name].read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=jsonschema.FormatChecker())


def _fail(what: str, errors: list[str]) -> None:
    if errors:
        raise AssertionError(f"{what}: {len(errors)} schema error(s):\n" + "\n".join(errors[:20]))


def validate_sarif(text: str) -> dict[str, Any]:
    """Parse a SARIF log and check it against the official 2.1.0 schema."""
    log = json.loads(text)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _sarif_validator().iter_errors(log)]
    _fail("SARIF", errors)
    return log


def validate_junit(text: str) -> None:
    """Check a JUnit XML document against the Jenkins ``junit-10.xsd``."""
    errors = [str(e.reason) + f" (at {e.path})" for e in _junit_schema().iter_errors(text)]
    _fail("JUnit XML", errors)


def validate_json(name: str, text: str) -> dict[str, Any]:
    """Parse strict JSON (no NaN/Infinity) and check it against ``deadrelu/schemas/NAME``.

    When deadrelu ships no schema called ``name``, only the strict parse is checked.
    """

    def no_constants(token: str) -> Any:
        raise AssertionError(f"{name} JSON contains {token}, which is not JSON")

    doc = json.loads(text, parse_constant=no_constants)
    if name in deadrelu_schemas():
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in _deadrelu_validator(name).iter_errors(doc)]
        _fail(f"{name} JSON", errors)
    return doc

"""JSON Schemas of deadrelu's JSON outputs, shipped with the package, and a strict validator.

``report.schema.json`` describes the scan report (``deadrelu scan --format json``,
:meth:`deadrelu.report.Report.to_dict`), ``check.schema.json`` ``deadrelu check
--format json``. Read one with :func:`load_schema` (or ``importlib.resources.files(
"deadrelu.schemas") / NAME``). The schemas (JSON Schema 2020-12) are the
single description of each format: docs and other tools can use them as they
are, the tests check deadrelu's real outputs against them with the
``jsonschema`` package, and :func:`validate` checks a file read back (a report
for ``merge`` or ``check --baseline``) against the same schema before any of it
is used, so a malformed file is one line naming the bad field
(``layers[2].counters.active[5]``), never a crash deep inside.

:func:`validate` implements the subset of JSON Schema the schemas use (``type``,
``const``, ``enum``, ``properties``, ``required``, ``additionalProperties``,
``items``, ``minimum``, ``maximum``, ``pattern``, local ``$ref``), with the standard library
only: ``import deadrelu`` stays light. It walks the schema, not the data, so its
recursion is bounded by the schema; the data's own depth is bounded first
(:data:`MAX_DEPTH`), since free-form parts (a finding's evidence) are not walked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from deadrelu.errors import DeadReluError, ReportError

__all__ = ["MAX_DEPTH", "load_schema", "validate"]

#: Deepest nesting accepted in a file read back; deadrelu's own reports use under 10.
MAX_DEPTH = 32


@cache
def load_schema(name: str) -> Mapping[str, Any]:
    """The schema ``deadrelu/schemas/<name>.schema.json`` as a dict."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: Mapping[str, Any] = json.loads(text)
    return schema


def validate(
    data: Any,
    name: str,
    *,
    what: str = "report",
    error: type[DeadReluError] = ReportError,
    fix: str = "pass a JSON file written by `deadrelu scan --format json`",
) -> None:
    """Check ``data`` (parsed JSON) against the schema ``name``.

    Args:
        data: the parsed document.
        name: the schema's file stem, e.g. ``"report"``.
        what: how messages name the document.
        error: the exception class to raise.
        fix: the fix the message suggests.

    Raises:
        error: the first problem found, naming the path of the bad field.
    """
    _check_depth(data, what, error, fix)
    schema = load_schema(name)
    problem = _check(data, schema, "", schema)
    if problem is not None:
        raise error(f"{what} {problem}", fix)


def _check_depth(data: Any, what: str, error: type[DeadReluError], fix: str) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{what} is nested deeper than {MAX_DEPTH} levels", fix)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list) and not _CONTAINERS.isdisjoint(map(type, value)):
            stack.extend((v, depth + 1) for v in value)  # lists of numbers are skipped above


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_CONTAINERS = frozenset({dict, list})
#: Exact Python types per JSON type, for the fast check of long lists (json.loads makes these).
_EXACT: dict[str, frozenset[type]] = {
    "object": frozenset({dict}), "array": frozenset({list}), "string": frozenset({str}),
    "boolean": frozenset({bool}), "null": frozenset({type(None)}), "integer": frozenset({int}),
    "number": frozenset({int, float}),
}
_LEAF_KEYS = frozenset({"type", "minimum", "maximum", "description"})
_NAMES = {"object": "an object", "array": "a list", "string": "a string",
          "boolean": "true or false", "null": "null", "integer": "an integer",
          "number": "a number"}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _child(path: str, key: str) -> str:
    """``layers[0].site`` style; keys that are not names (layer paths like ``net.0``) quoted."""
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _where(path: str) -> str:
    return f"field {path.lstrip('.')}" if path else "document"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return root["$defs"][ref.removeprefix("#/$defs/")] if ref is not None else schema


def _all_plain(values: list[Any], items: Mapping[str, Any]) -> bool:
    """Whether every item is valid under a leaf ``items`` schema, checked at C speed.

    ``False`` means "not shown valid": the caller then checks item by item (with
    ``isinstance``, so subclasses such as numpy floats pass) and names the first bad one.
    """
    if "type" not in items or not _LEAF_KEYS.issuperset(items):
        return False
    names = [items["type"]] if isinstance(items["type"], str) else items["type"]
    allowed = frozenset().union(*(_EXACT[n] for n in names))
    if not set(map(type, values)) <= allowed:
        return False
    lo, hi = items.get("minimum"), items.get("maximum")
    if (lo is None and hi is None) or not values:
        return True
    if type(None) in allowed:
        return False
    return (lo is None or min(values) >= lo) and (hi is None or max(values) <= hi)


def _check(value: Any, schema: Mapping[str, Any], path: str, root: Mapping[str, Any]) -> str | None:
    """The first problem with ``value`` at ``path``, or ``None``."""
    schema = _resolve(schema, root)
    if "const" in schema and not _same(value, schema["const"]):
        return f"{_where(path)} is {_describe(value)}, expected {json.dumps(schema['const'])}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return (f"{_where(path)} is {_describe(value)}, expected one of "
                f"{', '.join(json.dumps(e) for e in schema['enum'])}")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in names):
            return (f"{_where(path)} is {_describe(value)}, expected "
                    f"{' or '.join(_NAMES[t] for t in names)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{_where(path)} is {_describe(value)}, below the minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{_where(path)} is {_describe(value)}, above the maximum {schema['maximum']}"
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{_where(path)} is {_describe(value)}, which does not match {schema['pattern']}"
    if isinstance(value, dict):
        return _check_object(value, schema, path, root)
    if isinstance(value, list) and "items" in schema:
        if _all_plain(value, _resolve(schema["items"], root)):
            return None  # the common case (per-unit counters): no per-item calls
        for i, item in enumerate(value):
            problem = _check(item, schema["items"], f"{path}[{i}]", root)
            if problem is not None:
                return problem
    return None


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str,
                  root: Mapping[str, Any]) -> str | None:
    for key in schema.get("required", ()):
        if key not in value:
            return f"{_where(path)} lacks the required field {key!r}"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = properties.get(key)
        if sub is None:
            if extra is False:
                return f"{_where(path)} has an unknown field {key!r}"
            if extra is True:
                continue
            sub = extra
        problem = _check(item, sub, _child(path, key), root)
        if problem is not None:
            return problem
    return None

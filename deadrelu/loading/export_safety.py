"""Decide, without executing anything, whether a ``torch.export`` archive is safe to load.

``torch.export.load`` is not a weights-only loader. Reading a ``.pt2`` file may
unpickle payloads with ``weights_only=False`` (weights or constants flagged
``use_pickle``, "opaque" objects, a fallback for sample inputs), parses
symbolic-shape expressions with ``sympy.sympify`` (which evaluates Python), and
``ep.module()`` ``exec``s the archive's ``guards_code``; the graph may also
name arbitrary ``torch.*`` callables. An ordinary export of an ordinary model
uses none of the dangerous parts, so we check the archive statically and load
it only if:

* every member is one the export table of :mod:`deadrelu.loading.allowlist`
  names (so no ``data/aotinductor/`` shared library, no pickled custom or opaque
  object, no program file under another spelling), checked by
  :mod:`deadrelu.loading.archive` exactly as torch will read it;
* no payload is pickled beyond plain tensors (nested ``.pt`` records are scanned
  like any checkpoint: only torch's default weights-only globals may appear),
  and every weight/constant the payload tables point at is a raw tensor member;
* ``guards_code`` is empty;
* every symbolic expression is built only from sympy/torch math constructors,
  symbol names, numbers and operators (checked on its Python AST);
* every graph node calls an operator (``torch.ops.*``), ``_operator.*``,
  ``math.*`` or a ``torch.sym_*``/``torch._check*``/``torch._assert*`` helper.

Anything else is refused, naming what was found; ``--trust-checkpoint`` skips
the check.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deadrelu.errors import CheckpointError
from deadrelu.loading.allowlist import Role
from deadrelu.loading.archive import TRUST_FIX, CheckedArchive, open_checked
from deadrelu.loading.imports import one_line

_TARGET_OK = re.compile(
    r"^(torch\.ops\.[\w.]+|_operator\.\w+|math\.\w+|torch\.(sym_\w+|_sym_\w+|_check\w*|_assert\w*))$"
)
_SYMBOL_NAME = re.compile(r"^[a-z]+\d+$")  # s0, u3, ps12: shape symbols
_STRING_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SAFE_AST = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.keyword,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.BoolOp,
    ast.Tuple,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
)
_FIX = TRUST_FIX


def check_export_archive(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` passes the checks in the module docstring."""
    try:
        with open_checked(path, "export") as archive:
            if not archive.names(Role.PROGRAM):
                raise CheckpointError(
                    f"{path} is a torch.export archive without a models/NAME.json program",
                    "re-export it with torch.export.save, or re-download it",
                )
            raw = set(archive.names(Role.BYTES))
            for name in archive.names(Role.PAYLOAD_CONFIG):
                _check_payload_config(path, name, _read_json(archive, name), raw)
            for name in archive.names(Role.PROGRAM):
                _check_program(path, name, _read_json(archive, name))
            for name in archive.names(Role.TENSOR_PICKLE):
                _check_nested_pickle(path, name, archive.read(name))
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, RecursionError) as exc:
        raise CheckpointError(
            f"{path} looks truncated or corrupt: its torch.export archive cannot be read "
            f"({one_line(exc)})",
            "re-export it with torch.export.save, or re-download it",
        ) from exc


def _read_json(archive: CheckedArchive, name: str) -> Any:
    return json.loads(archive.read(name).decode("utf-8"))


def _refuse(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"refusing to load {path}: {what}", _FIX)


def _check_payload_config(path: Path, name: str, config: Any, raw: set[str]) -> None:
    entries = config.get("config", {}) if isinstance(config, dict) else {}
    folder = name.rsplit("/", 1)[0]
    for fqn, meta in (entries.items() if isinstance(entries, dict) else ()):
        if not isinstance(meta, dict):
            raise _refuse(path, f"entry {str(fqn)[:80]!r} in {name} is not a tensor description")
        if meta.get("use_pickle"):
            raise _refuse(path, f"entry {fqn!r} in {name} is stored as a pickle")
        stored = f"{folder}/{meta.get('path_name', '')}"
        if stored not in raw:
            # custom_obj_* / opaque_obj_* constants are unpickled by torch without checks.
            raise _refuse(
                path, f"entry {fqn!r} in {name} points at {stored}, which is not a raw tensor "
                "record (a pickled custom or opaque object?)"
            )


def _check_program(path: Path, name: str, program: Any) -> None:
    if isinstance(program, dict) and program.get("guards_code"):
        raise _refuse(path, f"{name} carries guards_code, which is executed as Python")
    for node in _dicts(program):
        if "target" in node and "inputs" in node and "outputs" in node:
            target = node["target"]
            if not isinstance(target, str) or not _TARGET_OK.match(target):
                raise _refuse(
                    path, f"its graph calls {str(target)[:80]!r}, which is not an operator"
                )
        expr = node.get("expr_str")
        if isinstance(expr, str) and not _safe_expression(expr):
            raise _refuse(
                path, f"it holds the shape expression {expr[:80]!r}, which would be evaluated"
            )


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _safe_expression(expr: str) -> bool:
    """Whether evaluating ``expr`` (as sympify does) can only build math objects."""
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return False
    allowed = _math_names()
    for node in ast.walk(tree):
        if not isinstance(node, _SAFE_AST):
            return False
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in allowed
        ):
            return False
        if isinstance(node, ast.Name) and not (
            node.id in allowed or node.id in ("True", "False") or _SYMBOL_NAME.match(node.id)
        ):
            return False
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (not _STRING_OK.match(node.value) or "__" in node.value)
        ):
            return False
    return True


@functools.cache
def _math_names() -> frozenset[str]:
    """Names of sympy and torch symbolic classes: constructors that only build expressions."""
    import sympy
    import torch.utils._sympy.functions as torch_sympy

    names: set[str] = set()
    for module in (sympy, torch_sympy):
        for attr in dir(module):
            obj = getattr(module, attr, None)
            if isinstance(obj, type) and issubclass(obj, sympy.Basic):
                names.add(attr)
    names |= {"oo", "zoo", "nan", "pi", "E"}
    return frozenset(names)


def _check_nested_pickle(path: Path, name: str, data: bytes) -> None:
    from deadrelu.loading.pickle_safety import default_allowed, scan_stream

    scan = scan_stream(io.BytesIO(data), f"{path}:{name}")
    extra = [g.dotted for g in scan.globals if g.dotted not in default_allowed()]
    if extra or scan.ext_codes:
        shown = ", ".join(extra[:3]) or "pickle extension codes"
        raise _refuse(
            path, f"{name} pickles {shown}, which torch.export.load may unpickle unsafely"
        )

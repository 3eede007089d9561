"""Where a module class's ``forward`` calls an activation function, read from its source.

Module hooks and the collector see *that* ``F.relu`` ran inside ``layer1.0``; only the
source says *where* it is written. The user needs the place to edit it (swap it for
a leaky ReLU, say), so :func:`forward_calls` parses ``forward`` with :mod:`ast`
(nothing is executed) and returns the attribute calls named like the activation
(``F.relu(x)``, ``torch.relu(x)``, ``x.relu_()``), with file and line, in source order.
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class CallSite:
    """One call written in a ``forward``."""

    call: str  # as written, e.g. "F.relu(...)"
    file: str | None
    line: int | None

    @property
    def where(self) -> str:
        """``file:line`` with the file relative to the working directory when inside it."""
        if self.file is None:
            return "source not available"
        path = self.file
        try:
            rel = os.path.relpath(path)
            if not rel.startswith(".."):
                path = rel
        except ValueError:  # another drive on Windows
            pass
        return f"{path}:{self.line}"


_CACHE: dict[tuple[type, str], tuple[CallSite, ...] | None] = {}


def forward_calls(cls: type, op: str) -> tuple[CallSite, ...] | None:
    """Calls of ``op`` (or ``op_``) in ``cls.forward``, in source order; ``None`` without source.

    Only the class's own ``forward`` is read (not a base class's): torch's built-in
    modules call their activations through attributes, which are not calls written here.
    """
    key = (cls, op)
    if key not in _CACHE:
        _CACHE[key] = _read(cls, op)
    return _CACHE[key]


def _read(cls: type, op: str) -> tuple[CallSite, ...] | None:
    forward = cls.__dict__.get("forward")
    if forward is None:
        return ()
    try:
        lines, start = inspect.getsourcelines(forward)
        file = inspect.getsourcefile(forward)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    names = {op, f"{op}_"}
    found = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in names]
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return tuple(CallSite(ast.unparse(n.func) + "(...)", file, start + n.lineno - 1) for n in found)

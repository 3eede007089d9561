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


def _parse(func: object) -> tuple[ast.AST, str | None, int] | None:
    """``func``'s source as a tree, its file, and the line it starts at; ``None`` without
    source (built in, defined in a REPL) or when it does not parse."""
    try:
        lines, start = inspect.getsourcelines(func)  # type: ignore[arg-type]
        file = inspect.getsourcefile(func)  # type: ignore[arg-type]
        return ast.parse(textwrap.dedent("".join(lines))), file, start
    except (OSError, TypeError, SyntaxError):
        return None


def _read(cls: type, op: str) -> tuple[CallSite, ...] | None:
    forward = cls.__dict__.get("forward")
    if forward is None:
        return ()
    parsed = _parse(forward)
    if parsed is None:
        return None
    tree, file, start = parsed
    names = {op, f"{op}_"}
    found = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr in names]
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return tuple(CallSite(ast.unparse(n.func) + "(...)", file, start + n.lineno - 1) for n in found)


def definition_site(model: object, path: str) -> CallSite | None:
    """Where the module at ``path`` is created in the user's code: the ``self.<name> = ...``
    line of its parent's ``__init__``, read with :mod:`ast` (nothing is executed).

    A child of a container (``net.1`` in ``nn.Sequential``) has no line of its own: the
    line that creates the container is given. ``None`` when no such line is found
    (torch's own modules, built-in containers at the top, code without source).
    """
    import torch.nn as nn

    if not isinstance(model, nn.Module) or not path or path == "<model>":
        return None
    parts = path.split(".")
    while parts:
        parent_path, name = ".".join(parts[:-1]), parts[-1]
        try:
            parent = model.get_submodule(parent_path) if parent_path else model
        except AttributeError:
            return None
        if not isinstance(parent, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return _assignment(type(parent), name)
        parts = parts[:-1]  # a container's child: the container's own line
    return None


_ASSIGNED: dict[tuple[type, str], CallSite | None] = {}


def _assignment(cls: type, name: str) -> CallSite | None:
    key = (cls, name)
    if key not in _ASSIGNED:
        _ASSIGNED[key] = _read_assignment(cls, name)
    return _ASSIGNED[key]


def _read_assignment(cls: type, name: str) -> CallSite | None:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith("torch."):
            continue
        parsed = _parse(init)
        if parsed is None:
            return None
        tree, file, start = parsed
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (isinstance(target, ast.Attribute) and target.attr == name
                        and isinstance(target.value, ast.Name) and target.value.id == "self"):
                    return CallSite(f"self.{name} = ...", file, start + node.lineno - 1)
    return None

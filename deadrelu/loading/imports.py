"""Import user code named on the command line: ``module:attr`` and ``file.py:attr`` specs.

Both ``--arch`` (a model factory) and ``--data`` (a batch function) name Python
objects the same way, so resolution lives here once. Invariant: ``sys.path`` is
only ever extended for the duration of an import and always restored, so that
loading one file never changes how later, unrelated imports resolve.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from deadrelu.errors import DeadReluError

# ``pkg.mod:attr`` or ``pkg.mod:Outer.attr``; the attribute part may be dotted.
_MODULE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@contextlib.contextmanager
def extra_sys_path(paths: Sequence[str | Path]) -> Iterator[None]:
    """Put ``paths`` (and the working directory) first on ``sys.path`` while the block runs.

    The working directory is included because a console script's ``sys.path``
    starts with its ``bin/`` folder, not with the directory the user is in, yet
    ``--arch models.py:Net`` / ``--data mydata:batches`` next to the user is the
    common case. Which modules a *checkpoint* may cause to be imported is decided
    separately, by name (:func:`deadrelu.loading.allowlist.may_import`).
    """
    saved = list(sys.path)
    front = [str(Path(p).resolve()) for p in paths] + [os.getcwd()]
    sys.path[:0] = [p for p in dict.fromkeys(front) if p]
    try:
        yield
    finally:
        sys.path[:] = saved


def is_object_spec(spec: str) -> bool:
    """Whether ``spec`` looks like ``module:attr`` or ``file.py:attr`` rather than a plain path."""
    if ":" not in spec:
        return False
    head, _, tail = spec.rpartition(":")
    if len(head) == 1:  # a Windows drive letter, ``C:\\data``
        return False
    if head.endswith(".py"):
        return bool(tail) and tail.replace(".", "").replace("_", "").isalnum()
    return bool(_MODULE_SPEC.match(spec))


def resolve_object(
    spec: str,
    *,
    option: str,
    error: type[DeadReluError],
    import_paths: Sequence[str | Path] = (),
) -> Any:
    """Import the object a ``module:attr`` / ``path/to/file.py:attr`` spec names.

    Args:
        spec: the user's string, e.g. ``"mypkg.models:resnet18"`` or ``"nets.py:Net"``.
        option: the option it came from (``"--arch"``), so messages point at it.
        error: the exception class to raise (``ConfigError`` for ``--arch``,
            ``DataError`` for ``--data``).
        import_paths: extra directories to search, ahead of ``sys.path``.

    Returns:
        The attribute, not yet called.

    Raises:
        error: bad syntax, a module that cannot be imported or raises on import,
            or a missing attribute; the message names the offending part.
    """
    if not is_object_spec(spec):
        raise error(
            f"{option} {spec!r} is not of the form module:attr or path/to/file.py:attr",
            f"write e.g. {option} mypkg.models:Net or {option} models.py:Net",
        )
    head, _, attr_path = spec.rpartition(":")
    with extra_sys_path(import_paths):
        if head.endswith(".py"):
            module = _import_file(Path(head), spec=spec, option=option, error=error)
        else:
            module = _import_module(head, spec=spec, option=option, error=error)
    obj: Any = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise error(
                f"{option} {spec!r}: {head} has no attribute {attr_path!r}",
                f"check the name after the colon; {_public_names_hint(module)}",
            )
        obj = getattr(obj, part)
    return obj


def _import_module(name: str, *, spec: str, option: str, error: type[DeadReluError]) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Distinguish "your module is not on the path" from "your module imports
        # something that is not installed": the fixes differ.
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise error(
                f"{option} {spec!r}: no module named {missing!r}",
                "pass --import-path DIR with the directory that contains it, or install the package",
            ) from exc
        raise error(
            f"{option} {spec!r}: importing {name} failed: {exc}",
            f"install {missing or 'the missing package'} in this environment",
        ) from exc
    except Exception as exc:
        raise error(
            f"{option} {spec!r}: importing {name} raised {type(exc).__name__}: {one_line(exc)}",
            f"fix the error in {name}, or check that it imports on its own",
        ) from exc


def _import_file(path: Path, *, spec: str, option: str, error: type[DeadReluError]) -> ModuleType:
    if not path.is_file():
        raise error(
            f"{option} {spec!r}: file {path} does not exist",
            "check the path before the colon (relative paths start at the working directory)",
        )
    path = path.resolve()
    # A stable, unique module name per file: two different ``model.py`` files
    # must not overwrite each other in sys.modules, and loading the same file
    # twice should reuse the module (classes stay identical).
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_deadrelu_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    file_spec = importlib.util.spec_from_file_location(module_name, path)
    if file_spec is None or file_spec.loader is None:
        raise error(f"{option} {spec!r}: {path} cannot be imported as Python", "pass a .py file")
    module = importlib.util.module_from_spec(file_spec)
    # Registered before exec so dataclasses/pickle inside the file can find it.
    sys.modules[module_name] = module
    saved = list(sys.path)
    sys.path.insert(0, str(path.parent))  # sibling imports (``from layers import Block``)
    try:
        file_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise error(
            f"{option} {spec!r}: importing {path} raised {type(exc).__name__}: {one_line(exc)}",
            f"fix the error in {path.name}, or check that it runs on its own",
        ) from exc
    finally:
        sys.path[:] = saved
    return module


def _public_names_hint(module: ModuleType) -> str:
    names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
    if not names:
        return f"{module.__name__} defines no public callables"
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"available: {shown}"


def one_line(exc: BaseException) -> str:
    """``str(exc)`` squeezed onto one short line, for embedding in an error message."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."

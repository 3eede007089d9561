"""Decide, without executing or importing anything, which pickle globals a checkpoint may use.

``torch.load(weights_only=True)`` refuses every global outside a small
allowlist of tensor-rebuilding helpers, which makes it safe, but also refuses
whole pickled models (``torch.save(model)``): their classes are not on the list.
We widen the list per file, and only as far as that file needs:

* the pickle is *read* with :func:`pickletools.genops` (opcodes are parsed,
  never run) to find every ``GLOBAL`` / ``STACK_GLOBAL`` it names; a zip
  archive's members are checked first (:mod:`deadrelu.loading.archive`), so the
  ``data.pkl`` read here is the one torch reads, decompressed within a bound;
* a name is allowed only if it is an ``nn.Module`` subclass (or a
  ``torch.nn.functional`` function, which modules such as
  ``TransformerEncoderLayer`` keep as attributes) that is never *called* with
  arguments from the file. "Called" is tracked through the simulated stack:
  a global counts as called when it, or anything built from it, is the callable
  of a ``REDUCE``/``OBJ``/``INST`` *or one of its arguments* (torch's allowed
  ``_rebuild_from_type_v2(func, ...)`` calls ``func``), or is allocated by
  ``NEWOBJ`` with arguments for its ``__new__``;
* a module is imported to look a name up only if
  :func:`deadrelu.loading.allowlist.may_import` allows it from the name alone
  (torch, the user's ``--import-path`` / ``--arch`` code), and only after every
  name that needs no import has passed, so a refused file imports nothing; a
  module that is already imported is looked up without importing anything;
* everything else (``posix.system``, ``builtins.eval``, ``subprocess.Popen``...)
  is refused and named in the error.

torch's own weights-only unpickler still does the loading, so anything this
scan misses is refused there rather than executed.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickletools
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from deadrelu.errors import CheckpointError
from deadrelu.loading.allowlist import MAX_PICKLE_STACK, Role, code_folders, may_import
from deadrelu.loading.archive import ZIP_MAGIC, open_checked
from deadrelu.loading.imports import extra_sys_path, one_line

_STRING_OPS = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
    }
)
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
# Opcodes that fetch a callable from copyreg's extension registry: no legitimate
# torch.save output uses them, and they would hide a global from this scan.
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
# Opcodes that put items into the container below them on the stack.
_FILL_OPS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_NEW_CONTAINER_OPS = frozenset({"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "LIST", "DICT", "FROZENSET"})
_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_MARK = object()
_MAX_PICKLES_LEGACY = 5  # magic, protocol, sys info, the object, storage keys
_MAX_GLOBALS = 10_000  # distinct globals; real checkpoints name at most hundreds
_FUNCTIONAL_MODULES = frozenset({"torch.nn.functional", "torch._C._nn"})


@dataclass(frozen=True)
class PickleGlobal:
    """One global the pickle names, as ``module`` and (possibly dotted) ``name``."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class PickleScan:
    """What a static read of the pickle found."""

    globals: list[PickleGlobal] = field(default_factory=list)
    called: set[PickleGlobal] = field(default_factory=set)  # see the module docstring
    ext_codes: bool = False
    protocol: int = 0  # highest PROTO seen; torch's safe unpickler reads protocol 2 reliably
    legacy: bool = False  # the pre-1.6, non-zip torch.save format


class _TooComplex(Exception):
    """The pickle outgrows the bounds real checkpoints stay within."""


def scan_checkpoint(path: Path) -> PickleScan:
    """Statically list the globals of a ``torch.save`` file (zip or legacy format).

    Raises:
        CheckpointError: the pickle cannot be parsed (truncated or corrupt), or the
            archive holds members a torch.save file does not (see
            :mod:`deadrelu.loading.archive`).
    """
    with path.open("rb") as stream:
        return scan_stream(stream, str(path))


def scan_stream(stream: BinaryIO, name: str) -> PickleScan:
    """Like :func:`scan_checkpoint`, for an open binary stream; ``name`` is used in messages."""
    try:
        start = stream.read(len(ZIP_MAGIC))
        stream.seek(0)
        if start == ZIP_MAGIC:  # decided as torch.load decides, not as zipfile would
            with open_checked(stream, "pickle", name) as archive:
                pickles = archive.names(Role.PICKLE)
                if not pickles:
                    raise CheckpointError(
                        f"{name} is a zip archive without a data.pkl record, so not a torch.save file",
                        "pass a checkpoint written by torch.save, torch.jit.save or torch.export.save",
                    )
                return _scan_pickles(pickletools.genops(archive.read(m)) for m in pickles)
        stream.seek(0)
        scan = _scan_pickles(_sequential(stream))
        scan.legacy = True
        return scan
    except CheckpointError:
        raise
    except _TooComplex as exc:
        raise CheckpointError(
            f"refusing to load {name}: its pickle {exc}, far beyond any real checkpoint",
            "re-save the checkpoint with torch.save, or re-download it",
        ) from exc
    except (ValueError, EOFError, zipfile.BadZipFile, OSError, KeyError) as exc:
        raise CheckpointError(
            f"{name} looks truncated or corrupt: its pickle cannot be read ({one_line(exc)})",
            "re-save or re-download the checkpoint",
        ) from exc


def _sequential(stream: Any) -> Iterator[Iterator[tuple[Any, Any, Any]]]:
    # The legacy (pre-1.6) format is several pickles back to back, then raw
    # storage bytes; the model itself is the fourth.
    for _ in range(_MAX_PICKLES_LEGACY):
        position = stream.tell()
        if not stream.read(1):
            return
        stream.seek(position)
        yield pickletools.genops(stream)


def _scan_pickles(pickles: Iterator[Iterator[tuple[Any, Any, Any]]]) -> PickleScan:
    scan = PickleScan()
    seen: dict[PickleGlobal, None] = {}
    for ops in pickles:
        _Simulator(scan, seen).run(ops)
    scan.globals = list(seen)
    return scan


class _Built:
    """A simulated object: which globals it was built from (mutable, shared through the memo)."""

    __slots__ = ("refs", "size")

    def __init__(self, refs: set[PickleGlobal], size: int | None = None) -> None:
        self.refs = refs
        self.size = size  # number of items, for tuples


def _refs(value: Any) -> set[PickleGlobal]:
    if isinstance(value, PickleGlobal):
        return {value}
    if isinstance(value, _Built):
        return value.refs
    return set()


def _built(values: Sequence[Any], size: int | None = None) -> _Built | None:
    refs: set[PickleGlobal] = set()
    for value in values:
        refs |= _refs(value)
    return _Built(refs, size) if refs or size is not None else None


class _Simulator:
    """Tracks just enough of the unpickler's stack to know what each call acts on.

    Values are strings (to name ``STACK_GLOBAL`` targets), globals, ``_Built``
    objects carrying the globals they were made from, or ``None`` for plain data.
    """

    def __init__(self, scan: PickleScan, seen: dict[PickleGlobal, None]) -> None:
        self.scan = scan
        self.seen = seen
        self.stack: list[Any] = []
        self.memo: dict[Any, Any] = {}
        self.memo_count = 0

    def run(self, ops: Iterator[tuple[Any, Any, Any]]) -> None:
        for opcode, arg, _pos in ops:
            if opcode.name == "STOP":
                return
            self.step(opcode, arg)
            if len(self.stack) > MAX_PICKLE_STACK or len(self.memo) > MAX_PICKLE_STACK:
                raise _TooComplex(f"holds more than {MAX_PICKLE_STACK:,} pending objects")

    def step(self, opcode: Any, arg: Any) -> None:
        name = opcode.name
        stack = self.stack
        if name in _STRING_OPS:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            ref = self.record(module, attr)
            if name == "INST":  # INST both names a class and calls it on the marked items
                items = self.pop_to_mark()
                self.call(ref, *items)
            else:
                stack.append(ref)
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            stack.append(self.record(module, attr))
        elif name == "MEMOIZE":
            self.remember(self.memo_count, self.top())
            self.memo_count += 1
        elif name in _PUT_OPS:
            self.remember(arg, self.top())
        elif name in _GET_OPS:
            stack.append(self.memo.get(arg))
        elif name == "REDUCE":
            args = self.pop()
            self.call(self.pop(), args)
        elif name in ("NEWOBJ", "NEWOBJ_EX"):  # cls.__new__(cls, *args): no __init__
            extra = [self.pop() for _ in range(1 if name == "NEWOBJ" else 2)]
            cls = self.pop()
            if any(not (isinstance(e, _Built) and e.size == 0) for e in extra):
                self.call(cls, *extra)  # __new__ runs with arguments from the file
            else:
                stack.append(_built([cls]))
        elif name == "OBJ":
            items = self.pop_to_mark()
            self.call(*(items or [None]))
        elif name in _TUPLE_SIZES:
            size = _TUPLE_SIZES[name]
            items = [self.pop() for _ in range(size)]
            stack.append(_built(items, size))
        elif name == "TUPLE":
            items = self.pop_to_mark()
            stack.append(_built(items, len(items)))
        elif name in _NEW_CONTAINER_OPS:
            # Always an object of its own, even when empty: the memo shares it, and
            # whatever is put into it later must be seen wherever it is used.
            items = self.pop_to_mark() if name in ("LIST", "DICT", "FROZENSET") else []
            container = _built(items) or _Built(set())
            stack.append(container)
        elif name in _FILL_OPS:
            if name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                items = self.pop_to_mark()
            elif name == "SETITEM":
                items = [self.pop(), self.pop()]
            else:  # APPEND, BUILD
                items = [self.pop()]
            self.fill(items)
        elif name in _EXT_OPS:
            self.scan.ext_codes = True
            stack.append(None)
        elif name == "PROTO":
            self.scan.protocol = max(self.scan.protocol, int(arg))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "DUP":
            stack.append(self.top())
        else:
            self.generic(opcode)

    def call(self, target: Any, *args: Any) -> None:
        """``target(*args)`` with arguments from the file: every global involved counts as called."""
        result = _built([target, *args])
        if result is not None:
            self.scan.called |= result.refs
        self.stack.append(result)

    def fill(self, items: list[Any]) -> None:
        """Items stored into the object on top of the stack: it now carries their globals."""
        refs: set[PickleGlobal] = set()
        for item in items:
            refs |= _refs(item)
        if not refs:
            return
        target = self.top()
        if isinstance(target, _Built):
            target.refs |= refs
        elif self.stack and target is not _MARK:
            self.stack[-1] = _Built(refs | _refs(target))

    def remember(self, key: Any, value: Any) -> None:
        if value is not None and value is not _MARK:
            self.memo[key] = value

    def generic(self, opcode: Any) -> None:
        """Apply an opcode's documented stack effect; the result carries the globals it consumed."""
        before = list(opcode.stack_before)
        consumed: list[Any] = []
        if pickletools.markobject in before:
            consumed = self.pop_to_mark()
            for _ in range(before.index(pickletools.markobject)):
                consumed.append(self.pop())
        else:
            consumed = [self.pop() for _ in before]
        after = len(opcode.stack_after)
        if after:
            self.stack.append(_built(consumed))
            self.stack.extend(None for _ in range(after - 1))

    def record(self, module: Any, name: Any) -> PickleGlobal | None:
        if not isinstance(module, str) or not isinstance(name, str):
            return None
        ref = _normalise(module, name)
        if ref not in self.seen:
            if len(self.seen) >= _MAX_GLOBALS:
                raise _TooComplex(f"names more than {_MAX_GLOBALS:,} different globals")
            self.seen[ref] = None
        return ref

    def top(self) -> Any:
        return self.stack[-1] if self.stack else None

    def pop(self) -> Any:
        return self.stack.pop() if self.stack else None

    def pop_to_mark(self) -> list[Any]:
        items: list[Any] = []
        while self.stack:
            item = self.stack.pop()
            if item is _MARK:
                break
            items.append(item)
        items.reverse()
        return items


def _normalise(module: str, name: str) -> PickleGlobal:
    # Protocol 2 pickles use Python 2 names (``__builtin__ set``); map them the
    # way the unpickler will, so the allowlist check sees the real object.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return PickleGlobal(module, name)


def allowed_globals(
    path: Path | str,
    scan: PickleScan,
    *,
    import_paths: Sequence[str | Path] = (),
    arch: str | None = None,
) -> list[tuple[Callable[..., Any], str]]:
    """The extra globals ``torch.load(weights_only=True)`` needs for this file.

    Args:
        path: the file, for messages.
        scan: what :func:`scan_checkpoint` found.
        import_paths, arch: the user's code, which alone may be imported to look
            a class up (see :func:`deadrelu.loading.allowlist.may_import`).

    Returns:
        ``(object, dotted_name)`` pairs for ``torch.serialization.safe_globals``;
        empty for plain state dicts.

    Raises:
        CheckpointError: a global is not a module class, or is called (unsafe; names
            it and points at ``--trust-checkpoint``), or a module class cannot be
            looked up without importing code deadrelu may not import (names it and
            points at ``--import-path``).
    """
    if scan.ext_codes:
        raise CheckpointError(
            f"{path} uses pickle extension codes, which hide the globals it loads",
            _TRUST_FIX,
        )
    allowed_by_torch = default_allowed()
    allowed: list[tuple[Callable[..., Any], str]] = []
    unsafe: list[str] = []
    unimportable: list[tuple[PickleGlobal, str]] = []

    def classify(ref: PickleGlobal, found: bool, obj: Any, reason: str) -> None:
        if not found:
            if reason == "unsafe":
                unsafe.append(ref.dotted)
            else:
                unimportable.append((ref, reason))
        elif not (_is_module_class(obj) or _is_functional(obj)):
            unsafe.append(ref.dotted)
        elif ref in scan.called:
            what = "a model class" if _is_module_class(obj) else "a function"
            unsafe.append(f"{ref.dotted} ({what}, but called with arguments from the file)")
        else:
            allowed.append((obj, ref.dotted))

    # First everything that can be decided without importing: a file refused for
    # one global never gets to run the import of the user's module for another.
    to_import: list[PickleGlobal] = []
    for ref in scan.globals:
        if ref.dotted in allowed_by_torch:
            continue
        if ref.module in sys.modules or not may_import(
            ref.module, import_paths=import_paths, arch=arch
        ):
            classify(ref, *_resolve(ref, allow_import=False))
        else:
            to_import.append(ref)
    _raise_if_refused(path, unsafe, unimportable)
    with extra_sys_path(code_folders(import_paths, arch)):
        for ref in to_import:
            classify(ref, *_resolve(ref, allow_import=True))
    _raise_if_refused(path, unsafe, unimportable)
    return allowed


def _raise_if_refused(
    path: Path | str, unsafe: list[str], unimportable: list[tuple[PickleGlobal, str]]
) -> None:
    if unsafe:
        listed = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise CheckpointError(
            f"refusing to load {path}: its pickle uses {listed}, which could run code when "
            "unpickled (only model classes and tensors are allowed)",
            _TRUST_FIX,
        )
    if unimportable:
        ref, reason = unimportable[0]
        if reason == _NOT_IMPORTED:
            raise CheckpointError(
                f"{path} pickles class {ref.dotted}, and deadrelu does not import {ref.module} on "
                "a file's behalf (only torch and your --import-path/--arch code)",
                _import_fix(ref, reason),
            )
        raise CheckpointError(
            f"{path} pickles class {ref.dotted}, which cannot be imported ({reason})",
            _import_fix(ref, reason),
        )


_TRUST_FIX = (
    "pass --trust-checkpoint to unpickle it fully (this runs code from the file; "
    "only do it if you trust where it came from), or load a state dict with --arch instead"
)
_NOT_IMPORTED = "not the user's code"


def _import_fix(ref: PickleGlobal, reason: str) -> str:
    if ref.module == "__main__":
        return (
            f"the class was defined in the script that saved the file; move {ref.name} into a "
            f"module and pass --import-path DIR, or save model.state_dict() and use --arch"
        )
    if "has no attribute" in reason:
        return (
            f"{ref.module} no longer defines {ref.name}; use the version of the code the file was "
            "saved with, or save a state dict and use --arch"
        )
    top = ref.module.split(".")[0]
    return (
        f"pass --import-path DIR with the directory that contains the {top!r} package or module "
        "(or --trust-checkpoint if you trust the file)"
    )


def _resolve(ref: PickleGlobal, *, allow_import: bool) -> tuple[bool, Any, str]:
    """Look ``ref`` up; (found, object, reason-if-not). Imports only when ``allow_import``
    (the caller has checked :func:`may_import`); an imported module is only read."""
    module = sys.modules.get(ref.module)
    if module is None:
        if ref.module.split(".")[0] in sys.stdlib_module_names:
            # No stdlib module defines a model class; never import one for a file.
            return False, None, "unsafe"
        if not allow_import:
            return False, None, _NOT_IMPORTED
        try:
            module = importlib.import_module(ref.module)
        except Exception as exc:
            return False, None, one_line(exc)
    obj: Any = module
    for part in ref.name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = "the running program" if ref.module == "__main__" else ref.module
            return False, None, f"{where} has no attribute {ref.name!r}"
    return True, obj, ""


def _is_module_class(obj: Any) -> bool:
    import torch.nn as nn

    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _is_functional(obj: Any) -> bool:
    return (
        callable(obj)
        and not isinstance(obj, type)
        and getattr(obj, "__module__", None) in _FUNCTIONAL_MODULES
    )


def default_allowed() -> set[str]:
    """Globals torch's weights-only unpickler accepts without being told (tensor rebuilding)."""
    try:
        from torch import _weights_only_unpickler as wou

        names = set(wou._get_allowed_globals())
        names |= set(wou._get_user_allowed_globals())
        return names
    except (ImportError, AttributeError):
        # Private API moved: fall back to what a tensor/module pickle needs.
        return {
            "collections.OrderedDict",
            "builtins.set",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter",
            "torch.nn.parameter.Parameter",
            "torch.Size",
            "torch.device",
        } | {
            f"torch.{kind}Storage"
            for kind in (
                "Float",
                "Double",
                "Half",
                "BFloat16",
                "Long",
                "Int",
                "Short",
                "Char",
                "Byte",
                "Bool",
            )
        }

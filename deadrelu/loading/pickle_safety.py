"""Decide, without executing anything, which pickle globals a checkpoint may use.

``torch.load(weights_only=True)`` refuses every global outside a small
allowlist of tensor-rebuilding helpers, which makes it safe, but also refuses
whole pickled models (``torch.save(model)``): their classes are not on the list.
We widen the list per file, and only as far as that file needs:

* the pickle is *read* with :func:`pickletools.genops` (opcodes are parsed,
  never run) to find every ``GLOBAL`` / ``STACK_GLOBAL`` it names;
* a name is allowed only if it resolves to an ``nn.Module`` subclass (or a
  ``torch.nn.functional`` function, which modules such as
  ``TransformerEncoderLayer`` keep as attributes), and the pickle only ever
  *allocates* such classes (``NEWOBJ``), never calls them (``REDUCE``), so
  no constructor runs with arguments chosen by the file;
* everything else (``posix.system``, ``builtins.eval``, ``subprocess.Popen``...)
  is refused and named in the error.

torch's own weights-only unpickler still does the loading, so anything this
scan misses is refused there rather than executed. Modules are imported only to
look the names up; standard-library modules are never imported on a file's
behalf (none of them define ``nn.Module`` subclasses, and some, like
``antigravity``, have side effects).
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickletools
import re
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from deadrelu.errors import CheckpointError
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
_MARK = object()
_MAX_PICKLES_LEGACY = 5  # magic, protocol, sys info, the object, storage keys
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
    called: set[PickleGlobal] = field(default_factory=set)  # used as REDUCE/OBJ/INST callables
    ext_codes: bool = False
    protocol: int = 0  # highest PROTO seen; torch's safe unpickler reads protocol 2 reliably
    legacy: bool = False  # the pre-1.6, non-zip torch.save format


def scan_checkpoint(path: Path) -> PickleScan:
    """Statically list the globals of a ``torch.save`` file (zip or legacy format).

    Raises:
        CheckpointError: the pickle cannot be parsed (truncated or corrupt).
    """
    with path.open("rb") as stream:
        return scan_stream(stream, str(path))


def scan_stream(stream: BinaryIO, name: str) -> PickleScan:
    """Like :func:`scan_checkpoint`, for an open binary stream; ``name`` is used in messages."""
    try:
        if zipfile.is_zipfile(stream):
            stream.seek(0)
            with zipfile.ZipFile(stream) as archive:
                # Every candidate record is scanned, not just the one we think
                # torch will pick: a crafted archive could hold several.
                members = _data_pkl_members(archive)
                if not members:
                    raise CheckpointError(
                        f"{name} is a zip archive without a data.pkl record, so not a torch.save file",
                        "pass a checkpoint written by torch.save, torch.jit.save or torch.export.save",
                    )
                return _scan_pickles(pickletools.genops(archive.read(m)) for m in members)
        stream.seek(0)
        scan = _scan_pickles(_sequential(stream))
        scan.legacy = True
        return scan
    except CheckpointError:
        raise
    except (ValueError, EOFError, zipfile.BadZipFile, OSError, KeyError) as exc:
        raise CheckpointError(
            f"{name} looks truncated or corrupt: its pickle cannot be read ({one_line(exc)})",
            "re-save or re-download the checkpoint",
        ) from exc


def _data_pkl_members(archive: zipfile.ZipFile) -> list[str]:
    return [n for n in archive.namelist() if re.fullmatch(r"([^/]+/)?data\.pkl", n)]


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
    for ops in pickles:
        _Simulator(scan).run(ops)
    return scan


class _Simulator:
    """Tracks just enough of the unpickler's stack to know what each opcode acts on.

    Only strings and globals are kept as values (everything else is ``None``),
    which is all that is needed to name ``STACK_GLOBAL`` targets and to see
    which globals are called (``REDUCE``) rather than merely allocated.
    """

    def __init__(self, scan: PickleScan) -> None:
        self.scan = scan
        self.stack: list[Any] = []
        self.memo: dict[Any, Any] = {}

    def run(self, ops: Iterator[tuple[Any, Any, Any]]) -> None:
        for opcode, arg, _pos in ops:
            if opcode.name == "STOP":
                return
            self.step(opcode, arg)

    def step(self, opcode: Any, arg: Any) -> None:
        name = opcode.name
        stack = self.stack
        if name in _STRING_OPS:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            ref = self.record(module, attr)
            if name == "INST":  # INST both names a class and calls it on the marked items
                self.pop_to_mark()
                self.called(ref)
                stack.append(None)
            else:
                stack.append(ref)
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            stack.append(self.record(module, attr))
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in _PUT_OPS:
            self.memo[arg] = self.top()
        elif name in _GET_OPS:
            stack.append(self.memo.get(arg))
        elif name == "REDUCE":
            self.pop()
            self.called(self.pop())
            stack.append(None)
        elif name in ("NEWOBJ", "NEWOBJ_EX"):  # cls.__new__(cls, ...): allocation, no __init__
            for _ in range(2 if name == "NEWOBJ" else 3):
                self.pop()
            stack.append(None)
        elif name == "OBJ":
            items = self.pop_to_mark()
            self.called(items[0] if items else None)
            stack.append(None)
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

    def generic(self, opcode: Any) -> None:
        """Apply an opcode's documented stack effect, keeping only the depth right."""
        before = list(opcode.stack_before)
        if pickletools.markobject in before:
            self.pop_to_mark()
            for _ in range(before.index(pickletools.markobject)):
                self.pop()
        else:
            for _ in before:
                self.pop()
        self.stack.extend(None for _ in opcode.stack_after)

    def record(self, module: Any, name: Any) -> PickleGlobal | None:
        if not isinstance(module, str) or not isinstance(name, str):
            return None
        ref = _normalise(module, name)
        if ref not in self.scan.globals:
            self.scan.globals.append(ref)
        return ref

    def called(self, target: Any) -> None:
        if isinstance(target, PickleGlobal):
            self.scan.called.add(target)

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
    path: Path, scan: PickleScan, *, import_paths: Sequence[str | Path] = ()
) -> list[tuple[Callable[..., Any], str]]:
    """The extra globals ``torch.load(weights_only=True)`` needs for this file.

    Returns:
        ``(object, dotted_name)`` pairs for ``torch.serialization.safe_globals``;
        empty for plain state dicts.

    Raises:
        CheckpointError: a global is not a module class (unsafe; names it and
            points at ``--trust-checkpoint``), or a module class cannot be imported
            (names it and points at ``--import-path``).
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
    with extra_sys_path(import_paths):
        for ref in scan.globals:
            if ref.dotted in allowed_by_torch:
                continue
            found, obj, reason = _resolve(ref)
            if not found:
                if reason == "unsafe":
                    unsafe.append(ref.dotted)
                else:
                    unimportable.append((ref, reason))
                continue
            if _is_module_class(obj):
                if ref in scan.called:
                    unsafe.append(f"{ref.dotted} (a model class, but called with arguments)")
                else:
                    allowed.append((obj, ref.dotted))
            elif _is_functional(obj):
                allowed.append((obj, ref.dotted))
            else:
                unsafe.append(ref.dotted)
    if unsafe:
        listed = ", ".join(unsafe[:5]) + (f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else "")
        raise CheckpointError(
            f"refusing to load {path}: its pickle uses {listed}, which could run code when "
            "unpickled (only model classes and tensors are allowed)",
            _TRUST_FIX,
        )
    if unimportable:
        ref, reason = unimportable[0]
        raise CheckpointError(
            f"{path} pickles class {ref.dotted}, which cannot be imported ({reason})",
            _import_fix(ref, reason),
        )
    return allowed


_TRUST_FIX = (
    "pass --trust-checkpoint to unpickle it fully (this runs code from the file; "
    "only do it if you trust where it came from), or load a state dict with --arch instead"
)


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
    return f"pass --import-path DIR with the directory that contains the {top!r} package or module"


def _resolve(ref: PickleGlobal) -> tuple[bool, Any, str]:
    """Look ``ref`` up; returns (found, object, reason-if-not)."""
    module = sys.modules.get(ref.module)
    if module is None:
        if ref.module.split(".")[0] in sys.stdlib_module_names:
            # Never import stdlib modules for a file: none defines a module
            # class, and importing some has side effects.
            return False, None, "unsafe"
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

"""Load a model file of any common PyTorch format into an ``nn.Module``.

The format is decided by the file's *content* (zip members, magic bytes), not by
its extension, since ``.pt``, ``.pth``, ``.bin`` and ``.ckpt`` are used for all
of them. Invariants: the file is only ever opened for reading; nothing in it is
unpickled beyond torch's weights-only allowlist plus the module classes it
names (see :mod:`deadrelu.loading.pickle_safety`) unless the caller passes
``trust_checkpoint=True``; every failure a user can cause is a
:class:`~deadrelu.errors.CheckpointError` or :class:`~deadrelu.errors.ConfigError`
naming the file or value and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import struct
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import CheckpointError, ConfigError
from deadrelu.loading.archive import ZIP_MAGIC
from deadrelu.loading.extras import require
from deadrelu.loading.imports import exits_refused, extra_sys_path, one_line, resolve_object

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMATS = ("pickle", "state_dict", "safetensors", "torchscript", "export", "transformers")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pt2", ".tar", ".safetensors")

_EXPORT_NOTE = (
    "torch.export program: its layers are flattened into one graph of aten ops; activation "
    "ops in that graph (aten.relu, aten.gelu, ...) are seen and named by the module path they "
    "were traced from (nn_module_stack), but activations that export fused or decomposed into "
    "other ops, or that run inside custom or opaque ops, are not seen"
)
_TORCHSCRIPT_NOTE = (
    "TorchScript module: it runs in the TorchScript interpreter, where Python forward hooks "
    "cannot be attached, so deadrelu.scan refuses it; scan the original nn.Module instead"
)
_OTHER_FORMATS = {
    b"\x89HDF\r\n\x1a\n": "an HDF5 (Keras) file",
    b"GGUF": "a GGUF (llama.cpp) file",
    b"\x93NUMPY": "a NumPy array file (pass it as --data?)",
}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to scan, and how it was obtained.

    Attributes:
        model: the loaded module (not moved to eval mode; that is the scanner's job).
        format: one of :data:`FORMATS`.
        description: one line for the report header, e.g. ``"Net from model.pt (state_dict)"``.
        notes: things done to make it load (prefixes stripped, keys ignored) or caveats.
        missing_keys: keys the model expected but the file lacked, tolerated
            because they are ``num_batches_tracked`` buffers.
        unexpected_keys: likewise for keys in the file that the model lacks.
        recipe: how the model was trained, when the checkpoint says (optimizer, lr,
            schedule, step: see :mod:`deadrelu.loading.recipe`), else ``None``.
    """

    model: nn.Module
    format: str
    description: str
    notes: tuple[str, ...] = ()
    missing_keys: tuple[str, ...] = ()
    unexpected_keys: tuple[str, ...] = ()
    recipe: Mapping[str, Any] | None = None


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    import_paths: Sequence[str | Path] = (),
    trust_checkpoint: bool = False,
    map_location: Any = "cpu",
    dtype: str | None = None,
    device_map: Any = None,
) -> LoadedModel:
    """Load a whole-model pickle, state dict, safetensors, TorchScript or torch.export file,
    or a Hugging Face ``save_pretrained`` directory (see :mod:`deadrelu.loading.hf`).

    Args:
        path: the model file; never modified.
        arch: ``package.module:Factory`` or ``path/to/file.py:Class`` building the
            model that a state dict / safetensors file holds weights for.
        arch_kwargs: keyword arguments for the ``arch`` factory.
        import_paths: directories to search for model classes, ahead of ``sys.path``.
        trust_checkpoint: unpickle with ``weights_only=False``; runs any code the
            file contains, so only for files the user trusts.
        map_location: where tensors are loaded (as for ``torch.load``).
        dtype, device_map: for model directories only: the floating dtype and where to
            materialise the weights (see :func:`deadrelu.loading.hf.load_hf_model`).

    Returns:
        The model and how it was loaded.

    Raises:
        CheckpointError: missing, unreadable, corrupt, unsafe or mismatched file.
        ConfigError: a bad ``arch`` value.
    """
    path = Path(path)
    from deadrelu.loading.hf import hf_directory, load_hf_model

    folder = hf_directory(path)
    if folder is not None:
        return load_hf_model(folder, arch=arch, trust_checkpoint=trust_checkpoint, dtype=dtype,
                             device_map=device_map)
    _check_path(path)
    kind = _sniff(path)
    _refuse_untrusted(path, kind, trust_checkpoint)
    if trust_checkpoint and kind in ("pickle", "export", "legacy export", "torchscript"):
        warnings.warn(
            f"loading {path} without safety checks (--trust-checkpoint): "
            "code stored in the file may run",
            UserWarning,
            stacklevel=2,
        )
    if kind in ("export", "legacy export"):
        if not trust_checkpoint:
            from deadrelu.loading.export_safety import check_export_archive

            check_export_archive(path)
        return _loaded(_load_export(path), "export", path, [_EXPORT_NOTE, *_ignored_arch(arch)])
    if kind == "torchscript":
        model = _load_torchscript(path, map_location)
        return _loaded(model, "torchscript", path, [_TORCHSCRIPT_NOTE, *_ignored_arch(arch)])
    if kind == "safetensors":
        state = _load_safetensors(path, map_location)
        return _from_state_dict(
            state, "safetensors", path, arch, arch_kwargs, import_paths, map_location, []
        )
    # kind == "pickle": a torch.save file, zip or legacy.
    obj = _load_pickle(
        path, trusted=trust_checkpoint, import_paths=import_paths, arch=arch,
        map_location=map_location,
    )
    from dataclasses import replace

    from deadrelu.loading.recipe import read_recipe

    loaded = _interpret(obj, path, arch, arch_kwargs, import_paths, map_location)
    return replace(loaded, recipe=read_recipe(obj))


def sniff_format(path: str | Path) -> str:
    """The file's format from its content alone, without calling any torch loader.

    One of :data:`FORMATS`, or ``"legacy export"`` for a pre-2.8 ``.pt2`` layout.

    Raises:
        CheckpointError: missing, empty, a directory, or not a PyTorch model file.
    """
    path = Path(path)
    _check_path(path)
    return _sniff(path)


def _refuse_untrusted(path: Path, kind: str, trusted: bool) -> None:
    """Formats torch can only load by running the file's code need ``--trust-checkpoint``."""
    from deadrelu.loading.allowlist import TRUST_ONLY

    if trusted or kind not in TRUST_ONLY:
        return
    what = {"torchscript": "a TorchScript archive", "legacy export": (
        "a torch.export archive in the pre-2.8 layout (serialized_exported_program.json)")}[kind]
    fix = (
        "pass --trust-checkpoint to load it (this runs code from the file; only do it if you "
        "trust where it came from)"
    )
    if kind == "legacy export":
        fix = f"re-export it with torch.export.save from torch 2.8 or newer, or {fix}"
    raise CheckpointError(f"refusing to load {path}: it is {what}, and {TRUST_ONLY[kind]}", fix)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(
            f"model file {path} does not exist",
            "check the path (relative paths start at the working directory)",
        )
    if path.is_dir():
        candidates = sorted(p.name for p in path.iterdir() if p.suffix in TORCH_SUFFIXES)[:3]
        hint = f" such as {', '.join(candidates)}" if candidates else ""
        raise CheckpointError(
            f"model path {path} is a directory", f"pass the model file inside it{hint}"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"model file {path} is empty (0 bytes)", "re-save or re-download the checkpoint"
        )


def _sniff(path: Path) -> str:
    """Classify the file by content: export, torchscript, pickle or safetensors."""
    with path.open("rb") as stream:
        head = stream.read(16)
    size = path.stat().st_size
    if head.startswith(b"PK") and not head.startswith(ZIP_MAGIC):
        # torch.load reads such a file as a legacy pickle, zipfile as an archive:
        # no check could read it the way torch will.
        raise CheckpointError(
            f"{path} looks truncated or corrupt: it starts like a zip archive but not with a "
            "file record, as torch.save writes it",
            "re-save or re-download the checkpoint",
        )
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(
                f"{path} looks truncated or corrupt: it starts like a zip archive but cannot be "
                f"read ({one_line(exc)})",
                "re-save or re-download the checkpoint",
            ) from exc
        return _zip_kind(path, names)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < size and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":  # pickle PROTO opcode: a legacy (pre-zip) torch.save file
        return "pickle"
    if path.name.endswith(".index.json"):
        raise CheckpointError(
            f"{path} is the index of a sharded checkpoint, which deadrelu cannot load from the CLI",
            "load the model in Python and pass it to the library API, or save it as one file",
        )
    for magic, what in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise CheckpointError(f"{path} is {what}, not a PyTorch model", _FORMAT_FIX)
    if path.suffix.lower() in TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path} looks truncated or corrupt: it is not a zip, pickle or safetensors file",
            "re-save or re-download the checkpoint",
        )
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an ONNX model, which deadrelu cannot scan", _FORMAT_FIX)
    raise CheckpointError(
        f"{path} is not a PyTorch model file (unrecognised content, extension {path.suffix or 'none'!r})",
        _FORMAT_FIX,
    )


_FORMAT_FIX = (
    "pass a file written by torch.save, torch.jit.save, torch.export.save or safetensors "
    "(.pt, .pth, .bin, .ckpt, .pt2, .safetensors)"
)


def _zip_kind(path: Path, names: list[str]) -> str:
    # Markers are matched without regard to case, as torch's zip reader looks
    # names up; the format's allowlist then decides what the archive may hold.
    bases = [n.lower().partition("/")[2] or n.lower() for n in names]
    if any(b == "serialized_exported_program.json" for b in bases):
        return "legacy export"
    if any(b == "archive_format" for b in bases):
        return "export"
    if any(b == "constants.pkl" or b.startswith("code/") for b in bases):
        return "torchscript"
    if any(b == "data.pkl" for b in bases):
        return "pickle"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise CheckpointError(
        f"{path} is a zip archive but not a PyTorch checkpoint (it holds {shown})", _FORMAT_FIX
    )


def _load_pickle(
    path: Path,
    *,
    trusted: bool,
    import_paths: Sequence[str | Path],
    arch: str | None,
    map_location: Any,
) -> Any:
    import torch

    from deadrelu.loading.hf import refuse_pickled_transformers
    from deadrelu.loading.pickle_safety import allowed_globals, scan_checkpoint

    scan = None
    try:
        if trusted:
            with extra_sys_path(import_paths), torch_quiet():
                return torch.load(path, map_location=map_location, weights_only=False)
        scan = scan_checkpoint(path)
        refuse_pickled_transformers(path, scan.globals)
        allowed = allowed_globals(path, scan, import_paths=import_paths, arch=arch)
        if allowed and scan.legacy:
            # The legacy format stores module source code through persistent
            # ids, which the weights-only unpickler rejects outright.
            raise CheckpointError(
                f"{path} holds a whole model in the legacy (pre-1.6) torch.save format, which "
                "cannot be loaded safely",
                "re-save it with a current torch (or save its state dict and use --arch), or pass "
                "--trust-checkpoint if you trust the file",
            )
        if allowed and not hasattr(torch.serialization, "safe_globals"):
            raise CheckpointError(
                f"{path} holds a whole pickled model, which this torch {torch.__version__} cannot "
                "load safely",
                "upgrade torch to 2.5 or newer, or pass --trust-checkpoint if you trust the file",
            )
        with extra_sys_path(import_paths), warnings.catch_warnings(), torch_quiet():
            # Our own error explains protocol problems; torch's warning would repeat it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if allowed:
                with torch.serialization.safe_globals([*allowed]):
                    return torch.load(path, map_location=map_location, weights_only=True)
            return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        if scan is not None and scan.protocol > 2:
            raise CheckpointError(
                f"{path} was pickled with protocol {scan.protocol}, which torch's safe "
                f"(weights-only) loader cannot read ({_unpickling_reason(exc)})",
                "re-save it with torch.save's default protocol, or pass --trust-checkpoint if "
                "you trust the file",
            ) from exc
        raise CheckpointError(
            f"refusing to load {path}: torch's weights-only unpickler rejected it "
            f"({_unpickling_reason(exc)})",
            _TRUST_FIX,
        ) from exc
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} looks truncated or corrupt: torch.load failed ({one_line(exc)})",
            "re-save or re-download the checkpoint",
        ) from exc
    except SystemExit as exc:  # a trusted file's code may call sys.exit
        raise _exited(path, exc) from None
    except Exception as exc:  # unpickling user classes can raise anything
        raise CheckpointError(
            f"loading {path} raised {type(exc).__name__}: {one_line(exc)}",
            "check that the model's code is the version the file was saved with",
        ) from exc


def _exited(path: Path, exc: SystemExit) -> CheckpointError:
    return CheckpointError(
        f"loading {path} called sys.exit({exc.code!r}): code in the file stopped the load",
        "do not load this file, or load it in Python to see what it runs",
    )


_TRUST_FIX = (
    "pass --trust-checkpoint to unpickle it fully (this runs code from the file; only do it if "
    "you trust where it came from)"
)


def _unpickling_reason(exc: BaseException) -> str:
    """The informative line of torch's several-paragraph weights-only error."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest
            if index + 1 < len(lines):
                return lines[index + 1]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return one_line(exc)


def _load_safetensors(path: Path, map_location: Any) -> dict[str, torch.Tensor]:
    load_file = require("safetensors.torch", "safetensors", f"{path} is a safetensors file but the "
                        "safetensors package is not installed", error=CheckpointError).load_file
    try:
        return dict(load_file(str(path), device=_device_of(map_location) or "cpu"))
    except Exception as exc:
        raise CheckpointError(
            f"{path} looks truncated or corrupt: safetensors cannot read it ({one_line(exc)})",
            "re-save or re-download the checkpoint",
        ) from exc


def _load_torchscript(path: Path, map_location: Any) -> nn.Module:
    import torch

    try:
        with torch_quiet():
            return torch.jit.load(str(path), map_location=_device_of(map_location))
    except SystemExit as exc:
        raise _exited(path, exc) from None
    except Exception as exc:
        raise CheckpointError(
            f"{path} is a TorchScript archive that cannot be loaded ({one_line(exc)})",
            "re-export it with torch.jit.save from this torch version, or re-download it",
        ) from exc


def _load_export(path: Path) -> nn.Module:
    import torch

    try:
        with torch_quiet():
            program = torch.export.load(str(path))
            return program.module()
    except SystemExit as exc:
        raise _exited(path, exc) from None
    except Exception as exc:
        raise CheckpointError(
            f"{path} is a torch.export program that cannot be loaded ({one_line(exc)})",
            "re-export it with torch.export.save from this torch version, or re-download it",
        ) from exc


def _interpret(
    obj: Any,
    path: Path,
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None,
    import_paths: Sequence[str | Path],
    map_location: Any,
) -> LoadedModel:
    from torch import nn

    from deadrelu.loading.state_dict import NESTED_KEYS, describe_container, find_nested

    found = find_nested(obj)
    if found is None:
        raise CheckpointError(
            f"{path} holds {describe_container(obj)}, not a model or state dict (looked under "
            f"{', '.join(NESTED_KEYS[:6])}, ...)",
            "save the model itself (torch.save(model)) or its state dict (torch.save(model.state_dict()))",
        )
    inner, where = found
    notes = [f"weights taken from checkpoint key {where!r}"] if where else []
    if isinstance(inner, nn.Module):
        _check_initialised(inner, path)
        return _loaded(inner, "pickle", path, [*notes, *_ignored_arch(arch)])
    return _from_state_dict(
        inner, "state_dict", path, arch, arch_kwargs, import_paths, map_location, notes
    )


def _from_state_dict(
    state: Mapping[str, torch.Tensor],
    fmt: str,
    path: Path,
    arch: str | None,
    arch_kwargs: Mapping[str, Any] | None,
    import_paths: Sequence[str | Path],
    map_location: Any,
    notes: list[str],
) -> LoadedModel:
    from deadrelu.loading.state_dict import apply_state_dict

    if arch is None:
        kind = "safetensors file" if fmt == "safetensors" else "state dict"
        fix = ("this file is a state dict; pass --arch module:Class (or path/to/file.py:Class) "
               "to build the model")
        if (path.parent / "config.json").is_file():  # a save_pretrained directory's weights
            fix = f"pass its directory {path.parent} instead (config.json there builds the model)"
        raise CheckpointError(f"{path} is a {kind} ({len(state)} tensors) and holds no model code",
                              fix)
    model = build_arch(arch, arch_kwargs, import_paths=import_paths)
    missing, unexpected, more_notes = apply_state_dict(model, state, path=path, arch=arch)
    device = _device_of(map_location)
    if device is not None and device != "cpu":
        model = model.to(device)
    return _loaded(model, fmt, path, [*notes, *more_notes], missing, unexpected)


def build_arch(
    arch: str,
    arch_kwargs: Mapping[str, Any] | None = None,
    *,
    import_paths: Sequence[str | Path] = (),
) -> nn.Module:
    """Build a model from an ``--arch`` spec.

    Raises:
        ConfigError: bad syntax, unimportable module, missing or non-callable
            attribute, a factory that raises or returns something other than a module.
    """
    from torch import nn

    factory = resolve_object(arch, option="--arch", error=ConfigError, import_paths=import_paths)
    if not callable(factory):
        raise ConfigError(
            f"--arch {arch!r} names a value of type {type(factory).__name__}, which cannot be called",
            "point --arch at a Module class or a function that returns one",
        )
    kwargs = dict(arch_kwargs or {})
    with exits_refused(f"--arch {arch!r}", ConfigError):
        try:
            with extra_sys_path(import_paths):
                model = factory(**kwargs)
        except Exception as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise ConfigError(
                f"--arch {arch!r}: calling it with ({shown}) raised {type(exc).__name__}: "
                f"{one_line(exc)}",
                "check --arch-kwargs against its signature",
            ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"--arch {arch!r} returned a value of type {type(model).__name__}, not an nn.Module",
            "point --arch at a Module class or a function that returns one",
        )
    return model


@contextlib.contextmanager
def torch_quiet() -> Iterator[None]:
    """Keep torch's log records (some with whole tracebacks) off stderr while it loads a file.

    ``torch.export.load`` logs a failed attempt with ``exc_info`` before trying
    another layout, and other loaders log warnings; deadrelu reports a load in
    one line of its own, so the records are dropped.
    """
    root = logging.getLogger("torch")
    # torch's loggers may carry handlers of their own (torch._logging sets some up):
    # silence each one that exists, and catch records of any created meanwhile at the root.
    loggers = [root] + [
        logger for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("torch.") and isinstance(logger, logging.Logger)
    ]
    disabled = [logger.disabled for logger in loggers]
    saved = root.handlers[:], root.propagate
    root.handlers, root.propagate = [logging.NullHandler()], False
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        root.handlers, root.propagate = saved
        for logger, was in zip(loggers, disabled, strict=True):
            logger.disabled = was


def _check_initialised(model: nn.Module, path: Path) -> None:
    """Refuse module objects that were allocated but never given a module's state.

    A pickle may allocate an allowed class (``NEWOBJ``) and skip its state;
    such an object has no parameter/buffer/submodule tables, and any later use
    fails far from the cause. Walks the tables directly (``__dict__``), since
    the object's own methods cannot be trusted to work.
    """
    import torch
    from torch import nn

    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [("", model)]
    while todo:
        name, module = todo.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        state = getattr(module, "__dict__", {})
        missing = [k for k in ("_parameters", "_buffers", "_modules") if not isinstance(state.get(k), dict)]
        if missing:
            where = f"its submodule {name!r}" if name else "it"
            raise CheckpointError(
                f"{path} holds a {type(module).__name__} object that was never initialised "
                f"({where} lacks {', '.join(missing)}), so it is not a saved model",
                "re-save it with torch.save(model) from a constructed model, or save its state "
                "dict and use --arch",
            )
        for table in ("_parameters", "_buffers"):
            odd = [k for k, v in state[table].items() if v is not None and not isinstance(v, torch.Tensor)]
            if odd:
                where = f"{name}.{odd[0]}" if name else str(odd[0])
                raise CheckpointError(
                    f"{path} holds a model whose {table[1:-1]} {where!r} is a "
                    f"{type(state[table][odd[0]]).__name__}, not a tensor",
                    "re-save it with torch.save(model) from a constructed model",
                )
        for child_name, child in state["_modules"].items():
            if child is None:
                continue
            child_path = f"{name}.{child_name}" if name else str(child_name)
            if not isinstance(child, nn.Module):
                raise CheckpointError(
                    f"{path} holds a model whose submodule {child_path!r} is a "
                    f"{type(child).__name__}, not a module",
                    "re-save it with torch.save(model) from a constructed model",
                )
            todo.append((child_path, child))


def _device_of(map_location: Any) -> str | None:
    """The single device ``map_location`` names, if it names one (not a dict or callable)."""
    import torch

    if isinstance(map_location, (str, torch.device)):
        return str(map_location)
    return None


def _ignored_arch(arch: str | None) -> list[str]:
    return [f"--arch {arch} ignored: the file holds a whole model"] if arch else []


def _loaded(
    model: nn.Module,
    fmt: str,
    path: Path,
    notes: list[str],
    missing: tuple[str, ...] = (),
    unexpected: tuple[str, ...] = (),
) -> LoadedModel:
    from torch import nn

    if not isinstance(model, nn.Module):  # defensive: torch.jit/export return modules
        raise CheckpointError(f"{path} did not produce an nn.Module", _FORMAT_FIX)
    count = sum(p.numel() for p in model.parameters())
    if fmt == "export":
        name = "exported program"
    else:
        name = getattr(model, "original_name", None) or type(model).__name__
    description = f"{name} from {path.name} ({fmt}, {count:,} parameters)"
    return LoadedModel(model, fmt, description, tuple(notes), missing, unexpected)


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    import_paths: Sequence[str | Path] = (),
) -> list[str]:
    """Load the weights in ``path`` into ``model`` in place (no new module is built).

    Accepts state dicts (also nested under ``state_dict``/``model``... or with
    ``module.`` prefixes), safetensors files and whole-model pickles (their
    ``state_dict()`` is used).

    Returns:
        Notes on what was adjusted (prefixes stripped, nested key used).

    Raises:
        CheckpointError: unreadable file, TorchScript/export programs (no state dict to
            reuse), keys or shapes that do not fit ``model``.
    """
    from torch import nn

    from deadrelu.loading.state_dict import apply_state_dict, describe_container, find_nested

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "check the path")
    kind = _sniff(path)
    if trust_checkpoint and kind == "pickle":
        warnings.warn(f"loading {path} without safety checks (--trust-checkpoint): "
                      "code stored in the file may run", UserWarning, stacklevel=2)
    label = arch or type(model).__name__
    notes: list[str] = []
    if kind == "safetensors":
        state: Mapping[str, Any] = _load_safetensors(path, "cpu")
    elif kind == "pickle":
        obj = _load_pickle(path, trusted=trust_checkpoint, import_paths=import_paths,
                           arch=arch, map_location="cpu")
        found = find_nested(obj)
        if found is None:
            raise CheckpointError(f"{path} holds {describe_container(obj)}, not a model or state dict",
                                  "track needs state dicts, safetensors or whole-model pickles")
        inner, where = found
        if where:
            notes.append(f"weights taken from checkpoint key {where!r}")
        if isinstance(inner, nn.Module):
            _check_initialised(inner, path)
        state = inner.state_dict() if isinstance(inner, nn.Module) else inner
    else:
        raise CheckpointError(
            f"{path} is a {kind} program, whose weights cannot be loaded into one shared model",
            "track state-dict or safetensors checkpoints (save model.state_dict() during training)",
        )
    _, _, more = apply_state_dict(model, state, path=path, arch=label)
    return notes + more

"""Stream tensors stored in ``.pt``/``.pth``, ``.npy``, ``.npz`` and ``.safetensors`` files.

Each file is opened in a way that does not read its data up front: ``.npy``
files are memory-mapped, ``.safetensors`` files are sliced lazily, ``.pt`` files
are loaded with ``mmap=True`` where the format allows. Only ``.npz`` members are
read whole, and only when iteration reaches them (NumPy cannot map a zip
member). A folder of such files is streamed one file at a time.

Dtypes are made model-ready: floating -> float32, ``uint8`` -> float32 scaled to
[0, 1] (raw pixels), ``bool`` -> float32, other integers -> int64 (token ids
must stay integers for embeddings).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import DataError
from deadrelu.loading.extras import require
from deadrelu.loading.imports import one_line
from deadrelu.loading.source import Batch, DataSource

if TYPE_CHECKING:
    import torch

TENSOR_SUFFIXES = frozenset({".pt", ".pth", ".npy", ".npz", ".safetensors"})
INPUT_KEYS = ("x", "X", "inputs", "input", "data")
LABEL_KEYS = frozenset({"y", "Y", "label", "labels", "target", "targets"})
# Last parts of state-dict keys ("net.0.weight"): a model checkpoint passed as --data.
_PARAMETER_NAMES = frozenset(
    {"weight", "bias", "running_mean", "running_var", "num_batches_tracked", "in_proj_weight"}
)
_NPY_MAGIC = b"\x93NUMPY"
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
}


@dataclass
class ArrayFile:
    """One opened tensor file: its length, sample shape and a slicer over dim 0."""

    path: Path
    length: int
    sample_shape: tuple[int, ...] | None  # None for dict-style files
    dtype: str
    notes: list[str]
    # Called once per iteration; returns a function slicing [start, stop).
    open_slicer: Callable[[], Callable[[int, int], Batch]]

    def batches(self, batch_size: int) -> Iterator[Batch]:
        slicer = self.open_slicer()
        for start in range(0, self.length, batch_size):
            yield slicer(start, min(start + batch_size, self.length))


def open_arrays(root: Path, files: list[Path], *, batch_size: int) -> DataSource:
    """A :class:`DataSource` over one tensor file or a folder of them.

    Raises:
        DataError: unreadable file, no usable array, or files that disagree on
            sample shape or kind.
    """
    opened = [open_array_file(f) for f in files]
    first = opened[0]
    for other in opened[1:]:
        if other.sample_shape != first.sample_shape:
            raise DataError(
                f"{other.path} holds samples of shape {_shape(other.sample_shape)} but "
                f"{first.path} holds {_shape(first.sample_shape)}",
                "put only files with the same sample shape in the --data folder",
            )
    total = sum(f.length for f in opened)

    def batches() -> Iterator[Batch]:
        for file in opened:
            yield from file.batches(batch_size)

    what = f"{len(files)} files in {root}" if root.is_dir() else root.name
    shape = _shape(first.sample_shape) if first.sample_shape is not None else "dict samples"
    notes = list(dict.fromkeys(n for f in opened for n in f.notes))
    return DataSource(
        batches,
        description=f"{total:,} samples of shape {shape} ({first.dtype}) from {what}",
        num_samples=total,
        sample_shape=first.sample_shape,
        notes=notes,
    )


def open_array_file(path: Path) -> ArrayFile:
    """Open one tensor file without reading its data."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty", "re-create it, or point --data at the right file")
    try:
        if suffix == ".npy":
            return _open_npy(path)
        if suffix == ".npz":
            return _open_npz(path)
        if suffix == ".safetensors":
            return _open_safetensors(path)
        return _open_torch(path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"data file {path} cannot be read ({type(exc).__name__}: {one_line(exc)})",
            "check that it is a complete, uncorrupted file of the kind its extension says",
        ) from exc


def to_input(tensor: torch.Tensor, path: Path) -> torch.Tensor:
    """Convert a tensor slice to a model-ready dtype (see the module docstring)."""
    import torch

    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    if tensor.dtype == torch.bool or tensor.is_floating_point():
        return tensor.to(torch.float32)
    if tensor.is_complex():
        raise DataError(f"{path} holds complex numbers", "convert the data to real values")
    return tensor.to(torch.int64)


def _dtype_notes(dtype: str, path: Path) -> list[str]:
    if dtype == "uint8":
        return [f"uint8 values in {path.name} scaled to [0, 1]"]
    return []


def _from_numpy(array: Any, path: Path) -> torch.Tensor:
    import numpy as np
    import torch

    if array.dtype.kind not in "biuf":
        raise DataError(
            f"{path} holds an array of dtype {array.dtype}, not numbers",
            "save a numeric array (e.g. float32)",
        )
    # np.array copies the batch out of the memory map: tensors from read-only
    # maps would be read-only too, and the file must never be written.
    return to_input(torch.from_numpy(np.array(array)), path)


def _open_npy(path: Path) -> ArrayFile:
    import numpy as np

    # Without the magic bytes NumPy falls back to unpickling and then blames
    # "pickled (object) data", which sends the user looking for Python objects.
    if _head(path, len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise _not_that_kind(path, "a NumPy .npy file (it lacks the .npy header)", "np.save")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataError(
            f"{path} cannot be read as a NumPy array ({one_line(exc)})",
            "save a numeric array with np.save (no Python objects)",
        ) from exc
    _check_rank(array.shape, path)

    def open_slicer() -> Callable[[int, int], Batch]:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        return lambda start, stop: _from_numpy(mapped[start:stop], path)

    return ArrayFile(
        path,
        int(array.shape[0]),
        tuple(int(d) for d in array.shape[1:]),
        str(array.dtype),
        _dtype_notes(str(array.dtype), path),
        open_slicer,
    )


def _open_npz(path: Path) -> ArrayFile:
    import numpy as np

    # As for .npy: a non-zip file would otherwise be reported as pickled data.
    if not zipfile.is_zipfile(path):
        raise _not_that_kind(path, "a NumPy .npz archive (it is not a zip file)", "np.savez")
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        key = _pick_key(keys, path, allow_first=True)
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _fortran, dtype = read_header(member)
    _check_rank(shape, path, key)
    notes = _dtype_notes(str(dtype), path)
    if len(keys) > 1:
        notes.append(f"used array {key!r} of {path.name} (keys: {', '.join(keys)})")

    def open_slicer() -> Callable[[int, int], Batch]:
        with np.load(path, allow_pickle=False) as reopened:
            array = reopened[key]  # the whole member: npz cannot be memory-mapped
        return lambda start, stop: _from_numpy(array[start:stop], path)

    return ArrayFile(
        path, int(shape[0]), tuple(int(d) for d in shape[1:]), str(dtype), notes, open_slicer
    )


def _open_safetensors(path: Path) -> ArrayFile:
    safe_open = require("safetensors", "safetensors", f"{path} is a safetensors file but the "
                        "safetensors package is not installed").safe_open
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        key = _pick_key(keys, path, allow_first=False)
        view = handle.get_slice(key)
        shape = tuple(int(d) for d in view.get_shape())
        dtype = _SAFETENSORS_DTYPES.get(str(view.get_dtype()), str(view.get_dtype()).lower())
    _check_rank(shape, path, key)
    notes = [f"used tensor {key!r} of {path.name}"] if len(keys) > 1 else []
    notes += _dtype_notes(dtype, path)

    def open_slicer() -> Callable[[int, int], Batch]:
        def read(start: int, stop: int) -> Batch:
            # Re-opened per batch: safe_open handles are context managers, and
            # a generator abandoned mid-way must not leave one open.
            with safe_open(str(path), framework="pt") as h:
                return to_input(h.get_slice(key)[start:stop], path)

        return read

    return ArrayFile(path, shape[0], shape[1:], dtype, notes, open_slicer)


def _open_torch(path: Path) -> ArrayFile:
    import torch

    selected, notes = _select_tensors(_torch_load(path), path)
    if isinstance(selected, torch.Tensor):
        data = selected
        _check_rank(tuple(data.shape), path)
        dtype = str(data.dtype).removeprefix("torch.")
        return ArrayFile(
            path,
            int(data.shape[0]),
            tuple(int(d) for d in data.shape[1:]),
            dtype,
            notes + _dtype_notes(dtype, path),
            lambda: lambda start, stop: to_input(data[start:stop], path),
        )
    tensors = selected
    lengths = {k: int(v.shape[0]) if v.dim() else -1 for k, v in tensors.items()}
    if len(set(lengths.values())) != 1 or -1 in lengths.values():
        if _looks_like_state_dict(tensors):
            raise _checkpoint_as_data(path, tensors)
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise DataError(
            f"{path} holds a dict whose tensors differ in length along dim 0 ({shown})",
            "save tensors that all have one row per sample",
        )

    def slicer() -> Callable[[int, int], Batch]:
        return lambda start, stop: {k: to_input(v[start:stop], path) for k, v in tensors.items()}

    return ArrayFile(path, next(iter(lengths.values())), None, "dict of tensors", notes, slicer)


def _torch_load(path: Path) -> Any:
    import torch

    # torch.load reads anything that is not a zip as a legacy pickle, so random
    # bytes surface as e.g. UnicodeDecodeError; check the leading bytes first.
    head = _head(path, 4)
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise DataError(
            f"data file {path} looks truncated or corrupt: it starts like a zip archive "
            "but is not a complete one",
            "re-create it with torch.save, or re-download it",
        )
    if not head.startswith((b"PK", b"\x80")):  # zip, or a legacy pickle's PROTO opcode
        raise _not_that_kind(path, "a torch tensor file (not written by torch.save)", "torch.save")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # Legacy (non-zip) files cannot be mapped; they are read whole.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"data file {path} holds Python objects other than tensors, which are not loaded "
            "for safety",
            "save only tensors, e.g. torch.save(x) or torch.save({'x': x})",
        ) from exc


def _select_tensors(
    content: Any, path: Path
) -> tuple[torch.Tensor | dict[str, torch.Tensor], list[str]]:
    """The inputs in a loaded ``.pt`` object: one tensor, or a dict of them."""
    import torch

    if isinstance(content, torch.Tensor):
        return content, []
    if isinstance(content, (tuple, list)) and content and isinstance(content[0], torch.Tensor):
        note = [f"used the first of {len(content)} items in {path.name} as inputs"]
        return content[0], note if len(content) > 1 else []
    if isinstance(content, Mapping) and content:
        for key in INPUT_KEYS:
            if isinstance(content.get(key), torch.Tensor):
                return content[key], [f"used key {key!r} of {path.name} as inputs"]
        inputs = {
            str(k): v
            for k, v in content.items()
            if k not in LABEL_KEYS and isinstance(v, torch.Tensor)
        }
        if inputs and len(inputs) == len([k for k in content if k not in LABEL_KEYS]):
            dropped = sorted(str(k) for k in content if k in LABEL_KEYS)
            notes = [f"dropped label keys {', '.join(dropped)}"] if dropped else []
            return inputs, notes
    raise DataError(
        f"data file {path} holds {_describe(content)}, not input tensors",
        "save a tensor, a tuple whose first item is the inputs, or a dict of tensors",
    )


def _pick_key(keys: list[str], path: Path, *, allow_first: bool) -> str:
    for key in INPUT_KEYS:
        if key in keys:
            return key
    candidates = [k for k in keys if k not in LABEL_KEYS]
    if len(candidates) == 1 or (candidates and allow_first):
        return candidates[0]
    if _looks_like_state_dict(keys):
        raise _checkpoint_as_data(path, keys)
    listed = ", ".join(keys) if keys else "none"
    raise DataError(
        f"cannot tell which array in {path} is the input (keys: {listed})",
        f"name the input array one of {', '.join(INPUT_KEYS)}",
    )


def _check_rank(shape: tuple[int, ...], path: Path, key: str | None = None) -> None:
    if len(shape) == 0:
        where = f"{path} [{key}]" if key else str(path)
        raise DataError(
            f"{where} holds a single number, not samples",
            "save an array with one row per sample (first dimension = samples)",
        )


def _head(path: Path, size: int) -> bytes:
    with path.open("rb") as stream:
        return stream.read(size)


def _not_that_kind(path: Path, kind: str, writer: str) -> DataError:
    return DataError(
        f"data file {path} is corrupt or not {kind}",
        f"re-create it with {writer}, or point --data at the right file",
    )


def _looks_like_state_dict(keys: Any) -> bool:
    """Keys such as ``net.0.weight``: parameters of a model, not inputs."""
    return any(str(k).rsplit(".", 1)[-1] in _PARAMETER_NAMES for k in keys)


def _checkpoint_as_data(path: Path, keys: Any) -> DataError:
    names = [str(k) for k in keys]
    return DataError(
        f"data file {path} looks like a model checkpoint (a state dict of {len(names)} "
        f"tensors such as {names[0]!r}), not data",
        "pass it as the MODEL argument and point --data at the model's inputs",
    )


def _describe(content: Any) -> str:
    if isinstance(content, Mapping):
        return f"a dict with keys {', '.join(map(str, list(content)[:8]))}"
    return f"a {type(content).__name__}"


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "dict"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"

"""What deadrelu will read from a model file without ``--trust-checkpoint``: one table per format.

Safety here is an allowlist, not a list of known attacks. A zip-based model
file is read only if *every* member is named in its format's table below (exact
name, exact case, one archive folder, no name twice); each member has a role
that says how it is checked before torch sees it and how many bytes may be
decompressed for the check. A pickle may use torch's own weights-only globals,
plus model classes it only allocates and ``torch.nn.functional`` functions it
only stores (see :mod:`deadrelu.loading.pickle_safety`); a module is imported
to look such a class up only if :func:`may_import` says so from its name alone.

To support a new format, add its table to :data:`ZIP_FORMATS` (and, for a
member role not seen before, its check where the format is loaded).
"""

from __future__ import annotations

import importlib.machinery
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Role(Enum):
    """How a member is checked before torch reads it."""

    PICKLE = "pickle"  # statically scanned; only allowed globals (data.pkl of torch.save)
    TENSOR_PICKLE = "tensor pickle"  # statically scanned; torch's default globals only
    PROGRAM = "program"  # torch.export graph JSON: operator targets, shape expressions
    PAYLOAD_CONFIG = "payload config"  # torch.export weights/constants table: no pickles
    BYTES = "bytes"  # raw tensor bytes, never parsed as code
    TEXT = "text"  # short version/format markers, never parsed as code


@dataclass(frozen=True)
class Member:
    """One kind of zip member a format may hold, named relative to the archive folder."""

    pattern: str  # a regular expression matched against the whole name, case-sensitively
    role: Role
    limit: int | None  # most bytes it may hold (checked from the zip directory and when
    # deadrelu reads it); None for raw tensor bytes, which deadrelu never reads

    def matches(self, name: str) -> bool:
        return re.fullmatch(self.pattern, name) is not None


_MiB = 1 << 20
_SMALL = 4096  # version markers and ids are a few bytes
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"  # a model/file name torch.export writes

#: Members of a ``torch.save`` zip archive (torch >= 1.6), each under ``<folder>/``.
TORCH_SAVE_MEMBERS = (
    Member(r"data\.pkl", Role.PICKLE, 64 * _MiB),
    Member(r"data/\d+", Role.BYTES, None),
    Member(r"byteorder|version|\.format_version|\.storage_alignment", Role.TEXT, _SMALL),
    Member(r"\.data/version|\.data/serialization_id", Role.TEXT, _SMALL),
)

#: Members of a ``torch.export.save`` archive (torch >= 2.8 layout). Deliberately
#: absent: ``data/aotinductor/`` (native code), ``custom_obj_*`` / ``opaque_obj_*``
#: constants (arbitrary pickles), ``data/executorch/``, ``data/mtia``, anything else.
EXPORT_MEMBERS = (
    Member(rf"models/{_NAME}\.json", Role.PROGRAM, 256 * _MiB),
    Member(rf"data/weights/{_NAME}_weights_config\.json", Role.PAYLOAD_CONFIG, 64 * _MiB),
    Member(rf"data/constants/{_NAME}_constants_config\.json", Role.PAYLOAD_CONFIG, 64 * _MiB),
    Member(r"data/weights/weight_\d+", Role.BYTES, None),
    Member(r"data/constants/tensor_\d+", Role.BYTES, None),
    # Legacy weight/constant pickles inside the new layout and the sample inputs:
    # torch retries a failed safe load of these with weights_only=False.
    Member(rf"data/(weights|constants|sample_inputs)/{_NAME}\.pt", Role.TENSOR_PICKLE, 64 * _MiB),
    Member(rf"extra/{_NAME}", Role.TEXT, 64 * _MiB),  # returned as strings, never evaluated
    Member(r"archive_format|archive_version|byteorder|version", Role.TEXT, _SMALL),
    Member(r"\.data/version|\.data/serialization_id", Role.TEXT, _SMALL),
)

#: The tables by format name (the names :func:`deadrelu.loading.checkpoint.load_model`
#: reports). Formats without a table are never read without ``--trust-checkpoint``
#: (TorchScript: ``torch.jit.load`` runs the archive's code while loading).
ZIP_FORMATS: dict[str, tuple[Member, ...]] = {
    "pickle": TORCH_SAVE_MEMBERS,
    "export": EXPORT_MEMBERS,
}

#: Formats torch can only load by running code from the file; refused without
#: ``--trust-checkpoint``, with the reason shown in the error.
TRUST_ONLY = {
    "torchscript": "torch.jit.load runs code stored in the archive (its scripted methods, "
    "such as __setstate__) while loading",
    "legacy export": "torch.export.load reads it by retrying a failed safe load with "
    "weights_only=False",
}

#: Most entries the static pickle reader keeps on its simulated stack: real
#: checkpoints stay in the hundreds; a hostile pickle could grow it without end.
MAX_PICKLE_STACK = 1_000_000

#: Top-level packages whose modules may be imported to look up a pickled class.
ALWAYS_IMPORTABLE = frozenset({"torch"})
#: Module name parts never imported on a file's behalf, even inside torch: a
#: ``__main__`` module runs a program when imported, and torch's test helpers
#: read the command line and change global state.
NEVER_IMPORTED_PARTS = frozenset({"__main__", "testing"})


def member_for(fmt: str, name: str) -> Member | None:
    """The table entry that allows ``name`` (relative to the archive folder) in ``fmt``."""
    return next((m for m in ZIP_FORMATS[fmt] if m.matches(name)), None)


def may_import(
    module: str,
    *,
    import_paths: Sequence[str | Path] = (),
    arch: str | None = None,
) -> bool:
    """Whether deadrelu may import ``module`` to look up a global a checkpoint names.

    Decided from the name alone, without importing anything: torch; a module
    whose top-level package is found (by file name) in one of the user's
    ``--import-path`` directories; the package of the user's ``--arch`` spec
    (``mypkg.models:Net`` allows ``mypkg.*``; ``dir/models.py:Net`` allows
    ``models`` found in ``dir``). Nothing else: not the working directory, not
    installed packages, not the standard library, and never a ``__main__`` or
    ``testing`` module (:data:`NEVER_IMPORTED_PARTS`).
    """
    parts = module.split(".")
    top = parts[0]
    if not all(part.isidentifier() for part in parts) or NEVER_IMPORTED_PARTS & set(parts):
        return False
    if top in ALWAYS_IMPORTABLE:
        return True
    arch_module = arch.rpartition(":")[0] if arch else ""
    if arch_module and not arch_module.endswith(".py") and arch_module.split(".")[0] == top:
        return True
    return any(_found_in(top, folder) for folder in code_folders(import_paths, arch, top))


def code_folders(
    import_paths: Sequence[str | Path], arch: str | None, top: str | None = None
) -> list[Path]:
    """The folders of the user's code, to search first when importing for a checkpoint.

    ``--import-path`` folders, then the folder of an ``--arch path/to/file.py:Class``
    file (for ``top``, only when ``top`` is that file's own name), so that a name
    :func:`may_import` allowed is imported from where it was found.
    """
    folders = [Path(p) for p in import_paths]
    if arch:
        head = arch.rpartition(":")[0]
        if head.endswith(".py") and (top is None or Path(head).stem == top):
            folders.append(Path(head).parent)
    return folders


def _found_in(top: str, folder: Path) -> bool:
    # PathFinder only looks at file names (stat), it runs nothing.
    try:
        return importlib.machinery.PathFinder.find_spec(top, [str(folder.resolve())]) is not None
    except (ImportError, OSError, ValueError):
        return False

"""Read a zip-based model file exactly as torch will, and only as far as its allowlist permits.

torch's reader (miniz, in ``PyTorchStreamReader``) differs from Python's
``zipfile`` in ways a crafted archive can exploit: it takes the archive folder
from the *first* entry and looks names up case-insensitively, returning the
first of several equal names, where ``zipfile`` returns the last. So before
any member is read, :func:`open_checked` refuses archives in which that could
matter: a name that appears twice or differs from another only by case, a
member outside the one archive folder, or a member its format's table
(:mod:`deadrelu.loading.allowlist`) does not name. After that every name torch
can look up is exactly one member, and the one deadrelu checks.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from deadrelu.errors import CheckpointError
from deadrelu.loading.allowlist import TRUST_ONLY, Member, Role, member_for
from deadrelu.loading.imports import one_line

#: How torch.load tells a zip checkpoint from a legacy pickle: the first four bytes
#: only (a pickle with a zip appended is a pickle to torch, a zip to ``zipfile``).
ZIP_MAGIC = b"PK\x03\x04"

TRUST_FIX = (
    "pass --trust-checkpoint to load it anyway (this may run code from the file; only do it "
    "if you trust where it came from)"
)


@dataclass(frozen=True)
class CheckedArchive:
    """A zip whose members all passed the format's table; names are relative to ``folder``."""

    path: str  # for messages: the file, or "file:member" for an archive nested in another
    zip: zipfile.ZipFile
    folder: str
    members: dict[str, Member]  # relative name -> its table entry

    def names(self, role: Role) -> list[str]:
        """The members with ``role``, in archive order."""
        return [name for name, member in self.members.items() if member.role is role]

    def read(self, name: str) -> bytes:
        """The member's bytes, refusing (without reading further) past its table's limit."""
        limit = self.members[name].limit
        if limit is None:
            raise ValueError(f"{name} is raw tensor data, which deadrelu never reads")
        info = self.zip.getinfo(f"{self.folder}/{name}")
        with self.zip.open(info) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise _too_big(self.path, name, limit)
        return data


def _too_big(path: str, name: str, limit: int) -> CheckpointError:
    return CheckpointError(
        f"refusing to load {path}: its member {name} decompresses to more than "
        f"{_size(limit)}, more than any real checkpoint needs",
        "re-save the checkpoint with torch.save, or re-download it",
    )


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count} bytes"


@contextmanager
def open_checked(
    source: Path | BinaryIO, fmt: str, name: str | None = None
) -> Iterator[CheckedArchive]:
    """Open ``source`` as a ``fmt`` archive after checking its member names (see module docstring).

    ``name`` labels messages when ``source`` is a stream (an archive nested in another).

    Raises:
        CheckpointError: not a readable zip, or a name torch could read differently
            from deadrelu, or a member the format's table does not allow.
    """
    path = name or str(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} looks truncated or corrupt: it starts like a zip archive but cannot be "
            f"read ({one_line(exc)})",
            "re-save or re-download the checkpoint",
        ) from exc
    with archive:
        yield CheckedArchive(path, archive, *_check_names(path, fmt, archive.infolist()))


def _check_names(
    path: str, fmt: str, infos: list[zipfile.ZipInfo]
) -> tuple[str, dict[str, Member]]:
    names = [info.filename for info in infos]
    if not names:
        raise CheckpointError(f"{path} is an empty zip archive", "re-save or re-download it")
    seen: dict[str, str] = {}
    for name in names:
        key = name.lower()
        if key in seen:
            what = (f"the name {name} twice" if seen[key] == name else
                    f"{seen[key]} and {name}, names that differ only by case")
            raise CheckpointError(
                f"refusing to load {path}: the archive holds {what}, so torch and a checker "
                "could read different records",
                "re-save the checkpoint with torch.save (a real one never repeats a name), or "
                "pass --trust-checkpoint if you trust the file",
            )
        seen[key] = name
    folder = names[0].partition("/")[0]
    members: dict[str, Member] = {}
    for info in infos:
        name = info.filename
        head, slash, rest = name.partition("/")
        if not slash or head != folder:
            raise CheckpointError(
                f"refusing to load {path}: member {name} is outside the archive folder "
                f"{folder}/, where torch never looks",
                "re-save the checkpoint with torch.save (a real one keeps every record in one "
                "folder), or pass --trust-checkpoint if you trust the file",
            )
        if rest == "" or (rest.endswith("/") and info.file_size == 0):
            continue  # a folder entry, as zip tools add when an archive is re-zipped
        member = member_for(fmt, rest)
        if member is None:
            raise CheckpointError(
                f"refusing to load {path}: it holds {rest}, which a plain {_FORMAT_NAMES[fmt]} "
                f"does not contain and deadrelu does not read{_why(rest)}",
                TRUST_FIX,
            )
        if member.limit is not None and info.file_size > member.limit:
            raise _too_big(path, rest, member.limit)
        members[rest] = member
    return folder, members


_FORMAT_NAMES = {"pickle": "torch.save checkpoint", "export": "torch.export archive"}


def _why(name: str) -> str:
    if name.startswith("data/aotinductor/"):
        return " (AOTInductor compiled code, which torch.export.load runs as native code)"
    if name.startswith(("data/constants/custom_obj_", "data/constants/opaque_obj_")):
        return " (a pickled Python object, which torch.export.load unpickles without checks)"
    if name.startswith("models/"):
        return " (a program file not named models/NAME.json, which torch would still parse)"
    if name in ("constants.pkl", "code") or name.startswith("code/"):
        return f" (TorchScript: {TRUST_ONLY['torchscript']})"
    return ""

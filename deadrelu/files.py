"""What deadrelu may read, and how it tells two names of one file apart.

Two rules every reader follows:

* **Only regular files are read** (or folders, whose regular files are read). A
  FIFO, socket or device named as an input would block forever or never end;
  :func:`require_regular` refuses it before anything opens it.
* **A file is its device and inode, not its name.** A hard link or a symlink is
  another name for the same file; :func:`same_file` and :func:`file_id` compare
  what the names point at, so an output can be refused when it *is* an input
  under another name (see :mod:`deadrelu.cli.outputs`).

Standard library only: the CLI calls this before torch is imported.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from deadrelu.errors import DeadReluError, LoadError

__all__ = ["FileId", "file_id", "folder_files", "require_regular"]

#: ``(st_dev, st_ino)``: the identity of a file whatever name reaches it.
FileId = tuple[int, int]


def file_id(path: Path) -> FileId | None:
    """The device and inode ``path`` points at (symlinks followed); ``None`` if it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular(
    path: Path,
    *,
    what: str,
    error: type[DeadReluError] = LoadError,
    folders: bool = False,
) -> None:
    """Refuse ``path`` unless it is a regular file (or, with ``folders``, a folder).

    Uses ``stat``, which never blocks, unlike opening a FIFO for reading. A path
    that does not exist passes: the reader reports that in its own words.

    Args:
        path: the file about to be read (symlinks are followed).
        what: how the message names it, e.g. ``"data file"`` or ``"--config"``.
        error: the exception class to raise.
        folders: whether a folder is also acceptable.

    Raises:
        error: ``path`` is a FIFO, socket or device (or a folder when not allowed).
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else _kind(mode)
    raise error(f"{what} {path} is {kind}, not a regular file",
                "deadrelu reads only regular files; save the content to a file and pass that")


def folder_files(root: Path) -> Iterator[Path]:
    """Every non-folder entry under ``root`` (recursively, symlinked folders not followed)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder, name)

"""A command's output files: the one check before it reads or writes anything, and the write.

deadrelu never modifies a file it reads. Every command (``scan``, ``check``,
``track``, ``merge``) lists the files it reads (checkpoints, data, model code,
config, baseline, reports) and the files it will write (``--output``, ``--csv``,
``--json``, ``--plot``, ``$GITHUB_STEP_SUMMARY``) and calls :func:`guard_paths`
once. An output is refused when it

* resolves to the same path as an input, or lies inside an input folder;
* is the same file as an input (same device and inode: a hard link or a
  symlink to it), or as any file inside an input folder (a hard link to one
  image of the data set);
* is a folder, or the same file as another output.

Inputs are also checked to be regular files or folders (see :mod:`deadrelu.files`),
except a config given as a stream (``--config <(...)``, ``/dev/null``).

Comparing inodes costs one ``stat`` per input; walking input folders happens only
when an output already exists with more than one name (``st_nlink > 1``): a file
with a single name is reached only through that name, which the path comparison
has already checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from deadrelu.errors import ConfigError, LoadError
from deadrelu.files import file_id, folder_files, require_regular

__all__ = ["guard_paths", "write_output"]

_FIX = "write it somewhere else; deadrelu never modifies its inputs"


def guard_paths(
    inputs: Sequence[Path],
    outputs: Mapping[str, Path | None] | None = None,
    *,
    streams: Sequence[Path | None] = (),
) -> None:
    """Refuse inputs that are not regular files or folders, and outputs that touch an input.

    Args:
        inputs: every file and folder the command reads (missing ones are skipped:
            the loader reports them).
        outputs: option name (``"--output"``) → the file it writes, or ``None`` when not given.
        streams: inputs that may also be a pipe or a device, read once to the end
            (``--config <(...)`` or ``--config /dev/null``); still compared with the outputs.

    Raises:
        LoadError: an input is a FIFO, socket or device.
        ConfigError: an output would overwrite, or write into, an input; a folder as output;
            two outputs naming one file.
    """
    exempt = {p for p in streams if p is not None}
    for source in inputs:
        if source not in exempt:
            require_regular(source, what="input", error=LoadError, folders=True)
    chosen = [(option, path) for option, path in (outputs or {}).items() if path is not None]
    seen: dict[tuple[int, int] | Path, str] = {}
    for option, output in chosen:
        _guard_one(option, output, inputs)
        key = file_id(output) or output.resolve()
        if key in seen:
            raise ConfigError(f"{option} {output} is the same file as {seen[key]}",
                              "give each output its own file")
        seen[key] = f"{option} {output}"


def _guard_one(option: str, output: Path, inputs: Sequence[Path]) -> None:
    target = output.resolve()
    for source in inputs:
        if not source.exists():
            continue
        resolved = source.resolve()
        if target == resolved:
            raise ConfigError(f"{option} {output} would overwrite the input {source}", _FIX)
        if resolved.is_dir() and resolved in target.parents:
            raise ConfigError(f"{option} {output} is inside the input folder {source}", _FIX)
    if output.is_dir():
        raise ConfigError(f"{option} {output} is a directory", "pass a file name, e.g. report.json")
    try:
        st = os.stat(output)
    except (OSError, ValueError):
        return  # a new file cannot be another name of an input
    identity = (st.st_dev, st.st_ino)
    for source in inputs:
        if file_id(source) == identity:
            raise ConfigError(f"{option} {output} is the input {source} under another name "
                              "(a hard link or symlink to it)", _FIX)
    if st.st_nlink > 1:
        for folder in (s for s in inputs if s.is_dir()):
            for inner in folder_files(folder):
                if file_id(inner) == identity:
                    raise ConfigError(f"{option} {output} is {inner} under another name "
                                      f"(a hard link into the input folder {folder})", _FIX)


def write_output(output: Path, text: str) -> None:
    """Write ``--output`` as UTF-8; one-line error if the folder is missing or read-only."""
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --output {output}: {exc.strerror or exc}",
                          "check that the folder exists and is writable") from exc

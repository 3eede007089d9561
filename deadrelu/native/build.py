"""Compile ``stats.cpp`` against the installed torch, once per machine, into a user cache.

Why build at first use instead of shipping a binary: the kernel links against the
exact libtorch the user has (its C++ ABI changes between releases) and is tuned for
the CPU it runs on (``-march=native``). A build takes about 20 s with a C++
compiler; without one deadrelu keeps its eager path, which gives the same results.

The build runs as a detached background job (:func:`start`) so that no scan waits for
it: the first scan on a machine runs on the eager path and later ones use the kernel.
The job renames its output into place itself, so it completes even when the process
that started it has already exited, and a lock file keeps concurrent processes
(torchrun ranks) from compiling the same library twice.

The job must never be visible to the user: it is started through a short-lived shell
that puts it in the background and exits at once, so the job is not a child of the
Python process (no ``ResourceWarning: subprocess N is still running`` when a CLI exits
before the build ends, no zombie), its output goes nowhere, and it has a session of its
own (Ctrl-C in the terminal does not stop it). Whether it still runs is read from the
lock file, which holds its pid.

The cache key covers the source, torch's version and install path, the compiler
flags and the CPU's instruction-set flags, so a home directory shared between
machines never loads a library built for another CPU. A failed build leaves a
``.failed`` file with the compiler's message, so later runs do not retry it; delete
it (or run ``python -m deadrelu.native --rebuild``) after installing a compiler.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("stats.cpp")

#: Seconds a build may take before it is abandoned (a cold 2-core machine needs ~20 s).
TIMEOUT = 300


class BuildError(RuntimeError):
    """The kernel could not be built here; the message says why."""


def cache_dir() -> Path:
    """``$DEADRELU_CACHE_DIR``, else ``$XDG_CACHE_HOME/deadrelu``, else ``~/.cache/deadrelu``."""
    explicit = os.environ.get("DEADRELU_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "deadrelu" if xdg else Path.home() / ".cache" / "deadrelu"


def _torch_dirs() -> tuple[Path, Path]:
    import torch

    root = Path(torch.__file__).parent
    return root / "include", root / "lib"


def compiler() -> str | None:
    """The C++ compiler to use: ``$CXX``, else ``c++`` or ``g++`` on PATH."""
    explicit = os.environ.get("CXX")
    if explicit:
        return shutil.which(explicit) or explicit
    return shutil.which("c++") or shutil.which("g++")


def python_headers() -> Path | None:
    """This Python's C headers, when installed and torch ships its Python library.

    With them the library is also a Python extension module (``deadrelu_native_py``),
    whose direct calls cost about a tenth of a ``torch.ops`` call (stats.cpp); without
    them (a Python built without its ``-dev`` files) it is a ``torch.ops`` library only.
    """
    import sysconfig

    headers = Path(sysconfig.get_paths()["include"])
    _, lib = _torch_dirs()
    if not (headers / "Python.h").exists() or not any(lib.glob("libtorch_python.*")):
        return None
    return headers


def command(cxx: str, python: bool = True) -> list[str]:
    """The compile-and-link command line, without its ``-o OUTPUT``; with the Python
    binding where ``python`` and the headers allow (:func:`python_headers`)."""
    import torch

    include, lib = _torch_dirs()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags: list[str] = []
    headers = python_headers() if python else None
    if headers is not None:
        flags = ["-DDEADRELU_PYTHON", f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
                 "-isystem", str(headers)]
    return [
        cxx, "-O3", "-march=native", "-fopenmp", "-std=c++20", "-shared", "-fPIC", "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{include}", *flags, str(SOURCE),
        f"-L{lib}", "-lc10", "-ltorch_cpu", *(["-ltorch_python"] if flags else []),
        f"-Wl,-rpath,{lib}",
    ]


def _cpu_flags() -> str:
    # The instruction sets -march=native may use; one line of /proc/cpuinfo on Linux.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path(python: bool = True) -> Path:
    """Where the built library for this source, torch and CPU lives (it may not exist yet);
    ``python=False``: the one without the Python binding, the fallback where that fails."""
    import torch

    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(f"{torch.__version__}|{torch.__file__}|{sys.platform}|{platform.machine()}".encode())
    key.update(" ".join(command("cxx", python)).encode())
    key.update(_cpu_flags().encode())
    return cache_dir() / f"stats-{key.hexdigest()[:16]}.so"


def supported() -> str | None:
    """None when this platform can build the kernel, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"the fused kernel is built on Linux only (this is {sys.platform})"
    _, lib = _torch_dirs()
    # at::parallel_for is inlined with OpenMP pragmas: the library must use the same
    # OpenMP runtime as torch, which pip's Linux wheels ship as lib/libgomp.so.1.
    if not (lib / "libgomp.so.1").exists():
        return "this torch build does not ship libgomp, which the fused kernel must share"
    if compiler() is None:
        return "no C++ compiler found (install g++ or set CXX)"
    return None


def marker(target: Path) -> Path:
    """The note a failed build leaves next to ``target`` (the compiler's last lines)."""
    return target.with_suffix(".failed")


def _lock(target: Path) -> Path:
    return target.with_suffix(".lock")


# $1 temporary output, $2 target, $3 failure note, $4 lock; then the compiler command.
# Runs detached: renames the library (or the failure note) into place, then unlocks.
_JOB = """
tmp="$1"; target="$2"; note="$3"; lock="$4"; shift 4
echo $$ > "$lock"
if "$@" -o "$tmp" 2> "$tmp.log"; then
  mv -f "$tmp" "$target"
else
  { echo "the C++ build failed:"; tail -n 5 "$tmp.log"; } > "$note.tmp"
  mv -f "$note.tmp" "$note"
  rm -f "$tmp"
fi
rm -f "$tmp.log" "$lock"
"""

# Starts _JOB ($1) in the background with the remaining arguments and exits at once.
_LAUNCH = 'job="$1"; shift; sh -c "$job" sh "$@" </dev/null >/dev/null 2>&1 &'


def start(target: Path, python: bool = True) -> bool:
    """Start building ``target`` in a detached background job.

    Returns False when another process already holds the build lock (its job will
    produce the same file), True when this call started the job. Raises
    :class:`BuildError` when this machine cannot build (see :func:`supported`) or the
    cache is not writable.
    """
    reason = supported()
    if reason is not None:
        raise BuildError(reason)
    cxx = compiler()
    assert cxx is not None
    lock = _lock(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if lock.exists() and _stale(lock):
            lock.unlink(missing_ok=True)  # left by a job that was killed
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise BuildError(f"cannot write to the cache {target.parent} ({exc}); "
                         "set DEADRELU_CACHE_DIR to a writable folder") from exc
    limit = ["timeout", str(TIMEOUT)] if shutil.which("timeout") else []
    try:
        # The launcher returns at once; the job it leaves behind is not our child.
        subprocess.run(
            ["sh", "-c", _LAUNCH, "sh", _JOB, tmp, str(target), str(marker(target)), str(lock),
             *limit, *command(cxx, python)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, check=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        lock.unlink(missing_ok=True)
        raise BuildError(f"cannot start the build ({exc})") from exc
    return True


def running(target: Path) -> bool:
    """Whether a build of ``target`` (ours or another process's) is under way."""
    lock = _lock(target)
    return lock.exists() and not _stale(lock)


def _stale(lock: Path) -> bool:
    """Whether ``lock`` was left by a build job that no longer runs."""
    try:
        pid = int(lock.read_text().strip() or 0)
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return False
    if pid <= 0:  # the job is being started (or its starter died before it could)
        return age > 60
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists but is not ours to signal
    return age > TIMEOUT + 60


def wait(target: Path) -> None:
    """Block until the build of ``target`` (ours, or another process's) has ended."""
    deadline = time.monotonic() + TIMEOUT + 60
    while running(target) and time.monotonic() < deadline:
        time.sleep(0.1)

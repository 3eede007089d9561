"""Compile ``stats.cpp`` against the installed torch, once per machine, into a user cache.

Why build at first use instead of shipping a binary: the kernel links against the
exact libtorch the user has (its C++ ABI changes between releases) and is tuned for
the CPU it runs on (``-march=native``). A build takes a few seconds with a C++
compiler; without one deadrelu keeps its eager path, which gives the same results.

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
from pathlib import Path

SOURCE = Path(__file__).with_name("stats.cpp")

#: Seconds a build may take before it is abandoned (a cold 2-core machine needs ~5 s).
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


def command(cxx: str, output: Path) -> list[str]:
    """The compile-and-link command line."""
    import torch

    include, lib = _torch_dirs()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        cxx, "-O3", "-march=native", "-fopenmp", "-std=c++20", "-shared", "-fPIC", "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{include}",
        str(SOURCE), "-o", str(output),
        f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}",
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


def library_path() -> Path:
    """Where the built library for this source, torch and CPU lives (it may not exist yet)."""
    import torch

    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(f"{torch.__version__}|{torch.__file__}|{sys.platform}|{platform.machine()}".encode())
    key.update(" ".join(command("cxx", Path("out"))).encode())
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


def build(target: Path) -> None:
    """Compile into ``target`` atomically (a temporary file renamed into place), so
    concurrent processes (torchrun ranks) never load a half-written library."""
    reason = supported()
    if reason is not None:
        raise BuildError(reason)
    cxx = compiler()
    assert cxx is not None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=target.stem + ".", suffix=".so", dir=target.parent)
    except OSError as exc:
        raise BuildError(f"cannot write to the cache {target.parent} ({exc}); "
                         "set DEADRELU_CACHE_DIR to a writable folder") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            done = subprocess.run(command(cxx, tmp), capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"compiler {cxx} could not run: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise BuildError(f"{cxx} failed: " + " | ".join(tail))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

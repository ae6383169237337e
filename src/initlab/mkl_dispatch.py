"""Let MKL use its AVX-512 kernels on AMD CPUs (it picks AVX2 ones there by default).

PyTorch's CPU builds do their float32 matrix products with Intel MKL. MKL chooses its kernels
by CPU *vendor*, not by the instructions the CPU has: on an AMD CPU with AVX-512 (Zen 4,
Zen 5) it runs its AVX2 kernels, at about half the speed the hardware allows. Measured on a
2-core AMD EPYC (Zen 5) with torch 2.13.0: ``torch.mm`` of 4096 x 4096 matrices 181 -> 413
GFLOP/s, the batched engine's forward product (15 x [32 x 784] . [784 x 300]) 130 -> 394
GFLOP/s.

MKL asks one function, ``mkl_serv_intel_cpu_true``, whether the CPU is Intel's. Loading a
one-line library that defines it (``return 1``) with ``RTLD_GLOBAL`` *before torch is
imported* makes the dynamic linker bind MKL's question to that answer, and MKL then picks its
kernels by the instructions present (it still checks CPUID for AVX-512/AVX2). This is the
well-known replacement for ``MKL_DEBUG_CPU_TYPE=5``, which MKL 2020.1 and later ignore.

When: Linux, x86-64, an AMD CPU with AVX-512, ``INITLAB_MKL_DISPATCH`` unset or ``auto``, and
torch not yet imported. What it changes: speed, and float32 rounding at the level of any
change of BLAS kernel (summation order inside a matrix product, ~1e-7 relative). Elsewhere
it does nothing; :func:`status` says why, and :func:`mkl_code_path` what MKL actually uses.

The library is compiled once with the system C compiler (``cc``) into
``$XDG_CACHE_HOME/initlab`` (``~/.cache/initlab``), and only loaded from there if this user
owns it and nobody else can write it; when that directory cannot be used it is compiled into
a private temporary directory for this process. Without a compiler nothing happens. Nothing
here can make ``import initlab`` fail: every problem turns the override off, with a reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_VAR = "INITLAB_MKL_DISPATCH"
SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
LIBRARY_NAME = f"initlab_mkl_intel_cpu_true-{hashlib.sha256(SOURCE.encode()).hexdigest()[:12]}.so"

# MKL_CBWR_* branch codes (mkl_cbwr.h) that mkl_serv_cbwr_get_auto_branch returns; on an
# AMD CPU without the override it answers AUTO (2) and runs its AVX2 kernels (measured)
CODE_PATHS = {
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    9: "AVX",
    10: "AVX2",
    12: "AVX512",
    14: "AVX512_E1",
}

_status = "not attempted"


def status() -> str:
    """One line: whether the override was loaded in this process, and if not, why."""
    return _status


def mkl_code_path() -> str | None:
    """The code path MKL picks in this process (``AVX2``, ``AVX512_E1``...), asked of the
    MKL inside torch; ``"unknown"`` where it cannot be asked; None where torch has no MKL.
    Imports torch."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    noload = getattr(os, "RTLD_NOLOAD", None)  # only the copy torch loaded, never a second
    if noload is None:
        return "unknown"
    try:
        branch = ctypes.CDLL(library, mode=noload | ctypes.RTLD_LOCAL).mkl_serv_cbwr_get_auto_branch
    except (OSError, AttributeError):
        return "unknown"
    code = int(branch())
    return CODE_PATHS.get(code, f"code {code}")


def blas_description() -> str:
    """``"MKL <code path>"`` where torch uses MKL, else ``"no MKL"`` (for the results store)."""
    path = mkl_code_path()
    return "no MKL" if path is None else f"MKL {path}"


def read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """The first CPU's ``vendor_id`` (``AuthenticAMD``, ``GenuineIntel``) and ``flags``
    (``avx512f``...); ``("", frozenset())`` where there is no such file."""
    vendor, flags = "", frozenset()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
                if vendor and flags:
                    break
    except OSError:
        pass
    return vendor, flags


def reason_to_skip(
    environ: dict[str, str],
    modules: dict,
    system: str,
    machine: str,
    cpu: tuple[str, frozenset[str]],
) -> str | None:
    """Why the override must not (or need not) be applied here, or None if it should be."""
    setting = environ.get(ENV_VAR, "auto").strip().lower()
    if setting in {"off", "0", "false", "no"}:
        return f"off ({ENV_VAR}={environ[ENV_VAR]})"
    if setting not in {"auto", "", "on", "1", "true", "yes"}:
        return f"off: {ENV_VAR}={environ[ENV_VAR]!r} is neither 'auto' nor 'off'"
    if system != "Linux" or machine != "x86_64":
        return f"not needed on {system} {machine}"
    vendor, flags = cpu
    if vendor != "AuthenticAMD":
        return f"not needed on a {vendor or 'non-AMD'} CPU"
    if "avx512f" not in flags:
        return "not needed: this AMD CPU has no AVX-512 (MKL already uses its AVX2 kernels)"
    if "torch" in modules:
        return "inactive: torch was imported before initlab (import initlab first)"
    return None


def cache_dir(environ: dict[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME/initlab``, or ``~/.cache/initlab``; None without an absolute base
    (no ``HOME``: a relative path would put the library in the working directory)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "initlab" if os.path.isabs(base) else None


def trustworthy(path: Path) -> bool:
    """Whether ``path`` is a regular file owned by this user that no one else can write."""
    info = path.lstat()
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISREG(info.st_mode) and owner_ok and not info.st_mode & 0o022


def compile_library(directory: Path) -> Path | None:
    """Compile the override into ``directory`` (atomically); None without a C compiler.
    Raises OSError, with the compiler's message, when compiling fails."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LIBRARY_NAME
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        source = Path(tmp) / "override.c"
        source.write_text(SOURCE)
        built = Path(tmp) / LIBRARY_NAME
        command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-300:]}")
        os.chmod(built, 0o755)
        os.replace(built, target)  # atomic: concurrent processes never load a partial file
    return target


def load_from_cache(directory: Path) -> str | None:
    """Load the cached override (compiling it first if needed; once more if it does not
    load); the status line, or None without a compiler. Raises OSError."""
    target = directory / LIBRARY_NAME
    if target.exists() and not trustworthy(target):
        raise OSError(f"{target} is not owned by this user or is writable by others")
    if not target.exists() and compile_library(directory) is None:
        return None
    try:
        ctypes.CDLL(str(target), mode=ctypes.RTLD_GLOBAL)
    except OSError:  # damaged: build it again, once
        target.unlink(missing_ok=True)
        if compile_library(directory) is None:
            return None
        ctypes.CDLL(str(target), mode=ctypes.RTLD_GLOBAL)
    return f"on: override loaded, MKL picks kernels by instruction set ({target})"


def load_private_copy() -> str | None:
    """Compile and load the override in a private temporary directory (removed after
    loading: the loaded library stays mapped); the status line, or None without a compiler."""
    with tempfile.TemporaryDirectory(prefix="initlab-") as tmp:
        library = compile_library(Path(tmp))
        if library is None:
            return None
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return "on: override loaded, MKL picks kernels by instruction set (built privately)"


def load_override(environ: dict[str, str]) -> str:
    """Load the override from the cache, else from a private copy; the status line."""
    directory = cache_dir(environ)
    loaded = None
    try:
        loaded = load_from_cache(directory) if directory is not None else load_private_copy()
    except (OSError, subprocess.SubprocessError):
        loaded = load_private_copy()
    return loaded or "off: no C compiler (cc) to build the override; install gcc"


def enable() -> str:
    """Apply the override if this process can use it; return :func:`status`. Idempotent;
    never raises (``import initlab`` runs it)."""
    global _status
    if _status.startswith("on"):
        return _status
    try:
        skip = reason_to_skip(
            dict(os.environ), sys.modules, platform.system(), platform.machine(), read_cpuinfo()
        )
        _status = skip if skip is not None else load_override(dict(os.environ))
    except Exception as error:  # a failure here must not break `import initlab`
        _status = f"off: could not build or load the override ({error})"
    return _status

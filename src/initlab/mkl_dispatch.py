"""Let MKL use its AVX-512 kernels on AMD CPUs (it picks AVX2 ones there by default).

PyTorch's CPU builds do their float32 matrix products with Intel MKL. MKL chooses its kernels
by CPU *vendor*, not by the instructions the CPU has: on an AMD CPU with AVX-512 (Zen 4,
Zen 5) it runs its AVX2 kernels, at about half the speed the hardware allows. Measured on a
2-core AMD EPYC (Zen 5) with torch 2.13.0: ``torch.mm`` of 4096 x 4096 matrices 181 -> 413
GFLOP/s, the batched engine's forward product (15 x [32 x 784] . [784 x 300]) 130 -> 394
GFLOP/s.

MKL asks one function, ``mkl_serv_intel_cpu_true``, whether the CPU is Intel's. Loading a
library that defines it (``return 1``) with ``RTLD_GLOBAL`` *before torch is imported* makes
the dynamic linker bind MKL's question to that answer, and MKL then picks its kernels by the
instructions present (it still checks CPUID for AVX-512/AVX2). This is the well-known
replacement for ``MKL_DEBUG_CPU_TYPE=5``, which MKL 2020.1 and later ignore.

The library is the extension module ``initlab._mkl_intel_cpu_true``, compiled when initlab is
installed (``setup.py``; optional: an install without a C compiler succeeds without it).
Nothing is compiled at run time and nothing happens on ``import initlab``: the override is
applied only by :func:`enable`, which the ``initlab`` command calls first thing, its worker
processes call through :func:`worker_entry` (doing what their parent did), and library users
may call themselves, before importing torch.

When :func:`enable` applies it: Linux, x86-64, an AMD CPU with AVX-512, ``INITLAB_MKL_DISPATCH``
unset or ``auto``, the library built, and torch not yet imported. What it changes: speed, and
float32 rounding at the level of any change of BLAS kernel (summation order inside a matrix
product, ~1e-7 relative), for every library in the process that uses MKL. Elsewhere it does
nothing; :func:`status` says why, and :func:`mkl_code_path` what MKL actually uses. Nothing
here raises: every problem leaves the override off, with a reason.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import platform
import sys
from typing import Any

ENV_VAR = "INITLAB_MKL_DISPATCH"
EXTENSION = "initlab._mkl_intel_cpu_true"
SYMBOL = "mkl_serv_intel_cpu_true"
NOT_BUILT = (
    "off: not built (not compiled when initlab was installed: no C compiler then, or a source "
    "tree run without pip install; install gcc, then pip install -e . or reinstall initlab)"
)

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

_status = "not attempted: initlab.mkl_dispatch.enable() was not called"


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
        return "inactive: torch was imported before initlab.mkl_dispatch.enable() (call it first)"
    return None


def library_path() -> str | None:
    """The built override (the extension module's file), or None where it was not built."""
    try:
        spec = importlib.util.find_spec(EXTENSION)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def load(path: str | None) -> str:
    """Load the library at ``path`` with ``RTLD_GLOBAL`` and check that it answers MKL's
    question; the status line."""
    if path is None:
        return NOT_BUILT
    try:
        answer = getattr(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), SYMBOL)()
    except OSError as error:
        return f"off: could not load the override ({error})"
    except AttributeError:
        return f"off: {path} does not define {SYMBOL}"
    if answer != 1:
        return f"off: {path} answers {answer}, not 1"
    return f"on: override loaded, MKL picks kernels by instruction set ({path})"


def enable() -> str:
    """Apply the override if this process can use it; return :func:`status`. Call it before
    anything imports torch. Idempotent; never raises."""
    global _status
    if _status.startswith("on"):
        return _status
    try:
        where = (platform.system(), platform.machine(), read_cpuinfo())
        skip = reason_to_skip(dict(os.environ), sys.modules, *where)
        _status = skip if skip is not None else load(library_path())
    except Exception as error:  # whatever goes wrong, the caller goes on without it
        _status = f"off: could not apply the override ({type(error).__name__}: {error})"
    return _status


def disable(reason: str) -> str:
    """Record that this process runs without the override, and why (``--no-mkl-dispatch``);
    return :func:`status`. A library already loaded stays loaded (it cannot be unloaded)."""
    global _status
    if not _status.startswith("on"):
        _status = f"off ({reason})"
    return _status


def worker_entry(parent_status: str, target: str, *args: Any) -> Any:
    """The start of a worker process (local or Ray): apply the override if the parent process
    runs with it (:func:`enable`), else not, *before* importing ``target``
    (``"module:function"``, whose module may import torch); then call ``target(*args)``."""
    if parent_status.startswith("on"):
        enable()
    else:
        disable(f"as in the parent process: {parent_status}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)

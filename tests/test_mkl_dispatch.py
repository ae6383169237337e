"""initlab.mkl_dispatch: ``import initlab`` loads nothing; the override is built at install,
applied by the ``initlab`` command and its workers (and by an explicit ``enable()``), switched
off on request, and every failure leaves it off with a reason instead of raising."""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import types

import pytest

import initlab
from initlab import mkl_dispatch
from initlab.cli import apply_mkl_dispatch

AVX512_AMD = ("AuthenticAMD", frozenset({"avx2", "avx512f"}))
WHERE = {"system": "Linux", "machine": "x86_64", "cpu": AVX512_AMD}
LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"


def skip_reason(environ=None, modules=None, **overrides) -> str | None:
    return mkl_dispatch.reason_to_skip(environ or {}, modules or {}, **{**WHERE, **overrides})


def avx512_amd() -> bool:
    vendor, flags = mkl_dispatch.read_cpuinfo()
    return LINUX_X86 and vendor == "AuthenticAMD" and "avx512f" in flags


qualifies = pytest.mark.skipif(
    not (avx512_amd() and mkl_dispatch.library_path()),
    reason="needs an AMD CPU with AVX-512 and the override built at install",
)


def python(code: str, *args: str, **env: str) -> str:
    """stdout of a fresh Python running ``code`` (the environment plus ``env``)."""
    environ = {k: v for k, v in os.environ.items() if k != mkl_dispatch.ENV_VAR}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- import initlab has no side effects ------------------------------------------------------


def test_import_initlab_imports_no_torch_and_loads_no_library():
    out = python(
        "import initlab, sys\n"
        "maps = open('/proc/self/maps').read() if sys.platform == 'linux' else ''\n"
        "print('torch' in sys.modules, '_mkl_intel_cpu_true' in maps)\n"
        "print(initlab.mkl_dispatch.status())"
    )
    flags, status = out.strip().splitlines()
    assert flags == "False False"
    assert status.startswith("not attempted")


def test_the_console_script_target_imports_no_torch():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="initlab")
    module, _, function = entry.value.partition(":")
    out = python(
        f"import sys, {module}; print('torch' in sys.modules, callable({module}.{function}))"
    )
    assert out.split() == ["False", "True"], f"{entry.value} imports torch"


def test_public_names_load_on_first_use():
    importlib.import_module("initlab.compare")  # the submodule must not shadow the function
    from initlab import compare

    assert initlab.compare is compare and callable(compare)
    assert initlab.RunConfig.__name__ == "RunConfig" and initlab.mkl_dispatch is mkl_dispatch
    assert set(initlab.__all__) <= set(dir(initlab)) and "__version__" in dir(initlab)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = initlab.no_such_name


# -- when it applies ------------------------------------------------------------------------


def test_applies_on_linux_amd_with_avx512_before_torch():
    assert skip_reason() is None
    assert skip_reason({mkl_dispatch.ENV_VAR: " auto "}) is None


@pytest.mark.parametrize("value", ["off", "0", "False", "no", "off "])
def test_environment_variable_turns_it_off(value):
    assert skip_reason({mkl_dispatch.ENV_VAR: value}).startswith("off")


def test_an_unknown_setting_is_reported_not_guessed():
    reason = skip_reason({mkl_dispatch.ENV_VAR: "fast"})
    assert reason.startswith("off") and "'fast'" in reason


def test_not_applied_where_mkl_already_chooses_well():
    assert "not needed" in skip_reason(cpu=("GenuineIntel", frozenset({"avx512f"})))
    assert "no AVX-512" in skip_reason(cpu=("AuthenticAMD", frozenset({"avx2"})))
    assert "not needed" in skip_reason(system="Darwin", machine="arm64")
    assert "not needed" in skip_reason(machine="aarch64")


def test_too_late_once_torch_is_imported():
    reason = skip_reason(modules={"torch": object()})
    assert reason.startswith("inactive") and "enable() (call it first)" in reason


def test_read_cpuinfo_takes_the_first_cpu(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\n"
        "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\n"
    )
    assert mkl_dispatch.read_cpuinfo(str(info)) == ("AuthenticAMD", {"fpu", "avx2", "avx512f"})
    assert mkl_dispatch.read_cpuinfo(str(tmp_path / "missing")) == ("", frozenset())


# -- the library, built at install ----------------------------------------------------------


@pytest.mark.skipif(not LINUX_X86 or shutil.which("cc") is None, reason="built on Linux x86-64")
def test_the_install_built_the_library_and_it_answers_intel():
    path = mkl_dispatch.library_path()
    assert path is not None, "reinstall with `pip install -e .`: setup.py builds it"
    assert ctypes.CDLL(path).mkl_serv_intel_cpu_true() == 1
    assert isinstance(importlib.import_module(mkl_dispatch.EXTENSION), types.ModuleType)


# -- every failure leaves it off, with a reason, and never raises ---------------------------


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not tried yet, on a CPU that qualifies, before torch."""
    monkeypatch.setattr(mkl_dispatch, "_status", "not attempted")
    monkeypatch.setattr(mkl_dispatch, "reason_to_skip", lambda *args: None)
    return monkeypatch


def test_not_built_says_so(fresh):
    fresh.setattr(mkl_dispatch.importlib.util, "find_spec", lambda name: None)
    assert mkl_dispatch.enable() == mkl_dispatch.NOT_BUILT
    assert "not built (" in mkl_dispatch.status() and "no C compiler" in mkl_dispatch.status()


@pytest.mark.parametrize("error", [ImportError, ValueError])
def test_a_broken_package_lookup_reads_as_not_built(fresh, error):
    def broken(name):
        raise error(name)

    fresh.setattr(mkl_dispatch.importlib.util, "find_spec", broken)
    assert mkl_dispatch.enable() == mkl_dispatch.NOT_BUILT


def test_a_damaged_library_is_not_loaded(fresh, tmp_path):
    damaged = tmp_path / "_mkl_intel_cpu_true.so"
    damaged.write_bytes(b"\x7fELF truncated by a bad copy")
    fresh.setattr(mkl_dispatch, "library_path", lambda: str(damaged))
    status = mkl_dispatch.enable()
    assert status.startswith("off: could not load the override") and str(damaged) in status


def test_a_library_without_the_symbol_is_refused(fresh):
    other = importlib.import_module("_ctypes").__file__  # a real shared object, wrong one
    fresh.setattr(mkl_dispatch, "library_path", lambda: other)
    status = mkl_dispatch.enable()
    assert status.startswith("off") and "does not define mkl_serv_intel_cpu_true" in status


def test_anything_unexpected_is_reported_not_raised(fresh):
    def broken(*args, **kwargs):
        raise RuntimeError("no /proc here")

    fresh.setattr(mkl_dispatch, "read_cpuinfo", broken)
    status = mkl_dispatch.enable()
    assert status == "off: could not apply the override (RuntimeError: no /proc here)"
    assert mkl_dispatch.status() == status


def test_disable_records_why_but_cannot_unload(monkeypatch):
    monkeypatch.setattr(mkl_dispatch, "_status", "not attempted")
    assert mkl_dispatch.disable("--no-mkl-dispatch") == "off (--no-mkl-dispatch)"
    monkeypatch.setattr(mkl_dispatch, "_status", "on: override loaded")
    assert mkl_dispatch.disable("--no-mkl-dispatch") == "on: override loaded"


def test_the_cli_flag_counts_only_before_the_command(fresh):
    assert apply_mkl_dispatch(["--no-mkl-dispatch", "compare"]) == "off (--no-mkl-dispatch)"
    fresh.setattr(mkl_dispatch, "_status", "not attempted")
    fresh.setattr(mkl_dispatch, "library_path", lambda: None)
    assert apply_mkl_dispatch(["compare", "--no-mkl-dispatch"]) == mkl_dispatch.NOT_BUILT


# -- where it applies: the command line and its workers -------------------------------------


def cli_version(*options: str) -> str:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="initlab")
    module, _, function = entry.value.partition(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    return python(code, *options, "--version")


@qualifies
def test_the_command_line_runs_on_avx512_kernels():
    assert "BLAS: MKL AVX512_E1 (override: on" in cli_version()


@qualifies
def test_the_tests_run_on_the_kernels_command_line_users_get():
    # conftest.py calls enable() before importing torch, as the initlab command does
    assert mkl_dispatch.status().startswith("on"), mkl_dispatch.status()
    assert mkl_dispatch.blas_description() == "MKL AVX512_E1"


def kernels_in_a_worker(parent_status: str) -> tuple[str, str]:
    """(BLAS description, status) in a spawned process started by ``worker_entry``."""
    with mp.get_context("spawn").Pool(1) as pool:
        target = "initlab.mkl_dispatch:blas_description"
        blas = pool.apply(mkl_dispatch.worker_entry, (parent_status, target))
        return blas, pool.apply(mkl_dispatch.status)


@qualifies
def test_workers_do_what_their_parent_does():
    blas, status = kernels_in_a_worker("on: override loaded")
    assert blas == "MKL AVX512_E1" and status.startswith("on")
    blas, status = kernels_in_a_worker("off (--no-mkl-dispatch)")
    assert blas == "MKL AUTO"
    assert status == "off (as in the parent process: off (--no-mkl-dispatch))"


def test_what_a_worker_process_is_given_imports_no_torch(tmp_path):
    """A spawned worker unpickles its arguments before ``worker_entry`` runs: passing the
    sweep's checkpoint folder as a class of a module importing torch made every worker
    import torch first, so MKL's AVX-512 kernels stayed off in all of them."""
    import pickle
    import subprocess
    import sys

    from initlab.checkpoints import Checkpoints
    from initlab.config import RunConfig

    given = pickle.dumps((Checkpoints(str(tmp_path)), [RunConfig()], "single", 1, None))
    code = "import pickle, sys; pickle.load(sys.stdin.buffer); print('torch' in sys.modules)"
    shown = subprocess.run(
        [sys.executable, "-c", code], input=given, capture_output=True, check=True
    )
    assert shown.stdout.decode().strip() == "False"


def worker_executor(kind: str, checkpoints):
    if kind == "ray":
        pytest.importorskip("ray", reason="Ray is not installed: pip install 'initlab[ray]'")
        from initlab.sweep.ray_backend import RayExecutor

        return RayExecutor(workers=1, engine="single", checkpoints=checkpoints)
    from initlab.sweep.executor import ProcessExecutor

    return ProcessExecutor(workers=1, threads=1, engine="single", checkpoints=checkpoints)


@pytest.mark.slow
@qualifies
@pytest.mark.parametrize("kind", ["processes", "ray"])
def test_sweep_workers_record_the_avx512_path(kind, tmp_path):
    from initlab.checkpoints import Checkpoints
    from initlab.config import RunConfig

    # conftest enabled it in this process, as the initlab command does in its own
    assert mkl_dispatch.status().startswith("on"), mkl_dispatch.status()
    config = RunConfig(dataset="digits", hidden=(8,), epochs=1, lr=0.1, track="off")
    executor = worker_executor(kind, Checkpoints(str(tmp_path)))  # as a sweep with --out
    ((outcome,),) = executor.run([[config]], None)
    assert outcome.env["blas"] == "MKL AVX512_E1"

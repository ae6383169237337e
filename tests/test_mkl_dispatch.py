"""initlab.mkl_dispatch: when the MKL override applies, that it builds and loads safely, that
every failure turns it off with a reason, and that it takes effect."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from initlab import mkl_dispatch

AVX512_AMD = ("AuthenticAMD", frozenset({"avx2", "avx512f"}))
WHERE = {"system": "Linux", "machine": "x86_64", "cpu": AVX512_AMD}


def skip_reason(environ=None, modules=None, **overrides) -> str | None:
    return mkl_dispatch.reason_to_skip(environ or {}, modules or {}, **{**WHERE, **overrides})


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
    assert reason.startswith("inactive") and "import initlab first" in reason


def test_read_cpuinfo_takes_the_first_cpu(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\n"
        "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\n"
    )
    assert mkl_dispatch.read_cpuinfo(str(info)) == ("AuthenticAMD", {"fpu", "avx2", "avx512f"})
    assert mkl_dispatch.read_cpuinfo(str(tmp_path / "missing")) == ("", frozenset())


def test_cache_dir_follows_xdg_and_refuses_relative_paths(tmp_path):
    assert mkl_dispatch.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "initlab"
    assert mkl_dispatch.cache_dir({"XDG_CACHE_HOME": "relative/cache"}) is None


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@needs_cc
def test_compiled_library_answers_that_the_cpu_is_intel_and_is_reused(tmp_path, monkeypatch):
    library = mkl_dispatch.compile_library(tmp_path)
    assert library == tmp_path / mkl_dispatch.LIBRARY_NAME and mkl_dispatch.trustworthy(library)
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1
    assert [p.name for p in tmp_path.iterdir()] == [mkl_dispatch.LIBRARY_NAME]  # no leftovers
    monkeypatch.setattr(mkl_dispatch, "compile_library", lambda d: pytest.fail("rebuilt"))
    assert mkl_dispatch.load_from_cache(tmp_path).startswith("on")


def _compile_into(directory: str) -> str:
    return str(mkl_dispatch.compile_library(Path(directory)))


@needs_cc
def test_processes_compiling_at_once_all_get_a_working_library(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_compile_into, [str(tmp_path)] * 4)
    assert set(paths) == {str(tmp_path / mkl_dispatch.LIBRARY_NAME)}
    assert ctypes.CDLL(paths[0]).mkl_serv_intel_cpu_true() == 1
    assert [p.name for p in tmp_path.iterdir()] == [mkl_dispatch.LIBRARY_NAME]


@needs_cc
def test_a_file_others_can_write_is_never_loaded(tmp_path, monkeypatch):
    cache = tmp_path / "initlab"
    mkl_dispatch.compile_library(cache)
    (cache / mkl_dispatch.LIBRARY_NAME).chmod(0o777)  # as if planted or tampered with
    with pytest.raises(OSError, match="writable by others"):
        mkl_dispatch.load_from_cache(cache)
    monkeypatch.setattr(mkl_dispatch, "load_private_copy", lambda: "on: private copy")
    assert mkl_dispatch.load_override({"XDG_CACHE_HOME": str(tmp_path)}) == "on: private copy"


@needs_cc
def test_a_damaged_cached_library_is_rebuilt(tmp_path):
    (tmp_path / mkl_dispatch.LIBRARY_NAME).write_bytes(b"not an ELF file")
    (tmp_path / mkl_dispatch.LIBRARY_NAME).chmod(0o755)
    assert mkl_dispatch.load_from_cache(tmp_path).startswith("on")
    assert ctypes.CDLL(str(tmp_path / mkl_dispatch.LIBRARY_NAME)).mkl_serv_intel_cpu_true() == 1


@needs_cc
def test_an_unwritable_cache_falls_back_to_a_private_copy(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")  # the cache dir would have to be created inside it
    status = mkl_dispatch.load_override({"XDG_CACHE_HOME": str(blocked)})
    assert status.startswith("on") and "built privately" in status


def test_without_a_compiler_nothing_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(mkl_dispatch.shutil, "which", lambda name: None)
    assert mkl_dispatch.compile_library(tmp_path) is None
    status = mkl_dispatch.load_override({"XDG_CACHE_HOME": str(tmp_path)})
    assert status.startswith("off") and "no C compiler" in status


def test_a_failing_compiler_is_reported_with_its_message(tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: fatal error: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(mkl_dispatch.shutil, "which", lambda name: str(fake))
    with pytest.raises(OSError, match="no space left"):
        mkl_dispatch.compile_library(tmp_path / "cache")


@pytest.mark.parametrize("failure", ["build", "load", "anything"])
def test_enable_never_raises(monkeypatch, tmp_path, failure):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache: it must build
    monkeypatch.setattr(mkl_dispatch, "_status", "not attempted")
    monkeypatch.setattr(mkl_dispatch, "reason_to_skip", lambda *args: None)

    def broken(*args, **kwargs):
        raise {"build": OSError, "load": OSError, "anything": RuntimeError}[failure](failure)

    target = {"build": "compile_library", "load": "load_from_cache", "anything": "load_override"}
    monkeypatch.setattr(mkl_dispatch, target[failure], broken)
    if failure == "load":
        monkeypatch.setattr(mkl_dispatch, "load_private_copy", broken)
    status = mkl_dispatch.enable()
    assert status.startswith("off") and failure in status and mkl_dispatch.status() == status


def test_code_path_unknown_rather_than_wrong_when_mkl_cannot_be_asked(monkeypatch):
    def no_library(*args, **kwargs):
        raise OSError("cannot open shared object file")

    monkeypatch.setattr(mkl_dispatch.ctypes, "CDLL", no_library)
    import torch

    expected = "MKL unknown" if torch.backends.mkl.is_available() else "no MKL"
    assert mkl_dispatch.blas_description() == expected


def probe_process(setting: str, cache, torch_first: bool = False) -> tuple[str, str]:
    """(status, MKL code path) in a fresh Python that imports initlab (and torch)."""
    imports = "import torch, initlab" if torch_first else "import initlab, torch"
    report = "from initlab import mkl_dispatch as d; print(d.status()); print(d.mkl_code_path())"
    env = {**os.environ, mkl_dispatch.ENV_VAR: setting, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", f"{imports}; {report}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    status, path = done.stdout.strip().splitlines()[-2:]
    return status, path


def avx512_amd() -> bool:
    vendor, flags = mkl_dispatch.read_cpuinfo()
    return platform.system() == "Linux" and vendor == "AuthenticAMD" and "avx512f" in flags


@pytest.mark.skipif(not avx512_amd(), reason="needs an AMD CPU with AVX-512")
@needs_cc
def test_mkl_switches_to_avx512_kernels_on_this_amd_cpu(tmp_path):
    status, path = probe_process("auto", tmp_path)
    assert status.startswith("on") and str(tmp_path) in status, status
    assert path == "AVX512_E1"
    status, path = probe_process("off", tmp_path)
    assert status.startswith("off") and path != "AVX512_E1"
    status, path = probe_process("auto", tmp_path, torch_first=True)
    assert status.startswith("inactive") and path != "AVX512_E1"


@pytest.mark.skipif(avx512_amd(), reason="checks the other machines")
def test_elsewhere_nothing_is_loaded_and_the_status_says_why(tmp_path):
    status, _ = probe_process("auto", tmp_path)
    assert status.startswith(("not needed", "off")), status
    assert not (tmp_path / "initlab").exists()

"""initlab.mkl_dispatch: when the MKL override applies, that it builds, and that it takes effect."""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import sys

import pytest

from initlab import mkl_dispatch

AMD = {"system": "Linux", "machine": "x86_64", "vendor": "AuthenticAMD"}


def skip_reason(environ=None, modules=None, **overrides) -> str | None:
    where = {**AMD, **overrides}
    return mkl_dispatch.reason_to_skip(environ or {}, modules or {}, **where)


def test_applies_on_linux_amd_before_torch():
    assert skip_reason() is None
    assert skip_reason({mkl_dispatch.ENV_VAR: "auto"}) is None


@pytest.mark.parametrize("value", ["off", "0", "False", "no"])
def test_environment_variable_turns_it_off(value):
    assert skip_reason({mkl_dispatch.ENV_VAR: value}).startswith("off")


def test_not_applied_where_mkl_already_chooses_well():
    assert "not needed" in skip_reason(vendor="GenuineIntel")
    assert "not needed" in skip_reason(system="Darwin", machine="arm64")
    assert "not needed" in skip_reason(machine="aarch64")


def test_too_late_once_torch_is_imported():
    reason = skip_reason(modules={"torch": object()})
    assert reason.startswith("inactive") and "import initlab first" in reason


def test_cpu_vendor_reads_the_first_vendor_id(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n")
    assert mkl_dispatch.cpu_vendor(str(info)) == "AuthenticAMD"
    assert mkl_dispatch.cpu_vendor(str(tmp_path / "missing")) == ""


def test_cache_dir_follows_xdg(tmp_path):
    assert mkl_dispatch.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "initlab"


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@needs_cc
def test_built_library_answers_that_the_cpu_is_intel_and_is_reused(tmp_path):
    library = mkl_dispatch.build_library(tmp_path)
    assert library is not None and library.exists()
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1
    built_at = library.stat().st_mtime_ns
    assert mkl_dispatch.build_library(tmp_path) == library
    assert library.stat().st_mtime_ns == built_at  # cached, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [mkl_dispatch.LIBRARY_NAME]


@needs_cc
def test_an_unwritable_cache_falls_back_to_a_temporary_directory(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")  # the cache dir would have to be created inside it
    monkeypatch.setattr(mkl_dispatch.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    library = mkl_dispatch.build_library_somewhere({"XDG_CACHE_HOME": str(blocked)})
    assert library is not None and library.parent.parent == tmp_path / "tmp"
    assert ctypes.CDLL(str(library)).mkl_serv_intel_cpu_true() == 1


def test_without_a_compiler_nothing_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(mkl_dispatch.shutil, "which", lambda name: None)
    assert mkl_dispatch.build_library(tmp_path) is None


def probe_process(setting: str, torch_first: bool = False) -> tuple[str, str]:
    """(status, MKL code path) in a fresh Python that imports initlab (and torch)."""
    imports = "import torch, initlab" if torch_first else "import initlab, torch"
    report = "from initlab import mkl_dispatch as d; print(d.status()); print(d.mkl_code_path())"
    code = f"{imports}; {report}"
    env = {**os.environ, mkl_dispatch.ENV_VAR: setting}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    status, path = done.stdout.strip().splitlines()[-2:]
    return status, path


def avx512_amd() -> bool:
    return (
        platform.system() == "Linux"
        and mkl_dispatch.cpu_vendor() == "AuthenticAMD"
        and "avx512f" in open("/proc/cpuinfo").read()
    )


@pytest.mark.skipif(not avx512_amd(), reason="needs an AMD CPU with AVX-512")
@needs_cc
def test_mkl_switches_to_avx512_kernels_on_this_amd_cpu():
    status, path = probe_process("auto")
    assert status.startswith("on"), status
    assert path == "AVX512_E1"
    status, path = probe_process("off")
    assert status.startswith("off") and path != "AVX512_E1"
    status, path = probe_process("auto", torch_first=True)
    assert status.startswith("inactive") and path != "AVX512_E1"


@pytest.mark.skipif(avx512_amd(), reason="checks the other machines")
def test_elsewhere_the_status_says_why_nothing_changed():
    status, _ = probe_process("auto")
    assert status.startswith(("not needed", "off", "on"))

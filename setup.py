"""Build the one optional native piece of initlab: the library that lets MKL use its AVX-512
kernels on AMD CPUs (``initlab.mkl_dispatch``). Everything else is in pyproject.toml.

It is only useful (and only built) on Linux x86-64, where PyTorch uses MKL. ``optional=True``:
without a C compiler or Python's headers the install still succeeds, without the library
(``initlab --version`` then says ``not built``).
"""

import platform

from setuptools import Extension, setup

USEFUL_HERE = platform.system() == "Linux" and platform.machine() == "x86_64"

setup(
    ext_modules=[
        Extension(
            "initlab._mkl_intel_cpu_true",
            sources=["src/initlab/_mkl_intel_cpu_true.c"],
            optional=True,
        )
    ]
    if USEFUL_HERE
    else [],
)

/* The library behind initlab.mkl_dispatch: MKL asks mkl_serv_intel_cpu_true() whether the
 * CPU is Intel's and, on AMD, runs its AVX2 kernels even where AVX-512 is present. Loaded
 * with RTLD_GLOBAL before torch, this definition answers "yes", and MKL then picks its
 * kernels by instruction set (it still checks CPUID for AVX-512 and AVX2 itself).
 *
 * It is built as a CPython extension module only so that a standard setuptools build
 * compiles it at install time (setup.py); initlab loads it with ctypes and never imports it.
 * Importing it gives an empty module. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int mkl_serv_intel_cpu_true(void) { return 1; }

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_mkl_intel_cpu_true",
    "Defines mkl_serv_intel_cpu_true() (returns 1) for MKL; see initlab.mkl_dispatch.",
    0,
    NULL,
};

PyMODINIT_FUNC PyInit__mkl_intel_cpu_true(void) { return PyModuleDef_Init(&module); }

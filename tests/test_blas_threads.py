"""fastdl._blas_threads: NumPy's BLAS thread count set at run time (what a data-parallel job's
processes on one machine do to share its cores)."""

import ctypes
import os

import pytest

from fastdl import _blas_threads

_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads", "MKL_Get_Max_Threads")


def _blas():
    """(library, its thread-count getter) of NumPy's BLAS, or a skip."""
    for path in _blas_threads._loaded_libraries():
        lib = ctypes.CDLL(path)
        for name in _GETTERS:
            getter = getattr(lib, name, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                return os.path.basename(path), getter
    pytest.skip("NumPy's BLAS here is neither OpenBLAS nor MKL (or not found in /proc/self/maps)")


def test_set_blas_threads_sets_numpys_blas():
    name, get = _blas()
    before = get()
    try:
        assert name in _blas_threads.set_blas_threads(1)
        assert get() == 1
        _blas_threads.set_blas_threads(2)
        assert get() == 2
    finally:
        _blas_threads.set_blas_threads(before)
    assert get() == before

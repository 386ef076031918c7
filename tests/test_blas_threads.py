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


def test_fit_keeps_one_thread_pool_busy_at_a_time():
    """With NumPy's BLAS on several threads, fit / evaluate / predict run fastdl's kernels on one (the
    two spinning pools slow each other down), or the BLAS on one for a model with an Embedding, and
    give the counts back after; with the BLAS on one thread the kernels keep theirs."""
    import numpy as np
    from fastdl import _backend, callbacks, layers, models
    ext = _backend.cpu_extension()
    if ext is None:
        pytest.skip("the C++ module is not built")
    _, get = _blas()
    before, threads = get(), ext.num_threads()
    seen = []
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)
    probe = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append((get(), ext.num_threads())))
    try:
        ext.set_num_threads(2)
        _blas_threads.set_blas_threads(2)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe])
        assert seen == [(2, 1)] and ext.num_threads() == 2 and get() == 2
        text = models.Sequential([layers.Input((3,)), layers.Embedding(5, 2), layers.Flatten(), layers.Dense(2)])
        text.compile("sgd", "mse")
        text.fit(x, y, epochs=1, verbose=0, callbacks=[probe])  # an Embedding's model: the BLAS on one
        assert seen[-1] == (1, 2) and ext.num_threads() == 2 and get() == 2
        _blas_threads.set_blas_threads(1)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe])
        assert seen[-1] == (1, 2) and ext.num_threads() == 2
    finally:
        _blas_threads.set_blas_threads(before)
        ext.set_num_threads(threads)

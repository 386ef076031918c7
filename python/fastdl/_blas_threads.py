"""The thread count of NumPy's BLAS (OpenBLAS or MKL), set at run time.

A data-parallel job runs several processes on one machine; each one's BLAS starts a thread per core
and spins while waiting for work, so K processes oversubscribe the cores K times over and a step
slows down by orders of magnitude (measured: the seed MLP's step went from 0.13 ms to 64 ms at 2
processes on 2 cores). The BLAS reads OPENBLAS_NUM_THREADS / MKL_NUM_THREADS only when it loads,
which is before fastdl.distributed.init() runs, so the count is set through the library's own
function, found among the libraries this process has loaded (as threadpoolctl does, without
depending on it).

The same two pools fight inside one process: after a matmul NumPy's BLAS threads spin, waiting
for the next one, on the cores where fastdl's OpenMP kernels then run, and while those kernels
wait at their barriers the BLAS cannot run. A CNN's fit, which alternates matmuls and kernels on
megabyte activations, ran 4x slower for it. So fit, evaluate and predict keep one pool busy at a
time (one_thread_pool_in_loops), the one whose work dominates the model. Measured on 2 cores
(samples/s; MLP at batch 32 / 1024, the CNN and the Embedding text model of
bench/cnn_text_speed.py):

    kernels on one thread, BLAS on two:  555k / 1.77M / 4,940 / 24,100
    BLAS on one thread, kernels on two:  544k / 1.29M / 4,220 / 34,500

Models of matmuls (Dense, convolutions) run their kernels on one thread; a model with an
Embedding, whose step is the table's gather, gradient and optimizer update, runs the BLAS on one.
(Making fastdl's OpenMP threads sleep at once instead, OMP_WAIT_POLICY=passive, suits both models
but made each standalone kernel call up to 8x slower.) With OPENBLAS_NUM_THREADS=1 (or
MKL_NUM_THREADS=1) the kernels keep their threads.
"""

import contextlib
import ctypes
import functools
import os

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads", "MKL_Set_Num_Threads")


def _loaded_libraries():
    """Paths of the shared libraries loaded in this process whose names say BLAS (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if ".so" in p and any(k in os.path.basename(p).lower()
                                                         for k in ("openblas", "mkl_rt")))


def set_blas_threads(n):
    """Sets every loaded OpenBLAS / MKL to n threads; returns the libraries set (empty where none was
    found: macOS, Windows, or a BLAS without such a function)."""
    import numpy  # noqa: F401  (its BLAS must be loaded to be found)
    done = []
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                setter(int(n))
                done.append(os.path.basename(path))
                break
    return done


_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads", "MKL_Get_Max_Threads")


@functools.lru_cache(maxsize=1)
def _controls():
    """[(setter, getter)] of every loaded BLAS with both functions (looked up once per process)."""
    import numpy  # noqa: F401  (its BLAS must be loaded to be found)
    found = []
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
        getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
            found.append((setter, getter))
    return found


@contextlib.contextmanager
def one_thread_pool_in_loops(kernel_bound=False):
    """One pool busy at a time for a training / inference loop (see the module): fastdl's kernels
    on one thread while NumPy's BLAS runs on several, or, for a kernel_bound model, the BLAS on one
    thread; both back to what they were after."""
    from . import _backend
    ext = _backend.cpu_extension()
    controls = _controls()
    blas = [getter() for _, getter in controls]
    threads = ext.num_threads() if ext is not None else 1
    if max(blas, default=1) <= 1 or threads <= 1:
        yield
        return
    if kernel_bound:
        for setter, _ in controls:
            setter(1)
    else:
        ext.set_num_threads(1)
    try:
        yield
    finally:
        if kernel_bound:
            for (setter, _), b in zip(controls, blas):
                setter(b)
        else:
            ext.set_num_threads(threads)

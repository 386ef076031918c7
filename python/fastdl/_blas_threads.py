"""The thread count of NumPy's BLAS (OpenBLAS or MKL), set at run time.

A data-parallel job runs several processes on one machine; each one's BLAS starts a thread per core
and spins while waiting for work, so K processes oversubscribe the cores K times over and a step
slows down by orders of magnitude (measured: the seed MLP's step went from 0.13 ms to 64 ms at 2
processes on 2 cores). The BLAS reads OPENBLAS_NUM_THREADS / MKL_NUM_THREADS only when it loads,
which is before fastdl.distributed.init() runs, so the count is set through the library's own
function, found among the libraries this process has loaded (as threadpoolctl does, without
depending on it).
"""

import ctypes
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

"""Which implementation runs an op, chosen per call from the arrays it is given.

- NumPy arrays -> the C++ CPU module (``fastdl._fastdl_cpu``), or the pure-NumPy fallback when
  the module did not import or ``FASTDL_BACKEND=numpy`` asks for it. ``FASTDL_BACKEND=cpu``
  makes a missing module an import error instead of a silent fallback. This is the *host
  preference*; ``use_host`` changes it for a block (tests and benchmarks).
- CuPy arrays -> the CUDA module on the array's device (``fastdl.backends.cuda``).
- torch tensors go through ``fastdl.torch``, which picks the CPU or CUDA module itself.

``kernels_for(x)`` is the one lookup: by array type, cached, so a small-batch training loop
pays a dict lookup per call. Whether the other arguments match x (same array type, same
device) is checked by ``fastdl._checks`` with the arguments' names.
"""

import contextlib
import os

from .backends import cpu, numpy_kernels, numpy_layers

_fastdl_cpu, _CPU_IMPORT_ERROR = cpu.module, cpu.import_error

_REQUESTED = os.environ.get("FASTDL_BACKEND", "").strip().lower() or "auto"
if _REQUESTED not in ("auto", "cpu", "numpy"):
    raise ImportError(f"FASTDL_BACKEND={_REQUESTED!r}: expected 'cpu', 'numpy' or 'auto'")
if _REQUESTED == "cpu" and _fastdl_cpu is None:
    raise ImportError(f"FASTDL_BACKEND=cpu but the C++ extension did not import: {_CPU_IMPORT_ERROR}")

# Activation ids shared by every implementation.
ACTIVATIONS = numpy_kernels.ACTIVATIONS
if _fastdl_cpu is not None and dict(_fastdl_cpu.ACTIVATIONS) != ACTIVATIONS:
    raise ImportError("fastdl's C++ extension and Python package are out of step: reinstall fastdl")

# The host preference: the implementation NumPy arrays go to, and its name.
host = numpy_kernels if _REQUESTED == "numpy" or _fastdl_cpu is None else _fastdl_cpu
name = "numpy" if host is numpy_kernels else "cpu"

_BY_TYPE = {}  # array type -> implementation (NumPy's entry follows the host preference)


def kernels_for(x):
    """The implementation for arrays of x's type (x: the op's first array argument)."""
    kind = type(x)
    k = _BY_TYPE.get(kind)
    if k is None:
        k = _resolve(kind)
    return k


def layer_kernel(x, name):
    """The layer kernel `name` (fastdl/backends/numpy_layers.py's names and arguments) for arrays
    of x's type: the C++ or CUDA module's, or the NumPy one (CuPy arrays too) where that module
    has none."""
    return getattr(kernels_for(x), name, None) or getattr(numpy_layers, name)


def _resolve(kind):
    import numpy as np
    if issubclass(kind, np.ndarray):
        k = host
    elif kind.__module__.split(".")[0] == "cupy":
        from .backends import cuda
        ok, why = cuda.available()
        if not ok:
            raise RuntimeError(f"CuPy arrays need fastdl's CUDA module and a GPU: {why}")
        k = cuda
    else:
        raise TypeError(f"fastdl has no implementation for {kind.__module__}.{kind.__name__} arrays: pass NumPy "
                        f"or CuPy arrays (torch tensors: use fastdl.torch)")
    _BY_TYPE[kind] = k
    return k


def set_host(which):
    """Routes NumPy arrays to 'cpu' (the C++ module) or 'numpy' (the fallback), process-wide."""
    global host, name
    if which == "numpy":
        host, name = numpy_kernels, "numpy"
    elif which == "cpu":
        if _fastdl_cpu is None:
            raise RuntimeError(f"the C++ extension did not import: {_CPU_IMPORT_ERROR}")
        host, name = _fastdl_cpu, "cpu"
    else:
        raise ValueError(f"host backend must be 'cpu' or 'numpy', got {which!r}")
    _BY_TYPE.clear()


@contextlib.contextmanager
def use_host(which):
    """Runs the block with NumPy arrays routed to `which` ('cpu' or 'numpy'); for tests and
    benchmarks (process-wide while it lasts, not per thread)."""
    before = name
    set_host(which)
    try:
        yield host
    finally:
        set_host(before)


def cpu_extension():
    """The loaded C++ extension module, or None."""
    return _fastdl_cpu


def cpu_import_error():
    """Why the C++ extension did not load (an ImportError), or None."""
    return _CPU_IMPORT_ERROR


def cuda_status():
    """What the CUDA module sees: {"extension": bool, "devices": int, "reason": str or None,
    "device_name": str or None}. Never fails: a missing module or driver is a reason."""
    try:
        from . import _fastdl_cuda
    except ImportError as exc:
        return {"extension": False, "devices": 0, "reason": f"the CUDA module is not built ({exc})",
                "device_name": None}
    status = _fastdl_cuda.status()
    devices = int(status["devices"])
    return {"extension": True, "devices": devices, "reason": status["reason"],
            "device_name": _fastdl_cuda.device_name(0) if devices else None}

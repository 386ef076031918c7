"""Which implementation runs an op: the C++ extension (``cpu``) or pure NumPy (``numpy``).

NumPy arrays go to the C++ kernels when the extension imports, else to the NumPy fallback.
``FASTDL_BACKEND=numpy`` forces the fallback; ``FASTDL_BACKEND=cpu`` makes a missing
extension an import error instead of a silent fallback.
"""

import os

from .backends import numpy_kernels

try:
    from . import _fastdl_cpu
    _CPU_IMPORT_ERROR = None
except ImportError as exc:  # not built, or built for another Python / platform
    _fastdl_cpu = None
    _CPU_IMPORT_ERROR = exc

_REQUESTED = os.environ.get("FASTDL_BACKEND", "").strip().lower() or "auto"
if _REQUESTED not in ("auto", "cpu", "numpy"):
    raise ImportError(f"FASTDL_BACKEND={_REQUESTED!r}: expected 'cpu', 'numpy' or 'auto'")
if _REQUESTED == "cpu" and _fastdl_cpu is None:
    raise ImportError(f"FASTDL_BACKEND=cpu but the C++ extension did not import: {_CPU_IMPORT_ERROR}")

if _REQUESTED == "numpy" or _fastdl_cpu is None:
    kernels = numpy_kernels
    name = "numpy"
else:
    kernels = _fastdl_cpu
    name = "cpu"

# Activation ids shared by both implementations.
ACTIVATIONS = numpy_kernels.ACTIVATIONS
if _fastdl_cpu is not None and dict(_fastdl_cpu.ACTIVATIONS) != ACTIVATIONS:
    raise ImportError("fastdl's C++ extension and Python package are out of step: reinstall fastdl")


def cpu_extension():
    """The loaded C++ extension module, or None."""
    return _fastdl_cpu


def cpu_import_error():
    """Why the C++ extension did not load (an ImportError), or None."""
    return _CPU_IMPORT_ERROR

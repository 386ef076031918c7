"""Argument checks shared by every op and backend: each bad input gets a TypeError or
ValueError that names the argument, before anything is computed or written."""

import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# CuPy arrays may also be float16: the CUDA kernels store 16-bit floats and compute in float32.
DEVICE_FLOAT_DTYPES = (np.dtype(np.float16),) + FLOAT_DTYPES


# ---- what an array is: host or device, and its module -------------------------------------------
# Only NumPy (host) and CuPy (device) arrays reach the kernels; a CuPy array is recognised by its
# type's module, so CuPy is imported only by programs that use it.

def on_device(x):
    """Whether x is a CuPy (device) array."""
    kind = type(x)
    return kind is not np.ndarray and kind.__module__.split(".")[0] == "cupy"


def array_module(x):
    """numpy, or cupy for a CuPy array."""
    if on_device(x):
        import cupy
        return cupy
    return np


def to_host(x):
    """x as a NumPy array: a CuPy array is copied to the host (waiting for its device), anything
    else goes through np.asarray."""
    return x.get() if on_device(x) else np.asarray(x)


def where(x):
    """Where x lives, for messages: 'the host' or 'cuda:N'."""
    return f"cuda:{x.device.id}" if on_device(x) else "the host"


def address(x):
    return x.data.ptr if on_device(x) else x.ctypes.data


def _kind(x):
    return f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"


def same_place(a, ref, name, ref_name):
    """A TypeError/ValueError naming both arguments unless a and ref are arrays of one type on one
    device."""
    if type(a) is not type(ref):
        raise TypeError(f"{name} is a {_kind(a)} on {where(a)} but {ref_name} is a {_kind(ref)} on {where(ref)}: "
                        f"move both to one device")
    if on_device(a) and a.device.id != ref.device.id:
        raise ValueError(f"{name} is on {where(a)} but {ref_name} is on {where(ref)}: move both to one device")


def _dense(x):
    """C-contiguous and aligned to its element size (CuPy has no `aligned` flag: checked from the address)."""
    if on_device(x):
        return x.flags.c_contiguous and x.data.ptr % x.dtype.itemsize == 0
    return x.flags.c_contiguous and x.flags.aligned


def float_array(x, name, like=None):
    """x as a C-contiguous, aligned float array (copied only if it is not one): NumPy float32/float64,
    or CuPy float16/float32/float64. Non-arrays become arrays of like's module (NumPy without like)."""
    if type(x) is not np.ndarray:
        if on_device(x):
            if x.dtype not in DEVICE_FLOAT_DTYPES:
                raise TypeError(f"{name} must be a float16, float32 or float64 array, got dtype {x.dtype}")
            if not _dense(x):
                x = x.copy(order="C")  # CuPy allocations are aligned
            return x
        x = array_module(like).asarray(x) if like is not None else np.asarray(x)
        if on_device(x):
            return float_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}")
    if not (x.flags.c_contiguous and x.flags.aligned):
        x = np.ascontiguousarray(x)
        if not x.flags.aligned:
            x = x.copy()
    return x


def same_as(a, ref, name, ref_name):
    """a as a float array with ref's array type, device, dtype and shape."""
    if type(a) is not type(ref) and (type(a) is np.ndarray or on_device(a)):
        same_place(a, ref, name, ref_name)
    a = float_array(a, name, like=ref)
    same_place(a, ref, name, ref_name)
    if a.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}; cast one of them")
    if a.shape != ref.shape:
        raise ValueError(f"{name} has shape {a.shape} but {ref_name} has shape {ref.shape}")
    return a


def output(out, like, like_name, inputs=()):
    """The array to write a result shaped like `like` into: a new one, or `out` checked.

    Returns (out, inputs): an input that overlaps `out` without being exactly `out` is copied
    first, so that writing the result cannot change what is still to be read.
    """
    if out is None:
        return array_module(like).empty_like(like), inputs
    if type(out) is not np.ndarray and not on_device(out):
        raise TypeError(f"out must be a {_kind(like)}, got {type(out).__name__}")
    same_place(out, like, "out", like_name)
    if out.dtype != like.dtype:
        raise TypeError(f"out has dtype {out.dtype} but {like_name} has dtype {like.dtype}")
    if out.shape != like.shape:
        raise ValueError(f"out has shape {out.shape} but {like_name} has shape {like.shape}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (in-place results cannot go to a strided view)")
    if not _dense(out):
        raise ValueError(f"out must be aligned to its {out.dtype.itemsize}-byte elements (it starts at byte "
                         f"address {address(out):#x}); pass an array {array_module(out).__name__} allocated, "
                         f"not a misaligned view")
    if not on_device(out) and not out.flags.writeable:
        raise ValueError("out is read-only")
    if inputs:
        inputs = tuple(_detached(a, out) for a in inputs)
    return out, inputs


def may_share_memory(a, b):
    return array_module(a).may_share_memory(a, b)


def _detached(a, out):
    if a is out or not may_share_memory(a, out):
        return a
    if address(a) == address(out) and a.shape == out.shape and a.dtype == out.dtype:
        return a  # exactly the same elements: the kernels read each element before writing it
    return a.copy()


def axis_index(axis, ndim, name="axis"):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimension(s)")
    return int(axis) % ndim


def flag(value, name):
    """A bool argument: True / False (NumPy's too). Anything else is refused rather than read
    by truth value, where from_logits='False' would mean True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def whole(value, name, low=None):
    """An int argument (not a bool, not a float), at least `low` when given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def real(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite float in the given range (a bool or a string is not a number here)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    except OverflowError:  # an int beyond float's range
        v = math.inf
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    bad = False
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name}={value!r} must be in {lo}{'-inf' if low is None else low}, "
                         f"{'inf' if high is None else high}{hi}")
    return v

"""The layer kernels of issue #13 on CuPy arrays: the functions of numpy_layers (same names,
arguments and results), running fastdl's CUDA kernels (fastdl._fastdl_cuda) on the arrays' device
and CuPy's current stream; nothing waits for the GPU (but embedding_backward's id check, which reads
the ids' range back).

The arguments are checked here (the CUDA module sees only addresses): CuPy arrays of one dtype
(float32 or float64), C-contiguous, of the shapes the contract names; outputs must not share memory
with other arguments except where the contract allows (y over x, dx over dy). Each error names the
argument."""

import numpy as np

from .cuda import _m, _stream


def _check(name, a, dtype, shape, optional=False):
    if a is None:
        if optional:
            return
        raise TypeError(f"{name} must be a CuPy array, got None")
    if type(a).__module__.split(".")[0] != "cupy":
        raise TypeError(f"{name} must be a CuPy array, got {type(a).__module__}.{type(a).__name__}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but must be {np.dtype(dtype)}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def _float_dtype(name, a):
    _check(name, a, None, None)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return a.dtype


def _span(a):
    return a.data.ptr, a.data.ptr + a.nbytes


def _no_overlap(outputs, inputs):
    """outputs: (name, array or None, the input name it may be exactly or None); inputs: (name, array)."""
    named = [(n, a) for n, a, _ in outputs] + list(inputs)
    for i, (name, out, may_be) in enumerate(outputs):
        if out is None or out.nbytes == 0:
            continue
        for other, a in named:
            if other == name or a is None or a.nbytes == 0:
                continue
            lo, hi = _span(out)
            alo, ahi = _span(a)
            if lo < ahi and alo < hi and not (other == may_be and lo == alo and hi == ahi):
                raise ValueError(f"{name} must not share memory with {other}")


def _ptr(a):
    return 0 if a is None else a.data.ptr


def _where(x):
    return x.device.id, _stream()


# ---- LayerNorm ------------------------------------------------------------------------------------

def layer_norm(x, gamma, beta, y, mean, rstd, eps):
    """numpy_layers.layer_norm on the GPU: each row of x (rows, C) normalized; writes y (may be x),
    mean and rstd (rows,)."""
    dt = _float_dtype("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, C), got shape {x.shape}")
    rows, c = x.shape
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("beta", beta, dt, (c,), optional=True)
    _check("y", y, dt, x.shape)
    _check("mean", mean, dt, (rows,))
    _check("rstd", rstd, dt, (rows,))
    _no_overlap([("y", y, "x"), ("mean", mean, None), ("rstd", rstd, None)],
                [("x", x), ("gamma", gamma), ("beta", beta)])
    with x.device:
        _m().layer_norm(dt.name, x.data.ptr, _ptr(gamma), _ptr(beta), y.data.ptr, mean.data.ptr, rstd.data.ptr,
                        rows, c, float(eps), *_where(x))


def layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """numpy_layers.layer_norm_backward on the GPU: dx (may be dy), dgamma, dbeta (each None: not computed)."""
    dt = _float_dtype("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, C), got shape {x.shape}")
    rows, c = x.shape
    _check("dy", dy, dt, x.shape)
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("mean", mean, dt, (rows,))
    _check("rstd", rstd, dt, (rows,))
    _check("dx", dx, dt, x.shape, optional=True)
    _check("dgamma", dgamma, dt, (c,), optional=True)
    _check("dbeta", dbeta, dt, (c,), optional=True)
    _no_overlap([("dx", dx, "dy"), ("dgamma", dgamma, None), ("dbeta", dbeta, None)],
                [("dy", dy), ("x", x), ("gamma", gamma), ("mean", mean), ("rstd", rstd)])
    with x.device:
        _m().layer_norm_backward(dt.name, dy.data.ptr, x.data.ptr, _ptr(gamma), mean.data.ptr, rstd.data.ptr,
                                 _ptr(dx), _ptr(dgamma), _ptr(dbeta), rows, c, *_where(x))


# ---- BatchNorm ------------------------------------------------------------------------------------

def batch_norm(x, gamma, beta, y, mean, var, rstd, eps):
    """numpy_layers.batch_norm on the GPU: each column of x (M, C) over its rows; writes y (may be x),
    mean, var, rstd (C,)."""
    dt = _float_dtype("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, C), got shape {x.shape}")
    rows, c = x.shape
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("beta", beta, dt, (c,), optional=True)
    _check("y", y, dt, x.shape)
    for name, a in (("mean", mean), ("var", var), ("rstd", rstd)):
        _check(name, a, dt, (c,))
    _no_overlap([("y", y, "x"), ("mean", mean, None), ("var", var, None), ("rstd", rstd, None)],
                [("x", x), ("gamma", gamma), ("beta", beta)])
    with x.device:
        _m().batch_norm(dt.name, x.data.ptr, _ptr(gamma), _ptr(beta), y.data.ptr, mean.data.ptr, var.data.ptr,
                        rstd.data.ptr, rows, c, float(eps), *_where(x))


def batch_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """numpy_layers.batch_norm_backward on the GPU: dx (may be dy), dgamma, dbeta (each None: not written)."""
    dt = _float_dtype("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, C), got shape {x.shape}")
    rows, c = x.shape
    _check("dy", dy, dt, x.shape)
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("mean", mean, dt, (c,))
    _check("rstd", rstd, dt, (c,))
    _check("dx", dx, dt, x.shape, optional=True)
    _check("dgamma", dgamma, dt, (c,), optional=True)
    _check("dbeta", dbeta, dt, (c,), optional=True)
    _no_overlap([("dx", dx, "dy"), ("dgamma", dgamma, None), ("dbeta", dbeta, None)],
                [("dy", dy), ("x", x), ("gamma", gamma), ("mean", mean), ("rstd", rstd)])
    with x.device:
        _m().batch_norm_backward(dt.name, dy.data.ptr, x.data.ptr, _ptr(gamma), mean.data.ptr, rstd.data.ptr,
                                 _ptr(dx), _ptr(dgamma), _ptr(dbeta), rows, c, *_where(x))


def channel_affine(x, scale, shift, y):
    """numpy_layers.channel_affine on the GPU: y = x scale + shift over the last axis (y may be x)."""
    dt = _float_dtype("x", x)
    if x.ndim < 1:
        raise ValueError("x must have a channel axis: shape (..., C)")
    c = x.shape[-1]
    _check("scale", scale, dt, (c,))
    _check("shift", shift, dt, (c,))
    _check("y", y, dt, x.shape)
    _no_overlap([("y", y, "x")], [("x", x), ("scale", scale), ("shift", shift)])
    with x.device:
        _m().channel_affine(dt.name, x.data.ptr, scale.data.ptr, shift.data.ptr, y.data.ptr,
                            (x.size // c) if c else 0, c, *_where(x))

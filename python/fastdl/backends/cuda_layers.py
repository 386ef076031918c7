"""The layer kernels of issue #13 on CuPy arrays: the functions of numpy_layers (same names,
arguments and results), running fastdl's CUDA kernels (fastdl._fastdl_cuda) on the arrays' device
and CuPy's current stream; nothing waits for the GPU (but the embedding kernels' id check, which reads
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


# ---- LayerNorm and BatchNorm ------------------------------------------------------------------------

def _norm_rows(x):
    """(dtype, rows, C) of a normalization's input x (rows, C)."""
    dt = _float_dtype("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, C), got shape {x.shape}")
    return (dt,) + tuple(x.shape)


def _norm_forward(x, gamma, beta, y, stats, per_row):
    """The forward's checks: gamma, beta (C,) or None, y like x (may be x), the statistics (name,
    array), one per row (LayerNorm) or per column (BatchNorm), none of them overlapping."""
    dt, rows, c = _norm_rows(x)
    stat_shape = (rows,) if per_row else (c,)
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("beta", beta, dt, (c,), optional=True)
    _check("y", y, dt, x.shape)
    for name, a in stats:
        _check(name, a, dt, stat_shape)
    _no_overlap([("y", y, "x")] + [(name, a, None) for name, a in stats], [("x", x), ("gamma", gamma), ("beta", beta)])
    return dt


def _norm_backward(kernel, per_row, dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """LayerNorm's and BatchNorm's backward: the same arguments but for the statistics, one per row
    (LayerNorm) or per column (BatchNorm)."""
    dt, rows, c = _norm_rows(x)
    stat_shape = (rows,) if per_row else (c,)
    _check("dy", dy, dt, x.shape)
    _check("gamma", gamma, dt, (c,), optional=True)
    _check("mean", mean, dt, stat_shape)
    _check("rstd", rstd, dt, stat_shape)
    _check("dx", dx, dt, x.shape, optional=True)
    _check("dgamma", dgamma, dt, (c,), optional=True)
    _check("dbeta", dbeta, dt, (c,), optional=True)
    _no_overlap([("dx", dx, "dy"), ("dgamma", dgamma, None), ("dbeta", dbeta, None)],
                [("dy", dy), ("x", x), ("gamma", gamma), ("mean", mean), ("rstd", rstd)])
    with x.device:
        getattr(_m(), kernel)(dt.name, dy.data.ptr, x.data.ptr, _ptr(gamma), mean.data.ptr, rstd.data.ptr, _ptr(dx),
                              _ptr(dgamma), _ptr(dbeta), rows, c, *_where(x))


def layer_norm(x, gamma, beta, y, mean, rstd, eps):
    """numpy_layers.layer_norm on the GPU: each row of x (rows, C) normalized; writes y (may be x),
    mean and rstd (rows,)."""
    dt = _norm_forward(x, gamma, beta, y, [("mean", mean), ("rstd", rstd)], True)
    with x.device:
        _m().layer_norm(dt.name, x.data.ptr, _ptr(gamma), _ptr(beta), y.data.ptr, mean.data.ptr, rstd.data.ptr,
                        x.shape[0], x.shape[1], float(eps), *_where(x))


def layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """numpy_layers.layer_norm_backward on the GPU: dx (may be dy), dgamma, dbeta (each None: not computed)."""
    _norm_backward("layer_norm_backward", True, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)


def batch_norm(x, gamma, beta, y, mean, var, rstd, eps):
    """numpy_layers.batch_norm on the GPU: each column of x (M, C) over its rows; writes y (may be x),
    mean, var, rstd (C,)."""
    dt = _norm_forward(x, gamma, beta, y, [("mean", mean), ("var", var), ("rstd", rstd)], False)
    with x.device:
        _m().batch_norm(dt.name, x.data.ptr, _ptr(gamma), _ptr(beta), y.data.ptr, mean.data.ptr, var.data.ptr,
                        rstd.data.ptr, x.shape[0], x.shape[1], float(eps), *_where(x))


def batch_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """numpy_layers.batch_norm_backward on the GPU: dx (may be dy), dgamma, dbeta (each None: not written)."""
    _norm_backward("batch_norm_backward", False, dy, x, gamma, mean, rstd, dx, dgamma, dbeta)


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


# ---- windows: im2col / col2im, pooling ------------------------------------------------------------

def _window(image_name, image, out_name, out, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    """The 14 integers of the geometry, from an image (N, H, W, C) and an output (N, OH, OW, ...)."""
    for name, v in (("kh", kh), ("kw", kw), ("sh", sh), ("sw", sw), ("dh", dh), ("dw", dw)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if int(pad_top) < 0 or int(pad_left) < 0:
        raise ValueError("pad_top and pad_left must be >= 0")
    if image.ndim != 4:
        raise ValueError(f"{image_name} must be 4-D (N, H, W, C), got shape {image.shape}")
    if out.ndim != 4:
        raise ValueError(f"{out_name} must be 4-D (N, OH, OW, ...), got shape {out.shape}")
    n, h, w, c = image.shape
    if out.shape[0] != n:
        raise ValueError(f"{out_name} has {out.shape[0]} images but {image_name} has {n}")
    return [n, h, w, c, out.shape[1], out.shape[2], int(kh), int(kw), int(sh), int(sw), int(dh), int(dw),
            int(pad_top), int(pad_left)]


def im2col(x, cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    """numpy_layers.im2col on the GPU: cols (N, OH, OW, kh kw C) from x (N, H, W, C)."""
    dt = _float_dtype("x", x)
    _check("cols", cols, dt, None)
    g = _window("x", x, "cols", cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left)
    _check("cols", cols, dt, (g[0], g[4], g[5], g[6] * g[7] * g[3]))
    _no_overlap([("cols", cols, None)], [("x", x)])
    with x.device:
        _m().im2col(dt.name, x.data.ptr, cols.data.ptr, g, *_where(x))


def col2im(cols, dx, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    """numpy_layers.col2im on the GPU: im2col's adjoint into dx (written; deterministic)."""
    dt = _float_dtype("cols", cols)
    _check("dx", dx, dt, None)
    g = _window("dx", dx, "cols", cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left)
    _check("cols", cols, dt, (g[0], g[4], g[5], g[6] * g[7] * g[3]))
    _no_overlap([("dx", dx, None)], [("cols", cols)])
    with cols.device:
        _m().col2im(dt.name, cols.data.ptr, dx.data.ptr, g, *_where(cols))


def max_pool(x, y, argmax, kh, kw, sh, sw, pad_top, pad_left):
    """numpy_layers.max_pool on the GPU: y and argmax (int64) (N, OH, OW, C)."""
    dt = _float_dtype("x", x)
    _check("y", y, dt, None)
    g = _window("x", x, "y", y, kh, kw, sh, sw, 1, 1, pad_top, pad_left)
    _check("y", y, dt, (g[0], g[4], g[5], g[3]))
    _check("argmax", argmax, np.int64, y.shape)
    _no_overlap([("y", y, None), ("argmax", argmax, None)], [("x", x)])
    with x.device:
        _m().max_pool(dt.name, x.data.ptr, y.data.ptr, argmax.data.ptr, g, *_where(x))


def max_pool_backward(dy, argmax, dx):
    """numpy_layers.max_pool_backward on the GPU: dx written. argmax entries outside [-1, H W) are
    skipped (not checked: that would make the host wait for the GPU)."""
    dt = _float_dtype("dy", dy)
    _check("dx", dx, dt, None)
    g = _window("dx", dx, "dy", dy, 1, 1, 1, 1, 1, 1, 0, 0)
    _check("dy", dy, dt, (g[0], g[4], g[5], g[3]))
    _check("argmax", argmax, np.int64, dy.shape)
    _no_overlap([("dx", dx, None)], [("dy", dy), ("argmax", argmax)])
    with dy.device:
        _m().max_pool_backward(dt.name, dy.data.ptr, argmax.data.ptr, dx.data.ptr, g, *_where(dy))


def avg_pool(x, y, kh, kw, sh, sw, pad_top, pad_left):
    """numpy_layers.avg_pool on the GPU (padding not counted)."""
    dt = _float_dtype("x", x)
    _check("y", y, dt, None)
    g = _window("x", x, "y", y, kh, kw, sh, sw, 1, 1, pad_top, pad_left)
    _check("y", y, dt, (g[0], g[4], g[5], g[3]))
    _no_overlap([("y", y, None)], [("x", x)])
    with x.device:
        _m().avg_pool(dt.name, x.data.ptr, y.data.ptr, g, *_where(x))


def avg_pool_backward(dy, dx, kh, kw, sh, sw, pad_top, pad_left):
    """numpy_layers.avg_pool_backward on the GPU: dx written (a gather: deterministic)."""
    dt = _float_dtype("dy", dy)
    _check("dx", dx, dt, None)
    g = _window("dx", dx, "dy", dy, kh, kw, sh, sw, 1, 1, pad_top, pad_left)
    _check("dy", dy, dt, (g[0], g[4], g[5], g[3]))
    _no_overlap([("dx", dx, None)], [("dy", dy)])
    with dy.device:
        _m().avg_pool_backward(dt.name, dy.data.ptr, dx.data.ptr, g, *_where(dy))


# ---- Embedding ------------------------------------------------------------------------------------

def _ids64(ids, vocab):
    """The ids as int64 on their device, checked in [0, vocab) (this reads the range back: it waits)."""
    _check("ids", ids, None, None)
    if ids.dtype not in (np.int32, np.int64):
        raise TypeError(f"ids must be an int32 or int64 array, got {ids.dtype}")
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise IndexError(f"embedding ids must be in [0, {vocab}), got {lo}..{hi}")
    return ids.astype(np.int64, copy=False)


def _embedding_gradient(ids64, dy, scale, dw, steps, ignore):
    """The tokens grouped by id (a stable sort; id `ignore` sorted past the last row, so left out),
    then a gather per (row, column): dw written, deterministic."""
    import cupy
    tokens, (vocab, dim) = ids64.size, dw.shape
    keys = ids64.reshape(-1) if ignore < 0 else cupy.where(ids64.reshape(-1) == ignore, vocab, ids64.reshape(-1))
    order = cupy.ascontiguousarray(cupy.argsort(keys).astype(np.int64, copy=False))  # a stable sort
    start = cupy.searchsorted(keys[order], cupy.arange(vocab + 1, dtype=np.int64)).astype(np.int64)
    _m().embedding_backward(dw.dtype.name, order.data.ptr if tokens else 0, start.data.ptr,
                            dy.data.ptr if dy.size else 0, _ptr(scale), dw.data.ptr, tokens, steps, vocab, dim,
                            *_where(dy))


def embedding_backward(ids, dy, dw):
    """numpy_layers.embedding_backward on the GPU: dw[v] = the sum of dy[t] over ids[t] == v, in token
    order, in double (the tokens grouped by a stable sort on the device, then one gather per (v, column)).
    IndexError for an id outside [0, V): that check reads the ids' range back (it waits for the GPU)."""
    dt = _float_dtype("dy", dy)
    _check("ids", ids, None, None)
    if ids.ndim != 1 or dy.ndim != 2 or dw.ndim != 2:
        raise ValueError("ids must be 1-D (T,), dy 2-D (T, D), dw 2-D (V, D)")
    tokens, (vocab, dim) = ids.shape[0], dw.shape
    _check("dy", dy, dt, (tokens, dim))
    _check("dw", dw, dt, (vocab, dim))
    _no_overlap([("dw", dw, None)], [("ids", ids), ("dy", dy)])
    with dy.device:
        _embedding_gradient(_ids64(ids, vocab), dy, None, dw, 1, -1)


def _bag_shapes(ids, scale, rows_name, rows, dt, dim):
    _check("ids", ids, None, None)
    if ids.ndim != 2:
        raise ValueError(f"ids must be 2-D (B, S), got shape {tuple(ids.shape)}")
    _check("scale", scale, dt, (ids.shape[0],))
    _check(rows_name, rows, dt, (ids.shape[0], dim))


def embedding_bag(ids, table, scale, out, ignore=-1):
    """numpy_layers.embedding_bag on the GPU: out[b] = scale[b] * the sum of table[ids[b, s]] over the
    steps with ids[b, s] != ignore, in double (a thread per (bag, column)). IndexError for an id
    outside [0, V) (that check waits for the GPU)."""
    dt = _float_dtype("table", table)
    if table.ndim != 2:
        raise ValueError(f"table must be 2-D (V, D), got shape {tuple(table.shape)}")
    _bag_shapes(ids, scale, "out", out, dt, table.shape[1])
    _no_overlap([("out", out, None)], [("ids", ids), ("table", table), ("scale", scale)])
    with table.device:
        ids64 = _ids64(ids, table.shape[0])
        _m().embedding_bag(dt.name, ids64.data.ptr if ids64.size else 0, table.data.ptr if table.size else 0,
                           scale.data.ptr if scale.size else 0, out.data.ptr if out.size else 0, ids.shape[0],
                           ids.shape[1], table.shape[0], table.shape[1], int(ignore), *_where(table))


def embedding_bag_backward(ids, dy, scale, dw, ignore=-1):
    """numpy_layers.embedding_bag_backward on the GPU: dw[v] = the sum of scale[b] dy[b] over the tokens
    (b, s) with ids[b, s] == v != ignore, in token order, in double (dw written; deterministic)."""
    dt = _float_dtype("dy", dy)
    _check("dw", dw, dt, None)
    if dw.ndim != 2:
        raise ValueError(f"dw must be 2-D (V, D), got shape {tuple(dw.shape)}")
    _bag_shapes(ids, scale, "dy", dy, dt, dw.shape[1])
    _no_overlap([("dw", dw, None)], [("ids", ids), ("dy", dy), ("scale", scale)])
    with dy.device:
        _embedding_gradient(_ids64(ids, dw.shape[0]), dy, scale, dw, ids.shape[1] or 1, int(ignore))

"""The layer kernels of issue #13 in NumPy (CuPy arrays work too): normalization, convolution's
im2col / col2im, pooling, the embedding's gradient and its fused bag (a mean of rows). They define
the contract the C++ and CUDA kernels follow (same names, arguments and results) and serve where
those are missing.

Layouts are channels-last and every array is C-contiguous:
- normalization over rows: x (rows, C). LayerNorm normalizes each row over its C values;
  BatchNorm each column over its rows (rows = batch x spatial positions).
- images x (N, H, W, C); a 1-D sequence is H = 1. Windows are (kh, kw) with strides (sh, sw),
  dilations (dh, dw) and zero (or, for max, empty) padding of pad_top rows and pad_left columns
  before the image (and whatever the output shape needs after it). The output's spatial shape is
  read from the output array.
- cols (N, OH, OW, kh * kw * C): the window of each output position, ordered (i, j, c), so that
  cols @ kernel.reshape(kh * kw * C, F) is the convolution with a Keras kernel (kh, kw, C, F).

Statistics are computed in float64 here (the kernels: in float64 accumulators, two passes); the
variance is the biased one (divided by the count), as Keras normalizes with.
"""

import numpy as np

from .numpy_kernels import _xp


def _add_at(xp):
    """a[index] += values with repeated indices summed: NumPy's ufunc.at, or CuPy's scatter_add."""
    if xp is np:
        return np.add.at
    import cupyx
    return cupyx.scatter_add


# ---- LayerNorm: each row over its C values ----------------------------------------------------

def layer_norm(x, gamma, beta, y, mean, rstd, eps):
    """mean_r = sum_c x_rc / C,  var_r = sum_c (x_rc - mean_r)^2 / C,  rstd_r = 1 / sqrt(var_r + eps),
    y_rc = (x_rc - mean_r) rstd_r gamma_c + beta_c  (gamma, beta: None means 1, 0).
    Writes y (rows, C), mean and rstd (rows,)."""
    if x.shape[0] == 0:
        return
    xd = x.astype(np.float64)
    m = xd.mean(axis=1)
    xc = xd - m[:, None]
    r = 1.0 / _xp(x).sqrt((xc * xc).mean(axis=1) + float(eps))
    out = xc * r[:, None]
    if gamma is not None:
        out *= gamma
    if beta is not None:
        out += beta
    y[...] = out
    mean[...] = m
    rstd[...] = r


def layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """xhat = (x - mean) rstd, g = dy gamma:
    dx_rc = rstd_r (g_rc - mean_c(g_r) - xhat_rc mean_c(g_r xhat_r)),
    dgamma_c = sum_r dy_rc xhat_rc,  dbeta_c = sum_r dy_rc  (each None: not computed).
    dx may be dy itself (overwritten); dgamma, dbeta are written, not added to."""
    C = x.shape[1]
    d = dy.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.astype(np.float64)[:, None]) * rstd.astype(np.float64)[:, None]
    if dgamma is not None:
        dgamma[...] = (d * xhat).sum(axis=0)
    if dbeta is not None:
        dbeta[...] = d.sum(axis=0)
    if dx is None or x.shape[0] == 0:
        return
    g = d * gamma if gamma is not None else d
    a = g.sum(axis=1, keepdims=True) / C
    b = (g * xhat).sum(axis=1, keepdims=True) / C
    dx[...] = rstd.astype(np.float64)[:, None] * (g - a - xhat * b)


# ---- BatchNorm: each column over the rows -------------------------------------------------------

def batch_norm(x, gamma, beta, y, mean, var, rstd, eps):
    """Training: mean_c = sum_r x_rc / M,  var_c = sum_r (x_rc - mean_c)^2 / M (biased),
    rstd_c = 1 / sqrt(var_c + eps),  y_rc = (x_rc - mean_c) rstd_c gamma_c + beta_c.
    Writes y (M, C), mean, var and rstd (C,). M = 0 gives mean 0, var 0."""
    M = x.shape[0]
    xd = x.astype(np.float64)
    m = xd.mean(axis=0) if M else np.zeros(x.shape[1])
    xc = xd - m
    v = (xc * xc).mean(axis=0) if M else np.zeros(x.shape[1])
    r = 1.0 / _xp(x).sqrt(v + float(eps))
    out = xc * r
    if gamma is not None:
        out *= gamma
    if beta is not None:
        out += beta
    y[...] = out
    mean[...] = m
    var[...] = v
    rstd[...] = r


def batch_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta):
    """xhat = (x - mean) rstd;  dbeta_c = sum_r dy_rc,  dgamma_c = sum_r dy_rc xhat_rc,
    dx_rc = gamma_c rstd_c (dy_rc - dbeta_c / M - xhat_rc dgamma_c / M)  (gamma None means 1).
    dx may be dy itself; dgamma / dbeta None: not written (still used inside)."""
    M = x.shape[0]
    d = dy.astype(np.float64)
    xhat = (x.astype(np.float64) - mean.astype(np.float64)) * rstd.astype(np.float64)
    sb = d.sum(axis=0)
    sg = (d * xhat).sum(axis=0)
    if dgamma is not None:
        dgamma[...] = sg
    if dbeta is not None:
        dbeta[...] = sb
    if dx is None or M == 0:
        return
    k = rstd.astype(np.float64) * (gamma if gamma is not None else 1.0)
    dx[...] = k * (d - sb / M - xhat * (sg / M))


def channel_affine(x, scale, shift, y):
    """y_rc = x_rc scale_c + shift_c: BatchNorm at inference, with scale = gamma rstd(moving var)
    and shift = beta - moving_mean scale folded once. y may be x."""
    y[...] = x * scale + shift


# ---- convolution's im2col / col2im ----------------------------------------------------------------

def _window_slices(i, j, oh, ow, sh, sw, dh, dw):
    """The rows and columns of the padded image that window offset (i, j) reads for each output."""
    r0, c0 = i * dh, j * dw
    return slice(r0, r0 + sh * (oh - 1) + 1, sh), slice(c0, c0 + sw * (ow - 1) + 1, sw)


def _padded_shape(x_shape, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    n, h, w, c = x_shape
    hp = max(pad_top + h, sh * (oh - 1) + dh * (kh - 1) + 1)
    wp = max(pad_left + w, sw * (ow - 1) + dw * (kw - 1) + 1)
    return n, hp, wp, c


def im2col(x, cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    """cols[n, p, q, (i kw + j) C + c] = x[n, p sh + i dh - pad_top, q sw + j dw - pad_left, c],
    0 where that falls outside the image. x (N, H, W, C); cols (N, OH, OW, kh kw C)."""
    xp = _xp(x)
    n, h, w, c = x.shape
    oh, ow = cols.shape[1], cols.shape[2]
    if cols.size == 0:
        return
    xpad = xp.zeros(_padded_shape(x.shape, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left), dtype=x.dtype)
    xpad[:, pad_top:pad_top + h, pad_left:pad_left + w, :] = x
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window_slices(i, j, oh, ow, sh, sw, dh, dw)
            k = (i * kw + j) * c
            cols[..., k:k + c] = xpad[:, rows, columns, :]


def col2im(cols, dx, kh, kw, sh, sw, dh, dw, pad_top, pad_left):
    """The adjoint of im2col: dx[n, y, x, c] = sum of the cols entries that read x[n, y, x, c]
    (written, not added to). Summed in window order (i, j) for each position: deterministic."""
    xp = _xp(cols)
    n, h, w, c = dx.shape
    oh, ow = cols.shape[1], cols.shape[2]
    acc = xp.zeros(_padded_shape(dx.shape, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window_slices(i, j, oh, ow, sh, sw, dh, dw)
            k = (i * kw + j) * c
            acc[:, rows, columns, :] += cols[..., k:k + c]
    dx[...] = acc[:, pad_top:pad_top + h, pad_left:pad_left + w, :]


# ---- pooling ---------------------------------------------------------------------------------------

def max_pool(x, y, argmax, kh, kw, sh, sw, pad_top, pad_left):
    """y[n, p, q, c] = max over the window's positions inside the image (padding never wins);
    argmax[n, p, q, c] = the flat index (row W + column) in the image of the first maximum in
    window order (int64); a NaN is the maximum. A window with no position inside the image gives
    -inf and index -1."""
    xp = _xp(x)
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    if y.size == 0:
        return
    shape = _padded_shape(x.shape, oh, ow, kh, kw, sh, sw, 1, 1, pad_top, pad_left)
    xpad = xp.full(shape, -np.inf, dtype=x.dtype)
    xpad[:, pad_top:pad_top + h, pad_left:pad_left + w, :] = x
    inside = xp.zeros(shape[1:3], dtype=bool)
    inside[pad_top:pad_top + h, pad_left:pad_left + w] = True
    best = xp.full(y.shape, -np.inf, dtype=x.dtype)
    index = xp.full(y.shape, -1, dtype=np.int64)
    p = xp.arange(oh)[:, None] * sh
    q = xp.arange(ow)[None, :] * sw
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window_slices(i, j, oh, ow, sh, sw, 1, 1)
            v = xpad[:, rows, columns, :]
            valid = inside[rows, columns][None, :, :, None]
            # the first maximum in window order; a NaN wins (and stays), as torch's and Keras's max
            take = valid & ((index < 0) | (v > best) | (xp.isnan(v) & ~xp.isnan(best)))
            flat = ((p + i - pad_top) * w + (q + j - pad_left))[None, :, :, None]
            best = xp.where(take, v, best)
            index = xp.where(take, flat, index)
    y[...] = best
    argmax[...] = index


def max_pool_backward(dy, argmax, dx):
    """dx[n, index, c] = sum of dy over the outputs whose maximum it was (written, not added to);
    summed in output order: deterministic."""
    xp = _xp(dy)
    n, h, w, c = dx.shape
    flat = xp.zeros((n, h * w, c), dtype=np.float64)
    if dy.size:
        nn, _, _, cc = xp.meshgrid(xp.arange(n), xp.arange(dy.shape[1]), xp.arange(dy.shape[2]), xp.arange(c),
                                   indexing="ij")
        ok = argmax >= 0
        _add_at(xp)(flat, (nn[ok], argmax[ok], cc[ok]), dy[ok].astype(np.float64))
    dx[...] = flat.reshape(n, h, w, c)


def _window_counts(xp, h, w, oh, ow, kh, kw, sh, sw, pad_top, pad_left):
    """(OH, OW): how many of each window's positions lie inside the image."""
    rows = xp.arange(oh) * sh - pad_top
    cols = xp.arange(ow) * sw - pad_left
    nr = xp.minimum(rows + kh, h) - xp.maximum(rows, 0)
    nc = xp.minimum(cols + kw, w) - xp.maximum(cols, 0)
    return xp.maximum(nr, 0)[:, None] * xp.maximum(nc, 0)[None, :]


def avg_pool(x, y, kh, kw, sh, sw, pad_top, pad_left):
    """y[n, p, q, c] = mean of the window's positions inside the image (padding not counted, as
    Keras's 'same' average pooling); a window with none gives 0."""
    xp = _xp(x)
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    if y.size == 0:
        return
    xpad = xp.zeros(_padded_shape(x.shape, oh, ow, kh, kw, sh, sw, 1, 1, pad_top, pad_left), dtype=np.float64)
    xpad[:, pad_top:pad_top + h, pad_left:pad_left + w, :] = x
    total = xp.zeros(y.shape, dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window_slices(i, j, oh, ow, sh, sw, 1, 1)
            total += xpad[:, rows, columns, :]
    count = _window_counts(xp, h, w, oh, ow, kh, kw, sh, sw, pad_top, pad_left)
    y[...] = total / xp.maximum(count, 1)[None, :, :, None]


def avg_pool_backward(dy, dx, kh, kw, sh, sw, pad_top, pad_left):
    """The adjoint of avg_pool: each output's gradient / its count to each of its window's
    positions inside the image (written, not added to)."""
    xp = _xp(dy)
    n, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    count = _window_counts(xp, h, w, oh, ow, kh, kw, sh, sw, pad_top, pad_left)
    share = dy.astype(np.float64) / xp.maximum(count, 1)[None, :, :, None]
    acc = xp.zeros(_padded_shape(dx.shape, oh, ow, kh, kw, sh, sw, 1, 1, pad_top, pad_left), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _window_slices(i, j, oh, ow, sh, sw, 1, 1)
            acc[:, rows, columns, :] += share
    dx[...] = acc[:, pad_top:pad_top + h, pad_left:pad_left + w, :]


# ---- Embedding -------------------------------------------------------------------------------------

def embedding_backward(ids, dy, dw):
    """dw[v] = sum of dy[t] over the tokens t with ids[t] == v (written, not added to), summed in
    token order: the same bits every run. ids (T,) int32 / int64 in [0, V); dy (T, D); dw (V, D)."""
    xp = _xp(dy)
    acc = xp.zeros(dw.shape, dtype=np.float64)
    if len(ids):
        if int(ids.min()) < 0 or int(ids.max()) >= dw.shape[0]:
            raise IndexError(f"embedding ids must be in [0, {dw.shape[0]}), got {int(ids.min())}..{int(ids.max())}")
        _add_at(xp)(acc, ids, dy.astype(np.float64))
    dw[...] = acc


def _check_bag_ids(ids, vocab):
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise IndexError(f"embedding ids must be in [0, {vocab}), got {int(ids.min())}..{int(ids.max())}")


def embedding_bag(ids, table, scale, out, ignore=-1):
    """out[b] = scale[b] * the sum of table[ids[b, s]] over the steps s with ids[b, s] != ignore (-1:
    every step), summed in double: Embedding then a (masked) mean over the steps, without the
    (bags, steps, D) gather. ids (B, S) int32 / int64 in [0, V); table (V, D); scale (B,); out (B, D)."""
    xp = _xp(table)
    _check_bag_ids(ids, table.shape[0])
    keep = (ids != ignore)[:, :, None]
    rows = xp.take(table, ids.reshape(-1), axis=0).reshape(ids.shape + (table.shape[1],)).astype(np.float64)
    out[...] = xp.where(keep, rows, 0.0).sum(axis=1) * scale.astype(np.float64)[:, None]


def embedding_bag_backward(ids, dy, scale, dw, ignore=-1):
    """embedding_bag's gradient: dw[v] = the sum of scale[b] dy[b] over the tokens (b, s) with
    ids[b, s] == v != ignore, in token order (written, not added to; row `ignore` gets 0).
    ids (B, S); dy (B, D); scale (B,); dw (V, D)."""
    xp = _xp(dy)
    _check_bag_ids(ids, dw.shape[0])
    acc = xp.zeros(dw.shape, dtype=np.float64)
    bags, steps = ids.shape
    token_rows = (dy.astype(np.float64) * scale.astype(np.float64)[:, None])[xp.arange(bags).repeat(steps)]
    keep = ids.reshape(-1) != ignore
    _add_at(xp)(acc, ids.reshape(-1)[keep], token_rows[keep])
    dw[...] = acc

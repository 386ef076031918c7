"""The pure-NumPy fallback: every kernel of the C++ extension, same names and arguments.

Used when the extension is missing or FASTDL_BACKEND=numpy. This is the one other spelling of
each formula in csrc/kernels/; the tests hold both against float64 references. Formulas are
the stable ones (no overflow and no warnings for any finite input). Arguments arrive checked
by fastdl.ops / fastdl.optim, except the class ids, checked here as the extension does.
"""

import math

import numpy as np

ACTIVATIONS = {"sigmoid": 0, "tanh": 1, "relu": 2, "leaky_relu": 3, "gelu": 4, "gelu_tanh": 5, "silu": 6,
               "identity": 7, "elu": 8, "selu": 9, "softplus": 10, "softsign": 11, "relu6": 12, "hard_sigmoid": 13,
               "mish": 14, "exponential": 15}
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

_SQRT_HALF = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794
_TWO_SQRT_2_OVER_PI = 1.5957691216057307117
_GELU_C = 0.044715
_erfc_object = np.frompyfunc(math.erfc, 1, 1)


def _erfc(x):
    return _erfc_object(x).astype(x.dtype)


def _sigmoid(x):
    """1 / (1 + exp(-x)), from exp(-|x|) so nothing overflows (NumPy or CuPy x)."""
    xp = _xp(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _xp(x):
    """numpy, or cupy for a CuPy array (bce_terms serves the weighted losses of a GPU model too)."""
    if type(x) is np.ndarray:
        return np
    from .._checks import array_module
    return array_module(x)


def _normal_cdf(x):
    return 0.5 * _erfc(-_SQRT_HALF * x)


def _gelu_tanh_2u(x):
    return _TWO_SQRT_2_OVER_PI * (x + x.dtype.type(_GELU_C) * x * x * x)


def _forward(op, x, alpha):
    if op == 0:
        return _sigmoid(x)
    if op == 1:
        return np.tanh(x)
    if op == 2:
        return np.where(x < 0, 0, x)
    if op == 3:
        return np.where(x < 0, x.dtype.type(alpha) * x, x)
    if op == 4:
        return x * _normal_cdf(x)
    if op == 5:
        return x * _sigmoid(_gelu_tanh_2u(x))
    if op == 6:
        return x * _sigmoid(x)
    if op == 7:
        return x
    t = x.dtype.type
    if op in (8, 9):
        a, scale = (t(alpha), 1) if op == 8 else (t(_SELU_ALPHA), t(_SELU_SCALE))
        return scale * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
    if op == 10:
        return _softplus(x)
    if op == 11:
        return x / (1 + np.abs(x))
    if op == 12:
        return np.where(x < 0, 0, np.where(x > 6, 6, x)).astype(x.dtype)
    if op == 13:
        v = x * t(1 / 6) + t(0.5)
        return np.where(v < 0, 0, np.where(v > 1, 1, v)).astype(x.dtype)
    if op == 14:
        return x * np.tanh(_softplus(x))
    if op == 15:
        return np.exp(x)
    raise ValueError(f"unknown activation id {op}")


def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (csrc/kernels/activations.h: softplus_of)."""
    return np.where(x < 0, 0, x) + np.log1p(np.exp(-np.abs(x)))


def _backward(op, g, s, alpha):
    if op == 0:
        return g * s * (1 - s)
    if op == 1:
        return g * (1 - s * s)
    if op == 2:
        return np.where(s > 0, g, 0)
    if op == 3:
        return np.where(s > 0, g, s.dtype.type(alpha) * g)
    if op == 4:
        return g * (_normal_cdf(s) + s * _INV_SQRT_2PI * np.exp(-0.5 * s * s))
    if op == 5:
        s2 = _sigmoid(_gelu_tanh_2u(s))
        xc = np.clip(s, -30, 30)  # see GeluTanhBackward in csrc/kernels/activations.h
        return g * (s2 + xc * _TWO_SQRT_2_OVER_PI * (1 + 3 * _GELU_C * xc * xc) * s2 * (1 - s2))
    if op == 6:
        sg = _sigmoid(s)
        return g * sg * (1 + s * (1 - sg))
    if op == 7:
        return g
    t = s.dtype.type
    if op in (8, 9):
        a, scale = (t(alpha), 1) if op == 8 else (t(_SELU_ALPHA), t(_SELU_SCALE))
        return scale * np.where(s > 0, g, g * a * np.exp(np.minimum(s, 0)))
    if op == 10:
        return g * _sigmoid(s)
    if op == 11:
        d = 1 + np.abs(s)
        return g / (d * d)
    if op == 12:
        return np.where((s > 0) & (s < 6), g, 0).astype(g.dtype)
    if op == 13:
        return np.where((s > -3) & (s < 3), g * t(1 / 6), 0).astype(g.dtype)
    if op == 14:
        th = np.tanh(_softplus(s))
        return g * (th + s * (1 - th * th) * _sigmoid(s))
    if op == 15:
        return g * s
    raise ValueError(f"unknown activation id {op}")


def activation(op, x, out, alpha=0.0):
    with np.errstate(over="ignore", under="ignore"):
        out[...] = _forward(op, x, alpha)


def activation_backward(op, grad, saved, out, alpha=0.0):
    with np.errstate(over="ignore", under="ignore"):  # x^2 = inf for huge x is handled by the formulas
        out[...] = _backward(op, grad, saved, alpha)


def bias_activation(op, z, bias, pre, y, alpha=0.0):
    x = z if bias is None else z + bias
    if pre is not None:
        pre[...] = x
    activation(op, x, y, alpha)


def bias_activation_backward(op, grad, saved, dz, dbias, alpha=0.0):
    activation_backward(op, grad, saved, dz, alpha)
    if dbias is not None:
        dbias[...] = dz.sum(axis=0, dtype=np.float64)


def softmax(x, out, log=False):
    if x.size == 0:
        return
    m = x.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):  # x - m = -inf for |x| ~ 3e38: exp gives 0
        if log:
            out[...] = (x - m) - np.log(np.exp(x - m).sum(axis=-1, keepdims=True, dtype=np.float64)).astype(x.dtype)
        else:
            e = np.exp(x - m)
            out[...] = e / e.sum(axis=-1, keepdims=True, dtype=np.float64).astype(x.dtype)


def softmax_backward(grad, y, out, log=False):
    if grad.size == 0:
        return
    with np.errstate(under="ignore"):
        if log:
            out[...] = grad - np.exp(y) * grad.sum(axis=-1, keepdims=True, dtype=np.float64).astype(y.dtype)
        else:
            dot = (grad * y).sum(axis=-1, keepdims=True, dtype=np.float64).astype(y.dtype)
            out[...] = y * (grad - dot)


def _mean_loss(terms, dldp, out):
    n = terms.size
    if n == 0:
        return math.nan
    out[...] = dldp * dldp.dtype.type(1.0 / n)
    return float(terms.sum(dtype=np.float64)) / n


def mse(pred, target, out):
    d = pred - target
    return _mean_loss(d * d, 2 * d, out)


def bce_terms(pred, target, from_logits):
    """Binary cross-entropy per element and its derivative (csrc/kernels/losses.h: BceLogitTerm,
    BceProbTerm; probabilities clipped to [1e-7, 1 - 1e-7] in pred's dtype, zero slope outside)."""
    t, xp = pred.dtype.type, _xp(pred)
    with np.errstate(under="ignore", divide="ignore", invalid="ignore", over="ignore"):
        if from_logits:
            terms = xp.maximum(pred, 0) - pred * target + xp.log1p(xp.exp(-xp.abs(pred)))
            return terms, _sigmoid(pred) - target
        lo, hi = t(1e-7), t(1) - t(1e-7)
        pc = xp.clip(pred, lo, hi)
        terms = -(target * xp.log(pc) + (1 - target) * xp.log(1 - pc))
        clipped = (pred < lo) | (pred > hi)  # NaN is not clipped: NaN in, NaN out, as the C++ kernel
        return terms, xp.where(clipped, 0, (pc - target) / (pc * (1 - pc)))


LOSS_TERMS = {"mae": 0, "mape": 1, "msle": 2, "huber": 3, "log_cosh": 4, "poisson": 5, "hinge": 6,
              "squared_hinge": 7, "kl_divergence": 8, "binary_focal": 9, "binary_focal_logits": 10}
_EPS = 1e-7


def _loss_terms(op, p, t, a, b):
    """(terms, dterm/dp) of Keras's elementwise loss `op` (csrc/kernels/losses.h: visit_loss_term)."""
    xp = _xp(p)
    if op == 0:
        return xp.abs(p - t), xp.sign(p - t)
    if op == 1:
        den = xp.maximum(xp.abs(t), _EPS)
        return 100 * xp.abs(p - t) / den, 100 * xp.sign(p - t) / den
    if op == 2:
        pc = xp.maximum(p, _EPS)
        diff = xp.log(pc + 1) - xp.log(xp.maximum(t, _EPS) + 1)
        return diff * diff, xp.where(p < _EPS, 0, 2 * diff / (pc + 1))
    if op == 3:
        e = p - t
        small = xp.abs(e) <= a
        return xp.where(small, 0.5 * e * e, a * (xp.abs(e) - 0.5 * a)), xp.where(small, e, a * xp.sign(e))
    if op == 4:
        x = p - t
        return x + _softplus(-2 * x) - math.log(2.0), xp.tanh(x)
    if op == 5:
        return p - t * xp.log(p + _EPS), 1 - t / (p + _EPS)
    if op in (6, 7):
        m = 1 - t * p
        h = xp.maximum(m, 0)
        return (h, xp.where(m > 0, -t, 0)) if op == 6 else (h * h, -2 * t * h)
    if op == 8:
        pc, tc = xp.clip(p, _EPS, 1), xp.clip(t, _EPS, 1)
        return tc * xp.log(tc / pc), xp.where((p < _EPS) | (p > 1), 0, -tc / pc)
    if op in (9, 10):
        q = _sigmoid(p) if op == 10 else p
        bce, dbce = bce_terms(q, t, False)
        m = 1 - (t * q + (1 - t) * (1 - q))
        safe = xp.where(m > 0, m, 1)
        factor = xp.where(m > 0, safe ** b, 1.0 if b == 0 else 0.0)
        dfactor = xp.where(m > 0, b * factor / safe, 0) * (1 - 2 * t)
        w = 1 if a < 0 else t * a + (1 - t) * (1 - a)
        d = w * (factor * dbce + dfactor * bce)
        return w * factor * bce, d * q * (1 - q) if op == 10 else d
    raise ValueError(f"unknown loss term id {op}")


def loss_term(op, pred, target, out, a=0.0, b=0.0):
    """Mean of the elementwise loss `op` (LOSS_TERMS) over every element; out = its gradient."""
    with np.errstate(under="ignore", divide="ignore", invalid="ignore", over="ignore"):
        terms, d = _loss_terms(op, pred.astype(np.float64), target.astype(np.float64), a, b)
        return _mean_loss(terms, d, out)


def binary_crossentropy(pred, target, out, from_logits=False):
    return _mean_loss(*bce_terms(pred, target, from_logits), out)


def softmax_ce_rows(logits, q):
    """Softmax cross-entropy of each row against target rows q (csrc/kernels/losses.h):
    loss_r = sum(q_r) lse_r - q_r . x_r and dloss_r/dx_r = sum(q_r) softmax(x_r) - q_r."""
    m = logits.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True, dtype=np.float64)
    qsum = q.sum(axis=1, keepdims=True, dtype=np.float64)
    lse = m + np.log(s)
    loss = (qsum * lse)[:, 0] - (q * logits.astype(np.float64)).sum(axis=1)
    return loss, e * (qsum / s) - q


def _check_labels(y, classes, ignored):
    bad = np.flatnonzero(((y < 0) | (y >= classes)) & ~ignored)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"target[{i}] = {int(y[i])} is not a class id in [0, {classes})")


def softmax_cross_entropy(logits, target, out, label_smoothing=0.0, ignore_index=None, reduction="mean",
                          row_losses=None):
    rows, cols = logits.shape
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if reduction == "none" and row_losses is None:
        raise ValueError("reduction='none' needs row_losses")
    if rows == 0:  # a mean over no rows is NaN, a sum 0 (as torch)
        return math.nan if reduction == "mean" else 0.0
    if rows and not cols:
        raise ValueError("logits has no classes")
    eps = float(label_smoothing)
    keep = np.ones(rows, dtype=bool)
    if target.dtype.kind in "iu":
        if ignore_index is not None:
            keep = target != ignore_index
        _check_labels(target, cols, ~keep)
        q = np.full(logits.shape, eps / cols)
        q[np.flatnonzero(keep), target[keep]] += 1 - eps
    else:
        q = (1 - eps) * target.astype(np.float64) + eps / cols
    loss, grad = softmax_ce_rows(logits, q)
    loss[~keep] = 0.0
    grad[~keep] = 0.0
    denom = float(keep.sum()) if reduction == "mean" else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # every row ignored: a NaN mean, as torch's
        out[...] = grad / denom if denom else grad
    if row_losses is not None and reduction == "none":
        row_losses[...] = loss
    return float(loss.sum()) / denom if denom else math.nan


ROW_LOSSES = {"categorical_hinge": 0, "categorical_focal": 1}


def _row_losses(op, p, t, alpha, gamma, from_logits, label_smoothing):
    """(loss of each row, dloss_row/dp) of float64 (rows, C) arrays, Keras's row loss `op` (ROW_LOSSES;
    csrc/kernels/losses.h: categorical_hinge_*, FocalRowTerm). NumPy or CuPy arrays."""
    xp = _xp(p)
    if op == 0:
        pos = (t * p).sum(axis=1)
        masked = (1 - t) * p
        j = masked.argmax(axis=1)  # the first index of the max
        margin = xp.take_along_axis(masked, j[:, None], axis=1)[:, 0] - pos + 1
        d = -t
        hit = xp.arange(p.shape[1])[None, :] == j[:, None]
        d = xp.where(hit, (1 - t) - t, d)
        return xp.maximum(margin, 0), xp.where((margin > 0)[:, None], d, 0)
    if op == 1:
        s = label_smoothing
        if s:
            t = t * (1 - s) + s / p.shape[1]
        e = xp.exp(p - p.max(axis=1, keepdims=True)) if from_logits else p
        total = e.sum(axis=1, keepdims=True)
        q = e / total
        qc = xp.clip(q, _EPS, 1 - _EPS)
        rest = 1 - qc
        ce = -t * xp.log(qc)
        mod = rest ** gamma
        dq = alpha * (-gamma * (mod / rest) * ce - mod * t / qc)
        dq = xp.where((q > _EPS) & (q < 1 - _EPS), dq, 0)
        inner = (dq * q).sum(axis=1, keepdims=True)
        return (alpha * mod * ce).sum(axis=1), q * (dq - inner) if from_logits else (dq - inner) / total
    raise ValueError(f"unknown row loss id {op}")


def row_loss(op, pred, target, out, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, scale=1.0,
             weights=None, row_losses=None):
    """Keras's row loss `op` (ROW_LOSSES) over the last axis of (rows, C) arrays: returns
    sum_r f_r loss_r, f_r = scale * weights[r] (weights None: scale); out = f_r dloss_r/dpred;
    row_losses (float64, one per row) gets each loss_r when given."""
    rows = pred.shape[0] if pred.ndim else 1
    if rows == 0:
        return 0.0
    with np.errstate(under="ignore", divide="ignore", invalid="ignore", over="ignore"):
        loss, d = _row_losses(op, pred.reshape(rows, -1).astype(np.float64), target.reshape(rows, -1).astype(np.float64),
                              float(alpha), float(gamma), bool(from_logits), float(label_smoothing))
        f = np.full(rows, float(scale)) if weights is None else float(scale) * weights.reshape(rows)
        out[...] = (d * f[:, None]).reshape(out.shape)
        if row_losses is not None:
            row_losses[...] = loss.reshape(row_losses.shape)
        return float((f * loss).sum())


# ---- optimizers: torch.optim's single-tensor updates, one tensor at a time ------------------

def grad_sum_squares(grads):
    return float(sum(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)) for g in grads))


def sgd_step(params, grads, momentum_buffers, steps, options):
    o = options
    for i, (p, g) in enumerate(zip(params, grads)):
        t = p.dtype.type
        if o.clip_coef != 1.0:
            g = g * t(o.clip_coef)
        if o.maximize:
            g = -g
        if o.weight_decay != 0:
            g = g + t(o.weight_decay) * p
        if o.momentum != 0:
            buf = momentum_buffers[i]
            if steps[i] == 1:
                buf[...] = g
            else:
                buf *= t(o.momentum)
                buf += t(1 - o.dampening) * g
            g = g + t(o.momentum) * buf if o.nesterov else buf
        p -= t(o.lr) * g


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, options):
    o = options
    w = 1 - o.beta1  # lerp weight, as torch's exp_avg.lerp_(grad, 1 - beta1)
    for i, (p, g) in enumerate(zip(params, grads)):
        t = p.dtype.type
        m, v = exp_avgs[i], exp_avg_sqs[i]
        if o.clip_coef != 1.0:
            g = g * t(o.clip_coef)
        if o.maximize:
            g = -g
        if o.weight_decay != 0:
            if o.decoupled:
                p *= t(1 - o.lr * o.weight_decay)
            else:
                g = g + t(o.weight_decay) * p
        if w < 0.5:
            m += t(w) * (g - m)
        else:
            m[...] = g - (g - m) * t(1 - w)
        v *= t(o.beta2)
        v += t(1 - o.beta2) * g * g
        if o.amsgrad:
            np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        step = int(steps[i])
        step_size = o.lr / (1 - o.beta1 ** step)
        bc2_sqrt = math.sqrt(1 - o.beta2 ** step)
        p += (t(-step_size) * m) / (np.sqrt(v) / t(bc2_sqrt) + t(o.eps))  # torch's addcdiv_ order


# ---- the adaptive optimizers (backends/options.py: RmspropOptions ... LionOptions) ----------
# torch.optim's single-tensor updates in the parameter's dtype, operation for operation; the
# keras-named flags select Keras 3's variant. A non-finite value propagates as torch's does
# (sqrt of a negative centered variance is NaN there too): no warnings, the values tell.

def _grad(g, p, o, weight_decay=True):
    """g scaled by the clipping factor, negated if maximize, plus L2 weight decay (a new array
    whenever it differs from the caller's gradient, which is never written)."""
    t = p.dtype.type
    if o.clip_coef != 1.0:
        g = g * t(o.clip_coef)
    if o.maximize:
        g = -g
    if weight_decay and o.weight_decay != 0:
        g = g + t(o.weight_decay) * p
    return g


def _lerp(a, b, w, t):
    """torch's lerp(a, b, w) (its two branches): a new array."""
    if w < 0.5:
        return a + t(w) * (b - a)
    return b - (b - a) * t(1 - w)


def _lerp_(a, b, w, t):
    """torch's a.lerp_(b, w), in place."""
    if w < 0.5:
        a += t(w) * (b - a)
    else:
        a[...] = b - (b - a) * t(1 - w)


def rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o)
            sa = square_avgs[i]
            sa *= t(o.alpha)
            sa += t(1 - o.alpha) * g * g
            if o.centered:
                ga = grad_avgs[i]
                _lerp_(ga, g, 1 - o.alpha, t)
                var = sa - ga * ga
            else:
                var = sa
            if o.eps_inside_sqrt:
                d = np.sqrt(var + t(o.eps))
            else:
                d = np.sqrt(var)
                d += t(o.eps)
            if o.momentum > 0:
                b = momentum_buffers[i]
                b *= t(o.momentum)
                if o.lr_in_momentum:
                    b += (t(o.lr) * g) / d
                    p -= b
                else:
                    b += g / d
                    p += t(-o.lr) * b
            else:
                p += (t(-o.lr) * g) / d  # torch's addcdiv_ order


def adagrad_step(params, grads, sums, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o)
            clr = o.lr / (1 + (int(steps[i]) - 1) * o.lr_decay)
            s = sums[i]
            s += g * g
            std = np.sqrt(s + t(o.eps)) if o.eps_inside_sqrt else np.sqrt(s) + t(o.eps)
            p += (t(-clr) * g) / std


def adadelta_step(params, grads, square_avgs, acc_deltas, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o)
            sa, acc = square_avgs[i], acc_deltas[i]
            sa *= t(o.rho)
            sa += t(1 - o.rho) * g * g
            std = np.sqrt(sa + t(o.eps))
            delta = np.sqrt(acc + t(o.eps))
            delta /= std
            delta *= g
            acc *= t(o.rho)
            acc += t(1 - o.rho) * delta * delta
            p += t(-o.lr) * delta


def adamax_step(params, grads, exp_avgs, exp_infs, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o)
            m, u = exp_avgs[i], exp_infs[i]
            _lerp_(m, g, 1 - o.beta1, t)
            u *= t(o.beta2)
            clr = o.lr / (1 - o.beta1 ** int(steps[i]))
            if o.eps_outside_max:
                np.maximum(u, np.abs(g), out=u)
                p += (t(-clr) * m) / (u + t(o.eps))
            else:
                np.maximum(u, np.abs(g) + t(o.eps), out=u)  # NaN propagates, as torch.maximum
                p += (t(-clr) * m) / u


def nadam_step(params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o, weight_decay=not o.decoupled)
            if o.decoupled and o.weight_decay != 0:
                p *= t(1 - o.lr * o.weight_decay)
            step = float(steps[i])
            mu = o.beta1 * (1.0 - 0.5 * (0.96 ** (step * o.momentum_decay)))
            mu_next = o.beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * o.momentum_decay)))
            mu_product = float(mu_products[i])
            m, v = exp_avgs[i], exp_avg_sqs[i]
            _lerp_(m, g, 1 - o.beta1, t)
            v *= t(o.beta2)
            v += t(1 - o.beta2) * g * g
            denom = np.sqrt(v / t(1 - o.beta2 ** step))
            denom += t(o.eps)
            p += (t(-o.lr * (1.0 - mu) / (1.0 - mu_product)) * g) / denom
            p += (t((-o.lr * mu_next) / (1.0 - mu_product * mu_next)) * m) / denom


def lion_step(params, grads, exp_avgs, steps, options):
    o = options
    with np.errstate(all="ignore"):
        for i, p in enumerate(params):
            t = p.dtype.type
            g = _grad(grads[i], p, o, weight_decay=False)
            if o.weight_decay != 0:
                p *= t(1 - o.lr * o.weight_decay)
            m = exp_avgs[i]
            p -= t(o.lr) * np.sign(_lerp(m, g, 1 - o.beta1, t))
            _lerp_(m, g, 1 - o.beta2, t)

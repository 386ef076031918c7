"""The CUDA implementation for CuPy arrays: the functions of numpy_kernels, same names and
arguments, running fastdl's CUDA kernels (the extension fastdl._fastdl_cuda).

Arrays arrive checked by fastdl.ops / fastdl.optim: C-contiguous CuPy arrays of one device with
matching dtypes and shapes. Each call runs on the arrays' device (whatever device is current)
and queues its kernels on CuPy's current stream of that device; nothing waits for the GPU.
Losses and grad_sum_squares return a 0-d float64 CuPy array (``float(loss)`` is what waits).

CuPy is imported on first use, so this module imports without it; the functions then raise a
RuntimeError saying what is missing. ``available()`` says whether they can run here.
"""

import numpy as np

from .numpy_kernels import ACTIVATIONS  # the same ids in every implementation

try:
    from .. import _fastdl_cuda as _module
    _IMPORT_ERROR = None
except ImportError as exc:  # built without nvcc, or for another platform
    _module = None
    _IMPORT_ERROR = exc

_DTYPES = ("float32", "float64", "float16")


def available():
    """(True, None) when the CUDA functions can run here, else (False, the reason in words)."""
    if _module is None:
        return False, f"fastdl's CUDA module is not built ({_IMPORT_ERROR})"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False, "CuPy is not installed (pip install 'fastdl[cuda]')"
    status = _module.status()
    if not status["devices"]:
        return False, status["reason"]
    return True, None


# ---- plumbing -------------------------------------------------------------------------------------

def _m():
    if _module is None:
        raise RuntimeError(f"fastdl's CUDA module is not built ({_IMPORT_ERROR}): reinstall fastdl where nvcc is "
                           f"found")
    return _module


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError("fastdl's CUDA functions need CuPy: pip install 'fastdl[cuda]'") from exc
    return cupy


def _stream():
    """CuPy's current stream of the current device, as an int (0: the legacy default stream)."""
    return _cupy().cuda.get_current_stream().ptr


def _dtype(x):
    name = x.dtype.name
    if name not in _DTYPES:
        raise TypeError(f"fastdl's CUDA kernels take float16, float32 or float64 arrays, got {name}")
    return name


def _ptr(x):
    """The device address of an array, 0 for None."""
    return 0 if x is None else x.data.ptr


def _rows_cols(x):
    """(rows, cols) of x viewed as rows over its last axis."""
    cols = x.shape[-1] if x.ndim else 1
    return (x.size // cols if cols else 0), cols


def _scalar():
    """A 0-d float64 device array for a loss or a norm (on the current device)."""
    return _cupy().empty((), dtype=np.float64)


# ---- activations ----------------------------------------------------------------------------------

def activation(op, x, out, alpha=0.0):
    """out = f(x) elementwise, f the activation with id `op` (ACTIVATIONS); out may be x."""
    with x.device:
        _m().activation(op, _dtype(x), x.data.ptr, out.data.ptr, x.size, float(alpha), x.device.id, _stream())


def activation_backward(op, grad, saved, out, alpha=0.0):
    """out = dL/dx from grad = dL/dy and saved (y for sigmoid and tanh, x otherwise)."""
    with grad.device:
        _m().activation_backward(op, _dtype(grad), grad.data.ptr, saved.data.ptr, out.data.ptr, grad.size,
                                 float(alpha), grad.device.id, _stream())


def bias_activation(op, z, bias, pre, y, alpha=0.0):
    """y = act(z + bias) for a (batch, features) z (bias None: none); pre = z + bias when given.
    y and pre may be z."""
    rows, cols = z.shape
    with z.device:
        _m().bias_activation(op, _dtype(z), z.data.ptr, _ptr(bias), _ptr(pre), y.data.ptr, rows, cols, float(alpha),
                             z.device.id, _stream())


def bias_activation_backward(op, grad, saved, dz, dbias, alpha=0.0):
    """dz = act'(saved) * grad; dbias = dz summed over the batch when given (deterministic)."""
    rows, cols = grad.shape
    with grad.device:
        _m().bias_activation_backward(op, _dtype(grad), grad.data.ptr, saved.data.ptr, dz.data.ptr, _ptr(dbias),
                                      rows, cols, float(alpha), grad.device.id, _stream())


def softmax(x, out, log=False):
    """Softmax (log-softmax when log) over the last axis of x, any shape; out may be x."""
    rows, cols = _rows_cols(x)
    with x.device:
        _m().softmax(_dtype(x), x.data.ptr, out.data.ptr, rows, cols, bool(log), x.device.id, _stream())


def softmax_backward(grad, y, out, log=False):
    """dL/dx of softmax (log-softmax when log) over the last axis, from grad = dL/dy and its output y."""
    rows, cols = _rows_cols(grad)
    with grad.device:
        _m().softmax_backward(_dtype(grad), grad.data.ptr, y.data.ptr, out.data.ptr, rows, cols, bool(log),
                              grad.device.id, _stream())


# ---- losses: the mean as a 0-d float64 device array, the gradient into out -------------------------

def mse(pred, target, out):
    """Mean squared error; out = dL/dpred. Returns the mean (NaN for no elements) on the device."""
    with pred.device:
        loss = _scalar()
        _m().mse(_dtype(pred), pred.data.ptr, target.data.ptr, out.data.ptr, pred.size, loss.data.ptr,
                 pred.device.id, _stream())
    return loss


def loss_term(op, pred, target, out, a=0.0, b=0.0):
    """Mean of Keras's elementwise loss `op` (numpy_kernels.LOSS_TERMS); out = dL/dpred."""
    with pred.device:
        loss = _scalar()
        _m().loss_term(_dtype(pred), int(op), pred.data.ptr, target.data.ptr, out.data.ptr, pred.size, float(a),
                       float(b), loss.data.ptr, pred.device.id, _stream())
    return loss


def binary_crossentropy(pred, target, out, from_logits=False):
    """Mean binary cross-entropy (Keras's clipped probabilities, or logits); out = dL/dpred."""
    with pred.device:
        loss = _scalar()
        _m().bce(_dtype(pred), pred.data.ptr, target.data.ptr, out.data.ptr, pred.size, bool(from_logits),
                 loss.data.ptr, pred.device.id, _stream())
    return loss


def softmax_cross_entropy(logits, target, out, label_smoothing=0.0, ignore_index=None, reduction="mean",
                          row_losses=None):
    """Softmax cross-entropy of (batch, classes) logits against class ids (int32/int64, one per row) or
    probabilities (logits' shape and dtype); out = dL/dlogits (out may be logits). As numpy_kernels:
    class ids equal to ignore_index give loss 0 and gradient row 0; reduction 'mean' (over the rows not
    ignored, counted on the device: NaN when none is left), 'sum', or 'none' (the sum, and each row's
    loss into row_losses, a float64 CuPy array of one element per row). Returns a 0-d float64 array.

    Class ids are not checked here (that would wait for the GPU): a row whose id is outside
    [0, classes) (and not ignore_index) gets a NaN loss and NaN gradient, so the loss is NaN."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if reduction == "none" and row_losses is None:
        raise ValueError("reduction='none' needs row_losses")
    rows, cols = logits.shape
    if target.dtype.kind in "iu":
        if target.dtype.name not in ("int32", "int64"):
            target = target.astype(np.int64)
        kind = target.dtype.name
    else:
        kind = "probs"
    rl = 0
    if reduction == "none":
        if row_losses.dtype != np.float64 or row_losses.size != rows or not row_losses.flags.c_contiguous:
            raise ValueError(f"row_losses must be a contiguous float64 array of {rows} elements")
        rl = row_losses.data.ptr
    has_ignore = ignore_index is not None and kind != "probs"
    with logits.device:
        loss = _scalar()
        _m().softmax_ce(_dtype(logits), logits.data.ptr, target.data.ptr, kind, out.data.ptr, rows, cols,
                        float(label_smoothing), loss.data.ptr, logits.device.id, _stream(), has_ignore,
                        int(ignore_index) if has_ignore else 0, reduction, rl)
    return loss


def row_loss(op, pred, target, out, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, scale=1.0,
             weights=None, row_losses=None):
    """Keras's row loss `op` (numpy_kernels.ROW_LOSSES) over (rows, C) arrays: out = f_r dloss_r/dpred,
    f_r = scale * weights[r] (weights: a float64 CuPy array of one element per row, or None: scale);
    returns sum_r f_r loss_r as a 0-d float64 array; row_losses (float64, one per row) gets each loss_r."""
    rows, cols = _rows_cols(pred)
    for a, name in ((weights, "weights"), (row_losses, "row_losses")):
        if a is not None and (a.dtype != np.float64 or a.size != rows or not a.flags.c_contiguous):
            raise ValueError(f"{name} must be a contiguous float64 array of {rows} elements")
    with pred.device:
        loss = _scalar()
        _m().row_loss(_dtype(pred), int(op), pred.data.ptr, target.data.ptr, out.data.ptr, rows, cols, float(alpha),
                      float(gamma), bool(from_logits), float(label_smoothing), float(scale), _ptr(weights),
                      _ptr(row_losses), loss.data.ptr, pred.device.id, _stream())
    return loss


# ---- optimizers: multi-tensor steps -----------------------------------------------------------------

def grad_sum_squares(grads):
    """The sum of squares of every element of the arrays (the squared global norm), as a 0-d float64
    device array; deterministic."""
    cupy = _cupy()
    grads = list(grads)
    if not grads:
        return cupy.zeros((), dtype=np.float64)
    groups = {}
    for g in grads:
        groups.setdefault(g.dtype.name, []).append(g)
    total = None
    with grads[0].device:
        for dtype, gs in groups.items():
            out = _scalar()
            _m().grad_sum_squares(_dtype(gs[0]), [g.data.ptr for g in gs], [g.size for g in gs], out.data.ptr,
                                  grads[0].device.id, _stream())
            total = out if total is None else total + out
    return total


def _clip(options, device_id):
    """(options with a number for clip_coef, the device address of the factor or 0, the array to keep
    alive until the kernels are queued). clip_coef: a number, or a 0-d CuPy array computed on the device
    (read there by the kernel: no synchronisation)."""
    coef = options.clip_coef
    if isinstance(coef, (int, float)):
        return options, 0, None
    if type(coef).__module__.split(".")[0] == "cupy":
        if coef.size != 1:
            raise ValueError(f"options.clip_coef must be a number or a 0-d array, got shape {coef.shape}")
        if coef.device.id != device_id:
            raise ValueError(f"options.clip_coef is on cuda:{coef.device.id} but params are on cuda:{device_id}")
        coef = _cupy().ascontiguousarray(coef, dtype=np.float64)
        return options._replace(clip_coef=1.0), coef.data.ptr, coef
    return options._replace(clip_coef=float(coef)), 0, None  # a NumPy scalar or 0-d array


def _steps(steps):
    return np.ascontiguousarray(steps, dtype=np.int64)


def sgd_step(params, grads, momentum_buffers, steps, options):
    """One SGD step (torch.optim.SGD's update) over all params in multi-tensor launches. steps: each
    tensor's step count including this one (host int64); options: fastdl.backends.options.SgdOptions."""
    if not params:
        return
    p0 = params[0]
    with p0.device:
        options, clip_ptr, keep = _clip(options, p0.device.id)
        bufs = [b.data.ptr for b in momentum_buffers] if options.momentum != 0 else None
        _m().sgd_step(_dtype(p0), [p.data.ptr for p in params], [g.data.ptr for g in grads], bufs,
                      [p.size for p in params], _steps(steps), options, clip_ptr, p0.device.id, _stream())
        del keep


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, options):
    """One Adam / AdamW step (torch.optim's update) over all params in multi-tensor launches;
    options: fastdl.backends.options.AdamOptions (max_exp_avg_sqs used with amsgrad)."""
    if not params:
        return
    p0 = params[0]
    with p0.device:
        options, clip_ptr, keep = _clip(options, p0.device.id)
        vmax = [v.data.ptr for v in max_exp_avg_sqs] if options.amsgrad else None
        _m().adam_step(_dtype(p0), [p.data.ptr for p in params], [g.data.ptr for g in grads],
                       [m.data.ptr for m in exp_avgs], [v.data.ptr for v in exp_avg_sqs], vmax,
                       [p.size for p in params], _steps(steps), options, clip_ptr, p0.device.id, _stream())
        del keep


# ---- the adaptive optimizers (fastdl.backends.options: RmspropOptions ... LionOptions) ---------------
# As adam_step: one multi-tensor call per step; a state list is read only where the options use it
# (None otherwise).

def _device_step(name, params, grads, states, steps, options, mu_products=None):
    """The CUDA module's <name>_step over CuPy arrays: states, a list of (state lists or None), in the
    kernel's order; each used list becomes the arrays' device addresses."""
    if not params:
        return
    p0 = params[0]
    with p0.device:
        options, clip_ptr, keep = _clip(options, p0.device.id)
        addresses = [None if s is None else [a.data.ptr for a in s] for s in states]
        extra = [] if mu_products is None else [np.ascontiguousarray(mu_products, dtype=np.float64)]
        getattr(_m(), name)(_dtype(p0), [p.data.ptr for p in params], [g.data.ptr for g in grads], *addresses,
                            *extra, [p.size for p in params], _steps(steps), options, clip_ptr, p0.device.id,
                            _stream())
        del keep


def rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, options):
    """One RMSprop step (torch.optim.RMSprop's update, Keras 3's by the flags); options:
    fastdl.backends.options.RmspropOptions (momentum_buffers used with momentum, grad_avgs when centered)."""
    _device_step("rmsprop_step", params, grads,
                 [square_avgs, momentum_buffers if options.momentum != 0 else None,
                  grad_avgs if options.centered else None], steps, options)


def adagrad_step(params, grads, sums, steps, options):
    """One Adagrad step; options: fastdl.backends.options.AdagradOptions."""
    _device_step("adagrad_step", params, grads, [sums], steps, options)


def adadelta_step(params, grads, square_avgs, acc_deltas, steps, options):
    """One Adadelta step; options: fastdl.backends.options.AdadeltaOptions."""
    _device_step("adadelta_step", params, grads, [square_avgs, acc_deltas], steps, options)


def adamax_step(params, grads, exp_avgs, exp_infs, steps, options):
    """One Adamax step; options: fastdl.backends.options.AdamaxOptions."""
    _device_step("adamax_step", params, grads, [exp_avgs, exp_infs], steps, options)


def nadam_step(params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, options):
    """One NAdam / NAdamW step; mu_products: per tensor mu_1 ... mu_t including this step's (host float64);
    options: fastdl.backends.options.NadamOptions."""
    _device_step("nadam_step", params, grads, [exp_avgs, exp_avg_sqs], steps, options, mu_products=mu_products)


def lion_step(params, grads, exp_avgs, steps, options):
    """One Lion step; options: fastdl.backends.options.LionOptions."""
    _device_step("lion_step", params, grads, [exp_avgs], steps, options)


# The layer kernels of issue #13 (numpy_layers' names and arguments) on CuPy arrays, so that
# _backend.layer_kernel finds them here as it finds the C++ module's for NumPy arrays. Looked up on
# first use: cuda_layers imports this module's plumbing, so an import here would be circular
# whenever cuda_layers is imported first.
_LAYER_KERNELS = ("avg_pool", "avg_pool_backward", "batch_norm", "batch_norm_backward", "channel_affine", "col2im",
                  "embedding_backward", "embedding_bag", "embedding_bag_backward", "im2col", "layer_norm",
                  "layer_norm_backward", "max_pool", "max_pool_backward")


def __getattr__(name):
    if name in _LAYER_KERNELS:
        from . import cuda_layers
        return getattr(cuda_layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""fastdl.torch's optimizers: drop-in replacements for torch.optim.SGD, Adam, AdamW, RMSprop, Adagrad,
Adadelta, Adamax and NAdam.

    from fastdl.torch import Adam        # instead of: from torch.optim import Adam
    opt = Adam(model.parameters(), lr=1e-3)

They take torch's arguments and defaults, keep torch's state keys ('step', 'exp_avg',
'exp_avg_sq', 'max_exp_avg_sq', 'momentum_buffer'; RMSprop's 'square_avg', 'grad_avg'; Adagrad's
'sum'; Adadelta's 'acc_delta'; Adamax's 'exp_inf'; NAdam's 'mu_product') and state_dict layout (a
checkpoint of torch.optim.Adam loads into fastdl.torch.Adam and back), and work with torch.optim.lr_scheduler,
zero_grad, step(closure), torch.amp.GradScaler, copy.deepcopy, pickle and torch.save. The update
rules are torch.optim's single-tensor ones; each step is one multi-tensor C++ call per parameter
group and dtype, on the tensors' own memory (no copies). A step notices what changed since the last
one (``p.data = ...`` as Module.to() does, a replaced or cleared ``optimizer.state``, new groups)
and rebinds, adopting the state it finds.

A step is all or nothing: every group's settings, every parameter, gradient and state tensor is
checked before the first one changes, so a step that raises leaves the parameters, their state and
the step counts exactly as they were.

Parameters: CPU or CUDA tensors, float32, float64, bfloat16 or float16, dense in any dimension order
(contiguous, channels_last, ...; the state tensors take the parameter's layout, as torch's do),
empty ones included. Two parameters may not share memory (views of one tensor): they are refused. A
parameter listed twice in a group is stepped twice, as torch.optim does (it warns). Without the C++
extension (or with FASTDL_BACKEND=numpy) the CPU updates run in NumPy on views of the same memory.

On a GPU a step never waits for the device: the kernels run on torch's current stream, the Adam
step counts stay there ('step' is a 0-d float32 tensor on the parameter's device, as in torch's
fused and capturable optimizers; a step advances them with torch ops and the kernel reads them
there), and the clipping factor is computed there. The counts are checked when a state_dict is
loaded, not at every step (reading them would wait; torch's fused optimizers do not check either).
Checkpoints move between devices (map_location) and to and from torch.optim either way.

torch.amp.GradScaler: the optimizers declare ``_step_supports_amp_scaling``, so ``scaler.step(opt)``
hands them its scale and its inf/NaN flag (``opt.grad_scale``, ``opt.found_inf``) as it does torch's
fused optimizers, instead of unscaling the gradients itself and reading the flag on the host. The
step divides the gradients by the scale inside the update (one factor with ``max_grad_norm``'s clip,
whose norm is then that of the unscaled gradients; after ``scaler.unscale_(opt)`` only the flag
comes), and where the flag is set it changes nothing: parameters, state and step counts stay as they
were (a parameter's first step still creates its zero state, as torch's fused optimizers do). On one
GPU the flag and the scale are read by the kernels there: no synchronisation. With GradScaler's
power-of-two scales the result is bit for bit that of the gradients unscaled beforehand (another
scale: fastdl multiplies by 1/scale where torch's fused kernels divide, an ulp apart).
Unlike torch's fused kernels, the step does not write the unscaled gradients back into ``.grad``
(fastdl never writes gradients): call ``scaler.unscale_(opt)`` first where they are needed after
the step. ``iterations`` counts skipped steps too (as an LR scheduler does). SGD keeps no step
count (and on a GPU the host does not know a step was skipped), so after a skipped very first step
a parameter's next step continues its zero momentum buffer: b = (1 - dampening) g, which is torch's
b = g for the default dampening 0 (torch's fused SGD leaves the buffer uninitialised there).

RMSprop, Adagrad, Adadelta, Adamax and NAdam keep their step counts on the host on a GPU too (their
CUDA kernels take host counts): 'step' is a 0-d float32 tensor on the CPU (float64 under a float64
default dtype), as torch.optim's non-capturable optimizers keep it, and NAdam's 'mu_product' likewise,
advanced as torch does (P *= mu_t in that dtype) and converted to float64 for the kernel. Adagrad makes
every parameter's state ('step' 0, 'sum' initial_accumulator_value) at construction, as torch's does
(and for groups added later, where torch's step would fail). Under GradScaler on a GPU their step
reads the inf/NaN flag on the host (one wait, as GradScaler does for torch.optim's non-fused
optimizers); the scale and the clipping factor stay on the device. capturable=True is refused for
them. A checkpoint's mu_product is loaded as saved (torch's load_state_dict casts it to the
parameter's dtype, which for bfloat16 would round it).

``capturable=True`` (Adam, AdamW): a step on CUDA parameters does no host synchronisation and reads
every per-step value from the device, so it can be captured in a CUDA graph (torch.cuda.graph, after
warm-up steps on a side stream) and replayed; the learning rate and the other settings are those of
the captured step, and ``iterations`` does not move on a replay. As in torch, capturable=True with
CPU parameters is refused at the step, and capturing a step of groups without it raises.

fastdl additions (keyword-only): ``max_grad_norm`` clips the gradients' global L2 norm inside the
step, as torch.nn.utils.clip_grad_norm_ would before it (``last_grad_norm`` keeps the norm); ``lr``
may be a fastdl.optim schedule, evaluated at ``iterations`` (the number of steps taken);
``state_dtype=torch.float32`` keeps the state (momentum buffers, Adam's moments) of bfloat16 and
float16 parameters in float32 (float32 and float64 parameters keep theirs in their own dtype). The
default, None, keeps each state tensor in its parameter's dtype, as torch.optim does. float32 state
costs 2 bytes more per state value and step but keeps Adam's second moment from losing the small
squared gradients that a 16-bit v rounds away; the math is float32 either way. It is chosen per
optimizer, at construction, and survives copies; checkpoints load both ways (torch casts state to
the parameter's dtype on load, fastdl to the state dtype).
"""

import functools
import itertools
import math
import numbers
import operator

import numpy as np
import torch

from .. import _backend
from . import _cuda as _torch_cuda
from ..optim import schedules
from ..backends.options import (AdadeltaOptions, AdagradOptions, AdamaxOptions, AdamOptions, NadamOptions,
                                RmspropOptions, SgdOptions)
from ..optim.optimizer import clip_coefficient, max_norm

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16", torch.float16: "float16"}
_HALF = (torch.bfloat16, torch.float16)
_LAYOUT = operator.attrgetter("layout")
_DEVICE = operator.attrgetter("device")
_SHAPE_DTYPE = operator.attrgetter("shape", "dtype")
_STRIDE = torch.Tensor.stride


class _NumpyKernels:
    """The _raw kernel calls of the extension, run by fastdl's NumPy backend on NumPy views of the
    tensors (the addresses are looked up among the binding's own tensors). 16-bit tensors (NumPy
    has no bfloat16) are widened to float32 copies, stepped, and rounded back once, as the C++
    kernels compute them."""

    def __init__(self, tensors):
        self.by_address = {t.data_ptr(): t for t in tensors if t.numel()}

    def _flat(self, addresses, sizes):
        # each tensor is dense: its n elements are the n elements of storage from its first one
        return [self.by_address[a].as_strided((n,), (1,)) for a, n in zip(addresses, sizes)]

    def _run(self, step, lists, written):
        """step(*arrays) on NumPy views, or on float32 copies of 16-bit tensors written back after."""
        flat = [None if ptrs is None else self._flat(*ptrs) for ptrs in lists]
        half = any(t is not None and t and t[0].dtype in _HALF for t in flat)
        arrays = [None if ts is None else [(t.float() if half else t).numpy() for t in ts] for ts in flat]
        result = step(*arrays)
        if half:
            for k in written:
                if flat[k] is not None:
                    for t, a in zip(flat[k], arrays[k]):
                        t.copy_(torch.from_numpy(a))
        return result

    def _grad_sum_squares_raw(self, dtype, grads, sizes):
        return self._run(_backend.numpy_kernels.grad_sum_squares, [(grads, sizes)], ())

    # state_dtype: the widened copies of 16-bit tensors are float32 already, and float32 state is
    # stepped in place
    def _sgd_step_raw(self, dtype, params, grads, bufs, sizes, steps, *args, state_dtype=None):
        step = lambda p, g, b: _backend.numpy_kernels.sgd_step(p, g, b, steps, *args)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), None if bufs is None else (bufs, sizes)], (0, 2))

    def _adam_step_raw(self, dtype, params, grads, m, v, vmax, sizes, steps, *args, state_dtype=None):
        step = lambda *a: _backend.numpy_kernels.adam_step(*a, steps, *args)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), (m, sizes), (v, sizes),
                         None if vmax is None else (vmax, sizes)], (0, 2, 3, 4))

    def _rmsprop_step_raw(self, dtype, params, grads, square_avgs, momentum_buffers, grad_avgs, sizes, steps, options,
                          state_dtype=None):
        step = lambda *a: _backend.numpy_kernels.rmsprop_step(*a, steps, options)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), (square_avgs, sizes),
                         None if momentum_buffers is None else (momentum_buffers, sizes),
                         None if grad_avgs is None else (grad_avgs, sizes)], (0, 2, 3, 4))

    def _adagrad_step_raw(self, dtype, params, grads, sums, sizes, steps, options, state_dtype=None):
        step = lambda *a: _backend.numpy_kernels.adagrad_step(*a, steps, options)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), (sums, sizes)], (0, 2))

    def _adadelta_step_raw(self, dtype, params, grads, square_avgs, acc_deltas, sizes, steps, options,
                           state_dtype=None):
        step = lambda *a: _backend.numpy_kernels.adadelta_step(*a, steps, options)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), (square_avgs, sizes), (acc_deltas, sizes)], (0, 2, 3))

    def _adamax_step_raw(self, dtype, params, grads, exp_avgs, exp_infs, sizes, steps, options, state_dtype=None):
        step = lambda *a: _backend.numpy_kernels.adamax_step(*a, steps, options)  # noqa: E731
        self._run(step, [(params, sizes), (grads, sizes), (exp_avgs, sizes), (exp_infs, sizes)], (0, 2, 3))

    def _nadam_step_raw(self, dtype, params, grads, exp_avgs, exp_avg_sqs, mu_products, sizes, steps, options,
                        state_dtype=None):
        step = lambda p, g, m, v: _backend.numpy_kernels.nadam_step(p, g, m, v, mu_products, steps,  # noqa: E731
                                                                     options)
        self._run(step, [(params, sizes), (grads, sizes), (exp_avgs, sizes), (exp_avg_sqs, sizes)], (0, 2, 3))


def _on_device(device):
    """Whether a binding on `device` keeps its step counts there and a step reads GradScaler's
    tensors there (a GPU); tests stand a CPU in for one."""
    return device.type == "cuda"


def _kernels(work):
    """{device: the implementation for that device's bindings}: the CPU extension or the NumPy
    backend (over the tensors of this step) for CPU tensors, the CUDA module for each GPU."""
    kernels = {}
    for w in work:
        device = w.binding.device
        if device not in kernels:
            kernels[device] = _torch_cuda.Kernels(device) if _on_device(device) else _host_kernels(work)
    return kernels


def _host_kernels(work):
    ext = _backend.cpu_extension()
    if ext is not None and _backend.host is ext:
        return ext
    tensors = []
    for w in work:
        b = w.binding
        if b.device.type == "cpu":
            tensors += b.params + w.grads + [v for views in b.views.values() for v in views]
    return _NumpyKernels(tensors)


def _dense(t):
    """Whether t's elements fill one run of t.numel() elements of its storage, in any dimension
    order (contiguous, channels_last, a transpose): an elementwise step can then run over that run."""
    if t.is_contiguous() or t.numel() == 0:
        return True
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _check_param(p, where):
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where} is a {type(p).__name__}, not a torch.Tensor")
    if p.device.type == "cuda":
        _torch_cuda.module()  # a RuntimeError saying why when the CUDA module or a GPU is missing
        if p.dtype not in _torch_cuda.DTYPES:
            raise TypeError(f"{where} has dtype {p.dtype}: fastdl.torch updates float32, float64, float16 and "
                            f"bfloat16 parameters on a GPU")
    elif p.device.type != "cpu":
        raise RuntimeError(f"{where} is on {p.device}: fastdl.torch has CPU and CUDA kernels; use torch.optim for "
                           f"parameters on {p.device.type}")
    elif p.dtype not in _DTYPES:
        raise TypeError(f"{where} has dtype {p.dtype}: fastdl.torch updates float32, float64, bfloat16 and float16 "
                        f"parameters")
    if p.layout != torch.strided:
        raise ValueError(f"{where} is a {p.layout} tensor: fastdl.torch updates dense parameters in place")
    if not _dense(p):
        raise ValueError(f"{where} has strides {p.stride()} for shape {tuple(p.shape)}: it is a strided view with "
                         f"gaps or overlaps, and fastdl.torch updates a parameter's memory as one run of elements "
                         f"(contiguous, channels_last or any other dense layout)")
    if p.numel() and p.data_ptr() % p.element_size():
        raise ValueError(f"{where} is not aligned to its element size")


def _number(value, label):
    """value as a float: a real number or a one-element tensor."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {label} must be 1-element")
        if value.is_complex():
            raise TypeError(f"Invalid {label}: {value} (a real number is needed)")
        return float(value.item())
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):  # True is no rate
        return float(value)
    raise TypeError(f"Invalid {label}: {value!r} (a number is needed, not {type(value).__name__})")


def _real(value, label, low=0.0, high=None):
    """A finite number >= low (and < high): torch's checks and messages ("Invalid learning rate: -1")."""
    v = _number(value, label)
    if not math.isfinite(v) or v < low or (high is not None and v >= high):
        raise ValueError(f"Invalid {label}: {v if isinstance(value, torch.Tensor) else value}")
    return v


def _lr(value):
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    return _real(value, "learning rate")


def _flag(value, label):
    try:
        return bool(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"Invalid {label}: {value!r} (True or False is needed)") from None


def _betas(betas):
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or not hasattr(betas, "__getitem__"):
        raise TypeError(f"Invalid betas: {betas!r} (a pair (beta1, beta2) is needed)")
    if len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (a pair (beta1, beta2) is needed, got {len(betas)} values)")
    return (_real(betas[0], "beta parameter at index 0", 0.0, 1.0),
            _real(betas[1], "beta parameter at index 1", 0.0, 1.0))


def _step_count(value, where):
    """A loaded or user-set 'step': a whole number >= 0."""
    try:
        v = _number(value, "step")
    except (TypeError, ValueError):
        raise TypeError(f"{where} has step {value!r}: a step count is a number") from None
    if not math.isfinite(v) or v < 0 or v != math.floor(v):
        raise ValueError(f"{where} has step {v}: a step count is a whole number >= 0")
    return v


class _Binding:
    """One parameter group's tensors of one dtype, and the flat buffers that hold their state.

    The state tensors torch sees (optimizer.state[p]['exp_avg'], ...) are views into one buffer
    per state name, laid out as their parameter is (channels_last stays channels_last), and each
    'step' is a 0-dim view into one step buffer, so that a step reads their addresses from a list
    and advances every count with one NumPy add. A parameter's state appears in optimizer.state at
    its first step, as in torch.optim. A parameter listed twice in the group is held once, with
    its number of occurrences in ``repeats`` (None when each appears once).
    """

    def __init__(self, opt, params, positions, repeats, names, index, fill=None):
        self.params = params
        self.positions = positions  # each parameter's index in its group, for messages
        self.index = index
        self.names = names
        self.torch_dtype = params[0].dtype
        self.device = params[0].device
        self.dtype = _torch_cuda.DTYPES[self.torch_dtype]
        # the state's dtype: the parameters' (torch's way), or float32 beside 16-bit parameters when the
        # optimizer was made with state_dtype=torch.float32
        self.state_torch_dtype = torch.float32 if opt.state_dtype is not None and self.torch_dtype in _HALF \
            else self.torch_dtype
        self.state_kw = {"state_dtype": "float32"} if self.state_torch_dtype != self.torch_dtype else {}
        self.ptrs = [p.data_ptr() for p in params]
        self.sizes = [p.numel() for p in params]
        self.strides = list(map(_STRIDE, params))
        self.repeats = repeats if repeats is not None and (repeats > 1).any() else None
        self.has_empty = 0 in self.sizes
        offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        # a new state tensor starts at 0, or at its optimizer's initial value (Adagrad's initial_accumulator_value)
        fill = fill or {}
        self.buffers = {name: torch.full((int(offsets[-1]),), fill.get(name, 0.0), dtype=self.state_torch_dtype,
                                         device=self.device) for name in names}
        self.views = {name: [buf.as_strided(p.shape, p.stride(), int(offsets[i])) for i, p in enumerate(params)]
                      for name, buf in self.buffers.items()}
        self.state_ptrs = {name: [v.data_ptr() for v in views] for name, views in self.views.items()}
        if _on_device(self.device) and opt._counts_steps and opt._device_counts:
            # the counts stay on the GPU (float32, as torch's fused and capturable optimizers keep them): a
            # step advances them and the kernel reads them there, so that it never waits for the device
            self.step_tensor = torch.zeros(len(params), dtype=torch.float32, device=self.device)
            self.steps = None
        else:
            self.step_tensor = torch.zeros(len(params), dtype=_scalar_dtype())
            self.steps = self.step_tensor.numpy()  # shares memory
        self.step_views = [self.step_tensor[i] for i in range(len(params))]
        # per-parameter 0-d state besides 'step' (NAdam's 'mu_product'): host tensors of torch's scalar dtype,
        # as torch keeps them, each exposed as a 0-d view, all advanced with one NumPy operation
        self.scalar_tensors = {name: torch.full((len(params),), init, dtype=_scalar_dtype())
                               for name, init in opt._scalar_state.items()}
        self.scalar_arrays = {name: t.numpy() for name, t in self.scalar_tensors.items()}  # share memory
        self.scalar_views = {name: [t[i] for i in range(len(params))] for name, t in self.scalar_tensors.items()}
        self.step_ptrs = list(map(torch.Tensor.data_ptr, self.step_views)) if self.steps is None else None
        self.exposed = np.zeros(len(params), dtype=bool)
        # state already there (a loaded checkpoint, an earlier binding): all checked, then adopted
        found = [(i, st) for i, st in ((i, opt.state.get(p)) for i, p in enumerate(params)) if st]
        adopted = [(i, st, self._checked(opt, i, st)) for i, st in found]
        for i, st, step in adopted:
            self._adopt(opt, i, st, step)
        self.shape_dtype = list(map(_SHAPE_DTYPE, params))
        self.all_indices = list(range(len(params)))
        self._watch(opt)

    def where(self, i):
        return f"parameter {self.positions[i]} of group {self.index}"

    def _checked(self, opt, i, st):
        """The step count of state st of parameter i, after checking its tensors fit."""
        for name, views in self.views.items():
            value = st.get(name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"state {name!r} of {self.where(i)} is a {type(value).__name__}, not a tensor")
            if value.shape != views[i].shape:
                raise ValueError(f"state {name!r} of {self.where(i)} has shape {tuple(value.shape)}, the parameter "
                                 f"{tuple(views[i].shape)}")
        for name in opt._scalar_state:
            if name in st:
                opt._scalar_value(name, st[name], f"the state of {self.where(i)}")
        if opt._counts_steps and "step" in st:
            step = st["step"]
            if self.steps is None and isinstance(step, torch.Tensor) and step.numel() == 1 \
                    and step.device.type != "cpu":
                return step  # copied on the device as it is: checking it would wait for the device
            return _step_count(step, f"the state of {self.where(i)}")
        return None

    def _adopt(self, opt, i, st, step):
        for name, views in self.views.items():
            value = st.get(name)
            if value is not None:
                views[i].copy_(value)
        for name, array in self.scalar_arrays.items():
            if name in st:
                array[i] = opt._scalar_value(name, st[name], f"the state of {self.where(i)}")
        if step is not None:
            if self.steps is not None:
                self.steps[i] = step
            else:
                view = self.step_views[i]
                view.copy_(step.reshape(())) if isinstance(step, torch.Tensor) else view.fill_(step)
        self._expose(opt, i)

    def _expose(self, opt, i):
        if self.names or opt._counts_steps:
            st = opt.state[self.params[i]]
            for name, views in self.views.items():
                st[name] = views[i]
            for name, views in self.scalar_views.items():
                st[name] = views[i]
            if opt._counts_steps:
                st["step"] = self.step_views[i]
        self.exposed[i] = True

    def gradients(self, optimizer_name):
        """(indices of the parameters with a gradient, their gradients laid out as their parameters),
        after checking them all: the step raises before anything changes. Mapped calls keep this
        cheap for models of many small tensors."""
        grads = [p.grad for p in self.params]
        if any(map(operator.is_, grads, itertools.repeat(None))):
            active = [i for i, g in enumerate(grads) if g is not None]
            grads = [grads[i] for i in active]
        else:
            active = self.all_indices
        if not active:
            return active, grads
        if any(map(operator.ne, map(_LAYOUT, grads), itertools.repeat(torch.strided))):
            raise RuntimeError(f"{optimizer_name} does not support sparse gradients")
        if any(map(operator.ne, map(_DEVICE, grads), itertools.repeat(self.device))):
            for i, g in zip(active, grads):
                if g.device != self.device:
                    raise RuntimeError(f"the gradient of {self.where(i)} is on {g.device}, the parameter on "
                                       f"{self.device}")
        if list(map(_SHAPE_DTYPE, grads)) != self.pick(self.shape_dtype, active):
            for i, g in zip(active, grads):
                if (g.shape, g.dtype) != self.shape_dtype[i]:
                    raise ValueError(f"the gradient of {self.where(i)} is {g.dtype} {tuple(g.shape)}, the parameter "
                                     f"{self.torch_dtype} {tuple(self.params[i].shape)}: they must match")
        if list(map(_STRIDE, grads)) != self.pick(self.strides, active):
            for k, (i, g) in enumerate(zip(active, grads)):
                if g.stride() != self.strides[i]:
                    # a temporary laid out as the parameter (empty_like keeps a dense tensor's strides);
                    # it lives until the kernel has run
                    grads[k] = torch.empty_like(self.params[i]).copy_(g)
        return active, grads

    def advance(self, stepped, skip=None):
        """Device counts: +1 for the parameters `stepped` (binding indices), on the current stream;
        with `skip` (a device float, 1 where GradScaler found an inf or NaN) -skip instead: a skipped
        step leaves the counts as they were."""
        if stepped is self.all_indices:
            self.step_tensor.add_(1) if skip is None else self.step_tensor.sub_(skip)
        else:
            views = [self.step_views[i] for i in stepped]
            torch._foreach_add_(views, 1) if skip is None else torch._foreach_sub_(views, [skip] * len(views))

    def pick(self, values, active):
        """values[i] for i in active (the list itself when every parameter is active)."""
        return values if active is self.all_indices else [values[i] for i in active]

    def still_valid(self, opt, names):
        """Whether this binding still describes its tensors (the caller checked they are the group's):
        the same state names, the same addresses, shapes, dtypes and strides (``p.data = ...``, as
        Module.to() does, swaps them), and torch's state still the binding's views (a user may clear
        ``opt.state`` or replace a state tensor; the rebuild then adopts what is there)."""
        params = self.params
        if names != self.names:
            return False
        if list(map(torch.Tensor.data_ptr, params)) != self.ptrs or list(map(_SHAPE_DTYPE, params)) != self.shape_dtype \
                or list(map(_STRIDE, params)) != self.strides:
            return False
        if not self.watched:
            return True
        state_dicts, keys, views = self.watched_items
        return all(map(operator.is_, map(opt.state.get, self.watched_params), self.watched_dicts)) and \
            all(map(operator.is_, map(dict.get, state_dicts, keys), views))

    def _watch(self, opt):
        """Remember the state dicts and tensors torch now sees, for still_valid."""
        exposed = [self.params[i] for i in np.flatnonzero(self.exposed)] if (self.names or opt._counts_steps) else []
        self.watched_params = exposed
        self.watched_dicts = [opt.state[p] for p in exposed]
        items = [(st, name, view) for st in self.watched_dicts for name, view in st.items()
                 if isinstance(view, torch.Tensor)]
        self.watched_items = tuple(zip(*items)) if items else ((), (), ())
        self.watched = bool(exposed)


class _Work:
    """One binding's part of a planned step: what its kernel calls need, all checked."""

    __slots__ = ("binding", "settings", "lr", "active", "grads", "kernel", "sel", "grad_ptrs", "counts",
                 "new_steps", "first", "scalar_rounds", "new_scalars")

    def __init__(self, binding, settings, lr, active, grads, opt=None):
        b = self.binding = binding
        self.settings, self.lr, self.active, self.grads = settings, lr, active, grads
        # the kernel skips empty tensors (torch gives them no memory; they still get state and a step count)
        if b.has_empty:
            keep = [k for k, i in enumerate(active) if b.sizes[i]]
            self.sel = np.asarray(keep, dtype=np.int64)
            self.kernel = [active[k] for k in keep]
            self.grad_ptrs = [grads[k].data_ptr() for k in keep]
        else:
            self.sel = None
            self.kernel = active
            self.grad_ptrs = list(map(torch.Tensor.data_ptr, grads))
        # one OR of all addresses: a misaligned one leaves low bits set (cheaper than an array of them)
        if self.grad_ptrs and functools.reduce(operator.or_, self.grad_ptrs) % b.params[0].element_size():
            k = next(k for k, ptr in enumerate(self.grad_ptrs) if ptr % b.params[0].element_size())
            raise ValueError(f"the gradient of {b.where(self.kernel[k])} is not aligned to its element size")
        idx = None if active is b.all_indices else np.asarray(active, dtype=np.int64)
        self.counts = 1 if b.repeats is None else (b.repeats if idx is None else b.repeats[idx])
        self.first = ~b.exposed if idx is None else ~b.exposed[idx]
        self.scalar_rounds = self.new_scalars = None
        if b.steps is None:
            # counts on the device: advanced there, around the kernel calls; not checked here (reading them
            # would wait for the device; torch's fused optimizers do not either): load_state_dict checks them
            self.new_steps = None
            return
        old = b.steps if idx is None else b.steps[idx]
        new = old + np.asarray(self.counts, dtype=old.dtype)  # float32 or float64 arithmetic, as torch's step
        # whole numbers >= 0 (NaN fails ==, inf fails the bound): torch's 'step' tensors may be edited in place
        if old.size and not (0 <= old.min() and old.max() < math.inf and (old == np.floor(old)).all()):
            k = int(np.flatnonzero(~(np.isfinite(old) & (old >= 0) & (old == np.floor(old))))[0])
            raise ValueError(f"the state of {b.where(active[k])} has step {old[k]}: a step count is a whole "
                             f"number >= 0")
        self.new_steps = new
        if b.scalar_arrays:
            self._scalars(opt, idx, old)

    def _scalars(self, opt, idx, old_steps):
        """The per-parameter scalar state (NAdam's mu_product) after each kernel round of this step, as
        the optimizer advances it from the step counts (``opt._scalar_step``), checked first: a value
        edited in place is refused as a loaded one is. Stored by commit(), once the kernels ran."""
        b = self.binding
        current = {}
        for name, array in b.scalar_arrays.items():
            values = (array if idx is None else array[idx]).copy()
            bad = np.flatnonzero(~opt._scalar_ok(name, values))
            if bad.size:
                k = int(bad[0])
                opt._scalar_value(name, float(values[k]), f"the state of {b.where(self.active[k])}")  # raises
            current[name] = values
        counts = np.broadcast_to(np.asarray(self.counts), old_steps.shape)
        rounds = []
        for r in range(int(counts.max(initial=0))):
            take = counts > r
            for name, values in current.items():
                values[take] = opt._scalar_step(self.settings, name, values[take], old_steps[take] + (r + 1))
            rounds.append({name: values.copy() for name, values in current.items()})
        self.scalar_rounds, self.new_scalars = rounds, current

    def _round_scalars(self, r, take=None):
        """Round r's scalar state of the tensors the kernel call steps, as float64 (None without any)."""
        if self.scalar_rounds is None:
            return None
        out = {}
        for name, values in self.scalar_rounds[r].items():
            values = values if self.sel is None else values[self.sel]
            out[name] = (values if take is None else values[take]).astype(np.float64)
        return out

    def rounds(self):
        """(kernel indices, their step counts, first-step flags, gradient addresses, the binding indices
        this call steps) per kernel call: one call, or for a parameter listed n times in its group n
        calls in turn, as torch.optim steps each listing (with the momentum buffer it found at the start
        of the step). With device counts the step counts are None (the kernel reads them there), and
        the stepped indices (empty parameters included) are what to advance before the call. Last, the
        scalar state the call reads (NAdam's mu_products, float64), or None."""
        sel = self.sel
        new = None if self.new_steps is None else self.new_steps if sel is None else self.new_steps[sel]
        first = self.first if sel is None else self.first[sel]
        if self.binding.repeats is None:
            yield (self.kernel, None if new is None else new.astype(np.int64), first, self.grad_ptrs, self.active,
                   self._round_scalars(0))
            return
        counts = self.counts if sel is None else self.counts[sel]
        for r in range(int(self.counts.max(initial=0))):
            take = np.flatnonzero(counts > r)
            stepped = [self.active[k] for k in np.flatnonzero(self.counts > r)]
            steps = None if new is None else (new[take] - counts[take] + r + 1).astype(np.int64)
            yield ([self.kernel[k] for k in take], steps, first[take], [self.grad_ptrs[k] for k in take], stepped,
                   self._round_scalars(r, take))

    def commit(self, opt, taken=True):
        """The step's counts (host counts; device ones moved on the device) and any new state exposed
        in optimizer.state; a step GradScaler skipped (taken=False) exposes the state but keeps the
        counts, as torch's fused optimizers do."""
        b = self.binding
        if self.new_steps is None or not taken:
            pass
        elif self.active is b.all_indices:
            b.steps[...] = self.new_steps
        else:
            b.steps[np.asarray(self.active)] = self.new_steps
        if taken and self.new_scalars is not None:
            for name, values in self.new_scalars.items():
                if self.active is b.all_indices:
                    b.scalar_arrays[name][...] = values
                else:
                    b.scalar_arrays[name][np.asarray(self.active)] = values
        if self.first.any():
            for i in np.asarray(self.active)[self.first]:
                b._expose(opt, int(i))
            b._watch(opt)


class _FusedOptimizer(torch.optim.Optimizer):
    """The shared machinery: validation, bindings, one kernel call per group and dtype."""

    _counts_steps = True
    # on a GPU the step counts stay there (the CUDA kernels read them by address: Adam); False: they stay on the
    # host, as torch.optim's non-capturable optimizers keep them, and the CUDA kernels take them as host numbers
    _device_counts = True
    _scalar_state = {}  # per-parameter 0-d state besides 'step': {name: initial value} (NAdam's mu_product)
    _step_supports_amp_scaling = True  # GradScaler.step hands its grad_scale and found_inf to step()

    def __init__(self, params, defaults, max_grad_norm=None, state_dtype=None):
        self.state_dtype = _state_dtype(state_dtype)
        self.max_grad_norm = max_norm(max_grad_norm)
        self.last_grad_norm = None
        self.iterations = 0
        self._bindings = {}
        self._layout_checked = False
        super().__init__(params, defaults)

    def __getstate__(self):
        """torch's (defaults, state, param_groups) and fastdl's own settings and counters; the
        bindings are private caches, rebuilt at the next step (copy.deepcopy, pickle, torch.save)."""
        state = super().__getstate__()
        state.update(max_grad_norm=self.max_grad_norm, last_grad_norm=self.last_grad_norm,
                     iterations=self.iterations, state_dtype=self.state_dtype)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("max_grad_norm", None)
        self.__dict__.setdefault("last_grad_norm", None)
        self.__dict__.setdefault("iterations", 0)
        self.__dict__.setdefault("state_dtype", None)
        self._bindings = {}
        self._layout_checked = False

    def _settings(self, group):
        """The group's settings as the kernel takes them, each checked (a tuple)."""
        raise NotImplementedError

    def _state_names(self, settings):
        """The per-parameter state tensors a group's settings need."""
        raise NotImplementedError

    def _state_fill(self, group):
        """{state name: the value a new state tensor starts at} where that is not 0."""
        return {}

    def _scalar_value(self, name, value, where):
        """A per-parameter scalar state value (loaded, adopted or user-set), checked, as a float."""
        raise NotImplementedError

    def _scalar_ok(self, name, values):
        """Which of a NumPy array of scalar state values are valid."""
        raise NotImplementedError

    def _scalar_step(self, settings, name, values, steps):
        """The scalar state values after a step whose counts (including it) are `steps`."""
        raise NotImplementedError

    def add_param_group(self, param_group):
        """torch's add_param_group (a parameter listed twice warns, as torch's does) with fastdl's
        checks; a group that fails them is not kept."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            index = len(self.param_groups) - 1
            self._check_group(group, index)
            self._check_layout()  # every parameter, and none sharing memory with another
        except Exception:
            self.param_groups.pop()
            raise
        self._layout_checked = False

    def _check_group(self, group, index, iterations=None):
        """(learning rate, settings) of a group, checked; the error names the group."""
        try:
            lr = group["lr"]
            if isinstance(lr, schedules.Schedule):
                lr = lr(self.iterations if iterations is None else iterations)
                if isinstance(lr, schedules.Schedule):
                    raise TypeError("Invalid learning rate: a schedule returned a schedule")
            return _lr(lr), self._settings(group)
        except KeyError as e:
            raise KeyError(f"parameter group {index} has no {e.args[0]!r} setting") from None
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e} (parameter group {index})") from None

    def load_state_dict(self, state_dict):
        """torch's load_state_dict, all or nothing: a checkpoint whose settings or state do not fit
        (a step of -5, betas of one value) raises and leaves the optimizer as it was. ``iterations``
        (which a fastdl schedule reads) comes back from the 'fastdl_iterations' entry, or for a
        torch.optim checkpoint from the largest 'step' in it."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be an optimizer's state_dict: a dict with 'state' and 'param_groups'")
        iterations = state_dict.get("fastdl_iterations")
        if iterations is not None:
            iterations = int(_step_count(iterations, "the state_dict's 'fastdl_iterations'"))
        steps = []
        for key, st in state_dict["state"].items():
            if isinstance(st, dict) and "step" in st:
                steps.append(_step_count(st["step"], f"the state of parameter {key} in the state_dict"))
        if iterations is None:
            iterations = int(max(steps, default=0))
        before = (self.state, self.param_groups)
        super().load_state_dict(state_dict)
        try:
            for index, group in enumerate(self.param_groups):
                self._check_group(group, index, iterations)
            self._restore_scalars(state_dict)
            for index, group in enumerate(self.param_groups):
                for j, p in enumerate(group["params"]):
                    for name, value in self.state.get(p, {}).items():
                        if name != "step" and name not in self._scalar_state and isinstance(value, torch.Tensor) \
                                and value.shape != p.shape:
                            raise ValueError(f"the state_dict's {name!r} of parameter {j} of group {index} has shape "
                                             f"{tuple(value.shape)}, the parameter {tuple(p.shape)}")
        except BaseException:
            self.state, self.param_groups = before
            raise
        finally:
            self._bindings = {}  # rebuilt at the next step, adopting the state into fastdl's buffers
            self._layout_checked = False
        self.iterations = iterations

    def _restore_scalars(self, state_dict):
        """The per-parameter scalar state (NAdam's mu_product) as the checkpoint has it, checked, in torch's
        scalar dtype on the host: torch's load_state_dict casts it to the parameter's dtype (bfloat16 would
        round it), which fastdl undoes from the checkpoint's own value."""
        if not self._scalar_state:
            return
        saved = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = itertools.chain.from_iterable(g["params"] for g in self.param_groups)
        for key, p in zip(saved, params):
            st = state_dict["state"].get(key)
            if not isinstance(st, dict):
                continue
            for name in self._scalar_state:
                if name in st:
                    value = self._scalar_value(name, st[name], f"the state of parameter {key} in the state_dict")
                    self.state[p][name] = torch.tensor(value, dtype=_scalar_dtype())

    def state_dict(self):
        """torch's layout, plus 'fastdl_iterations' (torch.optim ignores it); the state tensors are
        copies (torch.optim returns references, which here would be views into fastdl's buffers)."""
        sd = super().state_dict()
        sd["state"] = {k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in st.items()}
                       for k, st in sd["state"].items()}
        sd["fastdl_iterations"] = self.iterations
        return sd

    def _cached_bindings(self, index, group, names):
        """The group's bindings (one per dtype) if they still describe it, else None."""
        params = group["params"]
        cached = self._bindings.get(index)
        if cached is not None and len(cached[0]) == len(params) and all(map(operator.is_, params, cached[0])) \
                and all(b.still_valid(self, names) for b in cached[1]):
            return cached[1]
        return None

    def _check_layout(self):
        """Every parameter of every group checked, each in one group only, and no two sharing memory
        (the kernels update parameters in parallel: views of one buffer would race)."""
        owner, spans = {}, []
        for gi, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                _check_param(p, f"parameter {j} of group {gi}")
                prev = owner.get(id(p))
                if prev is not None:
                    if prev[0] != gi:
                        raise ValueError(f"parameter {j} of group {gi} is also parameter {prev[1]} of group {prev[0]}: "
                                         f"a parameter belongs to one group (torch.optim refuses it too)")
                    continue  # listed twice in its group: stepped twice, as torch.optim does
                owner[id(p)] = (gi, j)
                if p.numel():
                    start = p.data_ptr()
                    spans.append((start, start + p.numel() * p.element_size(), gi, j))
        spans.sort()
        end_max, who = 0, None
        for start, end, gi, j in spans:
            if who is not None and start < end_max:
                raise ValueError(f"parameter {j} of group {gi} shares memory with parameter {who[1]} of group "
                                 f"{who[0]} (views of one tensor?): fastdl.torch updates parameters in parallel, each "
                                 f"in its own memory")
            if end > end_max:
                end_max, who = end, (gi, j)

    def _build(self, index, group, names):
        params = group["params"]
        by_dtype, first = {}, {}
        for j, p in enumerate(params):
            if id(p) in first:
                dtype, k = first[id(p)]
                by_dtype[dtype][1][k] += 1
                continue
            key = (p.dtype, p.device)
            js, counts = by_dtype.setdefault(key, ([], []))
            first[id(p)] = (key, len(js))
            js.append(j)
            counts.append(1)
        fill = self._state_fill(group)
        bindings = [_Binding(self, [params[j] for j in js], js, np.asarray(counts, dtype=np.int64), names, index,
                             fill) for js, counts in by_dtype.values()]
        self._bindings[index] = (tuple(params), bindings)
        return bindings

    def _plan(self):
        """Every group's settings, parameters, gradients and state checked, and the step's kernel
        calls prepared; nothing a user sees has changed (bindings rebuilt here adopt the state as it
        is). Raises on anything a kernel call could fail on."""
        name = type(self).__name__
        checked = [self._check_group(group, index) for index, group in enumerate(self.param_groups)]
        names = [self._state_names(settings) for _, settings in checked]
        cached = [self._cached_bindings(index, group, n)
                  for index, (group, n) in enumerate(zip(self.param_groups, names))]
        if not self._layout_checked or any(c is None for c in cached) or len(self._bindings) > len(cached):
            self._layout_checked = False
            self._check_layout()
            for index in [k for k in self._bindings if k >= len(cached)]:
                del self._bindings[index]
            self._layout_checked = True
        work = []
        for index, group in enumerate(self.param_groups):
            bindings = cached[index] if cached[index] is not None else self._build(index, group, names[index])
            lr, settings = checked[index]
            for b in bindings:
                active, grads = b.gradients(name)
                if active:
                    work.append(_Work(b, settings, lr, active, grads, self))
        return work

    def _clip_factor(self, work, kernels, on_device, grad_scale):
        """(global gradient norm, clipping factor), of the gradients divided by grad_scale when there is
        one. On one GPU both stay there as 0-d tensors, so the step does not wait for the device; with
        CPU tensors (or several devices) they are floats."""
        sums = [kernels[w.binding.device]._grad_sum_squares_raw(w.binding.dtype, w.grad_ptrs,
                                                                w.binding.pick(w.binding.sizes, w.kernel))
                for w in work if w.kernel]
        if on_device and sums:
            norm = torch.stack(sums).sum().sqrt() if len(sums) > 1 else sums[0].sqrt()
        else:
            norm = math.sqrt(sum(float(t) for t in sums))
        if grad_scale is not None:
            norm = norm / grad_scale if on_device or grad_scale else math.inf
        return norm, clip_coefficient(norm, self.max_grad_norm)

    def _amp(self, work):
        """(on_device, grad_scale, skip): torch.amp.GradScaler's tensors, which its step() sets as
        optimizer.grad_scale (None when the user called scaler.unscale_ already) and
        optimizer.found_inf, as it does for torch's fused optimizers (_step_supports_amp_scaling).
        When every parameter with a gradient is on one GPU they are used there (grad_scale as a 0-d
        float64, skip a 0-d float32: 1 when an inf or NaN was found) and the step never waits for the
        device; otherwise they are read on the host (a float, a bool), which on the CPU costs nothing."""
        grad_scale, found_inf = _amp_tensor(self, "grad_scale"), _amp_tensor(self, "found_inf")
        if grad_scale is None and found_inf is None and self.max_grad_norm is None:
            return False, None, None  # the plain step: nothing more to know
        devices = {w.binding.device for w in work}
        device = next(iter(devices)) if len(devices) == 1 else None
        on_device = device is not None and _on_device(device)
        if on_device:
            if grad_scale is not None:
                grad_scale = grad_scale.to(device, torch.float64, non_blocking=True).reshape(())
            if not self._device_counts and found_inf is not None:
                # host step counts (and NAdam's mu_product): whether the step counts is known on the host only
                # by reading the flag, one wait for the device, as torch's GradScaler does for torch.optim's
                # non-fused optimizers; the scale is still used where it is
                return on_device, grad_scale, float(found_inf) != 0
            skip = None if found_inf is None else \
                found_inf.to(device, non_blocking=True).reshape(()).ne(0).to(torch.float32)
            return on_device, grad_scale, skip
        if grad_scale is not None:
            grad_scale = float(grad_scale)
        return on_device, grad_scale, None if found_inf is None else float(found_inf) != 0

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss if given.
        All or nothing: every group, parameter, gradient and state tensor is checked first, and a
        step that raises leaves parameters, state and step counts as they were."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._plan()
        kernels = _kernels(work)
        on_device, grad_scale, skip = self._amp(work)
        clip_coef, grad_norm = 1.0, None
        if self.max_grad_norm is not None:
            grad_norm, clip_coef = self._clip_factor(work, kernels, on_device, grad_scale)
        if grad_scale is not None:  # unscaled inside the update: the factor multiplies every gradient
            clip_coef = clip_coef / grad_scale if on_device or grad_scale else math.inf
        # from here on nothing can fail on checked input: every kernel call runs, then the counts move
        taken = skip is not True  # False: found on the host, nothing to run; a device skip the kernels read
        device_skip = skip if isinstance(skip, torch.Tensor) else None  # a flag read on the host: taken or not
        for w in work if taken else ():
            b = w.binding
            if b.steps is None or device_skip is not None:
                self._run_on_device(kernels[b.device], w, clip_coef, device_skip)
                continue
            for kernel, steps, first, grad_ptrs, _, scalars in w.rounds():
                if kernel:
                    self._run(kernels[b.device], w.settings, w.lr, b, kernel, grad_ptrs, steps, first, clip_coef,
                              _NO_EXTRA, scalars)
        for w in work:
            w.commit(self, taken)
        if self.max_grad_norm is not None:
            self.last_grad_norm = grad_norm
        self.iterations += 1
        return loss


    def _run_on_device(self, ext, w, clip_coef, skip):
        """w's kernel calls on a GPU: the device counts advanced on the stream before each call (the
        kernel reads them there) and, with GradScaler's skip flag (read by the kernel too), moved back
        by it after: a skipped step leaves them as they were, and nothing waits for the device."""
        b = w.binding
        device_counts = b.steps is None
        rounds = list(w.rounds())
        for kernel, steps, first, grad_ptrs, stepped, scalars in rounds:
            if device_counts:
                b.advance(stepped)
            if kernel:
                extra = {} if skip is None else {"found_inf": skip.data_ptr()}
                if device_counts:
                    extra["step_ptrs"] = b.pick(b.step_ptrs, kernel)
                self._run(ext, w.settings, w.lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars)
        if device_counts and skip is not None:
            for *_, stepped, _ in rounds:
                b.advance(stepped, skip)


_NO_EXTRA = {}


def _scalar_dtype():
    """torch's dtype for 0-d optimizer state ('step', NAdam's 'mu_product'): float64 under a float64
    default dtype, else float32 (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _state_dtype(value):
    """None (state in each parameter's dtype) or torch.float32 (float32 state for 16-bit parameters)."""
    if value is None or value == torch.float32 or value == "float32":
        return None if value is None else torch.float32
    raise ValueError(f"state_dtype must be None (the state in each parameter's dtype, as torch.optim keeps it) or "
                     f"torch.float32 (float32 state beside bfloat16 / float16 parameters), got {value!r}")


def _amp_tensor(opt, name):
    """optimizer.grad_scale or optimizer.found_inf as GradScaler sets them: None or a one-element tensor."""
    value = getattr(opt, name, None)
    if value is not None and (not isinstance(value, torch.Tensor) or value.numel() != 1 or value.is_complex()):
        raise TypeError(f"optimizer.{name} is {value!r}: torch.amp.GradScaler sets it to a one-element real tensor "
                        f"(or leaves it unset)")
    return value


class SGD(_FusedOptimizer):
    """torch.optim.SGD's update (momentum, dampening, nesterov, weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p
        b <- g at a parameter's first step, else momentum b + (1 - dampening) g
        g <- g + momentum b (nesterov) or b;   p <- p - lr g
    """

    _counts_steps = False  # torch's SGD keeps no step count

    def _settings(self, group):
        return (_real(group["momentum"], "momentum value"), _real(group["dampening"], "dampening value", -math.inf),
                _real(group["weight_decay"], "weight_decay value"), _flag(group["nesterov"], "nesterov value"),
                _flag(group["maximize"], "maximize value"))

    def _state_names(self, settings):
        return ("momentum_buffer",) if settings[0] != 0 else ()

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None, max_grad_norm=None,
                 state_dtype=None):
        _refuse(differentiable=differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        momentum, dampening, _, nesterov, _ = self._settings(defaults)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        momentum, dampening, weight_decay, nesterov, maximize = settings
        bufs = b.pick(b.state_ptrs["momentum_buffer"], kernel) if momentum != 0 else None
        # the kernel starts a momentum buffer where the step count is 1: a parameter without one yet
        counts = np.where(first, 1, 2).astype(np.int64)
        ext._sgd_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, bufs, b.pick(b.sizes, kernel), counts,
                          SgdOptions(lr, momentum, dampening, weight_decay, nesterov, maximize, clip_coef), **extra,
                          **b.state_kw)


class Adam(_FusedOptimizer):
    """torch.optim.Adam's update (amsgrad, maximize, weight_decay; decoupled_weight_decay for AdamW's
    form), fused:
        g <- -g (maximize);  g <- g + weight_decay p  (or p <- p (1 - lr weight_decay) when decoupled)
        m <- lerp(m, g, 1 - beta1);  v <- beta2 v + (1 - beta2) g^2;  v_hat = max(v_hat, v) (amsgrad)
        p <- p - lr / (1 - beta1^t) m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
    """

    _decoupled_default = False

    def _settings(self, group):
        beta1, beta2 = _betas(group["betas"])
        return (beta1, beta2, _real(group["eps"], "epsilon value"), _real(group["weight_decay"], "weight_decay value"),
                _flag(group["amsgrad"], "amsgrad value"),
                _flag(group["decoupled_weight_decay"], "decoupled_weight_decay value"),
                _flag(group["maximize"], "maximize value"), _flag(group.get("capturable", False), "capturable value"))

    def _state_names(self, settings):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if settings[4] else ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=None, max_grad_norm=None, state_dtype=None):
        _refuse(differentiable=differentiable)
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled_default
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real(eps, "epsilon value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def _plan(self):
        work = super()._plan()
        uncapturable_cuda = False
        for w in work:
            if w.settings[7]:
                if not _on_device(w.binding.device):
                    raise ValueError(f"capturable=True needs the parameters on a GPU (a CUDA graph captures GPU "
                                     f"work): {w.binding.where(w.active[0])} is on {w.binding.device}")
            elif w.binding.device.type == "cuda":
                uncapturable_cuda = True
        # as torch.optim.Adam: capturing a step is refused unless its groups declared capturable=True
        if uncapturable_cuda and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"Attempting CUDA graph capture of step() for an instance of {type(self).__name__} "
                               f"but param_groups' capturable is False")
        return work

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("capturable", False)
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", self._decoupled_default)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize = settings[:7]
        sp = b.state_ptrs
        ext._adam_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(sp["exp_avg"], kernel),
                           b.pick(sp["exp_avg_sq"], kernel), b.pick(sp["max_exp_avg_sq"], kernel) if amsgrad else None,
                           b.pick(b.sizes, kernel), steps,
                           AdamOptions(lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize, clip_coef),
                           **extra, **b.state_kw)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p <- p (1 - lr weight_decay)), weight_decay 1e-2."""

    _decoupled_default = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None,
                 max_grad_norm=None, state_dtype=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, max_grad_norm=max_grad_norm,
                         state_dtype=state_dtype)


def _refuse(differentiable=False, capturable=False, name=None):
    if differentiable:
        raise ValueError("differentiable=True is not supported by fastdl.torch: its step runs outside autograd; "
                         "use torch.optim to differentiate through optimizer steps")
    if capturable:
        _capturable(capturable, name)


def _capturable(value, name):
    """capturable for the optimizers that keep their step counts on the host: False, or refused."""
    if _flag(value, "capturable value"):
        raise ValueError(f"capturable=True is not supported by fastdl.torch.{name}: its step counts stay on the host "
                         f"(as torch.optim's non-capturable {name} keeps them), so its steps cannot be captured in "
                         f"a CUDA graph; use capturable=False (a checkpoint saved with it: set its param_groups' "
                         f"'capturable' to False) or fastdl.torch.Adam / AdamW, which capture")


def _real_closed(value, label, low, high):
    """A finite number in [low, high] (torch's 0 <= rho <= 1)."""
    v = _real(value, label, low)
    if v > high:
        raise ValueError(f"Invalid {label}: {v if isinstance(value, torch.Tensor) else value}")
    return v


class _HostCounted(_FusedOptimizer):
    """The optimizers whose CUDA kernels take the step counts as host numbers: 'step' stays a 0-d host
    tensor of torch's scalar dtype (float32; float64 under a float64 default dtype), as torch.optim's
    non-capturable optimizers keep it, on a GPU too. Under torch.amp.GradScaler on a GPU the inf/NaN
    flag is read on the host (one wait for the device per step, as GradScaler does for torch.optim's
    non-fused optimizers); the scale and max_grad_norm's factor stay on the device."""

    _device_counts = False

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self._group_defaults.items():
                group.setdefault(key, value)

    _group_defaults = {}


class RMSprop(_HostCounted):
    """torch.optim.RMSprop's update (momentum, centered, weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p
        v <- alpha v + (1 - alpha) g^2;  centered: a <- lerp(a, g, 1 - alpha), d = sqrt(v - a^2) + eps
                                         else d = sqrt(v) + eps
        momentum > 0: b <- momentum b + g / d, p <- p - lr b;   else p <- p - lr g / d
    State: 'step', 'square_avg' (v), 'momentum_buffer' (b, momentum > 0), 'grad_avg' (a, centered).
    """

    _group_defaults = dict(momentum=0, centered=False, foreach=None, maximize=False, differentiable=False,
                           capturable=False)

    def _settings(self, group):
        _capturable(group.get("capturable", False), "RMSprop")
        return (_real(group["alpha"], "alpha value"), _real(group["eps"], "epsilon value"),
                _real(group["weight_decay"], "weight_decay value"), _real(group["momentum"], "momentum value"),
                _flag(group["centered"], "centered value"), _flag(group["maximize"], "maximize value"))

    def _state_names(self, settings):
        return ("square_avg",) + (("momentum_buffer",) if settings[3] > 0 else ()) + \
            (("grad_avg",) if settings[4] else ())

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False, *, max_grad_norm=None,
                 state_dtype=None):
        _refuse(differentiable, capturable, "RMSprop")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real(eps, "epsilon value")
        _real(momentum, "momentum value")
        _real(weight_decay, "weight_decay value")
        _real(alpha, "alpha value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        alpha, eps, weight_decay, momentum, centered, maximize = settings
        sp = b.state_ptrs
        ext._rmsprop_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(sp["square_avg"], kernel),
                              b.pick(sp["momentum_buffer"], kernel) if momentum > 0 else None,
                              b.pick(sp["grad_avg"], kernel) if centered else None, b.pick(b.sizes, kernel), steps,
                              RmspropOptions(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                             centered=centered, maximize=maximize, clip_coef=clip_coef),
                              **extra, **b.state_kw)


class Adagrad(_HostCounted):
    """torch.optim.Adagrad's update (lr_decay, weight_decay, initial_accumulator_value, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p;  clr = lr / (1 + (step - 1) lr_decay)
        s <- s + g^2;  p <- p - clr g / (sqrt(s) + eps)
    State: 'step', 'sum' (s). As torch's, the state of every parameter is made at construction (and,
    unlike torch's, for the parameters of a group added later: torch's step would fail on them):
    'step' 0, 'sum' filled with initial_accumulator_value (a 'sum' fastdl has to start later, after
    ``optimizer.state`` was cleared, starts there too).
    """

    _group_defaults = dict(foreach=None, maximize=False, differentiable=False, fused=None)

    def _settings(self, group):
        return (_real(group["lr_decay"], "lr_decay value"), _real(group["weight_decay"], "weight_decay value"),
                _real(group["eps"], "epsilon value"), _flag(group["maximize"], "maximize value"),
                _real(group.get("initial_accumulator_value", 0.0), "initial_accumulator_value value"))

    def _state_names(self, settings):
        return ("sum",)

    def _state_fill(self, group):
        return {"sum": self._settings(group)[4]}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None, max_grad_norm=None,
                 state_dtype=None):
        _refuse(differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real(lr_decay, "lr_decay value")
        _real(weight_decay, "weight_decay value")
        _real(initial_accumulator_value, "initial_accumulator_value value")
        _real(eps, "epsilon value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def add_param_group(self, param_group):
        """torch's add_param_group, then each new parameter's state as torch's Adagrad makes it at
        construction: 'step' a 0-d host tensor of 0, 'sum' initial_accumulator_value."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        init = self._settings(group)[4]
        for p in group["params"]:
            if not self.state.get(p):
                self.state[p]["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                self.state[p]["sum"] = torch.full_like(p, init, memory_format=torch.preserve_format)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        lr_decay, weight_decay, eps, maximize, _ = settings
        ext._adagrad_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(b.state_ptrs["sum"], kernel),
                              b.pick(b.sizes, kernel), steps,
                              AdagradOptions(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                             maximize=maximize, clip_coef=clip_coef), **extra, **b.state_kw)


class Adadelta(_HostCounted):
    """torch.optim.Adadelta's update (weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p
        v <- rho v + (1 - rho) g^2;  delta = sqrt(u + eps) / sqrt(v + eps) g
        u <- rho u + (1 - rho) delta^2;  p <- p - lr delta
    State: 'step', 'square_avg' (v), 'acc_delta' (u).
    """

    _group_defaults = dict(foreach=None, maximize=False, differentiable=False, capturable=False)

    def _settings(self, group):
        _capturable(group.get("capturable", False), "Adadelta")
        return (_real_closed(group["rho"], "rho value", 0.0, 1.0), _real(group["eps"], "epsilon value"),
                _real(group["weight_decay"], "weight_decay value"), _flag(group["maximize"], "maximize value"))

    def _state_names(self, settings):
        return ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False, max_grad_norm=None, state_dtype=None):
        _refuse(differentiable, capturable, "Adadelta")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real_closed(rho, "rho value", 0.0, 1.0)
        _real(eps, "epsilon value")
        _real(weight_decay, "weight_decay value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        rho, eps, weight_decay, maximize = settings
        sp = b.state_ptrs
        ext._adadelta_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(sp["square_avg"], kernel),
                               b.pick(sp["acc_delta"], kernel), b.pick(b.sizes, kernel), steps,
                               AdadeltaOptions(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                               clip_coef=clip_coef), **extra, **b.state_kw)


class Adamax(_HostCounted):
    """torch.optim.Adamax's update (weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p
        m <- lerp(m, g, 1 - beta1);  u <- max(beta2 u, |g| + eps);  p <- p - lr / (1 - beta1^t) m / u
    State: 'step', 'exp_avg' (m), 'exp_inf' (u).
    """

    _group_defaults = dict(foreach=None, maximize=False, differentiable=False, capturable=False)

    def _settings(self, group):
        _capturable(group.get("capturable", False), "Adamax")
        beta1, beta2 = _betas(group["betas"])
        return (beta1, beta2, _real(group["eps"], "epsilon value"), _real(group["weight_decay"], "weight_decay value"),
                _flag(group["maximize"], "maximize value"))

    def _state_names(self, settings):
        return ("exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False, max_grad_norm=None, state_dtype=None):
        _refuse(differentiable, capturable, "Adamax")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, capturable=capturable)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real(eps, "epsilon value")
        _betas(betas)
        _real(weight_decay, "weight_decay value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        beta1, beta2, eps, weight_decay, maximize = settings
        sp = b.state_ptrs
        ext._adamax_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(sp["exp_avg"], kernel),
                             b.pick(sp["exp_inf"], kernel), b.pick(b.sizes, kernel), steps,
                             AdamaxOptions(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                                           maximize=maximize, clip_coef=clip_coef), **extra, **b.state_kw)


class NAdam(_HostCounted):
    """torch.optim.NAdam's update (momentum_decay, weight_decay, decoupled_weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p  (or p <- p (1 - lr weight_decay) when decoupled)
        mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay));  P <- P mu_t  (mu_product)
        m <- lerp(m, g, 1 - beta1);  v <- beta2 v + (1 - beta2) g^2;  d = sqrt(v / (1 - beta2^t)) + eps
        p <- p - lr (1 - mu_t) / (1 - P) g / d - lr mu_{t+1} / (1 - P mu_{t+1}) m / d
    State: 'step', 'mu_product' (P), 'exp_avg' (m), 'exp_avg_sq' (v). 'mu_product' is a 0-d host tensor
    of torch's scalar dtype (float32; float64 under a float64 default dtype) advanced as torch does
    (P *= mu_t in that dtype, so a float32 P rounds where torch's does); the kernel takes it as a
    float64, converted at the call. A checkpoint's mu_product is loaded as saved (torch's own loading
    would cast it to the parameter's dtype) and must lie in [0, 1].
    """

    _group_defaults = dict(maximize=False, foreach=None, capturable=False, differentiable=False,
                           decoupled_weight_decay=False)
    _scalar_state = {"mu_product": 1.0}

    def _settings(self, group):
        _capturable(group.get("capturable", False), "NAdam")
        beta1, beta2 = _betas(group["betas"])
        return (beta1, beta2, _real(group["eps"], "epsilon value"), _real(group["weight_decay"], "weight_decay value"),
                _real(group["momentum_decay"], "momentum_decay value"),
                _flag(group["decoupled_weight_decay"], "decoupled_weight_decay value"),
                _flag(group["maximize"], "maximize value"))

    def _state_names(self, settings):
        return ("exp_avg", "exp_avg_sq")

    def _scalar_value(self, name, value, where):
        try:
            v = _number(value, name)
        except (TypeError, ValueError):
            raise TypeError(f"{where} has {name} {value!r}: a number is needed") from None
        if not 0.0 <= v <= 1.0:  # NaN fails too
            raise ValueError(f"{where} has {name} {v}: a product of momentum coefficients lies in [0, 1]")
        return v

    def _scalar_ok(self, name, values):
        return (values >= 0) & (values <= 1)

    def _scalar_step(self, settings, name, values, steps):
        beta1, momentum_decay = settings[0], settings[4]
        # torch's mu, in Python floats from the float step count; then its mu_product *= mu, in the product's dtype
        mu = [beta1 * (1.0 - 0.5 * (0.96 ** (float(t) * momentum_decay))) for t in steps]
        return values * np.asarray(mu, dtype=np.float64).astype(values.dtype)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False, differentiable=False,
                 max_grad_norm=None, state_dtype=None):
        _refuse(differentiable, capturable, "NAdam")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        if not isinstance(lr, schedules.Schedule):
            _lr(lr)  # torch's order of checks and messages
        _real(eps, "epsilon value")
        _betas(betas)
        _real(weight_decay, "weight_decay value")
        _real(momentum_decay, "momentum_decay value")
        self._settings(defaults)
        super().__init__(params, defaults, max_grad_norm, state_dtype)

    def _run(self, ext, settings, lr, b, kernel, grad_ptrs, steps, first, clip_coef, extra, scalars=None):
        beta1, beta2, eps, weight_decay, momentum_decay, decoupled, maximize = settings
        sp = b.state_ptrs
        ext._nadam_step_raw(b.dtype, b.pick(b.ptrs, kernel), grad_ptrs, b.pick(sp["exp_avg"], kernel),
                            b.pick(sp["exp_avg_sq"], kernel), scalars["mu_product"], b.pick(b.sizes, kernel), steps,
                            NadamOptions(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                                         momentum_decay=momentum_decay, decoupled=decoupled, maximize=maximize,
                                         clip_coef=clip_coef), **extra, **b.state_kw)

"""fastdl.torch: drop-in replacements for torch.optim.SGD, Adam and AdamW.

    from fastdl.torch import Adam        # instead of: from torch.optim import Adam
    opt = Adam(model.parameters(), lr=1e-3)

They take torch's arguments and defaults, keep torch's state keys ('step', 'exp_avg',
'exp_avg_sq', 'max_exp_avg_sq', 'momentum_buffer') and state_dict layout (a checkpoint of
torch.optim.Adam loads into fastdl.torch.Adam and back), and work with torch.optim.lr_scheduler,
zero_grad, step(closure) and torch.amp.GradScaler. The update rules are torch.optim's
single-tensor ones; each step is one multi-tensor C++ call per parameter group and dtype, on the
tensors' own memory (no copies). Each parameter may appear once. A step notices what changed since
the last one (``p.data = ...`` as Module.to() does, a replaced or cleared ``optimizer.state``, new
groups) and rebinds, adopting the state it finds.

CPU tensors only, float32 or float64, for now: fastdl has no CUDA kernels yet, and CUDA
parameters are refused with an error rather than copied to the CPU. Without the C++ extension
(or with FASTDL_BACKEND=numpy) the same updates run in NumPy on views of the same memory.

fastdl additions (keyword-only): ``max_grad_norm`` clips the gradients' global L2 norm inside the
step, as torch.nn.utils.clip_grad_norm_ would before it (``last_grad_norm`` keeps the norm); ``lr``
may be a fastdl.optim schedule, evaluated at ``iterations`` (the number of steps taken).
"""

import itertools
import math
import operator

import numpy as np
import torch

from . import _backend
from .optim import schedules
from .optim.optimizer import clip_coefficient, max_norm

__all__ = ["SGD", "Adam", "AdamW"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
_IS_SPARSE = operator.attrgetter("is_sparse")
_SHAPE_DTYPE = operator.attrgetter("shape", "dtype")


class _NumpyKernels:
    """The _raw kernel calls of the extension, run by fastdl's NumPy backend on NumPy views of the
    tensors (the addresses are looked up among the binding's own tensors)."""

    def __init__(self, tensors):
        self.by_address = {t.data_ptr(): t for t in tensors}

    def _views(self, addresses, sizes):
        return [self.by_address[a].reshape(-1)[:n].numpy() for a, n in zip(addresses, sizes)]

    def _grad_sum_squares_raw(self, dtype, grads, sizes):
        return _backend.kernels.grad_sum_squares(self._views(grads, sizes))

    def _sgd_step_raw(self, dtype, params, grads, bufs, sizes, steps, *args):
        _backend.kernels.sgd_step(self._views(params, sizes), self._views(grads, sizes),
                                  None if bufs is None else self._views(bufs, sizes), steps, *args)

    def _adam_step_raw(self, dtype, params, grads, m, v, vmax, sizes, steps, *args):
        _backend.kernels.adam_step(self._views(params, sizes), self._views(grads, sizes), self._views(m, sizes),
                                   self._views(v, sizes), None if vmax is None else self._views(vmax, sizes),
                                   steps, *args)


def _kernels(work):
    """The extension, or the NumPy backend over the tensors of this step."""
    ext = _backend.cpu_extension()
    if ext is not None and _backend.kernels is ext:
        return ext
    tensors = []
    for _, b, _, grads, _ in work:
        tensors += b.params + grads + [v for views in b.views.values() for v in views]
    return _NumpyKernels(tensors)


def _check_param(p, where):
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where} is a {type(p).__name__}, not a torch.Tensor")
    if p.device.type != "cpu":
        raise RuntimeError(f"{where} is on {p.device}: fastdl.torch has CPU kernels only for now (CUDA support "
                           f"comes in a later release); use torch.optim for parameters on {p.device.type}")
    if p.dtype not in _DTYPES:
        raise TypeError(f"{where} has dtype {p.dtype}: fastdl.torch updates float32 and float64 parameters")
    if p.is_sparse or not p.is_contiguous():
        raise ValueError(f"{where} is not a contiguous dense tensor: fastdl.torch updates parameters in place")


def _real(value, name, low=0.0, high=None):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a one-element tensor")
        value = value.item()
    value = float(value)
    if not math.isfinite(value) or value < low or (high is not None and value >= high):
        raise ValueError(f"Invalid {name} value: {value}")
    return value


class _Binding:
    """One parameter group's tensors of one dtype, and the flat buffers that hold their state.

    The state tensors torch sees (optimizer.state[p]['exp_avg'], ...) are views into one buffer
    per state name, and each 'step' is a 0-dim view into one step buffer, so that a step reads
    their addresses from a list and advances every count with one NumPy add. A parameter's state
    appears in optimizer.state at its first step, as in torch.optim.
    """

    def __init__(self, opt, params, positions, names):
        self.params = params
        self.positions = positions  # each parameter's index in its group, for messages
        self.names = names
        self.torch_dtype = params[0].dtype
        self.dtype = _DTYPES[self.torch_dtype]
        self.ptrs = [p.data_ptr() for p in params]
        self.sizes = [p.numel() for p in params]
        offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.buffers = {name: torch.zeros(int(offsets[-1]), dtype=params[0].dtype) for name in names}
        self.views = {name: [buf[offsets[i]:offsets[i + 1]].view_as(p) for i, p in enumerate(params)]
                      for name, buf in self.buffers.items()}
        self.state_ptrs = {name: [v.data_ptr() for v in views] for name, views in self.views.items()}
        self.step_tensor = torch.zeros(len(params), dtype=torch.get_default_dtype()
                                       if torch.get_default_dtype() == torch.float64 else torch.float32)
        self.steps = self.step_tensor.numpy()  # shares memory
        self.step_views = [self.step_tensor[i] for i in range(len(params))]
        self.exposed = np.zeros(len(params), dtype=bool)
        for i, p in enumerate(params):  # state already there (a loaded checkpoint, an earlier binding)
            st = opt.state.get(p)
            if st:
                self._adopt(opt, i, st)
        self.shape_dtype = list(map(_SHAPE_DTYPE, params))
        self.all_indices = list(range(len(params)))
        self._watch(opt)

    def _adopt(self, opt, i, st):
        for name, views in self.views.items():
            value = st.get(name)
            if value is not None:
                if value.shape != views[i].shape:
                    raise ValueError(f"state {name!r} of a parameter has shape {tuple(value.shape)}, the parameter "
                                     f"{tuple(views[i].shape)}")
                views[i].copy_(value)
        if "step" in st:
            self.steps[i] = float(st["step"])
        self._expose(opt, i)

    def _expose(self, opt, i):
        if self.names or opt._counts_steps:
            st = opt.state[self.params[i]]
            for name, views in self.views.items():
                st[name] = views[i]
            if opt._counts_steps:
                st["step"] = self.step_views[i]
        self.exposed[i] = True

    def gradients(self, index, optimizer_name):
        """(indices of the parameters with a gradient, their gradients, contiguous), after checking
        them all: the step raises before anything changes. Mapped calls keep this cheap for models
        of many small tensors."""
        grads = [p.grad for p in self.params]
        if any(map(operator.is_, grads, itertools.repeat(None))):
            active = [i for i, g in enumerate(grads) if g is not None]
            grads = [grads[i] for i in active]
        else:
            active = self.all_indices
        if any(map(_IS_SPARSE, grads)):
            raise RuntimeError(f"{optimizer_name} does not support sparse gradients")
        if list(map(_SHAPE_DTYPE, grads)) != self.pick(self.shape_dtype, active):
            for i, g in zip(active, grads):
                if (g.shape, g.dtype) != self.shape_dtype[i]:
                    raise ValueError(f"the gradient of parameter {self.positions[i]} of group {index} is {g.dtype} "
                                     f"{tuple(g.shape)}, the parameter {self.torch_dtype} "
                                     f"{tuple(self.params[i].shape)}: they must match")
        if not all(map(torch.Tensor.is_contiguous, grads)):
            grads = [g.contiguous() for g in grads]  # the copies live until the kernel has run
        return active, grads

    def pick(self, values, active):
        """values[i] for i in active (the list itself when every parameter is active)."""
        return values if active is self.all_indices else [values[i] for i in active]

    def still_valid(self, opt, names):
        """Whether this binding still describes its tensors (the caller checked they are the group's):
        the same state names, the same addresses, shapes and dtypes (``p.data = ...``, as Module.to()
        does, swaps them), and torch's state still the binding's views (a user may clear
        ``opt.state`` or replace a state tensor; the rebuild then adopts what is there)."""
        params = self.params
        if names != self.names:
            return False
        if list(map(torch.Tensor.data_ptr, params)) != self.ptrs or list(map(_SHAPE_DTYPE, params)) != self.shape_dtype \
                or not all(map(torch.Tensor.is_contiguous, params)):
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


class _FusedOptimizer(torch.optim.Optimizer):
    """The shared machinery: validation, bindings, one kernel call per group and dtype."""

    _counts_steps = True

    def __init__(self, params, defaults, max_grad_norm=None):
        self.max_grad_norm = max_norm(max_grad_norm)
        self.last_grad_norm = None
        self.iterations = 0
        self._bindings = {}
        super().__init__(params, defaults)

    def _state_names(self, group):
        """The per-parameter state tensors a group's settings need."""
        raise NotImplementedError

    def add_param_group(self, param_group):
        """torch's add_param_group with fastdl's checks; a group that fails them is not kept."""
        params = param_group.get("params") if isinstance(param_group, dict) else None
        if params is not None and not isinstance(params, (torch.Tensor, set)):
            params = list(params)  # a generator is read once, here
            if len({id(p) for p in params}) != len(params):  # one fused call would update it twice
                raise ValueError(f"a parameter appears twice in parameter group {len(self.param_groups)}: "
                                 f"fastdl.torch needs each parameter once")
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for j, p in enumerate(group["params"]):
                _check_param(p, f"parameter {j} of group {len(self.param_groups) - 1}")
            self._check_group(group)
        except Exception:
            self.param_groups.pop()
            raise

    def _check_group(self, group):
        lr = group["lr"]
        if not isinstance(lr, schedules.Schedule):
            _real(lr, "learning rate")

    def load_state_dict(self, state_dict):
        """torch's load_state_dict; ``iterations`` (which a fastdl schedule reads) comes back from the
        'fastdl_iterations' entry, or for a torch.optim checkpoint from the largest 'step' in it."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._check_group(group)
        iterations = state_dict.get("fastdl_iterations")
        if iterations is None:
            steps = [float(st["step"]) for st in state_dict["state"].values() if "step" in st]
            iterations = max(steps, default=0)
        self.iterations = int(iterations)
        self._bindings = {}  # rebuilt at the next step, adopting the loaded state into fastdl's buffers

    def state_dict(self):
        """torch's layout, plus 'fastdl_iterations' (torch.optim ignores it); the state tensors are
        copies (torch.optim returns references, which here would be views into fastdl's buffers)."""
        sd = super().state_dict()
        sd["state"] = {k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in st.items()}
                       for k, st in sd["state"].items()}
        sd["fastdl_iterations"] = self.iterations
        return sd

    def _bindings_for(self, index, group):
        """The group's bindings (one per dtype), rebuilt when its parameters changed."""
        params = group["params"]
        names = self._state_names(group)
        cached = self._bindings.get(index)
        if cached is not None and len(cached[0]) == len(params) and all(map(operator.is_, params, cached[0])) \
                and all(b.still_valid(self, names) for b in cached[1]):
            return cached[1]
        by_dtype, seen = {}, set()
        for j, p in enumerate(params):
            _check_param(p, f"parameter {j} of group {index}")
            if id(p) in seen:  # one fused call would update it twice
                raise ValueError(f"parameter {j} of group {index} appears twice in the group: fastdl.torch needs "
                                 f"each parameter once")
            seen.add(id(p))
            by_dtype.setdefault(p.dtype, []).append(j)
        bindings = [_Binding(self, [params[j] for j in js], js, names) for js in by_dtype.values()]
        self._bindings[index] = (tuple(params), bindings)
        return bindings

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss if given.
        All gradients are checked first: a sparse gradient raises before anything changes."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for index, group in enumerate(self.param_groups):
            for b in self._bindings_for(index, group):
                active, grads = b.gradients(index, type(self).__name__)
                if active:
                    work.append((group, b, active, grads, list(map(torch.Tensor.data_ptr, grads))))
        ext = _kernels(work)
        grad_scale = 1.0
        if self.max_grad_norm is not None:
            total = sum(ext._grad_sum_squares_raw(b.dtype, ptrs, b.pick(b.sizes, active))
                        for _, b, active, _, ptrs in work)
            self.last_grad_norm = math.sqrt(total)
            grad_scale = clip_coefficient(self.last_grad_norm, self.max_grad_norm)
        for group, b, active, grads, ptrs in work:
            lr = group["lr"]
            lr = float(lr(self.iterations)) if isinstance(lr, schedules.Schedule) else float(lr)
            if active is b.all_indices:
                first = ~b.exposed
                b.steps += 1
                steps = b.steps.astype(np.int64)
            else:
                idx = np.asarray(active)
                first = ~b.exposed[idx]
                b.steps[idx] += 1
                steps = b.steps[idx].astype(np.int64)
            self._run(ext, group, b, active, ptrs, steps, first, lr, grad_scale)
            if first.any():
                for i in np.asarray(active)[first]:
                    b._expose(self, int(i))
                b._watch(self)
        self.iterations += 1
        return loss


class SGD(_FusedOptimizer):
    """torch.optim.SGD's update (momentum, dampening, nesterov, weight_decay, maximize), fused:
        g <- -g (maximize);  g <- g + weight_decay p
        b <- g at a parameter's first step, else momentum b + (1 - dampening) g
        g <- g + momentum b (nesterov) or b;   p <- p - lr g
    """

    _counts_steps = False  # torch's SGD keeps no step count

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None, max_grad_norm=None):
        _refuse(differentiable=differentiable)
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        _real(momentum, "momentum")
        _real(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, max_grad_norm)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)

    def _run(self, ext, group, b, active, ptrs, steps, first, lr, grad_scale):
        momentum = float(group["momentum"])
        bufs = b.pick(b.state_ptrs["momentum_buffer"], active) if momentum != 0 else None
        # the kernel starts a momentum buffer where the step count is 1: a parameter without one yet
        counts = np.where(first, 1, 2).astype(np.int64)
        ext._sgd_step_raw(b.dtype, b.pick(b.ptrs, active), ptrs, bufs, b.pick(b.sizes, active), counts,
                          lr, momentum, float(group["dampening"]), float(group["weight_decay"]),
                          bool(group["nesterov"]), bool(group["maximize"]), grad_scale)


class Adam(_FusedOptimizer):
    """torch.optim.Adam's update (amsgrad, maximize, weight_decay; decoupled_weight_decay for AdamW's
    form), fused:
        g <- -g (maximize);  g <- g + weight_decay p  (or p <- p (1 - lr weight_decay) when decoupled)
        m <- lerp(m, g, 1 - beta1);  v <- beta2 v + (1 - beta2) g^2;  v_hat = max(v_hat, v) (amsgrad)
        p <- p - lr / (1 - beta1^t) m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
    """

    _decoupled_default = False

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=None, max_grad_norm=None):
        _refuse(differentiable=differentiable, capturable=capturable)
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled_default
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        _real(eps, "epsilon value")
        _real(betas[0], "beta parameter at index 0", 0.0, 1.0)
        _real(betas[1], "beta parameter at index 1", 0.0, 1.0)
        _real(weight_decay, "weight_decay value")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, max_grad_norm)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", self._decoupled_default)

    def _run(self, ext, group, b, active, ptrs, steps, first, lr, grad_scale):
        beta1, beta2 = (float(v) for v in group["betas"])
        amsgrad = bool(group["amsgrad"])
        sp = b.state_ptrs
        ext._adam_step_raw(b.dtype, b.pick(b.ptrs, active), ptrs, b.pick(sp["exp_avg"], active),
                           b.pick(sp["exp_avg_sq"], active), b.pick(sp["max_exp_avg_sq"], active) if amsgrad else None,
                           b.pick(b.sizes, active), steps, lr, beta1, beta2, float(group["eps"]),
                           float(group["weight_decay"]), amsgrad, bool(group["decoupled_weight_decay"]),
                           bool(group["maximize"]), grad_scale)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p <- p (1 - lr weight_decay)), weight_decay 1e-2."""

    _decoupled_default = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None,
                 max_grad_norm=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, max_grad_norm=max_grad_norm)


def _refuse(differentiable=False, capturable=False):
    if differentiable:
        raise ValueError("differentiable=True is not supported by fastdl.torch: its step runs outside autograd; "
                         "use torch.optim to differentiate through optimizer steps")
    if capturable:
        raise ValueError("capturable=True (CUDA graph capture) is not supported: fastdl.torch runs on the CPU")

"""The base of fastdl's array optimizers: parameters, per-parameter state and step counts,
checked arguments, learning-rate schedules, global-norm gradient clipping, and state_dict /
load_state_dict."""

import math
import operator

import numpy as np

from .. import _backend
from .._checks import DEVICE_FLOAT_DTYPES, FLOAT_DTYPES, address, array_module, on_device, real, same_place
from . import schedules


_SCALARS = (bool, int, float, str, type(None), np.generic)
MAX_STEPS = 2 ** 62  # step counts below this cannot overflow an int64 in any run (a file is checked against it)


def _immutable(value):
    """Whether a hyperparameter value cannot change in place (a schedule's value is checked at
    every step anyway)."""
    if isinstance(value, tuple):
        return all(isinstance(v, _SCALARS) for v in value)
    return isinstance(value, _SCALARS + (schedules.Schedule,))


def learning_rate(lr):
    """A learning rate argument: a number >= 0 or a schedule (fastdl.optim.schedules)."""
    lr = schedules.from_config(lr)
    if isinstance(lr, schedules.Schedule):
        return lr
    return real(lr, "lr", 0.0)


def max_norm(value):
    return None if value is None else real(value, "max_grad_norm", 0.0, low_open=True)


def clip_coefficient(norm, max_grad_norm):
    """torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); a NaN norm gives NaN
    (an inf norm 0), so that a step with an overflowed gradient is visible, not taken at full size.

    norm may be a float or a 0-d device array (CuPy, or a torch tensor): the factor is then computed
    on the device, without waiting for it (an array's clip keeps NaN, where Python's min drops it)."""
    r = max_grad_norm / (norm + 1e-6)
    if not isinstance(norm, float):
        return r.clip(max=1.0)
    return min(1.0, r) if math.isfinite(norm) else r


class Optimizer:
    """Updates a list of NumPy arrays (or CuPy arrays on one GPU) in place, one multi-tensor
    kernel call per step; state arrays live where the parameters do.

    Subclasses name their per-parameter state arrays (``state_names``), check their
    hyperparameters in ``_hyperparams(**kwargs) -> dict`` and implement ``_update(kernels, idx, grads)``,
    one call of ``kernels`` (the implementation for the parameters' arrays) for the parameters
    ``idx`` (all of one dtype).

    Every optimizer takes ``lr`` as a number or a schedule (fastdl.optim.schedules, evaluated at
    ``iterations``, the number of steps taken) and ``max_grad_norm``: when set, each step scales
    all gradients by min(1, max_grad_norm / (global L2 norm + 1e-6)), as
    torch.nn.utils.clip_grad_norm_, inside the update kernel (the gradients are not rewritten);
    ``last_grad_norm`` is the norm before clipping.
    """

    state_names = ()

    def __init__(self, params, hyperparams):
        self.params = self._check_params(params)
        self.hyperparams = dict(hyperparams)
        self.iterations = 0
        self.last_grad_norm = None
        self._steps = np.zeros(len(self.params), dtype=np.int64)
        self.state = {name: [_zeros_like(p) for p in self.params] for name in self._active_state_names()}
        # Parameters of one dtype are stepped together; usually there is one group.
        dtypes = sorted({p.dtype.str for p in self.params})
        self._groups = [[i for i, p in enumerate(self.params) if p.dtype.str == d] for d in dtypes]

    # -- hyperparameters ---------------------------------------------------------------------
    @property
    def lr(self):
        """The learning rate of the next step (a schedule's value at `iterations`). Assign a
        number or a schedule to change it."""
        lr = self.hyperparams["lr"]
        return float(lr(self.iterations)) if isinstance(lr, schedules.Schedule) else lr

    @lr.setter
    def lr(self, value):
        self.hyperparams["lr"] = learning_rate(value)

    learning_rate = lr  # Keras's name for it

    @property
    def steps(self):
        """Each parameter's step count (a copy)."""
        return self._steps.copy()

    def _active_state_names(self):
        return self._state_names_for(self.hyperparams)

    def _state_names_for(self, hyperparams):
        return self.state_names

    @staticmethod
    def _hyperparams(**kwargs):
        raise NotImplementedError

    # -- stepping ----------------------------------------------------------------------------
    def step(self, grads):
        """Applies one update: grads[i] is the gradient of params[i] (None skips that parameter).

        All or nothing: the gradients, the parameters, the state arrays and the hyperparameters
        (``hyperparams`` and ``state`` are public and may have been changed since) are checked
        before any parameter changes: either every parameter with a gradient is updated and its
        step count advanced, or an exception is raised and no parameter, state array or count
        has changed.
        """
        grads = self._check_grads(grads)
        active = [i for i, g in enumerate(grads) if g is not None]
        if not active:
            return
        for i in active:  # a parameter may have been made read-only (or replaced) since
            self._check_param(self.params[i], i)
        self._h = self._check_state()  # what _update reads
        everything = len(active) == len(grads)
        lr = self._h["lr"]  # a number was checked with the rest; a schedule's value is checked here
        self._lr_now = real(lr(self.iterations), "lr", 0.0) if isinstance(lr, schedules.Schedule) else lr
        # the counts including this step, stored as each dtype group's call returns (no overflow:
        # counts start below MAX_STEPS, and 2**62 steps are never taken)
        steps = self._steps + 1
        self._steps_now = steps
        self._clip_coef = 1.0
        kernels = _backend.kernels_for(self.params[0])
        if self._h.get("max_grad_norm") is not None:
            total = 0.0  # a device scalar on a GPU: the norm and the factor stay there
            for group in self._groups:
                idx = [i for i in group if grads[i] is not None]
                if idx:
                    total = total + kernels.grad_sum_squares([grads[i] for i in idx])
            self.last_grad_norm = math.sqrt(total) if isinstance(total, float) else total ** 0.5
            self._clip_coef = clip_coefficient(self.last_grad_norm, self._h["max_grad_norm"])
        for group in self._groups:
            idx = group if everything else [i for i in group if grads[i] is not None]
            if idx:
                # nothing is expected to fail here: everything the kernels check was checked above.
                # Should a call still fail, the counts stay true to what was updated.
                self._update(kernels, idx, grads)
                self._steps[idx] = steps[idx]
        self.iterations += 1

    def _lists(self, idx, grads):
        """(params, grads, {state name: arrays}, step counts including this step) for the parameters idx."""
        steps = self._steps_now
        if len(idx) == len(self.params):
            return self.params, grads, self.state, steps
        return ([self.params[i] for i in idx], [grads[i] for i in idx],
                {k: [v[i] for i in idx] for k, v in self.state.items()}, steps[idx])

    def _update(self, kernels, idx, grads):
        raise NotImplementedError

    # -- checks ------------------------------------------------------------------------------
    @staticmethod
    def _check_params(params):
        if isinstance(params, np.ndarray) or on_device(params):
            raise TypeError("params must be a list of arrays, not one array: wrap it in a list")
        params = list(params)
        if not params:
            raise ValueError("params is empty: the optimizer has nothing to update")
        for i, p in enumerate(params):
            Optimizer._check_param(p, i)
            if i:
                same_place(p, params[0], f"params[{i}]", "params[0]")
        # two parameters sharing memory would be updated twice (and by two threads at once)
        spans = sorted((address(p), address(p) + p.nbytes, i) for i, p in enumerate(params) if p.nbytes)
        for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError(f"params[{max(i, j)}] shares memory with params[{min(i, j)}]")
        return params

    @staticmethod
    def _check_param(p, i):
        if type(p) is not np.ndarray:
            return Optimizer._check_device_param(p, i)
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(f"params[{i}] must be float32 or float64, got dtype {p.dtype}")
        if not p.flags.c_contiguous:
            raise ValueError(f"params[{i}] must be C-contiguous: it is updated in place")
        if not p.flags.aligned:
            raise ValueError(f"params[{i}] must be aligned to its {p.dtype.itemsize}-byte elements: it is updated "
                             f"in place")
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only")

    @staticmethod
    def _check_device_param(p, i):
        if not on_device(p):
            raise TypeError(f"params[{i}] must be a numpy.ndarray (or a cupy.ndarray), got {type(p).__name__}")
        if p.dtype not in DEVICE_FLOAT_DTYPES:
            raise TypeError(f"params[{i}] must be float16, float32 or float64, got dtype {p.dtype}")
        if not p.flags.c_contiguous:
            raise ValueError(f"params[{i}] must be C-contiguous: it is updated in place")
        if address(p) % p.dtype.itemsize:
            raise ValueError(f"params[{i}] must be aligned to its {p.dtype.itemsize}-byte elements: it is updated "
                             f"in place")

    def _check_state(self):
        """The hyperparameters (checked again: ``hyperparams`` is a public dict) and the state arrays
        as the kernels will need them. The arrays are checked when one of them was replaced since the
        last check (the cache holds them, so that a new array cannot pass for an old one)."""
        raw = self.hyperparams
        seen = getattr(self, "_checked_hyper", None)
        if seen is not None and seen[0] == raw:  # unchanged since the last step: its check holds
            hyper = seen[1]
        else:
            hyper = self._hyperparams(**raw)
            # a value that can change in place (a list, a 0-d array) could change behind the copy:
            # such a dict is checked at every step
            self._checked_hyper = (dict(raw), hyper) if all(map(_immutable, raw.values())) else None
        names = self._state_names_for(hyper)
        lists = [self.state.get(name) for name in names]
        # One C++ call checks every array before it writes any: then only replaced arrays need a look
        # here. Several calls (parameters of two dtypes), or the NumPy kernels (which write tensor by
        # tensor), need every array checked, a read-only flag set since included. (A CuPy array's
        # dtype, size and layout are fixed for its life, and it has no read-only flag.)
        cached = getattr(self, "_checked_state", None)
        if cached is not None and cached[0] == names and len(self._groups) == 1 and \
                _backend.kernels_for(self.params[0]) is not _backend.numpy_kernels and \
                all(len(a) == len(b) and all(map(operator.is_, a, b)) for a, b in zip(lists, cached[1])):
            return hyper
        for name, arrays in zip(names, lists):
            if not isinstance(arrays, list) or len(arrays) != len(self.params):
                raise ValueError(f"state[{name!r}] must be a list of {len(self.params)} arrays, one per parameter "
                                 f"(hyperparams {sorted(self.hyperparams)} need it)")
            for i in range(len(self.params)):
                a, p = arrays[i], self.params[i]
                if type(a) is not type(p):
                    raise TypeError(f"state[{name!r}][{i}] must be a {type(p).__module__.split('.')[0]}.ndarray "
                                    f"like params[{i}], got {type(a).__name__}")
                same_place(a, p, f"state[{name!r}][{i}]", f"params[{i}]")
                if a.dtype != p.dtype or a.shape != p.shape:
                    raise ValueError(f"state[{name!r}][{i}] is {a.dtype}{list(a.shape)} but params[{i}] is "
                                     f"{p.dtype}{list(p.shape)}")
                dense = a.flags.c_contiguous and (address(a) % a.dtype.itemsize == 0 if on_device(a) else
                                                  a.flags.aligned and a.flags.writeable)
                if not dense:
                    raise ValueError(f"state[{name!r}][{i}] must be a writeable C-contiguous array")
                if a.size and array_module(a).may_share_memory(a, p):
                    raise ValueError(f"state[{name!r}][{i}] shares memory with params[{i}]")
        self._checked_state = (names, [list(arrays) for arrays in lists])
        return hyper

    def _check_grads(self, grads):
        if isinstance(grads, np.ndarray) or on_device(grads):
            raise TypeError("grads must be a list of arrays, one per parameter: wrap it in a list")
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads has {len(grads)} arrays but the optimizer has {len(self.params)} params")
        kind = type(self.params[0])  # every parameter's (checked at construction)
        for i, (g, p) in enumerate(zip(grads, self.params)):
            if g is None:
                continue
            if type(g) is not kind:
                if type(g) is np.ndarray or on_device(g):
                    same_place(g, p, f"grads[{i}]", f"params[{i}]")
                raise TypeError(f"grads[{i}] must be a {kind.__module__.split('.')[0]}.ndarray or None, got "
                                f"{type(g).__name__}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has dtype {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has shape {p.shape}")
            if kind is np.ndarray:
                if not (g.flags.c_contiguous and g.flags.aligned):
                    grads[i] = np.array(g, order="C")  # a copy: ascontiguousarray keeps a misaligned array as is
            else:
                same_place(g, p, f"grads[{i}]", f"params[{i}]")
                if not g.flags.c_contiguous or address(g) % g.dtype.itemsize:
                    grads[i] = g.copy(order="C")
        return grads

    # -- state -------------------------------------------------------------------------------
    def state_dict(self):
        """A copy of the optimizer's state: plain dicts, lists, numbers and NumPy arrays (no
        Python objects), so that fastdl's save format stores it without pickle. The state of
        parameters on a GPU is copied to the host (load_state_dict copies it back)."""
        hyper = dict(self.hyperparams)
        hyper["lr"] = schedules.to_config(hyper["lr"])
        return {
            "optimizer": type(self).__name__,
            "hyperparams": hyper,
            "iterations": self.iterations,
            "steps": self._steps.copy(),
            "state": self._state_copy(),
        }

    def _state_copy(self, state=None):
        """The state arrays copied to the host (``state`` or self.state: {name: list of arrays})."""
        state = self.state if state is None else state
        return {k: [a.get() if on_device(a) else a.copy() for a in v] for k, v in state.items()}

    def load_state_dict(self, state_dict):
        """Restores a state_dict of an optimizer of the same kind over parameters of the same
        shapes and dtypes. Checks everything before changing anything."""
        d = state_dict
        for key in ("optimizer", "hyperparams", "steps", "state"):
            if key not in d:
                raise ValueError(f"state_dict has no {key!r} entry")
        if d["optimizer"] != type(self).__name__:
            raise ValueError(f"state_dict is from a {d['optimizer']} optimizer, not {type(self).__name__}")
        steps = np.asarray(d["steps"])
        if (steps.shape != self._steps.shape or steps.dtype.kind not in "iu"
                or (steps.size and (steps.min() < 0 or steps.max() >= MAX_STEPS))):
            raise ValueError(f"state_dict['steps'] must be {len(self.params)} step counts in [0, 2**62)")
        steps = steps.astype(np.int64)
        names = set(self._active_state_names())
        if set(d["state"]) != names:
            raise ValueError(f"state_dict['state'] has {sorted(d['state'])} but this optimizer keeps {sorted(names)}")
        for name in names:
            arrays = d["state"][name]
            if len(arrays) != len(self.params):
                raise ValueError(f"state_dict['state'][{name!r}] has {len(arrays)} arrays for {len(self.params)} params")
            for i, (a, p) in enumerate(zip(arrays, self.params)):
                if type(a) is not np.ndarray and not on_device(a):
                    a = np.asarray(a)
                if a.shape != p.shape or a.dtype != p.dtype:
                    raise ValueError(f"state_dict['state'][{name!r}][{i}] is {a.dtype}{list(a.shape)} but params[{i}] "
                                     f"is {p.dtype}{list(p.shape)}")
        hyper = self._hyperparams(**d["hyperparams"])
        if self._state_names_for(hyper) != self._active_state_names():
            raise ValueError("state_dict's hyperparameters need other state than this optimizer keeps")
        iterations = d.get("iterations", int(steps.max(initial=0)))
        if isinstance(iterations, (bool, np.bool_)) or not isinstance(iterations, (int, np.integer)) or \
                not 0 <= iterations < MAX_STEPS:
            raise ValueError(f"state_dict['iterations'] must be an int in [0, 2**62), got {iterations!r}")
        iterations = int(iterations)
        for name in names:
            for dst, src in zip(self.state[name], d["state"][name]):
                if on_device(dst):
                    with dst.device:  # from the host or another device
                        dst[...] = array_module(dst).asarray(src)
                elif on_device(src):
                    dst[...] = src.get()
                else:
                    np.copyto(dst, src)
        self._steps[...] = steps
        self.iterations = iterations
        self.hyperparams = hyper

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{type(self).__name__}({len(self.params)} params, {args})"


def _zeros_like(p):
    """Zeros shaped as p, on p's device (CuPy allocates on the current device otherwise)."""
    if not on_device(p):
        return np.zeros_like(p)
    with p.device:
        return array_module(p).zeros_like(p)

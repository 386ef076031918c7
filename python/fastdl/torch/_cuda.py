"""fastdl.torch's way to the CUDA module: the _raw calls of the CPU module, for torch CUDA
tensors of one device, launched on torch's current stream of that device.

The squared gradient norm stays on the device (a 0-d float64 tensor) and the clipping factor is
computed there, so that a step with max_grad_norm never waits for the GPU. So do the rest of a
step's inputs that change from step to step: the Adam step counts (``step_ptrs``: the addresses of
device float32 counts) and torch.amp.GradScaler's skip flag (``found_inf``: the address of a device
float32, 0 for none), which is what lets a step be captured in a CUDA graph. The adaptive optimizers' kernels (RMSprop,
Adagrad, Adadelta, Adamax, NAdam) take their step counts and NAdam's mu_products as host arrays.
"""

import torch

DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
          torch.bfloat16: "bfloat16"}


_MODULE = None  # the CUDA module once a GPU was seen (a device count does not drop while a process runs)


def module():
    """The CUDA module, or a RuntimeError saying why there is none to use. Probed once: every step
    and every parameter check call this, and the probe (cuda_status reads the device's name through
    cudaGetDeviceProperties, ~1-2 ms) would cost more than a step."""
    global _MODULE
    if _MODULE is None:
        from .._backend import cuda_status
        status = cuda_status()
        if not status["extension"] or not status["devices"]:
            raise RuntimeError(f"fastdl.torch needs fastdl's CUDA module and a GPU for CUDA tensors: "
                               f"{status['reason']}")
        from .. import _fastdl_cuda
        _MODULE = _fastdl_cuda
    return _MODULE


class Kernels:
    """The CPU module's _raw entry points (same arguments) on one CUDA device."""

    def __init__(self, device):
        self.module = module()
        self.device = device.index if device.index is not None else torch.cuda.current_device()

    def _stream(self):
        return torch.cuda.current_stream(self.device).cuda_stream

    def _grad_sum_squares_raw(self, dtype, grads, sizes):
        out = torch.empty((), dtype=torch.float64, device=f"cuda:{self.device}")
        self.module.grad_sum_squares(dtype, grads, sizes, out.data_ptr(), self.device, self._stream())
        return out

    def _sgd_step_raw(self, dtype, params, grads, bufs, sizes, steps, options, found_inf=0, state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.sgd_step(dtype, params, grads, bufs, sizes, steps, options, clip_ptr, self.device, self._stream(),
                             found_inf, state_dtype)

    def _adam_step_raw(self, dtype, params, grads, m, v, vmax, sizes, steps, options, found_inf=0, step_ptrs=None,
                       state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.adam_step(dtype, params, grads, m, v, vmax, sizes, steps, options, clip_ptr, self.device,
                              self._stream(), step_ptrs, found_inf, state_dtype)

    # the adaptive optimizers (RMSprop, Adagrad, Adadelta, Adamax, NAdam): step counts (and NAdam's
    # mu_products, float64) are host arrays; found_inf is accepted for the contract's sake (their steps
    # read GradScaler's flag on the host and never pass it)

    def _rmsprop_step_raw(self, dtype, params, grads, square_avgs, momentum_buffers, grad_avgs, sizes, steps, options,
                          found_inf=0, state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.rmsprop_step(dtype, params, grads, square_avgs, momentum_buffers, grad_avgs, sizes, steps, options,
                                 clip_ptr, self.device, self._stream(), found_inf, state_dtype)

    def _adagrad_step_raw(self, dtype, params, grads, sums, sizes, steps, options, found_inf=0, state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.adagrad_step(dtype, params, grads, sums, sizes, steps, options, clip_ptr, self.device,
                                 self._stream(), found_inf, state_dtype)

    def _adadelta_step_raw(self, dtype, params, grads, square_avgs, acc_deltas, sizes, steps, options, found_inf=0,
                           state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.adadelta_step(dtype, params, grads, square_avgs, acc_deltas, sizes, steps, options, clip_ptr,
                                  self.device, self._stream(), found_inf, state_dtype)

    def _adamax_step_raw(self, dtype, params, grads, exp_avgs, exp_infs, sizes, steps, options, found_inf=0,
                         state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.adamax_step(dtype, params, grads, exp_avgs, exp_infs, sizes, steps, options, clip_ptr, self.device,
                                self._stream(), found_inf, state_dtype)

    def _nadam_step_raw(self, dtype, params, grads, exp_avgs, exp_avg_sqs, mu_products, sizes, steps, options,
                        found_inf=0, state_dtype=None):
        options, clip_ptr = _clip(options)
        self.module.nadam_step(dtype, params, grads, exp_avgs, exp_avg_sqs, mu_products, sizes, steps, options,
                               clip_ptr, self.device, self._stream(), found_inf, state_dtype)


def _clip(options):
    """(options with a number for clip_coef, the address of a device factor or 0)."""
    coef = options.clip_coef
    if isinstance(coef, torch.Tensor):
        return options._replace(clip_coef=1.0), coef.data_ptr()
    return options, 0


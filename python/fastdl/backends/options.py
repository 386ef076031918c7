"""One options record per optimizer: the hyperparameters of one step as every implementation
receives them (the NumPy fallback, the C++ CPU module, the CUDA module), mirroring
csrc/common/optim_options.h.

``clip_coef`` multiplies every gradient first: the global-norm clipping factor
min(1, max_norm / (norm + 1e-6)), 1.0 when not clipping. On CUDA it may be a 0-d device array
(computed on the device from the norm, so that clipping needs no synchronisation).

The modules read these records by position (csrc/python/options_args.h): the field order is part
of the contract, exported by them as SGD_OPTION_FIELDS / ADAM_OPTION_FIELDS and tested.
"""

from typing import Any, NamedTuple


class SgdOptions(NamedTuple):
    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False
    clip_coef: Any = 1.0


class AdamOptions(NamedTuple):
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    decoupled: bool = False  # AdamW: weight decay applied to the parameter, not the gradient
    maximize: bool = False
    clip_coef: Any = 1.0


# ---- the adaptive optimizers (issue #11). Each kernel call is
#   <name>_step(params, grads, <state lists in the order below>, steps, options)
# with a state list None where the configuration does not use it. The torch.optim rule is the
# default; the keras-named flags select Keras 3's variant of the same step.


class RmspropOptions(NamedTuple):
    """rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, steps, options);
    momentum_buffers used when momentum != 0, grad_avgs when centered.
    eps_inside_sqrt: Keras's sqrt(v [- avg^2] + eps) instead of torch's sqrt(...) + eps;
    lr_in_momentum: Keras's b <- mu b + lr g / d, p <- p - b instead of b <- mu b + g / d, p <- p - lr b."""
    lr: float
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    maximize: bool = False
    eps_inside_sqrt: bool = False
    lr_in_momentum: bool = False
    clip_coef: Any = 1.0


class AdagradOptions(NamedTuple):
    """adagrad_step(params, grads, sums, steps, options); eps_inside_sqrt: Keras's sqrt(sum + eps)."""
    lr: float
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    eps: float = 1e-10
    maximize: bool = False
    eps_inside_sqrt: bool = False
    clip_coef: Any = 1.0


class AdadeltaOptions(NamedTuple):
    """adadelta_step(params, grads, square_avgs, acc_deltas, steps, options)."""
    lr: float
    rho: float = 0.9
    eps: float = 1e-6
    weight_decay: float = 0.0
    maximize: bool = False
    clip_coef: Any = 1.0


class AdamaxOptions(NamedTuple):
    """adamax_step(params, grads, exp_avgs, exp_infs, steps, options); eps_outside_max: Keras's
    u <- max(beta2 u, |g|), p -= lr / bc1 * m / (u + eps) instead of torch's u <- max(beta2 u, |g| + eps)."""
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    maximize: bool = False
    eps_outside_max: bool = False
    clip_coef: Any = 1.0


class NadamOptions(NamedTuple):
    """nadam_step(params, grads, exp_avgs, exp_avg_sqs, mu_products, steps, options); mu_products:
    float64 host array, per tensor the product mu_1 ... mu_t INCLUDING this step's mu_t (the caller
    keeps it, as torch keeps state['mu_product']), mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay)).
    Keras's Nadam is momentum_decay = 1. decoupled: NAdamW's p <- p (1 - lr wd)."""
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum_decay: float = 4e-3
    decoupled: bool = False
    maximize: bool = False
    clip_coef: Any = 1.0


class LionOptions(NamedTuple):
    """lion_step(params, grads, exp_avgs, steps, options): p <- p (1 - lr wd);
    p <- p - lr sign(lerp(m, g, 1 - beta1)); m <- lerp(m, g, 1 - beta2)."""
    lr: float
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.0
    maximize: bool = False
    clip_coef: Any = 1.0

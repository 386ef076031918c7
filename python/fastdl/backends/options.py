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

// One options struct per optimizer: the hyperparameters of one step, as every implementation
// (CPU, CUDA) receives them. Python builds them from fastdl.backends.options (one reader,
// csrc/python/options_args.h, for both modules).
#pragma once

namespace fastdl {

// clip_coef: every gradient is multiplied by it first (1: not at all). It is the factor of
// global-norm gradient clipping, min(1, max_norm / (norm + 1e-6)) (fastdl.optim.optimizer.clip_coefficient),
// applied inside the update so the gradients are not rewritten. (Not named grad_scale: torch
// uses that name for the AMP loss scale, a different factor.)

struct SgdOptions {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
  double clip_coef;
};

struct AdamOptions {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, decoupled, maximize;  // decoupled: AdamW's weight decay
  double clip_coef;
};

}  // namespace fastdl

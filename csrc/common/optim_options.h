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

// ---- the adaptive optimizers (fastdl.backends.options: RmspropOptions ... LionOptions) ---------
// torch.optim's rules by default; the flags select Keras 3's variant of the same step
// (csrc/kernels/adaptive_optimizers.h has the formulas).

struct RmspropOptions {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
  bool eps_inside_sqrt;  // Keras: sqrt(v [- avg^2] + eps) instead of sqrt(...) + eps
  bool lr_in_momentum;   // Keras: b <- mu b + lr g / d, p <- p - b instead of b <- mu b + g / d, p <- p - lr b
  double clip_coef;
};

struct AdagradOptions {
  double lr, lr_decay, weight_decay, eps;
  bool maximize;
  bool eps_inside_sqrt;  // Keras: sqrt(sum + eps)
  double clip_coef;
};

struct AdadeltaOptions {
  double lr, rho, eps, weight_decay;
  bool maximize;
  double clip_coef;
};

struct AdamaxOptions {
  double lr, beta1, beta2, eps, weight_decay;
  bool maximize;
  bool eps_outside_max;  // Keras: u <- max(beta2 u, |g|), m / (u + eps) instead of max(beta2 u, |g| + eps)
  double clip_coef;
};

struct NadamOptions {
  double lr, beta1, beta2, eps, weight_decay, momentum_decay;
  bool decoupled;  // NAdamW: p <- p (1 - lr wd) instead of g <- g + wd p
  bool maximize;
  double clip_coef;
};

struct LionOptions {
  double lr, beta1, beta2, weight_decay;  // weight decay is decoupled: p <- p (1 - lr wd)
  bool maximize;
  double clip_coef;
};

}  // namespace fastdl

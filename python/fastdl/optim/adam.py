"""Adam and AdamW."""

import math

from ..backends.options import AdamOptions
from .._checks import flag, real
from .optimizer import Optimizer, learning_rate, max_norm


def _betas(betas):
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return (real(b1, "betas[0]", 0.0, 1.0, high_open=True), real(b2, "betas[1]", 0.0, 1.0, high_open=True))


class Adam(Optimizer):
    """Adam, torch.optim.Adam's update to the letter (L2 weight decay added to the gradient):

        g <- -g if maximize;  g <- g + weight_decay * p
        m <- beta1 m + (1 - beta1) g          v <- beta2 v + (1 - beta2) g^2
        v_hat <- max(v_hat, v) (amsgrad, else v_hat = v)
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)

    with t each parameter's own step count. ``step(grads)`` updates every parameter in one
    multi-tensor kernel call. lr may be a schedule; max_grad_norm clips the gradients' global
    norm inside the update (see Optimizer). eps_before_correction=True puts eps where Keras does,
    p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v_hat) + eps): the same update with
    eps / sqrt(1 - beta2^t) in torch's place (fastdl.optimizers.Adam, the Keras-style spec, sets it).
    """

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, max_grad_norm=None, eps_before_correction=False):
        super().__init__(params, self._hyperparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                                   amsgrad=amsgrad, maximize=maximize, max_grad_norm=max_grad_norm,
                                                   eps_before_correction=eps_before_correction))

    @staticmethod
    def _hyperparams(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                     max_grad_norm=None, eps_before_correction=False):
        return {"lr": learning_rate(lr), "betas": _betas(betas), "eps": real(eps, "eps", 0.0),
                "weight_decay": real(weight_decay, "weight_decay", 0.0), "amsgrad": flag(amsgrad, "amsgrad"),
                "maximize": flag(maximize, "maximize"), "max_grad_norm": max_norm(max_grad_norm),
                "eps_before_correction": flag(eps_before_correction, "eps_before_correction")}

    def _state_names_for(self, hyperparams):
        return self.state_names if hyperparams["amsgrad"] else self.state_names[:2]

    def _update(self, kernels, idx, all_grads):
        params, grads, state, steps = self._lists(idx, all_grads)
        h = self._h  # the hyperparameters step() checked
        b1, b2 = h["betas"]
        eps = h["eps"]
        if h.get("eps_before_correction") and len(steps):
            if len(steps) > 1 and (steps != steps[0]).any():
                for t in sorted(set(steps.tolist())):  # one call per step count (eps depends on it)
                    self._update(kernels, [i for i, s in zip(idx, steps) if s == t], all_grads)
                return
            eps = eps / math.sqrt(1.0 - b2 ** int(steps[0]))
        options = AdamOptions(self._lr_now, b1, b2, eps, h["weight_decay"], h["amsgrad"], self._decoupled,
                              h["maximize"], self._clip_coef)
        kernels.adam_step(params, grads, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                          steps, options)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, torch.optim.AdamW's update to the letter:

        p <- p (1 - lr * weight_decay), then Adam's update without weight decay in the gradient.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False, *,
                 maximize=False, max_grad_norm=None, eps_before_correction=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, max_grad_norm=max_grad_norm, eps_before_correction=eps_before_correction)

    @staticmethod
    def _hyperparams(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False, maximize=False,
                     max_grad_norm=None, eps_before_correction=False):
        return Adam._hyperparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                 maximize=maximize, max_grad_norm=max_grad_norm,
                                 eps_before_correction=eps_before_correction)

"""Adadelta."""

from ..backends.options import AdadeltaOptions
from .._checks import flag, real
from .optimizer import Optimizer, learning_rate, max_norm


class Adadelta(Optimizer):
    """Adadelta, torch.optim.Adadelta's update to the letter (L2 weight decay):

        g <- -g if maximize;  g <- g + weight_decay * p
        v <- rho v + (1 - rho) g^2
        delta <- sqrt(u + eps) / sqrt(v + eps) * g
        u <- rho u + (1 - rho) delta^2
        p <- p - lr delta

    State: square_avg (v), acc_delta (u). Keras 3's Adadelta is the same step (its defaults:
    lr=1e-3, rho=0.95, eps=1e-7). ``step(grads)`` updates every parameter in one multi-tensor
    kernel call; lr may be a schedule; max_grad_norm clips the gradients' global norm inside the
    update (see Optimizer).
    """

    state_names = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False, max_grad_norm=None):
        super().__init__(params, self._hyperparams(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                                   maximize=maximize, max_grad_norm=max_grad_norm))

    @staticmethod
    def _hyperparams(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False, max_grad_norm=None):
        return {"lr": learning_rate(lr), "rho": real(rho, "rho", 0.0, 1.0, high_open=True),
                "eps": real(eps, "eps", 0.0), "weight_decay": real(weight_decay, "weight_decay", 0.0),
                "maximize": flag(maximize, "maximize"), "max_grad_norm": max_norm(max_grad_norm)}

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        options = AdadeltaOptions(self._lr_now, h["rho"], h["eps"], h["weight_decay"], h["maximize"], self._clip_coef)
        kernels.adadelta_step(params, grads, state["square_avg"], state["acc_delta"], steps, options)

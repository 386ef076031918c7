"""Adamax."""

from ..backends.options import AdamaxOptions
from .._checks import flag, real
from .adam import _betas
from .optimizer import Optimizer, learning_rate, max_norm


class Adamax(Optimizer):
    """Adamax, torch.optim.Adamax's update to the letter (L2 weight decay):

        g <- -g if maximize;  g <- g + weight_decay * p
        m <- beta1 m + (1 - beta1) g              (torch's lerp)
        u <- max(beta2 u, |g| + eps)              (a NaN gradient gives NaN, as torch.maximum)
        p <- p - lr / (1 - beta1^t) * m / u

    with t each parameter's own step count. State: exp_avg (m), exp_inf (u). ``step(grads)``
    updates every parameter in one multi-tensor kernel call; lr may be a schedule; max_grad_norm
    clips the gradients' global norm inside the update (see Optimizer).

    Keras 3's Adamax is the same step with eps_outside_max=True: u <- max(beta2 u, |g|),
    p <- p - lr / (1 - beta1^t) * m / (u + eps) (its defaults: lr=1e-3, eps=1e-7).
    """

    state_names = ("exp_avg", "exp_inf")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False,
                 max_grad_norm=None, eps_outside_max=False):
        super().__init__(params, self._hyperparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                                   maximize=maximize, max_grad_norm=max_grad_norm,
                                                   eps_outside_max=eps_outside_max))

    @staticmethod
    def _hyperparams(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False, max_grad_norm=None,
                     eps_outside_max=False):
        return {"lr": learning_rate(lr), "betas": _betas(betas), "eps": real(eps, "eps", 0.0),
                "weight_decay": real(weight_decay, "weight_decay", 0.0), "maximize": flag(maximize, "maximize"),
                "max_grad_norm": max_norm(max_grad_norm), "eps_outside_max": flag(eps_outside_max, "eps_outside_max")}

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        b1, b2 = h["betas"]
        options = AdamaxOptions(self._lr_now, b1, b2, h["eps"], h["weight_decay"], h["maximize"], h["eps_outside_max"],
                                self._clip_coef)
        kernels.adamax_step(params, grads, state["exp_avg"], state["exp_inf"], steps, options)

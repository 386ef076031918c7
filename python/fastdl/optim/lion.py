"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms")."""

from ..backends.options import LionOptions
from .._checks import flag, real
from .adam import _betas
from .optimizer import Optimizer, learning_rate, max_norm


class Lion(Optimizer):
    """Lion, the paper's update (decoupled weight decay), as Keras 3's Lion:

        g <- -g if maximize;  p <- p (1 - lr * weight_decay)
        c <- beta1 m + (1 - beta1) g              (torch's lerp, as the others)
        p <- p - lr sign(c)
        m <- beta2 m + (1 - beta2) g

    State: exp_avg (m). torch.optim has no Lion; the tests hold it against a float64 reference.
    ``step(grads)`` updates every parameter in one multi-tensor kernel call; lr may be a schedule;
    max_grad_norm clips the gradients' global norm inside the update (see Optimizer).
    """

    state_names = ("exp_avg",)

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False, max_grad_norm=None):
        super().__init__(params, self._hyperparams(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize,
                                                   max_grad_norm=max_grad_norm))

    @staticmethod
    def _hyperparams(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False, max_grad_norm=None):
        return {"lr": learning_rate(lr), "betas": _betas(betas),
                "weight_decay": real(weight_decay, "weight_decay", 0.0), "maximize": flag(maximize, "maximize"),
                "max_grad_norm": max_norm(max_grad_norm)}

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        b1, b2 = h["betas"]
        options = LionOptions(self._lr_now, b1, b2, h["weight_decay"], h["maximize"], self._clip_coef)
        kernels.lion_step(params, grads, state["exp_avg"], steps, options)

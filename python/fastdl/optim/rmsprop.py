"""RMSprop."""

from ..backends.options import RmspropOptions
from .._checks import flag, real
from .optimizer import Optimizer, learning_rate, max_norm


class RMSprop(Optimizer):
    """RMSprop, torch.optim.RMSprop's update to the letter (L2 weight decay added to the gradient):

        g <- -g if maximize;  g <- g + weight_decay * p
        v <- alpha v + (1 - alpha) g^2
        centered:  a <- alpha a + (1 - alpha) g (torch's lerp);  d <- sqrt(v - a^2) + eps
        else:      d <- sqrt(v) + eps
        momentum mu > 0:  b <- mu b + g / d;  p <- p - lr b
        else:             p <- p - lr g / d

    State: square_avg (v), momentum_buffer (b, when momentum != 0), grad_avg (a, when centered).
    ``step(grads)`` updates every parameter in one multi-tensor kernel call; lr may be a schedule;
    max_grad_norm clips the gradients' global norm inside the update (see Optimizer).

    Keras 3's RMSprop is the same step with eps_inside_sqrt=True (d <- sqrt(v [- a^2] + eps)) and
    lr_in_momentum=True (b <- mu b + lr g / d;  p <- p - b), alpha its rho.
    """

    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, max_grad_norm=None, eps_inside_sqrt=False, lr_in_momentum=False):
        super().__init__(params, self._hyperparams(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
            maximize=maximize, max_grad_norm=max_grad_norm, eps_inside_sqrt=eps_inside_sqrt,
            lr_in_momentum=lr_in_momentum))

    @staticmethod
    def _hyperparams(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False,
                     max_grad_norm=None, eps_inside_sqrt=False, lr_in_momentum=False):
        return {"lr": learning_rate(lr), "alpha": real(alpha, "alpha", 0.0, 1.0, high_open=True),
                "eps": real(eps, "eps", 0.0), "weight_decay": real(weight_decay, "weight_decay", 0.0),
                "momentum": real(momentum, "momentum", 0.0), "centered": flag(centered, "centered"),
                "maximize": flag(maximize, "maximize"), "max_grad_norm": max_norm(max_grad_norm),
                "eps_inside_sqrt": flag(eps_inside_sqrt, "eps_inside_sqrt"),
                "lr_in_momentum": flag(lr_in_momentum, "lr_in_momentum")}

    def _state_names_for(self, hyperparams):
        return ("square_avg",) + (("momentum_buffer",) if hyperparams["momentum"] != 0 else ()) + \
            (("grad_avg",) if hyperparams["centered"] else ())

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        options = RmspropOptions(self._lr_now, h["alpha"], h["eps"], h["weight_decay"], h["momentum"], h["centered"],
                                 h["maximize"], h["eps_inside_sqrt"], h["lr_in_momentum"], self._clip_coef)
        kernels.rmsprop_step(params, grads, state["square_avg"], state.get("momentum_buffer"), state.get("grad_avg"),
                             steps, options)

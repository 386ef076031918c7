"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from ..backends.options import SgdOptions
from .._checks import flag, real
from .optimizer import Optimizer, learning_rate, max_norm


class SGD(Optimizer):
    """SGD, torch.optim.SGD's update to the letter, on a list of arrays:

        g <- -g if maximize;  g <- g + weight_decay * p
        with momentum mu:  b <- g on a parameter's first step, else b <- mu b + (1 - dampening) g
                           g <- g + mu b (nesterov) or g <- b
        p <- p - lr * g

    ``step(grads)`` updates every parameter in one multi-tensor kernel call. lr may be a
    schedule; max_grad_norm clips the gradients' global norm inside the update (see Optimizer).
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, *,
                 maximize=False, max_grad_norm=None):
        super().__init__(params, self._hyperparams(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                                   weight_decay=weight_decay, maximize=maximize,
                                                   max_grad_norm=max_grad_norm))

    @staticmethod
    def _hyperparams(lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False,
                     max_grad_norm=None):
        h = {"lr": learning_rate(lr), "momentum": real(momentum, "momentum", 0.0),
             "dampening": real(dampening, "dampening"), "nesterov": flag(nesterov, "nesterov"),
             "weight_decay": real(weight_decay, "weight_decay", 0.0), "maximize": flag(maximize, "maximize"),
             "max_grad_norm": max_norm(max_grad_norm)}
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")
        return h

    def _state_names_for(self, hyperparams):
        return self.state_names if hyperparams["momentum"] != 0 else ()

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        options = SgdOptions(self._lr_now, h["momentum"], h["dampening"], h["weight_decay"], h["nesterov"],
                             h["maximize"], self._clip_coef)
        kernels.sgd_step(params, grads, state.get("momentum_buffer"), steps, options)

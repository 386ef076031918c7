"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from .. import _backend
from .._checks import real
from .optimizer import Optimizer


class SGD(Optimizer):
    """SGD, torch.optim.SGD's update to the letter, on a list of arrays:

        g <- -g if maximize;  g <- g + weight_decay * p
        with momentum mu:  b <- g on a parameter's first step, else b <- mu b + (1 - dampening) g
                           g <- g + mu b (nesterov) or g <- b
        p <- p - lr * g

    ``step(grads)`` updates every parameter in one multi-tensor kernel call.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, self._hyperparams(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                                   weight_decay=weight_decay, maximize=maximize))

    @staticmethod
    def _hyperparams(lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False):
        h = {"lr": real(lr, "lr", 0.0), "momentum": real(momentum, "momentum", 0.0),
             "dampening": real(dampening, "dampening"), "nesterov": bool(nesterov),
             "weight_decay": real(weight_decay, "weight_decay", 0.0), "maximize": bool(maximize)}
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")
        return h

    def _state_names_for(self, hyperparams):
        return self.state_names if hyperparams["momentum"] != 0 else ()

    def _update(self, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self.hyperparams
        _backend.kernels.sgd_step(params, grads, state.get("momentum_buffer"), steps, h["lr"], h["momentum"],
                                  h["dampening"], h["weight_decay"], h["nesterov"], h["maximize"])

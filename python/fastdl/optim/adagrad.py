"""Adagrad."""

from ..backends.options import AdagradOptions
from .._checks import flag, real
from .optimizer import Optimizer, learning_rate, max_norm


class Adagrad(Optimizer):
    """Adagrad, torch.optim.Adagrad's update to the letter (dense gradients; L2 weight decay):

        g <- -g if maximize;  g <- g + weight_decay * p
        clr <- lr / (1 + (t - 1) lr_decay)        (t: the parameter's own step count)
        s <- s + g^2;  p <- p - clr g / (sqrt(s) + eps)

    State: sum (s), starting at initial_accumulator_value. ``step(grads)`` updates every parameter
    in one multi-tensor kernel call; lr may be a schedule; max_grad_norm clips the gradients' global
    norm inside the update (see Optimizer).

    Keras 3's Adagrad is the same step with eps_inside_sqrt=True (p <- p - clr g / sqrt(s + eps)),
    initial_accumulator_value=0.1 and eps=1e-7.
    """

    state_names = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, *,
                 maximize=False, max_grad_norm=None, eps_inside_sqrt=False):
        super().__init__(params, self._hyperparams(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value,
            eps=eps, maximize=maximize, max_grad_norm=max_grad_norm, eps_inside_sqrt=eps_inside_sqrt))
        for s in self.state["sum"]:
            s.fill(self.hyperparams["initial_accumulator_value"])

    @staticmethod
    def _hyperparams(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                     maximize=False, max_grad_norm=None, eps_inside_sqrt=False):
        return {"lr": learning_rate(lr), "lr_decay": real(lr_decay, "lr_decay", 0.0),
                "weight_decay": real(weight_decay, "weight_decay", 0.0),
                "initial_accumulator_value": real(initial_accumulator_value, "initial_accumulator_value", 0.0),
                "eps": real(eps, "eps", 0.0), "maximize": flag(maximize, "maximize"),
                "max_grad_norm": max_norm(max_grad_norm), "eps_inside_sqrt": flag(eps_inside_sqrt, "eps_inside_sqrt")}

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        options = AdagradOptions(self._lr_now, h["lr_decay"], h["weight_decay"], h["eps"], h["maximize"],
                                 h["eps_inside_sqrt"], self._clip_coef)
        kernels.adagrad_step(params, grads, state["sum"], steps, options)

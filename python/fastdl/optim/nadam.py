"""NAdam (and NAdamW: decoupled_weight_decay=True)."""

import numpy as np

from ..backends.options import NadamOptions
from .._checks import flag, real
from .adam import _betas
from .optimizer import Optimizer, learning_rate, max_norm


def _mu_products(values, n, name):
    """values as a float64 array of n products in [0, 1] (1 before the first step), checked (a list of numbers
    or 0-d arrays)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = list(values)
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{name} must be a list of {n} numbers, one per parameter")
    out = np.empty(n, dtype=np.float64)
    for i, v in enumerate(values):
        if np.ndim(v) != 0:
            raise ValueError(f"{name}[{i}] must be a number (a 0-d array), got shape {np.shape(v)}")
        out[i] = real(v, f"{name}[{i}]", 0.0, 1.0)
    return out


class NAdam(Optimizer):
    """NAdam, torch.optim.NAdam's update to the letter:

        g <- -g if maximize
        g <- g + weight_decay * p, or p <- p (1 - lr * weight_decay) when decoupled_weight_decay
        mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay)),  mu_{t+1} likewise
        P <- P mu_t                                (mu_product: mu_1 ... mu_t, float64)
        m <- beta1 m + (1 - beta1) g  (torch's lerp);   v <- beta2 v + (1 - beta2) g^2
        d <- sqrt(v / (1 - beta2^t)) + eps
        p <- p - lr (1 - mu_t) / (1 - P) * g / d - lr mu_{t+1} / (1 - P mu_{t+1}) * m / d

    with t each parameter's own step count. State: exp_avg (m), exp_avg_sq (v), and mu_product (P):
    ``state['mu_product']`` is a list of float64 0-d arrays on the host (wherever the parameters
    are), updated by each step and saved in state_dict. ``step(grads)`` updates every parameter in
    one multi-tensor kernel call; lr may be a schedule; max_grad_norm clips the gradients' global
    norm inside the update (see Optimizer). Keras 3's Nadam is this step with momentum_decay=1
    (its defaults: lr=1e-3, eps=1e-7).
    """

    state_names = ("exp_avg", "exp_avg_sq")  # arrays shaped as the parameters; mu_product besides

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False, max_grad_norm=None):
        super().__init__(params, self._hyperparams(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, max_grad_norm=max_grad_norm))
        self.state["mu_product"] = [np.ones((), dtype=np.float64) for _ in self.params]

    @staticmethod
    def _hyperparams(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                     decoupled_weight_decay=False, maximize=False, max_grad_norm=None):
        return {"lr": learning_rate(lr), "betas": _betas(betas), "eps": real(eps, "eps", 0.0),
                "weight_decay": real(weight_decay, "weight_decay", 0.0),
                "momentum_decay": real(momentum_decay, "momentum_decay", 0.0),
                "decoupled_weight_decay": flag(decoupled_weight_decay, "decoupled_weight_decay"),
                "maximize": flag(maximize, "maximize"), "max_grad_norm": max_norm(max_grad_norm)}

    def _check_state(self):
        hyper = super()._check_state()
        self._mu_before = _mu_products(self.state.get("mu_product"), len(self.params), "state['mu_product']")
        return hyper

    def _update(self, kernels, idx, grads):
        params, grads, state, steps = self._lists(idx, grads)
        h = self._h  # the hyperparameters step() checked
        b1, b2 = h["betas"]
        decay = h["momentum_decay"]
        mu = np.array([b1 * (1.0 - 0.5 * (0.96 ** (float(t) * decay))) for t in steps])
        mu_products = self._mu_before[idx] * mu  # torch's mu_product *= mu, before the update
        options = NadamOptions(self._lr_now, b1, b2, h["eps"], h["weight_decay"], decay, h["decoupled_weight_decay"],
                               h["maximize"], self._clip_coef)
        kernels.nadam_step(params, grads, state["exp_avg"], state["exp_avg_sq"], mu_products, steps, options)
        kept = self.state["mu_product"]  # stored only once the kernel returned
        for j, i in enumerate(idx):
            kept[i] = np.array(mu_products[j])

    def _state_copy(self):
        state = {k: v for k, v in self.state.items() if k != "mu_product"}
        out = Optimizer._state_copy(self, state)
        out["mu_product"] = [np.array(float(v), dtype=np.float64) for v in self.state["mu_product"]]
        return out

    def load_state_dict(self, state_dict):
        """Optimizer.load_state_dict, with state_dict['state']['mu_product'] (checked first: a
        state_dict refused changes nothing)."""
        d, mu = state_dict, None
        if isinstance(d, dict) and d.get("optimizer") == type(self).__name__ and isinstance(d.get("state"), dict):
            state = dict(d["state"])
            if "mu_product" not in state:
                raise ValueError("state_dict['state'] has no 'mu_product' (NAdam keeps each parameter's product "
                                 "of momentum coefficients)")
            mu = _mu_products(state.pop("mu_product"), len(self.params), "state_dict['state']['mu_product']")
            d = dict(d, state=state)
        super().load_state_dict(d)  # refuses another optimizer's state_dict (or no state) before any change
        self.state["mu_product"] = [np.array(m) for m in mu]

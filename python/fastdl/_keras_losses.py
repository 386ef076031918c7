"""Keras 3's other losses (exported by fastdl.losses), with Keras's formulas, names and arguments:

    MeanAbsoluteError ('mae')                mean |p - t|
    MeanAbsolutePercentageError ('mape')     100 mean |t - p| / max(|t|, eps)
    MeanSquaredLogarithmicError ('msle')     mean (log(max(p, eps) + 1) - log(max(t, eps) + 1))^2
    Huber(delta=1.0)                         mean e^2 / 2 inside |e| <= delta, delta (|e| - delta / 2) beyond
    LogCosh ('log_cosh')                     mean log(cosh(p - t))
    KLDivergence ('kl_divergence')           sum t log(t / p), both clipped to [eps, 1]
    Poisson                                  mean p - t log(p + eps)
    Hinge / SquaredHinge                     mean max(1 - t p, 0) (squared); 0/1 targets become -1/1
    CategoricalHinge                         max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0)
    BinaryFocalCrossentropy(apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                            label_smoothing=0.0)
                                             mean (1 - p_t)^gamma bce(t, p) (times alpha / 1 - alpha)
    CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0)
                                             sum_c alpha (1 - q_c)^gamma (-t_c log q_c)
means and sums over the last axis (one value per sample), then the batch's reduction: Keras's
'sum_over_batch_size' (the default), 'sum', 'mean', 'mean_with_sample_weight', or 'none' (one
value per sample; for calling the loss, not for training).

Each is one fused kernel, value and gradient in one pass (the CPU SIMD builds, the CUDA module,
and the NumPy fallback): the elementwise ones through fastdl.ops.elementwise_loss (csrc/kernels/
losses.h: visit_loss_term), CategoricalHinge and CategoricalFocalCrossentropy through
fastdl.ops.row_loss (a row per thread / warp).
"""

import numpy as np

from . import _backend, ops
from ._checks import array_module, flag, real
from ._loss_base import Loss, KerasReduction, _float_targets, _loss_values, _matched, _weighted_rows
from .backends import numpy_kernels

EPSILON = 1e-7
class _Elementwise(KerasReduction, Loss):
    op = None  # numpy_kernels.LOSS_TERMS id
    sums = False  # sum over the last axis (KLDivergence), else the mean

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        self._keras_arguments(reduction, name)

    def _params(self):
        return 0.0, 0.0

    def _targets(self, t):
        return t

    def per_sample(self, y_true, y_pred):
        t, p = _matched(y_true, y_pred)
        terms, _ = numpy_kernels._loss_terms(self.op, p, self._targets(t), *self._params())
        if terms.ndim == 1:
            terms = terms[:, None]
        return terms.sum(axis=-1) if self.sums else terms.mean(axis=-1)

    def prepare_targets(self, y, output_shape):
        y = _float_targets(y, output_shape)
        return self._targets(y), y

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        width = out.shape[-1] if out.ndim > 1 else 1
        loss = _backend.kernels_for(out).loss_term(self.op, out, y, grad, *self._params())
        if sample_weight is not None:
            terms, _ = numpy_kernels._loss_terms(self.op, out, y, *self._params())
            per_sample = terms.reshape(len(out), -1).mean(axis=1, dtype=np.float64)
            loss = _weighted_rows(per_sample, grad, sample_weight)
        if self.sums and width != 1:  # the kernel's mean over every term -> a sum over each row
            grad *= np.float32(width)
            loss = loss * width
        return self._rescale(loss, grad, _loss_values(out), sample_weight)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

class MeanAbsoluteError(_Elementwise):
    name, op = "mean_absolute_error", 0

class MeanAbsolutePercentageError(_Elementwise):
    name, op = "mean_absolute_percentage_error", 1

class MeanSquaredLogarithmicError(_Elementwise):
    name, op = "mean_squared_logarithmic_error", 2

class Huber(_Elementwise):
    name, op = "huber_loss", 3

    def __init__(self, delta=1.0, name=None, reduction="sum_over_batch_size"):
        super().__init__(name, reduction)
        self.delta = real(delta, "delta", 0.0)

    def _params(self):
        return self.delta, 0.0

    def get_config(self):
        return dict(super().get_config(), delta=self.delta)

class LogCosh(_Elementwise):
    name, op = "log_cosh", 4

class Poisson(_Elementwise):
    name, op = "poisson", 5

class Hinge(_Elementwise):
    name, op = "hinge", 6

    def _targets(self, t):
        # Keras: targets that are all 0 or 1 become -1 / 1
        return 2 * t - 1 if array_module(t).all((t == 0) | (t == 1)) else t

class SquaredHinge(Hinge):
    name, op = "squared_hinge", 7

class KLDivergence(_Elementwise):
    name, op, sums = "kl_divergence", 8, True

class BinaryFocalCrossentropy(_Elementwise):
    name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 name=None, reduction="sum_over_batch_size"):
        super().__init__(name, reduction)
        self.apply_class_balancing = flag(apply_class_balancing, "apply_class_balancing")
        self.alpha, self.gamma = real(alpha, "alpha", 0.0), real(gamma, "gamma", 0.0)
        self.from_logits = flag(from_logits, "from_logits")
        self.label_smoothing = real(label_smoothing, "label_smoothing", 0.0, 1.0)

    @property
    def op(self):
        return 10 if self.from_logits else 9

    def _params(self):
        return (self.alpha if self.apply_class_balancing else -1.0), self.gamma

    def _targets(self, t):
        s = self.label_smoothing
        return t * (1 - s) + 0.5 * s if s else t

    def get_config(self):
        return dict(super().get_config(), apply_class_balancing=self.apply_class_balancing, alpha=self.alpha,
                    gamma=self.gamma, from_logits=self.from_logits, label_smoothing=self.label_smoothing)

class _Rows(KerasReduction, Loss):
    """A loss of each row over the last axis: one fused kernel, value and gradient in one pass
    (fastdl.ops.row_loss; csrc/kernels/losses.h, the CPU SIMD builds, the CUDA module, the NumPy
    fallback)."""

    kind = None  # fastdl.ops.row_loss's name

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        self._keras_arguments(reduction, name)

    def _params(self):
        return {}

    def per_sample(self, y_true, y_pred):
        t, p = _matched(y_true, y_pred)
        values = np.empty(p.shape[:-1])
        ops.row_loss(self.kind, p, t, scale=1.0, row_losses=values, **self._params())
        return values

    def prepare_targets(self, y, output_shape):
        y = _float_targets(y, output_shape)
        return y, y

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        n = _loss_values(out)  # rows over the last axis
        per = n // max(len(out), 1)
        w = None if sample_weight is None else array_module(out).repeat(sample_weight, per)
        scale = self._scale(n, sample_weight) / max(n, 1)
        loss, _ = ops.row_loss(self.kind, out, y, out=grad, scale=scale, weights=w, **self._params())
        return float(loss) if array_module(out) is np else loss

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

class CategoricalHinge(_Rows):
    """max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0) per row."""

    name, kind = "categorical_hinge", "categorical_hinge"

class CategoricalFocalCrossentropy(_Rows):
    """q = softmax(x) (from logits) or x / sum(x), clipped to [eps, 1 - eps], targets smoothed
    t (1 - s) + s / C: sum_c alpha (1 - q_c)^gamma (-t_c log q_c) per row."""

    name, kind = "categorical_focal_crossentropy", "categorical_focal"

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, name=None,
                 reduction="sum_over_batch_size"):
        super().__init__(name, reduction)
        self.alpha, self.gamma = real(alpha, "alpha", 0.0), real(gamma, "gamma", 0.0)
        self.from_logits = flag(from_logits, "from_logits")
        self.label_smoothing = real(label_smoothing, "label_smoothing", 0.0, 1.0)

    def _params(self):
        return dict(alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits,
                    label_smoothing=self.label_smoothing)

    def get_config(self):
        return dict(super().get_config(), alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits,
                    label_smoothing=self.label_smoothing)

"""Settings of layers, losses and metrics (typed by users, or read from a model file) are
checked for their type: a bool is not read by truth value (from_logits='False' used to mean
True), a number is not a bool, an int is not a float."""

import numpy as np
import pytest

from fastdl import layers, losses, metrics, optim, optimizers


@pytest.mark.parametrize("make, message", [
    (lambda: losses.CategoricalCrossentropy(from_logits="False"), "from_logits must be True or False"),
    (lambda: losses.BinaryCrossentropy(from_logits=[1]), "from_logits must be True or False"),
    (lambda: losses.SparseCategoricalCrossentropy(from_logits=None), "from_logits must be True or False"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=True), "label_smoothing must be a real number"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing="0.1"), "label_smoothing must be a real number"),
    (lambda: layers.Dropout(" 0.5 "), "rate must be a real number"),
    (lambda: layers.Dense(4, input_shape=(3.9,)), "input_shape must be a tuple of ints"),  # not truncated to 3
    (lambda: layers.Dense(4, input_shape=(True,)), "input_shape must be a tuple of ints"),
    (lambda: layers.Dense(4, input_dim="3"), "input_shape must be a tuple of ints"),
    (lambda: layers.Dense(4, activation={"name": "leaky_relu", "alpha": 10 ** 400}), "alpha must be a finite"),
    (lambda: layers.Dense(3, use_bias="no"), "use_bias must be True or False"),
    (lambda: layers.Dense(3, name=["a"]), "name must be a string"),
    (lambda: layers.Dropout(True), "rate must be a real number"),
    (lambda: metrics.BinaryAccuracy(threshold="x"), "threshold must be a real number"),
    (lambda: metrics.F1Score(average="binary"), "average must be None, 'micro', 'macro' or 'weighted'"),
    (lambda: metrics.FBetaScore(beta=0), "beta must be > 0"),
    (lambda: metrics.Precision(thresholds="x"), "thresholds must be a real number"),
    (lambda: metrics.Recall(thresholds=[0.2, 1.5]), r"thresholds must be in \[0, 1\]"),
    (lambda: metrics.AUC(curve="XY"), "curve must be 'ROC' or 'PR'"),
    (lambda: metrics.AUC(num_labels=3), "num_labels is needed only when multi_label is True"),
    (lambda: metrics.AUC(label_weights=[1.0, -1.0]), "label_weights must be non-negative"),
    (lambda: optimizers.RMSprop(ema_momentum=2.0), "ema_momentum must be a number in"),
    (lambda: optimizers.Lion(weight_decay=-0.1), "weight_decay must be a number >= 0"),
    (lambda: metrics.TopKCategoricalAccuracy(k=2.5), "k must be an int"),
    (lambda: metrics.Accuracy(name=3), "name must be a string"),
])
def test_bad_settings_are_refused_when_made(make, message):
    if message is None:
        make()
        return
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_numpy_bools_and_ints_are_accepted():
    assert losses.BinaryCrossentropy(from_logits=np.bool_(True)).from_logits is True
    assert metrics.TopKCategoricalAccuracy(k=np.int64(3)).k == 3
    assert layers.Dense(2, use_bias=np.False_).use_bias is False


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.Adam(p, amsgrad="x"), "amsgrad must be True or False"),
    (lambda p: optim.AdamW(p, maximize=1.5), "maximize must be True or False"),
    (lambda p: optim.SGD(p, momentum=0.9, nesterov="yes"), "nesterov must be True or False"),
    (lambda p: optim.Adam(p, eps=True), "eps must be a real number"),
    (lambda p: optim.SGD(p, lr="0.1"), "lr must be a real number"),
    (lambda p: optim.Adam(p, betas=("0.9", "0.99")), r"betas\[0\] must be a real number"),
    (lambda p: optimizers.Adam(learning_rate="1e-3"), "lr must be a real number"),
    (lambda p: optimizers.Adam(amsgrad="x"), "amsgrad must be True or False"),
    (lambda p: optimizers.SGD(nesterov=[1]), "nesterov must be True or False"),
])
def test_bad_optimizer_settings_are_refused(make, message):
    with pytest.raises(TypeError, match=message):
        make([np.zeros(3)])


def test_misaligned_arrays_in_an_optimizer_step():
    """A misaligned parameter is named as such; a misaligned gradient is copied, not refused."""
    raw = np.zeros(3 * 8 + 1, np.uint8)
    misaligned = raw[1:].view(np.float64)
    with pytest.raises(ValueError, match=r"params\[0\] must be aligned to its 8-byte elements"):
        optim.SGD([misaligned], lr=0.1)
    p = np.ones(3)
    graw = np.zeros(3 * 8 + 1, np.uint8)
    g = graw[1:].view(np.float64)
    g[...] = 2.0
    optim.SGD([p], lr=0.1).step([g])
    np.testing.assert_allclose(p, 0.8)


def test_fastdl_torch_refuses_a_bool_rate():
    torch = pytest.importorskip("torch")
    import fastdl.torch as fdt
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(TypeError, match="Invalid weight_decay value: True"):
        fdt.SGD([p], lr=0.1, weight_decay=True)

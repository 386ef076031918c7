"""The image and text layers (issue #13) against PyTorch's layers on the same weights, in float64 on
torch's side: Conv1D / Conv2D (kernels transposed from channels_last), pooling, BatchNormalization,
LayerNormalization, Embedding; forward outputs and backward gradients (input and weights), then a
whole small CNN's SGD step. Skipped without torch; the kernels themselves are held to float64
loop references in tests/test_layer_kernels.py."""

import numpy as np
import pytest

import fastdl
from fastdl import layers, models
from layer_harness import alone as _alone, close as _close, run_layer as _run

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _nchw(a):
    return a.permute(0, 3, 1, 2)


def _nhwc(a):
    return a.permute(0, 2, 3, 1)


def _same_padding(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


# ---- convolutions ------------------------------------------------------------------------------

# (H, W, C, F, kernel, strides, padding, dilation, activation)
CONV2D = [
    (5, 7, 3, 4, 3, 1, "valid", 1, None),
    (5, 7, 3, 4, 3, 1, "same", 1, "relu"),
    (8, 9, 2, 3, (3, 2), (2, 1), "same", 1, "tanh"),
    (7, 7, 2, 5, 3, 2, "valid", 1, "sigmoid"),
    (9, 9, 3, 2, 3, 1, "same", 2, None),
    (6, 6, 4, 3, 1, 1, "valid", 1, "relu"),       # pointwise: no im2col
    (1, 1, 3, 2, 1, 1, "same", 1, None),
    (4, 4, 1, 1, 4, 1, "valid", 1, None),          # the window covers the image
]


@pytest.mark.parametrize("case", CONV2D, ids=lambda c: "-".join(map(str, c)))
def test_conv2d_matches_torch(case):
    h, w, c, f, kernel, strides, padding, dilation, act = case
    rng = np.random.default_rng(0)
    layer = layers.Conv2D(f, kernel, strides=strides, padding=padding, dilation_rate=dilation, activation=act)
    _alone(layer, (h, w, c))
    kernel_w, bias = (rng.standard_normal(a.shape).astype(np.float32) * 0.5 for a in layer.weights)
    layer.set_weights([kernel_w, bias])
    x = rng.standard_normal((3, h, w, c)).astype(np.float32)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    xt = _t(x, True)
    kt, bt = _t(kernel_w.transpose(3, 2, 0, 1), True), _t(bias, True)
    pads = (_same_padding(w, kw, sw, dw) + _same_padding(h, kh, sh, dh)) if padding == "same" else (0, 0, 0, 0)
    yt = _nhwc(F.conv2d(F.pad(_nchw(xt), pads), kt, bt, stride=(sh, sw), dilation=(dh, dw)))
    yt = {None: lambda v: v, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act](yt)
    assert layer.output_shape == tuple(yt.shape[1:])
    dy = rng.standard_normal(yt.shape)
    y, dx, (dk, db) = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")
    _close(dk, kt.grad.permute(2, 3, 1, 0), "dkernel")
    _close(db, bt.grad, "dbias")


@pytest.mark.parametrize("padding,strides,dilation", [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2),
                                                      ("causal", 2, 1)])
def test_conv1d_matches_torch(padding, strides, dilation):
    rng = np.random.default_rng(1)
    steps, c, f, k = 11, 3, 4, 3
    layer = layers.Conv1D(f, k, strides=strides, padding=padding, dilation_rate=dilation, use_bias=False)
    _alone(layer, (steps, c))
    kernel_w = rng.standard_normal((k, c, f)).astype(np.float32)
    layer.set_weights([kernel_w])
    x = rng.standard_normal((2, steps, c)).astype(np.float32)
    xt, kt = _t(x, True), _t(kernel_w.transpose(2, 1, 0), True)
    span = dilation * (k - 1)
    pads = {"valid": (0, 0), "same": _same_padding(steps, k, strides, dilation), "causal": (span, 0)}[padding]
    yt = F.conv1d(F.pad(xt.transpose(1, 2), pads), kt, stride=strides, dilation=dilation).transpose(1, 2)
    if padding == "causal":  # Keras: causal padding, then as many outputs as 'same' would give
        yt = yt[:, :-(-steps // strides)]
    dy = rng.standard_normal(yt.shape)
    y, dx, (dk,) = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")
    _close(dk, kt.grad.permute(2, 1, 0), "dkernel")


def test_conv_arguments_are_checked():
    with pytest.raises(ValueError, match="filters"):
        layers.Conv2D(0, 3)
    with pytest.raises(TypeError, match="kernel_size"):
        layers.Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(4, 3, padding="causal")
    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="does not fit"):
        _alone(layers.Conv2D(4, 5), (3, 3, 1))
    with pytest.raises(ValueError, match="Conv2D takes inputs"):
        _alone(layers.Conv2D(4, 3), (9, 9))


# ---- pooling ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding,size", [(2, None, "valid", (6, 6)), (2, None, "valid", (7, 5)),
                                                       (3, 2, "valid", (9, 8)), (2, None, "same", (7, 5)),
                                                       (3, 1, "same", (5, 6))])
def test_pooling2d_matches_torch(kind, pool, strides, padding, size):
    rng = np.random.default_rng(2)
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding=padding)
    _alone(layer, size + (3,))
    x = rng.standard_normal((2,) + size + (3,)).astype(np.float32)
    xt = _t(x, True)
    s = strides or pool
    pads = (_same_padding(size[1], pool, s, 1) + _same_padding(size[0], pool, s, 1)) if padding == "same" \
        else (0, 0, 0, 0)
    if kind == "max":
        yt = _nhwc(F.max_pool2d(F.pad(_nchw(xt), pads, value=-np.inf), pool, s))
    else:  # Keras's 'same' average leaves the padding out of each window's count
        total = F.avg_pool2d(F.pad(_nchw(xt), pads), pool, s, divisor_override=1)
        count = F.avg_pool2d(F.pad(torch.ones_like(_nchw(xt)), pads), pool, s, divisor_override=1)
        yt = _nhwc(total / count)
    assert layer.output_shape == tuple(yt.shape[1:])
    dy = rng.standard_normal(yt.shape)
    y, dx, _ = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")


@pytest.mark.parametrize("cls,reduce", [(layers.GlobalAveragePooling2D, "mean"), (layers.GlobalMaxPooling2D, "max"),
                                        (layers.GlobalAveragePooling1D, "mean"), (layers.GlobalMaxPooling1D, "max")])
def test_global_pooling_matches_torch(cls, reduce):
    rng = np.random.default_rng(3)
    shape = (5, 4, 3) if "2D" in cls.__name__ else (7, 3)
    layer = cls()
    _alone(layer, shape)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    xt = _t(x, True)
    flat = xt.reshape(2, -1, 3)
    yt = flat.mean(dim=1) if reduce == "mean" else flat.max(dim=1).values
    dy = rng.standard_normal(yt.shape)
    y, dx, _ = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")


def test_global_average_pooling1d_leaves_masked_steps_out():
    """Embedding(mask_zero=True) -> GlobalAveragePooling1D: the mean over the steps whose id is not 0."""
    model = models.Sequential([layers.Input((6,)), layers.Embedding(10, 4, mask_zero=True),
                               layers.GlobalAveragePooling1D()])
    model.build()
    table = model.layers[0].get_weights()[0]
    ids = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    got = model.predict(ids, verbose=0)
    table = table.astype(np.float64)  # float32 rounding only (a mean near 0 cancels: atol too)
    np.testing.assert_allclose(got[0], table[[3, 4, 5]].mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[1], table[[1, 2, 3, 4, 5, 6]].mean(axis=0), rtol=1e-6, atol=1e-7)


# ---- normalization ----------------------------------------------------------------------------------

@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batch_normalization_matches_torch(center, scale):
    rng = np.random.default_rng(4)
    layer = layers.BatchNormalization(momentum=0.9, epsilon=1e-3, center=center, scale=scale)
    _alone(layer, (4, 5, 3))
    weights = [rng.standard_normal(3).astype(np.float32) for _ in range(int(center) + int(scale))]
    moving = [rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)]
    layer.set_weights(weights + moving)
    x = (rng.standard_normal((6, 4, 5, 3)) * 2 + 1).astype(np.float32)
    xt = _t(x, True)
    gamma = _t(weights[0], True) if scale else None
    beta = _t(weights[-1], True) if center else None
    yt = _nhwc(F.batch_norm(_nchw(xt), None, None, gamma, beta, training=True, eps=1e-3))
    dy = rng.standard_normal(yt.shape)
    y, dx, grads = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")
    expected = ([gamma.grad] if scale else []) + ([beta.grad] if center else [])
    for i, want in enumerate(expected):
        _close(grads[i], want, f"weight gradient {i}")
    # the moving statistics: Keras's update, with the batch's biased variance
    flat = x.astype(np.float64).reshape(-1, 3)
    new = layer.get_weights()[-2:]
    _close(new[0], 0.9 * moving[0] + 0.1 * flat.mean(axis=0), "moving_mean")
    _close(new[1], 0.9 * moving[1] + 0.1 * flat.var(axis=0), "moving_variance")
    # inference: the moving statistics
    yi = layer.forward(x, training=False)
    want = (x - new[0]) / np.sqrt(new[1] + 1e-3) * (weights[0] if scale else 1.0) + (weights[-1] if center else 0.0)
    _close(yi, want, "inference output")


def test_batch_normalization_moving_statistics_are_not_trained():
    """The moving mean and variance are weights the optimizer never steps (a decaying AdamW would
    shrink them), counted as non-trainable, and a frozen layer runs in inference mode (Keras 3)."""
    model = models.Sequential([layers.Input((4,)), layers.Dense(3), layers.BatchNormalization()])
    model.compile(fastdl.optimizers.AdamW(0.1, weight_decay=0.5), "mse")
    x, y = np.random.default_rng(5).standard_normal((32, 4)).astype(np.float32), np.zeros((32, 3), np.float32)
    bn = model.layers[1]
    assert [w.shape for w in model.non_trainable_weights] == [(3,), (3,)]
    flat = np.array(model.layers[0].forward(x), dtype=np.float64)  # what the one step normalizes
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    np.testing.assert_allclose(bn.get_weights()[2], 0.01 * flat.mean(axis=0), rtol=1e-4, atol=1e-6)
    bn.trainable = False
    before = bn.get_weights()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape,axis", [((7,), -1), ((4, 6), -1), ((3, 4, 5), [1, 2, 3]), ((5, 6), 1),
                                        ((3, 4, 5), [1, 3])])
def test_layer_normalization_matches_torch(shape, axis):
    rng = np.random.default_rng(6)
    layer = layers.LayerNormalization(axis=axis, epsilon=1e-3)
    _alone(layer, shape)
    gamma_shape = layer.weights[0].shape
    gamma, beta = rng.standard_normal(gamma_shape).astype(np.float32), rng.standard_normal(gamma_shape).astype(
        np.float32)
    layer.set_weights([gamma, beta])
    x = (rng.standard_normal((4,) + shape) * 3).astype(np.float32)
    xt = _t(x, True)
    axes = sorted({a % (len(shape) + 1) for a in (axis if isinstance(axis, list) else [axis])})
    kept = [a for a in range(len(shape) + 1) if a not in axes]
    perm = kept + axes
    moved = xt.permute(perm)
    gt, bt = _t(gamma, True), _t(beta, True)
    yt = F.layer_norm(moved, gamma_shape, gt, bt, eps=1e-3).permute(list(np.argsort(perm)))
    dy = rng.standard_normal(yt.shape)
    y, dx, (dg, db) = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")
    _close(dg, gt.grad, "dgamma")
    _close(db, bt.grad, "dbeta")


# ---- Embedding ---------------------------------------------------------------------------------------------

def test_embedding_matches_torch():
    rng = np.random.default_rng(7)
    layer = layers.Embedding(20, 6)
    _alone(layer, (9,))
    table = rng.standard_normal((20, 6)).astype(np.float32)
    layer.set_weights([table])
    ids = rng.integers(0, 20, (5, 9))
    tt = _t(table, True)
    yt = F.embedding(torch.tensor(ids), tt)
    dy = rng.standard_normal(yt.shape)
    y = layer.forward(ids.astype(np.float32), True)
    _close(np.array(y), yt, "output")
    layer.backward(dy.astype(np.float32), False)
    yt.backward(_t(dy))
    _close(np.array(layer.gradients[0]), tt.grad, "dtable")
    with pytest.raises(IndexError, match="input_dim"):
        layer.forward(np.array([[20.0] * 9], np.float32))


@pytest.mark.parametrize("mask_zero", [False, True])
def test_embedding_bag_step_matches_torch_and_the_unfused_layers(mask_zero):
    """Embedding -> GlobalAveragePooling1D -> Dense runs as one fused step (the model's _run_layers);
    three SGD steps match torch (the mean over the steps whose id is not 0 when mask_zero) and the
    same layers run one by one (a zero activity regularizer on the Embedding keeps them apart)."""
    from fastdl import optimizers, regularizers
    from fastdl._fusion import FusedEmbeddingMean
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 12, (9, 7))
    ids[0] = 0  # every step padding
    ids[1, 3:] = 0
    labels = rng.integers(0, 3, 9)
    table, kernel, bias = (rng.standard_normal(s).astype(np.float32) for s in ((12, 5), (5, 3), (3,)))

    def model(fused):
        embed = layers.Embedding(12, 5, mask_zero=mask_zero,
                                 activity_regularizer=None if fused else regularizers.L2(0.0))
        m = models.Sequential([layers.Input((7,)), embed, layers.GlobalAveragePooling1D(),
                               layers.Dense(3, activation="softmax")])
        m.compile(optimizer=optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        m.set_weights([table, kernel, bias])
        assert any(isinstance(step, FusedEmbeddingMean) for step in m._run_layers) is fused
        m.fit(ids.astype(np.float32), labels, batch_size=9, epochs=3, shuffle=False, verbose=0)
        return m.get_weights()

    tt, kt, bt = _t(table, True), _t(kernel, True), _t(bias, True)
    opt = torch.optim.SGD([tt, kt, bt], lr=0.5)
    it = torch.tensor(ids)
    keep = (it != 0).double() if mask_zero else torch.ones(it.shape, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        mean = (F.embedding(it, tt) * keep[..., None]).sum(1) / keep.sum(1).clamp(min=1)[:, None]
        F.cross_entropy(mean @ kt + bt, torch.tensor(labels)).backward()
        opt.step()
    fused, unfused = model(True), model(False)
    for got, other, want, what in zip(fused, unfused, (tt, kt, bt), ("table", "kernel", "bias")):
        _close(got, want, what)
        np.testing.assert_allclose(got, other, rtol=1e-5, atol=1e-6, err_msg=what)


def _text_model(**embedding_args):
    model = models.Sequential([layers.Input((7,)), layers.Embedding(12, 5, **embedding_args),
                               layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_the_fused_embedding_mean_follows_attributes_set_after_build():
    """The run is planned again as each fit / evaluate / predict starts: an activity regularizer or
    mask_zero set on the Embedding after build count as if given to its constructor."""
    from fastdl import regularizers
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 12, (6, 7)).astype(np.float32)
    ids[:, 4:] = 0
    labels = rng.integers(0, 3, 6)
    for name, value in (("activity_regularizer", regularizers.L2(10.0)), ("mask_zero", True)):
        given, later = _text_model(**{name: value}), _text_model()
        later.set_weights(given.get_weights())
        setattr(later.layers[0], name, value)
        np.testing.assert_allclose(later.evaluate(ids, labels, verbose=0), given.evaluate(ids, labels, verbose=0),
                                   rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(later.predict(ids, verbose=0), given.predict(ids, verbose=0), rtol=1e-6,
                                   err_msg=name)


def test_a_text_model_copied_or_unpickled_runs_the_same():
    """copy.deepcopy, pickle, and a pickle from before the fused step existed (no _run_layers in
    its state): each predicts as the original does."""
    import copy
    import pickle
    ids = np.random.default_rng(10).integers(0, 12, (4, 7)).astype(np.float32)
    model = _text_model(mask_zero=True)
    want = model.predict(ids, verbose=0)
    old = copy.deepcopy(model)
    state = old.__getstate__()
    del state["_run_layers"], state["_masking"]
    old.__dict__.clear()
    old.__setstate__(state)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)), old):
        np.testing.assert_array_equal(other.predict(ids, verbose=0), want)
    with pytest.raises(IndexError, match=r"embedding.*: embedding ids must be in \[0, 12\), got 12..12 \(input_dim\)"):
        model.predict(np.full((2, 7), 12.0, np.float32), verbose=0)


def _conv_norm_model(fold, last="sigmoid", rank=2):
    """Conv -> BatchNormalization -> Activation blocks; fold=False puts a zero activity regularizer on
    the convolutions, which keeps the model from fusing them."""
    from fastdl import regularizers
    conv = layers.Conv2D if rank == 2 else layers.Conv1D
    reg = None if fold else regularizers.L2(0.0)
    shape = (7, 6, 2) if rank == 2 else (9, 2)
    stack = [layers.Input(shape), conv(4, 3, padding="same", activity_regularizer=reg),
             layers.BatchNormalization(momentum=0.5), layers.Activation("relu"),
             conv(3, 1, activity_regularizer=reg), layers.BatchNormalization(center=False),
             layers.Flatten(), layers.Dense(8, activation="tanh"),
             layers.Dense(1, activation="sigmoid")]
    if rank == 1:  # a model ending in the fused run, its Activation giving the loss its logits
        stack = [layers.Input(shape), conv(4, 3, activity_regularizer=reg), layers.BatchNormalization(),
                 layers.Activation("relu"), conv(3, 7, activity_regularizer=reg), layers.BatchNormalization(),
                 layers.Activation(last)]  # output (batch, 1, 3)
    model = models.Sequential(stack)
    model.compile(optimizer="adam", loss="binary_crossentropy" if last == "sigmoid" else "mse")
    return model


@pytest.mark.parametrize("rank,last", [(2, "sigmoid"), (1, "sigmoid"), (1, "gelu")])
def test_conv_norm_activation_fold_at_inference(rank, last):
    """Conv -> BatchNormalization -> Activation runs as one step (FusedConvNorm): in training layer by
    layer (the same bits as unfused), at inference with the moving statistics folded into the
    convolution's kernel and bias and the activation into its epilogue (float32 rounding apart)."""
    from fastdl._fusion import FusedConvNorm
    rng = np.random.default_rng(11)
    x = rng.standard_normal((10,) + ((7, 6, 2) if rank == 2 else (9, 2))).astype(np.float32)
    y = (rng.random((10, 1) if rank == 2 else (10, 1, 3)) > 0.5).astype(np.float32)
    folded, plain = _conv_norm_model(True, last, rank), _conv_norm_model(False, last, rank)
    plain.set_weights(folded.get_weights())
    assert sum(isinstance(step, FusedConvNorm) for step in folded._run_layers) == 2
    assert not any(isinstance(step, FusedConvNorm) for step in plain._run_layers)
    for model in (folded, plain):
        model.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(folded.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)  # training ran the same layers in the same order
    assert np.abs(folded.get_weights()[3]).max() > 0  # the moving statistics moved
    # biases, gammas, betas and moving statistics away from their trivial values (a bias before
    # BatchNormalization barely moves in training; a variance of 1 would hide a missing scale)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if w.ndim == 1 else w
               for w in folded.get_weights()]
    for model in (folded, plain):
        model.set_weights(weights)
    np.testing.assert_allclose(folded.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(folded.evaluate(x, y, verbose=0), plain.evaluate(x, y, verbose=0), rtol=1e-5)


def test_what_the_conv_norm_fold_leaves_alone():
    """A convolution with its own activation, a grouped one, or a BatchNormalization not right after
    it keep their layers; a frozen BatchNormalization still folds (it uses the moving statistics)."""
    from fastdl._fusion import FusedConvNorm

    def fused(*stack):
        model = models.Sequential([layers.Input((6, 6, 4))] + list(stack))
        model.build()
        model._plan_run()
        return [type(step).__name__ for step in model._run_layers]
    assert fused(layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization()) == \
        ["Conv2D", "BatchNormalization"]
    assert fused(layers.Conv2D(4, 3, groups=2), layers.BatchNormalization()) == ["Conv2D", "BatchNormalization"]
    assert fused(layers.Conv2D(4, 3), layers.Activation("relu"), layers.BatchNormalization()) == \
        ["Conv2D", "Activation", "BatchNormalization"]
    assert fused(layers.Conv2D(4, 3), layers.BatchNormalization(), layers.Activation("softmax")) == \
        ["FusedConvNorm", "Activation"]
    frozen = layers.BatchNormalization(trainable=False)
    assert fused(layers.Conv2D(4, 3), frozen) == [FusedConvNorm.__name__]


# ---- a whole CNN ----------------------------------------------------------------------------------------

def test_a_small_cnn_step_matches_torch():
    """conv-BN-relu-pool x2, flatten, dense softmax with sparse cross-entropy: one SGD step from the
    same weights ends with torch's weights (the fused logits path, BatchNorm's batch statistics,
    max pooling and col2im all in the gradient)."""
    rng = np.random.default_rng(8)
    model = models.Sequential([layers.Input((10, 10, 2)), layers.Conv2D(4, 3, padding="same"),
                               layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(),
                               layers.Conv2D(6, 3), layers.BatchNormalization(), layers.Activation("relu"),
                               layers.MaxPooling2D(), layers.Flatten(), layers.Dense(5, activation="softmax")])
    model.compile(fastdl.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x = rng.standard_normal((8, 10, 10, 2)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    start = model.get_weights()
    model.train_on_batch(x, y)
    got = model.get_weights()

    w = [_t(a, True) for a in start]
    h = _nchw(_t(x))
    h = F.conv2d(F.pad(h, (1, 1, 1, 1)), w[0].permute(3, 2, 0, 1), w[1])
    h = F.max_pool2d(torch.relu(F.batch_norm(h, None, None, w[2], w[3], training=True, eps=1e-3)), 2)
    h = F.conv2d(h, w[6].permute(3, 2, 0, 1), w[7])
    h = F.max_pool2d(torch.relu(F.batch_norm(h, None, None, w[8], w[9], training=True, eps=1e-3)), 2)
    logits = _nhwc(h).reshape(8, -1) @ w[12] + w[13]
    F.cross_entropy(logits, torch.tensor(y)).backward()
    for i, (a, t) in enumerate(zip(got, w)):
        if t.grad is None:  # the moving statistics: not stepped
            continue
        _close(a, t.detach() - 0.1 * t.grad, f"weight {i} after the step", rtol=1e-4, atol=1e-5)


# ---- configs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Conv2D(3, (3, 2), strides=2, padding="same", activation="relu"), (8, 8, 2)),
    (lambda: layers.Conv1D(3, 2, padding="causal", dilation_rate=2), (9, 2)),
    (lambda: layers.MaxPooling2D(3, strides=1, padding="same"), (5, 5, 2)),
    (lambda: layers.AveragePooling1D(2), (6, 2)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (4, 4, 2)),
    (lambda: layers.BatchNormalization(momentum=0.5, center=False), (4, 4, 2)),
    (lambda: layers.LayerNormalization(axis=[1, 2]), (4, 3)),
    (lambda: layers.Embedding(30, 4, mask_zero=True), (5,)),
    (lambda: layers.ZeroPadding2D(((1, 2), (0, 1))), (4, 4, 2)),
    (lambda: layers.Cropping2D(1), (4, 4, 2)),
    (lambda: layers.UpSampling2D((2, 3)), (3, 3, 2)),
    (lambda: layers.SpatialDropout2D(0.3), (4, 4, 2)),
    (lambda: layers.SpatialDropout1D(0.3), (4, 2)),
])
def test_layers_save_and_load(make, shape, tmp_path):
    """A model of the layer saves and loads (config and weights) and predicts the same."""
    fastdl.set_seed(0)
    model = models.Sequential([layers.Input(shape), make()])
    model.build()
    rng = np.random.default_rng(9)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) ** 2 for w in model.get_weights()])
    x = rng.integers(0, 30, (3,) + shape).astype(np.float32) if "Embedding" in type(model.layers[0]).__name__ \
        else rng.standard_normal((3,) + shape).astype(np.float32)
    path = tmp_path / "m.fastdl"
    model.save(path)
    loaded = fastdl.models.load_model(path)
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

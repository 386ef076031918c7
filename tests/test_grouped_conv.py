"""Grouped convolutions (Conv1D / Conv2D groups=G) and DepthwiseConv1D / DepthwiseConv2D: against
PyTorch's conv with groups on the same weights (float64 on torch's side), forward and gradients,
whole models' SGD steps, argument checks, configs, Keras 3's .keras files both ways and ONNX."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import layers, models
from layer_harness import alone as _alone, close as _close, run_layer as _run


def _torch():
    return pytest.importorskip("torch")


def _t(a, grad=False):
    return _torch().tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _pads(size, k, s, d, padding):
    """(before, after) padding of one axis: Keras's (TensorFlow's) 'same' split, or causal."""
    span = d * (k - 1) + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    total = max((-(-size // s) - 1) * s + span - size, 0)
    return total // 2, total - total // 2


_ACT = {None: lambda v: v, "relu": lambda v: v.relu(), "tanh": lambda v: v.tanh(), "sigmoid": lambda v: v.sigmoid()}


def _torch_conv(x, kernel, bias, layer):
    """The layer's output by torch: x channels_last (float64 tensor), kernel the grouped
    (kh, kw, C / G, F) or (k, C / G, F) tensor, groups = layer.groups."""
    F = _torch().nn.functional
    rank = layer.rank
    if rank == 1:
        (k,), (s,), (d,) = layer.kernel_size, layer.strides, layer.dilation_rate
        h = F.pad(x.transpose(1, 2), _pads(x.shape[1], k, s, d, layer.padding))
        y = F.conv1d(h, kernel.permute(2, 1, 0), bias, stride=s, dilation=d, groups=layer.groups).transpose(1, 2)
        if layer.padding == "causal":  # as many outputs as 'same' would give
            y = y[:, :-(-x.shape[1] // s)]
    else:
        (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
        pads = _pads(x.shape[2], kw, sw, dw, layer.padding) + _pads(x.shape[1], kh, sh, dh, layer.padding)
        y = F.conv2d(F.pad(x.permute(0, 3, 1, 2), pads), kernel.permute(3, 2, 0, 1), bias, stride=(sh, sw),
                     dilation=(dh, dw), groups=layer.groups).permute(0, 2, 3, 1)
    return _ACT[layer.activation.name if layer.activation.name != "linear" else None](y)


def _check_against_torch(layer, shape, seed, grouped_kernel=lambda k: k):
    """Forward, dx, dkernel (in the layer's own kernel shape) and dbias against torch.
    grouped_kernel: the layer's kernel as the grouped conv's (kh, kw, C / G, F) tensor."""
    rng = np.random.default_rng(seed)
    _alone(layer, shape)
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in layer.weights])
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    xt, kt = _t(x, True), _t(layer.get_weights()[0], True)
    bt = _t(layer.get_weights()[1], True) if layer.use_bias else None
    yt = _torch_conv(xt, grouped_kernel(kt), bt, layer)
    assert layer.output_shape == tuple(yt.shape[1:])
    dy = rng.standard_normal(yt.shape)
    y, dx, grads = _run(layer, x, dy)
    _close(y, yt, "output")
    yt.backward(_t(dy))
    _close(dx, xt.grad, "dx")
    _close(grads[0], kt.grad, "dkernel")
    if layer.use_bias:
        _close(grads[1], bt.grad, "dbias")


# ---- layers against torch ------------------------------------------------------------------------

# (H, W, C, F, groups, kernel, strides, padding, dilation, activation)
GROUPED2D = [
    (5, 7, 4, 6, 2, 3, 1, "valid", 1, None),
    (6, 6, 8, 8, 4, 3, 1, "same", 1, "relu"),
    (8, 9, 4, 4, 4, (3, 2), (2, 1), "same", 1, "tanh"),
    (9, 9, 6, 4, 2, 3, 1, "same", 2, "sigmoid"),
    (4, 5, 8, 12, 4, 1, 1, "valid", 1, None),       # pointwise: no im2col
]


@pytest.mark.parametrize("case", GROUPED2D, ids=lambda c: "-".join(map(str, c)))
def test_grouped_conv2d_matches_torch(case):
    h, w, c, f, groups, kernel, strides, padding, dilation, act = case
    layer = layers.Conv2D(f, kernel, strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
                          activation=act)
    _check_against_torch(layer, (h, w, c), 0)
    assert layer.weights[0].shape == layer.kernel_size + (c // groups, f)  # Keras's kernel shape


@pytest.mark.parametrize("c,dm,kernel,strides,padding,dilation", [
    (3, 1, 3, 1, "valid", 1), (3, 2, 3, 2, "same", 1), (3, 2, (2, 3), 1, "same", 2), (3, 3, 1, 1, "valid", 1),
    (1, 2, 3, 1, "same", 1)])  # one channel: one group, the plain convolution's path
def test_depthwise_conv2d_matches_torch(c, dm, kernel, strides, padding, dilation):
    """Keras's kernel (kh, kw, C, dm) is the grouped conv's (kh, kw, 1, C dm): output c dm + m."""
    layer = layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=dm,
                                   dilation_rate=dilation, activation="relu")
    _check_against_torch(layer, (7, 8, c), 1, lambda k: k.reshape(k.shape[:2] + (1, c * dm)))
    assert layer.weights[0].shape == layer.kernel_size + (c, dm) and layer.output_shape[-1] == c * dm


def test_grouped_conv1d_and_depthwise_conv1d_match_torch():
    _check_against_torch(layers.Conv1D(4, 3, padding="causal", dilation_rate=2, groups=2, use_bias=False),
                         (11, 6), 2)
    _check_against_torch(layers.Conv1D(6, 2, strides=2, padding="same", groups=3, activation="tanh"), (9, 3), 3)
    _check_against_torch(layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2), (10, 4), 4,
                         lambda k: k.reshape(3, 1, 8))


# ---- whole models --------------------------------------------------------------------------------

def _step_matches_torch(model, x, labels, loss_of_output):
    """One SGD(0.1) step of the compiled model on (x, labels) ends at torch's weights;
    loss_of_output(w, x) computes torch's loss from the starting weights w (float64 tensors)."""
    start = model.get_weights()
    model.train_on_batch(x, labels)
    w = [_t(a, True) for a in start]
    loss_of_output(w, _t(x)).backward()
    for i, (a, t) in enumerate(zip(model.get_weights(), w)):
        _close(a, t.detach() - 0.1 * t.grad, f"weight {i} after the step", rtol=1e-4, atol=1e-5)


def test_a_cnn_with_grouped_and_depthwise_convs_steps_as_torch():
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    model = models.Sequential([layers.Input((8, 8, 4)), layers.Conv2D(8, 3, padding="same", groups=2,
                                                                       activation="relu"),
                               layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="tanh"),
                               layers.Conv2D(6, 1, groups=2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(fastdl.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x = rng.standard_normal((6, 8, 8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)

    def loss(w, xt):
        h = F.conv2d(F.pad(xt.permute(0, 3, 1, 2), (1, 1, 1, 1)), w[0].permute(3, 2, 0, 1), w[1], groups=2).relu()
        h = F.conv2d(h, w[2].reshape(3, 3, 1, 16).permute(3, 2, 0, 1), w[3], stride=2, groups=8).tanh()
        h = F.conv2d(h, w[4].permute(3, 2, 0, 1), w[5], groups=2)
        logits = h.permute(0, 2, 3, 1).reshape(6, -1) @ w[6] + w[7]
        return F.cross_entropy(logits, torch.tensor(y))
    _step_matches_torch(model, x, y, loss)


def test_a_grouped_conv_ending_the_model_takes_the_fused_logits_path():
    """softmax + cross-entropy over each step's channels, the loss taking the conv's logits."""
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    model = models.Sequential([layers.Input((7, 4)), layers.DepthwiseConv1D(3, padding="same", depth_multiplier=2),
                               layers.Conv1D(4, 3, padding="causal", groups=2, activation="softmax")])
    model.compile(fastdl.optimizers.SGD(0.1), "categorical_crossentropy")
    assert model._fused
    x = rng.standard_normal((5, 7, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (5, 7))

    def loss(w, xt):
        h = F.conv1d(F.pad(xt.transpose(1, 2), (1, 1)), w[0].reshape(3, 1, 8).permute(2, 1, 0), w[1], groups=4)
        logits = F.conv1d(F.pad(h, (2, 0)), w[2].permute(2, 1, 0), w[3], groups=2).transpose(1, 2)
        return F.cross_entropy(logits.reshape(-1, 4), torch.tensor(labels.reshape(-1)))
    _step_matches_torch(model, x, np.eye(4, dtype=np.float32)[labels], loss)


def test_a_frozen_grouped_conv_is_left_alone_and_passes_gradients_on():
    rng = np.random.default_rng(7)
    model = models.Sequential([layers.Input((6, 6, 4)), layers.Conv2D(4, 3, groups=2),
                               layers.DepthwiseConv2D(3, trainable=False), layers.Flatten(), layers.Dense(2)])
    model.compile(fastdl.optimizers.SGD(0.1), "mse")
    before = model.get_weights()
    model.train_on_batch(rng.standard_normal((4, 6, 6, 4)).astype(np.float32), rng.standard_normal((4, 2)))
    after = model.get_weights()
    assert not np.array_equal(before[0], after[0])   # the grouped conv before it learnt
    for i in (2, 3):                                   # the frozen depthwise one did not
        np.testing.assert_array_equal(before[i], after[i])


# ---- arguments and configs -----------------------------------------------------------------------

def test_bad_groups_and_depth_multipliers_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="groups"):
        layers.Conv2D(6, 3, groups=4)                  # filters not divisible
    with pytest.raises(ValueError, match="groups"):
        layers.Conv1D(4, 3, groups=0)
    with pytest.raises(ValueError, match="groups"):
        layers.Conv2D(4, 3, groups=True)
    with pytest.raises(ValueError, match="groups.*6 channels|6 channels.*groups"):
        _alone(layers.Conv2D(8, 3, groups=4), (5, 5, 6))
    with pytest.raises(ValueError, match="depth_multiplier"):
        layers.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="padding"):
        layers.DepthwiseConv1D(3, padding="causal")   # Keras's depthwise layers have no causal padding


KERAS_DEPTHWISE_KEYS = {"name", "depth_multiplier", "kernel_size", "strides", "padding", "data_format",
                        "dilation_rate", "activation", "use_bias", "depthwise_initializer", "bias_initializer",
                        "depthwise_regularizer", "bias_regularizer", "activity_regularizer", "depthwise_constraint",
                        "bias_constraint", "trainable"}


@pytest.mark.parametrize("make,shape", [
    (lambda: layers.Conv2D(6, (3, 2), strides=2, padding="same", groups=3, activation="relu"), (8, 8, 3)),
    (lambda: layers.Conv1D(4, 2, padding="causal", groups=2), (9, 4)),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", depthwise_regularizer="l2",
                                    depthwise_constraint="non_neg", depthwise_initializer="he_uniform"), (5, 5, 3)),
    (lambda: layers.DepthwiseConv1D(2, strides=2, use_bias=False, trainable=False), (7, 2)),
])
def test_configs_round_trip_and_models_save_and_load(make, shape, tmp_path):
    layer = make()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    if "Depthwise" in type(layer).__name__:
        assert set(config) <= KERAS_DEPTHWISE_KEYS and "depth_multiplier" in config
    else:
        assert config["groups"] == layer.groups > 1
    model = models.Sequential([layers.Input(shape), layer])
    model.build()
    rng = np.random.default_rng(8)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    model.save(tmp_path / "m.fastdl")
    loaded = models.load_model(tmp_path / "m.fastdl")
    assert loaded.layers[0].get_config() == config
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ---- Keras 3's files, both ways ------------------------------------------------------------------

def _keras_model():
    return models.Sequential([
        layers.Input((8, 8, 4)), layers.Conv2D(8, 3, padding="same", groups=2, activation="relu"),
        layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, use_bias=False),
        layers.Reshape((16, 16)), layers.DepthwiseConv1D(3, activation="tanh"), layers.Conv1D(4, 1, groups=2),
        layers.Flatten(), layers.Dense(3, activation="softmax")])


_KERAS = r'''
import os, sys, numpy as np
os.environ["KERAS_BACKEND"] = "torch"
import keras
source, target, data = sys.argv[1:4]
d = np.load(data)
model = keras.models.load_model(source)
out = {"before": model.predict(d["x"], verbose=0)}
model.save(target)
model.fit(d["x"], d["y"], epochs=1, batch_size=8, verbose=0, shuffle=False)
out["after"] = model.predict(d["x"], verbose=0)
np.savez(target + ".npz", **out)
'''


def test_keras_loads_fastdls_file_and_fastdl_loads_keras_s(tmp_path):
    """fastdl's .keras file in Keras 3 predicts the same and trains the same epoch (SGD); the file
    Keras saves loads back into fastdl, its configs holding Keras's keys."""
    pytest.importorskip("h5py")
    import importlib.util
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras is not installed: the cross-library check needs it")
    fastdl.set_seed(0)
    model = _keras_model()
    model.compile(fastdl.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((16, 8, 8, 4)).astype(np.float32), rng.integers(0, 3, 16)
    model.save(tmp_path / "fastdl.keras")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    r = subprocess.run([sys.executable, "-c", _KERAS, str(tmp_path / "fastdl.keras"), str(tmp_path / "keras.keras"),
                        str(tmp_path / "data.npz")], capture_output=True, text=True,
                       env=dict(os.environ, KERAS_BACKEND="torch"), timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    by_keras = np.load(str(tmp_path / "keras.keras") + ".npz")
    np.testing.assert_allclose(by_keras["before"], model.predict(x, verbose=0), rtol=2e-5, atol=2e-6)
    with zipfile.ZipFile(tmp_path / "keras.keras") as z:
        entries = json.loads(z.read("config.json"))["config"]["layers"]
    back = models.load_model(tmp_path / "keras.keras")
    for entry, layer in zip(entries[1:], back.layers):  # entries[0]: the InputLayer
        assert entry["class_name"] == type(layer).__name__
        assert set(layer.get_config()) <= set(entry["config"]), entry["class_name"]
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    back.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(back.predict(x, verbose=0), by_keras["after"], rtol=1e-4, atol=2e-5)


# ---- ONNX ----------------------------------------------------------------------------------------

def test_onnx_exports_grouped_and_depthwise_convs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    fastdl.set_seed(0)
    model = _keras_model()
    model.build()
    rng = np.random.default_rng(10)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.get_weights()])
    x = rng.standard_normal((4, 8, 8, 4)).astype(np.float32)
    model.export(tmp_path / "model.onnx", format="onnx")
    (out,) = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]).run(None,
                                                                                                        {"input": x})
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)

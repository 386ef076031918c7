"""Keras's small layers (issue #11, part 3): ReLU, LeakyReLU, Softmax, Identity, Reshape, Rescaling,
GaussianNoise: gradients against finite differences, save / load, ONNX, errors. Against Keras
itself: tests/keras_swap/small_layers.py."""

import numpy as np
import pytest

import fastdl as keras
from fastdl import layers, models

from test_models import _model_gradient


def _stack(smooth=False):
    """ReLU and LeakyReLU have kinks that finite differences straddle: the smooth stack has tanh there
    (their values are held against Keras in the swap test)."""
    kink = (lambda layer: layers.Activation("tanh")) if smooth else (lambda layer: layer)
    return [layers.Input((6,)), layers.Rescaling(0.5, offset=0.25), layers.Dense(8, activation="tanh"),
            kink(layers.LeakyReLU(0.2)), layers.Reshape((2, 4)), layers.Identity(), layers.Dense(3, activation="tanh"),
            kink(layers.ReLU(negative_slope=0.05)), layers.Reshape((-1,)), layers.Dense(3), layers.Softmax()]


def test_gradients_through_the_small_layers_match_finite_differences(rng):
    keras.utils.set_random_seed(2)
    model = models.Sequential(_stack(smooth=True))
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model._fused  # the Softmax layer is fused with the loss, as a Dense's softmax is
    x = rng.standard_normal((10, 6)).astype(np.float32)
    analytic, numeric = _model_gradient(model, x, rng.integers(0, 3, 10))
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)


def test_saved_and_loaded_and_exported(tmp_path, rng):
    keras.utils.set_random_seed(3)
    model = models.Sequential(_stack() + [layers.GaussianNoise(0.3, seed=1)])
    model.compile("adam", "mse")
    x = rng.standard_normal((16, 6)).astype(np.float32)
    model.fit(x, rng.random((16, 3)), verbose=0)
    model.save(tmp_path / "m.fastdl")
    back = models.load_model(tmp_path / "m.fastdl")
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    assert back.layers[2].negative_slope == 0.2 and back.layers[3].target_shape == (2, 4)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))  # noise only in training
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model.export(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)


def test_gaussian_noise_trains_with_noise_and_predicts_without(rng):
    layer = layers.GaussianNoise(0.5, seed=0)
    models.Sequential([layers.Input((1000,)), layer])
    x = np.zeros((4, 1000), np.float32)
    noisy = layer.forward(x, training=True)
    assert abs(noisy.std() - 0.5) < 0.02 and np.array_equal(layer.forward(x, training=False), x)


def test_names_and_errors():
    assert [layers.ReLU().name.split("_")[0], layers.LeakyReLU().negative_slope] == ["re", 0.3]
    assert layers.LeakyReLU().name.startswith("leaky_re_lu")  # Keras's default names
    with pytest.raises(NotImplementedError, match="max_value"):
        layers.ReLU(max_value=5)
    with pytest.raises(NotImplementedError, match="last axis"):
        layers.Softmax(axis=1)
    with pytest.raises(ValueError, match="cannot reshape"):
        models.Sequential([layers.Input((6,)), layers.Reshape((4, 2))])
    with pytest.raises(ValueError, match="target_shape"):
        layers.Reshape((2, -1, -1))


@pytest.mark.parametrize("name", ["elu", "selu", "softplus", "softsign", "relu6", "hard_sigmoid", "mish", "exponential",
                                  "log_softmax"])
def test_new_activations_in_dense_export_to_onnx_and_save(tmp_path, rng, name):
    keras.utils.set_random_seed(4)
    model = models.Sequential([layers.Input((5,)), layers.Dense(6, activation=name), layers.ELU(alpha=0.4),
                               layers.ReLU(max_value=6), layers.Dense(2)])
    x = (rng.standard_normal((7, 5)) * 2).astype(np.float32)
    model.save(tmp_path / "m.fastdl")
    back = models.load_model(tmp_path / "m.fastdl")
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.layers[1].alpha == 0.4 and back.layers[2].max_value == 6.0
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model.export(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_adapts_saves_and_exports(tmp_path, rng, invert):
    x = (rng.standard_normal((200, 4)) * [1, 2, 3, 4] + [0, 1, 2, 3]).astype(np.float32)
    norm = layers.Normalization(invert=invert)
    norm.adapt(x)
    model = models.Sequential([layers.Input((4,)), norm, layers.Dense(2)])
    if not invert:
        np.testing.assert_allclose(norm(x).mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(norm(x).std(axis=0), 1, rtol=1e-4)
    model.compile("adam", "mse")
    before = norm.get_weights()
    model.fit(x, x[:, :2], verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, norm.get_weights()))  # statistics do not train
    assert before[2] == 200  # the sample count, as Keras keeps it
    model.save(tmp_path / "m.fastdl")
    back = models.load_model(tmp_path / "m.fastdl")
    np.testing.assert_array_equal(back.predict(x[:5]), model.predict(x[:5]))
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model.export(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x[:5]})[0], model.predict(x[:5]), rtol=1e-5, atol=1e-5)


def test_layer_get_and_set_weights_check_shapes():
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    dense = model.layers[0]
    dense.set_weights([np.ones((3, 2)), np.zeros(2)])
    np.testing.assert_array_equal(model.get_weights()[0], np.ones((3, 2)))
    with pytest.raises(ValueError, match="has shape"):
        dense.set_weights([np.ones((2, 3)), np.zeros(2)])
    with pytest.raises(ValueError, match="got 1 arrays for 2 weights"):
        dense.set_weights([np.ones((3, 2))])

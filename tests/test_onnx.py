"""ONNX export against onnxruntime (skipped without onnx / onnxruntime)."""

import numpy as np
import pytest

import fastdl
from fastdl import layers, models

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("last", ["softmax", "sigmoid", "linear"])
def test_onnx_matches_fastdl(tmp_path, last, rng):
    fastdl.set_seed(0)
    model = models.Sequential([
        layers.Input((4, 4, 1)), layers.Flatten(), layers.Dense(16, "gelu_tanh"), layers.Dropout(0.3),
        layers.Dense(16, "gelu"), layers.Dense(12, "silu"), layers.Activation("tanh"),
        layers.Dense(8, "leaky_relu"), layers.Dense(8, "relu"), layers.Dense(8, "sigmoid"),
        layers.Dense(3, last)])
    x = rng.standard_normal((9, 4, 4, 1)).astype(np.float32)
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-6)
    (one,) = session.run(None, {"input": x[:1]})  # any batch size
    assert one.shape == (1, 3)


def test_export_rejects_other_formats(tmp_path):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="format"):
        model.export(tmp_path / "m.tflite", format="tflite")


def _random_weights(model, rng):
    """Weights away from their initial values (BatchNormalization's moving variance kept positive)."""
    model.set_weights([np.abs(rng.standard_normal(w.shape)).astype(np.float32) + 0.5 if "moving_variance" in name
                       else rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w, name in zip(model.get_weights(), [n for layer in model.layers
                                                              for n, _, _ in layer.weight_specs])])


@pytest.mark.parametrize("stack,shape", [
    (lambda: [layers.Conv2D(4, 3, padding="same", activation="relu"), layers.BatchNormalization(),
              layers.MaxPooling2D(), layers.Conv2D(5, (3, 2), strides=(2, 1), dilation_rate=1, activation="tanh"),
              layers.AveragePooling2D(2, padding="same"), layers.GlobalAveragePooling2D(), layers.Dense(3, "softmax")],
     (11, 10, 2)),
    (lambda: [layers.ZeroPadding2D(((1, 0), (2, 1))), layers.Cropping2D(1), layers.UpSampling2D((2, 1)),
              layers.Conv2D(3, 3, dilation_rate=2, padding="same"), layers.LayerNormalization(axis=[1, 2, 3]),
              layers.SpatialDropout2D(0.5), layers.MaxPooling2D(3, strides=2, padding="same"),
              layers.GlobalMaxPooling2D(keepdims=True), layers.Flatten()], (7, 6, 1)),
    (lambda: [layers.Conv1D(4, 3, padding="causal", activation="relu"), layers.MaxPooling1D(2),
              layers.Conv1D(3, 2, strides=2, padding="same"), layers.LayerNormalization(),
              layers.GlobalAveragePooling1D(), layers.Dense(2)], (13, 3)),
])
def test_onnx_exports_the_image_and_text_layers(tmp_path, stack, shape, rng):
    fastdl.set_seed(0)
    model = models.Sequential([layers.Input(shape)] + stack())
    model.build()
    _random_weights(model, rng)
    x = rng.standard_normal((4,) + shape).astype(np.float32)
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_onnx_exports_an_embedding(tmp_path, rng):
    model = models.Sequential([layers.Input((7,)), layers.Embedding(30, 5), layers.GlobalAveragePooling1D(),
                               layers.Dense(2, "softmax")])
    model.build()
    ids = rng.integers(0, 30, (6, 7)).astype(np.float32)
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": ids})
    np.testing.assert_allclose(out, model.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)
    masked = models.Sequential([layers.Input((7,)), layers.Embedding(30, 5, mask_zero=True),
                                layers.GlobalAveragePooling1D()])
    with pytest.raises(ValueError, match="mask_zero"):
        masked.export(tmp_path / "masked.onnx", format="onnx")

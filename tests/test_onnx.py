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

"""Keras's augmentation layers (RandomFlip, RandomRotation, RandomCrop, RandomTranslation,
RandomZoom): active in fit only, seeded, and, with a fixed factor (lower = upper), the same images
as Keras 3's layers give (every fill mode and both interpolations; Keras in a subprocess, skipped
where it is not installed)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import layers, models
from fastdl.data import augmentation


def _built(layer, shape=(7, 9, 2)):
    models.Sequential([layers.Input(shape), layer]).build()
    return layer


def _images(seed=0, shape=(3, 7, 9, 2)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = {
    "rotate45_constant": ("RandomRotation", [[0.125, 0.125]], {"fill_mode": "constant"}),
    "rotate45_reflect": ("RandomRotation", [[0.125, 0.125]], {}),
    "rotate90": ("RandomRotation", [[0.25, 0.25]], {}),
    "rotate_nearest": ("RandomRotation", [[0.1, 0.1]], {"interpolation": "nearest", "fill_mode": "constant",
                                                         "fill_value": 0.5}),
    "translate_reflect": ("RandomTranslation", [[0.3, 0.3], [-0.2, -0.2]], {}),
    "translate_wrap": ("RandomTranslation", [[0.3, 0.3], [0.2, 0.2]], {"fill_mode": "wrap"}),
    "translate_nearest": ("RandomTranslation", [[-0.3, -0.3], [0.2, 0.2]], {"fill_mode": "nearest"}),
    "zoom_out": ("RandomZoom", [[0.5, 0.5]], {}),
    "zoom_in": ("RandomZoom", [[-0.3, -0.3], [-0.2, -0.2]], {}),
}

_KERAS = '''
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
x = np.load(sys.argv[1])
out = {}
for name, (cls, args, kwargs) in json.loads(sys.argv[2]).items():
    out[name] = np.asarray(getattr(keras.layers, cls)(*args, **kwargs)(x, training=True)).tolist()
print("RESULT " + json.dumps(out))
'''


def test_fixed_transforms_match_keras(tmp_path):
    if importlib.util.find_spec("keras") is None:
        pytest.skip("Keras 3 is not installed: the comparison needs it")
    x = _images()
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", _KERAS, str(tmp_path / "x.npy"), json.dumps(CASES)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, KERAS_BACKEND="torch"))
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = json.loads([line for line in r.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    for name, (cls, args, kwargs) in CASES.items():
        layer = _built(getattr(layers, cls)(*args, **kwargs))
        np.testing.assert_allclose(layer.forward(x, training=True), np.array(theirs[name]), atol=1e-5, err_msg=name)


def test_rotation_by_a_quarter_turn_is_rot90():
    x = _images(shape=(2, 6, 6, 1))
    y = _built(layers.RandomRotation((0.25, 0.25)), (6, 6, 1)).forward(x, training=True)
    np.testing.assert_allclose(y, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)  # counter-clockwise as displayed


def test_fill_modes_fold_indices_as_keras_describes():
    i = np.array([-3, -2, -1, 0, 3, 4, 5, 6])
    assert augmentation._fold(i, 4, "reflect").tolist() == [2, 1, 0, 0, 3, 3, 2, 1]
    assert augmentation._fold(i, 4, "wrap").tolist() == [1, 2, 3, 0, 3, 0, 1, 2]
    assert augmentation._fold(i, 4, "nearest").tolist() == [0, 0, 0, 0, 3, 3, 3, 3]


@pytest.mark.parametrize("make", [lambda: layers.RandomFlip(), lambda: layers.RandomRotation(0.2),
                                  lambda: layers.RandomTranslation(0.2, 0.1), lambda: layers.RandomZoom(0.2),
                                  lambda: layers.RandomCrop(5, 6)])
def test_augmentation_acts_in_fit_only_and_follows_the_seed(make):
    x = _images()
    layer = _built(make())
    inference = layer.forward(x, training=False)
    if isinstance(layer, layers.RandomCrop):  # the centre window
        np.testing.assert_array_equal(inference, x[:, 1:6, 1:7])
    else:
        np.testing.assert_array_equal(inference, x)
    fastdl.set_seed(3)
    a = layer.forward(x, training=True).copy()
    fastdl.set_seed(3)
    b = layer.forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    c = layer.forward(x, training=True)
    assert not np.array_equal(a, c)  # a new draw each batch


def test_a_layer_seed_gives_its_own_stream():
    x = _images()
    one, two = _built(layers.RandomRotation(0.3, seed=7)), _built(layers.RandomRotation(0.3, seed=7))
    np.testing.assert_array_equal(one.forward(x, training=True), two.forward(x, training=True))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="fill_mode"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="above -1"):
        layers.RandomZoom(-1.5)
    with pytest.raises(ValueError, match="does not fit"):
        _built(layers.RandomCrop(8, 8))
    model = models.Sequential([layers.Input((7, 9, 2)), layers.Conv2D(2, 3), layers.RandomRotation(0.1),
                               layers.Flatten(), layers.Dense(2)])
    model.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="before every layer with weights"):
        model.fit(_images(), np.zeros((3, 2), np.float32), verbose=0)


def test_a_cnn_with_augmentation_trains_and_saves(tmp_path):
    fastdl.set_seed(0)
    model = models.Sequential([layers.Input((8, 8, 1)), layers.RandomRotation(0.05), layers.RandomZoom(0.1),
                               layers.RandomTranslation(0.1, 0.1), layers.RandomFlip("horizontal"),
                               layers.RandomCrop(7, 7), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                               layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = _images(shape=(40, 8, 8, 1))
    model.fit(x, (x.mean(axis=(1, 2, 3)) > 0).astype(int), epochs=2, verbose=0)
    model.save(tmp_path / "m.fastdl")
    loaded = fastdl.models.load_model(tmp_path / "m.fastdl")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

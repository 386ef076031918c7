"""Keras 3's names where a program reaches for them (issue #11, part 1): `import fastdl as keras`
then keras.Sequential, keras.Input, keras.optimizers.schedules, keras.utils, keras.regularizers,
keras.constraints, keras.saving ... Values are held against Keras in tests/test_keras_swap.py."""

import importlib

import numpy as np
import pytest

import fastdl as keras

MODULES = ["layers", "models", "optimizers", "losses", "metrics", "callbacks", "activations", "initializers",
           "regularizers", "constraints", "utils", "saving"]


@pytest.mark.parametrize("name", MODULES)
def test_modules_are_there_and_importable_by_path(name):
    assert getattr(keras, name) is importlib.import_module(f"fastdl.{name}")


def test_top_level_names():
    assert keras.Sequential is keras.models.Sequential and keras.Input is keras.layers.Input
    # Keras's functional Model is not something fastdl has: absent rather than a stand-in that fails later
    assert not hasattr(keras, "Model") and not hasattr(keras.models, "Model")
    for name in ["ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay",
                 "CosineDecayRestarts", "LearningRateSchedule"]:
        assert getattr(keras.optimizers.schedules, name) is getattr(importlib.import_module(
            "fastdl.optimizers.schedules"), name)
    for name in ["to_categorical", "normalize", "set_random_seed", "PyDataset", "Sequence"]:
        assert callable(getattr(keras.utils, name))
    assert callable(keras.saving.load_model) and callable(keras.saving.save_model)
    for name in ["L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize", "deserialize", "Regularizer"]:
        assert hasattr(keras.regularizers, name)
    for name in ["MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "max_norm", "non_neg", "unit_norm", "min_max_norm",
                 "Constraint", "get"]:
        assert hasattr(keras.constraints, name)


def test_set_random_seed_makes_runs_repeat():
    keras.utils.set_random_seed(4)
    a = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).get_weights()
    keras.utils.set_random_seed(4)
    b = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("spelled", ["acc", "accuracy", "mse", "mae", "f1_score", "precision"])
def test_metrics_are_logged_as_spelled(spelled):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=[spelled])
    hist = model.fit(np.ones((4, 3)), np.eye(2)[[0, 1, 0, 1]], verbose=0)
    assert set(hist.history) == {"loss", spelled}


def test_regularizer_and_constraint_lookup_and_errors():
    assert isinstance(keras.regularizers.get("l2"), keras.regularizers.L2)
    assert keras.regularizers.get({"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}}).get_config() == \
        {"l1": 0.1, "l2": 0.2}
    assert keras.regularizers.l1_l2().get_config() == {"l1": 0.0, "l2": 0.0}  # Keras 3's defaults
    with pytest.raises(TypeError, match="no autograd"):
        keras.regularizers.get(lambda w: 0.01 * (w ** 2).sum())
    with pytest.raises(ValueError, match="l1 must be a finite number >= 0"):
        keras.regularizers.L1(-1)
    with pytest.raises(ValueError, match="unknown constraint"):
        keras.constraints.get("maxnorm")

    class Own(keras.regularizers.Regularizer):  # a penalty without its gradient: a clear error when training
        def __call__(self, x):
            return 0.0
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_regularizer=Own())])
    model.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="defines no gradient"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)


def test_regularized_layers_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        4, activation="relu", kernel_regularizer=keras.regularizers.l2(0.01), activity_regularizer="l1",
        kernel_constraint=keras.constraints.MaxNorm(2.0, axis=0), bias_constraint="non_neg"),
        keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), verbose=0)
    model.save(tmp_path / "m.fastdl")
    loaded = keras.models.load_model(tmp_path / "m.fastdl")
    dense = loaded.layers[0]
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L2) and dense.kernel_regularizer.l2 == 0.01
    assert isinstance(dense.activity_regularizer, keras.regularizers.L1)
    assert dense.kernel_constraint.get_config() == {"max_value": 2.0, "axis": 0}
    assert isinstance(dense.bias_constraint, keras.constraints.NonNeg)
    np.testing.assert_allclose(loaded.evaluate(np.ones((8, 3)), np.ones((8, 2)), verbose=0),
                               model.evaluate(np.ones((8, 3)), np.ones((8, 2)), verbose=0), rtol=1e-6)


def test_activity_regularizer_on_a_fused_last_layer_is_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax",
                                                                    activity_regularizer="l2")])
    model.compile("sgd", "categorical_crossentropy")
    with pytest.raises(ValueError, match="activity_regularizer on the last layer"):
        model.fit(np.ones((4, 3)), np.eye(2)[[0, 1, 0, 1]], verbose=0)

"""Initializers as Keras has them (issue #11, part 3): names, objects, configs and functions; each
distribution held to its definition on a large weight."""

import numpy as np
import pytest

import fastdl
from fastdl import initializers as init, layers, models

FAN_IN, FAN_OUT = 400, 300


def _draw(initializer, shape=(FAN_IN, FAN_OUT)):
    fastdl.set_seed(0)
    return init.get(initializer)(shape)


@pytest.mark.parametrize("name,limit", [("glorot_uniform", np.sqrt(6 / (FAN_IN + FAN_OUT))),
                                        ("he_uniform", np.sqrt(6 / FAN_IN)), ("lecun_uniform", np.sqrt(3 / FAN_IN))])
def test_uniform_variance_scalings(name, limit):
    w = _draw(name)
    assert w.dtype == np.float32 and np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    np.testing.assert_allclose(w.var(), limit ** 2 / 3, rtol=0.02)


@pytest.mark.parametrize("name,std", [("glorot_normal", np.sqrt(2 / (FAN_IN + FAN_OUT))),
                                      ("he_normal", np.sqrt(2 / FAN_IN)), ("lecun_normal", np.sqrt(1 / FAN_IN))])
def test_truncated_normal_variance_scalings_have_the_intended_std(name, std):
    w = _draw(name)
    np.testing.assert_allclose(w.std(), std, rtol=0.02)  # the truncation is compensated
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978


def test_variance_scaling_modes_and_plain_distributions():
    w = _draw(init.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal"))
    np.testing.assert_allclose(w.std(), np.sqrt(3.0 / FAN_OUT), rtol=0.02)
    assert np.abs(w).max() > 2 * np.sqrt(3.0 / FAN_OUT)  # not truncated
    w = _draw(init.TruncatedNormal(mean=1.0, stddev=0.1))
    assert np.abs(w - 1).max() <= 0.2 and abs(w.mean() - 1) < 0.002
    w = _draw(init.RandomUniform(-0.2, 0.4))
    assert w.min() >= -0.2 and w.max() <= 0.4 and abs(w.mean() - 0.1) < 0.005
    assert np.all(_draw(init.Constant(0.25)) == np.float32(0.25)) and np.all(_draw("ones") == 1)


@pytest.mark.parametrize("shape", [(40, 30), (30, 40), (5, 6, 8)])
def test_orthogonal_and_identity(shape):
    w = _draw(init.Orthogonal(gain=2.0), shape).reshape(-1, shape[-1]).astype(np.float64)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(len(gram)), atol=1e-5)
    np.testing.assert_array_equal(_draw(init.Identity(gain=0.5), (3, 4)), 0.5 * np.eye(3, 4))
    with pytest.raises(ValueError, match="2-D"):
        init.Identity()((2, 2, 2))


def test_seeded_initializers_repeat_and_fastdl_seed_governs_the_rest():
    a = init.HeNormal(seed=3)
    np.testing.assert_array_equal(a((5, 4)), a((5, 4)))  # Keras: a seeded initializer gives the same values
    assert not np.array_equal(init.HeNormal()((5, 4)), init.HeNormal()((5, 4)))
    np.testing.assert_array_equal(_draw("he_normal", (5, 4)), _draw("he_normal", (5, 4)))


def test_names_configs_and_functions(tmp_path):
    assert isinstance(init.get("orthogonal"), init.Orthogonal) and init.get("truncated_normal").stddev == 0.05
    assert init.serialize(init.GlorotUniform()) == "glorot_uniform"
    config = init.serialize(init.VarianceScaling(2.0, "fan_avg", "uniform", seed=4))
    assert config == {"class_name": "VarianceScaling",
                      "config": {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform", "seed": 4}}
    assert init.get(config).get_config() == config["config"]
    with pytest.raises(ValueError, match="unknown initializer"):
        init.get("glorot")
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, kernel_initializer=init.Constant(0.5),
                                                                bias_initializer=lambda shape, dtype=None: np.ones(shape))])
    np.testing.assert_array_equal(model.get_weights()[0], np.full((3, 2), 0.5))
    np.testing.assert_array_equal(model.get_weights()[1], np.ones(2))
    with pytest.raises(ValueError, match="is a function: a model using it cannot be saved"):
        model.save(tmp_path / "m.fastdl")
    model.layers[0].bias_initializer = init.Ones()
    model.save(tmp_path / "m.fastdl")
    back = models.load_model(tmp_path / "m.fastdl")
    assert isinstance(back.layers[0].kernel_initializer, init.Constant) and back.layers[0].kernel_initializer.value == 0.5

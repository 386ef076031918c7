"""Learning-rate schedules and global-norm gradient clipping (fastdl.optim and the model API)."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import layers, models, optim
from fastdl.optim import CosineDecay, ExponentialDecay, StepDecay


def test_schedule_values():
    s = StepDecay(0.1, step_size=3, gamma=0.5)
    assert [s(t) for t in range(7)] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    e = ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    assert e(5) == pytest.approx(0.5 ** 0.5) and e(20) == pytest.approx(0.25)
    assert ExponentialDecay(1.0, 10, 0.5, staircase=True)(15) == pytest.approx(0.5)
    c = CosineDecay(0.0, decay_steps=10, alpha=0.1, warmup_target=1.0, warmup_steps=4)
    assert [c(t) for t in range(5)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert c(4 + 5) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert c(4 + 10) == pytest.approx(0.1) and c(100) == pytest.approx(0.1)
    plain = CosineDecay(2.0, decay_steps=8)
    assert plain(0) == 2.0 and plain(4) == pytest.approx(1.0) and plain(8) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="decay_steps"):
        CosineDecay(1.0, decay_steps=0)


def test_optimizer_follows_a_schedule(backend, rng):
    sched = ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    p1, p2 = [rng.standard_normal(5)], None
    p2 = [p1[0].copy()]
    o1 = optim.SGD(p1, lr=sched, momentum=0.5)
    o2 = optim.SGD(p2, lr=1.0, momentum=0.5)
    for t in range(6):
        g = [np.full(5, float(t + 1))]
        assert o1.lr == pytest.approx(sched(t))
        o2.lr = sched(t)
        o1.step(g)
        o2.step(g)
    np.testing.assert_array_equal(p1[0], p2[0])
    assert o1.iterations == 6
    o1.lr = 0.01  # a number replaces the schedule
    assert o1.lr == 0.01


def test_state_dict_keeps_the_schedule_and_iterations(backend):
    o = optim.Adam([np.ones(3)], lr=CosineDecay(0.1, 10))
    for _ in range(4):
        o.step([np.ones(3)])
    sd = o.state_dict()
    assert sd["hyperparams"]["lr"]["schedule"] == "CosineDecay" and sd["iterations"] == 4
    o2 = optim.Adam([np.ones(3)])
    o2.load_state_dict(sd)
    assert o2.lr == pytest.approx(CosineDecay(0.1, 10)(4)) and o2.iterations == 4


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_max_grad_norm_equals_clipping_then_stepping(backend, cls, rng):
    params = [rng.standard_normal(s) for s in [(4, 3), (7,), (1,)]]
    ref = [p.copy() for p in params]
    o1 = cls(params, lr=0.1, max_grad_norm=0.5)
    o2 = cls(ref, lr=0.1)
    for step in range(5):
        grads = [rng.standard_normal(p.shape) * (step + 1) for p in params]
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        clipped = [g * min(1.0, 0.5 / (norm + 1e-6)) for g in grads]
        o1.step(grads)
        o2.step(clipped)
        assert o1.last_grad_norm == pytest.approx(norm, rel=1e-12)
    for a, b in zip(params, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_function(backend):
    grads = [np.array([3.0, 0.0]), np.array([[4.0]])]
    norm = optim.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads[0], [3 / (5 + 1e-6), 0])
    small = [np.array([0.1])]
    optim.clip_grad_norm(small, 1.0)
    assert small[0][0] == 0.1  # below the limit: untouched


def test_model_with_schedule_and_global_clipnorm_saves_and_resumes(tmp_path, rng):
    fastdl.set_seed(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    spec = fastdl.optimizers.Adam(learning_rate=CosineDecay(0.0, 20, warmup_target=0.01, warmup_steps=4),
                                  global_clipnorm=1.0)
    model = models.Sequential([layers.Dense(8, "relu", input_shape=(4,)), layers.Dense(3, "softmax")])
    model.compile(spec, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert model.optimizer.iterations == 8 and model.optimizer.last_grad_norm > 0
    model.save(tmp_path / "m.fastdl")
    loaded = models.load_model(tmp_path / "m.fastdl")
    assert loaded.optimizer.iterations == 8
    assert loaded.optimizer.lr == pytest.approx(model.optimizer.lr)
    fastdl.set_seed(1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    fastdl.set_seed(1)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def _one_sgd_step_reference(w, b, x, y_onehot, lr, clipnorm=None, clipvalue=None, weight_decay=0.0):
    """float64: a softmax Dense layer's categorical cross-entropy gradient, clipped per weight by
    norm or by value, then Keras 3's SGD step with its decoupled decay (w -= lr wd w first)."""
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - y_onehot) / len(x)
    grads = [x.T @ dz, dz.sum(0)]
    if clipnorm is not None:
        grads = [g * clipnorm / max(np.linalg.norm(g), clipnorm) for g in grads]
    if clipvalue is not None:
        grads = [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return [(v - lr * weight_decay * v) - lr * g for v, g in zip((w, b), grads)]


@pytest.mark.parametrize("option", [{"clipnorm": 0.05}, {"clipvalue": 0.01}, {"weight_decay": 0.3}])
def test_clipnorm_clipvalue_and_sgd_decay_match_keras_formulas(option, rng):
    x = rng.standard_normal((16, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    model = fastdl.Sequential([fastdl.Input((6,)), layers.Dense(3, activation="softmax")])
    model.compile(fastdl.optimizers.SGD(learning_rate=0.5, **option), "categorical_crossentropy")
    w, b = (a.astype(np.float64) for a in model.get_weights())
    model.train_on_batch(x, y)
    expected = _one_sgd_step_reference(w, b, x.astype(np.float64), y.astype(np.float64), 0.5, **option)
    for ours, ref in zip(model.get_weights(), expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected[0], _one_sgd_step_reference(w, b, x, y, 0.5)[0])  # the option mattered


def test_clipping_options_are_checked_and_saved(tmp_path, rng):
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        fastdl.optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue must be a number > 0"):
        fastdl.optimizers.SGD(clipvalue=-1)
    with pytest.raises(NotImplementedError, match="gradient_accumulation_steps"):
        fastdl.optimizers.Nadam(gradient_accumulation_steps=4)
    model = fastdl.Sequential([fastdl.Input((4,)), layers.Dense(2, activation="softmax")])
    model.layers[0].trainable = False
    model.compile(fastdl.optimizers.SGD(0.1, clipvalue=0.5, weight_decay=0.1), "categorical_crossentropy")
    frozen = model.get_weights()
    x, y = rng.standard_normal((8, 4)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)]
    model.fit(x, y, verbose=0)
    for a, b in zip(model.get_weights(), frozen):  # a frozen layer is neither clipped nor decayed
        np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m.fastdl")
    config = models.load_model(tmp_path / "m.fastdl")._optimizer_spec.get_config()
    assert config["clipvalue"] == 0.5 and config["weight_decay"] == 0.1

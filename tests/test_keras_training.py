"""Keras's training options (issue #11, part 2) where no Keras is needed to judge them: argument
errors, generator exhaustion, callbacks of evaluate and predict, weighted metrics saved, the
deferred (GPU) metric feed with weights. The numbers are held against Keras itself in
tests/test_keras_swap.py."""

import numpy as np
import pytest

import fastdl as keras
from fastdl import _device, _feed


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, np.argmax(x[:, :3], axis=1)


def _model(metrics=("acc",), weighted=None):
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=list(metrics), weighted_metrics=weighted)
    return m


def test_argument_errors_name_the_argument():
    x, y = _data()
    m = _model()
    with pytest.raises(ValueError, match="class_weight and sample_weight cannot be used together"):
        m.fit(x, y, sample_weight=np.ones(len(x)), class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight has 3 weights for 96 samples"):
        m.fit(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="sample_weight holds a weight that is not finite"):
        m.evaluate(x, y, sample_weight=np.full(len(x), np.nan), verbose=0)
    with pytest.raises(ValueError, match="validation_freq must be a positive int"):
        m.fit(x, y, validation_freq=0, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        m.fit(x, y, steps_per_epoch=0, verbose=0)
    with pytest.raises(ValueError, match="class_weight keys must be class ids"):
        m.fit(x, y, class_weight={"cat": 1.0}, verbose=0)
    gen = ((x[i:i + 8], y[i:i + 8]) for i in range(0, 96, 8))
    with pytest.raises(ValueError, match="gives y .* itself; pass y=None"):
        m.fit(gen, y, verbose=0)
    with pytest.raises(ValueError, match="validation_split needs arrays"):
        m.fit(iter([(x, y)]), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"must give \(x, y\) or \(x, y, sample_weight\) batches"):
        m.fit(iter([x]), verbose=0)


def test_a_finite_generator_runs_out_with_a_warning():
    x, y = _data()
    m = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = m.fit(((x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)), epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 1  # the first epoch read it all; the second found nothing
    with pytest.warns(UserWarning, match="ran out of data"):  # steps_per_epoch beyond what it has
        hist = m.fit(((x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)), steps_per_epoch=4, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_generator_batches_with_sample_weights_equal_arrays():
    x, y = _data()
    w = np.linspace(0.1, 1.0, len(x)).astype(np.float32)
    a, b = _model(weighted=["acc"]), _model(weighted=["acc"])
    h1 = a.fit(x, y, sample_weight=w, batch_size=16, shuffle=False, epochs=2, verbose=0).history
    gen = (((x[i:i + 16], y[i:i + 16], w[i:i + 16]) for e in range(2) for i in range(0, 96, 16)))
    h2 = b.fit(gen, steps_per_epoch=6, epochs=2, verbose=0).history
    assert set(h1) == {"loss", "acc", "weighted_acc"}
    for k in h1:
        np.testing.assert_allclose(h2[k], h1[k], rtol=1e-6, err_msg=k)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_evaluate_and_predict_call_their_callbacks_in_order():
    x, y = _data()
    m = _model()
    calls = []

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None): calls.append("test_begin")
        def on_test_batch_begin(self, batch, logs=None): calls.append(f"test_batch_begin {batch}")
        def on_test_batch_end(self, batch, logs=None): calls.append(f"test_batch_end {batch} {sorted(logs)}")
        def on_test_end(self, logs=None): calls.append(f"test_end {sorted(logs)}")
        def on_predict_begin(self, logs=None): calls.append("predict_begin")
        def on_predict_batch_begin(self, batch, logs=None): calls.append(f"predict_batch_begin {batch}")
        def on_predict_batch_end(self, batch, logs=None): calls.append(f"predict_batch_end {batch} {logs['outputs'].shape}")
        def on_predict_end(self, logs=None): calls.append("predict_end")

    m.evaluate(x, y, batch_size=64, callbacks=[Spy()], verbose=0)
    assert calls == ["test_begin", "test_batch_begin 0", "test_batch_end 0 ['acc', 'loss']", "test_batch_begin 1",
                     "test_batch_end 1 ['acc', 'loss']", "test_end ['acc', 'loss']"]
    calls.clear()
    out = m.predict(x, batch_size=50, callbacks=[Spy()])
    assert out.shape == (96, 3)
    assert calls == ["predict_begin", "predict_batch_begin 0", "predict_batch_end 0 (50, 3)", "predict_batch_begin 1",
                     "predict_batch_end 1 (46, 3)", "predict_end"]


def test_predict_and_evaluate_take_generators_and_steps():
    x, y = _data()
    m = _model()
    np.testing.assert_allclose(m.predict((x[i:i + 10] for i in range(0, 96, 10))), m.predict(x), rtol=1e-6)
    np.testing.assert_allclose(m.predict(x, batch_size=10, steps=2), m.predict(x[:20]), rtol=1e-6)
    full = m.evaluate(((x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)), verbose=0, return_dict=True)
    np.testing.assert_allclose(full["loss"], m.evaluate(x, y, batch_size=32, verbose=0)[0], rtol=1e-6)
    assert m.evaluate(x, y, batch_size=32, steps=1, verbose=0, return_dict=True) == \
        m.evaluate(x[:32], y[:32], verbose=0, return_dict=True)


def test_weighted_metrics_save_and_load(tmp_path):
    x, y = _data()
    m = _model(metrics=["acc"], weighted=["acc", "precision"])
    m.fit(x, y, sample_weight=np.linspace(0, 1, len(x)), verbose=0)
    assert [mm.name for mm in m.metrics] == ["acc", "weighted_acc", "precision"]
    m.save(tmp_path / "m.fastdl")
    back = keras.models.load_model(tmp_path / "m.fastdl")
    assert [mm.name for mm in back.metrics] == ["acc", "weighted_acc", "precision"]
    assert back._weighted_metrics == {id(mm) for mm in back.metrics[1:]}


@pytest.mark.parametrize("joined", [False, True])
def test_deferred_feed_with_sample_weights(monkeypatch, joined):
    """The GPU's deferred metric feed, forced on for the CPU, gives the same weighted metrics."""
    x, y = _data()
    w = np.linspace(0.1, 2.0, len(x))
    runs = []
    for deferred in (False, True):
        monkeypatch.setattr(_device.CPU, "defers_reads", deferred)
        if joined:
            monkeypatch.setattr(_feed.MetricFeed, "MAX_PENDING", 2)
        m = _model(metrics=["acc"], weighted=["acc", "precision"])
        keras.utils.set_random_seed(3)
        runs.append(m.fit(x, y, sample_weight=w, batch_size=16, epochs=2, verbose=0).history)
    for k in runs[0]:
        np.testing.assert_allclose(runs[1][k], runs[0][k], rtol=1e-9, err_msg=k)


def test_frozen_layers_stay_put_and_show_in_summary(tmp_path):
    x, y = _data()
    m = _model()
    m.layers[0].trainable = False
    before = m.get_weights()
    m.fit(x, y, epochs=2, verbose=0)
    after = m.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before[:2], after[:2]))  # frozen, to the bit
    assert not any(np.array_equal(a, b) for a, b in zip(before[2:], after[2:]))
    lines = []
    m.summary(print_fn=lines.append)
    assert " Total params: 75" in lines and " Trainable params: 27" in lines and " Non-trainable params: 48" in lines
    assert len(m.trainable_weights) == 2 and len(m.non_trainable_weights) == 2
    m.save(tmp_path / "m.fastdl")
    back = keras.models.load_model(tmp_path / "m.fastdl")
    assert [layer.trainable for layer in back.layers] == [False, True]
    # unfrozen between fits (no compile): the next fit trains it, the Adam moments of the rest go on
    m.layers[0].trainable = True
    moments = np.array(m.optimizer.state["exp_avg"][0])  # over the trained segment only
    m.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(m.get_weights()[0], after[0])
    assert m.optimizer.state["exp_avg"][0].size == 75 and moments.size == 27
    m.trainable = False  # every layer: fit computes the loss and changes nothing
    frozen = m.get_weights()
    hist = m.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0]) and all(np.array_equal(a, b) for a, b in zip(frozen, m.get_weights()))


def test_keras_style_adam_puts_eps_where_keras_does():
    """fastdl.optimizers.Adam: p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps) (Keras's form)."""
    from fastdl import optim
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(50).astype(np.float32) * 1e-3
    p = p0.copy()
    opt = optim.Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-3, eps_before_correction=True)
    q = p0.astype(np.float64)
    m = np.zeros(50)
    v = np.zeros(50)
    for t in range(1, 4):
        g = rng.standard_normal(50).astype(np.float32) * 1e-3
        opt.step([g])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        q -= 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
    with pytest.raises(AssertionError):  # torch's placement differs visibly with this eps
        p2 = p0.copy()
        o2 = optim.Adam([p2], lr=0.1, eps=1e-3)
        rng = np.random.default_rng(0)
        rng.standard_normal(50)
        for _ in range(3):
            o2.step([rng.standard_normal(50).astype(np.float32) * 1e-3])
        np.testing.assert_allclose(p2, q, rtol=1e-5, atol=1e-7)


def test_a_pydataset_is_measured_at_each_epoch():
    """A PyDataset whose len() changes in on_epoch_end gives each epoch its new number of batches."""
    import fastdl
    from fastdl import callbacks, layers, models, utils

    class Shrinking(utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.n = 5
            rng = np.random.default_rng(0)
            self.x, self.y = rng.standard_normal((40, 3)).astype(np.float32), rng.integers(0, 2, 40)

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return self.x[8 * i:8 * i + 8], self.y[8 * i:8 * i + 8]

        def on_epoch_end(self):
            self.n = 3 if self.n == 5 and getattr(self, "seen", False) else self.n
            self.seen = True

    batches = []
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    fastdl.set_seed(0)
    model.fit(Shrinking(), epochs=2, verbose=0,
              callbacks=[callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))])
    assert batches == [0, 1, 2, 3, 4, 0, 1, 2]

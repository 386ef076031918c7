"""Sequential models: gradients, fused losses, fit / evaluate / predict semantics, weights."""

import numpy as np
import pytest

import fastdl
from fastdl import data, layers, losses, metrics, models


def _model_gradient(model, x, y):
    """(analytic, numeric) gradients of the loss w.r.t. every parameter on one batch."""
    xp, yp, _ = model._prepare(x, y)
    model._backward_plan = model._plan_backward()

    def loss_at():
        out = model._forward(xp, False, model._fused)
        return model.loss.value_and_grad(yp, out, model._fused, np.empty_like(out))

    h = model._forward(xp, True, model._fused)
    d = np.empty_like(h)
    model.loss.value_and_grad(yp, h, model._fused, d)
    for layer, need_dx in model._backward_plan:
        d = layer.backward(d, need_dx)
    analytic = model._grads.astype(np.float64)
    numeric = np.zeros_like(analytic)
    eps = 1e-2
    for i in range(model._params.size):
        old = model._params[i]
        model._params[i] = old + eps
        up = loss_at()
        model._params[i] = old - eps
        down = loss_at()
        model._params[i] = old
        numeric[i] = (up - down) / (2 * eps)
    return analytic, numeric


CASES = [
    ("softmax", "categorical_crossentropy"),
    ("softmax", "sparse_categorical_crossentropy"),
    ("sigmoid", "binary_crossentropy"),
    ("linear", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),          # not fused: softmax backward + mse
    ("sigmoid", "categorical_crossentropy"),  # not fused: cross-entropy on probabilities
]


@pytest.mark.parametrize("last,loss", CASES)
@pytest.mark.parametrize("hidden", ["tanh", "gelu", "gelu_tanh", "silu", "sigmoid"])  # smooth: no kinks for the differences
def test_model_gradients_match_finite_differences(backend, last, loss, hidden, rng):
    fastdl.set_seed(3)
    units = 1 if loss == "binary_crossentropy" else 3
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = {"binary_crossentropy": (x[:, 0] > 0).astype(np.float32),
         "sparse_categorical_crossentropy": rng.integers(0, 3, 16),
         "mse": rng.uniform(0.1, 0.9, (16, 3))}.get(loss, np.eye(3)[rng.integers(0, 3, 16)])
    model = models.Sequential([layers.Dense(4, hidden, input_shape=(5,)), layers.Dense(units, last)])
    model.compile("sgd", loss)
    fusable = {("categorical_crossentropy", "softmax"), ("sparse_categorical_crossentropy", "softmax"),
               ("binary_crossentropy", "sigmoid")}
    assert model._fused == ((loss, last) in fusable)
    analytic, numeric = _model_gradient(model, x, y)
    np.testing.assert_allclose(analytic, numeric, atol=2e-3 * np.abs(numeric).max(), rtol=2e-2)


def test_fused_and_unfused_cross_entropy_agree(backend, rng):
    """Softmax + CE from the logits equals CE on the softmax probabilities (away from the clip)."""
    fastdl.set_seed(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = np.eye(4)[rng.integers(0, 4, 64)]
    fused = models.Sequential([layers.Dense(4, "softmax", input_shape=(8,))])
    fused.compile("sgd", "categorical_crossentropy")
    plain = models.Sequential([layers.Dense(4, input_shape=(8,)), layers.Activation("softmax")])
    plain.compile("sgd", "categorical_crossentropy")
    plain.set_weights(fused.get_weights())
    assert fused._fused and plain._fused  # an Activation('softmax') last layer fuses too
    np.testing.assert_allclose(fused.evaluate(x, y, verbose=0), plain.evaluate(x, y, verbose=0), rtol=1e-6)
    loss_fn = losses.CategoricalCrossentropy()
    np.testing.assert_allclose(fused.evaluate(x, y, verbose=0), loss_fn(y, fused.predict(x)), rtol=1e-5)


def _digits():
    x, y = data.load_digits()
    x_train, x_test, y_train, y_test = data.train_test_split(x, y, test_size=0.2, seed=0, stratify=y)
    scaler = data.StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def test_digits_test_accuracy_at_least_95_percent(backend):
    fastdl.set_seed(0)
    x_train, x_test, y_train, y_test = _digits()
    model = models.Sequential([layers.Dense(64, activation="relu", input_shape=(64,)),
                               layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, data.to_categorical(y_train, 10), epochs=20, verbose=0)
    loss, accuracy = model.evaluate(x_test, data.to_categorical(y_test, 10), verbose=0)
    assert accuracy >= 0.95
    assert metrics.accuracy(y_test, model.predict(x_test)) == pytest.approx(accuracy)


def test_sparse_labels_and_validation_split_semantics(rng):
    fastdl.set_seed(0)
    x = rng.standard_normal((100, 6)).astype(np.float32)
    y = rng.integers(0, 3, 100)
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, "relu"), layers.Dense(3, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "f1_score"])
    hist = model.fit(x, y, batch_size=7, epochs=3, validation_split=0.2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "f1_score", "val_loss", "val_accuracy", "val_f1_score"}
    assert all(len(v) == 3 for v in hist.history.values()) and hist.epoch == [0, 1, 2]
    # validation_split takes the last 20 samples, before shuffling
    val = model.evaluate(x[80:], y[80:], verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(hist.history["val_loss"][-1], rel=1e-6)
    assert val["accuracy"] == pytest.approx(hist.history["val_accuracy"][-1])


def test_evaluate_returns_keras_shapes(rng):
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    loss = model.evaluate(x, y, verbose=0)
    assert isinstance(loss, float)
    model.compile("sgd", "mse", metrics=["mae"])
    loss2, mae = model.evaluate(x, y, verbose=0)
    out = model.predict(x)
    assert loss2 == pytest.approx(np.mean((out - y) ** 2), rel=1e-5)
    assert mae == pytest.approx(np.mean(np.abs(out - y)), rel=1e-5)


def test_accuracy_variant_follows_the_loss(rng):
    x = rng.standard_normal((50, 4)).astype(np.float32)
    yb = (x[:, 0] > 0).astype(np.float32)
    model = models.Sequential([layers.Dense(1, "sigmoid", input_shape=(4,))])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    _, acc = model.evaluate(x, yb, verbose=0)
    assert acc == pytest.approx(np.mean((model.predict(x)[:, 0] > 0.5) == yb))


def test_predict_batching_and_call(rng):
    fastdl.set_seed(0)
    model = models.Sequential([layers.Dense(5, "gelu", input_shape=(3,)), layers.Dropout(0.5), layers.Dense(2, "softmax")])
    x = rng.standard_normal((37, 3))
    full = model(x)
    np.testing.assert_allclose(model.predict(x, batch_size=4), full, rtol=1e-6)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # dropout is off at inference


def test_one_parameter_buffer_and_weights_roundtrip(rng):
    model = models.Sequential([layers.Dense(4, "relu", input_shape=(3,)), layers.Dense(2)])
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    w = model.get_weights()
    assert [a.shape for a in w] == [(3, 4), (4,), (4, 2), (2,)]
    for a in model.weights:
        assert np.shares_memory(a, model._params)
    new = [rng.standard_normal(a.shape) for a in w]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match=r"weights\[1\] has shape"):
        model.set_weights([new[0], np.zeros(5), new[2], new[3]])
    np.testing.assert_allclose(model.get_weights()[0], new[0], rtol=1e-6)  # nothing written


def test_glorot_uniform_init_and_zero_bias():
    fastdl.set_seed(0)
    model = models.Sequential([layers.Dense(300, input_shape=(200,))])
    kernel, bias = model.get_weights()
    limit = np.sqrt(6 / 500)
    assert np.all(np.abs(kernel) <= limit) and abs(kernel.std() - limit / np.sqrt(3)) < 0.01 * limit
    assert np.all(bias == 0)


def test_set_seed_reproduces_training(rng):
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)

    def run():
        fastdl.set_seed(42)
        model = models.Sequential([layers.Dense(8, "relu", input_shape=(5,)), layers.Dropout(0.3),
                                   layers.Dense(3, "softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_summary_lists_layers():
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, name="hidden"), layers.Dense(1)])
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "hidden (Dense)" in text and "(None, 3)" in text and "Total params: 19" in text


def test_image_model_with_flatten_and_augmentation(rng):
    fastdl.set_seed(0)
    x, y = data.load_digits(flatten=False)
    x = x[:200] / 16.0
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Flatten(), layers.Dense(32, "relu"),
                               layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []

    def augment(batch):
        seen.append(batch.shape)
        return data.random_crop(batch, padding=1)

    model.fit(x, y[:200], batch_size=50, epochs=2, verbose=0, augment=augment)
    assert seen == [(50, 8, 8, 1)] * 8


def test_training_needs_compile_and_good_shapes(rng):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"x has shape \(4, 5\)"):
        model.fit(np.zeros((4, 5)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(ValueError, match="y has shape"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 7)), verbose=0)
    with pytest.raises(ValueError, match="samples"):
        model.fit(np.zeros((4, 3)), np.zeros((5, 2)), verbose=0)
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile("sgd", "hinge2")
    with pytest.raises(ValueError, match="unknown optimizer"):
        model.compile("rmsprop2", "mse")
    with pytest.raises(ValueError, match="to_categorical"):
        m = models.Sequential([layers.Dense(3, "softmax", input_shape=(3,))])
        m.compile("sgd", "categorical_crossentropy")
        m.fit(np.zeros((4, 3)), np.array([0, 1, 2, 1]), verbose=0)
    seq = models.Sequential([layers.Dense(2, input_shape=(3, 3))])  # Keras's Dense: on the last axis
    assert seq.output_shape == (3, 2) and seq.weights[0].shape == (3, 2)
    with pytest.raises(ValueError, match="unknown activation"):
        layers.Dense(2, activation="softplus2")


def test_keras_style_optimizer_objects(rng):
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    model = models.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=fastdl.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    assert model.optimizer.lr == 0.1 and model.optimizer.hyperparams["momentum"] == 0.9
    model.fit(x, y, epochs=300, verbose=0, batch_size=32)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], [1.0, -2.0, 0.5], atol=1e-2)
    model.compile(optimizer=fastdl.optimizers.Adam(learning_rate=0.01, weight_decay=0.1), loss="mse")
    assert type(model.optimizer).__name__ == "AdamW"


def test_adding_a_layer_keeps_trained_weights():
    model = models.Sequential([layers.Dense(3, input_shape=(2,))])
    before = model.get_weights()
    model.add(layers.Dense(1))
    after = model.get_weights()
    np.testing.assert_array_equal(before[0], after[0])
    assert len(after) == 4


def test_a_layer_the_model_cannot_build_is_not_added():
    """add raises and the model stays as it was (predict runs the old layers, model.layers lists them)."""
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    x = np.ones((2, 3), np.float32)
    before = model.predict(x, verbose=0)
    with pytest.raises(ValueError, match="Conv1D takes inputs"):
        model.add(layers.Conv1D(2, 1))
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"]
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    model.add(layers.Dense(1))
    assert model.predict(x, verbose=0).shape == (2, 1)


def test_binary_accuracy_threshold_and_multi_label_accuracy(rng):
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)  # three independent labels per sample
    model = models.Sequential([layers.Dense(3, "sigmoid", input_shape=(4,))])
    model.compile("adam", "binary_crossentropy",
                  metrics=["accuracy", metrics.BinaryAccuracy(threshold=0.7, name="acc70"), "precision"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x)
    assert logs["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))  # element by element, as Keras
    assert logs["acc70"] == pytest.approx(np.mean((p > 0.7) == y))
    decided = p > 0.5
    assert logs["precision"] == pytest.approx(np.sum(decided & (y == 1)) / np.sum(decided))


def test_label_smoothing_does_not_change_what_the_metrics_see(rng):
    x = rng.standard_normal((30, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = models.Sequential([layers.Dense(1, "sigmoid", input_shape=(4,))])
    model.compile("sgd", losses.BinaryCrossentropy(label_smoothing=0.4), metrics=["accuracy", "mae"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x)
    assert logs["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    assert logs["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)  # against y, not 0.2 / 0.8


def test_metrics_with_a_dropout_last_layer_and_probabilities_after_fit(rng):
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    model = models.Sequential([layers.Dense(3, "softmax", input_shape=(4,)), layers.Dropout(0.1)])
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    _, acc = model.evaluate(x, y, verbose=0)
    assert acc == pytest.approx(np.mean(np.argmax(model.predict(x), 1) == np.argmax(y, 1)))
    fused = models.Sequential([layers.Dense(3, "softmax", input_shape=(4,))])
    fused.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    fused.fit(x, y, epochs=1, verbose=0)
    out = fused.layers[-1](x)  # the layer by itself gives probabilities again after fit
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_each_fit_returns_a_new_history_and_stops_mid_epoch(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    model = models.Sequential([layers.Dense(1, input_shape=(4,))])
    model.compile("sgd", "mse")
    h1 = model.fit(x, y, epochs=2, verbose=0)
    h2 = model.fit(x, y, epochs=3, verbose=0)
    assert h1 is not h2 and model.history is h2
    assert len(h1.history["loss"]) == 2 and len(h2.history["loss"]) == 3 and h2.epoch == [0, 1, 2]
    from fastdl import callbacks

    class StopAtBatch(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if batch == 2:
                self.model.stop_training = True

    stopper = StopAtBatch()
    h3 = model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[stopper])
    assert stopper.batches == 3 and len(h3.history["loss"]) == 1


def test_layer_names_unique_and_set_weights_checks_types():
    model = models.Sequential([layers.Dense(2, input_shape=(3,), name="a")])
    with pytest.raises(ValueError, match="named 'a'"):
        model.add(layers.Dense(2, name="a"))
    weights = model.get_weights()
    with pytest.raises(TypeError, match=r"weights\[1\] must be numeric"):
        model.set_weights([weights[0] + 1, np.array(["x", "y"])])
    np.testing.assert_array_equal(model.get_weights()[0], weights[0])  # nothing written


def test_activation_names_mean_what_keras_means(rng):
    import math
    x = rng.standard_normal((4, 7)) * 3
    erf = np.vectorize(math.erf)
    expected = {
        "gelu": 0.5 * x * (1 + erf(x / math.sqrt(2))),  # Keras 3: gelu(x, approximate=False)
        "gelu_exact": 0.5 * x * (1 + erf(x / math.sqrt(2))),
        "gelu_tanh": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
        "leaky_relu": np.where(x > 0, x, 0.2 * x),  # Keras's slope 0.2
        "swish": x / (1 + np.exp(-x)),
    }
    for name, ref in expected.items():
        got = layers.Activation(name)(x.astype(np.float32))
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6, err_msg=name)


def test_binary_accuracy_on_a_softmax_model_with_ids_is_refused(rng):
    model = models.Sequential([layers.Dense(3, "softmax", input_shape=(4,))])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[metrics.BinaryAccuracy()])
    with pytest.raises(ValueError, match=r"binary_accuracy.*3 outputs"):
        model.evaluate(rng.standard_normal((6, 4)), rng.integers(0, 3, 6), verbose=0)


def test_a_custom_loss_may_prepare_one_target_array(rng):
    class Halved(losses.MeanSquaredError):
        def prepare_targets(self, y, output_shape):
            return np.ascontiguousarray(np.asarray(y, dtype=np.float32).reshape(len(y), *output_shape) / 2)

    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = rng.standard_normal((2, 1)).astype(np.float32)
    model = models.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile("sgd", Halved(), metrics=["mae"])
    loss, mae = model.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(np.mean((model.predict(x) - y / 2) ** 2), rel=1e-5)


def test_binary_accuracy_on_a_fused_softmax_reads_probabilities(rng):
    x = rng.standard_normal((30, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
    model = models.Sequential([layers.Dense(3, "softmax", input_shape=(4,))])
    model.compile("adam", "categorical_crossentropy", metrics=[metrics.BinaryAccuracy(threshold=0.3)])
    model.fit(x, y, epochs=3, verbose=0)
    _, acc = model.evaluate(x, y, verbose=0)
    assert acc == pytest.approx(np.mean((model.predict(x) > 0.3) == y))


def test_leaky_relu_function_object_means_its_own_slope(tmp_path):
    """Dense(activation=ops.leaky_relu) applies ops.leaky_relu as called (slope 0.01); the name
    'leaky_relu' is Keras's (0.2). Both survive save / load and get_config."""
    from fastdl import ops
    x = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    for activation, slope in ((ops.leaky_relu, 0.01), ("leaky_relu", 0.2)):
        model = models.Sequential([layers.Dense(3, activation=activation, input_shape=(5,))])
        kernel, bias = model.get_weights()
        z = x.astype(np.float64) @ kernel + bias
        np.testing.assert_allclose(model.predict(x), np.where(z > 0, z, slope * z), rtol=1e-5, atol=1e-6)
        model.compile(optimizer="sgd", loss="mse")
        model.save(tmp_path / "m.fastdl")
        loaded = models.load_model(tmp_path / "m.fastdl")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        assert loaded.layers[0].activation.alpha == slope


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_is_its_own(how):
    """copy.deepcopy / pickle of a model (a per-thread copy, say): the copy predicts the same,
    trains on its own buffers, has its own locks, and leaves the original alone."""
    import copy
    import pickle
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 4)).astype(np.float32)
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(3,)), layers.Dense(4)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, verbose=0)
    before = model.predict(x)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x), before)
    assert all(np.shares_memory(w, clone._params) for w in clone.weights)
    assert clone.layers[0]._lock is clone._compute_lock and clone._compute_lock is not model._compute_lock
    clone.fit(x, y, epochs=3, verbose=0)
    assert not np.array_equal(clone.predict(x), before)
    np.testing.assert_array_equal(model.predict(x), before)
    copy.deepcopy(model.layers[0])

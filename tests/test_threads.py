"""One model used from several threads: inference gives the one-thread results, and fit in one
thread with inference in others never gives a wrong result (see the README's threading rule)."""

import threading

import numpy as np
import pytest

from fastdl import layers, models


def _model(activation="softmax", loss="categorical_crossentropy", units=10):
    model = models.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)),
                               layers.Dense(units, activation=activation)])
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


def _data(n=512, seed=0, units=10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 20)).astype(np.float32)
    y = np.eye(units, dtype=np.float32)[rng.integers(0, units, n)]
    return x, y


def _in_threads(fns, *, repeat):
    """Runs each fn `repeat` times in its own thread; returns {index: [results]} and re-raises
    the first exception any thread met."""
    results = {i: [] for i in range(len(fns))}
    errors = []
    start = threading.Barrier(len(fns))

    def run(i, fn):
        try:
            start.wait()
            for _ in range(repeat):
                results[i].append(fn())
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("call", ["predict", "__call__", "layer"])
def test_inference_from_many_threads_matches_one_thread(call):
    model = _model()
    inputs = [_data(n=97 + 31 * i, seed=i)[0] for i in range(4)]  # different batch sizes per thread
    if call == "predict":
        run = lambda x: model.predict(x, batch_size=16)  # noqa: E731
    elif call == "__call__":
        run = model
    else:
        first = model.layers[0]
        run = first
    expected = [run(x) for x in inputs]
    results = _in_threads([lambda x=x: run(x) for x in inputs], repeat=25)
    for i, outs in results.items():
        for out in outs:
            np.testing.assert_array_equal(out, expected[i])


def test_evaluate_from_many_threads_matches_one_thread():
    model = _model()
    data = [_data(n=100 + 50 * i, seed=i) for i in range(4)]
    expected = [model.evaluate(x, y, verbose=0) for x, y in data]
    results = _in_threads([lambda d=d: model.evaluate(*d, verbose=0) for d in data], repeat=10)
    for i, outs in results.items():
        for out in outs:
            assert out == expected[i]


def test_inference_during_fit_sees_whole_steps():
    """predict in other threads while fit trains: no error in fit, and every prediction was made
    with one set of weights (identical rows stay identical across predict's batches)."""
    model = _model()
    x, y = _data(n=2048)
    row = np.repeat(x[:1], 64, axis=0)
    stop = threading.Event()
    outputs, errors = [], []

    last_outputs = []
    hidden = np.abs(np.random.default_rng(1).standard_normal((5, 64))).astype(np.float32)

    def serve():
        try:
            while not stop.is_set():
                outputs.append(model.predict(row, batch_size=8))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def serve_last_layer():  # the softmax layer alone: probabilities, never fit's logits
        while not stop.is_set():
            last_outputs.append(model.layers[-1](hidden))

    servers = [threading.Thread(target=serve) for _ in range(2)] + [threading.Thread(target=serve_last_layer)]
    for t in servers:
        t.start()
    try:
        history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    finally:
        stop.set()
        for t in servers:
            t.join()
    assert not errors, errors
    assert len(history.history["loss"]) == 3 and np.all(np.isfinite(history.history["loss"]))
    assert outputs
    for out in outputs:
        np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))
    assert last_outputs
    for out in last_outputs:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_fit_result_unchanged_by_concurrent_inference():
    """The same seeded fit gives the same weights whether or not other threads predict meanwhile."""
    import fastdl
    x, y = _data(n=1024)

    def trained(with_servers):
        fastdl.set_seed(7)
        model = _model()
        stop = threading.Event()
        servers = [threading.Thread(target=lambda: [model.predict(x[:50]) for _ in iter(stop.is_set, True)])
                   for _ in range(2 if with_servers else 0)]
        for t in servers:
            t.start()
        try:
            model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        finally:
            stop.set()
            for t in servers:
                t.join()
        return model.get_weights()

    for a, b in zip(trained(False), trained(True)):
        np.testing.assert_array_equal(a, b)


def test_evaluate_during_fit_keeps_fits_metrics():
    """evaluate in another thread waits for fit (both own the compiled metrics): fit's logged
    accuracy is the one a lone fit logs."""
    import fastdl
    x, y = _data(n=1024)

    def fit_logs(with_evaluators):
        fastdl.set_seed(3)
        model = _model()
        stop = threading.Event()
        evaluators = [threading.Thread(target=lambda: [model.evaluate(x[:64], y[:64], verbose=0)
                                                       for _ in iter(stop.is_set, True)])
                      for _ in range(2 if with_evaluators else 0)]
        for t in evaluators:
            t.start()
        try:
            return model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
        finally:
            stop.set()
            for t in evaluators:
                t.join()

    assert fit_logs(False) == fit_logs(True)


def test_evaluate_in_a_callback_keeps_fits_metrics():
    """A callback that evaluates inside fit (same thread): fit's logged accuracy is unchanged."""
    import fastdl
    from fastdl import callbacks
    x, y = _data(n=256)

    class EvaluateEachBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.evaluate(x[:3], y[:3], verbose=0)

    def fit_logs(extra):
        fastdl.set_seed(5)
        model = _model()
        return model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False, callbacks=extra).history

    assert fit_logs([EvaluateEachBatch()]) == fit_logs([])


def test_set_weights_from_a_callbacks_worker_thread():
    """set_weights from another thread while fit runs waits only for the current step, so a
    callback may hand it to a worker and join it."""
    x, y = _data(n=256)
    model = _model()
    zeros = [np.zeros_like(w) for w in model.get_weights()]
    from fastdl import callbacks

    class ResetInWorker(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            worker = threading.Thread(target=model.set_weights, args=(zeros,))
            worker.start()
            worker.join(timeout=30)
            assert not worker.is_alive(), "set_weights waited for the whole fit"

    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[ResetInWorker()])
    for w in model.get_weights():
        np.testing.assert_array_equal(w, 0.0)

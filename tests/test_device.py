"""The model API's device plumbing, as far as it runs without a GPU: device names, scopes, the
clear error when a GPU is asked for where there is none, the CLI's --device, and fit's deferred
metric feed (used on GPUs) checked on the CPU. The GPU itself: tests/test_cuda.py."""

import copy
import pickle
import re
import threading

import numpy as np
import pytest

import fastdl
from fastdl import _device, _feed, layers, models
from fastdl.backends import cuda as cuda_backend

from test_cli import _fastdl

GPU_USABLE, GPU_REASON = cuda_backend.available()
no_gpu = pytest.mark.skipif(GPU_USABLE, reason="a usable GPU is present: the no-GPU errors cannot be seen")


def _mlp(**kwargs):
    return models.Sequential([layers.Input((6,)), layers.Dense(5, activation="relu"),
                              layers.Dense(3, activation="softmax")], **kwargs)


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", "cpu:0"])
def test_cpu_names(name):
    assert _device.get(name) is _device.CPU
    assert repr(_device.get(name)) == "cpu"


@pytest.mark.parametrize("name,error,match", [
    ("tpu", ValueError, "unknown device 'tpu'"), ("gpu:x", ValueError, "unknown device"),
    ("cpu:1", ValueError, "the host is 'cpu'"), ("", ValueError, "unknown device"),
    (0, TypeError, "device must be a name"), (None, TypeError, "device must be a name")])
def test_bad_device_names_are_refused(name, error, match):
    with pytest.raises(error, match=match):
        _device.get(name)
    with pytest.raises(error, match=match):
        with fastdl.device(name):
            pass


@no_gpu
@pytest.mark.parametrize("name", ["gpu", "gpu:0", "cuda", "cuda:1"])
def test_a_gpu_where_there_is_none_is_a_clear_error(name):
    with pytest.raises(RuntimeError, match=re.escape(f"cannot use device '{name}': {GPU_REASON}")):
        with fastdl.device(name):
            pytest.fail("the scope must not be entered")
    with pytest.raises(RuntimeError, match="cannot use device"):
        _mlp(device=name)
    assert _device.current() is _device.CPU  # a failed scope leaves nothing behind


def test_scope_places_models_built_inside_it_and_is_per_thread():
    assert _mlp().device == "cpu"
    with fastdl.device("cpu") as dev:
        assert dev is _device.CPU and _device.current() is _device.CPU
        seen = []
        t = threading.Thread(target=lambda: seen.append(_device.current()))
        t.start()
        t.join()
        assert seen == [_device.CPU]
        model = _mlp()
    assert model.device == "cpu"
    lazy = models.Sequential([layers.Dense(3)])
    assert lazy.device is None  # no weights yet: no device yet
    lazy.build((4,))
    assert lazy.device == "cpu"


def test_device_survives_copy_and_pickle():
    model = _mlp(device="cpu")
    assert copy.deepcopy(model).device == "cpu"
    assert pickle.loads(pickle.dumps(model)).device == "cpu"
    assert pickle.loads(pickle.dumps(_device.CPU)) is _device.CPU


def _data(n=203, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, np.argmax(x[:, :3] + 0.3 * rng.standard_normal((n, 3)), axis=1)


@pytest.mark.parametrize("max_pending", [None, 1, "join"])
@pytest.mark.parametrize("loss,metrics", [("sparse_categorical_crossentropy", ["accuracy", "precision", "f1_score"]),
                                          ("categorical_crossentropy", ["mse", "mae", "accuracy"])])
def test_deferred_metric_feed_gives_the_same_history(monkeypatch, loss, metrics, max_pending):
    """On a GPU fit reads metric inputs back once per logging interval (the feed copies what later
    batches overwrite); forced on for the CPU it must give exactly the per-batch history. max_pending=1
    brings the inputs back after every batch (the size bound); "join" joins them every 2 batches."""
    x, y = _data()
    xv, yv = _data(50, seed=1)
    if loss == "categorical_crossentropy":
        y, yv = np.eye(3)[y], np.eye(3)[yv]
    runs = []
    for deferred in (False, True):
        monkeypatch.setattr(_device.CPU, "defers_reads", deferred)
        if max_pending == "join":  # joined on the device every 2 batches, read at the end
            monkeypatch.setattr(_feed.MetricFeed, "MAX_PENDING", 2)
        elif max_pending is not None:
            monkeypatch.setattr(_feed.MetricFeed, "MAX_PENDING_BYTES", max_pending)
        fastdl.set_seed(5)
        model = _mlp()
        model.compile("adam", loss, metrics=metrics)
        hist = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(xv, yv))
        runs.append((hist.history, model.evaluate(xv, yv, verbose=0, return_dict=True), model.get_weights()))
    (h0, e0, w0), (h1, e1, w1) = runs
    assert h0.keys() == h1.keys() and set(h0) >= {"loss", "val_loss", *("val_" + m for m in metrics)}
    for k in h0:
        np.testing.assert_allclose(h1[k], h0[k], rtol=1e-6, err_msg=k)
    for k in e0:
        np.testing.assert_allclose(e1[k], e0[k], rtol=1e-6, err_msg=k)
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)


def test_deferred_feed_reads_metrics_when_a_batch_callback_asks(monkeypatch):
    """A batch-end callback gets running logs that include every batch so far."""
    monkeypatch.setattr(_device.CPU, "defers_reads", True)
    x, y = _data(64)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []

    class Watch(fastdl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(model.metrics[0]._count)

    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[Watch()])
    assert seen == [16, 32, 48, 64]


def test_batches_take_rows_of_the_epoch_order():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    b = _feed.Batches(_device.CPU, [x])
    b.epoch(np.array([3, 1, 4, 0, 9, 2, 6, 5, 8, 7]))
    b.select(2, 5)
    np.testing.assert_array_equal(b.take(x), x[[4, 0, 9]])
    b.select(8, 12)  # the last, short batch
    np.testing.assert_array_equal(b.take(x), x[[8, 7]])
    b.epoch(None)
    b.select(3, 6)
    assert np.shares_memory(b.take(x), x)  # in order: a view, no copy


def test_predict_and_call_return_numpy_on_the_cpu():
    model = _mlp(device="cpu")
    x, _ = _data(9)
    out = model.predict(x, batch_size=4)
    assert type(out) is np.ndarray and out.shape == (9, 3)
    np.testing.assert_allclose(model(x), out, rtol=1e-6)
    np.testing.assert_allclose(model.layers[0](x).shape, (9, 5))


@no_gpu
def test_cli_device_gpu_without_one_exits_1_and_writes_nothing(tmp_path):
    r = _fastdl("train", "--device", "gpu", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("fastdl: error: --device gpu: ") and GPU_REASON in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_device_name_is_checked_before_anything(tmp_path):
    r = _fastdl("train", "--device", "tpu", cwd=tmp_path)
    assert r.returncode == 2 and "--device must be 'cpu', 'gpu'" in r.stderr
    r = _fastdl("train", "--device", "cpu", "--epochs", "2", "--verbose", "0", "--no-plot", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert models.load_model(tmp_path / "fastdl-model.fastdl").device == "cpu"

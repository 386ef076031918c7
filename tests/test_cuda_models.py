"""The model API on a GPU (issue #10, part 3): a model built under fastdl.device("gpu") trains,
predicts, evaluates, saves and exports as the same model on the CPU does. Skipped, with the
reason, without CuPy, fastdl's CUDA module or a GPU (the CPU-side plumbing: tests/test_device.py).

The two devices run different BLAS libraries and summation orders, so results agree to a
tolerance (float32 training for a few epochs of a small MLP: 1e-4 relative), not bit for bit.
"""

import numpy as np
import pytest

import fastdl
from fastdl import _device, _feed, layers, models
from fastdl.backends import cuda as cuda_backend

pytestmark = pytest.mark.cuda

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the CUDA tests need it (pip install cupy-cuda13x)")
USABLE, REASON = cuda_backend.available()
if not USABLE:
    pytest.skip(f"no usable GPU: {REASON}", allow_module_level=True)

RTOL, ATOL = 1e-4, 1e-5

# One thread spinning on the GPU for ~`cycles` clock cycles: queued before work that must not wait
# for the device, it keeps the stream busy, so that any synchronisation in that work would stall the
# host until it ends (and the stream would be found idle afterwards).
_SPIN = cupy.RawKernel(r"""
extern "C" __global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {}
}""", "spin")


def _busy_gpu(cycles=4_000_000_000):
    """~2 s at 2 GHz (the spin counts SM clock cycles)."""
    cupy.cuda.Device().synchronize()
    _SPIN((1,), (1,), (np.int64(cycles),))


def _data(n=517, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = np.argmax(x[:, :classes] + 0.5 * rng.standard_normal((n, classes)), axis=1)
    return x, labels


def _mlp(last="softmax", units=4, hidden=("relu", "tanh"), dropout=None):
    stack = [layers.Input((20,))]
    for act in hidden:
        stack.append(layers.Dense(16, activation=act))
        if dropout:
            stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(units, activation=last))
    return models.Sequential(stack)


def _twins(loss="sparse_categorical_crossentropy", metrics=("accuracy",), optimizer="adam", **kwargs):
    """The same model (same initial weights) on the CPU and on the GPU."""
    fastdl.set_seed(7)
    cpu = _mlp(**kwargs)
    cpu.compile(optimizer, loss, metrics=list(metrics))
    with fastdl.device("gpu"):
        gpu = _mlp(**kwargs)
        gpu.compile(optimizer, loss, metrics=list(metrics))
    gpu.set_weights(cpu.get_weights())
    return cpu, gpu


def _fit(model, *args, **kwargs):
    """model.fit with the shuffling seeded the same for every model."""
    fastdl.set_seed(1)
    return model.fit(*args, **kwargs)


def _close_weights(a, b, rtol=RTOL, atol=ATOL):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=rtol, atol=atol)


def test_a_gpu_model_keeps_its_buffers_on_the_gpu():
    with fastdl.device("gpu:0") as dev:
        model = _mlp()
    assert model.device == "gpu:0" and dev.kind == "gpu"
    assert isinstance(model._params, cupy.ndarray) and isinstance(model._grads, cupy.ndarray)
    assert all(isinstance(w, cupy.ndarray) for w in model.weights)
    assert all(type(w) is np.ndarray for w in model.get_weights())
    assert _mlp().device == "cpu"  # outside the scope
    assert models.Sequential([layers.Input((3,)), layers.Dense(2)], device="cuda").device == "gpu:0"


@pytest.mark.parametrize("loss,last,units,metrics", [
    ("sparse_categorical_crossentropy", "softmax", 4, ("accuracy", "precision", "f1_score")),
    ("categorical_crossentropy", "softmax", 4, ("accuracy", "mse")),
    ("binary_crossentropy", "sigmoid", 1, ("accuracy", "recall")),
    ("mse", "linear", 4, ("mae",)),
    ("categorical_crossentropy", "sigmoid", 4, ("accuracy",)),  # not fused: cross-entropy on probabilities
])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_on_the_gpu_matches_the_cpu(loss, last, units, metrics, optimizer):
    x, labels = _data()
    y = {"sparse_categorical_crossentropy": labels, "binary_crossentropy": (labels == 0).astype(np.float32)
         }.get(loss, np.eye(4, dtype=np.float32)[labels])
    cpu, gpu = _twins(loss, metrics, optimizer, last=last, units=units)
    runs = [_fit(m, x, y, batch_size=32, epochs=3, verbose=0, validation_split=0.2).history for m in (cpu, gpu)]
    _close_weights(cpu, gpu)
    for k in runs[0]:
        np.testing.assert_allclose(runs[1][k], runs[0][k], rtol=1e-3, atol=1e-4, err_msg=k)
    e_cpu, e_gpu = (m.evaluate(x, y, batch_size=64, verbose=0, return_dict=True) for m in (cpu, gpu))
    for k in e_cpu:
        np.testing.assert_allclose(e_gpu[k], e_cpu[k], rtol=1e-3, atol=1e-4, err_msg=k)
    p_cpu, p_gpu = cpu.predict(x, batch_size=100), gpu.predict(x, batch_size=100)
    assert type(p_gpu) is np.ndarray
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-4, atol=1e-5)


def test_cupy_inputs_are_used_where_they_are():
    x, y = _data()
    cpu, gpu = _twins()
    _fit(cpu, x, y, batch_size=64, epochs=2, verbose=0)
    _fit(gpu, cupy.asarray(x), cupy.asarray(y), batch_size=64, epochs=2, verbose=0)
    _close_weights(cpu, gpu)
    out = gpu(cupy.asarray(x[:5]))
    assert isinstance(out, cupy.ndarray)  # on the device of its input
    np.testing.assert_allclose(out.get(), cpu(x[:5]), rtol=1e-4, atol=1e-5)
    assert type(gpu(x[:5])) is np.ndarray
    assert type(gpu.layers[0](x[:5])) is np.ndarray


def test_data_moved_batch_by_batch_gives_the_same_result(monkeypatch):
    """When the data does not fit in device memory fit moves each batch; same numbers."""
    x, y = _data()
    results = []
    for fits in (True, False):
        monkeypatch.setattr(_device.GpuDevice, "fits", lambda self, nbytes: fits)
        _, gpu = _twins()
        results.append((gpu.fit(x, y, batch_size=50, epochs=2, verbose=0).history, gpu.get_weights()))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_fit_does_not_wait_for_the_gpu_between_batches():
    """The GPU is kept busy (~2 s) before an epoch of 17 batches: had forward, loss, backward, the
    optimizer step, the batch takes or the metric and loss bookkeeping synchronised, the host would
    have waited for the spin; instead every batch starts while the stream is still busy."""
    x, y = _data()
    _, gpu = _twins(metrics=("accuracy", "precision"))
    xd = cupy.asarray(x)  # y stays NumPy: CuPy targets are read back once (prepared on the host)
    gpu.fit(xd, y, batch_size=32, epochs=1, verbose=0)  # buffers and optimizer state exist now
    seen = []

    class Probe(fastdl.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(cupy.cuda.get_current_stream().done)

    _busy_gpu()
    gpu.fit(xd, y, batch_size=32, epochs=1, verbose=0, callbacks=[Probe()])
    assert len(seen) == 17 and not any(seen), seen  # every batch queued while the spin still ran
    # the epoch's end read the logs: that waits (once)
    assert cupy.cuda.get_current_stream().done


@pytest.mark.parametrize("limits", [(3, 2), (512, 256)])
def test_pending_losses_and_metric_inputs_are_joined_on_the_device(monkeypatch, limits):
    """LossSum and MetricFeed join what they hold on the device every few batches (a bound on how
    many small arrays wait): the same history as joining once per epoch."""
    x, y = _data()
    monkeypatch.setattr(_feed.LossSum, "MAX_PENDING", limits[0])
    monkeypatch.setattr(_feed.MetricFeed, "MAX_PENDING", limits[1])
    _, gpu = _twins(metrics=("accuracy", "f1_score", "mse"), loss="categorical_crossentropy")
    hist = _fit(gpu, x, np.eye(4, dtype=np.float32)[y], batch_size=16, epochs=2, verbose=0).history
    monkeypatch.undo()
    _, again = _twins(metrics=("accuracy", "f1_score", "mse"), loss="categorical_crossentropy")
    want = _fit(again, x, np.eye(4, dtype=np.float32)[y], batch_size=16, epochs=2, verbose=0).history
    for k in want:
        np.testing.assert_allclose(hist[k], want[k], rtol=1e-6, err_msg=k)


def test_layers_and_weights_take_cupy_and_numpy():
    x, _ = _data(9)
    cpu, gpu = _twins()
    xd = cupy.asarray(x)
    for layer in gpu.layers[1:]:
        out_host, out_dev = layer(x), layer(xd)
        assert type(out_host) is np.ndarray and isinstance(out_dev, cupy.ndarray)
        np.testing.assert_allclose(out_dev.get(), out_host, rtol=1e-6)
    act = layers.Activation("relu")  # no weights: runs where its input is
    assert isinstance(act(xd), cupy.ndarray) and type(act(x)) is np.ndarray
    out = cpu(xd)  # a CPU model given a CuPy array: the result goes back to the GPU
    assert isinstance(out, cupy.ndarray)
    gpu.set_weights([cupy.asarray(w) * 0.5 for w in cpu.get_weights()])
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_array_equal(a, b * 0.5)


def test_unshuffled_fit_and_label_smoothing_on_the_gpu():
    x, labels = _data()
    y = np.eye(4, dtype=np.float32)[labels]
    loss = fastdl.losses.CategoricalCrossentropy(label_smoothing=0.1)
    cpu, gpu = _twins(loss, ("accuracy", "mse"))
    runs = [m.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False).history for m in (cpu, gpu)]
    _close_weights(cpu, gpu)
    for k in runs[0]:
        np.testing.assert_allclose(runs[1][k], runs[0][k], rtol=1e-3, atol=1e-4, err_msg=k)


def test_a_model_on_a_gpu_that_is_not_the_current_one():
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one GPU: a model on another device needs two")
    x, y = _data()
    model = models.Sequential([layers.Input((20,)), layers.Dense(8, activation="relu"),
                               layers.Dense(4, activation="softmax")], device="gpu:1")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])  # outside any scope
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model._params.device.id == 1
    assert all(a.device.id == 1 for arrays in model.optimizer.state.values() for a in arrays)


def test_dropout_trains_on_the_gpu_and_is_seeded():
    x, y = _data()
    runs = []
    for _ in range(2):
        fastdl.set_seed(3)
        with fastdl.device("gpu"):
            model = _mlp(dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy")
        runs.append(model.fit(x, y, batch_size=32, epochs=2, verbose=0).history["loss"])
    assert runs[0] == runs[1] and all(np.isfinite(runs[0]))
    # the same model reseeded draws the same masks again; about `rate` of the values are dropped
    drop = model.layers[1]
    h = cupy.ones((4096, 16), dtype=cupy.float32)
    fastdl.set_seed(9)
    first = drop.forward(h, training=True).get()
    fastdl.set_seed(9)
    np.testing.assert_array_equal(drop.forward(h, training=True).get(), first)
    assert abs((first == 0).mean() - 0.3) < 0.02 and np.allclose(first[first != 0], 1 / 0.7)


def test_saved_on_the_gpu_loads_on_the_cpu_and_back(tmp_path):
    x, y = _data()
    _, gpu = _twins()
    gpu.fit(x, y, batch_size=32, epochs=1, verbose=0)
    gpu.save(tmp_path / "m.fastdl")
    on_cpu = models.load_model(tmp_path / "m.fastdl")
    with fastdl.device("gpu"):
        on_gpu = models.load_model(tmp_path / "m.fastdl")
    assert on_cpu.device == "cpu" and on_gpu.device == "gpu:0"
    for a, b, c in zip(gpu.get_weights(), on_cpu.get_weights(), on_gpu.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # the optimizer state came along: one more epoch on each continues the same run
    for m in (gpu, on_cpu, on_gpu):
        fastdl.set_seed(11)
        m.fit(x, y, batch_size=32, epochs=1, verbose=0)
    _close_weights(gpu, on_gpu, rtol=1e-6, atol=1e-7)
    _close_weights(gpu, on_cpu)


def test_onnx_export_of_a_gpu_model(tmp_path):
    pytest.importorskip("onnx")
    _, gpu = _twins()
    gpu.export(tmp_path / "m.onnx")
    ort = pytest.importorskip("onnxruntime")
    x, _ = _data(9)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], gpu.predict(x), rtol=1e-4, atol=1e-6)


def test_cli_trains_on_the_gpu(tmp_path):
    from test_cli import _fastdl
    r = _fastdl("train", "--device", "gpu", "--epochs", "5", "--verbose", "0", "--no-plot", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.9
    assert models.load_model(tmp_path / "fastdl-model.fastdl").device == "cpu"

"""fastdl.distributed: data-parallel fit on MPI, run as real 2-process jobs (mpiexec) with timeouts:
equivalence with one process at the same global batch (uneven batches included), identical
weights and logs on every rank, reduced metrics and validation, rank-0-only output, a failing
process ending the job, and the API's errors. Skipped where mpi4py or mpiexec is absent."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="fastdl.distributed needs mpi4py (pip install 'fastdl[mpi]')")


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # the venv's MPI (the mpich wheel)
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec on PATH (pip install 'fastdl[mpi]' brings MPICH's)")
    return found


# A job's program: DATA (an .npz), OUT (a directory) and the case's settings come as arguments; each
# rank writes OUT/rank<r>.json. MODE 'single' runs the same program in one process without init().
_JOB = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import fastdl
    from fastdl import callbacks, distributed, layers
    data, out, mode, case = sys.argv[1:5]

    def batches(x, y, size):
        for i in range(0, len(x), size):
            yield x[i:i + size], y[i:i + size]

    class Batches(fastdl.utils.PyDataset):
        def __init__(self, x, y, size):
            super().__init__()
            self.x, self.y, self.size = x, y, size

        def __len__(self):
            return -(-len(self.x) // self.size)

        def __getitem__(self, i):
            return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]

    if mode == "dp":
        distributed.init()
    r = distributed.rank()
    d = np.load(data)
    fastdl.set_seed(0)
    model = fastdl.Sequential([fastdl.Input((10,)), layers.Dense(16, activation="relu", kernel_regularizer="l2")]
                              + ([layers.Dropout(0.3)] if case == "dropout" else [])
                              + ([layers.BatchNormalization(momentum=0.5)] if case == "batchnorm" else [])
                              + [layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")])
    for i, dense in enumerate((l for l in model.layers if isinstance(l, layers.Dense)), 1):
        dense.set_weights([d[f"w{i}"], d[f"b{i}"]])
    # (batches of 5 at a large step amplify float rounding differences chaotically: a smaller step there)
    model.compile(fastdl.optimizers.SGD(0.01 if case == "tiny_batches" else 0.1, momentum=0.9),
                  "sparse_categorical_crossentropy",
                  metrics=["acc", fastdl.metrics.AUC(name="auc"), fastdl.metrics.F1Score(average="macro")])
    cbs = []
    if case == "writes":
        cbs = [callbacks.CSVLogger(os.path.join(out, f"log{r}.csv")),
               callbacks.ModelCheckpoint(os.path.join(out, f"ckpt{r}-{{epoch}}.fastdl"))]
    if case == "early_stop":
        cbs = [callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0, verbose=1)]
    if case == "mismatch" and r == 1:  # rank 1 given other data: an error on every rank, not a hang
        d = dict(d, x=d["x"][:150], y=d["y"][:150])
    if case == "sum_loss":
        model.compile("sgd", fastdl.losses.Huber(reduction="sum"))
        d = dict(d, y=np.eye(3)[d["y"]], vy=np.eye(3)[d["vy"]])
    if case == "ignore_class":
        model.compile("sgd", fastdl.losses.SparseCategoricalCrossentropy(ignore_class=2))
    if case == "raise" and r == 1:
        cbs = [callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: 1 / 0 if b == 2 else None)]
    if case == "backup_prepare":  # one process, one epoch: the backup a data-parallel fit resumes from
        cbs = [callbacks.BackupAndRestore(os.path.join(out, "backup0"), delete_checkpoint=False)]
    if case == "resume":  # rank 0's backup: rank 1's directory is empty (another machine's disk)
        cbs = [callbacks.BackupAndRestore(os.path.join(out, f"backup{r}"))]
    batch = 5 if case == "tiny_batches" else 32
    train, val, ev = dict(x=d["x"], y=d["y"], batch_size=batch), (d["vx"], d["vy"]), dict(x=d["vx"], y=d["vy"],
                                                                                         batch_size=7)
    if case in ("pydataset", "generator"):
        # a step takes one of the source's batches per process: 2 processes on batches of 16 take the rows
        # one process takes in batches of 32 (the last step: 5 rows on rank 0, none on rank 1)
        k = 2 if mode == "dp" else 1
        wrap = Batches if case == "pydataset" else batches  # the generator runs out after one epoch: fit
        train = dict(x=wrap(d["x"], d["y"], 32 // k))      # stops (and warns) at the second, everywhere
        val, ev = wrap(d["vx"], d["vy"], 16 // k), dict(x=wrap(d["vx"], d["vy"], 14 // k))
    h = model.fit(**train, epochs=1 if case == "backup_prepare" else 3, shuffle=case == "shuffle", verbose=1 if case == "writes" else 0,
                  validation_data=val, callbacks=cbs)
    ev = model.evaluate(**ev, verbose=0, return_dict=True)
    from fastdl import _random
    json.dump({"weights": [w.tolist() for w in model.get_weights()], "history": h.history, "evaluate": ev,
               "size": distributed.size(), "draws": _random.generator().random(4).tolist()},
              open(os.path.join(out, f"{mode}{r}.json"), "w"))
''')


def _data(path, n=197, seed=0):
    """197 rows: at batch 32 the last batch has 5 rows; validation 23 rows at batch 32 and 7."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + 23, 10)).astype(np.float32)
    y = np.argmax(x[:, :3] + 0.3 * rng.standard_normal((n + 23, 3)), axis=1)
    arrays = {"x": x[:n], "y": y[:n], "vx": x[n:], "vy": y[n:]}
    for i, (a, b) in enumerate([(10, 16), (16, 8), (8, 3)], 1):
        arrays[f"w{i}"] = (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        arrays[f"b{i}"] = (0.1 * rng.standard_normal(b)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def _run(tmp_path, case, processes=2, timeout=120, plain=False):
    job = tmp_path / "job.py"
    job.write_text(_JOB)
    data = _data(tmp_path / "data.npz")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    runner = [sys.executable] if plain else [sys.executable, "-m", "mpi4py"]
    cmd = [_mpiexec(), "-n", str(processes)] + runner + [str(job), str(data), str(out), "dp", case]
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r, out, time.monotonic() - started


def _single(tmp_path, case):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(tmp_path / "job.py"), str(tmp_path / "data.npz"), str(out), "single", case],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "single0.json").read_text())


def _results(out, processes=2):
    return [json.loads((out / f"dp{r}.json").read_text()) for r in range(processes)]


def _same_everywhere(results):
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first["weights"], other["weights"]):
            np.testing.assert_array_equal(np.array(a), np.array(b))  # bit-identical weights
        assert other["history"] == first["history"] and other["evaluate"] == first["evaluate"]


def _close_to(results, single):
    for a, b in zip(results[0]["weights"], single["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-5)
    for key in single["history"]:
        np.testing.assert_allclose(results[0]["history"][key], single["history"][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    for key in single["evaluate"]:
        np.testing.assert_allclose(results[0]["evaluate"][key], single["evaluate"][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)


@pytest.mark.parametrize("case", ["plain", "tiny_batches"])
def test_two_processes_train_as_one_at_the_global_batch(case, tmp_path):
    """Global batch 32 over 197 rows (a last batch of 5: 3 + 2 rows), or 5 (each process 3 or 2 rows);
    validation 23 rows at 32 and 7: the same weights, logs, metrics (AUC, F1 from reduced counts)
    and evaluation as one process, and identical on both ranks."""
    r, out, _ = _run(tmp_path, case)
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    assert results[0]["size"] == 2
    _same_everywhere(results)
    _close_to(results, _single(tmp_path, case))


@pytest.mark.parametrize("case", ["pydataset", "generator"])
def test_batch_sources_are_sharded_by_batch(case, tmp_path):
    """A PyDataset / generator of batches of 16 on 2 processes (each step: batch 2s on rank 0, 2s+1 on
    rank 1; the 13th and last batch, 5 rows, on rank 0 alone) trains as one process on batches of 32;
    validation and evaluate from such sources too. The generator runs out after the first epoch: both
    runs stop there."""
    r, out, _ = _run(tmp_path, case)
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    single = _single(tmp_path, case)
    _close_to(results, single)
    assert len(single["history"]["loss"]) == (1 if case == "generator" else 3)


def test_backup_and_restore_resumes_every_process_from_rank_0s_backup(tmp_path):
    """One process trains an epoch and backs up (weights, optimizer state, epoch); 2 processes resume from
    it, rank 1 with no backup of its own: both train epochs 2-3 and end as one process's 3 epochs."""
    _run(tmp_path, "plain", processes=1)  # writes job.py and the data
    out = tmp_path / "out"
    _single(tmp_path, "backup_prepare")
    assert (out / "backup0" / "latest.fastdl").exists()
    r, out, _ = _run(tmp_path, "resume")
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    assert len(results[0]["history"]["loss"]) == 2
    for a, b in zip(results[0]["weights"], _single(tmp_path, "plain")["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=1e-5)
    assert not (out / "backup0" / "latest.fastdl").exists()  # fit ended: rank 0 deleted it


def test_each_process_draws_its_own_random_numbers(tmp_path):
    """With Dropout the processes draw different masks (their random streams differ: seeded by rank 0's
    seed and the rank) and still end with identical weights and logs (the gradient is reduced)."""
    r, out, _ = _run(tmp_path, "dropout")
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    assert results[0]["draws"] != results[1]["draws"]  # Dropout draws from this stream (fastdl._random)


def test_batch_normalization_statistics_are_averaged(tmp_path):
    """Each process moves BatchNormalization's moving statistics towards its own batches; the epoch's
    end averages them, so the ranks end identical (weights, validation and evaluation in inference
    mode)."""
    r, out, _ = _run(tmp_path, "batchnorm")
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    moving_mean = np.array(results[0]["weights"][4])
    assert moving_mean.any()  # the statistics moved


def test_shuffled_epochs_are_the_same_order_everywhere(tmp_path):
    """fit's shuffling draws rank 0's permutation everywhere: the one a single process draws."""
    r, out, _ = _run(tmp_path, "shuffle")
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    _close_to(results, _single(tmp_path, "shuffle"))


@pytest.mark.parametrize("case,error", [("mismatch", "ValueError: data-parallel fit: the processes were given "
                                                     "different samples"),
                                        ("sum_loss", "NotImplementedError: data-parallel fit with a loss of "
                                                     "reduction='sum'"),
                                        ("ignore_class", "NotImplementedError: data-parallel fit with a loss's "
                                                         "ignore_class")])
def test_what_data_parallel_refuses_ends_the_job_with_the_reason(case, error, tmp_path):
    r, out, took = _run(tmp_path, case, timeout=60)
    assert r.returncode != 0
    assert error in r.stderr, r.stderr[-3000:]
    assert took < 60


def test_only_rank_0_prints_and_writes(tmp_path):
    r, out, _ = _run(tmp_path, "writes")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("Epoch 1/3") == 1  # one progress bar
    assert (out / "log0.csv").exists() and not (out / "log1.csv").exists()
    assert (out / "ckpt0-3.fastdl").exists() and not any(out.glob("ckpt1-*"))


def test_early_stopping_decides_the_same_everywhere(tmp_path):
    r, out, _ = _run(tmp_path, "early_stop")
    assert r.returncode == 0, r.stderr[-3000:]
    results = _results(out)
    _same_everywhere(results)
    assert len(results[0]["history"]["loss"]) == 2  # the second epoch does not improve val_loss by 10: it stops
    assert r.stdout.count("early stopping") == 1  # rank 0 says it


@pytest.mark.parametrize("plain", [False, True], ids=["python-m-mpi4py", "plain-python"])
def test_a_failing_process_ends_the_job(plain, tmp_path):
    r, out, took = _run(tmp_path, "raise", timeout=60, plain=plain)
    assert r.returncode != 0
    assert "ZeroDivisionError" in r.stderr
    assert took < 60


def test_init_without_mpi4py_says_what_to_install(monkeypatch):
    import fastdl.distributed as dist
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(dist, "_context", None)
    with pytest.raises(RuntimeError, match=r"pip install 'fastdl\[mpi\]'"):
        dist.init()


def test_collectives_in_one_process(monkeypatch):
    from fastdl import distributed
    monkeypatch.setattr(distributed, "_context", None)  # and back to None after: the suite stays single-process
    ctx = distributed.init()
    assert distributed.is_initialized() and ctx.size == 1 and ctx.rank == 0 and distributed.init() is ctx
    a = np.arange(6, dtype=np.float32)
    assert distributed.allreduce(a, op="mean") is a and a.tolist() == list(range(6))
    distributed.broadcast(a)
    distributed.barrier()
    with pytest.raises(ValueError, match="op must be 'sum' or 'mean'"):
        distributed.allreduce(a, op="max")
    with pytest.raises(TypeError, match="C-contiguous"):
        distributed.allreduce(np.zeros((4, 4), np.float32)[:, ::2])


def test_fastdl_train_under_mpiexec_is_data_parallel(tmp_path):
    """`mpiexec -n 2 fastdl train` trains data-parallel: one report (rank 0's), one saved model, and
    the accuracy the single-process command reaches on the digits."""
    cli = os.path.join(os.path.dirname(sys.executable), "fastdl")
    if not os.path.exists(cli):
        pytest.skip("the fastdl command is not installed next to this Python")
    model_path = tmp_path / "model.fastdl"
    r = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", cli, "train", "--epochs", "8",
                        "--output", str(model_path), "--no-plot", "--verbose", "0"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("data-parallel on 2 processes") == 1, r.stdout
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", r.stdout).group(1))
    assert accuracy >= 0.9, r.stdout
    assert model_path.exists() and len(list(tmp_path.iterdir())) == 1  # rank 0 saved; nothing else written

"""Data-parallel fit: time per step spent in the gradient allreduce against the rest of the step.

    mpiexec -n 2 python -m mpi4py bench/distributed_step.py [--steps 200]

Two models: the seed MLP of bench/train_speed.py (100 -> 64 -> 64 -> 10, 11k parameters) at global
batch 256, and a 9M-parameter MLP (1000 -> 3000 -> 2000 -> 10) at global batch 512, each trained
with Adam for --steps steps after a warm-up. Rank 0 prints, per model: the median step time, the
median time inside the allreduce of the gradient buffer, the bytes it moves, and the link speed
this run reached (bytes / allreduce time), and the whole fit's samples per second (median of 3
epochs, nothing timed inside). What a real link would give is a formula, printed
beside it: a ring allreduce over K processes moves 2 (K - 1) / K times the buffer through each
link, so at B bytes/s it takes 2 (K - 1) / K * bytes / B plus latency.
"""

import argparse
import time

import numpy as np

import fastdl
from fastdl import distributed, layers
from fastdl.distributed import _strategy


def _model(sizes):
    model = fastdl.Sequential([fastdl.Input((sizes[0],))] +
                              [layers.Dense(n, activation="relu") for n in sizes[1:-1]] +
                              [layers.Dense(sizes[-1], activation="softmax")])
    model.compile(fastdl.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def measure(sizes, batch, steps, ctx):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch * steps)
    model = _model(sizes)
    times = {"reduce": []}
    original = _strategy.DataParallel.reduce_gradients

    def timed(self, m, local_rows, global_rows):
        t = time.perf_counter()
        original(self, m, local_rows, global_rows)
        times["reduce"].append(time.perf_counter() - t)

    class Steps(fastdl.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.setdefault("step", []).append(time.perf_counter() - self.t)

    model.fit(x[:batch * 5], y[:batch * 5], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up
    _strategy.DataParallel.reduce_gradients = timed
    try:
        times["reduce"].clear()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[Steps()])
    finally:
        _strategy.DataParallel.reduce_gradients = original
    step, reduce = np.median(times["step"]), np.median(times["reduce"])
    # the whole fit, untimed inside (the per-step agreements and the epoch's reductions included)
    walls = []
    for _ in range(3):
        ctx.comm.Barrier()
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        walls.append(time.perf_counter() - t)
    return model.count_params(), step, reduce, len(x) / np.median(walls)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    ctx = distributed.init()
    rows = []
    for name, sizes, batch, steps in [("seed MLP 100-64-64-10", (100, 64, 64, 10), 256, args.steps),
                                      ("MLP 1000-3000-2000-10", (1000, 3000, 2000, 10), 512, max(20, args.steps // 10))]:
        params, step, reduce, rate = measure(sizes, batch, steps, ctx)
        rows.append((name, params, batch, step, reduce, rate))
    if ctx.is_chief:
        k = ctx.size
        print(f"{k} processes, fastdl {fastdl.__version__}, {fastdl.info().get('simd', '')}")
        print("| model | parameters | global batch | step (median) | allreduce (median) | share | bytes | link reached | "
              "allreduce at 25 GB/s | fit samples/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, params, batch, step, reduce, rate in rows:
            nbytes = params * 4
            moved = 2 * (k - 1) / k * nbytes
            print(f"| {name} | {params:,} | {batch} | {step * 1e3:.3f} ms | {reduce * 1e3:.3f} ms | "
                  f"{reduce / step:.0%} | {nbytes / 1e6:.2f} MB | {moved / reduce / 1e9:.2f} GB/s | "
                  f"{moved / 25e9 * 1e3:.3f} ms + latency | {rate:,.0f} |")


if __name__ == "__main__":
    main()

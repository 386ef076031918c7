"""The per-step cost of fit at a small batch, where Python overhead shows: the MLP 100-64-64-10
(Adam, categorical cross-entropy, accuracy) on 60,000 x 100, batch 32, nine one-epoch fits in one
process after a warm-up; prints the median microseconds per step.

    python bench/fit_step_overhead.py [--repeats 9] [--batch-size 32]
"""

import argparse
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(argv)
    from fastdl import layers, models
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60_000, 100)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 60_000)]
    model = models.Sequential([layers.Input((100,)), layers.Dense(64, activation="relu"),
                               layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=a.batch_size, epochs=1, verbose=0)
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        model.fit(x, y, batch_size=a.batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - t)
    steps = -(-60_000 // a.batch_size)
    print(f"fit, batch {a.batch_size}: {np.median(times) / steps * 1e6:.1f} us per step (median of {a.repeats})")


if __name__ == "__main__":
    main()

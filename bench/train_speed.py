"""Training speed: the MLP 100 -> 64 -> 64 -> 10 (relu, relu, softmax; Adam; categorical
cross-entropy) for one epoch on the same synthetic 60,000 x 100 data, in samples per second:

    fastdl      model.fit(x, y, batch_size=B, epochs=1, verbose=0)
    torch loop  a plain PyTorch 2 loop: randperm, index, zero_grad, forward, cross_entropy, backward, Adam.step
    keras       Keras 3 on its torch backend, model.fit(..., verbose=0) (a reference; if installed)

fastdl and the torch loop run interleaved in one process (each repetition runs each once); the
table shows medians. Keras runs afterwards in a process of its own: importing it in the same
process slowed both others by 2x-5x here (its torch backend changes process-wide settings).

    python bench/train_speed.py [--repeats 5] [--batch-sizes 32 1024] [--no-keras] [--device cuda]

--device cuda: fastdl's model on the GPU (fastdl.device("gpu"), CuPy inputs) against the same torch
loop on CUDA tensors; each epoch's time ends when the GPU has finished it (fit reads its logs at the
end of an epoch; the torch loop synchronises). bench/gpu_check.py runs this on a GPU machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

N, FEATURES, CLASSES = 60_000, 100, 10


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    labels = np.argmax(x @ rng.standard_normal((FEATURES, CLASSES)), axis=1)
    return x, labels


def _timed_fit(model, x, y, batch_size):
    def run():
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        return time.perf_counter() - t
    return run


def fastdl_epoch(x, labels, batch_size, device="cpu"):
    import fastdl
    from fastdl import layers, models
    y = fastdl.data.to_categorical(labels, CLASSES)
    with fastdl.device("gpu" if device == "cuda" else "cpu"):
        model = models.Sequential([layers.Dense(64, activation="relu", input_shape=(FEATURES,)),
                                   layers.Dense(64, activation="relu"), layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    if device == "cuda":  # the data on the GPU before timing, as the torch loop's is
        import cupy
        x, y = cupy.asarray(x), cupy.asarray(y)
    return _timed_fit(model, x, y, batch_size)


def torch_epoch(x, labels, batch_size, device="cpu"):
    import torch
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, CLASSES)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # torch's default on CUDA: the foreach step

    def run():
        t = time.perf_counter()
        perm = torch.randperm(N, device=device)
        for start in range(0, N, batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t
    return run


def keras_epoch(x, labels, batch_size):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    y = np.eye(CLASSES, dtype=np.float32)[labels]
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return _timed_fit(model, x, y, batch_size)


def measure(makers, batch_sizes, repeats, device="cpu"):
    """{batch size: {name: samples/s}}, medians of interleaved repetitions after a warm-up epoch."""
    x, labels = data()
    rates = {}
    for bs in batch_sizes:
        runs = {name: (make(x, labels, bs, device) if device != "cpu" else make(x, labels, bs))
                for name, make in makers.items()}
        for run in runs.values():  # warm-up epoch (allocations, imports, first-call costs)
            run()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                times[name].append(run())
        rates[bs] = {name: N / float(np.median(t)) for name, t in times.items()}
    return rates


def keras_rates(batch_sizes, repeats):
    """Keras's samples/s, measured in a separate process (None if Keras is not installed)."""
    cmd = [sys.executable, __file__, "--keras-only", "--repeats", str(repeats), "--batch-sizes",
           *map(str, batch_sizes)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="torch"))
    if r.returncode != 0:
        return None
    return {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 1024])
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--keras-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        args.no_keras = True  # Keras runs in its own process on the CPU reference only
    if args.keras_only:
        rates = measure({"keras 3 (torch)": keras_epoch}, args.batch_sizes, args.repeats)
        print(json.dumps({bs: r["keras 3 (torch)"] for bs, r in rates.items()}))
        return
    makers = {"fastdl": fastdl_epoch, "torch loop": torch_epoch}
    try:
        import torch  # noqa: F401
    except ImportError:
        del makers["torch loop"]
    from fastdl.bench import machine_line
    print(machine_line())
    rates = measure(makers, args.batch_sizes, args.repeats, args.device)
    keras = None if args.no_keras else keras_rates(args.batch_sizes, args.repeats)
    names = list(makers) + (["keras 3 (torch)"] if keras else [])
    rows = []
    for bs in args.batch_sizes:
        rate = dict(rates[bs])
        if keras:
            rate["keras 3 (torch)"] = keras[bs]
        rows.append((bs, rate))
    print("\n| batch | " + " | ".join(f"{n} samples/s" for n in names) + " | fastdl vs torch loop | fastdl vs keras |")
    print("| ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |")
    for bs, rate in rows:
        vs_torch = f"{rate['fastdl'] / rate['torch loop']:.2f}x" if "torch loop" in rate else "-"
        vs_keras = f"{rate['fastdl'] / rate['keras 3 (torch)']:.1f}x" if "keras 3 (torch)" in rate else "-"
        print(f"| {bs} | " + " | ".join(f"{rate[n]:,.0f}" for n in names) + f" | {vs_torch} | {vs_keras} |")


if __name__ == "__main__":
    main()

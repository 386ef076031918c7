"""Training speed of the image and text layers (issue #13's goals), in samples per second:

    cnn   28x28x1 -> Conv2D 32 3x3 - BatchNorm - relu - MaxPool 2 - Conv2D 64 3x3 - BatchNorm - relu -
          MaxPool 2 - Flatten - Dense 10 softmax; Adam, sparse cross-entropy, batch 64
    text  ids (200 steps of a 20,000-word vocabulary) -> Embedding 64 - GlobalAveragePooling1D -
          Dense 2 softmax; Adam, batch 64

each as fastdl's model.fit(epochs=1), a plain PyTorch loop of the same network (randperm, index,
zero_grad, forward, cross_entropy, backward, Adam.step; NCHW for torch's convolutions) and Keras 3
on its torch backend (in its own process, as bench/train_speed.py does). fastdl and torch run
interleaved in one process; the table shows medians of --repeats epochs after a warm-up.

    python bench/cnn_text_speed.py [--repeats 5] [--only cnn|text] [--no-keras]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SIZES = {"cnn": 6_000, "text": 20_000}
VOCAB, STEPS, DIM = 20_000, 200, 64
BATCH = 64


def data(kind):
    rng = np.random.default_rng(0)
    n = SIZES[kind]
    if kind == "cnn":
        x = rng.standard_normal((n, 28, 28, 1)).astype(np.float32)
        return x, (x[:, :14].mean(axis=(1, 2, 3)) > 0).astype(np.int64) * 5 + rng.integers(0, 5, n)
    x = rng.integers(1, VOCAB, (n, STEPS)).astype(np.float32)
    return x, (x[:, 0] > VOCAB / 2).astype(np.int64)


def fastdl_epoch(kind, x, labels):
    import fastdl
    from fastdl import layers, models
    if kind == "cnn":
        stack = [layers.Input((28, 28, 1)), layers.Conv2D(32, 3), layers.BatchNormalization(), layers.Activation("relu"),
                 layers.MaxPooling2D(), layers.Conv2D(64, 3), layers.BatchNormalization(), layers.Activation("relu"),
                 layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10, activation="softmax")]
    else:
        stack = [layers.Input((STEPS,)), layers.Embedding(VOCAB, DIM), layers.GlobalAveragePooling1D(),
                 layers.Dense(2, activation="softmax")]
    model = models.Sequential(stack)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    fastdl.set_seed(0)

    def run():
        t = time.perf_counter()
        model.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0)
        return time.perf_counter() - t
    return run


def torch_epoch(kind, x, labels):
    import torch
    nn = torch.nn
    if kind == "cnn":
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * 5 * 5, 10))
    else:
        xt = torch.from_numpy(x.astype(np.int64))

        class Bag(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed, self.out = nn.Embedding(VOCAB, DIM), nn.Linear(DIM, 2)

            def forward(self, ids):
                return self.out(self.embed(ids).mean(dim=1))
        model = Bag()
    yt = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(x)

    def run():
        t = time.perf_counter()
        perm = torch.randperm(n)
        for start in range(0, n, BATCH):
            idx = perm[start:start + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        return time.perf_counter() - t
    return run


def keras_epoch(kind, x, labels):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    L = keras.layers
    if kind == "cnn":
        stack = [keras.Input((28, 28, 1)), L.Conv2D(32, 3), L.BatchNormalization(), L.Activation("relu"),
                 L.MaxPooling2D(), L.Conv2D(64, 3), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(),
                 L.Flatten(), L.Dense(10, activation="softmax")]
    else:
        stack = [keras.Input((STEPS,)), L.Embedding(VOCAB, DIM), L.GlobalAveragePooling1D(),
                 L.Dense(2, activation="softmax")]
    model = keras.Sequential(stack)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    def run():
        t = time.perf_counter()
        model.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0)
        return time.perf_counter() - t
    return run


def measure(kind, makers, repeats):
    x, labels = data(kind)
    runs = {name: make(kind, x, labels) for name, make in makers.items()}
    for run in runs.values():
        run()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return {name: len(x) / float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("cnn", "text"))
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--keras-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kinds = [args.only] if args.only else ["cnn", "text"]
    if args.keras_only:
        print(json.dumps({k: measure(k, {"keras": keras_epoch}, args.repeats)["keras"] for k in kinds}))
        return
    from fastdl.bench import machine_line
    print(machine_line())
    rates = {k: measure(k, {"fastdl": fastdl_epoch, "torch loop": torch_epoch}, args.repeats) for k in kinds}
    if not args.no_keras:
        cmd = [sys.executable, __file__, "--keras-only", "--repeats", str(args.repeats)] + \
            (["--only", args.only] if args.only else [])
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="torch"))
        if r.returncode == 0:
            for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items():
                rates[k]["keras 3 (torch)"] = v
    print("\n| model | fastdl samples/s | torch loop samples/s | keras 3 (torch) samples/s | fastdl vs torch loop | "
          "fastdl vs keras |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k in kinds:
        r = rates[k]
        keras = r.get("keras 3 (torch)")
        keras_rate, vs_keras = ("-", "-") if keras is None else (f"{keras:,.0f}", f"{r['fastdl'] / keras:.1f}x")
        print(f"| {k} (batch {BATCH}) | {r['fastdl']:,.0f} | {r['torch loop']:,.0f} | {keras_rate} | "
              f"{r['fastdl'] / r['torch loop']:.2f}x | {vs_keras} |")


if __name__ == "__main__":
    main()

"""Inference with BatchNormalization folded into the convolution (fastdl/_fusion.py FusedConvNorm):
model.predict of bench/cnn_text_speed.py's CNN (trained one short epoch, so the moving statistics
are not the initial ones) with the fold switched off and on in one process, alternating, in samples
per second (medians of --repeats calls on the 6,000 images).

    python bench/fold_inference.py [--repeats 5] [--batch-sizes 64 256]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cnn_text_speed  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args(argv)
    from fastdl import _fusion, layers, models
    from fastdl.bench import machine_line
    x, y = cnn_text_speed.data("cnn")
    model = models.Sequential([layers.Input((28, 28, 1)), layers.Conv2D(32, 3), layers.BatchNormalization(),
                               layers.Activation("relu"), layers.MaxPooling2D(), layers.Conv2D(64, 3),
                               layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(),
                               layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:640], y[:640], batch_size=64, epochs=1, verbose=0)
    folds = _fusion._fuses_conv_norm

    def rate(batch, fold):
        _fusion._fuses_conv_norm = folds if fold else (lambda conv, norm: False)
        model.predict(x[:1000], batch_size=batch, verbose=0)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.predict(x, batch_size=batch, verbose=0)
            times.append(time.perf_counter() - t)
        return len(x) / float(np.median(times))

    print(machine_line())
    print("\n| batch | unfolded samples/s | folded samples/s | speed-up |\n| ---: | ---: | ---: | ---: |")
    try:
        for batch in args.batch_sizes:
            off, on = rate(batch, False), rate(batch, True)
            print(f"| {batch} | {off:,.0f} | {on:,.0f} | {on / off:.2f}x |")
    finally:
        _fusion._fuses_conv_norm = folds


if __name__ == "__main__":
    main()

"""The `fastdl` command.

    fastdl train [--epochs N] [--batch-size B] [--data digits|FILE.npz|FILE.csv] [--output PATH] ...
    fastdl info
    fastdl bench [--quick] [--only NAME]

`fastdl train` with no arguments is the main job: the classic Keras MLP (Dense 64 relu, Dense 64
relu, Dense softmax) on the bundled UCI digits, standardised, with a stratified held-out test
split; it shows the progress bar, prints test accuracy and macro F1, saves the model and, when
matplotlib is installed, a plot of the training history.
"""

import argparse
import json
import os
import sys

import numpy as np


def _load_table(path, label_column):
    """(x, y) from a .npz (arrays x and y) or a .csv (numeric features, one label column)."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            xk = next((k for k in ("x", "X", "features") if k in keys), None)
            yk = next((k for k in ("y", "Y", "labels", "label") if k in keys), None)
            if xk is None or yk is None:
                raise SystemExit(f"{path}: expected arrays named 'x' and 'y', found {sorted(keys)}")
            return f[xk], f[yk]
    if path.endswith(".csv"):
        with open(path) as f:
            first = [v.strip() for v in f.readline().strip().split(",")]
        named = label_column is not None and not _is_int(label_column)
        col = len(first) - 1 if label_column is None else None if named else int(label_column)
        if col is not None and not -len(first) <= col < len(first):
            raise SystemExit(f"{path}: --label-column {col} is outside its {len(first)} columns")
        # a header is a first row whose feature cells are not all numbers (labels may be words)
        header = first if named or not all(_is_float(v) for i, v in enumerate(first) if i != col % len(first)) \
            else None
        if named:
            if label_column not in first:
                raise SystemExit(f"{path}: no column named {label_column!r} (columns: {first})")
            col = first.index(label_column)
        table = np.genfromtxt(path, delimiter=",", skip_header=1 if header else 0, dtype=str, ndmin=2)
        features = np.delete(table, col, axis=1)
        try:
            x = features.astype(np.float32)
        except ValueError:
            raise SystemExit(f"{path}: every column except the label must be numeric") from None
        return x, table[:, col]
    raise SystemExit(f"--data must be 'digits', a .npz or a .csv file, got {path!r}")


def _is_int(text):
    try:
        int(text)
        return True
    except ValueError:
        return False


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _encode_labels(y):
    """Class ids 0..K-1 and the class names, from any label values."""
    y = np.asarray(y)
    names, ids = np.unique(y, return_inverse=True)
    return ids.astype(np.int64), names


def _plot(history, path):
    try:
        import matplotlib
        import matplotlib.ticker
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [k for k in history.history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        epochs = np.arange(1, len(history.history[key]) + 1)
        ax.plot(epochs, history.history[key], label="train")
        if "val_" + key in history.history:
            ax.plot(epochs, history.history["val_" + key], label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    from .saving import atomic_write
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return True


def train(args):
    import fastdl
    from fastdl import data, layers, metrics, models

    fastdl.set_seed(args.seed)
    if args.data == "digits":
        x, y = data.load_digits()
        source = "UCI handwritten digits (bundled)"
    else:
        if not os.path.exists(args.data):
            raise SystemExit(f"--data {args.data}: no such file")
        x, y = _load_table(args.data, args.label_column)
        source = args.data
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    ids, names = _encode_labels(y)
    classes = len(names)
    if classes < 2:
        raise SystemExit("the labels hold a single class: nothing to classify")
    x_train, x_test, y_train, y_test = data.train_test_split(x, ids, test_size=args.test_size, stratify=ids)
    scaler = data.StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    print(f"data: {source}: {len(x)} samples, {x.shape[1]} features, {classes} classes; "
          f"{len(x_train)} train / {len(x_test)} test (standardised)")

    model = models.Sequential([
        layers.Dense(64, activation="relu", input_shape=(x.shape[1],)),
        layers.Dense(64, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary()
    history = model.fit(x_train, data.to_categorical(y_train, classes), batch_size=args.batch_size,
                        epochs=args.epochs, validation_split=args.validation_split, verbose=args.verbose)

    pred = model.predict(x_test, batch_size=max(args.batch_size, 256))
    accuracy = metrics.accuracy(y_test, pred)
    f1 = metrics.f1_score(y_test, pred, average="macro", num_classes=classes)
    print(f"test accuracy: {accuracy:.4f}")
    print(f"test F1 (macro): {f1:.4f}")
    model.save(args.output)
    print(f"model saved to {args.output}")
    plot_path = os.path.splitext(args.output)[0] + "-history.png"
    if not args.no_plot:
        if _plot(history, plot_path):
            print(f"training history plot saved to {plot_path}")
        else:
            print("(install matplotlib for a plot of the training history)")
    return 0


def info(args):
    import fastdl
    print(json.dumps(fastdl.info(), indent=2))
    return 0


def bench(argv):
    from fastdl import bench as bench_module
    return bench_module.main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastdl", description="fastdl: fused deep-learning kernels and a Keras-style API")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the example MLP (default: on the bundled digits)")
    t.add_argument("--data", default="digits", help="'digits', or a .npz (arrays x, y) or .csv file (its first row "
                   "is a header when a feature cell in it is not a number, or when --label-column names a column)")
    t.add_argument("--label-column", help="CSV label column, by name or index (default: the last)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--test-size", type=float, default=0.2, help="held-out fraction (default 0.2)")
    t.add_argument("--validation-split", type=float, default=0.1, help="of the training part (default 0.1)")
    t.add_argument("--output", default="fastdl-model.fastdl", help="where to save the model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    t.add_argument("--no-plot", action="store_true", help="do not write the training-history plot")
    t.set_defaults(func=train)

    i = sub.add_parser("info", help="print fastdl.info(): backend, SIMD level, threads, CUDA")
    i.set_defaults(func=info)

    sub.add_parser("bench", help="benchmark every kernel beside NumPy and PyTorch (fastdl bench --help)",
                   add_help=False)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after `bench` belongs to the benchmark's own parser
        return bench(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.epochs < 1 or args.batch_size < 1:
            parser.error("--epochs and --batch-size must be >= 1")
        if not 0 < args.test_size < 1:
            parser.error("--test-size must be in (0, 1)")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

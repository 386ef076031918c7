"""`fastdl train` on bad arguments and bad data: one line `fastdl: error: <what and where>` on
stderr, exit status 2 for a command line that is wrong in itself and 1 for data or files that do
not fit it, no traceback, and nothing written. Most cases run `cli.main` in-process (fast); two
end-to-end checks run the console script."""

import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from fastdl import cli


def _rows(n=20, label=lambda i: i % 2):
    return "".join(f"{i % 7}.5,{i % 3},{label(i)}\n" for i in range(n))


GOOD_CSV = "a,b,label\n" + _rows()


def _train(tmp_path, monkeypatch, capsys, *argv, plot=False):
    """Runs `fastdl train ARGV` in tmp_path: (exit status, stdout, stderr, files it created)."""
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    fixed = ["train", "--epochs", "1", "--verbose", "0"] + ([] if plot else ["--no-plot"])
    try:
        code = cli.main(fixed + list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err, set(os.listdir(tmp_path)) - before


def _assert_one_line_error(result, code, *words):
    status, out, err, created = result
    assert "Traceback" not in err, err
    assert err.startswith("fastdl: error: ") and err.count("\n") == 1, err
    assert status == code, (status, err)
    for word in words:
        assert word in err, (word, err)
    assert not created, f"wrote {created} although it failed"


# --- the command line alone is wrong: exit status 2, before any file is read --------------------

USAGE = {
    "negative seed": (["--seed", "-1"], "--seed"),
    "seed not a number": (["--seed", "x"], "--seed"),
    "validation split 1": (["--validation-split", "1"], "--validation-split"),
    "validation split negative": (["--validation-split", "-0.1"], "--validation-split"),
    "validation split nan": (["--validation-split", "nan"], "--validation-split"),
    "test size 0": (["--test-size", "0"], "--test-size"),
    "test size 1": (["--test-size", "1"], "--test-size"),
    "test size nan": (["--test-size", "nan"], "--test-size"),
    "zero epochs": (["--epochs", "0"], "--epochs"),
    "negative batch size": (["--batch-size", "-4"], "--batch-size"),
    "epochs not a number": (["--epochs", "ten"], "--epochs"),
    "unknown option": (["--epocs", "3"], "unrecognized"),
    "unknown data kind": (["--data", "d.txt"], "--data"),
    "label column on npz": (["--data", "d.npz", "--label-column", "0"], "--label-column"),
    "label column on digits": (["--label-column", "0"], "--label-column"),
    "empty output": (["--output", ""], "--output"),
    "output ending in a slash": (["--output", "models/"], "--output"),
}


@pytest.mark.parametrize("argv,word", USAGE.values(), ids=USAGE.keys())
def test_usage_errors_exit_2_on_one_line(tmp_path, monkeypatch, capsys, argv, word):
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, *argv), 2, word)


# --- a bad CSV: exit status 1, naming the file, line and column ---------------------------------

def _csv_rows_with(cell, at_line=3):
    lines = GOOD_CSV.splitlines()
    a, b, label = lines[at_line - 1].split(",")
    lines[at_line - 1] = f"{a},{cell},{label}"
    return "\n".join(lines) + "\n"


CSV = {
    "empty file": (b"", [], ["d.csv", "no rows"]),
    "blank lines only": (b"\n  \n\n", [], ["d.csv", "no rows"]),
    "header only": (b"a,b,label\n", [], ["d.csv", "no data rows"]),
    "short row": ("a,b,label\n1,2,0\n3,4,1\n5,6\n" + _rows(), [], ["d.csv", "line 4", "2 cells", "3"]),
    "long row": ("a,b,label\n1,2,0\n3,4,1,9\n" + _rows(), [], ["line 3", "4 cells"]),
    "quoted comma": ('a,b,label\n"1,5",2,0\n' + _rows(), [], ["line 2", "column 1", "'1,5'", "not a number"]),
    "unterminated quote": ('a,b,label\n1,2,0\n"3,4,1\n5,6,0\n', [], ["d.csv", "line"]),
    "semicolons": ("a;b;label\n1;2;0\n3;4;1\n5;6;0\n", [], ["d.csv", "looks ;-separated"]),
    "semicolons and decimal commas": ("1,5;2;0\n3,5;4;1\n5,5;6;0\n", [], ["looks ;-separated"]),
    "semicolons, decimal commas": ("1,5;2,5;0\n3,5;4,5;1\n", [], ["line 2", "'5;4'", "looks ;-separated"]),
    "one column": ("1\n2\n3\n", [], ["line 1", "single column"]),
    "tabs": ("a\tb\tlabel\n1\t2\t0\n3\t4\t1\n", [], ["looks tab-separated"]),
    "binary junk": (bytes(range(256)) * 8, [], ["d.csv", "binary"]),
    "not utf-8": ("a,b,caf\u00e9\n1,2,0\n3,4,1\n".encode("latin-1"), [], ["d.csv", "UTF-8", "line 1"]),
    "word in a feature": (_csv_rows_with("x"), [], ["line 3", "column 2 ('b')", "'x'", "not a number"]),
    "empty feature cell": (_csv_rows_with(""), [], ["line 3", "column 2 ('b')", "empty"]),
    "nan": (_csv_rows_with("nan"), [], ["line 3", "column 2 ('b')", "nan"]),
    "NaN": (_csv_rows_with("NaN", 5), [], ["line 5", "column 2 ('b')", "NaN"]),
    "inf": (_csv_rows_with("inf"), [], ["line 3", "column 2 ('b')", "inf"]),
    "-inf": (_csv_rows_with("-inf"), [], ["line 3", "-inf"]),
    "1e39 overflows float32": (_csv_rows_with("1e39", 7), [], ["line 7", "column 2 ('b')", "1e39", "float32"]),
    "nan without a header": ("1,2,0\n3,nan,1\n5,6,0\n", [], ["line 2", "column 2", "nan"]),
    "empty label cell": ("a,b,label\n1,2,0\n3,4,\n" + _rows(), [], ["line 3", "label", "empty"]),
    "continuous target": ("a,b,price\n" + _rows(label=lambda i: f"{i * 1.37:.2f}"), [],
                          ["'price'", "line 3", "1.37", "class id", "--label-column"]),
    "nan label": ("a,b,label\n1,2,0\n3,4,nan\n" + _rows(), [], ["line 3", "nan", "class id"]),
    "one class": ("a,b,label\n" + _rows(label=lambda i: 3), [], ["single class"]),
    "no such column": (GOOD_CSV, ["--label-column", "colour"], ["no column named 'colour'"]),
    "column index outside": (GOOD_CSV, ["--label-column", "7"], ["--label-column 7", "outside"]),
    "column named twice": ("label,b,label\n" + _rows(), ["--label-column", "label"], ["'label'", "twice"]),
}


@pytest.mark.parametrize("content,argv,words", CSV.values(), ids=CSV.keys())
def test_bad_csv_is_one_line_naming_where(tmp_path, monkeypatch, capsys, content, argv, words):
    data = tmp_path / "d.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.csv", *argv), 1, *words)


def test_missing_file_and_folder_as_data(tmp_path, monkeypatch, capsys):
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.csv"), 1, "d.csv", "no such file")
    (tmp_path / "d.csv").mkdir()
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.csv"), 1, "d.csv", "folder")
    (tmp_path / "d.npz").mkdir()
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.npz"), 1, "d.npz", "folder")


# --- a bad .npz: exit status 1, naming the array and the element --------------------------------

def _xy(n=20):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)).astype(np.float32), np.arange(n) % 2


def _with(x, index, value, dtype=np.float32):
    x = x.astype(dtype)
    x[index] = value
    return x


def _write_npz(path, kind):
    x, y = _xy()
    arrays = {
        "nan in x": dict(x=_with(x, (3, 1), np.nan), y=y),
        "inf in x": dict(x=_with(x, (3, 1), -np.inf), y=y),
        "1e39 in float64 x": dict(x=_with(x, (3, 1), 1e39, np.float64), y=y),
        "other names": dict(a=x, b=y),
        "lengths differ": dict(x=x, y=y[:-1]),
        "2-d y not one-hot": dict(x=x, y=np.stack([y, y, y], axis=1)),
        "3-d y": dict(x=x, y=y.reshape(-1, 1, 1)),
        "object x": dict(x=x.astype(object), y=y),
        "object y": dict(x=x, y=y.astype(object)),
        "0 samples": dict(x=x[:0], y=y[:0]),
        "0 features": dict(x=x[:, :0], y=y),
        "0-d x": dict(x=np.float32(1), y=y[:1]),
        "0-d y": dict(x=x[:1], y=np.int64(1)),
        "string x": dict(x=x.astype(str), y=y),
        "complex x": dict(x=x.astype(np.complex64), y=y),
        "nan in y": dict(x=x, y=_with(y, 4, np.nan, np.float64)),
        "fractional y": dict(x=x, y=y + 0.5),
        "empty string in y": dict(x=x, y=np.where(y == 1, "cat", "")),
        "one class": dict(x=x, y=np.zeros(len(x), int)),
    }.get(kind)
    if arrays is not None:
        np.savez(path, **arrays)
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "junk bytes":
        path.write_bytes(b"\x00\x01junk" * 100)
    elif kind == "an .npy file":
        with open(path, "wb") as f:
            np.save(f, x)
    elif kind == "truncated":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "corrupt member":
        np.savez_compressed(path, x=np.zeros((500, 3), np.float32), y=np.arange(500) % 2)
        with zipfile.ZipFile(path) as z:
            start = z.getinfo("x.npy").header_offset + 60
        raw = bytearray(path.read_bytes())
        raw[start:start + 40] = b"\xff" * 40
        path.write_bytes(bytes(raw))
    else:
        raise AssertionError(kind)


NPZ = {
    "nan in x": ["x[3, 1]", "nan"],
    "inf in x": ["x[3, 1]", "inf"],
    "1e39 in float64 x": ["x[3, 1]", "1e+39", "float32"],
    "other names": ["'x' and 'y'", "'a'"],
    "lengths differ": ["20", "19"],
    "2-d y not one-hot": ["y has shape (20, 3)"],
    "3-d y": ["y has shape (20, 1, 1)"],
    "object x": ["'x'", "object"],
    "object y": ["'y'", "object"],
    "0 samples": ["0 samples"],
    "0 features": ["0 features"],
    "0-d x": ["x", "0-d"],
    "0-d y": ["y", "0-d"],
    "string x": ["x", "dtype"],
    "complex x": ["x", "complex64"],
    "nan in y": ["y[4]", "nan"],
    "fractional y": ["y[0]", "0.5", "class id"],
    "empty string in y": ["y[0]", "empty"],
    "one class": ["single class"],
    "empty file": ["d.npz", "empty"],
    "junk bytes": ["d.npz", "not a .npz"],
    "an .npy file": ["d.npz", ".npy"],
    "truncated": ["d.npz"],
    "corrupt member": ["d.npz", "'x'"],
}


@pytest.mark.parametrize("kind,words", NPZ.items(), ids=NPZ.keys())
def test_bad_npz_is_one_line_naming_where(tmp_path, monkeypatch, capsys, kind, words):
    _write_npz(tmp_path / "d.npz", kind)
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.npz"), 1, *words)


# --- sizes that the data cannot meet: exit status 1 ---------------------------------------------

def test_test_size_too_large_for_the_data(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text("a,b,label\n" + _rows(10))
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--test-size", "0.95")
    _assert_one_line_error(r, 1, "--test-size 0.95", "10 samples")


def test_validation_split_leaving_no_training_samples(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text("a,b,label\n" + _rows(4))
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--test-size", "0.75", "--validation-split", "0.5")
    _assert_one_line_error(r, 1, "--validation-split 0.5", "1 training sample")


# --- --output is checked before training --------------------------------------------------------

def test_output_checked_before_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    run = lambda *argv, **kw: _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", *argv, **kw)  # noqa: E731
    _assert_one_line_error(run("--output", "missing/m.fastdl"), 1, "missing", "does not exist")
    (tmp_path / "models").mkdir()
    _assert_one_line_error(run("--output", "models"), 1, "--output models", "folder")
    (tmp_path / "f.txt").write_text("")
    _assert_one_line_error(run("--output", "f.txt/m.fastdl"), 1, "f.txt", "not a folder")
    _assert_one_line_error(run("--output", "d.csv"), 1, "--output d.csv", "--data")
    assert (tmp_path / "d.csv").read_text() == GOOD_CSV
    (tmp_path / "m-history.png").mkdir()
    _assert_one_line_error(run("--output", "m.fastdl", plot=True), 1, "m-history.png", "folder")
    status, out, err, created = run("--output", "m.fastdl")  # --no-plot: the plot path does not matter
    assert status == 0 and created == {"m.fastdl"}, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_output_onto_a_fifo_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """A save refuses to replace a FIFO: found before training, not after it."""
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    os.mkfifo(tmp_path / "pipe.fastdl")
    result = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "pipe.fastdl")
    _assert_one_line_error(result, 1, "--output pipe.fastdl", "FIFO")
    assert "Epoch" not in result[1]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder this user cannot write")
def test_output_into_a_read_only_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "locked/m.fastdl")
        _assert_one_line_error(r, 1, "locked", "not writable")
        assert not os.listdir(locked)
    finally:
        locked.chmod(0o700)


# --- labels that do not look like class ids ------------------------------------------------------

def test_many_classes_warn_on_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text("a,b,id\n" + _rows(40, label=lambda i: i))
    status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m.fastdl")
    assert status == 0, err
    warnings = err.splitlines()
    assert warnings and all(w.startswith("fastdl: warning: ") for w in warnings), err
    assert "40 classes" in warnings[0] and "'id'" in warnings[0] and "--label-column" in warnings[0]
    assert created == {"m.fastdl"}


def test_integer_labels_written_two_ways_are_one_class(tmp_path, monkeypatch, capsys):
    (tmp_path / "d.csv").write_text("a,b,label\n" + _rows(label=lambda i: ("1", "1.0", "0", " 0.0")[i % 4]))
    status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m.fastdl")
    assert status == 0 and not err, err
    assert "20 samples, 2 features, 2 classes" in out


@pytest.mark.parametrize("shape", ["one-hot", "column"])
def test_npz_accepts_one_hot_and_column_labels(tmp_path, monkeypatch, capsys, shape):
    x, _ = _xy(30)
    ids = np.arange(30) % 3
    y = np.eye(3, dtype=np.float32)[ids] if shape == "one-hot" else ids.reshape(-1, 1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.npz", "--output", "m.fastdl")
    assert status == 0 and not err, err
    assert "30 samples, 3 features, 3 classes" in out and created == {"m.fastdl"}


def test_diverged_training_saves_nothing(tmp_path, monkeypatch, capsys):
    from fastdl import models
    fit = models.Sequential.fit

    def fit_then_diverge(self, *args, **kwargs):
        history = fit(self, *args, **kwargs)
        self.set_weights([np.full_like(w, np.nan) for w in self.get_weights()])
        return history

    monkeypatch.setattr(models.Sequential, "fit", fit_then_diverge)
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m.fastdl")
    _assert_one_line_error(r, 1, "not finite", "nothing saved")


# --- end to end: the console script ------------------------------------------------------------

def _fastdl(*args, cwd):
    exe = shutil.which("fastdl")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "fastdl.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_console_script_data_error_and_debug(tmp_path):
    (tmp_path / "d.csv").write_text(_csv_rows_with("nan"))
    r = _fastdl("train", "--data", "d.csv", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == "fastdl: error: d.csv: line 3, column 2 ('b'): nan is not a finite number\n"
    assert sorted(os.listdir(tmp_path)) == ["d.csv"]
    r = _fastdl("train", "--data", "d.csv", "--debug", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("fastdl: error: d.csv: line 3")


def test_console_script_usage_error(tmp_path):
    r = _fastdl("train", "--seed", "-1", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("fastdl: error: --seed"), r.stderr
    assert not os.listdir(tmp_path)


# --- errors that are not the data's: a library ValueError is one line, a bug keeps its traceback ----

@pytest.mark.parametrize("raised,expected", [(ValueError("bad\nvalue"), 1), (RuntimeError("a bug"), None)])
def test_other_errors(tmp_path, monkeypatch, capsys, raised, expected):
    from fastdl import models

    def fit(self, *args, **kwargs):
        raise raised

    monkeypatch.setattr(models.Sequential, "fit", fit)
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    if expected is None:
        with pytest.raises(RuntimeError, match="a bug"):
            _train(tmp_path, monkeypatch, capsys, "--data", "d.csv")
        return
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv")
    _assert_one_line_error(r, expected, "bad value", "--debug")


# --- files and sizes that could block, never end, or ask for more memory than there is ------------

def _stored_npz(path, members):
    """A zip of stored members (name: bytes), as np.savez writes, whatever the bytes say."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(array=None, header=None):
    import io
    f = io.BytesIO()
    if header is None:
        np.save(f, array)
    else:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)  # a little data, far less than the header says
    return f.getvalue()


def test_npz_header_declaring_more_data_than_the_archive_holds(tmp_path, monkeypatch, capsys):
    """It used to allocate what the header declares (here 2.98 GiB) before reading the short data."""
    _, y = _xy()
    huge = {"descr": "<f8", "fortran_order": False, "shape": (200000000, 2)}
    _stored_npz(tmp_path / "d.npz", {"x.npy": _npy(header=huge), "y.npy": _npy(y)})
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.npz")
    _assert_one_line_error(r, 1, "d.npz", "'x'", "(200000000, 2)", "declares", "2.98 GiB")


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_member_unpacking_to_more_than_its_bytes_can(tmp_path, monkeypatch, capsys, method):
    """A member's unpacked size, as the zip declares it, is bounded by its packed size: at most
    1032 times for deflate, and equal for stored data."""
    x, y = _xy()
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", compression=method) as z:
        z.writestr("x.npy", _npy(x))
        z.writestr("y.npy", _npy(y))
        info = z.getinfo("x.npy")
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # x.npy's central directory entry: the unpacked size at +24
    assert int.from_bytes(raw[entry + 24:entry + 28], "little") == info.file_size
    raw[entry + 24:entry + 28] = (info.compress_size * 2000 + 1000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.npz")
    _assert_one_line_error(r, 1, "d.npz", "'x'", "unpacks to", "crafted")


def test_npz_member_that_is_not_an_npy_array(tmp_path, monkeypatch, capsys):
    """NpzFile returns a member without the .npy magic as bytes (it used to end in an AttributeError)."""
    _, y = _xy()
    _stored_npz(tmp_path / "d.npz", {"x": b"1,2,3\n" * 20, "y.npy": _npy(y)})
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.npz"), 1,
                           "d.npz", "'x'", "not a .npy array")


def test_npz_larger_than_the_memory_available(tmp_path, monkeypatch, capsys):
    from fastdl import _cli_data
    x, y = _xy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    monkeypatch.setattr(_cli_data, "_available_memory", lambda: 100)
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.npz"), 1,
                           "not enough memory to load d.npz", "100 bytes")


def _array_memory_error():
    try:
        from numpy._core._exceptions import _ArrayMemoryError
        return _ArrayMemoryError((200000000, 2), np.dtype(np.float64))
    except ImportError:  # another NumPy: a MemoryError all the same
        return MemoryError("Unable to allocate 2.98 GiB for an array")


@pytest.mark.parametrize("where", ["load", "fit"])
def test_memory_error_is_one_line(tmp_path, monkeypatch, capsys, where):
    from fastdl import _cli_data, models
    error = _array_memory_error() if where == "fit" else MemoryError()

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(*((models.Sequential, "fit", fail) if where == "fit" else (_cli_data, "load", fail)))
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv")
    if where == "fit":
        _assert_one_line_error(r, 1, "not enough memory to train the model", "GiB")
    else:
        _assert_one_line_error(r, 1, "not enough memory to load --data d.csv")


def _limited_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression fails, not the machine


@pytest.mark.skipif(os.name != "posix" or not os.path.exists("/dev/zero"), reason="needs mkfifo and /dev/zero")
@pytest.mark.parametrize("kind", ["fifo.csv", "fifo.npz", "zero.csv", "zero.npz"])
def test_data_that_is_not_a_regular_file(tmp_path, kind):
    """A FIFO used to block the open for ever, and a link to /dev/zero to read until MemoryError."""
    if kind.startswith("fifo"):
        os.mkfifo(tmp_path / kind)
        words = ["FIFO"]
    else:
        os.symlink("/dev/zero", tmp_path / kind)
        words = ["/dev/zero", "character device"]
    exe = shutil.which("fastdl")
    cmd = [exe] if exe else [sys.executable, "-m", "fastdl.cli"]
    r = subprocess.run(cmd + ["train", "--data", kind, "--no-plot"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, preexec_fn=_limited_memory)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"fastdl: error: --data {kind}") and "regular file" in r.stderr, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == [kind]


# --- the plot, and errors naming the user's paths ------------------------------------------------

def test_plot_path_too_long_is_checked_before_training(tmp_path, monkeypatch, capsys):
    """The model's name fits, the plot's (longer) does not: it used to save the model, then exit 1
    naming a temporary file."""
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    output = "m" * (name_max - len(".fastdl")) + ".fastdl"
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", output, plot=True)
    _assert_one_line_error(r, 1, "history plot", "-history.png", "--no-plot")
    _assert_one_line_error(_train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m" * (name_max + 1)),
                           1, "--output", "file name")
    status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", output)
    assert status == 0 and created == {output}, err  # --no-plot: the plot's name does not matter


def _failing_save(monkeypatch, suffix, error):
    """atomic_write fails as os.replace would, naming the temporary file and the target, for
    paths ending in suffix."""
    from fastdl import _files
    atomic_write = _files.atomic_write

    def failing(path, write):
        if str(path).endswith(suffix):
            temp = os.path.join(os.path.dirname(os.path.abspath(path)), ".fastdl-0123456789ab-0123456789abcdef.tmp")
            raise OSError(error, os.strerror(error), temp, None, os.fspath(path))
        return atomic_write(path, write)

    monkeypatch.setattr(_files, "atomic_write", failing)


def test_plot_failing_after_the_model_is_saved_is_a_warning(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import errno
    _failing_save(monkeypatch, ".png", errno.ENAMETOOLONG)
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m.fastdl",
                                       plot=True)
    assert status == 0 and created == {"m.fastdl"}, err
    assert err == f"fastdl: warning: could not write the plot m-history.png: {os.strerror(errno.ENAMETOOLONG)}: " \
                  f"m-history.png\n", err
    assert "model saved to m.fastdl" in out


def test_model_save_error_names_the_output_not_a_temporary_file(tmp_path, monkeypatch, capsys):
    import errno
    _failing_save(monkeypatch, ".fastdl", errno.ENOSPC)
    (tmp_path / "d.csv").write_text(GOOD_CSV)
    r = _train(tmp_path, monkeypatch, capsys, "--data", "d.csv", "--output", "m.fastdl")
    _assert_one_line_error(r, 1, "m.fastdl", os.strerror(errno.ENOSPC))
    assert ".tmp" not in r[2], r[2]


def test_os_error_messages_name_both_files():
    import errno
    e = OSError(errno.EXDEV, "Invalid cross-device link", "a.fastdl", None, "/mnt/b.fastdl")
    assert cli._error_message(e) == "Invalid cross-device link: a.fastdl -> /mnt/b.fastdl"
    e = OSError(errno.ENAMETOOLONG, "File name too long", "/t/.fastdl-0123456789ab-0123456789abcdef.tmp", None,
                "/t/m.png")
    assert cli._error_message(e) == "File name too long: /t/m.png"


# --- float16 labels ------------------------------------------------------------------------------

def test_float16_labels_train_without_warnings(tmp_path, monkeypatch, capsys):
    """Whole float16 numbers are class ids; the check used to print NumPy's 'overflow encountered
    in cast' RuntimeWarning (2 ** 53 in float16)."""
    import warnings
    x, y = _xy(30)
    np.savez(tmp_path / "d.npz", x=x, y=(np.arange(30) % 3 * 1000).astype(np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, out, err, created = _train(tmp_path, monkeypatch, capsys, "--data", "d.npz", "--output", "m.fastdl")
    assert status == 0 and err == "", err
    assert "30 samples, 3 features, 3 classes" in out and created == {"m.fastdl"}
    for bad, words in ((np.inf, ["y[1]", "inf", "integers or words"]), (0.5, ["y[1]", "0.5", "class id"])):
        y16 = (np.arange(30) % 2).astype(np.float16)
        y16[1] = bad
        np.savez(tmp_path / "d.npz", x=x, y=y16)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = _train(tmp_path, monkeypatch, capsys, "--data", "d.npz")
        _assert_one_line_error(r, 1, *words)

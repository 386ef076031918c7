"""The `fastdl` command: train (digits, .npz, .csv), info, bench."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest


def _fastdl(*args, cwd=None, timeout=300):
    exe = shutil.which("fastdl")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "fastdl.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_console_script_is_installed():
    assert shutil.which("fastdl"), "pip install should put the `fastdl` console script on PATH"


def test_train_main_job(tmp_path):
    r = _fastdl("train", "--epochs", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "1797 samples" in out and "Epoch 8/8" in out
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    f1 = float(out.split("test F1 (macro):")[1].split()[0])
    assert accuracy > 0.9 and f1 > 0.9
    assert (tmp_path / "fastdl-model.fastdl").exists()
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "fastdl-model-history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert "install matplotlib" in out
    from fastdl import models
    model = models.load_model(tmp_path / "fastdl-model.fastdl")
    assert model.output_shape == (10,)


def test_train_a_cnn(tmp_path):
    """--model cnn: the digits as 8x8x1 images through conv-BN-relu-pool x2 with augmentation (a few
    epochs here; the full run's accuracy is in bench/RESULTS.md)."""
    r = _fastdl("train", "--model", "cnn", "--epochs", "3", "--no-plot", "--verbose", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.8
    from fastdl import models
    model = models.load_model(tmp_path / "fastdl-model.fastdl")
    assert model.output_shape == (10,) and model.layers[0].input_shape == (8, 8, 1)
    assert [type(layer).__name__ for layer in model.layers].count("Conv2D") == 2
    bad = np.zeros((20, 5), np.float32), np.arange(20) % 2
    np.savez(tmp_path / "flat.npz", x=bad[0], y=bad[1])
    r = _fastdl("train", "--model", "cnn", "--data", "flat.npz", "--no-plot", cwd=tmp_path)
    assert r.returncode != 0 and "square images" in r.stderr


def test_train_on_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    np.savez(tmp_path / "d.npz", x=x, y=(y == "yes").astype(int))
    r = _fastdl("train", "--data", "d.npz", "--epochs", "5", "--verbose", "0", "--no-plot", "--output", "n.fastdl",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 classes" in r.stdout and (tmp_path / "n.fastdl").exists()
    with open(tmp_path / "d.csv", "w") as f:
        f.write("a,b,label,c,d,e\n")
        for row, label in zip(x, y):
            f.write(f"{row[0]},{row[1]},{label},{row[2]},{row[3]},{row[4]}\n")
    r = _fastdl("train", "--data", "d.csv", "--label-column", "label", "--epochs", "5", "--verbose", "2",
                "--no-plot", "--output", "c.fastdl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "300 samples, 5 features, 2 classes" in r.stdout
    assert float(r.stdout.split("test accuracy:")[1].split()[0]) > 0.8


def test_csv_header_is_told_by_the_feature_cells(tmp_path):
    from fastdl._cli_data import DataError, load
    path = tmp_path / "t.csv"
    path.write_text("1.5,2,cat\n3,4,dog\n")  # a word label in the first row is data, not a header
    x, y, _ = load(str(path), None)
    np.testing.assert_array_equal(x, [[1.5, 2], [3, 4]])
    assert list(y) == ["cat", "dog"]
    path.write_text("cat,1.5,2\ndog,3,4\n")
    x, y, _ = load(str(path), "0")
    np.testing.assert_array_equal(x, [[1.5, 2], [3, 4]])
    assert list(y) == ["cat", "dog"]
    path.write_text("f1,f2,kind\n1.5,2,cat\n")  # a header; one data row
    x, y, _ = load(str(path), "kind")
    np.testing.assert_array_equal(x, [[1.5, 2]])
    assert list(y) == ["cat"]
    with pytest.raises(DataError, match="no column named 'colour'"):
        load(str(path), "colour")
    with pytest.raises(DataError, match="outside"):
        load(str(path), "7")


def test_train_reports_bad_arguments(tmp_path):
    r = _fastdl("train", "--data", "missing.csv", cwd=tmp_path)  # a data error: status 1
    assert r.returncode == 1 and r.stderr == "fastdl: error: --data missing.csv: no such file\n", r.stderr
    r = _fastdl("train", "--epochs", "0", cwd=tmp_path)  # a usage error: status 2
    assert r.returncode == 2 and r.stderr.startswith("fastdl: error: --epochs") and r.stderr.count("\n") == 1


def test_info():
    r = _fastdl("info")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["version"] and info["backend"] in ("cpu", "numpy")


def test_bench_quick():
    r = _fastdl("bench", "--quick", "--only", "relu", "--repeats", "3", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "| relu 1M f32 |" in r.stdout and "GB/s" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--only", "nosuchkernel"], "--only 'nosuchkernel' matches no case"),
    (["--repeats", "0"], "--repeats: must be a positive int, got '0'"),
    (["--repeats", "x"], "--repeats: must be a positive int, got 'x'"),
])
def test_bench_bad_arguments_are_usage_errors(capsys, args, message):
    """They used to print an empty table, or one of NaNs, and exit 0."""
    from fastdl import bench
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--quick", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

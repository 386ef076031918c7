"""save / load_model: identical predictions, exact resume, no pickle, atomic writes, clear errors."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import layers, models


def _trained(rng, compile_=True):
    fastdl.set_seed(0)
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, "gelu"), layers.Dense(8, "leaky_relu"),
                               layers.Dropout(0.2), layers.Dense(3, "softmax")], name="net")
    if compile_:
        model.compile(fastdl.optimizers.Adam(learning_rate=0.01, amsgrad=True), "categorical_crossentropy",
                      metrics=["accuracy", fastdl.metrics.F1Score(average="micro"),
                               fastdl.metrics.BinaryAccuracy(threshold=0.3)])
        x = rng.standard_normal((40, 6)).astype(np.float32)
        model.fit(x, np.eye(3)[rng.integers(0, 3, 40)], epochs=2, batch_size=8, verbose=0)
    return model


def test_load_gives_identical_predictions_and_config(tmp_path, rng):
    model = _trained(rng)
    path = tmp_path / "m.fastdl"
    model.save(path)
    loaded = models.load_model(path)
    x = rng.standard_normal((17, 6))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.name == "net" and [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.layers[1].activation.name == "leaky_relu" and loaded.layers[2].rate == 0.2
    assert [m.name for m in loaded.metrics] == ["accuracy", "f1_score", "binary_accuracy"]
    assert loaded.metrics[1].average == "micro" and loaded.metrics[2].threshold == 0.3
    assert loaded.optimizer.hyperparams == model.optimizer.hyperparams


def test_resume_equals_uninterrupted_training(tmp_path, rng):
    x = rng.standard_normal((48, 6)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 48)]
    model = _trained(rng)
    path = tmp_path / "m.fastdl"
    model.save(path)
    fastdl.set_seed(7)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    resumed = models.load_model(path)
    fastdl.set_seed(7)  # the same shuffles and dropout masks as the uninterrupted run
    resumed.fit(x, y, epochs=3, batch_size=8, verbose=0)
    for a, b in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.optimizer.steps, resumed.optimizer.steps)


def test_file_holds_json_and_npy_only(tmp_path, rng):
    path = tmp_path / "m.fastdl"
    _trained(rng).save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert "fastdl_model.json" in names and "params.npy" in names
        assert all(n.endswith((".json", ".npy")) for n in names)
        config = json.loads(z.read("fastdl_model.json"))
    assert config["format"] == "fastdl-model" and config["format_version"] == 1
    assert config["compile"]["loss"]["name"] == "categorical_crossentropy"


def test_uncompiled_model_roundtrip(tmp_path, rng):
    model = _trained(rng, compile_=False)
    model.save(tmp_path / "u.fastdl")
    loaded = models.load_model(tmp_path / "u.fastdl")
    assert not loaded.compiled
    x = rng.standard_normal((3, 6))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_junk_and_newer_files_raise_clear_errors(tmp_path, rng):
    junk = tmp_path / "junk.fastdl"
    junk.write_bytes(b"\x00not a zip at all")
    with pytest.raises(ValueError, match="not a fastdl model file"):
        models.load_model(junk)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a fastdl model file"):
        models.load_model(other)
    good = tmp_path / "m.fastdl"
    _trained(rng).save(good)
    newer = tmp_path / "newer.fastdl"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "fastdl_model.json":
                cfg = json.loads(data)
                cfg["format_version"] = 99
                data = json.dumps(cfg)
            dst.writestr(item, data)
    with pytest.raises(ValueError, match="newer fastdl"):
        models.load_model(newer)
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.fastdl")


def test_pickled_arrays_are_refused(tmp_path, rng):
    good = tmp_path / "m.fastdl"
    _trained(rng).save(good)
    evil = tmp_path / "evil.fastdl"
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, buf.getvalue() if item == "params.npy" else src.read(item))
    with pytest.raises(ValueError, match="pickle"):
        models.load_model(evil)


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    model = _trained(rng)
    path = tmp_path / "m.fastdl"
    model.save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["m.fastdl"]  # no temporary file left behind


def test_save_leaves_the_umask_alone_and_follows_it(tmp_path, rng, monkeypatch):
    """Saving used to set the process-wide umask to 0 for a moment to read it: another thread
    could create world-writable files meanwhile."""
    model = _trained(rng, compile_=False)
    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError(f"save called os.umask({mask:#o})")
        monkeypatch.setattr(os, "umask", no_umask)
        model.save(tmp_path / "m.fastdl")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "m.fastdl").stat().st_mode & 0o777 == 0o640


def test_a_killed_save_leaves_temporary_files_the_next_save_removes(tmp_path, rng):
    import subprocess
    import sys
    from fastdl import _files
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "m.fastdl"
    killed = ("import os, sys, fastdl\n"
              "from fastdl import layers, models, saving\n"
              "model = models.Sequential([layers.Input((4,)), layers.Dense(2)])\n"
              "def die(f):\n"
              "    f.write(b'half a model')\n"
              "    f.flush()\n"
              "    os._exit(9)  # as a kill: no cleanup runs\n"
              "saving.atomic_write(sys.argv[1], die)\n")
    for _ in range(2):
        assert subprocess.run([sys.executable, "-c", killed, str(path)]).returncode == 9
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".fastdl-")]
    assert len(leftovers) == 2 and all(n.startswith(_files._temp_prefix(path)) for n in leftovers)
    # what must stay: another target's leftover, an unrelated file, and a save in progress (locked)
    other = tmp_path / (_files._temp_prefix(tmp_path / "other.fastdl") + "0123.tmp")
    other.write_bytes(b"x")
    (tmp_path / "notes.tmp").write_bytes(b"x")
    in_progress = tmp_path / (_files._temp_prefix(path) + "beef.tmp")
    with open(in_progress, "wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        _trained(rng, compile_=False).save(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fastdl", other.name, "notes.tmp", in_progress.name])
    models.load_model(path)


# ---- what a save replaces (hostile review: /dev/null became a regular file, links were replaced,
# ---- private files became world-readable, a FIFO hung every later save) --------------------------

def _in_thread(fn, timeout=20):
    """Runs fn in a daemon thread: a regression that blocks fails here instead of hanging the suite."""
    import threading
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed back to the test
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} blocked for {timeout} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_save_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, rng):
    model = _trained(rng, compile_=False)
    real = tmp_path / "real" / "m.fastdl"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "link.fastdl"
    os.symlink(real, link)
    model.save(link)
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert zipfile.is_zipfile(real)
    models.load_model(link)
    assert sorted(os.listdir(tmp_path)) == ["link.fastdl", "real"]  # no temporary file beside the link
    assert os.listdir(real.parent) == ["m.fastdl"]
    dangling = tmp_path / "dangling.fastdl"  # a link to a file not there yet: the file is created
    os.symlink(tmp_path / "real" / "new.fastdl", dangling)
    model.save(dangling)
    assert os.path.islink(dangling) and zipfile.is_zipfile(real.parent / "new.fastdl")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_overwriting_keeps_the_files_permissions(tmp_path, rng, mode):
    model = _trained(rng, compile_=False)
    path = tmp_path / "m.fastdl"
    model.save(path)
    os.chmod(path, mode)
    old = os.umask(0o022)
    try:
        model.save(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o7777 == mode
    os.chmod(path, 0o4755)  # set-id bits are not copied onto a data file
    model.save(path)
    assert path.stat().st_mode & 0o7777 == 0o755


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_save_refuses_a_fifo_and_leaves_it(tmp_path, rng):
    import stat
    model = _trained(rng, compile_=False)
    fifo = tmp_path / "pipe.fastdl"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError, match="FIFO") as info:
        _in_thread(lambda: model.save(fifo))
    assert info.value.filename == str(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # never opened, never replaced
    assert os.listdir(tmp_path) == ["pipe.fastdl"]  # refused before a temporary file was made
    link = tmp_path / "link.fastdl"  # nor through a link to it
    os.symlink(fifo, link)
    with pytest.raises(FileExistsError, match="FIFO"):
        _in_thread(lambda: model.save(link))
    assert os.path.islink(link) and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_save_to_a_directory_raises_is_a_directory_error(tmp_path, rng):
    model = _trained(rng, compile_=False)
    target = tmp_path / "d"
    target.mkdir()
    (target / "inside").write_bytes(b"x")
    for path in (target, str(target) + os.sep):
        with pytest.raises(IsADirectoryError):
            model.save(path)
    assert os.listdir(target) == ["inside"] and sorted(os.listdir(tmp_path)) == ["d"]
    with pytest.raises(IsADirectoryError):  # a name ending in a separator names a directory
        model.save(str(tmp_path / "new") + os.sep)
    assert sorted(os.listdir(tmp_path)) == ["d"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_named_like_a_stale_temporary_file_does_not_block_saves(tmp_path, rng):
    from fastdl import _files
    model = _trained(rng, compile_=False)
    path = tmp_path / "m.fastdl"
    fifo = tmp_path / (_files._temp_prefix(path) + "x.tmp")
    os.mkfifo(fifo)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    link = tmp_path / (_files._temp_prefix(path) + "y.tmp")
    os.symlink(target, link)
    _in_thread(lambda: model.save(path))
    _in_thread(lambda: model.save(path))
    models.load_model(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fastdl", fifo.name, link.name, "elsewhere"])
    assert target.read_bytes() == b"keep"


def test_save_and_load_take_str_bytes_and_path_like_paths(tmp_path, rng):
    model = _trained(rng)
    x = rng.standard_normal((5, 6))
    for path in (str(tmp_path / "s.fastdl"), os.fsencode(tmp_path / "b.fastdl"), tmp_path / "p.fastdl"):
        model.save(path)
        np.testing.assert_array_equal(models.load_model(path).predict(x), model.predict(x))
    assert sorted(os.listdir(tmp_path)) == ["b.fastdl", "p.fastdl", "s.fastdl"]


@pytest.mark.parametrize("path", ["", b""])
def test_save_to_an_empty_path_is_refused(tmp_path, rng, monkeypatch, path):
    model = _trained(rng, compile_=False)
    inner = tmp_path / "cwd"
    inner.mkdir()
    monkeypatch.chdir(inner)
    with pytest.raises(ValueError, match="empty path"):
        model.save(path)
    assert os.listdir(inner) == [] and os.listdir(tmp_path) == ["cwd"]  # nothing written here or in the parent


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_load_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.fastdl"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO") as info:
        _in_thread(lambda: models.load_model(fifo))
    assert info.value.filename == str(fifo)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
def test_root_overwriting_a_users_file_keeps_its_owner(tmp_path, rng):
    model = _trained(rng, compile_=False)
    path = tmp_path / "m.fastdl"
    model.save(path)
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o600)
    model.save(path)
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (12345, 23456, 0o600)


@pytest.mark.parametrize("spec", ["rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion", "sgd_ema", "nadam_ema"])
def test_every_optimizer_resumes_exactly_from_a_file(spec, tmp_path, rng):
    """The state of each Keras optimizer (NAdam's momentum product, use_ema's average) is saved:
    training the loaded model goes on exactly as the saved one does."""
    name, _, ema = spec.partition("_")
    opt = fastdl.optimizers.get(name)
    opt = type(opt)(**dict(opt.get_config(), use_ema=bool(ema), ema_momentum=0.5))
    x = rng.standard_normal((48, 6)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 48)]
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, "tanh"), layers.Dense(3, "softmax")])
    model.compile(opt, "categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for i in range(3):  # steps outside fit: the average and the weights part (fit's end joins them)
        model.train_on_batch(x[i * 8:i * 8 + 8], y[i * 8:i * 8 + 8])
    model.save(tmp_path / "m.fastdl")
    loaded = models.load_model(tmp_path / "m.fastdl")
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    if ema:
        np.testing.assert_array_equal(model._ema, loaded._ema)

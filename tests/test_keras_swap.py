"""Keras 3 programs that run with `import keras` replaced by `import fastdl as keras` (and
`from keras ...` by `from fastdl ...`) and give Keras's results. Each program in tests/keras_swap/ runs twice in a subprocess: once on Keras 3
itself (torch backend; skipped where Keras is not installed) and once with the import swapped.
A program reads its data and initial weights from DATA (an .npz the test writes), so that both
start from the same weights, trains without shuffling, and sets RESULT: a dict of arrays and
numbers, compared here within float32 training noise."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent / "keras_swap"
PROGRAMS = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))

_RUNNER = '''
import json, sys
import numpy as np
DATA = sys.argv[1]
source = open(sys.argv[2]).read()
if sys.argv[3] == "fastdl":  # the only change a user makes
    source = source.replace("import keras", "import fastdl as keras").replace("from keras", "from fastdl")
exec(compile(source, sys.argv[2], "exec"))

def plain(v):
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return np.asarray(v, dtype=np.float64).tolist()

print("RESULT " + json.dumps(plain(RESULT)))
'''


def _run(program, data, flavour):
    env = dict(os.environ, KERAS_BACKEND="torch")
    r = subprocess.run([sys.executable, "-c", _RUNNER, str(data), str(HERE / f"{program}.py"), flavour],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f"{flavour} run of {program} failed:\n{r.stderr[-4000:]}"
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _data(path, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((403, 20)).astype(np.float32)
    labels = np.argmax(x[:, :4] + 0.5 * rng.standard_normal((403, 4)), axis=1)
    arrays = {"x": x, "y": labels, "y_onehot": np.eye(4, dtype=np.float32)[labels],
              "y_binary": (labels == 0).astype(np.float32)}
    for name, shape in {"w16x20": (20, 16), "w8x16": (16, 8), "w4x16": (16, 4), "w4x8": (8, 4), "w1x16": (16, 1)}.items():
        arrays[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])).astype(np.float32)
    for n in (16, 8, 4, 1):
        arrays[f"b{n}"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def _close(ours, theirs, path="RESULT"):
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs), f"{path}: keys {sorted(ours)} vs Keras's {sorted(theirs)}"
        for k in theirs:
            _close(ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, list) and theirs and isinstance(theirs[0], list) and \
            len({np.shape(t) for t in theirs}) > 1:  # a list of arrays of different shapes (weights)
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items vs Keras's {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _close(a, b, f"{path}[{i}]")
    else:
        np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64),
                                   rtol=2e-4, atol=2e-5, err_msg=path)


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_runs_with_the_import_swapped(program, tmp_path):
    data = _data(tmp_path / "data.npz")
    ours = _run(program, data, "fastdl")
    assert ours, "the program sets RESULT"
    if importlib.util.find_spec("keras") is None:  # the oracle (the swapped run above needs no Keras)
        pytest.skip("Keras 3 is not installed: the swapped program ran, the comparison with Keras is skipped")
    theirs = _run(program, data, "keras")
    _close(ours, theirs)

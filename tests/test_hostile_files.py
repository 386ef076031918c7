"""load_model on damaged, crafted and hostile files: a ValueError naming the file and what is
wrong, at once, for any content; no large allocation before the sizes and .npy headers are
compared with what the config implies (issue #8, sections 2 and 3)."""

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastdl
from fastdl import layers, models

_CONFIG = "fastdl_model.json"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(raw bytes, {member: bytes}, config) of a small compiled, trained model's file."""
    fastdl.set_seed(0)
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, "gelu"), layers.Dropout(0.2),
                               layers.Dense(3, "softmax")], name="net")
    model.compile(fastdl.optimizers.Adam(learning_rate=0.01, amsgrad=True), "categorical_crossentropy",
                  metrics=["accuracy", fastdl.metrics.F1Score(average="micro")])
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 6)), np.eye(3)[rng.integers(0, 3, 16)], epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("good") / "m.fastdl"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    return path.read_bytes(), members, json.loads(members[_CONFIG])


def _zip(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _with(members, name, data):
    """members with `name` set to data."""
    return {**members, name: data}


def _edited(config, edit):
    config = json.loads(json.dumps(config))
    edit(config)
    return json.dumps(config).encode()


def _refused(tmp_path, data, match=None, name="bad.fastdl"):
    """Loads data from a file: it must raise ValueError naming the file (and matching `match`)."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError) as info:
        models.load_model(path)
    assert str(path) in str(info.value)
    if match is not None:
        assert match in str(info.value), str(info.value)
    return str(info.value)


def _load_peak(path):
    """(the ValueError loading path raises, the peak of memory traced meanwhile)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            models.load_model(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(info.value), peak


# ---- section 2: files that would cost far more than their size ------------------------------------

_FEW_MB = 8 << 20


def test_weights_bomb_is_refused_before_its_data_is_read(tmp_path, good):
    _, members, _ = good
    bomb = _zip(_with(members, "params.npy", _npy(np.zeros(25_000_000, np.float32))))  # 100 MB of zeros
    assert len(bomb) < 1_000_000
    path = tmp_path / "bomb.fastdl"
    path.write_bytes(bomb)

    message, peak = _load_peak(path)
    assert peak < _FEW_MB  # the old loader read all 100 MB (twice) before comparing
    assert "params.npy holds float32[25000000] but the model's architecture needs float32[83]" in message


def test_huge_layer_in_a_small_config_is_refused_before_building(tmp_path, good):
    _, members, config = good

    def huge(c):
        c["model"]["layers"][1]["config"]["units"] = 10_000_000
    path = tmp_path / "huge.fastdl"
    path.write_bytes(_zip(_with(members, _CONFIG, _edited(config, huge))))
    assert path.stat().st_size < 5000

    message, peak = _load_peak(path)
    assert peak < _FEW_MB  # the old loader allocated and initialised the 400 MB model first
    assert "params.npy holds float32[83] but the model's architecture needs float32[100000003]" in message


def test_config_bomb_is_refused_before_it_is_read(tmp_path, good):
    _, members, config = good
    padded = json.dumps(config).encode()[:-1] + b" " * (50 << 20) + b"}"  # 50 MB, valid JSON
    path = tmp_path / "config-bomb.fastdl"
    path.write_bytes(_zip(_with(members, _CONFIG, padded)))
    assert path.stat().st_size < 1_000_000

    message, peak = _load_peak(path)
    assert peak < _FEW_MB
    assert "the model config is 52,4" in message


def test_optimizer_state_bomb_is_refused(tmp_path, good):
    _, members, _ = good
    bomb = _with(members, "optimizer/exp_avg.npy", _npy(np.zeros(10_000_000, np.float32)))
    path = tmp_path / "state-bomb.fastdl"
    path.write_bytes(_zip(bomb))
    message, peak = _load_peak(path)
    assert peak < _FEW_MB and str(path) in message
    assert "optimizer/exp_avg.npy holds float32[10000000] but the model's architecture needs float32[83]" in message


def test_many_layers_build_the_model_once(tmp_path, good, monkeypatch):
    """Each add used to build the model again (cost: layers x model size); a load builds it once."""
    _, members, config = good
    n = 300

    def many(c):
        c["model"]["layers"][3:3] = [{"class": "Activation", "config": {"name": f"act{i}", "activation": "relu"}}
                                     for i in range(n)]
    path = tmp_path / "many.fastdl"
    path.write_bytes(_zip(_with(members, _CONFIG, _edited(config, many))))
    calls = []
    original = layers.Layer._build
    monkeypatch.setattr(layers.Layer, "_build", lambda self, shape: calls.append(1) or original(self, shape))
    model = models.load_model(path)
    assert len(model.layers) == n + 3  # the Input is not among model.layers (Keras 3)
    assert len(calls) <= 2 * (n + 3)  # once to count the parameters, once to build: not n * n / 2


# ---- section 3: every damaged file raises ValueError ---------------------------------------------------

def _patch_zip_headers(data, local_offset, central_offset, value):
    """Sets a 2-byte field of every local and central header (e.g. the compression method)."""
    data = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = 0
        while (start := data.find(sig, start)) != -1:
            if offset is not None:
                data[start + offset:start + offset + 2] = struct.pack("<H", value)
            start += 4
    return bytes(data)


def _encrypted_flag(data):
    data = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(sig, start)) != -1:
            data[start + offset] |= 1
            start += 4
    return bytes(data)


def _duplicated(members):
    buf = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("params.npy", _npy(np.zeros(83, np.float32)))
    return buf.getvalue()


ARCHIVES = {
    "empty file": lambda raw, m: b"",
    "not a zip": lambda raw, m: b"\x00not a zip at all",
    "truncated in the middle": lambda raw, m: raw[:len(raw) // 2],
    "truncated central directory": lambda raw, m: raw[:-10],
    "encrypted members": lambda raw, m: _encrypted_flag(raw),
    "unknown compression method": lambda raw, m: _patch_zip_headers(raw, 8, 10, 99),
    "zip version 14.8 needed": lambda raw, m: _patch_zip_headers(raw, None, 6, 148),
    "duplicate member names": lambda raw, m: _duplicated(m),
    "bad CRC": lambda raw, m: _zip(m, zipfile.ZIP_STORED).replace(b"\x00" * 8, b"\x01" * 8, 1),
    "no config member": lambda raw, m: _zip({k: v for k, v in m.items() if k != _CONFIG}),
    "no params member": lambda raw, m: _zip({k: v for k, v in m.items() if k != "params.npy"}),
    "no optimizer member": lambda raw, m: _zip({k: v for k, v in m.items() if k != "optimizer/exp_avg_sq.npy"}),
    "an extra member": lambda raw, m: _zip(_with(m, "extra.npy", b"")),
    "config of 0xff bytes": lambda raw, m: _zip(_with(m, _CONFIG, b"\xff" * 50)),
}


@pytest.mark.parametrize("damage", sorted(ARCHIVES))
def test_damaged_archives_raise_value_error(tmp_path, good, damage):
    raw, members, _ = good
    _refused(tmp_path, ARCHIVES[damage](raw, members))


def _header(descr, fortran, shape, version=b"\x01\x00"):
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    return _raw_header(text, version)


def _raw_header(text, version=b"\x01\x00"):
    text = text.ljust(118) + "\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text.encode("latin1")


NPY = {  # crafted params.npy members (the architecture needs float32[83])
    "float64": _npy(np.zeros(83, np.float64)),
    "int32": _npy(np.zeros(83, np.int32)),
    "2-D fortran": _npy(np.asfortranarray(np.zeros((9, 11), np.float32))),
    "0-D": _npy(np.float32(1)),
    "object dtype": _header("|O", False, (83,)) + b"\x00" * 8 * 83,
    "structured dtype": _npy(np.zeros(83, [("a", "<f4")])),
    "negative shape": _header("<f4", False, (-83,)),
    "huge shape": _header("<f4", False, (2 ** 62,)),
    "right header, short data": _header("<f4", False, (83,)) + b"\x00" * 10,
    "right header, extra data": _header("<f4", False, (83,)) + b"\x00" * 336,
    "bad magic": b"\x93NUMPX\x01\x00" + b"\x00" * 500,
    "version 9.9": _header("<f4", False, (83,), b"\x09\x09") + b"\x00" * 332,
    "header not a dict": _raw_header("[1, 2, 3]") + b"\x00" * 332,
    "header missing keys": _raw_header("{'descr': '<f4'}") + b"\x00" * 332,
    "header unbalanced (tokenize error)": _raw_header("{'descr': '<f4', 'shape': ((((((") + b"\x00" * 332,
    "header nested deeply": _raw_header("{'descr': '<f4', 'shape': " + "(" * 2000) + b"\x00" * 332,
    "bad descr": _header("<q9", False, (83,)) + b"\x00" * 332,
    "header not latin1 text": b"\x93NUMPY\x03\x00" + struct.pack("<I", 4) + b"\xff\xfe\xfd\n",
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(NPY))
def test_crafted_npy_headers_raise_value_error(tmp_path, good, case):
    _, members, _ = good
    _refused(tmp_path, _zip(_with(members, "params.npy", NPY[case])), "params.npy")


def test_weights_of_the_other_byte_order_load(tmp_path, good):
    _, members, _ = good
    params = np.load(io.BytesIO(members["params.npy"]))
    path = tmp_path / "big-endian.fastdl"
    path.write_bytes(_zip(_with(members, "params.npy", _npy(params.astype(">f4")))))
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in models.load_model(path).get_weights()]), params)


def _set(*keys, value):
    def edit(c):
        for key in keys[:-1]:
            c = c[key]
        c[keys[-1]] = value
    return edit


def _drop(*keys):
    def edit(c):
        for key in keys[:-1]:
            c = c[key]
        del c[keys[-1]]
    return edit


CONFIGS = {
    "not an object": _set("model", value=None),
    "format_version true": _set("format_version", value=True),
    "format_version 0": _set("format_version", value=0),
    "format_version '1'": _set("format_version", value="1"),
    "format missing": _drop("format"),
    "model class unknown": _set("model", "class", value="Functional"),
    "model name a list": _set("model", "name", value=["x"]),
    "layers not a list": _set("model", "layers", value={"a": 1}),
    "layers empty": _set("model", "layers", value=[]),
    "layers of strings": _set("model", "layers", value=["Dense"]),
    "unknown layer class": _set("model", "layers", 1, "class", value="Conv2D"),
    "layer class a list": _set("model", "layers", 1, "class", value=["Dense"]),
    "layer config a list": _set("model", "layers", 1, "config", value=[1]),
    "units 'x'": _set("model", "layers", 1, "config", "units", value="x"),
    "units true": _set("model", "layers", 1, "config", "units", value=True),
    "units 0": _set("model", "layers", 1, "config", "units", value=0),
    "units 1e400": _set("model", "layers", 1, "config", "units", value=float("inf")),
    "units 4": _set("model", "layers", 1, "config", "units", value=4),
    "unknown activation": _set("model", "layers", 1, "config", "activation", value="swish2"),
    "activation a list": _set("model", "layers", 1, "config", "activation", value=["relu"]),
    "unknown layer argument": _set("model", "layers", 1, "config", "filters", value=3),
    "layer name a number": _set("model", "layers", 1, "config", "name", value=7),
    "layer names repeated": lambda c: c["model"]["layers"][3]["config"].update(
        name=c["model"]["layers"][1]["config"]["name"]),
    "dropout rate 'x'": _set("model", "layers", 2, "config", "rate", value="x"),
    "dropout seed a dict": _set("model", "layers", 2, "config", "seed", value={"a": 1}),
    "an Input in the middle": _set("model", "layers", 2, value={"class": "InputLayer", "config": {"shape": [8]}}),
    "input shape negative": _set("model", "input_shape", value=[-6]),
    "input shape differs from Input": _set("model", "input_shape", value=[7]),
    "input shape huge": _set("model", "input_shape", value=[2 ** 40, 2 ** 40]),
    "input shape missing": _drop("model", "input_shape"),
    "input shape of bools": _set("model", "input_shape", value=[True]),
    "input of 2 axes into Dense": _set("model", "layers", 0, "config", "shape", value=[2, 3]),
    "compile not an object": _set("compile", value=[1]),
    "unknown optimizer": _set("compile", "optimizer", "name", value="lion"),
    "optimizer name a list": _set("compile", "optimizer", "name", value=["adam"]),
    "optimizer argument unknown": _set("compile", "optimizer", "config", "momentum2", value=1),
    "learning rate 'x'": _set("compile", "optimizer", "config", "learning_rate", value="x"),
    "unknown schedule": _set("compile", "optimizer", "config", "learning_rate", value={"schedule": "Nope",
                                                                                      "config": {}}),
    "schedule config junk": _set("compile", "optimizer", "config", "learning_rate", value={"schedule": "StepDecay",
                                                                                          "config": [1]}),
    "unknown loss": _set("compile", "loss", "name", value="hinge2"),
    "loss argument unknown": _set("compile", "loss", "config", "gamma", value=2),
    "unknown metric": _set("compile", "metrics", 0, "class", value="AUCX"),
    "metric argument unknown": _set("compile", "metrics", 0, "config", "k", value=5),
    "metric name a list": _set("compile", "metrics", 0, "config", "name", value=["x"]),
    "metrics not a list": _set("compile", "metrics", value="accuracy"),
    "metric names repeated": _set("compile", "metrics", 1, "config", "name", value="accuracy"),
    "state names not a list": _set("compile", "optimizer_state", "names", value="exp_avg"),
    "state names repeated": _set("compile", "optimizer_state", "names", value=["exp_avg", "exp_avg", "exp_avg_sq"]),
    "state name unknown": _set("compile", "optimizer_state", "names",
                               value=["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "w"]),
    "state class wrong": _set("compile", "optimizer_state", "class", value="SGD"),
    "state hyperparams junk": _set("compile", "optimizer_state", "hyperparams", "zeta", value=1),
    "state hyperparams a list": _set("compile", "optimizer_state", "hyperparams", value=[1]),
    "state iterations 'x'": _set("compile", "optimizer_state", "iterations", value="x"),
    "state iterations -1": _set("compile", "optimizer_state", "iterations", value=-1),
    "state iterations 2**63": _set("compile", "optimizer_state", "iterations", value=2 ** 63),
    "state iterations 10**400": _set("compile", "optimizer_state", "iterations", value=10 ** 400),
    "schedule overflowing at the saved step": lambda c: c["compile"]["optimizer_state"].update(
        iterations=2 ** 40, hyperparams={**c["compile"]["optimizer_state"]["hyperparams"], "lr": {
            "schedule": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.01, "decay_steps": 1, "decay_rate": 2.0}}}),
    "state without amsgrad": _set("compile", "optimizer_state", "hyperparams", "amsgrad", value=False),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_edited_configs_raise_value_error(tmp_path, good, case):
    _, members, config = good
    _refused(tmp_path, _zip(_with(members, _CONFIG, _edited(config, CONFIGS[case]))))


@pytest.mark.parametrize("text", [b"[" * 100_000, b'{"format": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b"{" * 3000, b"NaN", b"1" * 5000, b"", b"\x00"],
                         ids=["100000 [", "5000 nested lists", "3000 {", "NaN", "an int of 5000 digits", "empty",
                              "NUL"])
def test_malformed_json_raises_value_error(tmp_path, good, text):
    _, members, _ = good
    _refused(tmp_path, _zip(_with(members, _CONFIG, text)))


def test_missing_or_unreadable_files_raise_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.fastdl")
    with pytest.raises(IsADirectoryError):
        models.load_model(tmp_path)


# ---- the property: any damage ends in a valid model or a ValueError naming the file ------------------

def _json_paths(value, path=()):
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _json_paths(item, path + (key,))


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(),
                         st.text(max_size=8), st.lists(st.integers(), max_size=3),
                         st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
                         st.integers(1, 60).map(lambda depth: json.loads("[" * depth + "]" * depth)))


@st.composite
def damaged_files(draw, good):
    raw, members, config = good
    kind = draw(st.sampled_from(["truncate", "flip", "json", "member", "member bytes"]))
    if kind == "truncate":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "json":
        path = draw(st.sampled_from(list(_json_paths(config))[1:]))
        if draw(st.booleans()):
            edit = _drop(*path)
        else:
            edit = _set(*path, value=draw(_JSON_VALUES))
        return _zip(_with(members, _CONFIG, _edited(config, edit)))
    name = draw(st.sampled_from(sorted(members)))
    changed = dict(members)
    if kind == "member":
        action = draw(st.sampled_from(["remove", "swap", "add"]))
        if action == "remove":
            del changed[name]
        elif action == "swap":
            changed[name] = members[draw(st.sampled_from(sorted(members)))]
        else:
            changed[draw(st.sampled_from(["optimizer/x.npy", "params.npy.bak", "a/" + name]))] = members[name]
        return _zip(changed)
    data = bytearray(members[name])
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    changed[name] = bytes(data)
    return _zip(changed, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))


def test_any_damage_gives_a_valid_model_or_a_value_error(tmp_path, good):
    path = tmp_path / "damaged.fastdl"

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=damaged_files(good))
    def check(data):
        path.write_bytes(data)
        try:
            model = models.load_model(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            return
        assert model.predict(np.zeros((2, 6))).shape == (2, 3)  # what loads is a working model

    check()


# ---- archives of many members: refused before any per-member work -------------------------------

def test_an_archive_of_many_members_is_refused_at_once(tmp_path, good):
    _, members, _ = good
    many = dict(members)
    many.update((f"m{i}", b"") for i in range(5000))
    message = _refused(tmp_path, _zip(many), "5,00")
    assert "members" in message and "at most 64" in message
    buf = io.BytesIO()  # also with a repeated name among them: the count is what is refused
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as z:
        for i in range(5000):
            z.writestr(f"m{i}", b"")
        z.writestr("m0", b"")
    assert "at most 64" in _refused(tmp_path, buf.getvalue(), name="dup.fastdl")


def test_repeated_member_names_are_found_in_linear_work(monkeypatch):
    """The check for repeated names compared every name with every other (list.count in a loop):
    40,000 members took 10 s. Counted here as string comparisons, with the member bound lifted."""
    import types
    from fastdl import saving

    class Name(str):
        compared = 0

        def __eq__(self, other):
            Name.compared += 1
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    n = 2000
    infos = [types.SimpleNamespace(filename=Name(f"m{i}")) for i in range(n)] + [types.SimpleNamespace(
        filename=Name("m7"))]
    monkeypatch.setattr(saving, "_MAX_MEMBERS", 10 ** 6)
    with pytest.raises(ValueError, match="same name"):
        saving._members(types.SimpleNamespace(infolist=lambda: infos), 1 << 20)
    assert Name.compared < 10 * n, Name.compared


# ---- optimizer state that no save writes and the next step would fail on or be poisoned by ----------

def _state_member(members, name, edit):
    values = np.load(io.BytesIO(members[name]))
    return _with(members, name, _npy(edit(values.copy())))


def _put(index, value, dtype=None):
    def edit(a):
        a = a if dtype is None else a.astype(dtype)
        a[index] = value
        return a
    return edit


STATES = {
    "steps 2**63-1": ("optimizer/steps.npy", _put(0, 2 ** 63 - 1), "step count"),
    "steps 2**62": ("optimizer/steps.npy", _put(0, 2 ** 62), "step count"),
    "steps -1": ("optimizer/steps.npy", _put(0, -1), "step count"),
    "steps uint64 2**64-1": ("optimizer/steps.npy", _put(0, 2 ** 64 - 1, np.uint64), "step count"),
    "exp_avg_sq negative": ("optimizer/exp_avg_sq.npy", _put(5, -1e-3), "negative"),
    "exp_avg_sq -inf": ("optimizer/exp_avg_sq.npy", _put(0, -np.inf), "negative"),
    "exp_avg_sq NaN": ("optimizer/exp_avg_sq.npy", _put(3, np.nan), "NaN"),
    "max_exp_avg_sq negative": ("optimizer/max_exp_avg_sq.npy", _put(slice(None), -1.0), "negative"),
    "max_exp_avg_sq NaN": ("optimizer/max_exp_avg_sq.npy", _put(-1, np.nan), "NaN"),
}


@pytest.mark.parametrize("case", sorted(STATES))
def test_impossible_optimizer_state_is_refused_at_load(tmp_path, good, case):
    _, members, _ = good
    name, edit, match = STATES[case]
    message = _refused(tmp_path, _zip(_state_member(members, name, edit)), match)
    assert name in message


def test_a_file_with_step_counts_near_the_bound_loads_and_trains(tmp_path, good):
    _, members, config = good
    edited = _state_member(members, "optimizer/steps.npy", _put(0, 2 ** 62 - 1))
    edited = _with(edited, _CONFIG, _edited(config, _set("compile", "optimizer_state", "iterations", value=2 ** 62 - 1)))
    path = tmp_path / "old.fastdl"
    path.write_bytes(_zip(edited))
    model = models.load_model(path)
    model.fit(np.zeros((4, 6)), np.eye(3)[[0, 1, 2, 0]], epochs=1, verbose=0)
    assert np.all(np.isfinite(model.get_weights()[0]))


def test_a_diverged_model_still_loads(tmp_path, good):
    """NaN moments beside NaN weights are what a run that diverged saves: not refused."""
    _, members, _ = good
    edited = _state_member(members, "params.npy", _put(3, np.nan))
    for name in ("optimizer/exp_avg.npy", "optimizer/exp_avg_sq.npy", "optimizer/max_exp_avg_sq.npy"):
        edited = _state_member(edited, name, _put(3, np.nan))
    path = tmp_path / "diverged.fastdl"
    path.write_bytes(_zip(edited))
    assert np.isnan(np.concatenate([w.ravel() for w in models.load_model(path).get_weights()])[3])

"""The model file: one zip archive holding

    fastdl_model.json     format name and version, fastdl version, architecture, compile settings
    params.npy            the model's parameter buffer (all weights, float32)
    optimizer/*.npy       the optimizer's state (steps, state arrays; model_ema: use_ema's average), when compiled

Arrays are NumPy .npy data read with allow_pickle=False, the config is JSON: nothing in the file
can execute code when loaded. The file is written by _files.atomic_write: to a temporary name in
the same directory, renamed over the target, so a crash never leaves a half-written model
behind. A symlink is followed (the file it points to is replaced, the link stays), a replaced
file keeps its permission bits, and a target that is not a regular file (a device, FIFO, socket
or directory) is refused rather than replaced.

Loading treats the file as untrusted: every member's declared size, the .npy headers and the
parameter count the config implies are compared before the model is built or any array read,
so that a damaged or crafted file costs no more than its real content and raises ValueError.
"""

import errno
import io
import json
import math
import os
import reprlib
import stat
import zipfile
import zlib

import numpy as np

from . import __version__, _files, layers as layers_module, losses, metrics as metrics_module, optimizers
from ._files import atomic_write  # noqa: F401 (fastdl.saving.atomic_write, its name before _files)
from .optim.optimizer import MAX_STEPS

FORMAT = "fastdl-model"
FORMAT_VERSION = 1
_CONFIG = "fastdl_model.json"
_MAX_CONFIG_BYTES = 2 << 20  # a real config is a few KB (about 200 bytes a layer)
_MAX_MEMBERS = 64  # a fastdl file has the config, params.npy, the optimizer's steps, <= 3 state arrays and an EMA
_CHUNK = 4 << 20  # arrays are read in pieces of this size, straight into their final buffers


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def save_model(model, filepath, overwrite=True):
    """Keras's keras.saving.save_model: model.save(filepath) (a .keras name: Keras 3's format)."""
    path = os.fsdecode(os.fspath(filepath))
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    model.save(filepath)


def _save_native(model, path):
    """fastdl's own model file (see the module docstring)."""
    model._require_built()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastdl_version": __version__,
        "model": {"class": type(model).__name__, **model.get_config()},
        "compile": None,
    }
    host = model._device.host  # a GPU model's arrays are written from host copies
    arrays = {"params.npy": host(model._params)}
    if model.compiled:
        config["compile"] = {
            "optimizer": {"name": model._optimizer_spec.name, "config": model._optimizer_spec.get_config()},
            # the class's registered name (a loss's own `name` may be any label; its config keeps it)
            "loss": None if model.loss is None else {"name": type(model.loss).name, "config": model.loss.get_config()},
            "metrics": [dict({"class": type(m).__name__, "config": m.get_config()},
                             **({"weighted": True} if id(m) in model._weighted_metrics else {}))
                        for m in model.metrics],
        }
        if model.optimizer is not None:
            # one array per state name over the whole parameter buffer, whichever layers train
            state, full, steps = model._optimizer_state_full()
            if model._ema is not None and model._optimizer_spec.use_ema:
                full["model_ema"] = host(model._ema)  # use_ema's moving average of the weights
            config["compile"]["optimizer_state"] = {"class": state["optimizer"], "hyperparams": state["hyperparams"],
                                                    "iterations": state["iterations"], "names": sorted(full),
                                                    "scalars": state["scalars"]}
            arrays["optimizer/steps.npy"] = np.array([steps], dtype=np.int64)
            for name, values in full.items():
                arrays[f"optimizer/{name}.npy"] = values

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_CONFIG, json.dumps(config, indent=1))
            for name, array in arrays.items():
                z.writestr(name, _npy(array))

    _files.atomic_write(path, write)  # looked up at the call: tests patch it there


class _Damaged(ValueError):
    """What is wrong with a model file's content (load_model adds the file's path)."""


# What zipfile and zlib raise on damaged archives that the checks before reading cannot foresee
# (a bad CRC, a truncated or corrupt deflate stream, bad offsets).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def load_model(path, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model written by save_model, or a Keras 3 .keras file (fastdl._keras_file; compile=False
    skips its compile settings and optimizer state; safe_mode is always on: nothing in a file runs). A file whose content is damaged, crafted or not a
    fastdl model raises ValueError naming the file and what is wrong, before any large
    allocation: sizes, .npy headers and the parameter count the config implies are compared
    first, and arrays are then read in pieces straight into the model's buffers. A missing or
    unreadable file raises OSError as open() does, and so does a path that is not a regular file
    (a directory, device, FIFO or socket: opening a FIFO would block). path may be a str, bytes
    or os.PathLike."""
    path = os.fsdecode(os.fspath(path))
    if custom_objects:
        raise ValueError(f"custom_objects={sorted(custom_objects)!r}: fastdl builds models from its own layers, "
                         f"losses and metrics only (a file that needs custom objects cannot be read)")
    with _files.open_regular(path, _refuse_non_regular) as f:
        try:
            if _is_keras_archive(path, f):
                from . import _keras_file
                return _keras_file.load_model(f, compile=compile)
            return _load(f)
        except _Damaged as exc:
            raise ValueError(f"{path}: {exc}") from exc.__cause__
        except ValueError as exc:  # raised by a layer, optimizer, loss or metric given the file's settings
            raise ValueError(f"{path}: {_brief(exc)}") from exc
        except _ARCHIVE_ERRORS as exc:
            raise ValueError(f"{path}: the model file is damaged ({type(exc).__name__}: {_brief(exc)})") from exc
        except OSError as exc:
            if exc.errno is not None and exc.errno != errno.EINVAL:
                raise  # a failing disk is not damaged content
            raise ValueError(f"{path}: the model file is damaged ({_brief(exc)})") from exc


def _is_keras_archive(path, f):
    """A .keras name, or a zip holding Keras's config.json and not fastdl's config."""
    if path.endswith(".keras"):
        return True
    try:
        with zipfile.ZipFile(f) as z:
            names = set(z.namelist()[:_MAX_MEMBERS + 1])
    except _ARCHIVE_ERRORS + (NotImplementedError, ValueError, OSError):
        names = set()
    f.seek(0)
    return _CONFIG not in names and "config.json" in names


def _refuse_non_regular(path, st):
    """The OSError open() would raise for a path that is not a regular file."""
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "cannot load a model from a directory", path)
    raise OSError(errno.EINVAL, f"cannot load a model from {_files.file_kind(st.st_mode)}: a model file is a regular "
                                f"file", path)


def _load(f):
    from .models import Sequential

    try:
        z = zipfile.ZipFile(f)
    except _ARCHIVE_ERRORS + (NotImplementedError,) as exc:  # NotImplementedError: a 'zip version' beyond 6.3
        raise _Damaged(f"not a fastdl model file ({_brief(exc)})") from None
    with z:
        members = _members(z, os.fstat(f.fileno()).st_size)
        config = _read_config(z, members)
        spec = _model_spec(config)
        built = [_construct(f"layer {i} ({entry['class']})", layers_module.from_config, entry["class"],
                            entry["config"]) for i, entry in enumerate(spec["layers"])]
        input_shape = _input_shape(spec, built)
        n_params = _count_params(built, input_shape)
        compiled = _compile_spec(config.get("compile"))
        arrays = {"params.npy": ((n_params,), "f")}
        if compiled is not None and compiled["state"] is not None:
            arrays["optimizer/steps.npy"] = ((1,), "iu")
            arrays.update((f"optimizer/{name}.npy", ((n_params,), "f")) for name in compiled["state"]["names"])
        unexpected = sorted(set(members) - set(arrays) - {_CONFIG})
        if unexpected:
            raise _Damaged(f"the model file has members it should not have: {_short(unexpected)}")
        headers = {name: _npy_header(z, members, name, *want) for name, want in arrays.items()}

        # Everything is checked: build the model (one allocation of its real size) and fill it.
        first = built[0]
        declared, first.input_shape = first.input_shape, None  # or each add would build the model again
        model = Sequential(built, name=spec.get("name"))
        first.input_shape = declared
        model.build(input_shape)
        if model._device.kind == "cpu":
            _read_into(z, members["params.npy"], headers["params.npy"], model._params)
        else:  # loaded inside `with fastdl.device("gpu")`: read on the host, then one copy
            params = np.empty(model._params.shape, dtype=np.float32)
            _read_into(z, members["params.npy"], headers["params.npy"], params)
            model._params[...] = model._device.put(params)
        if compiled is not None:
            model.compile(optimizer=compiled["optimizer"], loss=compiled["loss"], metrics=compiled["metrics"],
                          weighted_metrics=compiled["weighted_metrics"])
            saved = compiled["state"]
            if saved is not None:
                state = {name: [_read_array(z, members, headers, f"optimizer/{name}.npy")] for name in saved["names"]}
                steps = _read_array(z, members, headers, "optimizer/steps.npy")
                _check_optimizer_arrays(steps, state, model._device.host(model._params))
                ema = state.pop("model_ema", None)
                if ema is not None and model._optimizer_spec.use_ema:
                    model._ema = model._device.put(ema[0])
                header = {"optimizer": saved["class"], "hyperparams": saved["hyperparams"],
                          "iterations": saved["iterations"], "scalars": saved["scalars"]}
                _construct("the optimizer state", model.optimizer.load_state_dict, model._optimizer_state_dict(
                    header, {name: arrays[0] for name, arrays in state.items()}, int(steps[0])))
                _construct("the optimizer's learning rate at the saved step", _check_lr, model.optimizer)
    return model


def _check_optimizer_arrays(steps, state, params):
    """Refuses optimizer state that no save writes and that would fail or poison the next step:
    step counts outside [0, MAX_STEPS) (the first step would overflow), and second moments
    (Adam's exp_avg_sq, max_exp_avg_sq: running means of squares) below 0 or NaN where the
    weight is not NaN (their square roots would make the weights NaN; a run that diverged has
    NaN moments only beside NaN weights, and such a file still loads)."""
    bad = [int(v) for v in steps if not 0 <= v < MAX_STEPS]
    if bad:
        raise _Damaged(f"optimizer/steps.npy holds the step count {bad[0]:,}; step counts are in [0, 2**62)")
    for name in ("exp_avg_sq", "max_exp_avg_sq"):
        if name in state:
            values = state[name][0]
            negative = int(np.count_nonzero(values < 0))
            if negative:
                raise _Damaged(f"optimizer/{name}.npy holds {negative:,} negative values: a mean of squares is >= 0")
            nan = int(np.count_nonzero(np.isnan(values) & ~np.isnan(params)))
            if nan:
                raise _Damaged(f"optimizer/{name}.npy holds {nan:,} NaN values beside weights that are not NaN")


def _check_lr(optimizer):
    """The learning rate the next step would use: a schedule at the saved iteration count may
    overflow or give a value the step refuses."""
    lr = optimizer.lr
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"the learning rate would be {lr}")


def _members(z, archive_size):
    """The archive's members by name (_files.zip_members: what fastdl never writes refused, sizes
    checked; an archive of more than _MAX_MEMBERS refused before any member is looked at)."""
    try:
        members = _files.zip_members(z, archive_size, _MAX_MEMBERS, "the model file")
    except _files.BadContent as exc:
        raise _Damaged(f"not a fastdl model file: {exc}" if "members;" in str(exc) else str(exc)) from None
    if _CONFIG not in members:
        raise _Damaged(f"not a fastdl model file (no {_CONFIG})")
    return members


def _read_config(z, members):
    """The parsed JSON config, its size bounded before it is read."""
    info = members[_CONFIG]
    if info.file_size > _MAX_CONFIG_BYTES:
        raise _Damaged(f"the model config is {info.file_size:,} bytes, more than the {_MAX_CONFIG_BYTES:,} a "
                       f"fastdl config may have")
    with z.open(info) as f:
        data = f.read()  # at most file_size bytes: zipfile stops there
    try:
        config = json.loads(data)
    except RecursionError:
        raise _Damaged("the model config is nested too deeply") from None
    except ValueError as exc:
        raise _Damaged(f"the model config is not valid JSON ({_brief(exc)})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise _Damaged("not a fastdl model file")
    version = config.get("format_version")
    if _is_int(version) and version > FORMAT_VERSION:
        raise _Damaged(f"the file was written by a newer fastdl (model format {version}, fastdl "
                       f"{_short(config.get('fastdl_version'))}); this is fastdl {__version__}, which reads "
                       f"format {FORMAT_VERSION}: upgrade fastdl")
    if version != FORMAT_VERSION or not _is_int(version):
        raise _Damaged(f"unknown model format version {_short(version)}")
    return config


def _model_spec(config):
    """config['model'], its structure checked (the layers check their own settings)."""
    spec = config.get("model")
    if not isinstance(spec, dict):
        raise _Damaged("the model config has no 'model' object")
    if spec.get("class") != "Sequential":
        raise _Damaged(f"unknown model class {_short(spec.get('class'))}")
    if not isinstance(spec.get("name", ""), (str, type(None))):
        raise _Damaged(f"the model's name must be a string, got {_short(spec['name'])}")
    entries = spec.get("layers")
    if not isinstance(entries, list) or not entries:
        raise _Damaged("the model config's 'layers' must be a non-empty list")
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("config"), dict)
                and isinstance(entry.get("class"), str) and entry["class"] in layers_module.LAYERS):
            raise _Damaged(f"layer {i} must be {{'class': one of {sorted(layers_module.LAYERS)}, 'config': "
                           f"{{...}}}}, got {_short(entry)}")
        if not isinstance(entry["config"].get("name", ""), (str, type(None))):
            raise _Damaged(f"layer {i}'s name must be a string, got {_short(entry['config']['name'])}")
        if i and entry["class"] == "InputLayer":
            raise _Damaged(f"layer {i} is an Input: only the first layer can be")
    names = [entry["config"].get("name") for entry in entries if entry["config"].get("name") is not None]
    if len(set(names)) != len(names):
        raise _Damaged("the model's layer names are not unique")
    return spec


def _input_shape(spec, built):
    """The model's input shape from the config, which must agree with its first layer's."""
    shape = spec.get("input_shape")
    if not (isinstance(shape, list) and shape and all(_is_int(s) and s >= 1 for s in shape)):
        raise _Damaged(f"the model's input_shape must be a list of positive ints, got {_short(shape)}")
    if built[0].input_shape is not None and tuple(shape) != built[0].input_shape:
        raise _Damaged(f"the model's input_shape {shape} differs from its first layer's "
                       f"{list(built[0].input_shape)}")
    if math.prod(shape) >= 2 ** 62:  # sizes beyond int64, which NumPy's shape arithmetic would wrap
        raise _Damaged(f"the model's input_shape {_short(shape)} is impossibly large")
    return tuple(shape)


def _count_params(built, input_shape):
    """The parameter count the layers imply, computed from their shapes alone (no allocation)."""
    shape, total = input_shape, 0
    for layer in built:
        if isinstance(layer, layers_module.InputLayer):
            continue
        shape = layer._build(shape)
        for _, weight_shape, _ in layer.weight_specs:
            if not all(s >= 1 for s in weight_shape):
                raise _Damaged(f"layer {layer.name} would have a weight of shape {weight_shape}")
            total += math.prod(weight_shape)
    if not any(not isinstance(layer, layers_module.InputLayer) for layer in built):
        raise _Damaged("the model has no layers")
    return total


def _compile_spec(compiled):
    """The compile settings as objects (small, nothing allocated per parameter), or None."""
    if compiled is None:
        return None
    if not isinstance(compiled, dict):
        raise _Damaged(f"the 'compile' settings must be an object, got {_short(compiled)}")
    opt = _entry(compiled.get("optimizer"), "name", optimizers._BY_NAME, "the optimizer")
    loss = compiled.get("loss")
    loss = None if loss is None else _entry(loss, "name", losses._CLASSES, "the loss")
    metrics = compiled.get("metrics", [])
    if not isinstance(metrics, list):
        raise _Damaged(f"the compile settings' 'metrics' must be a list, got {_short(metrics)}")
    metrics = [_entry(m, "class", metrics_module.METRIC_CLASSES, f"metric {i}") for i, m in enumerate(metrics)]
    state = compiled.get("optimizer_state")
    if state is not None:
        names = state.get("names") if isinstance(state, dict) else None
        if not (isinstance(names, list) and all(isinstance(n, str) and n != "steps" for n in names)
                and len(set(names)) == len(names) and isinstance(state.get("hyperparams"), dict)
                and _is_int(state.get("iterations", 0)) and 0 <= state.get("iterations", 0) < MAX_STEPS):
            raise _Damaged(f"the saved optimizer state is malformed: {_short(state)}")
        scalars = state.get("scalars", {})
        if not (isinstance(scalars, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                                  and not isinstance(v, bool) and math.isfinite(v)
                                                  for k, v in scalars.items())):
            raise _Damaged(f"the saved optimizer state's scalars must be {{name: a finite number}}, got "
                           f"{_short(scalars)}")
        state = {"class": state.get("class"), "hyperparams": state["hyperparams"],
                 "iterations": state.get("iterations", 0), "names": names, "scalars": scalars}
    return {
        "optimizer": _construct("the optimizer", optimizers.from_config, opt["name"], opt["config"]),
        "loss": None if loss is None else _construct("the loss", losses.from_config, loss["name"], loss["config"]),
        "metrics": [_construct(f"metric {i}", _metric, m) for i, m in enumerate(metrics) if not m.get("weighted")],
        "weighted_metrics": [_construct(f"metric {i}", _metric, m) for i, m in enumerate(metrics) if m.get("weighted")],
        "state": state,
    }


def _entry(entry, key, known, what):
    """entry checked to be {key: a name in known, 'config': {...}}."""
    if not (isinstance(entry, dict) and isinstance(entry.get(key), str) and entry[key] in known
            and isinstance(entry.get("config"), dict)):
        raise _Damaged(f"{what} must be {{{key!r}: one of {sorted(known)}, 'config': {{...}}}}, got {_short(entry)}")
    if not isinstance(entry["config"].get("name", ""), (str, type(None))):
        raise _Damaged(f"{what}'s name must be a string, got {_short(entry['config']['name'])}")
    return entry


def _construct(what, make, *args):
    """make(*args) for settings from the file: a layer, optimizer, loss or metric rejecting them
    may raise any of these; they become ValueErrors naming `what`."""
    try:
        return make(*args)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise _Damaged(f"{what} has invalid settings ({type(exc).__name__}: {_brief(exc)})") from exc


def _npy_header(z, members, name, shape, kinds):
    """Reads only the .npy header of member `name` and checks it, and the member's declared size,
    against the shape the config implies and a dtype of one of `kinds` ('f': float32, 'iu': an
    integer). Returns (dtype, offset of the data)."""
    info = members.get(name)
    if info is None:
        raise _Damaged(f"the model file has no {name}: it is damaged or not a fastdl model")
    with z.open(info) as f:
        try:
            header = _files.read_npy_header(f)  # its fortran_order does not matter: fastdl keeps 1-D arrays
        except _files.BadContent as exc:
            raise _Damaged(f"{name} is not a valid .npy array ({_brief(exc)})") from None
    dtype = header.dtype
    if dtype.hasobject:
        raise _Damaged(f"{name} holds Python objects, which need pickle; fastdl never loads pickled data")
    ok_dtype = (dtype == np.float32 or dtype == np.dtype(">f4")) if kinds == "f" else \
        (dtype.kind in kinds and dtype.itemsize <= 8 and not dtype.fields)
    if not ok_dtype or tuple(header.shape) != shape:
        expected_dtype = "float32" if kinds == "f" else "an integer dtype"
        raise _Damaged(f"{name} holds {dtype}{list(header.shape)} but the model's architecture needs "
                       f"{expected_dtype}{list(shape)}")
    if info.file_size != header.offset + header.nbytes:
        raise _Damaged(f"{name} is {info.file_size:,} bytes, but its header says {header.offset + header.nbytes:,}")
    return dtype, header.offset


def _read_into(z, info, header, out):
    """Reads a member's data (its header already checked) into `out`, piece by piece."""
    dtype, offset = header
    view = memoryview(out.reshape(-1)).cast("B")
    with z.open(info) as f:
        f.read(offset)
        done = 0
        while done < len(view):
            n = f.readinto(view[done:done + _CHUNK])
            if not n:
                raise _Damaged(f"{info.filename} ends early")
            done += n
    if not dtype.isnative:
        out.byteswap(inplace=True)  # written on a machine of the other byte order


def _read_array(z, members, headers, name):
    """An optimizer array (its header checked) in a new native-order array."""
    dtype, _ = headers[name]
    out = np.empty(int(members[name].file_size - headers[name][1]) // dtype.itemsize, dtype=dtype.newbyteorder("="))
    _read_into(z, members[name], headers[name], out)
    return out


def _metric(entry):
    cls = metrics_module.METRIC_CLASSES[entry["class"]]
    return cls(**entry["config"])


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value):
    """A bounded repr of a value from the file (which may be huge or deeply nested)."""
    return reprlib.repr(value)


def _brief(exc, limit=300):
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- weights alone ------------------------------------------------------------------------------

def _is_h5(path):
    return os.fsdecode(os.fspath(path)).endswith(".h5")


def save_weights(model, path, overwrite=True):
    """The weights in an .npz: 'params' (the parameter buffer) and 'shapes' (each weight's shape);
    a name ending in .h5: Keras's .weights.h5 (fastdl._keras_file)."""
    model._require_built()
    path = os.fsdecode(os.fspath(path))
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    if _is_h5(path):
        from . import _keras_file
        return _keras_file.save_weights(model, path)
    shapes = [list(w.shape) for w in model.weights]
    params = model._device.host(model._params)

    def write(f):
        np.savez(f, params=params, shapes=np.array(json.dumps(shapes)))
    _files.atomic_write(path, write)


def load_weights(model, path):
    path = os.fsdecode(os.fspath(path))
    if _is_h5(path):
        from . import _keras_file
        try:
            return _keras_file.load_weights(model, path)
        except _keras_file.KerasFileError as exc:
            raise ValueError(f"{path}: {exc}") from exc.__cause__
    try:
        with np.load(path, allow_pickle=False) as z:
            params, shapes = z["params"], json.loads(str(z["shapes"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a fastdl weights file ({exc})") from None
    model._require_built()
    want = [list(w.shape) for w in model.weights]
    if shapes != want or params.shape != (int(model._params.size),) or params.dtype != np.float32:
        raise ValueError(f"{path}: its weights have shapes {shapes} but the model's are {want}")
    with model._compute_lock, model._device.activate():
        model._params[...] = model._device.put(params)

"""Keras 3's file formats, both directions: the `.keras` archive and the `.weights.h5` file.

A `.keras` file is a zip of

    metadata.json       {"keras_version": ..., "date_saved": ...}
    config.json         {"module": "keras", "class_name": "Sequential", "config": {..., "layers": [...]},
                         "build_config": ..., "compile_config": {optimizer, loss, metrics, ...}}
    model.weights.h5    HDF5: layers/<class in snake case, numbered: dense, dense_1>/vars/<i> (the layer's weights),
                        optimizer/vars/<i> (iterations, learning rate, then the slots per variable)

as keras.saving.save_model writes it, so keras.models.load_model opens a fastdl model made of
layers both libraries have, and fastdl.models.load_model opens such a file written by Keras.
`.weights.h5` is the HDF5 part alone (model.save_weights / load_weights). HDF5 goes through h5py
(`pip install fastdl[keras]`).

Keras's settings that fastdl does not have are refused by name when they would change the model
(Dense(lora_rank=4), a dtype other than float32, an unknown layer), and ignored when they hold
Keras's default. The optimizer state travels for SGD (Keras keeps m = -lr * torch's momentum
buffer) and Adam / AdamW (the same moments); a file whose optimizer state does not fit the model
loads without it, with a warning, as Keras does.

Loading treats the file as untrusted, as the native loader does: the archive's members and sizes
are checked first (the HDF5 part is read into memory only up to its real size), the JSON is
bounded, and every dataset is checked to be a plain array of the expected shape and a numeric
dtype, stored in the file itself (no external links, external storage or virtual datasets),
before it is read. Nothing is unpickled: h5py reads numbers only.
"""

import datetime
import io
import inspect
import json
import os
import reprlib
import warnings
import zipfile

import numpy as np

from . import __version__, _files, layers as layers_module, losses, metrics as metrics_module, optimizers
from .optim import schedules

KERAS_FORMAT_VERSION = "3.15.1"  # the Keras release whose files this module is checked against
_CONFIG, _METADATA, _WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_MAX_JSON_BYTES = 2 << 20


class KerasFileError(ValueError):
    """What is wrong with a Keras file's content (the loaders add the file's path)."""


def h5py_module():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras's .keras and .weights.h5 files are HDF5 inside: they need h5py "
                          "(pip install 'fastdl[keras]' or pip install h5py)") from None
    return h5py


# ---- fastdl -> Keras ------------------------------------------------------------------------------

_NESTED_KINDS = {"_initializer": "keras.initializers", "_regularizer": "keras.regularizers",
                 "_constraint": "keras.constraints"}


def _nested_module(key):
    """The Keras module of a layer argument that holds an initializer / regularizer / constraint
    (kernel_initializer, gamma_regularizer, embeddings_constraint, ...), else None."""
    return next((module for suffix, module in _NESTED_KINDS.items() if key.endswith(suffix)), None)


def _keras_object(module, class_name, config):
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def _keras_layer(layer):
    """A fastdl layer's entry in Keras's Sequential config."""
    config = layer.get_config()
    cls = type(layer).__name__
    if cls == "InputLayer":
        return _keras_object("keras.layers", "InputLayer", {
            "batch_shape": [None, *layer.input_shape], "dtype": "float32", "sparse": False, "name": config["name"]})
    trainable = config.pop("trainable", True)
    out = {"name": config.pop("name"), "trainable": True if cls == "Normalization" else trainable,
           "dtype": "float32"}
    if cls in ("SpatialDropout1D", "SpatialDropout2D"):  # Keras's take no `trainable` argument
        del out["trainable"]
    for key, value in config.items():
        if _nested_module(key) and isinstance(value, dict):
            value = _keras_object(_nested_module(key), value["class_name"], value["config"])
        out[key] = value
    if cls == "Normalization":
        out["axis"] = [-1]
        out.setdefault("mean", None)
        out.setdefault("variance", None)
    entry = _keras_object("keras.layers", cls, out)
    if layer.input_shape is not None:
        entry["build_config"] = {"input_shape": [None, *layer.input_shape]}
    return entry


_KERAS_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
                     "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "lion": "Lion"}


def _keras_learning_rate(lr):
    value = schedules.to_config(lr)
    if isinstance(value, dict):
        return _keras_object("keras.optimizers.schedules", value["schedule"], value["config"])
    return float(value)


def _compile_config(model):
    spec = model._optimizer_spec
    config = dict(spec.get_config())
    config["learning_rate"] = _keras_learning_rate(spec._config["learning_rate"])
    config.update(name=spec.optimizer_name, loss_scale_factor=None, gradient_accumulation_steps=None)
    optimizer = _keras_object("keras.optimizers", _KERAS_OPTIMIZERS[spec.name], config)
    loss = None if model.loss is None else _keras_object("keras.losses", type(model.loss).__name__,
                                                         model.loss.get_config())

    def metric(m):
        if type(m) is metrics_module.Accuracy:  # 'accuracy': Keras picks the variant from the loss, as fastdl did
            if m.name in ("accuracy", "acc"):
                return m.name
            variant = {"binary": "BinaryAccuracy", "sparse": "SparseCategoricalAccuracy"}.get(
                m.variant or model._accuracy_variant(), "CategoricalAccuracy")
            return _keras_object("keras.metrics", variant, {"name": m.name})
        return _keras_object("keras.metrics", type(m).__name__, m.get_config())
    weighted = [metric(m) for m in model.metrics if id(m) in model._weighted_metrics]
    return {"optimizer": optimizer, "loss": loss, "loss_weights": None,
            "metrics": [metric(m) for m in model.metrics if id(m) not in model._weighted_metrics] or None,
            "weighted_metrics": weighted or None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


def _model_config(model):
    entries = [_keras_layer(layer) for layer in model._layers]
    if not isinstance(model._layers[0], layers_module.InputLayer):
        entries.insert(0, _keras_object("keras.layers", "InputLayer", {
            "batch_shape": [None, *model._input_shape], "dtype": "float32", "sparse": False,
            "name": "input_layer"}))
    config = _keras_object("keras", "Sequential", {
        "name": model.name, "trainable": True, "dtype": "float32", "layers": entries,
        "build_input_shape": [None, *model._input_shape]})
    config["build_config"] = {"input_shape": [None, *model._input_shape]}
    if model.compiled:
        config["compile_config"] = _compile_config(model)
    return config


# The optimizer's Keras variables after iterations (and the learning rate, unless it is a
# schedule), as sections of fastdl state names: a section of k names holds, for each trainable
# variable in turn, its k slots (Keras's interleaved slots: m_0, v_0, m_1, v_1, ...); use_ema's
# averages come first; Nadam's u_product (fastdl's mu_product, one number) comes last. Every slot
# means what fastdl's state means, the specs running Keras's formulas, except SGD's momentum:
# Keras keeps m = -lr b where torch keeps b (m <- mu m - lr g, p += m against b <- mu b + g, p -= lr b).
def _optimizer_layout(spec):
    c, name = spec._config, spec.name
    sections = [["model_ema"]] if c["use_ema"] else []
    sections += {
        "sgd": [["momentum_buffer"]] if c.get("momentum") else [],
        "adam": [["exp_avg", "exp_avg_sq"]] + ([["max_exp_avg_sq"]] if c.get("amsgrad") else []),
        "adamw": [["exp_avg", "exp_avg_sq"]] + ([["max_exp_avg_sq"]] if c.get("amsgrad") else []),
        "rmsprop": [["square_avg"]] + ([["momentum_buffer"]] if c.get("momentum") else []) +
                   ([["grad_avg"]] if c.get("centered") else []),
        "adagrad": [["sum"]],
        "adadelta": [["square_avg", "acc_delta"]],
        "adamax": [["exp_avg", "exp_inf"]],
        "nadam": [["exp_avg", "exp_avg_sq"]],
        "lion": [["exp_avg"]],
    }[name]
    return sections, (["mu_product"] if name == "nadam" else [])


def _slot_order(sections, n_vars):
    """(state name, variable index) for each Keras optimizer variable after iterations and lr."""
    return [(name, k) for names in sections for k in range(n_vars) for name in names]


def _optimizer_arrays(model):
    """The optimizer's variables in Keras's order, or None where there is no state to write."""
    if not model.compiled or model.optimizer is None:
        return None
    spec, opt = model._optimizer_spec, model.optimizer
    state, full, _ = model._optimizer_state_full()
    if model._ema is not None and spec.use_ema:
        full["model_ema"] = model._device.host(model._ema)
    out = [np.array(opt.iterations, dtype=np.int64)]
    if not isinstance(spec._config["learning_rate"], schedules.Schedule):
        out.append(np.array(opt.lr, dtype=np.float32))
    pieces = _trainable_pieces(model)
    sections, scalars = _optimizer_layout(spec)
    sgd_momentum = -float(opt.lr) if spec.name == "sgd" else 1.0
    for name, k in _slot_order(sections, len(pieces)):
        s, e, shape = pieces[k]
        values = full[name][s:e].reshape(shape) if name in full else np.zeros(shape, np.float32)
        if name == "momentum_buffer":
            values = values * np.float32(sgd_momentum)
        out.append(np.asarray(values, dtype=np.float32))
    out.extend(np.array(state["scalars"].get(name, 1.0), dtype=np.float32) for name in scalars)
    return out


def _trainable_pieces(model):
    """(start, end, shape) in the parameter buffer of each trainable weight, in Keras's order."""
    pieces, offset = [], 0
    for layer in model._compute_layers:
        trained = set(layer._trained_weights())
        for i, (_, shape, _) in enumerate(layer.weight_specs):
            size = int(np.prod(shape))
            if i in trained:
                pieces.append((offset, offset + size, shape))
            offset += size
    return pieces


def _h5_names(model):
    """The group of each layer under layers/ as Keras names it: its class in snake case, numbered
    within the model when repeated (dense, dense_1, ...), whatever the layer's own name."""
    used, names = {}, []
    for layer in model._compute_layers:
        base = layers_module._snake(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        names.append(base if used[base] == 0 else f"{base}_{used[base]}")
    return names


def _write_h5(model, f):
    h5py = h5py_module()
    host = model._device.host
    with h5py.File(f, "w") as h5:
        group = h5.create_group("layers")
        for layer, path in zip(model._compute_layers, _h5_names(model)):
            vars_ = group.create_group(path).create_group("vars")
            vars_.attrs["name"] = layer.name
            for i, w in enumerate(layer.weights):
                value = np.asarray(host(w))
                if type(layer).__name__ == "Normalization" and i == 2:
                    value = value.astype(np.int64)  # Keras's sample count is an integer variable
                vars_.create_dataset(str(i), data=value)
        h5.create_group("vars").attrs["name"] = model.name
        arrays = _optimizer_arrays(model)
        if arrays is not None:
            vars_ = h5.create_group("optimizer").create_group("vars")
            vars_.attrs["name"] = model._optimizer_spec.name
            for i, a in enumerate(arrays):
                vars_.create_dataset(str(i), data=a)


def save_model(model, path):
    """model.save('m.keras'): Keras 3's archive, written atomically."""
    model._require_built()
    config = json.dumps(_model_config(model), indent=1)
    metadata = json.dumps({"keras_version": KERAS_FORMAT_VERSION, "fastdl_version": __version__,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    weights = io.BytesIO()
    _write_h5(model, weights)

    def write(f):
        with zipfile.ZipFile(f, "w") as z:  # stored, not deflated: Keras reads the HDF5 part in place
            z.writestr(_METADATA, metadata)
            z.writestr(_CONFIG, config)
            z.writestr(_WEIGHTS, weights.getvalue())
    _files.atomic_write(path, write)


def save_weights(model, path):
    """model.save_weights('w.weights.h5'): the HDF5 part alone, written atomically."""
    model._require_built()
    buf = io.BytesIO()
    _write_h5(model, buf)
    _files.atomic_write(path, lambda f: f.write(buf.getvalue()))


# ---- Keras -> fastdl ------------------------------------------------------------------------------

# Keras settings fastdl does not have, accepted when they hold these values (Keras's defaults).
_IGNORED = {"registered_name": None, "quantization_config": None, "lora_rank": None, "lora_alpha": None,
            "noise_shape": None, "sparse": False, "ragged": False, "optional": False, "batch_size": None,
            "data_format": (None, "channels_last"), "autocast": True, "input_axes": None, "output_axes": None,
            "shared_object_id": "*", "renorm": False, "renorm_clipping": None, "renorm_momentum": "*"}


def _check_ignored(key, value, where):
    allowed = _IGNORED[key]
    if allowed == "*":
        return
    allowed = allowed if isinstance(allowed, tuple) else (allowed,)
    if value not in allowed:
        raise KerasFileError(f"{where}: {key}={_short(value)} is a Keras setting fastdl does not have")


def _is_float32(dtype):
    if dtype is None or dtype == "float32":
        return True
    return isinstance(dtype, dict) and isinstance(dtype.get("config"), dict) and \
        dtype.get("class_name") == "DTypePolicy" and dtype["config"].get("name") == "float32"


def _nested(value, where):
    """A Keras-serialized initializer / regularizer / constraint as fastdl's {'class_name', 'config'}."""
    if not isinstance(value, dict):
        return value
    if not (isinstance(value.get("class_name"), str) and isinstance(value.get("config", {}), dict)):
        raise KerasFileError(f"{where} must be {{'class_name': ..., 'config': {{...}}}}, got {_short(value)}")
    config = {}
    for k, v in value.get("config", {}).items():
        if k in _IGNORED:
            _check_ignored(k, v, where)
        else:
            config[k] = v
    return {"class_name": value["class_name"], "config": config}


def _fastdl_layer(entry, index):
    """(class name, fastdl config) of a Keras layer entry."""
    where = f"layer {index}"
    if not (isinstance(entry, dict) and isinstance(entry.get("class_name"), str)
            and isinstance(entry.get("config"), dict)):
        raise KerasFileError(f"{where} must be {{'class_name': ..., 'config': {{...}}}}, got {_short(entry)}")
    cls, keras_config = entry["class_name"], entry["config"]
    where = f"layer {index} ({cls} {_short(keras_config.get('name'))})"
    if cls not in layers_module.LAYERS:
        raise KerasFileError(f"{where}: fastdl has no {cls} layer (it has {sorted(layers_module.LAYERS)})")
    if not _is_float32(keras_config.get("dtype")):
        raise KerasFileError(f"{where}: dtype {_short(keras_config.get('dtype'))}; fastdl models are float32")
    config = {}
    for key, value in keras_config.items():
        if key == "dtype":
            continue
        if key in _IGNORED:
            _check_ignored(key, value, where)
        elif _nested_module(key):
            config[key] = _nested(value, f"{where}.{key}")
        else:
            config[key] = value
    if cls == "InputLayer":
        shape = config.pop("batch_shape", None)
        if shape is None and "batch_input_shape" in config:
            shape = config.pop("batch_input_shape")
        if shape is not None:
            if not (isinstance(shape, list) and len(shape) >= 2 and all(isinstance(s, int) for s in shape[1:])):
                raise KerasFileError(f"{where}: batch_shape {_short(shape)} must be [None, sizes...]")
            config["shape"] = shape[1:]
        config.pop("dtype", None)
    elif cls == "Normalization":
        axis = config.get("axis", -1)
        config["axis"] = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        config.pop("trainable", None)
        if config.get("mean") is None and config.get("variance") is None:
            config.pop("mean", None)
            config.pop("variance", None)
    elif config.get("trainable", True) is True:
        config.pop("trainable", None)
    return cls, config


def _build_model(config):
    from .models import Sequential

    if not (isinstance(config, dict) and config.get("class_name") == "Sequential"
            and isinstance(config.get("config"), dict)):
        name = config.get("class_name") if isinstance(config, dict) else None
        raise KerasFileError(f"the model is a {_short(name)}; fastdl reads Sequential models")
    inner = config["config"]
    entries = inner.get("layers")
    if not isinstance(entries, list) or not entries:
        raise KerasFileError("the model config's 'layers' must be a non-empty list")
    specs = [_fastdl_layer(entry, i) for i, entry in enumerate(entries)]
    if any(cls == "InputLayer" for cls, _ in specs[1:]):
        raise KerasFileError("only the first layer can be an InputLayer")
    built = [_construct(f"layer {i} ({cls})", layers_module.from_config, cls, c) for i, (cls, c) in enumerate(specs)]
    names = [layer.name for layer in built]
    if len(set(names)) != len(names):
        raise KerasFileError("the model's layer names are not unique")
    shape = built[0].input_shape if isinstance(built[0], layers_module.InputLayer) else None
    if shape is None:
        build_shape = inner.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
        if not (isinstance(build_shape, list) and len(build_shape) >= 2
                and all(isinstance(s, int) and s >= 1 for s in build_shape[1:])):
            raise KerasFileError(f"the model has no input shape (an InputLayer or build_input_shape); got "
                                 f"{_short(build_shape)}")
        shape = tuple(build_shape[1:])
    if not all(isinstance(s, int) and 1 <= s < 2 ** 31 for s in shape):
        raise KerasFileError(f"the model's input shape {_short(shape)} must be positive sizes")
    _check_size(built, shape)
    name = inner.get("name")
    model = Sequential(built, name=name if isinstance(name, str) else None)
    model.build(shape)
    return model


def _check_size(built, shape, limit=2 ** 34):
    """The parameter count the layers imply, bounded before anything is allocated."""
    total = 0
    for layer in built:
        if isinstance(layer, layers_module.InputLayer):
            continue
        shape = layer._build(shape)
        total += layer.count_params()
    if total > limit:
        raise KerasFileError(f"the model would have {total:,} parameters")
    for layer in built:
        layer.built = False  # the model builds them again, into its buffers


def _keras_optimizer(value):
    if isinstance(value, str):
        return optimizers.get(value)
    if not (isinstance(value, dict) and isinstance(value.get("class_name"), str)
            and isinstance(value.get("config"), dict)):
        raise KerasFileError(f"the optimizer must be a name or {{'class_name': ..., 'config': {{...}}}}, got "
                             f"{_short(value)}")
    name = value["class_name"].lower()
    if name not in optimizers._BY_NAME:
        raise KerasFileError(f"fastdl has no {value['class_name']} optimizer (it has {sorted(optimizers._BY_NAME)})")
    config = dict(value["config"])
    for key, default in (("loss_scale_factor", None), ("gradient_accumulation_steps", None)):
        got = config.pop(key, default)
        if got != default:
            raise KerasFileError(f"the optimizer's {key}={_short(got)} is a Keras setting fastdl does not have")
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        schedule = _nested(lr, "the learning-rate schedule")
        schedule["config"].pop("name", None)
        config["learning_rate"] = {"schedule": schedule["class_name"], "config": schedule["config"]}
    return optimizers.from_config(name, config)


def _keras_loss(value):
    if isinstance(value, str) or value is None:
        return value
    if not (isinstance(value, dict) and isinstance(value.get("class_name"), str)
            and isinstance(value.get("config", {}), dict)):
        raise KerasFileError(f"the loss must be a name or {{'class_name': ..., 'config': {{...}}}}, got {_short(value)}")
    classes = {cls.__name__: cls for cls in losses._CLASSES.values()}
    cls = classes.get(value["class_name"])
    if cls is None:
        raise KerasFileError(f"fastdl has no {value['class_name']} loss (it has {sorted(classes)})")
    config = dict(value.get("config", {}))
    if config.pop("dtype", None) is not None:
        raise KerasFileError("the loss's dtype is a Keras setting fastdl does not have")
    accepted = _accepted(cls)
    for key, default in (("name", "*"), ("reduction", "sum_over_batch_size"), ("axis", -1), ("ignore_class", None)):
        if key in config and key not in accepted:
            got = config.pop(key)
            if default != "*" and got != default:
                raise KerasFileError(f"the loss's {key}={_short(got)} is a setting fastdl's {cls.__name__} does not "
                                     f"have")
    return cls(**config)


def _keras_metric(value, where):
    if isinstance(value, str):
        return metrics_module.get(value)
    if not (isinstance(value, dict) and isinstance(value.get("class_name"), str)
            and isinstance(value.get("config", {}), dict)):
        raise KerasFileError(f"{where} must be a name or {{'class_name': ..., 'config': {{...}}}}, got {_short(value)}")
    cls = metrics_module.METRIC_CLASSES.get(value["class_name"])
    if cls is None:
        raise KerasFileError(f"{where}: fastdl has no {value['class_name']} metric")
    config = dict(value.get("config", {}))
    dtype = config.pop("dtype", None)
    if not _is_float32(dtype):
        raise KerasFileError(f"{where}: dtype {_short(dtype)}; fastdl's metrics are float32")
    return cls(**config)


def _accepted(cls):
    return set(inspect.signature(cls.__init__).parameters)


def _compile(model, compile_config):
    if compile_config is None:
        return
    if not isinstance(compile_config, dict):
        raise KerasFileError(f"the compile_config must be an object, got {_short(compile_config)}")
    for key, default in (("loss_weights", None), ("run_eagerly", False), ("steps_per_execution", 1),
                         ("jit_compile", "*"), ("auto_scale_loss", "*")):
        got = compile_config.get(key, default)
        if default != "*" and got != default:
            raise KerasFileError(f"compile_config {key}={_short(got)} is a Keras setting fastdl does not have")

    def metric_list(key):
        values = compile_config.get(key)
        if values is None:
            return None
        if not isinstance(values, list):
            raise KerasFileError(f"compile_config {key} must be a list (one output), got {_short(values)}")
        return [_construct(f"{key}[{i}]", _keras_metric, v, f"{key}[{i}]") for i, v in enumerate(values)]
    model.compile(optimizer=_construct("the optimizer", _keras_optimizer, compile_config.get("optimizer", "rmsprop")),
                  loss=_construct("the loss", _keras_loss, compile_config.get("loss")),
                  metrics=metric_list("metrics"), weighted_metrics=metric_list("weighted_metrics"))


def _construct(what, make, *args):
    try:
        return make(*args)
    except KerasFileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError,
            NotImplementedError) as exc:
        raise KerasFileError(f"{what} has settings fastdl cannot take ({type(exc).__name__}: {_brief(exc)})") from exc


# ---- reading HDF5 without trusting it -------------------------------------------------------------

def _open_h5(data):
    h5py = h5py_module()
    try:
        return h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as exc:
        raise KerasFileError(f"the weights are not a readable HDF5 file ({_brief(exc)})") from None


def _child(h5, group, key, kind):
    """group[key] when it is a hard link to an object of `kind` (Group or Dataset), else None."""
    h5py = h5py_module()
    if group is None or key not in group:
        return None
    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise KerasFileError(f"{group.name}/{key} is a {type(link).__name__}; fastdl reads plain HDF5 objects only")
    obj = group[key]
    want = h5py.Group if kind == "group" else h5py.Dataset
    if not isinstance(obj, want):
        raise KerasFileError(f"{obj.name} is not a {kind}")
    return obj


def _dataset(h5, group, i, shape, integer=False):
    """vars/<i> of `group` checked (shape, a numeric dtype, stored in this file) and read."""
    ds = _child(h5, group, str(i), "dataset")
    if ds is None:
        raise KerasFileError(f"{group.name}/{i} is missing")
    if ds.is_virtual or ds.external:
        raise KerasFileError(f"{ds.name} is stored outside the file (virtual or external); fastdl refuses it")
    kind = ds.dtype.kind
    if kind not in ("iu" if integer else "f") and not (integer and kind == "f"):
        raise KerasFileError(f"{ds.name} holds {ds.dtype}; a {'count' if integer else 'weight'} is numeric")
    if tuple(ds.shape) != tuple(shape):
        raise KerasFileError(f"{ds.name} has shape {tuple(ds.shape)} but the model's weight has {tuple(shape)}")
    return np.asarray(ds[()])


def _vars_group(h5, path):
    group = h5
    for key in path:
        group = _child(h5, group, key, "group")
        if group is None:
            return None
    return group


def _read_weights(model, h5):
    """Every layer's weights from layers/<name>/vars, all checked before the model changes."""
    values = []
    for layer, path in zip(model._compute_layers, _h5_names(model)):
        group = _vars_group(h5, ("layers", path, "vars"))
        if layer.weights and group is None:
            raise KerasFileError(f"the file has no weights for layer {layer.name!r}")
        extra = sorted(set(group) - {str(i) for i in range(len(layer.weights))}) if group is not None else []
        if extra:
            raise KerasFileError(f"layer {layer.name!r} has {len(extra)} more weights in the file than in the model")
        for i, w in enumerate(layer.weights):
            count = type(layer).__name__ == "Normalization" and i == 2
            values.append(_dataset(h5, group, i, w.shape, integer=count).astype(np.float32))
    with model._compute_lock, model._device.activate():
        for w, v in zip(model.weights, values):
            w[...] = model._device.put(v)


def _read_optimizer(model, h5):
    """The optimizer state where the file's fits the model; otherwise a warning, as Keras gives."""
    group = _vars_group(h5, ("optimizer", "vars"))
    if group is None or not model.compiled:
        return
    spec = model._optimizer_spec
    if model.optimizer is None:
        model._bind_optimizer(carry=False)
    pieces = _trainable_pieces(model)
    sections, scalars = _optimizer_layout(spec)
    has_lr = not isinstance(spec._config["learning_rate"], schedules.Schedule)
    order = _slot_order(sections, len(pieces))
    expected = 1 + has_lr + len(order) + len(scalars)
    if len(group) != expected or not pieces:
        warnings.warn(f"the file's optimizer has {len(group)} variables where fastdl's {spec.name} needs {expected}; "
                      f"the optimizer starts fresh", stacklevel=3)
        return
    iterations = int(_dataset(h5, group, 0, (), integer=True))
    if not 0 <= iterations < 2 ** 62:
        raise KerasFileError(f"the optimizer's iteration count {iterations} is out of range")
    i = 1 + has_lr
    arrays = {}
    for name, k in order:
        arrays.setdefault(name, {})[k] = _dataset(h5, group, i, pieces[k][2]).astype(np.float32)
        i += 1
    values = {name: float(_dataset(h5, group, i + j, ())) for j, name in enumerate(scalars)}
    lr = float(model.optimizer.lr)
    if spec.name == "sgd" and "momentum_buffer" in arrays and lr == 0:
        warnings.warn("the learning rate is 0: Keras's SGD momentum cannot be converted; the optimizer starts fresh",
                      stacklevel=3)
        return
    full = {}
    for name, per in arrays.items():
        out = np.zeros(int(model._params.size), dtype=np.float32)
        for k, (s, e, _) in enumerate(pieces):
            out[s:e] = (per[k] / -lr if spec.name == "sgd" and name == "momentum_buffer" else per[k]).reshape(-1)
        bad = ~np.isfinite(out) if name == "model_ema" else (np.isnan(out) | (out < 0))
        if name in ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "acc_delta", "exp_inf", "model_ema") \
                and bad[np.concatenate([np.arange(s, e) for s, e, _ in pieces])].any():
            raise KerasFileError(f"the optimizer's {name} holds values it cannot hold (negative, NaN or infinite)")
        full[name] = out
    if not all(np.isfinite(v) and 0 <= v <= 1 for v in values.values()):
        raise KerasFileError(f"the optimizer's momentum product {values} is outside [0, 1]")
    ema = full.pop("model_ema", None)
    header = dict(model.optimizer.state_dict(), iterations=iterations, scalars=values)
    model.optimizer.load_state_dict(model._optimizer_state_dict(header, full, iterations))
    if ema is not None:
        model._ema = model._device.put(ema)


# ---- the archive ----------------------------------------------------------------------------------

def load_model(f, compile=True):
    """A fastdl Sequential from an open .keras file (see the module docstring for what is checked)."""
    try:
        z = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, NotImplementedError, EOFError) as exc:
        raise KerasFileError(f"not a .keras file ({_brief(exc)})") from None
    with z:
        members = _members(z, f)
        config = _read_json(z, members[_CONFIG], _CONFIG)
        weights = _read_member(z, members[_WEIGHTS])
    model = _build_model(config)
    with _open_h5(weights) as h5:
        _read_weights(model, h5)
        if compile:
            _compile(model, config.get("compile_config"))
            _read_optimizer(model, h5)
    return model


def load_weights(model, path):
    """model.load_weights('w.weights.h5'): every weight checked before any is set."""
    model._require_built()
    with _files.open_regular(path, _refuse_non_regular) as f:
        data = f.read()  # a regular file: its real size, which bounds every dataset read from it
    with _open_h5(data) as h5:
        _read_weights(model, h5)
        if model.compiled:
            _read_optimizer(model, h5)



def _refuse_non_regular(path, st):
    raise OSError(f"{path}: not a regular file ({_files.file_kind(st.st_mode)})")


def _members(z, f):
    """The archive's members (_files.zip_members' checks), with Keras's config and weights among them."""
    try:
        members = _files.zip_members(z, os.fstat(f.fileno()).st_size, 4096, "the .keras file")
    except _files.BadContent as exc:
        raise KerasFileError(str(exc)) from None
    for name in (_CONFIG, _WEIGHTS):
        if name not in members:
            if name == _WEIGHTS and "model.weights.npz" in members:
                raise KerasFileError("the weights are in model.weights.npz; fastdl reads model.weights.h5")
            raise KerasFileError(f"not a .keras file (no {name})")
    return members


def _read_member(z, info):
    with z.open(info) as m:
        return m.read()


def _read_json(z, info, name):
    if info.file_size > _MAX_JSON_BYTES:
        raise KerasFileError(f"{name} is {info.file_size:,} bytes, more than {_MAX_JSON_BYTES:,}")
    try:
        return json.loads(_read_member(z, info))
    except RecursionError:
        raise KerasFileError(f"{name} is nested too deeply") from None
    except ValueError as exc:
        raise KerasFileError(f"{name} is not valid JSON ({_brief(exc)})") from None


def _short(value):
    return reprlib.repr(value)


def _brief(exc, limit=300):
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["save_model", "save_weights", "load_model", "load_weights", "KerasFileError"]

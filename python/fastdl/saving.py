"""The model file: one zip archive holding

    fastdl_model.json     format name and version, fastdl version, architecture, compile settings
    params.npy            the model's parameter buffer (all weights, float32)
    optimizer/*.npy       the optimizer's state (steps and state arrays), when compiled

Arrays are NumPy .npy data read with allow_pickle=False, the config is JSON: nothing in the file
can execute code when loaded. The file is written to a temporary name in the same directory and
renamed over the target, so a crash never leaves a half-written model behind.
"""

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import __version__, layers as layers_module, losses, metrics as metrics_module, optimizers

FORMAT = "fastdl-model"
FORMAT_VERSION = 1
_CONFIG = "fastdl_model.json"


def atomic_write(path, write):
    """Calls write(file) on a temporary file next to path, then renames it onto path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastdl-", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a saved model is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def save_model(model, path):
    model._require_built()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastdl_version": __version__,
        "model": {"class": type(model).__name__, **model.get_config()},
        "compile": None,
    }
    arrays = {"params.npy": model._params}
    if model.compiled:
        config["compile"] = {
            "optimizer": {"name": model._optimizer_spec.name, "config": model._optimizer_spec.get_config()},
            "loss": None if model.loss is None else {"name": model.loss.name, "config": model.loss.get_config()},
            "metrics": [{"class": type(m).__name__, "config": m.get_config()} for m in model.metrics],
        }
        if model.optimizer is not None:
            state = model.optimizer.state_dict()
            config["compile"]["optimizer_state"] = {"class": state["optimizer"], "hyperparams": state["hyperparams"],
                                                    "iterations": state["iterations"], "names": sorted(state["state"])}
            arrays["optimizer/steps.npy"] = state["steps"]
            for name, values in state["state"].items():
                arrays[f"optimizer/{name}.npy"] = values[0]

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_CONFIG, json.dumps(config, indent=1))
            for name, array in arrays.items():
                z.writestr(name, _npy(array))

    atomic_write(path, write)


def _read_array(z, name):
    try:
        with z.open(name) as f:
            return np.load(io.BytesIO(f.read()), allow_pickle=False)
    except KeyError:
        raise ValueError(f"the model file has no {name}: it is damaged or not a fastdl model") from None


def load_model(path):
    from .models import Sequential

    path = os.fspath(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a fastdl model file ({exc})") from None
    with z:
        try:
            config = json.loads(z.read(_CONFIG))
        except KeyError:
            raise ValueError(f"{path} is not a fastdl model file (no {_CONFIG})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: the model config is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError(f"{path} is not a fastdl model file")
        version = config.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer fastdl (model format {version}, fastdl "
                             f"{config.get('fastdl_version')}); this is fastdl {__version__}, which reads format "
                             f"{FORMAT_VERSION}: upgrade fastdl")
        spec = config["model"]
        if spec.get("class") != "Sequential":
            raise ValueError(f"unknown model class {spec.get('class')!r}")
        model = Sequential([layers_module.from_config(entry["class"], entry["config"]) for entry in spec["layers"]],
                           name=spec.get("name"))
        if spec.get("input_shape") is not None:
            model.build(tuple(spec["input_shape"]))
        params = _read_array(z, "params.npy")
        if model.built:
            if params.shape != model._params.shape or params.dtype != model._params.dtype:
                raise ValueError(f"the model file's parameters ({params.dtype}{list(params.shape)}) do not fit its "
                                 f"architecture ({model._params.dtype}{list(model._params.shape)})")
            model._params[...] = params
        compiled = config.get("compile")
        if compiled:
            opt = compiled["optimizer"]
            loss = compiled["loss"]
            model.compile(optimizer=optimizers.from_config(opt["name"], opt["config"]),
                          loss=None if loss is None else losses.from_config(loss["name"], loss["config"]),
                          metrics=[_metric(m) for m in compiled["metrics"]])
            saved = compiled.get("optimizer_state")
            if saved and model.optimizer is not None:
                model.optimizer.load_state_dict({
                    "optimizer": saved["class"], "hyperparams": saved["hyperparams"],
                    "iterations": saved.get("iterations", 0),
                    "steps": _read_array(z, "optimizer/steps.npy"),
                    "state": {name: [_read_array(z, f"optimizer/{name}.npy")] for name in saved["names"]},
                })
    return model


def _metric(entry):
    cls = metrics_module.METRIC_CLASSES.get(entry["class"])
    if cls is None:
        raise ValueError(f"unknown metric class {entry['class']!r} in the model file")
    return cls(**entry["config"])

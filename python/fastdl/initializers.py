"""Weight initializers, Keras's names, classes and arguments (keras.initializers), drawing from
fastdl's seeded random state (or their own seed: then every call gives the same values).

fan_in / fan_out of a (in, out) kernel are in and out; of a 1-D weight (n,), n and n; of a larger
shape (..., in, out), in and out times the product of the leading axes (a convolution's field).
  VarianceScaling(scale, mode, distribution)   variance scale / n, n = fan_in, fan_out or their mean:
      truncated_normal (at 2 std, rescaled), untruncated_normal, or uniform (limit sqrt(3 scale / n))
  GlorotUniform / GlorotNormal   VarianceScaling(1, fan_avg, uniform / truncated_normal)  (Dense's default)
  HeUniform / HeNormal           VarianceScaling(2, fan_in, ...)
  LecunUniform / LecunNormal     VarianceScaling(1, fan_in, ...)
  RandomNormal(mean=0, stddev=0.05), RandomUniform(minval=-0.05, maxval=0.05),
  TruncatedNormal(mean=0, stddev=0.05) (redrawn beyond 2 std), Zeros, Ones, Constant(value),
  Orthogonal(gain=1) (a QR decomposition's Q), Identity(gain=1) (2-D).
By name: 'glorot_uniform', 'he_normal', 'orthogonal', ... (snake_case of the class). A function
f(shape, dtype=None) returning an array works too (it cannot be saved with the model).
"""

import math

import numpy as np

from . import _random
from ._checks import real

_TRUNCATED_STD = 0.87962566103423978  # std of a standard normal truncated at +-2


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * field, shape[-1] * field


def _truncated_normal(rng, std, shape):
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2
    return x * std


class Initializer:
    """Base: __call__(shape, dtype=None) returns the initial values (a NumPy array)."""

    def __call__(self, shape, dtype=None):
        values = self._draw(self._rng(), tuple(int(s) for s in shape))
        return np.asarray(values, dtype=np.float32 if dtype is None else dtype)

    def _rng(self):
        seed = getattr(self, "seed", None)
        return _random.generator() if seed is None else np.random.default_rng(seed)

    def _draw(self, rng, shape):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class Zeros(Initializer):
    def _draw(self, rng, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _draw(self, rng, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = real(value, "value", -math.inf)

    def _draw(self, rng, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = real(mean, "mean", -math.inf), real(stddev, "stddev", 0.0), seed

    def _draw(self, rng, shape):
        return self.mean + rng.standard_normal(shape) * self.stddev

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def _draw(self, rng, shape):
        return self.mean + _truncated_normal(rng, self.stddev, shape)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = real(minval, "minval", -math.inf), real(maxval, "maxval", -math.inf), seed
        if self.maxval < self.minval:
            raise ValueError(f"maxval ({maxval}) must be >= minval ({minval})")

    def _draw(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(Initializer):
    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if distribution == "normal":
            distribution = "truncated_normal"  # Keras's alias
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self.DISTRIBUTIONS}, got {distribution!r}")
        self.scale = real(scale, "scale", 0.0)
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.mode, self.distribution, self.seed = mode, distribution, seed

    def _draw(self, rng, shape):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.standard_normal(shape) * math.sqrt(variance)
        return _truncated_normal(rng, math.sqrt(variance) / _TRUNCATED_STD, shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _Preset(VarianceScaling):
    """A VarianceScaling with fixed arguments (_args); only the seed is given."""

    _args = None

    def __init__(self, seed=None):
        super().__init__(*self._args, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (Dense's default kernel initializer)."""
    _args = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """N(0, 2 / (fan_in + fan_out)), truncated at 2 std."""
    _args = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """U(-l, l), l = sqrt(6 / fan_in)."""
    _args = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """N(0, 2 / fan_in), truncated at 2 std."""
    _args = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """U(-l, l), l = sqrt(3 / fan_in)."""
    _args = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """N(0, 1 / fan_in), truncated at 2 std."""
    _args = (1.0, "fan_in", "truncated_normal")


class Orthogonal(Initializer):
    """gain * Q of the QR decomposition of a normal matrix (rows: the product of all axes but
    the last), its signs fixed by R's diagonal; transposed when there are fewer rows than columns."""

    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = real(gain, "gain", -math.inf), seed

    def _draw(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a weight of at least 2 dimensions, got shape {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """gain * the identity matrix (2-D weights)."""

    def __init__(self, gain=1.0):
        self.gain = real(gain, "gain", -math.inf)

    def _draw(self, rng, shape):
        if len(shape) != 2:
            raise ValueError(f"Identity needs a 2-D weight, got shape {shape}")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


CLASSES = {cls.__name__: cls for cls in (Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal,
                                         VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                                         LecunUniform, LecunNormal, Orthogonal, Identity)}
_BY_NAME = {"zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
            "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
            "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
            "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform,
            "lecun_normal": LecunNormal, "orthogonal": Orthogonal, "identity": Identity,
            "uniform": RandomUniform, "normal": RandomNormal}  # Keras's short names (Embedding's default)
zeros, ones, constant, orthogonal, identity = Zeros, Ones, Constant, Orthogonal, Identity  # Keras's aliases
glorot_uniform, glorot_normal, he_uniform, he_normal = GlorotUniform, GlorotNormal, HeUniform, HeNormal
lecun_uniform, lecun_normal, random_normal, random_uniform = LecunUniform, LecunNormal, RandomNormal, RandomUniform
truncated_normal, variance_scaling = TruncatedNormal, VarianceScaling


def get(identifier):
    """An initializer from a name ('glorot_uniform', ...), a Keras config dict, an Initializer, or a
    function f(shape, dtype=None)."""
    if isinstance(identifier, Initializer) or (callable(identifier) and not isinstance(identifier, type)):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        return CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"unknown initializer {identifier!r}; choose from {sorted(_BY_NAME)}, a fastdl.initializers "
                     f"object or a function f(shape, dtype=None)")


check = get  # what layers call on their initializer arguments


def serialize(initializer):
    """A name for a built-in with its default arguments, else {'class_name', 'config'}; a function
    cannot be saved (a clear error)."""
    if not isinstance(initializer, Initializer):
        raise ValueError(f"the initializer {initializer!r} is a function: a model using it cannot be saved; use a "
                         f"fastdl.initializers object")
    name = next((n for n, cls in _BY_NAME.items() if type(initializer) is cls), None)
    if name is not None and initializer.get_config() == type(initializer)().get_config():
        return name
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def initialize(initializer, shape, out):
    """Fills `out` (an array of `shape`) with the initializer's values."""
    values = get(initializer)(tuple(shape))
    values = np.asarray(values)
    if values.shape != tuple(shape):
        raise ValueError(f"the initializer {initializer!r} returned shape {values.shape} for a weight of shape "
                         f"{tuple(shape)}")
    out[...] = values

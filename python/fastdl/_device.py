"""Where a model's arrays live: the host (NumPy, the C++ kernels) or a GPU (CuPy, cuBLAS and the
CUDA kernels).

    with fastdl.device("gpu:0"):          # Keras 3's spelling: keras.device("gpu:0")
        model = fastdl.Sequential([...])  # built here: its weights live on GPU 0
    model = fastdl.Sequential([...], device="gpu")   # the same, as an argument

A model takes its device when its weights are made (the first build) and keeps it. Names:
"cpu", "gpu" / "cuda" (the current GPU), "gpu:N" / "cuda:N". Asking for a GPU where fastdl's
CUDA module, CuPy or a GPU is missing raises a RuntimeError saying which.
"""

import contextlib
import re
import threading

import numpy as np

from ._checks import on_device

NAME = re.compile(r"^(cpu|gpu|cuda)(?::(\d+))?$")


class Device:
    """One place for arrays: kind 'cpu' or 'gpu', its index, and its array module (xp)."""

    # Whether reading a result makes the host wait: on a GPU, a model reads losses and metrics back
    # once per logging interval, not per batch, so that the host queues work ahead of the device.
    defers_reads = False

    def __init__(self, kind, index=0):
        self.kind, self.index = kind, index

    def __repr__(self):
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"

    def __eq__(self, other):
        return isinstance(other, Device) and (self.kind, self.index) == (other.kind, other.index)

    def __hash__(self):
        return hash((self.kind, self.index))

    def __reduce__(self):  # pickle and deepcopy: by name (the array module is no state)
        return get, (repr(self),)

    xp = np

    def activate(self):
        """A context in which new arrays and kernels go to this device."""
        return contextlib.nullcontext()

    def holds(self, a):
        """Whether array a is on this device."""
        return type(a) is np.ndarray

    def put(self, a):
        """a on this device (a itself when it is there already)."""
        return a.get() if on_device(a) else a

    def host(self, a):
        """a as a NumPy array (a itself on the host)."""
        return a.get() if on_device(a) else a

    def fits(self, nbytes):
        """Whether arrays of nbytes in all can stay on this device for a whole fit."""
        return True


class GpuDevice(Device):
    defers_reads = True

    def __init__(self, index):
        super().__init__("gpu", index)
        import cupy
        self.xp = cupy

    def activate(self):
        # a new CuPy Device each time: one object's stack of previous devices is not per thread
        return self.xp.cuda.Device(self.index)

    def holds(self, a):
        return on_device(a) and a.device.id == self.index

    def put(self, a):
        if self.holds(a):
            return a
        with self.xp.cuda.Device(self.index):
            return self.xp.asarray(a)  # a copy from the host or from another GPU

    def fits(self, nbytes):
        """A quarter of the free memory: the rest is for the model's buffers and CuPy's pool."""
        with self.xp.cuda.Device(self.index):
            free, _ = self.xp.cuda.runtime.memGetInfo()
        return nbytes <= free // 4


CPU = Device("cpu")
_scope = threading.local()


def get(name):
    """The Device for a name ('cpu', 'gpu', 'gpu:1', 'cuda:0', or a Device); a GPU is checked usable."""
    if isinstance(name, Device):
        return name
    if not isinstance(name, str):
        raise TypeError(f"device must be a name such as 'cpu' or 'gpu:0', got {name!r}")
    m = NAME.match(name.strip().lower())
    if m is None:
        raise ValueError(f"unknown device {name!r}: use 'cpu', 'gpu', 'gpu:N', 'cuda' or 'cuda:N'")
    if m.group(1) == "cpu":
        if m.group(2) not in (None, "0"):
            raise ValueError(f"unknown device {name!r}: the host is 'cpu' (or 'cpu:0')")
        return CPU
    from .backends import cuda
    usable, reason = cuda.available()
    if not usable:
        raise RuntimeError(f"cannot use device {name!r}: {reason}")
    import cupy
    count = cupy.cuda.runtime.getDeviceCount()
    index = cupy.cuda.runtime.getDevice() if m.group(2) is None else int(m.group(2))
    if index >= count:
        raise ValueError(f"cannot use device {name!r}: this machine has {count} GPU{'s' if count != 1 else ''} "
                         f"(gpu:0 to gpu:{count - 1})")
    return GpuDevice(index)


def current():
    """The device of the innermost `with fastdl.device(...)` of this thread; the CPU outside one."""
    stack = getattr(_scope, "stack", None)
    return stack[-1] if stack else CPU


@contextlib.contextmanager
def device(name):
    """Models built inside `with fastdl.device(name):` keep their weights there (Keras 3's
    keras.device): "cpu", "gpu", "gpu:N" (also "cuda", "cuda:N")."""
    dev = get(name)
    stack = _scope.__dict__.setdefault("stack", [])
    stack.append(dev)
    try:
        with dev.activate():
            yield dev
    finally:
        stack.pop()

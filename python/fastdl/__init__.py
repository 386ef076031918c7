"""fastdl: fused deep-learning kernels (C++/OpenMP/SIMD, CUDA) under a small Python API.

    import fastdl
    fastdl.info()                      # what is built and in use
    y = fastdl.ops.gelu(x)             # fused activations and losses on NumPy or CuPy arrays
    opt = fastdl.optim.Adam(params)    # multi-tensor optimizers, torch.optim's update rules
    from fastdl import layers, models  # Keras's Sequential API
    with fastdl.device("gpu"): ...     # models built here keep their weights on the GPU
"""

__version__ = "0.1.0"

from . import _backend, ops, optim  # noqa: E402
from . import activations, callbacks, data, initializers, layers, losses, metrics, models, optimizers  # noqa: E402,F401
from . import saving, utils  # noqa: E402,F401
from ._device import device  # noqa: E402
from ._random import set_seed  # noqa: E402
from .layers import Input  # noqa: E402,F401
from .models import Sequential  # noqa: E402,F401


def info():
    """What fastdl has and uses, as a dict:

    version, backend ('cpu' = the C++ extension, 'numpy' = the fallback), cpu_extension (bool:
    the module loaded), cpu_extension_error (why not, or None), simd (instruction set in use),
    simd_supported, threads, cuda_extension (the CUDA module loaded), cuda_devices (GPUs it can
    use), cuda_status (why there are none, e.g. "no NVIDIA driver"; None when there are),
    cuda_device_name (of device 0).
    """
    ext = _backend.cpu_extension()
    err = _backend.cpu_import_error()
    cuda = _backend.cuda_status()
    return {
        "version": __version__,
        "backend": _backend.name,
        "cpu_extension": ext is not None,
        "cpu_extension_error": None if err is None else str(err),
        "simd": ext.simd() if ext else None,
        "simd_supported": list(ext.supported_simd()) if ext else [],
        "threads": ext.num_threads() if ext else 1,
        "cuda_extension": cuda["extension"],
        "cuda_devices": cuda["devices"],
        "cuda_status": cuda["reason"],
        "cuda_device_name": cuda["device_name"],
    }


def set_num_threads(n):
    """Sets how many threads the C++ kernels use (default: one per core, or OMP_NUM_THREADS)."""
    ext = _backend.cpu_extension()
    if ext is not None:
        ext.set_num_threads(int(n))


__all__ = ["ops", "optim", "layers", "models", "losses", "metrics", "callbacks", "optimizers", "data", "info",
           "activations", "initializers", "saving", "utils", "Sequential", "Input", "device", "set_seed", "set_num_threads", "__version__"]

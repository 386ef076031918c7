"""The C++ CPU module, fastdl._fastdl_cpu: its functions are the kernels NumPy arrays go to
(same names and arguments as numpy_kernels). Imported here once; None when it did not load."""

try:
    from .. import _fastdl_cpu as module
    import_error = None
except ImportError as exc:  # not built, or built for another Python / platform
    module = None
    import_error = exc

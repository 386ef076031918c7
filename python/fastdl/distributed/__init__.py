"""Data-parallel training on MPI, through mpi4py (and NCCL for CuPy arrays on GPUs).

    import fastdl
    from fastdl import distributed
    distributed.init()                    # every process: joins MPI.COMM_WORLD
    model.fit(x, y, batch_size=256)       # 256 is the GLOBAL batch, split across the processes

Launch with ``mpiexec -n K python -m mpi4py train.py`` (``-m mpi4py`` makes an uncaught exception
abort the whole job; init() installs the same hook for a plain ``python train.py``).

After init(), fit / evaluate are data-parallel (fastdl/distributed/_strategy.py): every process
takes the same epoch order (a seed from rank 0), each global batch is split across the processes,
each process's gradient is weighted by its share of the batch's rows and the model's gradient
buffer is summed with ONE allreduce per step, so the fused optimizer steps identically everywhere
and the result is the global-batch gradient even where a batch does not divide evenly. Initial
weights are broadcast from rank 0 when fit starts; the loss, metric states and validation are
reduced across processes; only rank 0 prints and writes files (checkpoints, CSV logs, backups).
Dropout and augmentation draw different numbers on each process. Processes sharing a machine
share its cores (each takes cores / processes threads unless OMP_NUM_THREADS is set).

The collectives work on NumPy arrays (MPI) and CuPy arrays (NCCL, the unique id broadcast over
MPI, on CuPy's current stream): allreduce(array, op='sum' | 'mean'), broadcast(array, root=0),
barrier().
"""

import os
import sys
import time
import traceback

import numpy as np

from .._checks import on_device

_context = None


class Context:
    """The job this process belongs to: rank, size and the MPI communicator (comm); local_rank and
    local_size among the processes on this machine (one GPU per local rank:
    fastdl.device(f"gpu:{ctx.local_rank}"))."""

    def __init__(self, comm, MPI):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        finally:
            local.Free()
        self._nccl = None

    @property
    def is_chief(self):
        """Rank 0: the process that prints and writes."""
        return self.rank == 0

    def __repr__(self):
        return f"Context(rank={self.rank}, size={self.size})"


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise RuntimeError("fastdl.distributed needs mpi4py and an MPI library: pip install 'fastdl[mpi]' (mpi4py and "
                           f"MPICH from PyPI), or mpi4py built against your cluster's MPI ({exc})") from None
    return MPI


def init(comm=None):
    """Joins the MPI job (MPI.COMM_WORLD, or the communicator given) and makes fit / evaluate
    data-parallel over its processes. Returns the Context (rank, size, comm). Calling it again
    returns the same Context. An uncaught exception in any process then aborts the whole job."""
    global _context
    MPI = _mpi()
    if _context is not None:
        if comm is not None and comm is not _context.comm:
            raise RuntimeError("fastdl.distributed.init() was already called with another communicator")
        return _context
    _context = Context(comm if comm is not None else MPI.COMM_WORLD, MPI)
    if _context.size > 1:
        _abort_on_uncaught_exceptions(_context.comm)
        _share_the_cores(_context.local_size)
    return _context


def _share_the_cores(here):
    """K processes on one machine, each with a thread per core in fastdl's kernels and in NumPy's
    BLAS, would run K times as many threads as cores (and the BLAS's spin: steps 100x slower): each
    process takes its share of the cores it may run on, in both, unless OMP_NUM_THREADS (or, for the
    BLAS, OPENBLAS_NUM_THREADS / MKL_NUM_THREADS) says otherwise."""
    if here == 1:
        return
    share = max(1, _cores() // here)
    if not os.environ.get("OMP_NUM_THREADS"):
        from .. import set_num_threads
        set_num_threads(share)
    if not any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        from .._blas_threads import set_blas_threads
        set_blas_threads(share)


def _cores():
    """The cores this process may run on (its CPU affinity, which a launcher's binding narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _abort_on_uncaught_exceptions(comm):
    """A process that dies of an exception takes the job with it (the others would wait in their
    next collective forever): the traceback is printed, then MPI_Abort ends every process."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            traceback.print_exception(kind, value, tb)
            sys.stderr.flush()
            # MPI_Abort kills every process at once, and the launcher may drop output it has not
            # forwarded yet: a moment first, so the traceback reaches the user
            time.sleep(1.0)
        finally:
            comm.Abort(1)
    if getattr(previous, "_fastdl_abort", False):
        return
    hook._fastdl_abort = True
    sys.excepthook = hook


def is_initialized():
    """Whether init() was called in this process."""
    return _context is not None


def context():
    """The Context of init() (RuntimeError before it)."""
    if _context is None:
        raise RuntimeError("fastdl.distributed.init() has not been called")
    return _context


def rank():
    return 0 if _context is None else _context.rank


def size():
    return 1 if _context is None else _context.size


_OPS = ("sum", "mean")


def allreduce(array, op="sum"):
    """array <- the elementwise sum (or mean) of every process's array, in place; returns it.
    NumPy arrays go through MPI, CuPy arrays through NCCL. Every process must call it with an
    array of the same shape and dtype."""
    if op not in _OPS:
        raise ValueError(f"op must be 'sum' or 'mean', got {op!r}")
    if op == "mean" and np.dtype(array.dtype).kind != "f":
        raise TypeError(f"allreduce(op='mean') takes floating-point arrays, got {array.dtype} (sum, then divide)")
    ctx = context()
    if on_device(array):
        _nccl_allreduce(ctx, array)
    else:
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
            raise TypeError("allreduce takes a writeable C-contiguous NumPy array (or a CuPy array)")
        if ctx.size > 1:
            ctx.comm.Allreduce(_mpi().IN_PLACE, array, op=_mpi().SUM)
    if op == "mean" and ctx.size > 1:
        array /= array.dtype.type(ctx.size)
    return array


def broadcast(array, root=0):
    """array <- root's array, in place on every process; returns it (NumPy via MPI, CuPy via NCCL)."""
    ctx = context()
    if ctx.size == 1:
        return array
    if on_device(array):
        comm, stream = _nccl(ctx)
        comm.bcast(array.data.ptr, array.size * array.itemsize, _nccl_module().NCCL_INT8, root, stream.ptr)
        return array
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError("broadcast takes a C-contiguous NumPy array (or a CuPy array)")
    ctx.comm.Bcast(array, root=root)
    return array


def barrier():
    """Waits until every process has called it."""
    context().comm.Barrier()


# ---- NCCL (CuPy arrays) ------------------------------------------------------------------------------

def _nccl_module():
    from cupy.cuda import nccl
    return nccl


def _nccl(ctx):
    """The job's NCCL communicator (made at first use: rank 0's unique id broadcast over MPI) and
    CuPy's current stream."""
    import cupy
    nccl = _nccl_module()
    if ctx._nccl is None:
        uid = nccl.get_unique_id() if ctx.rank == 0 else None
        uid = ctx.comm.bcast(uid, root=0)
        ctx._nccl = nccl.NcclCommunicator(ctx.size, uid, ctx.rank)
    return ctx._nccl, cupy.cuda.get_current_stream()


_NCCL_TYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "float16": "NCCL_FLOAT16",
               "int32": "NCCL_INT32", "int64": "NCCL_INT64"}


def _nccl_allreduce(ctx, array):
    if not array.flags.c_contiguous:
        raise TypeError("allreduce takes a C-contiguous CuPy array")
    name = _NCCL_TYPES.get(str(array.dtype))
    if name is None:
        raise TypeError(f"allreduce of CuPy arrays takes {sorted(_NCCL_TYPES)}, got {array.dtype}")
    comm, stream = _nccl(ctx)
    nccl = _nccl_module()
    comm.allReduce(array.data.ptr, array.data.ptr, array.size, getattr(nccl, name), nccl.NCCL_SUM, stream.ptr)


__all__ = ["init", "is_initialized", "context", "rank", "size", "allreduce", "broadcast", "barrier", "Context"]

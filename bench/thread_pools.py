"""fit's samples/s for the MLP of bench/train_speed.py (batch 32 and 1024) and the CNN and text
models of bench/cnn_text_speed.py, under the thread-pool policy fastdl/_blas_threads.py picks, or
with both pools left on all their threads (--both-pools):

    python bench/thread_pools.py [--both-pools]
    OMP_WAIT_POLICY=passive python bench/thread_pools.py --both-pools
    OPENBLAS_NUM_THREADS=1 python bench/thread_pools.py --both-pools
"""

import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cnn_text_speed  # noqa: E402
import train_speed  # noqa: E402

from fastdl import _blas_threads  # noqa: E402


def main():
    if "--both-pools" in sys.argv:
        _blas_threads.one_thread_pool_in_loops = lambda kernel_bound=False: contextlib.nullcontext()
    x, labels = train_speed.data()
    rates = {}
    for bs in (32, 1024):
        run = train_speed.fastdl_epoch(x, labels, bs)
        run()
        rates[f"MLP {bs}"] = len(x) / np.median([run() for _ in range(5)])
    for kind in ("cnn", "text"):
        xx, yy = cnn_text_speed.data(kind)
        run = cnn_text_speed.fastdl_epoch(kind, xx, yy)
        run()
        rates[kind] = len(xx) / np.median([run() for _ in range(3)])
    print(" | ".join(f"{k}: {v:,.0f} samples/s" for k, v in rates.items()))


if __name__ == "__main__":
    main()

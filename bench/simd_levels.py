"""The same kernels on each SIMD build of the extension (baseline SSE2, AVX2, AVX-512), timed
interleaved in one process:

    python bench/simd_levels.py
"""

import numpy as np

from fastdl import _backend, ops
from fastdl.bench import measure


def main():
    ext = _backend.cpu_extension()
    if ext is None or _backend.name != "cpu":
        raise SystemExit("needs the C++ extension")
    before = ext.simd()
    kernels = [("tanh", ops.tanh), ("sigmoid", ops.sigmoid), ("gelu exact", ops.gelu)]
    try:
        for n in (1_000_000, 10_000_000):
            x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
            y = np.empty_like(x)
            for name, op in kernels:
                impls = {isa: (lambda isa=isa, op=op: (ext.set_simd(isa), op(x, out=y)))
                         for isa in ext.supported_simd()}
                times = {k: np.median(v) * 1e3 for k, v in measure(impls, repeats=21).items()}
                print(f"{name} {n / 1e6:g}M: " + "  ".join(f"{k} {t:.2f} ms" for k, t in times.items()))
    finally:
        ext.set_simd(before)


if __name__ == "__main__":
    main()

"""Backend selection, info(), SIMD dispatch and the NumPy fallback without the extension."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl
from fastdl import _backend


needs_extension = pytest.mark.skipif(_backend.name != "cpu", reason="needs the C++ extension in use")


def _run(code, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FASTDL_")}  # CI sets FASTDL_BACKEND
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_info_keys():
    info = fastdl.info()
    for key in ("version", "backend", "cpu_extension", "cuda_extension", "cuda_devices", "simd", "threads"):
        assert key in info
    assert info["backend"] in ("cpu", "numpy")
    assert info["version"] == fastdl.__version__
    if info["cpu_extension"] and info["backend"] == "cpu":
        assert info["simd"] in info["simd_supported"]
        assert info["threads"] >= 1


def test_package_works_without_the_extension():
    """What a user gets when the C++ extension cannot load: the NumPy fallback, everything working."""
    r = _run("""
        import sys, numpy as np
        sys.modules['fastdl._fastdl_cpu'] = None   # makes `from . import _fastdl_cpu` fail
        import fastdl
        from fastdl import ops, optim
        info = fastdl.info()
        assert info['backend'] == 'numpy' and not info['cpu_extension'], info
        assert info['cpu_extension_error']
        x = np.linspace(-3, 3, 7)
        assert np.allclose(ops.sigmoid(x), 1 / (1 + np.exp(-x)))
        p = [np.ones(3)]
        optim.Adam(p, lr=0.1).step([np.ones(3)])
        assert np.allclose(p[0], 0.9)
        print('ok')
    """)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_fastdl_backend_env():
    r = _run("import fastdl; print(fastdl.info()['backend'])", FASTDL_BACKEND="numpy")
    assert r.returncode == 0 and r.stdout.strip() == "numpy", r.stderr
    r = _run("import fastdl", FASTDL_BACKEND="gpu-please")
    assert r.returncode != 0 and "FASTDL_BACKEND='gpu-please'" in r.stderr
    r = _run("""
        import sys
        sys.modules['fastdl._fastdl_cpu'] = None
        import fastdl
    """, FASTDL_BACKEND="cpu")
    assert r.returncode != 0 and "FASTDL_BACKEND=cpu but the C++ extension did not import" in r.stderr


@needs_extension
def test_fastdl_simd_env_forces_an_isa():
    ext = _backend.cpu_extension()
    for isa in ext.supported_simd():
        r = _run("import fastdl; print(fastdl.info()['simd'])", FASTDL_SIMD=isa, FASTDL_BACKEND="cpu")
        assert r.returncode == 0 and r.stdout.strip() == isa, r.stderr
    assert not ext.set_simd("sse9000")


@needs_extension
def test_isa_builds_agree(rng=np.random.default_rng(3)):
    """Every SIMD build runs the same algorithm on the same lane layout. The FMA builds (AVX2,
    AVX-512) agree bit for bit on normal results; the baseline build rounds a*b+c twice, which shows in GELU's
    ill-conditioned tail (see test_activations._rtol)."""
    ext = _backend.cpu_extension()
    x = (rng.standard_normal(100_001) * 5).astype(np.float32)
    before = ext.simd()
    try:
        results = {}
        for isa in ext.supported_simd():
            ext.set_simd(isa)
            results[isa] = [fastdl.ops.tanh(x), fastdl.ops.gelu(x), fastdl.ops.softmax(x[:100_000].reshape(100, -1))]
    finally:
        ext.set_simd(before)
    first = results["baseline"]
    for isa, outs in results.items():
        for a, b, rtol in zip(first, outs, (2e-6, 2e-5, 2e-6)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-37, err_msg=isa)
    if "avx2" in results and "avx512" in results:
        # equal bits, except below 2.5e-38 where the AVX2 exp flushes to 0 and AVX-512 keeps the value
        for a, b in zip(results["avx2"], results["avx512"]):
            normal = np.abs(b) >= 3e-38
            np.testing.assert_array_equal(a[normal], b[normal])
            assert np.all(np.abs(a[~normal]) < 3e-38)


@needs_extension
def test_kernels_release_the_gil():
    """Another Python thread runs while a kernel is writing its output. The proof needs no clock:
    the main thread reads `out` while a worker thread runs a single-threaded kernel over it, and
    sees the first element written while the last is not yet. With the GIL held during the call,
    Python code could only run before or after it, and that state could never be observed
    (checked once with a GIL-holding ctypes.PyDLL memset in place of the kernel: never seen).
    No timing: the only bound is 200 calls, each a chance to observe."""
    import threading
    x = np.random.default_rng(0).standard_normal(4_000_000)
    out = np.full_like(x, np.nan)
    threads = _backend.cpu_extension().num_threads()
    fastdl.set_num_threads(1)  # one thread writes `out` front to back
    seen_inside, stop = threading.Event(), threading.Event()

    def kernels():
        for _ in range(200):  # each call takes ~10 ms; one observation suffices
            if stop.is_set():
                return
            out.fill(np.nan)
            fastdl.ops.gelu(x, out=out)

    worker = threading.Thread(target=kernels)
    try:
        worker.start()
        while worker.is_alive():
            first, last = out[[0, -1]]  # one GIL-held read of both ends: a consistent snapshot
            if not np.isnan(first) and np.isnan(last):
                seen_inside.set()
                break
    finally:
        stop.set()
        worker.join()
        fastdl.set_num_threads(threads)
    assert seen_inside.is_set(), "no Python code ran while a kernel was writing its output: is the GIL released?"

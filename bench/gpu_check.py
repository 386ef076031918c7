#!/usr/bin/env python3
"""One command for a GPU machine (issues #9 and #10): build and install fastdl, run the CUDA tests,
measure the device's copy bandwidth, and time every CUDA kernel against PyTorch, beside the issues'
goals; for issue #10 also fastdl.torch's AdamW on GPT-2-small shapes (plain, and under
torch.amp.GradScaler: scaler.step + update, no goal), its two fused losses
(cross_entropy, linear_cross_entropy) on torch CUDA tensors, in time and in peak extra memory, and
the model API's fit of the seed MLP on the GPU against a plain PyTorch CUDA loop
(bench/train_speed.py --device cuda: epoch times, wall clock to the end of the GPU's work).

    python bench/gpu_check.py                      # build, test, benchmark: ~8 minutes on an H200
    python bench/gpu_check.py --no-build --no-tests --quick
    python bench/gpu_check.py --self-test          # this script's own logic, on any machine, no GPU

The GPU machine needs CuPy and PyTorch with CUDA, and to build: CMake, nvcc, pybind11,
scikit-build-core and ninja (no network). Prints one table and writes it with the environment as
JSON (--json; default $OUT/gpu_check.json where $OUT is set, else ./gpu_check.json). Each section
survives the others' failures: the error is recorded and the next section runs.

Times are CUDA-event times: each sample is a batch of back-to-back calls between two events, after
a warm-up; the median of the samples, fastdl and torch interleaved. GB/s = the bytes a call must
move (inputs read once, outputs written once; optimizer state in the parameter's dtype) / fastdl's
time; % copy = that against a device-to-device copy of a >= 1 GiB buffer (bytes read + written).
MiB (the fused losses only) = peak extra memory of one forward+backward: torch.cuda.max_memory_allocated
after reset_peak_memory_stats, minus the memory allocated before the call (the gradients it leaves
included, the previous call's freed first); torch's caching allocator sees it all (fastdl.torch
allocates through torch).

Exit status: 0 everything ran (whatever the numbers); 1 the build, a test or a section failed;
3 nothing could be measured (no CuPy, no GPU, or fastdl without CUDA): the reasons are printed and
in the JSON.
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_ELEMENTS = 2 ** 26
GOALS = {
    "elementwise": "every elementwise op (activations, MSE/BCE) f32 and bf16 >= 85% of copy bandwidth at >= 2^26 "
                   "elements (f16 rows stand in where fastdl.ops takes no bf16: CuPy has none)",
    "adamw": "AdamW step f32 and bf16 >= 1.0x torch.optim.AdamW(fused=True), one 2^27 tensor and the LLM-like list",
    "ce": "softmax CE fwd+bwd 8192x32768 >= 2x torch (F.cross_entropy + backward)",
    "adamw_gpt2": "fastdl.torch AdamW step f32 and bf16 >= 1.0x torch.optim.AdamW(fused=True) on GPT-2-small "
                  "shapes (148 tensors, 124.4M parameters) (issue #10)",
    "linear_ce": "fastdl.torch linear_cross_entropy fwd+bwd N=8192 D=2048 V=128256 bf16: peak extra memory <= 1/10 "
                 "of torch's F.linear + F.cross_entropy and time <= 1.2x torch's (issue #10)",
    "mlp_b32": "model API on the GPU: fit of the MLP 100-64-64-10 (Adam) at batch 32 >= 2x the samples/s of a plain "
               "PyTorch CUDA loop (issue #10)",
    "mlp_b4096": "the same at batch 4096 >= 1.2x (issue #10)",
}
GOAL_NEED = {"adamw": 1.0, "ce": 2.0, "adamw_gpt2": 1.0, "mlp_b32": 2.0, "mlp_b4096": 1.2}  # torch/fastdl time ratio
MLP_FIT_OP = "MLP fit, one epoch of 60000"
MLP_BATCH_GOALS = {32: "mlp_b32", 4096: "mlp_b4096"}
AMP_ADAMW_OP = "AdamW + GradScaler"  # no goal: shown beside the plain step
LINEAR_CE_GOAL = dict(time_factor=1.2, memory_fraction=0.1)
COLUMNS = ["op", "dtype", "size", "fastdl ms", "torch ms", "torch/fastdl", "GB/s", "% copy", "fastdl MiB",
           "torch MiB", "goal met?"]


def log(*args):
    print(*args, flush=True)


# ---- pure logic (what --self-test covers) -------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (goals are not judged)")
    p.add_argument("--no-build", action="store_true", help="use the fastdl already installed")
    p.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    p.add_argument("--json", metavar="PATH", help="where to write the results (default: $OUT/gpu_check.json "
                                                  "where $OUT is set, else gpu_check.json)")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop starting benchmarks after this many seconds "
                                                                 "from the start (default 480)")
    p.add_argument("--self-test", action="store_true", help="check this script's own logic (no GPU needed)")
    return p.parse_args(argv)


def default_json_path(environ):
    out = environ.get("OUT")
    return str(Path(out) / "gpu_check.json") if out else "gpu_check.json"


def llm_shapes(d=768, vocab=50304, blocks=18):
    """200 parameter shapes of a GPT-2-small-like model: the embedding, then per block four square
    d x d attention matrices, the two 4x MLP projections (d x 4d, 4d x d) and five vectors of d
    (two LayerNorms' weight and bias, the attention output bias); a final LayerNorm weight."""
    block = [(d, d)] * 4 + [(d, 4 * d), (4 * d, d)] + [(d,)] * 5
    return [(vocab, d)] + block * blocks + [(d,)]


def gpt2_small_shapes(d=768, vocab=50257, ctx=1024, layers=12):
    """GPT-2 small's 148 parameter shapes (124,439,808 elements at the defaults): token embedding
    (vocab, d), position embedding (ctx, d), then per layer LayerNorm weight and bias, attention qkv
    (d, 3d) + bias, attention projection (d, d) + bias, LayerNorm weight and bias, MLP (d, 4d) + bias,
    (4d, d) + bias; a final LayerNorm's weight and bias."""
    layer = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return [(vocab, d), (ctx, d)] + layer * layers + [(d,), (d,)]


def numel(shape):
    return math.prod(shape)


def activation_bytes(n, itemsize, backward=False):
    """Forward reads x and writes y; backward reads grad and the saved tensor and writes dx."""
    return (3 if backward else 2) * n * itemsize


def loss_bytes(n, itemsize):
    """Fused loss + gradient: reads pred and target, writes the gradient."""
    return 3 * n * itemsize


def ce_bytes(rows, cols, itemsize, label_itemsize=8):
    """Softmax cross-entropy fwd+bwd: reads the logits and the labels, writes the gradient."""
    return 2 * rows * cols * itemsize + rows * label_itemsize


def adamw_bytes(elements, itemsize):
    """AdamW: reads p, g, m, v and writes p, m, v (state in the parameter's dtype, as torch keeps it)."""
    return 7 * elements * itemsize


def gbps(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9


def choose_inner(ms_one, target_ms=2.0, cap=64):
    """Calls per timed sample so that a sample lasts about target_ms."""
    if ms_one <= 0:
        return cap
    return max(1, min(cap, math.ceil(target_ms / ms_one)))


def size_label(elements=None, shape=None, label=None):
    if label:
        return label
    if shape is not None:
        return "x".join(str(s) for s in shape)
    k = math.log2(elements) if elements else 0
    return f"2^{int(k)}" if elements and k == int(k) else str(elements)


def make_row(op, dtype, size, nbytes, fastdl_ms=None, torch_ms=None, goal=None, goal_size=True, note=None,
             error=None, torch_label="torch", fastdl_mib=None, torch_mib=None):
    return {"op": op, "dtype": dtype, "size": size, "bytes": int(nbytes), "fastdl_ms": fastdl_ms, "torch_ms": torch_ms,
            "torch_impl": torch_label, "goal": goal, "goal_size": goal_size, "note": note, "error": error,
            "fastdl_mib": fastdl_mib, "torch_mib": torch_mib}


def evaluate_goal(row):
    """(met, why): met is True / False, or None where the row cannot judge its goal (no goal, a quick
    size, torch missing)."""
    kind = row.get("goal")
    if kind is None:
        return None, "no goal"
    if not row.get("goal_size"):
        return None, "not at the goal's size"
    if row.get("error") or row.get("fastdl_ms") is None:
        return False, "fastdl did not run"
    if kind == "elementwise":
        pct = row.get("pct_copy")
        return (None, "no copy bandwidth") if pct is None else (pct >= 85.0, f"{pct:.1f}% of copy (goal 85%)")
    ratio = row.get("ratio")
    if ratio is None:
        return None, "torch did not run"
    if kind == "linear_ce":
        fm, tm = row.get("fastdl_mib"), row.get("torch_mib")
        if fm is None or tm is None:
            return None, "peak memory not measured"
        tf, mf = LINEAR_CE_GOAL["time_factor"], LINEAR_CE_GOAL["memory_fraction"]
        slower, mem = row["fastdl_ms"] / row["torch_ms"], fm / tm if tm > 0 else math.inf
        met = slower <= tf and mem <= mf
        return met, f"time {slower:.2f}x torch's (goal <= {tf:g}x), memory {mem:.3f} of torch's (goal <= {mf:g})"
    need = GOAL_NEED[kind]
    return ratio >= need, f"{ratio:.2f}x torch (goal {need:g}x)"


def finish_row(row, copy_gbps):
    """Adds ratio, GB/s, % of copy bandwidth and the goal verdict to a row."""
    fd, th = row.get("fastdl_ms"), row.get("torch_ms")
    row["ratio"] = th / fd if fd and th else None
    row["gbps"] = gbps(row["bytes"], fd) if fd and row["bytes"] else None  # bytes 0: GB/s means nothing there
    fm, tm = row.get("fastdl_mib"), row.get("torch_mib")
    row["memory_ratio"] = fm / tm if fm is not None and tm else None
    row["pct_copy"] = 100.0 * row["gbps"] / copy_gbps if row["gbps"] and copy_gbps else None
    row["goal_met"], row["goal_why"] = evaluate_goal(row)
    return row


def summarize_goals(rows):
    """One entry per goal: met when every row judged for it is met; None when none could be judged."""
    out = []
    for kind, text in GOALS.items():
        judged = [r for r in rows if r.get("goal") == kind and r.get("goal_met") is not None]
        failed = [f"{r['op']} {r['dtype']} {r['size']}: {r['goal_why']}" for r in judged if not r["goal_met"]]
        out.append({"goal": text, "kind": kind, "rows_judged": len(judged),
                    "met": (not failed) if judged else None, "not_met": failed})
    return out


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def format_table(rows):
    """The markdown table, with footnotes for errors and notes."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- | --- | --- | " + " | ".join(["---:"] * 7) + " | --- |"]
    notes = []
    for r in rows:
        mark = ""
        if r.get("error") or r.get("note"):
            notes.append(r.get("error") or r.get("note"))
            mark = f" [{len(notes)}]"
        met = {True: "yes", False: "**no**", None: "-"}[r.get("goal_met")]
        if r.get("goal") and r.get("goal_met") is None and not r.get("goal_size"):
            met = "n/a (size)"
        fd = "error" if r.get("error") else _fmt(r.get("fastdl_ms"), ".3f")
        cells = [r["op"] + mark, r["dtype"], r["size"], fd, _fmt(r.get("torch_ms"), ".3f"),
                 _fmt(r.get("ratio"), ".2f") + ("x" if r.get("ratio") is not None else ""),
                 _fmt(r.get("gbps"), ".0f"), _fmt(r.get("pct_copy"), ".1f"), _fmt(r.get("fastdl_mib"), ".0f"),
                 _fmt(r.get("torch_mib"), ".0f"), met]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def format_goals(goals):
    lines = []
    for g in goals:
        verdict = {True: "met", False: "NOT met", None: "not judged"}[g["met"]]
        lines.append(f"- {g['goal']}: {verdict} ({g['rows_judged']} rows)")
        lines += [f"    {f}" for f in g["not_met"]]
    return "\n".join(lines)


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?)\b")


def parse_pytest_output(text):
    """Counts from pytest's last summary line, with the reasons of skips and the names of failures."""
    counts = {}
    summary = [ln for ln in text.splitlines() if re.search(r"\b(passed|failed|skipped|errors?|no tests ran)\b", ln)
               and re.search(r"\bin [\d.]+s\b", ln)]
    if summary:
        for n, what in _COUNT.findall(summary[-1]):
            key = {"error": "errors", "warning": "warnings"}.get(what, what)
            counts[key] = counts.get(key, 0) + int(n)
    return {"counts": counts,
            "skip_reasons": [ln.split(": ", 1)[-1] for ln in text.splitlines() if ln.startswith("SKIPPED")],
            "failures": [ln.split(" - ")[0][len("FAILED "):] for ln in text.splitlines() if ln.startswith("FAILED ")]
            + [ln.split(" - ")[0][len("ERROR "):] for ln in text.splitlines() if ln.startswith("ERROR ")]}


# test_cuda.py's reasons for skipping itself whole: on a GPU machine that is a failed check
MODULE_SKIPS = ("CuPy is not installed", "CUDA module (fastdl._fastdl_cuda) is not built", "no CUDA device")


def tests_verdict(returncode, parsed):
    """(ok, why): False when pytest failed, timed out or test_cuda.py skipped itself whole; None when
    nothing ran at all."""
    whole = [r for r in parsed["skip_reasons"] if any(m in r for m in MODULE_SKIPS)]
    if returncode is None:
        return False, "timed out"
    if returncode != 0:
        return False, f"pytest exit status {returncode}: {len(parsed['failures'])} failed"
    if whole:
        return False, f"the CUDA tests skipped themselves: {whole[0]}"
    if not parsed["counts"].get("passed"):
        return None, "no test ran"
    return True, f"{parsed['counts'].get('passed')} passed"


def skip_reasons(probe):
    """Why a side cannot be measured, from probe() (None: it can). 'gpu' covers the copy bandwidth."""
    gpu = None
    if not probe.get("cupy"):
        gpu = f"CuPy is not importable: {probe.get('cupy_error')}"
    elif not probe.get("devices"):
        gpu = f"no CUDA device visible to CuPy: {probe.get('device_error') or '0 devices'}"
    fastdl = gpu
    if fastdl is None:
        if not probe.get("fastdl"):
            fastdl = f"fastdl is not importable: {probe.get('fastdl_error')}"
        elif not probe.get("fastdl_cuda"):
            fastdl = f"fastdl has no CUDA module: {probe.get('cuda_status') or 'cuda_extension is False'}"
    torch_ = None if probe.get("torch_cuda") else f"PyTorch with CUDA is not available: {probe.get('torch_error')}"
    return {"gpu": gpu, "fastdl": fastdl, "torch": torch_}


def exit_status(doc):
    failed = (doc.get("build") or {}).get("ok") is False or (doc.get("tests") or {}).get("ok") is False
    if failed or doc.get("errors"):
        return 1
    return 3 if doc.get("nothing_measured") else 0


def add_note(row, text):
    row["note"] = f"{row['note']}; {text}" if row.get("note") else text


def _text(out):
    """Captured output as text (TimeoutExpired carries bytes even with text=True)."""
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def write_json(path, doc):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


# ---- build and tests (subprocesses) ---------------------------------------------------------------------

def run_build(timeout_s):
    env = dict(os.environ)
    env.setdefault("FASTDL_CUDA", "ON")  # a missing nvcc fails the build instead of building a CPU-only wheel
    if not shutil.which("nvcc") and "CUDACXX" not in env and Path("/usr/local/cuda/bin/nvcc").exists():
        env["CUDACXX"] = "/usr/local/cuda/bin/nvcc"  # CMake looks for nvcc on PATH only
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "."]
    log(f"== build: python {' '.join(cmd[1:])} (FASTDL_CUDA={env['FASTDL_CUDA']}"
        f"{', CUDACXX=' + env['CUDACXX'] if 'CUDACXX' in env else ''})")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, f"timed out after {timeout_s:.0f} s\n{_text(e.stdout)}{_text(e.stderr)}"
    res = {"ok": rc == 0, "returncode": rc, "seconds": round(time.time() - t0, 1)}
    if rc != 0:
        res["output_tail"] = "\n".join(str(out).splitlines()[-60:])
        log(res["output_tail"])
    log(f"build {'ok' if rc == 0 else 'FAILED'} in {res['seconds']} s")
    return res


def installed_info():
    p = subprocess.run([sys.executable, "-c", "import fastdl, json; print(json.dumps(fastdl.info()))"],
                       cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=120)
    if p.returncode:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_tests(timeout_s):
    files = ["tests/test_cuda.py"] + [f for f in ["tests/test_cuda_schedule.py", "tests/test_optim_adaptive_kernels.py",
                                                  "tests/test_row_loss_kernels.py", "tests/test_cuda_models.py",
                                                  "tests/test_cuda_distributed.py", "tests/test_layer_kernels.py"]
                                    if (ROOT / f).exists()]
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *files]
    log(f"== tests: python {' '.join(cmd[1:])}")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, f"{_text(e.stdout)}{_text(e.stderr)}\ntimed out after {timeout_s:.0f} s"
    parsed = parse_pytest_output(str(out))
    ok, why = tests_verdict(rc, parsed)
    res = {"ok": ok, "verdict": why, "returncode": rc, "files": files, "seconds": round(time.time() - t0, 1),
           **parsed, "output_tail": "\n".join(str(out).splitlines()[-40:])}
    log("\n".join(str(out).splitlines()[-15:]))
    log(f"tests: {parsed['counts']} in {res['seconds']} s: {why}")
    return res


# ---- the GPU parts: small timed functions -------------------------------------------------------------

def probe():
    """What is importable and visible: CuPy and its devices, PyTorch CUDA, fastdl and its CUDA module."""
    r = {}
    try:
        import cupy
        r["cupy"], r["cupy_version"] = True, cupy.__version__
        try:
            r["devices"] = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError without a driver
            r["devices"], r["device_error"] = 0, f"{type(e).__name__}: {e}"
    except Exception as e:
        r["cupy"], r["cupy_error"] = False, f"{type(e).__name__}: {e}"
    try:
        import torch
        r["torch_version"] = torch.__version__
        r["torch_cuda"] = bool(torch.cuda.is_available())
        if not r["torch_cuda"]:
            r["torch_error"] = (f"torch {torch.__version__} sees no CUDA device "
                                f"(torch.version.cuda={torch.version.cuda})")
    except Exception as e:
        r["torch_cuda"], r["torch_error"] = False, f"{type(e).__name__}: {e}"
    try:
        import fastdl
        info = fastdl.info()
        r["fastdl"], r["fastdl_info"] = True, info
        r["fastdl_cuda"] = bool(info.get("cuda_extension")) and bool(info.get("cuda_devices"))
        r["cuda_status"] = info.get("cuda_status")
    except Exception as e:
        r["fastdl"], r["fastdl_error"] = False, f"{type(e).__name__}: {e}"
    return r


def environment(pr):
    env = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
           "python": platform.python_version(), "platform": platform.platform(),
           "cupy": pr.get("cupy_version"), "torch": pr.get("torch_version"), "fastdl_info": pr.get("fastdl_info")}
    try:
        import numpy
        env["numpy"] = numpy.__version__
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
            env["nvidia_smi"] = q.stdout.strip()
            env["driver"] = q.stdout.split(",")[1].strip() if q.returncode == 0 and "," in q.stdout else None
        except Exception as e:
            env["nvidia_smi"] = f"failed: {e}"
    if pr.get("devices"):
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            env["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            env["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2 ** 30, 1)
            env["cuda_runtime_cupy"] = cupy.cuda.runtime.runtimeGetVersion()
            env["cuda_driver_api"] = cupy.cuda.runtime.driverGetVersion()
        except Exception as e:
            env["gpu_error"] = f"{type(e).__name__}: {e}"
    if pr.get("torch_cuda"):
        import torch
        env["torch_cuda"] = torch.version.cuda
        env.setdefault("gpu", torch.cuda.get_device_name(0))
    return env


def cupy_timer(fn, inner):
    import cupy
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / inner


def torch_timer(fn, inner):
    import torch
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / inner


def measure(impls, repeats, target_ms):
    """{label: (fn, timer)} -> {label: median ms per call}; a side that raises -> {label: exception}."""
    inner, out = {}, {}
    for label, (fn, timer) in impls.items():
        try:
            fn()
            fn()
            inner[label] = choose_inner(timer(fn, 1), target_ms)
        except Exception as e:  # recorded for this side only: the other still runs
            out[label] = e
    samples = {k: [] for k in inner}
    for _ in range(repeats):
        for label in inner:
            fn, timer = impls[label]
            samples[label].append(timer(fn, inner[label]))
    out.update({k: statistics.median(v) for k, v in samples.items()})
    return out


def copy_bandwidth_gbps(nbytes, repeats):
    """Device-to-device copy (cudaMemcpyAsync) of nbytes: bytes read + written per second, median."""
    import cupy
    src = cupy.empty(nbytes // 4, dtype=cupy.float32)  # the contents do not matter to a copy
    dst = cupy.empty_like(src)
    ms = measure({"copy": (lambda: dst.data.copy_from_device_async(src.data, src.nbytes), cupy_timer)},
                 repeats, target_ms=5.0)["copy"]
    if isinstance(ms, Exception):
        raise ms
    return gbps(2 * src.nbytes, ms), ms


class Bench:
    """Times one case after another into rows. A side that fails (in its setup or its call) becomes
    that row's error (fastdl) or note (torch); a setup that fails for a whole case becomes an error row."""

    def __init__(self, args, skip, start):
        self.args, self.skip, self.start = args, skip, start
        self.repeats = 3 if args.quick else 7
        self.target_ms = 1.0 if args.quick else 2.0
        self.rows = []
        self.fd_ok, self.th_ok = skip["fastdl"] is None, skip["torch"] is None

    def side(self, ok, setup, timer):
        """(fn, timer) from setup() -> fn, or a call that raises what setup raised; None when not ok."""
        if not ok:
            return None
        try:
            return setup(), timer
        except Exception as e:
            return failing(e), timer

    def run(self, op, dtype, size, nbytes, fastdl=None, torch=None, goal=None, goal_size=True, note=None,
            torch_label="torch"):
        """fastdl / torch: (fn, timer) or None (not measured)."""
        row = make_row(op, dtype, size, nbytes, goal=goal, goal_size=goal_size, note=note, torch_label=torch_label)
        if time.time() - self.start > self.args.budget_s:
            row["error"] = f"not run: past the time budget ({self.args.budget_s:.0f} s)"
        else:
            impls = {k: v for k, v in (("fastdl", fastdl), ("torch", torch)) if v is not None}
            res = measure(impls, self.repeats, self.target_ms)
            for side in ("fastdl", "torch"):
                v = res.get(side)
                if isinstance(v, Exception):
                    msg = f"{side}: {type(v).__name__}: {str(v).splitlines()[0] if str(v) else ''}"
                    if side == "fastdl":
                        row["error"] = msg
                    else:
                        add_note(row, msg)
                elif v is not None:
                    row[f"{side}_ms"] = v
            if fastdl is None and self.skip["fastdl"]:
                row["error"] = f"fastdl not measured: {self.skip['fastdl']}"
        self._add(row)
        return row

    def guarded(self, op, dtype, size, fn):
        """Runs fn() (the setup and the rows of one case); an exception becomes an error row."""
        try:
            fn()
        except Exception as e:
            self._add(make_row(op + " (setup)", dtype, size, 0, error=f"{type(e).__name__}: {e}"))
        finally:
            free_memory()

    def _add(self, row):
        log(f"  {row['op']} {row['dtype']} {row['size']}: fastdl {_fmt(row['fastdl_ms'], '.3f')} ms, "
            f"torch {_fmt(row['torch_ms'], '.3f')} ms" + (f"  ({row['error'] or row['note']})"
                                                          if row["error"] or row["note"] else ""))
        self.rows.append(row)


def failing(exc):
    """A call that raises exc: a side whose setup failed is recorded like one whose call fails."""
    def call():
        raise exc
    return call


def free_memory():
    try:
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()
    except Exception:
        pass
    try:
        import torch
        torch.cuda.empty_cache()
    except Exception:
        pass


def copy_of(a):
    return a.clone() if hasattr(a, "clone") else a.copy()


def _half_via_torch(torch, ops):
    """Whether fastdl.ops takes bfloat16 torch CUDA tensors (the contract only promises CuPy arrays)."""
    try:
        ops.relu(torch.zeros(8, dtype=torch.bfloat16, device="cuda"))
        return True
    except Exception:
        return False


def activation_table():
    """name, fastdl forward(x, out), torch forward(x), fastdl backward(g, saved, out), torch backward(g, saved)
    (the aten op autograd calls), and the saved tensor: the forward's output "y" or its input "x"."""
    import torch
    import torch.nn.functional as F
    from fastdl import ops
    aten = torch.ops.aten
    return [
        ("sigmoid", lambda x, o: ops.sigmoid(x, out=o), torch.sigmoid,
         lambda g, s, o: ops.sigmoid_backward(g, s, out=o), aten.sigmoid_backward, "y"),
        ("tanh", lambda x, o: ops.tanh(x, out=o), torch.tanh,
         lambda g, s, o: ops.tanh_backward(g, s, out=o), aten.tanh_backward, "y"),
        ("relu", lambda x, o: ops.relu(x, out=o), F.relu,
         lambda g, s, o: ops.relu_backward(g, s, out=o), lambda g, s: aten.threshold_backward(g, s, 0), "x"),
        ("leaky_relu", lambda x, o: ops.leaky_relu(x, 0.01, out=o), lambda x: F.leaky_relu(x, 0.01),
         lambda g, s, o: ops.leaky_relu_backward(g, s, 0.01, out=o),
         lambda g, s: aten.leaky_relu_backward(g, s, 0.01, False), "x"),
        ("gelu", lambda x, o: ops.gelu(x, out=o), F.gelu,
         lambda g, s, o: ops.gelu_backward(g, s, out=o), aten.gelu_backward, "x"),
        ("gelu tanh", lambda x, o: ops.gelu(x, approximate="tanh", out=o), lambda x: F.gelu(x, approximate="tanh"),
         lambda g, s, o: ops.gelu_backward(g, s, approximate="tanh", out=o),
         lambda g, s: aten.gelu_backward(g, s, approximate="tanh"), "x"),
        ("silu", lambda x, o: ops.silu(x, out=o), F.silu,
         lambda g, s, o: ops.silu_backward(g, s, out=o), aten.silu_backward, "x"),
    ]


def bench_activations(b, n):
    """Each activation forward and backward at n elements, float32 and float16 (CuPy has no bfloat16:
    bf16 rows too where fastdl.ops takes torch tensors)."""
    import torch
    from fastdl import ops
    dtypes = [("f32", "float32", torch.float32), ("f16", "float16", torch.float16)]
    if b.fd_ok and b.th_ok and _half_via_torch(torch, ops):
        dtypes.append(("bf16", None, torch.bfloat16))
    for label, cp_name, tdt in dtypes:
        b.guarded("activations", label, size_label(n), lambda: _activations_of(b, n, label, cp_name, tdt))


def _activations_of(b, n, label, cp_name, tdt):
    import cupy
    import torch
    size, itemsize, goal_size = size_label(n), torch.finfo(tdt).bits // 8, n >= GOAL_ELEMENTS
    tx = torch.randn(n, device="cuda").to(tdt) if b.th_ok else None
    tg = torch.randn(n, device="cuda").to(tdt) if b.th_ok else None
    if not b.fd_ok:
        timer = None
    elif cp_name:
        x = cupy.random.standard_normal(n, dtype=cupy.float32).astype(cp_name)
        g = cupy.random.standard_normal(n, dtype=cupy.float32).astype(cp_name)
        y, dx, timer = cupy.empty_like(x), cupy.empty_like(x), cupy_timer
    else:  # bf16 through torch tensors
        x, g = tx.clone(), tg.clone()
        y, dx, timer = torch.empty_like(x), torch.empty_like(x), torch_timer
    for name, ffwd, tfwd, fbwd, tbwd, saved in activation_table():
        b.run(name, label, size, activation_bytes(n, itemsize),
              b.side(b.fd_ok, lambda: (lambda f=ffwd: f(x, y)), timer),
              b.side(b.th_ok, lambda: (lambda f=tfwd: f(tx)), torch_timer), goal="elementwise", goal_size=goal_size)

        def fd_setup():
            ffwd(x, y)
            s = copy_of(y) if saved == "y" else x
            return lambda: fbwd(g, s, dx)

        def th_setup():
            ts = tfwd(tx) if saved == "y" else tx
            return lambda: tbwd(tg, ts)
        b.run(name + " backward", label, size, activation_bytes(n, itemsize, backward=True),
              b.side(b.fd_ok, fd_setup, timer), b.side(b.th_ok, th_setup, torch_timer), goal="elementwise",
              goal_size=goal_size, torch_label="torch aten backward")


def bench_losses(b, n):
    """MSE, BCE on probabilities and on logits, value and gradient, float32 and float16."""
    import torch
    for label, cp_name, tdt in [("f32", "float32", torch.float32), ("f16", "float16", torch.float16)]:
        for name in ("mse", "bce", "bce logits"):
            b.guarded(name + " fwd+bwd", label, size_label(n), lambda: _loss_of(b, n, name, label, cp_name, tdt))


def _loss_of(b, n, name, label, cp_name, tdt):
    import cupy
    import torch
    import torch.nn.functional as F
    from fastdl import ops

    def fd_setup():
        if name == "bce":
            p = cupy.random.uniform(0.01, 0.99, n, dtype=cupy.float32).astype(cp_name)
        else:
            p = cupy.random.standard_normal(n, dtype=cupy.float32).astype(cp_name)
        t = cupy.random.uniform(0, 1, n, dtype=cupy.float32).astype(cp_name)
        grad = cupy.empty_like(p)
        return {"mse": lambda: ops.mse(p, t, out=grad),
                "bce": lambda: ops.binary_crossentropy(p, t, out=grad),
                "bce logits": lambda: ops.binary_crossentropy(p, t, from_logits=True, out=grad)}[name]

    def th_setup():
        base = torch.rand(n, device="cuda") * 0.98 + 0.01 if name == "bce" else torch.randn(n, device="cuda")
        tp, tt = base.to(tdt).requires_grad_(True), torch.rand(n, device="cuda").to(tdt)
        fn = {"mse": F.mse_loss, "bce": F.binary_cross_entropy, "bce logits": F.binary_cross_entropy_with_logits}[name]

        def call():
            tp.grad = None
            fn(tp, tt).backward()
        return call
    b.run(name + " fwd+bwd", label, size_label(n), loss_bytes(n, torch.finfo(tdt).bits // 8),
          b.side(b.fd_ok, fd_setup, cupy_timer), b.side(b.th_ok, th_setup, torch_timer), goal="elementwise",
          goal_size=n >= GOAL_ELEMENTS, torch_label="torch F + backward")


def bench_cross_entropy(b, rows, cols, goal_size):
    """Softmax cross-entropy with int64 class ids, value and gradient: float32 on CuPy; bfloat16 where
    fastdl.ops takes torch tensors (torch is timed in both)."""
    import torch
    for label, tdt in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        b.guarded("softmax CE fwd+bwd", label, size_label(shape=(rows, cols)),
                  lambda: _cross_entropy_of(b, rows, cols, label, tdt, goal_size))


def _cross_entropy_of(b, rows, cols, label, tdt, goal_size):
    import cupy
    import torch
    import torch.nn.functional as F
    from fastdl import ops
    note = None
    fd_ok = b.fd_ok
    if fd_ok and label == "bf16" and not (b.th_ok and _half_via_torch(torch, ops)):
        fd_ok, note = False, "fastdl not measured: fastdl.ops takes no bfloat16 (CuPy has none; torch tensors refused)"
    tx = torch.randn(rows, cols, device="cuda").to(tdt).requires_grad_(True) if b.th_ok else None
    tl = torch.randint(0, cols, (rows,), device="cuda") if b.th_ok else None

    def fd_setup():
        if label == "f32":
            x = cupy.random.standard_normal((rows, cols), dtype=cupy.float32)
            labels = cupy.random.randint(0, cols, rows).astype(cupy.int64)
            grad = cupy.empty_like(x)
        else:
            x, labels, grad = tx.detach().clone(), tl.clone(), torch.empty_like(tx)
        return lambda: ops.softmax_cross_entropy(x, labels, out=grad)

    def th_setup():
        def call():
            tx.grad = None
            F.cross_entropy(tx, tl).backward()
        return call
    b.run("softmax CE fwd+bwd", label, size_label(shape=(rows, cols)), ce_bytes(rows, cols, torch.finfo(tdt).bits // 8),
          b.side(fd_ok, fd_setup, cupy_timer if label == "f32" else torch_timer),
          b.side(b.th_ok, th_setup, torch_timer), goal="ce", goal_size=goal_size, note=note,
          torch_label="F.cross_entropy + backward")


def bench_row_losses(b, shapes):
    """Keras's categorical hinge and focal cross-entropy (from logits), value and gradient, float32 on CuPy,
    beside torch autograd of the same formula. Their correctness: the `cuda` tests of
    tests/test_row_loss_kernels.py against float64 references (run by run_tests)."""
    for rows, cols in shapes:
        for name in ("categorical_hinge", "categorical_focal"):
            b.guarded(name + " fwd+bwd", "f32", size_label(shape=(rows, cols)),
                      lambda: _row_loss_of(b, rows, cols, name))


def _row_loss_of(b, rows, cols, name):
    import cupy
    import torch
    from fastdl import ops
    kw = dict(from_logits=True) if name == "categorical_focal" else {}

    def fd_setup():
        x = cupy.random.standard_normal((rows, cols), dtype=cupy.float32) * 2
        t = cupy.zeros((rows, cols), dtype=cupy.float32)
        t[cupy.arange(rows), cupy.random.randint(0, cols, rows)] = 1  # one-hot
        grad = cupy.empty_like(x)
        return lambda: ops.row_loss(name, x, t, out=grad, **kw)

    def th_setup():
        tx = (torch.randn(rows, cols, device="cuda") * 2).requires_grad_(True)
        tt = torch.nn.functional.one_hot(torch.randint(0, cols, (rows,), device="cuda"), cols).float()

        def call():
            tx.grad = None
            if name == "categorical_hinge":
                loss = torch.clamp(((1 - tt) * tx).amax(-1) - (tt * tx).sum(-1) + 1, min=0).mean()
            else:
                q = torch.softmax(tx, -1)
                q = (q / q.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
                loss = (0.25 * (1 - q) ** 2 * -tt * torch.log(q)).sum(-1).mean()
            loss.backward()
        return call
    b.run(name + " fwd+bwd", "f32", size_label(shape=(rows, cols)), 3 * rows * cols * 4,
          b.side(b.fd_ok, fd_setup, cupy_timer), b.side(b.th_ok, th_setup, torch_timer),
          torch_label="torch autograd of the formula")


def bench_adamw(b, workloads, goal_size, goal="adamw", amp=False):
    """One AdamW step over the same tensors: fastdl.torch.AdamW against torch.optim.AdamW(fused=True).
    amp: the step as torch.amp.GradScaler takes it, scaler.step(opt) + scaler.update() (both sides pay the
    scaler's inf check of the gradients; the optimizers unscale inside their step and read found_inf on
    the device)."""
    import torch
    op = AMP_ADAMW_OP if amp else "AdamW step"
    for wl_label, shapes in workloads:
        total = sum(numel(s) for s in shapes)
        size = f"{wl_label} ({total / 1e6:.1f}M)"
        for label, tdt in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
            b.guarded(op, label, size,
                      lambda: _adamw_of(b, shapes, size, total, label, tdt, goal_size, goal, amp))


def scaled_step(scaler, opt):
    """One optimizer step through a GradScaler, as a training loop makes it."""
    def call():
        scaler.step(opt)
        scaler.update()
    return call


def _adamw_of(b, shapes, size, total, label, tdt, goal_size, goal="adamw", amp=False):
    import torch
    gen = torch.Generator(device="cuda").manual_seed(0)

    def stepper(opt):
        if not amp:
            return opt.step
        scaler = torch.amp.GradScaler("cuda")
        scaler.scale(torch.ones((), device="cuda"))  # creates the scale (a loss would be scaled here)
        return scaled_step(scaler, opt)

    def params():
        ps = [torch.nn.Parameter(torch.randn(s, device="cuda", generator=gen).to(tdt)) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape, device="cuda", generator=gen).to(tdt)
        return ps

    def fd_setup():
        import fastdl.torch as fdt
        return stepper(fdt.AdamW(params(), lr=1e-3, weight_decay=0.01))

    b.run(AMP_ADAMW_OP if amp else "AdamW step", label, size, adamw_bytes(total, torch.finfo(tdt).bits // 8),
          b.side(b.fd_ok, fd_setup, torch_timer),
          b.side(b.th_ok, lambda: stepper(torch.optim.AdamW(params(), lr=1e-3, weight_decay=0.01, fused=True)),
                 torch_timer), goal=goal, goal_size=goal_size, torch_label="torch AdamW(fused=True)")


# The adaptive optimizers' CUDA kernels (fastdl._fastdl_cuda.<name>_step on torch tensors' addresses), beside
# torch.optim's foreach step (torch has no Lion): (op, kernel, options record name and arguments, state lists
# with the options used, torch.optim class or None, its arguments). Their correctness is checked by the
# `cuda` tests of tests/test_optim_adaptive_kernels.py against float64 references (run by run_tests).
ADAPTIVE_STEPS = [
    ("RMSprop step", "rmsprop", ("RmspropOptions", dict(lr=1e-2)), ["square_avgs", None, None], "RMSprop",
     dict(lr=1e-2)),
    ("Adagrad step", "adagrad", ("AdagradOptions", dict(lr=1e-2)), ["sums"], "Adagrad", dict(lr=1e-2)),
    ("Adadelta step", "adadelta", ("AdadeltaOptions", dict(lr=1.0)), ["square_avgs", "acc_deltas"], "Adadelta",
     dict(lr=1.0)),
    ("Adamax step", "adamax", ("AdamaxOptions", dict(lr=2e-3)), ["exp_avgs", "exp_infs"], "Adamax", dict(lr=2e-3)),
    ("NAdam step", "nadam", ("NadamOptions", dict(lr=2e-3)), ["exp_avgs", "exp_avg_sqs"], "NAdam", dict(lr=2e-3)),
    ("Lion step", "lion", ("LionOptions", dict(lr=1e-4)), ["exp_avgs"], None, {}),
]


def optimizer_bytes(elements, itemsize, states):
    """Reads p, g and each state, writes p and each state (state in the parameter's dtype)."""
    return elements * itemsize * (3 + 2 * states)


def bench_adaptive_optimizers(b, shapes, label_of):
    import torch
    total = sum(numel(s) for s in shapes)
    size = f"{label_of} ({total / 1e6:.1f}M)"
    for op, name, opts, states, torch_name, torch_kw in ADAPTIVE_STEPS:
        for label, tdt in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
            b.guarded(op, label, size,
                      lambda: _adaptive_of(b, op, name, opts, states, torch_name, torch_kw, shapes, size, total, label,
                                           tdt))


def _adaptive_of(b, op, name, opts, states, torch_name, torch_kw, shapes, size, total, label, tdt):
    import numpy as np
    import torch
    gen = torch.Generator(device="cuda").manual_seed(1)

    def params():
        ps = [torch.nn.Parameter(torch.randn(s, device="cuda", generator=gen).to(tdt)) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape, device="cuda", generator=gen).to(tdt)
        return ps

    def fd_setup():
        from fastdl import _fastdl_cuda
        from fastdl.backends import options
        o = getattr(options, opts[0])(**opts[1])
        ps = params()
        st = [None if s is None else [torch.full_like(p, 0.5) for p in ps] for s in states]
        keep = (ps, st)
        addrs = [None if s is None else [t.data_ptr() for t in s] for s in st]
        extra = [np.full(len(ps), 0.45)] if name == "nadam" else []
        steps = np.ones(len(ps), np.int64)
        dtype = str(tdt).split(".")[1]
        fn = getattr(_fastdl_cuda, f"{name}_step")
        pa, ga, sizes = [p.data_ptr() for p in ps], [p.grad.data_ptr() for p in ps], [p.numel() for p in ps]

        def call(keep=keep):
            fn(dtype, pa, ga, *addrs, *extra, sizes, steps, o, 0, torch.cuda.current_device(),
               torch.cuda.current_stream().cuda_stream)
        return call

    def th_setup():
        return getattr(torch.optim, torch_name)(params(), foreach=True, **torch_kw).step

    nstates = sum(s is not None for s in states)
    b.run(op, label, size, optimizer_bytes(total, torch.finfo(tdt).bits // 8, nstates),
          b.side(b.fd_ok, fd_setup, torch_timer),
          b.side(b.th_ok, th_setup, torch_timer) if torch_name else None,
          torch_label=f"torch {torch_name}(foreach=True)" if torch_name else "torch (no Lion)")


def peak_extra_mib(fn, clear=None):
    """Peak memory one call of fn allocates beyond what was allocated before it, in MiB (torch's
    allocator): clear() first frees what a previous call left (the gradients)."""
    import torch
    if clear is not None:
        clear()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def add_memory(b, row, sides, clear):
    """Peak extra memory of each side that was timed ({side: fn}) into the row; a failure is a note."""
    for side, fn in sides.items():
        if fn is None or row.get(f"{side}_ms") is None:
            continue
        try:
            row[f"{side}_mib"] = peak_extra_mib(fn, clear)
        except Exception as e:
            add_note(row, f"{side} memory: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    log(f"    peak extra memory: fastdl {_fmt(row.get('fastdl_mib'), '.1f')} MiB, "
        f"torch {_fmt(row.get('torch_mib'), '.1f')} MiB")


def _needs_torch(b):
    if not b.th_ok:  # fastdl.torch's losses take torch CUDA tensors: nothing to time without them
        raise RuntimeError(f"not measured: {b.skip['torch']}")


def bench_torch_cross_entropy(b, rows, cols):
    """fastdl.torch.nn.functional.cross_entropy (inplace_backward=False) against F.cross_entropy,
    forward + backward with int64 class ids on torch CUDA tensors, float32 and bfloat16: time and peak
    extra memory (issue #10 sets no number here: reported)."""
    import torch
    for label, tdt in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
        b.guarded("fastdl.torch cross_entropy fwd+bwd", label, size_label(shape=(rows, cols)),
                  lambda: _torch_cross_entropy_of(b, rows, cols, label, tdt))


def _torch_cross_entropy_of(b, rows, cols, label, tdt):
    import torch
    import torch.nn.functional as F
    _needs_torch(b)
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(rows, cols, device="cuda", generator=gen).to(tdt).requires_grad_(True)
    t = torch.randint(0, cols, (rows,), device="cuda", generator=gen)

    def clear():
        x.grad = None

    def th():
        clear()
        F.cross_entropy(x, t).backward()
    def fd_setup():
        from fastdl.torch.nn import functional as FF

        def fd():
            clear()
            FF.cross_entropy(x, t, inplace_backward=False).backward()
        return fd
    fd = b.side(b.fd_ok, fd_setup, torch_timer)
    row = b.run("fastdl.torch cross_entropy fwd+bwd", label, size_label(shape=(rows, cols)),
                ce_bytes(rows, cols, torch.finfo(tdt).bits // 8), fd, (th, torch_timer),
                torch_label="F.cross_entropy + backward")
    add_memory(b, row, {"fastdl": fd and fd[0], "torch": th}, clear)


def bench_linear_cross_entropy(b, n, d, v, goal_size, chunk_rows_extra=1024):
    """fastdl.torch.nn.functional.linear_cross_entropy(x, w, t) against F.cross_entropy(F.linear(x, w), t),
    forward + backward (gradients of x and w), bfloat16, no bias: time and peak extra memory (issue #10's
    goal). A second row with chunk_rows=chunk_rows_extra shows what the chunk size does (no goal)."""
    import torch
    size = f"N={n} D={d} V={v}"
    b.guarded("linear_cross_entropy fwd+bwd", "bf16", size,
              lambda: _linear_cross_entropy_of(b, n, d, v, torch.bfloat16, goal_size, chunk_rows_extra))


def _linear_cross_entropy_of(b, n, d, v, tdt, goal_size, chunk_rows_extra):
    import torch
    import torch.nn.functional as F
    _needs_torch(b)
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(n, d, device="cuda", generator=gen) * d ** -0.5).to(tdt).requires_grad_(True)
    w = (torch.randn(v, d, device="cuda", generator=gen) * d ** -0.5).to(tdt).requires_grad_(True)
    t = torch.randint(0, v, (n,), device="cuda", generator=gen)
    size = f"N={n} D={d} V={v}"

    def clear():
        x.grad = w.grad = None

    def th():
        clear()
        F.cross_entropy(F.linear(x, w), t).backward()

    def fd_setup(kw):
        from fastdl.torch.nn import functional as FF

        def fd():
            clear()
            FF.linear_cross_entropy(x, w, t, **kw).backward()
        return fd
    for kw, goal in [({}, "linear_ce"), ({"chunk_rows": chunk_rows_extra}, None)]:
        fd = b.side(b.fd_ok, lambda: fd_setup(kw), torch_timer)
        op = "linear_cross_entropy fwd+bwd" + (f" chunk_rows={kw['chunk_rows']}" if kw else "")
        row = b.run(op, "bf16", size, 0, fd, (th, torch_timer), goal=goal, goal_size=goal_size,
                    torch_label="F.linear + F.cross_entropy + backward")
        add_memory(b, row, {"fastdl": fd and fd[0], "torch": th}, clear)
        clear()
        free_memory()


def bench_mlp_fit(b, batch_sizes):
    """The seed MLP's fit on the GPU against a plain torch CUDA loop, one epoch each, interleaved
    (bench/train_speed.py's measure); a row per batch size, times in ms per epoch."""
    sys.path.insert(0, str(ROOT / "bench"))
    import train_speed
    makers = {"fastdl": train_speed.fastdl_epoch}
    if b.th_ok:
        makers["torch loop"] = train_speed.torch_epoch
    for bs in batch_sizes:
        size = f"batch {bs}"
        if time.time() - b.start > b.args.budget_s:
            b._add(make_row(MLP_FIT_OP, "f32", size, 0, goal=MLP_BATCH_GOALS.get(bs),
                            error=f"not run: past the time budget ({b.args.budget_s:.0f} s)"))
            continue

        def one():
            rates = train_speed.measure(makers, [bs], 3 if b.args.quick else 5, device="cuda")[bs]
            epoch_ms = {k: train_speed.N / v * 1e3 for k, v in rates.items()}
            row = make_row(MLP_FIT_OP, "f32", size, 0, fastdl_ms=epoch_ms["fastdl"],
                           torch_ms=epoch_ms.get("torch loop"), goal=MLP_BATCH_GOALS.get(bs),
                           torch_label="plain torch CUDA loop")
            add_note(row, "samples/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()))
            b._add(row)
        b.guarded(MLP_FIT_OP, "f32", size, one)


def run_benchmarks(args, skip, start):
    """The timed sections, each guarded. Returns (rows, copy, errors)."""
    b, errors, copy = Bench(args, skip, start), [], {}
    sizes = dict(n=2 ** 22, ce=(1024, 8192), big=2 ** 22, llm=llm_shapes(d=256, vocab=8192), copy=2 ** 28,
                 gpt2=gpt2_small_shapes(d=256, vocab=8192, ctx=256), lce=(1024, 512, 32000),
                 rows=[(8192, 10), (1024, 1000)]) \
        if args.quick else dict(n=GOAL_ELEMENTS, ce=(8192, 32768), big=2 ** 27, llm=llm_shapes(), copy=2 ** 30,
                                gpt2=gpt2_small_shapes(), lce=(8192, 2048, 128256),
                                rows=[(1 << 20, 10), (65536, 1000), (4096, 32768)])
    try:
        log(f"== device-to-device copy of {sizes['copy'] / 2 ** 30:g} GiB")
        copy["gbps"], copy["ms"] = copy_bandwidth_gbps(sizes["copy"], 10 if not args.quick else 5)
        copy["bytes"] = sizes["copy"]
        log(f"copy bandwidth: {copy['gbps']:.0f} GB/s (bytes read + written), {copy['ms']:.3f} ms per copy")
    except Exception as e:
        errors.append({"section": "copy bandwidth", "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()})
        log(f"copy bandwidth FAILED: {type(e).__name__}: {e}")
    sections = [
        ("activations", lambda: bench_activations(b, sizes["n"])),
        ("losses", lambda: bench_losses(b, sizes["n"])),
        ("softmax cross-entropy", lambda: bench_cross_entropy(b, *sizes["ce"], goal_size=not args.quick)),
        ("categorical hinge and focal cross-entropy", lambda: bench_row_losses(b, sizes["rows"])),
        ("AdamW", lambda: bench_adamw(b, [(f"1x{size_label(sizes['big'])}", [(sizes["big"],)]),
                                          (f"LLM-like {len(sizes['llm'])} tensors", sizes["llm"])],
                                      goal_size=not args.quick)),
        ("AdamW on GPT-2 small (issue #10)",
         lambda: bench_adamw(b, [(f"GPT-2 small {len(sizes['gpt2'])} tensors", sizes["gpt2"])],
                             goal_size=not args.quick, goal="adamw_gpt2")),
        ("AdamW + GradScaler on GPT-2 small (issue #10)",
         lambda: bench_adamw(b, [(f"GPT-2 small {len(sizes['gpt2'])} tensors", sizes["gpt2"])],
                             goal_size=False, goal=None, amp=True)),
        ("RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion (issue #11)",
         lambda: bench_adaptive_optimizers(b, [(sizes["big"],)], f"1x{size_label(sizes['big'])}")),
        ("fastdl.torch cross_entropy (issue #10)", lambda: bench_torch_cross_entropy(b, *sizes["ce"])),
        ("fastdl.torch linear_cross_entropy (issue #10)",
         lambda: bench_linear_cross_entropy(b, *sizes["lce"], goal_size=not args.quick,
                                            chunk_rows_extra=1024 if not args.quick else 256)),
        ("model API: MLP fit on the GPU (issue #10)", lambda: bench_mlp_fit(b, [32, 4096])),
    ]
    for name, fn in sections:
        log(f"== {name}")
        try:
            fn()
        except Exception as e:
            errors.append({"section": name, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
            log(f"{name} FAILED: {type(e).__name__}: {e}")
        free_memory()  # leave the memory to the next section
    for r in b.rows:
        finish_row(r, copy.get("gbps"))
    return b.rows, copy, errors


# ---- the command ------------------------------------------------------------------------------------

def run(args):
    start = time.time()
    path = args.json or default_json_path(os.environ)
    doc = {"script": "bench/gpu_check.py", "args": {k: v for k, v in vars(args).items()}, "goals_text": GOALS,
           "errors": []}
    if not args.no_build:
        try:
            doc["build"] = run_build(timeout_s=360)
            doc["build"]["fastdl_info"] = installed_info()
            log(f"fastdl.info(): {json.dumps(doc['build']['fastdl_info'])}")
        except Exception as e:
            doc["build"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    if not args.no_tests:
        try:
            doc["tests"] = run_tests(timeout_s=min(300.0, max(90.0, args.budget_s - (time.time() - start) - 90)))
        except Exception as e:
            doc["tests"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    pr = probe()
    skip = skip_reasons(pr)
    doc["probe"], doc["skipped"] = pr, {k: v for k, v in skip.items() if v}
    try:
        doc["environment"] = environment(pr)
    except Exception as e:
        doc["environment"] = {"error": f"{type(e).__name__}: {e}"}
    log(f"environment: {json.dumps(doc['environment'], default=str)}")
    rows = []
    if skip["gpu"] or (skip["fastdl"] and skip["torch"]):
        doc["nothing_measured"] = True
        log("nothing to measure: " + "; ".join(f"{k}: {v}" for k, v in skip.items() if v))
    else:
        for side in ("fastdl", "torch"):
            if skip[side]:
                log(f"{side} side not measured: {skip[side]}")
        rows, doc["copy_bandwidth"], errors = run_benchmarks(args, skip, start)
        doc["errors"] += errors
    doc["rows"] = rows
    doc["goals"] = summarize_goals(rows)
    doc["seconds"] = round(time.time() - start, 1)
    if rows:
        log("\n" + format_table(rows) + "\n")
        log(format_goals(doc["goals"]))
    try:
        write_json(path, doc)
        log(f"results written to {path}")
    except Exception as e:
        log(f"could not write {path}: {type(e).__name__}: {e}")
        doc["errors"].append({"section": "json", "error": str(e)})
    status = exit_status(doc)
    log(f"done in {doc['seconds']} s, exit status {status}")
    return status


def self_test():
    """This script's own logic with fake timings, and the skip paths of the machine it runs on."""
    checks = 0

    def ok(cond, what):
        nonlocal checks
        if not cond:
            raise AssertionError(f"self-test: {what}")
        checks += 1

    # arguments and paths
    a = parse_args([])
    ok(not (a.quick or a.no_build or a.no_tests or a.self_test) and a.json is None and a.budget_s == 480, "defaults")
    a = parse_args(["--quick", "--no-build", "--no-tests", "--json", "r.json", "--budget-s", "60"])
    ok(a.quick and a.no_build and a.no_tests and a.json == "r.json" and a.budget_s == 60, "options parsed")
    try:
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")
        parse_args(["--bogus"])
        ok(False, "an unknown option is refused")
    except SystemExit as e:
        ok(e.code == 2, "an unknown option exits 2")
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    ok(default_json_path({"OUT": "/tmp/o"}) == "/tmp/o/gpu_check.json", "$OUT/gpu_check.json")
    ok(default_json_path({}) == "gpu_check.json", "gpu_check.json without $OUT")

    # sizes, bytes and bandwidth math
    shapes = llm_shapes()
    ok(len(shapes) == 200, f"200 LLM-like tensors, got {len(shapes)}")
    ok(sum(map(numel, shapes)) == 50304 * 768 + 18 * (4 * 768 * 768 + 2 * 768 * 3072 + 5 * 768) + 768 == 166_105_344,
       "LLM-like total 166,105,344 elements")
    ok({(50304, 768), (768, 768), (768, 3072), (3072, 768), (768,)} == set(shapes), "LLM-like shape kinds")
    ok(len(llm_shapes(d=256, vocab=8192)) == 200, "quick LLM-like list also 200 tensors")
    g2 = gpt2_small_shapes()
    ok(len(g2) == 148, f"GPT-2 small: 148 tensors, got {len(g2)}")
    ok(sum(map(numel, g2)) == 124_439_808, f"GPT-2 small: 124,439,808 parameters, got {sum(map(numel, g2))}")
    ok(g2[:2] == [(50257, 768), (1024, 768)] and g2[-2:] == [(768,), (768,)], "GPT-2 embeddings, final LayerNorm")
    ok({(768, 2304), (2304,), (768, 768), (768, 3072), (3072,), (3072, 768), (768,)} | {(50257, 768), (1024, 768)}
       == set(g2), "GPT-2 small shape kinds")
    ok(g2.count((768, 2304)) == 12 and g2.count((768,)) == 12 * 6 + 2 and g2.count((3072,)) == 12,
       "GPT-2 small: per layer 4 LayerNorm vectors + 2 biases of d")
    ok(len(gpt2_small_shapes(d=256, vocab=8192, ctx=256)) == 148, "quick GPT-2 list also 148 tensors")
    ok(activation_bytes(2 ** 26, 4) == 2 ** 29 and activation_bytes(10, 2, backward=True) == 60, "activation bytes")
    ok(loss_bytes(10, 4) == 120 and adamw_bytes(10, 4) == 280 and adamw_bytes(10, 2) == 140, "loss / AdamW bytes")
    ok(optimizer_bytes(10, 4, 2) == adamw_bytes(10, 4) and optimizer_bytes(10, 2, 1) == 100, "adaptive optimizer bytes")
    ok([a[1] for a in ADAPTIVE_STEPS] == ["rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"],
       "the six adaptive optimizers timed")
    ok(ce_bytes(8192, 32768, 4) == 2 * 8192 * 32768 * 4 + 8192 * 8, "CE bytes")
    ok(abs(gbps(2 * 2 ** 30, 0.5) - 4294.967296) < 1e-6, "GB/s = bytes / time")
    ok(choose_inner(0.1) == 20 and choose_inner(5.0) == 1 and choose_inner(0.0) == 64 and choose_inner(1e-4) == 64,
       "calls per sample")
    ok(size_label(2 ** 26) == "2^26" and size_label(1000) == "1000" and size_label(shape=(8192, 32768)) == "8192x32768",
       "size labels")

    # rows, goals and the table, from fake timings (copy 4000 GB/s)
    copy = 4000.0
    n, b32 = 2 ** 26, activation_bytes(2 ** 26, 4)
    at_copy = b32 / (copy * 1e9) * 1e3  # the ms a pass at exactly the copy bandwidth takes
    rows = [
        make_row("sigmoid", "f32", "2^26", b32, fastdl_ms=at_copy / 0.9, torch_ms=at_copy / 0.5, goal="elementwise"),
        make_row("tanh", "f32", "2^26", b32, fastdl_ms=at_copy / 0.8, torch_ms=at_copy / 0.7, goal="elementwise"),
        make_row("relu", "f16", "2^22", b32 // 32, fastdl_ms=0.01, torch_ms=0.02, goal="elementwise",
                 goal_size=False),
        make_row("silu", "bf16", "2^26", b32 // 2, error="fastdl: RuntimeError: boom", torch_ms=0.2,
                 goal="elementwise"),
        make_row("AdamW step", "f32", "1x2^27", adamw_bytes(2 ** 27, 4), fastdl_ms=1.0, torch_ms=1.1, goal="adamw"),
        make_row("AdamW step", "bf16", "1x2^27", adamw_bytes(2 ** 27, 2), fastdl_ms=1.0, torch_ms=0.9, goal="adamw"),
        make_row("AdamW step", "f32", "LLM", adamw_bytes(10, 4), fastdl_ms=1.0, torch_ms=None, goal="adamw",
                 note="torch: RuntimeError: no fused"),
        make_row("softmax CE fwd+bwd", "f32", "8192x32768", ce_bytes(8192, 32768, 4), fastdl_ms=1.0, torch_ms=2.5,
                 goal="ce"),
        make_row("softmax CE fwd+bwd", "bf16", "8192x32768", ce_bytes(8192, 32768, 2), fastdl_ms=1.0, torch_ms=1.5,
                 goal="ce"),
        make_row("gelu backward", "f32", "2^26", activation_bytes(n, 4, True), fastdl_ms=1.0, torch_ms=1.0),
        # issue #10: AdamW on GPT-2 small; linear_cross_entropy's time and memory goal (bytes 0: no GB/s)
        make_row("AdamW step", "f32", "GPT-2", adamw_bytes(124_439_808, 4), fastdl_ms=1.0, torch_ms=1.0,
                 goal="adamw_gpt2"),
        make_row("AdamW step", "bf16", "GPT-2", adamw_bytes(124_439_808, 2), fastdl_ms=1.0, torch_ms=0.99,
                 goal="adamw_gpt2"),
        make_row("linear CE", "bf16", "N=8192", 0, fastdl_ms=1.2, torch_ms=1.0, fastdl_mib=100.0, torch_mib=1000.0,
                 goal="linear_ce"),
        make_row("linear CE", "bf16", "N=8192", 0, fastdl_ms=1.0, torch_ms=1.0, fastdl_mib=101.0, torch_mib=1000.0,
                 goal="linear_ce"),
        make_row("linear CE", "bf16", "N=8192", 0, fastdl_ms=1.25, torch_ms=1.0, fastdl_mib=10.0, torch_mib=1000.0,
                 goal="linear_ce"),
        make_row("linear CE", "bf16", "N=8192", 0, fastdl_ms=1.0, torch_ms=1.0, goal="linear_ce"),
        make_row("linear CE", "bf16", "N=1024", 0, fastdl_ms=1.0, torch_ms=1.0, fastdl_mib=1.0, torch_mib=100.0,
                 goal="linear_ce", goal_size=False),
        make_row("fastdl.torch cross_entropy", "bf16", "8192x32768", ce_bytes(8192, 32768, 2), fastdl_ms=1.0,
                 torch_ms=2.0, fastdl_mib=512.0, torch_mib=1536.0),
    ]
    for r in rows:
        finish_row(r, copy)
    ok(abs(rows[0]["pct_copy"] - 90.0) < 1e-9 and abs(rows[0]["gbps"] - 3600.0) < 1e-6, "% of copy bandwidth")
    ok(abs(rows[0]["ratio"] - 1.8) < 1e-12, "ratio torch / fastdl")
    ok([r["goal_met"] for r in rows] == [True, False, None, False, True, False, None, True, False, None,
                                         True, False, True, False, False, None, None, None],
       f"goal verdicts {[r['goal_met'] for r in rows]}")
    ok("time 1.20x torch's (goal <= 1.2x), memory 0.100 of torch's (goal <= 0.1)" == rows[12]["goal_why"],
       f"linear CE verdict text: {rows[12]['goal_why']}")
    ok("memory 0.101" in rows[13]["goal_why"] and "time 1.25x" in rows[14]["goal_why"], "linear CE misses")
    ok(rows[15]["goal_why"] == "peak memory not measured", "linear CE without memory: not judged")
    ok(rows[12]["gbps"] is None and rows[12]["pct_copy"] is None and abs(rows[12]["memory_ratio"] - 0.1) < 1e-12,
       "no GB/s without bytes; memory ratio")
    ok(rows[17]["goal_met"] is None and abs(rows[17]["memory_ratio"] - 1 / 3) < 1e-12 and rows[17]["ratio"] == 2.0,
       "cross_entropy rows: reported, no goal")
    amp_row = make_row(AMP_ADAMW_OP, "bf16", "GPT-2", adamw_bytes(124_439_808, 2), fastdl_ms=1.0, torch_ms=1.1)
    finish_row(amp_row, copy)
    ok(amp_row["goal_met"] is None and abs(amp_row["ratio"] - 1.1) < 1e-12, "AdamW + GradScaler row: no goal")
    calls = []

    class FakeScaler:
        def step(self, opt):
            calls.append(("step", opt))

        def update(self):
            calls.append("update")
    scaled_step(FakeScaler(), "opt")()
    ok(calls == [("step", "opt"), "update"], "a scaled step is scaler.step(opt) then scaler.update()")
    goals = summarize_goals(rows)
    ok([g["met"] for g in goals] == [False, False, False, False, False, None, None],
       f"goal summary {[g['met'] for g in goals]}")
    mlp = [make_row(MLP_FIT_OP, "f32", "batch 32", 0, fastdl_ms=100.0, torch_ms=250.0, goal="mlp_b32"),
           make_row(MLP_FIT_OP, "f32", "batch 4096", 0, fastdl_ms=10.0, torch_ms=11.0, goal="mlp_b4096"),
           make_row(MLP_FIT_OP, "f32", "batch 4096", 0, fastdl_ms=10.0, goal="mlp_b4096")]
    for r in mlp:
        finish_row(r, copy)
    ok([r["goal_met"] for r in mlp] == [True, False, None] and mlp[0]["goal_why"] == "2.50x torch (goal 2x)",
       f"MLP fit verdicts {[r['goal_why'] for r in mlp]}")
    ok([g["met"] for g in summarize_goals(mlp)][5:] == [True, False], "MLP fit goals")
    ok([g["rows_judged"] for g in goals][3:] == [2, 3, 0, 0], "issue #10 goals: rows judged")
    ok(summarize_goals(rows[:11])[3]["met"] is True and summarize_goals(rows[:11])[4]["met"] is None,
       "GPT-2 AdamW goal met alone; linear CE without rows not judged")
    ok(goals[0]["rows_judged"] == 3 and len(goals[0]["not_met"]) == 2, "elementwise goal: 3 judged, 2 not met")
    ok(summarize_goals([])[0]["met"] is None, "a goal without rows is not judged")
    table = format_table(rows)
    lines = table.splitlines()
    ok(lines[0] == "| " + " | ".join(COLUMNS) + " |", "table header")
    ok(len(lines) == 2 + len(rows) + 2, f"a line per row plus 2 footnotes, got {len(lines)}")
    ok("| sigmoid | f32 | 2^26 |" in table and "| 90.0 | - | - | yes |" in lines[2], "sigmoid row")
    ok(lines[2 + 12].endswith("| 1.200 | 1.000 | 0.83x | - | - | 100 | 1000 | yes |"), f"linear CE row: {lines[14]}")
    ok(lines[2 + 15].endswith("| 1.00x | - | - | - | - | - |") and "n/a (size)" in lines[2 + 16], "linear CE cells")
    ok("| silu [1] | bf16 | 2^26 | error |" in table and "[1] fastdl: RuntimeError: boom" in table, "error footnote")
    ok("n/a (size)" in lines[4] and "**no**" in lines[3], "verdict cells")
    ok("NOT met" in format_goals(goals), "goal lines")

    # pytest output
    out = ("SKIPPED [1] tests/test_cuda.py:27: no CUDA device: no NVIDIA driver\n"
           "FAILED tests/test_cuda.py::test_mse[0-f32] - AssertionError: loss\n"
           "ERROR tests/test_cuda.py::test_x - RuntimeError\n"
           "1 failed, 41 passed, 3 skipped, 1 error, 2 warnings in 12.34s\n")
    p = parse_pytest_output(out)
    ok(p["counts"] == {"failed": 1, "passed": 41, "skipped": 3, "errors": 1, "warnings": 2}, f"counts {p['counts']}")
    ok(p["skip_reasons"] == ["no CUDA device: no NVIDIA driver"], "skip reasons")
    ok(p["failures"] == ["tests/test_cuda.py::test_mse[0-f32]", "tests/test_cuda.py::test_x"], "failures")
    ok(parse_pytest_output("no tests ran in 0.01s\n")["counts"] == {}, "no tests ran")
    ok(parse_pytest_output("==== 1 skipped in 0.70s ====")["counts"] == {"skipped": 1}, "decorated summary line")
    ok(tests_verdict(1, p)[0] is False and tests_verdict(None, p) == (False, "timed out"), "failed / timed out tests")
    whole = parse_pytest_output("SKIPPED [1] tests/test_cuda.py:30: no CUDA device: no NVIDIA driver\n"
                                "42 passed, 1 skipped in 0.82s\n")
    ok(tests_verdict(0, whole)[0] is False and "no NVIDIA driver" in tests_verdict(0, whole)[1],
       "CUDA tests skipped whole on the GPU machine: a failed check")
    two = parse_pytest_output("SKIPPED [1] tests/test_cuda.py:790: needs 2 GPUs\n600 passed, 1 skipped in 80.1s\n")
    ok(tests_verdict(0, two) == (True, "600 passed"), "a skipped 2-GPU test is fine")
    ok(tests_verdict(5, parse_pytest_output("no tests ran in 0.01s"))[0] is False, "exit 5")
    ok(tests_verdict(0, parse_pytest_output(""))[0] is None, "nothing ran")

    # skip reasons and exit status
    s = skip_reasons({"cupy": False, "cupy_error": "ModuleNotFoundError: No module named 'cupy'", "torch_cuda": False,
                      "torch_error": "torch sees no CUDA device"})
    ok(s["gpu"].startswith("CuPy is not importable") and s["fastdl"] == s["gpu"] and "no CUDA" in s["torch"],
       "no CuPy")
    s = skip_reasons({"cupy": True, "devices": 0, "device_error": "CUDARuntimeError: cudaErrorInsufficientDriver",
                      "torch_cuda": True})
    ok("cudaErrorInsufficientDriver" in s["gpu"] and s["torch"] is None, "no device")
    s = skip_reasons({"cupy": True, "devices": 1, "fastdl": True, "fastdl_cuda": False, "cuda_status": "not built",
                      "torch_cuda": True})
    ok(s["gpu"] is None and "not built" in s["fastdl"], "fastdl without CUDA")
    ok(skip_reasons({"cupy": True, "devices": 1, "fastdl": True, "fastdl_cuda": True, "torch_cuda": True})
       == {"gpu": None, "fastdl": None, "torch": None}, "everything present")
    ok(exit_status({"nothing_measured": True}) == 3 and exit_status({"errors": []}) == 0, "exit 3 / 0")
    ok(exit_status({"build": {"ok": False}, "errors": []}) == 1 and exit_status({"errors": [{}]}) == 1, "exit 1")
    ok(exit_status({"build": {"ok": False}, "nothing_measured": True}) == 1, "a failed build is 1, not 3")
    ok(exit_status({"tests": {"ok": None}, "errors": []}) == 0, "all tests skipped is not a failure")

    with tempfile.TemporaryDirectory() as tmp:
        # JSON round trip
        doc = {"rows": rows, "goals": goals, "environment": {"date": "2026-12-01"}}
        path = Path(tmp) / "sub" / "r.json"
        write_json(path, doc)
        ok(json.loads(path.read_text()) == json.loads(json.dumps(doc)), "JSON written and read back")
        ok(not list(path.parent.glob("*.tmp")), "no temporary file left")
        # this machine's own skip path: only where there is nothing to measure (never times a GPU here)
        if skip_reasons(probe())["gpu"]:
            target = Path(tmp) / "skip.json"
            stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
            try:
                status = run(parse_args(["--no-build", "--no-tests", "--json", str(target)]))
            finally:
                sys.stdout.close()
                sys.stdout = stdout
            res = json.loads(target.read_text())
            ok(status == 3 and res["nothing_measured"] and res["skipped"]["gpu"] and res["rows"] == [],
               "no GPU here: nothing measured, exit 3, the reason in the JSON")
            ok(all(g["met"] is None for g in res["goals"]) and "date" in res["environment"], "skip-path JSON")
            log(f"self-test: this machine: {res['skipped']['gpu']}")
    log(f"self-test: {checks} checks passed")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark report: every fastdl kernel timed beside NumPy and PyTorch (when installed), in
one run, with the memory-bandwidth floor of each.

    python -m fastdl.bench            # or: python bench/report.py, or: fastdl bench
    python -m fastdl.bench --quick --only adam

Competitors are timed interleaved (A, B, C, A, B, C, ...) so that the machine's drift and
noise hit them alike; each time is the median of the repetitions. The floor of a kernel is
the bytes it must move (each input read once, each output written once) divided by the
bandwidth this machine reaches on a pass of the same kind over 256 MiB: in place (read and
write back the same lines: the optimizers) or out of place (read one array, write another:
activations, softmax, losses), both timed with fastdl's cheapest kernel, relu.
"""

import argparse
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from . import _backend, info, ops, optim
from .backends import numpy_kernels, options

try:  # PyTorch is an optional competitor
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised where torch is absent
    torch = None


@dataclass
class Case:
    """One kernel call to time: `impls` maps a label ("fastdl", "numpy", "torch ...") to a
    zero-argument callable; `bytes` is the minimum traffic of one call."""

    name: str
    bytes: int
    impls: dict
    note: str = ""
    group: str = ""
    in_place: bool = False  # updates its arrays in place (the optimizers)
    times: dict = field(default_factory=dict)


def _median_ms(samples):
    return float(np.median(samples)) * 1e3


def measure(impls, repeats=15, warmup=2, budget_s=None):
    """Interleaved timing: {label: [seconds, ...]}. Stops early once budget_s has passed."""
    for f in impls.values():
        for _ in range(warmup):
            f()
    samples = {k: [] for k in impls}
    start = time.perf_counter()
    for _ in range(repeats):
        for k, f in impls.items():
            t = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(samples[k]) >= 3:
            break
    return samples


def bandwidth_gbs(mib=256, repeats=9):
    """Memory bandwidth this machine reaches, bytes read + written per second, on arrays far
    larger than the caches: {"in_place": relu(x, out=x), "out_of_place": relu(x, out=y)}."""
    x = np.ones(mib * 2**20 // 4, dtype=np.float32)
    y = np.empty_like(x)
    t = measure({"in_place": lambda: ops.relu(x, out=x), "out_of_place": lambda: ops.relu(x, out=y)},
                repeats=repeats, warmup=1)
    return {k: 2 * x.nbytes / (_median_ms(v) / 1e3) / 1e9 for k, v in t.items()}


# ---- the cases -------------------------------------------------------------------------------

def activation_cases(n):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    fwd, bwd = 2 * x.nbytes, 3 * x.nbytes
    tx, ty, tg = (torch.from_numpy(a) for a in (x, y, g)) if torch else (None,) * 3
    k, c = np.float32(0.7978845608), np.float32(0.044715)

    def np_sigmoid():
        with np.errstate(over="ignore"):
            np.exp(-x, out=y)
        np.add(y, 1, out=y)
        np.reciprocal(y, out=y)

    def np_gelu_tanh():
        u = x * x
        u *= c
        u += 1
        u *= x
        u *= k
        np.tanh(u, out=u)
        u += 1
        u *= 0.5
        np.multiply(x, u, out=y)

    def np_silu():
        with np.errstate(over="ignore"):
            np.exp(-x, out=y)
        np.add(y, 1, out=y)
        np.divide(x, y, out=y)

    label = f"{n / 1e6:g}M f32"
    cases = [
        Case(f"copy {label} (reference)", fwd, {"numpy copyto": lambda: np.copyto(y, x)},
             group="activation"),
        Case(f"sigmoid {label}", fwd, {"fastdl": lambda: ops.sigmoid(x, out=y), "numpy": np_sigmoid,
                                       **({"torch": lambda: torch.sigmoid(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"tanh {label}", fwd, {"fastdl": lambda: ops.tanh(x, out=y), "numpy": lambda: np.tanh(x, out=y),
                                    **({"torch": lambda: torch.tanh(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"relu {label}", fwd, {"fastdl": lambda: ops.relu(x, out=y), "numpy": lambda: np.maximum(x, 0, out=y),
                                    **({"torch": lambda: torch.clamp_min(tx, 0, out=ty)} if torch else {})},
             group="activation"),
        Case(f"gelu tanh-form {label}", fwd, {
            "fastdl": lambda: ops.gelu(x, approximate=True, out=y), "numpy": np_gelu_tanh,
            **({"torch": lambda: torch._C._nn.gelu(tx, approximate="tanh", out=ty)} if torch else {})},
            group="activation"),
        Case(f"gelu exact {label}", fwd, {
            "fastdl": lambda: ops.gelu(x, out=y),
            **({"torch": lambda: torch._C._nn.gelu(tx, out=ty)} if torch else {})},
            note="NumPy has no erf", group="activation"),
        Case(f"silu {label}", fwd, {"fastdl": lambda: ops.silu(x, out=y), "numpy": np_silu,
                                    **({"torch": lambda: torch.ops.aten.silu.out(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"elu {label}", fwd, {"fastdl": lambda: ops.elu(x, out=y),
                                   **({"torch": lambda: torch._C._nn.elu(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"softplus {label}", fwd, {"fastdl": lambda: ops.softplus(x, out=y),
                                        **({"torch": lambda: torch._C._nn.softplus(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"mish {label}", fwd, {"fastdl": lambda: ops.mish(x, out=y),
                                    **({"torch": lambda: torch._C._nn.mish(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"hard_sigmoid {label}", fwd, {"fastdl": lambda: ops.hard_sigmoid(x, out=y),
                                            **({"torch": lambda: torch._C._nn.hardsigmoid(tx, out=ty)} if torch else {})},
             group="activation"),
        Case(f"tanh backward {label}", bwd, {
            "fastdl": lambda: ops.tanh_backward(g, x, out=y),
            "numpy": lambda: np.multiply(g, 1 - x * x, out=y),
            **({"torch": lambda: torch.ops.aten.tanh_backward.grad_input(tg, tx, grad_input=ty)} if torch else {})},
            group="activation"),
        Case(f"gelu tanh-form backward {label}", bwd, {
            "fastdl": lambda: ops.gelu_backward(g, x, approximate=True, out=y),
            **({"torch": lambda: torch.ops.aten.gelu_backward.grad_input(tg, tx, approximate="tanh", grad_input=ty)}
               if torch else {})},
            group="activation"),
    ]
    return cases


def softmax_cases(rows, cols):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    y = np.empty_like(x)
    labels = rng.integers(0, cols, rows)
    idx = np.arange(rows)

    def np_softmax():
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=y)
        np.exp(y, out=y)
        np.divide(y, y.sum(axis=1, keepdims=True), out=y)

    def np_ce():  # value and gradient, the textbook NumPy way
        m = x.max(axis=1, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[idx, labels])
        grad = e / s
        grad[idx, labels] -= 1
        grad /= rows
        return loss, grad

    impls_sm = {"fastdl": lambda: ops.softmax(x, out=y), "numpy": np_softmax}
    impls_ce = {"fastdl": lambda: ops.softmax_cross_entropy(x, labels, out=y), "numpy": np_ce}
    if torch:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tl = torch.from_numpy(labels)
        txg = tx.clone().requires_grad_(True)

        def torch_ce():
            txg.grad = None
            F.cross_entropy(txg, tl).backward()

        impls_sm["torch"] = lambda: torch.ops.aten._softmax.out(tx, -1, False, out=ty)
        impls_ce["torch"] = torch_ce
    shape = f"{rows}x{cols} f32"
    return [
        Case(f"softmax {shape}", 2 * x.nbytes, impls_sm, group="softmax"),
        Case(f"softmax cross-entropy fwd+bwd {shape}, int labels", 2 * x.nbytes + labels.nbytes, impls_ce,
             note="torch: F.cross_entropy + backward", group="loss"),
    ]


def loss_cases(n):
    rng = np.random.default_rng(2)
    p = rng.standard_normal(n).astype(np.float32)
    t = rng.standard_normal(n).astype(np.float32)
    g = np.empty_like(p)

    def np_mse():
        d = p - t
        loss = np.mean(d * d)
        np.multiply(d, np.float32(2 / n), out=g)
        return loss

    impls = {"fastdl": lambda: ops.mse(p, t, out=g), "numpy": np_mse}
    if torch:
        tp = torch.from_numpy(p.copy()).requires_grad_(True)
        tt = torch.from_numpy(t)

        def torch_mse():
            tp.grad = None
            F.mse_loss(tp, tt).backward()

        impls["torch"] = torch_mse
    return [Case(f"mse fwd+bwd {n / 1e6:g}M f32", 3 * p.nbytes, impls, note="torch: F.mse_loss + backward",
                 group="loss")]


def row_loss_cases(shapes):
    """Keras's categorical hinge and focal cross-entropy (from logits), value and gradient, beside the
    NumPy row formula they replace (fastdl's NumPy fallback: float64, as fastdl.losses computed them
    before the kernels) and torch autograd (the formula in torch ops + backward)."""
    cases = []
    for rows, cols in shapes:
        rng = np.random.default_rng(6)
        x = (rng.standard_normal((rows, cols)) * 2).astype(np.float32)
        t = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)]
        g = np.empty_like(x)
        for name, kw, label in [("categorical_hinge", {}, "categorical hinge"),
                                ("categorical_focal", dict(from_logits=True), "categorical focal (logits)")]:
            op = numpy_kernels.ROW_LOSSES[name]
            impls = {"fastdl": lambda n=name, kw=kw: ops.row_loss(n, x, t, out=g, **kw),
                     "numpy": lambda op=op, kw=kw: numpy_kernels.row_loss(op, x, t, g, scale=1.0 / rows, **kw)}
            if torch:
                tx = torch.from_numpy(x.copy()).requires_grad_(True)
                tt = torch.from_numpy(t)

                def torch_loss(name=name, tx=tx, tt=tt):
                    tx.grad = None
                    if name == "categorical_hinge":
                        pos = (tt * tx).sum(-1)
                        neg = ((1 - tt) * tx).amax(-1)
                        loss = torch.clamp(neg - pos + 1, min=0).mean()
                    else:
                        q = torch.softmax(tx, -1)
                        q = (q / q.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
                        loss = (0.25 * (1 - q) ** 2 * -tt * torch.log(q)).sum(-1).mean()
                    loss.backward()

                impls["torch"] = torch_loss
            cases.append(Case(f"{label} fwd+bwd {rows}x{cols} f32", 3 * x.nbytes, impls,
                              note="numpy: the NumPy row formula (float64); torch: autograd of the formula",
                              group="loss"))
    return cases


def layer_kernel_cases(quick=False):
    """The layer kernels of issue #13 (fastdl._fastdl_cpu's, called with preallocated outputs) beside
    torch's modules (forward + backward through autograd, channels-last memory for images) and the
    NumPy contract (numpy_layers: float64 statistics). Floors count each input read once and each
    output written once; BatchNorm cannot reach that on arrays larger than the caches (its statistics
    need every row before the first output: x is read twice forward, dy and x twice backward)."""
    ext = _backend.cpu_extension()
    if ext is None or not hasattr(ext, "layer_norm"):
        return []
    from .backends import numpy_layers
    cases = []
    rng = np.random.default_rng(7)

    rows, cols = (1024, 1024) if quick else (8192, 1024)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    gamma, beta = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    mean, rstd, dg, db = (np.empty(n, np.float32) for n in (rows, rows, cols, cols))

    def fastdl_ln(k=ext, a=(x, dy, gamma, beta, y, dx, mean, rstd, dg, db)):
        x, dy, gamma, beta, y, dx, mean, rstd, dg, db = a
        k.layer_norm(x, gamma, beta, y, mean, rstd, 1e-5)
        k.layer_norm_backward(dy, x, gamma, mean, rstd, dx, dg, db)

    impls = {"fastdl": fastdl_ln, "numpy": lambda: fastdl_ln(numpy_layers)}
    if torch:
        ln = torch.nn.LayerNorm(cols)
        tx, tdy = torch.from_numpy(x.copy()).requires_grad_(True), torch.from_numpy(dy)

        def torch_ln(ln=ln, tx=tx, tdy=tdy):
            tx.grad = ln.weight.grad = ln.bias.grad = None
            ln(tx).backward(tdy)

        impls["torch"] = torch_ln
    cases.append(Case(f"layer_norm fwd+bwd {rows}x{cols} f32", 5 * x.nbytes, impls,
                      note="torch: nn.LayerNorm + backward; numpy: the NumPy contract (float64)", group="layer"))

    n, hw, c = (8, 28, 64) if quick else (32, 56, 64)
    x = rng.standard_normal((n * hw * hw, c)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)
    bm, bv, br, dg, db = (np.empty(c, np.float32) for _ in range(5))

    def fastdl_bn(k=ext, a=(x, dy, gamma, beta, y, dx)):
        x, dy, gamma, beta, y, dx = a
        k.batch_norm(x, gamma, beta, y, bm, bv, br, 1e-5)
        k.batch_norm_backward(dy, x, gamma, bm, br, dx, dg, db)

    impls = {"fastdl": fastdl_bn, "numpy": lambda: fastdl_bn(numpy_layers)}
    if torch:
        bn = torch.nn.BatchNorm2d(c)
        tx = torch.from_numpy(x.copy()).reshape(n, hw, hw, c).permute(0, 3, 1, 2).requires_grad_(True)
        tdy = torch.from_numpy(dy).reshape(n, hw, hw, c).permute(0, 3, 1, 2)

        def torch_bn():
            tx.grad = bn.weight.grad = bn.bias.grad = None
            bn(tx).backward(tdy)

        impls["torch"] = torch_bn
    cases.append(Case(f"batch_norm fwd+bwd ({n}x{hw}x{hw})x{c} f32", 5 * x.nbytes, impls,
                      note="torch: nn.BatchNorm2d (training) + backward, channels-last; the two-pass minimum "
                           "is 8 passes = 1.6x this floor", group="layer"))

    img = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
    py_ = np.empty((n, hw // 2, hw // 2, c), np.float32)
    am = np.empty(py_.shape, np.int64)
    pdy = rng.standard_normal(py_.shape).astype(np.float32)
    pdx = np.empty_like(img)
    timg = torch.from_numpy(img.copy()).permute(0, 3, 1, 2).requires_grad_(True) if torch else None
    tpdy = torch.from_numpy(pdy).permute(0, 3, 1, 2) if torch else None
    for kind in ("max", "avg"):
        if kind == "max":
            def fastdl_pool():
                ext.max_pool(img, py_, am, 2, 2, 2, 2, 0, 0)
                ext.max_pool_backward(pdy, am, pdx)
            moved = img.nbytes + py_.nbytes + 2 * am.nbytes + pdy.nbytes + pdx.nbytes
        else:
            def fastdl_pool():
                ext.avg_pool(img, py_, 2, 2, 2, 2, 0, 0)
                ext.avg_pool_backward(pdy, pdx, 2, 2, 2, 2, 0, 0)
            moved = img.nbytes + py_.nbytes + pdy.nbytes + pdx.nbytes
        impls = {"fastdl": fastdl_pool}
        if torch:
            def torch_pool(f=F.max_pool2d if kind == "max" else F.avg_pool2d):
                timg.grad = None
                f(timg, 2, 2).backward(tpdy)
            impls["torch"] = torch_pool
        cases.append(Case(f"{kind}_pool 2x2/2 fwd+bwd {n}x{hw}x{hw}x{c} f32", moved, impls,
                          note=f"torch: F.{kind}_pool2d + backward, channels-last", group="layer"))
    return cases


def resnet50_like_shapes(width=0.62):
    """Parameter shapes of a ResNet-50 with batch norm folded into conv biases, channels scaled
    by `width`: 108 tensors, 10.3M elements at 0.62, half of them under 1k elements."""
    def w(c):
        return int(c * width)
    shapes = [(w(64), 3, 7, 7), (w(64),)]
    cin = w(64)
    for c, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for b in range(blocks):
            mid, out = w(c), w(c * 4)
            shapes += [(mid, cin, 1, 1), (mid,), (mid, mid, 3, 3), (mid,), (out, mid, 1, 1), (out,)]
            if b == 0:
                shapes += [(out, cin, 1, 1), (out,)]
            cin = out
    return shapes + [(1000, cin), (1000,)]


def optimizer_cases(n, shapes):
    cases = []
    configs = [
        ("Adam", dict(lr=1e-3), 28),
        ("AdamW", dict(lr=1e-3, weight_decay=0.01), 28),
        ("SGD momentum", dict(lr=0.01, momentum=0.9), 20),
    ]
    for label, tensor_shapes in [(f"1x{n / 1e6:g}M", [(n,)]),
                                 (f"ResNet-50-like {len(shapes)} tensors", shapes)]:
        for name, kw, bytes_per in configs:
            if name != "Adam" and label.startswith("ResNet"):
                continue
            rng = np.random.default_rng(3)
            params = [rng.standard_normal(s).astype(np.float32) for s in tensor_shapes]
            grads = [rng.standard_normal(s).astype(np.float32) for s in tensor_shapes]
            total = sum(p.size for p in params)
            cls = getattr(optim, name.split()[0])
            fd = cls(params, **kw)
            np_params = [p.copy() for p in params]
            np_opt = cls(np_params, **kw)

            def numpy_step(o=np_opt, g=grads):
                with _backend.use_host("numpy"):
                    o.step(g)

            impls = {"fastdl": lambda o=fd, g=grads: o.step(g), "numpy": numpy_step}
            if torch:
                tcls = getattr(torch.optim, name.split()[0])
                for variant in ("fused", "foreach"):
                    tps = [torch.from_numpy(p.copy()) for p in params]
                    for tp, gr in zip(tps, grads):
                        tp.grad = torch.from_numpy(gr)
                    topt = tcls(tps, **kw, **{variant: True})
                    impls[f"torch {variant}"] = topt.step
            cases.append(Case(f"{name} step {label} f32 ({total / 1e6:.1f}M)", bytes_per * total, impls,
                              note="numpy: fastdl's own NumPy fallback", group="optimizer", in_place=True))
    return cases


# The adaptive optimizers' kernels, called directly (one multi-tensor call per step, as fastdl.optim
# makes it): (label, kernel, options, state lists, torch.optim class or None, its arguments, bytes per
# element in float32: parameters read and written, gradients read, each state read and written).
ADAPTIVE_OPTIMIZERS = [
    ("RMSprop", "rmsprop_step", options.RmspropOptions(lr=1e-2), ["square_avgs", None, None],
     "RMSprop", dict(lr=1e-2), 20),
    ("Adagrad", "adagrad_step", options.AdagradOptions(lr=1e-2), ["sums"], "Adagrad", dict(lr=1e-2), 20),
    ("Adadelta", "adadelta_step", options.AdadeltaOptions(lr=1.0), ["square_avgs", "acc_deltas"],
     "Adadelta", dict(lr=1.0), 28),
    ("Adamax", "adamax_step", options.AdamaxOptions(lr=2e-3), ["exp_avgs", "exp_infs"], "Adamax", dict(lr=2e-3), 28),
    ("NAdam", "nadam_step", options.NadamOptions(lr=2e-3), ["exp_avgs", "exp_avg_sqs"], "NAdam", dict(lr=2e-3), 28),
    ("Lion", "lion_step", options.LionOptions(lr=1e-4), ["exp_avgs"], None, {}, 20),
]


def adaptive_optimizer_cases(n):
    """RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion: the kernel on one tensor of n elements, beside the
    NumPy fallback and torch.optim's foreach implementation (torch has no Lion)."""
    ext = _backend.cpu_extension()
    if ext is None:
        return []
    cases = []
    for label, kernel, opts, state_names, torch_name, torch_kw, bytes_per in ADAPTIVE_OPTIMIZERS:
        rng = np.random.default_rng(5)
        grads = [rng.standard_normal(n).astype(np.float32)]
        steps = np.ones(1, np.int64)
        extra = [np.array([opts.beta1 * 0.5], np.float64)] if kernel == "nadam_step" else []

        def step_with(impl, g=grads, names=state_names, kernel=kernel, extra=extra, opts=opts):
            params = [np.ones(n, np.float32)]
            state = [None if s is None else [np.full(n, 0.5, np.float32)] for s in names]
            return lambda: getattr(impl, kernel)(params, g, *state, *extra, steps, opts)

        impls = {"fastdl": step_with(ext), "numpy": step_with(numpy_kernels)}
        if torch and torch_name:
            tps = [torch.ones(n)]
            tps[0].grad = torch.from_numpy(grads[0])
            impls["torch foreach"] = getattr(torch.optim, torch_name)(tps, foreach=True, **torch_kw).step
        cases.append(Case(f"{label} step 1x{n / 1e6:g}M f32 ({n / 1e6:.1f}M)", bytes_per * n, impls,
                          note="numpy: fastdl's own NumPy fallback", group="optimizer", in_place=True))
    return cases


def torch_optimizer_cases(n, shapes):
    """fastdl.torch optimizers on torch tensors, beside torch.optim fused and foreach."""
    if torch is None or _backend.name != "cpu":
        return []
    from . import torch as fastdl_torch
    cases = []
    configs = [("Adam", dict(lr=1e-3), 28), ("AdamW", dict(lr=1e-3, weight_decay=0.01), 28),
               ("SGD", dict(lr=0.01, momentum=0.9), 20)]
    # fastdl.torch's other optimizers (torch has a fused CPU step for Adagrad only; foreach for all)
    configs += [(name, kw, bytes_per) for _, _, _, _, name, kw, bytes_per in ADAPTIVE_OPTIMIZERS if name]
    for label, tensor_shapes in [(f"1x{n / 1e6:g}M", [(n,)]), (f"ResNet-50-like {len(shapes)} tensors", shapes)]:
        for name, kw, bytes_per in configs:
            g = torch.Generator().manual_seed(4)
            base = [torch.randn(s, generator=g) for s in tensor_shapes]
            grads = [torch.randn(s, generator=g) for s in tensor_shapes]
            total = sum(t.numel() for t in base)
            impls = {}
            for impl, make in [("fastdl", lambda ps: getattr(fastdl_torch, name)(ps, **kw)),
                               ("torch fused", lambda ps: getattr(torch.optim, name)(ps, fused=True, **kw)),
                               ("torch foreach", lambda ps: getattr(torch.optim, name)(ps, foreach=True, **kw))]:
                ps = [torch.nn.Parameter(t.clone()) for t in base]
                for p, gr in zip(ps, grads):
                    p.grad = gr
                try:
                    impls[impl] = make(ps).step
                except TypeError:  # torch.optim.<name> has no fused=
                    continue
            cases.append(Case(f"fastdl.torch {name}{' momentum' if name == 'SGD' else ''} step {label} f32 "
                              f"({total / 1e6:.1f}M)", bytes_per * total, impls, group="torch optimizer",
                              in_place=True))
    return cases


def all_cases(quick=False):
    n = 1_000_000 if quick else 10_000_000
    rows = 512 if quick else 4096
    shapes = resnet50_like_shapes(0.2 if quick else 0.62)
    row_shapes = [(512, 1000), (8192, 10)] if quick else [(4096, 1000), (65536, 10)]
    return (activation_cases(n) + softmax_cases(rows, 1000) + loss_cases(n) + row_loss_cases(row_shapes)
            + optimizer_cases(n, shapes)
            + adaptive_optimizer_cases(n) + torch_optimizer_cases(n, shapes) + layer_kernel_cases(quick))


# ---- the report ------------------------------------------------------------------------------

def run(quick=False, only=None, repeats=None):
    cases = [c for c in all_cases(quick) if not only or only.lower() in c.name.lower()]
    repeats = repeats or (7 if quick else 21)
    for c in cases:
        c.times = {k: _median_ms(v) for k, v in measure(c.impls, repeats=repeats, budget_s=20).items()}
    return cases


def machine_line():
    i = info()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    tv = f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else ", torch not installed"
    return (f"{cpu}, {os.cpu_count()} cores; fastdl {i['version']} backend={i['backend']} simd={i['simd']} "
            f"threads={i['threads']}; numpy {np.__version__}{tv}")


def format_table(cases, bw):
    lines = ["| kernel | fastdl | others: time (fastdl speed-up) | floor | fastdl / floor |",
             "| --- | ---: | --- | ---: | ---: |"]
    for c in cases:
        floor = c.bytes / (bw["in_place" if c.in_place else "out_of_place"] * 1e9) * 1e3
        fd = c.times.get("fastdl")
        others = ", ".join(f"{k} {t:.2f} ms" + (f" ({t / fd:.2f}x)" if fd else "")
                           for k, t in c.times.items() if k != "fastdl")
        if c.note:
            others += f"; {c.note}"
        lines.append(f"| {c.name} | {f'{fd:.2f} ms' if fd else '-'} | {others} | {floor:.2f} ms | "
                     f"{f'{fd / floor:.2f}' if fd else '-'} |")
    return "\n".join(lines)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastdl bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions (a smoke run)")
    parser.add_argument("--only", help="run the cases whose name contains this text")
    parser.add_argument("--repeats", type=_positive_int, help="repetitions per case (default 21, quick 7)")
    args = parser.parse_args(argv)
    if args.only and not any(args.only.lower() in c.name.lower() for c in all_cases(args.quick)):
        parser.error(f"--only {args.only!r} matches no case; case names contain e.g. 'relu', 'softmax', 'adam'")
    print(machine_line())
    mib = 64 if args.quick else 256
    bw = bandwidth_gbs(mib)
    print(f"measured bandwidth over {mib} MiB: {bw['in_place']:.1f} GB/s in place, "
          f"{bw['out_of_place']:.1f} GB/s out of place (bytes read + written per second)\n")
    cases = run(quick=args.quick, only=args.only, repeats=args.repeats)
    print(format_table(cases, bw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""fastdl.torch's fused losses against torch's, forward + backward on the CPU, float32:

- cross_entropy on (N, V) logits vs F.cross_entropy;
- linear_cross_entropy(x, W, target) vs F.cross_entropy(F.linear(x, W), target), x (N, D), W (V, D).

Time: the median of repeats, each implementation in its own process, one after the other (the
machine is noisy: compare runs, not single numbers). Peak extra memory: the growth of the
process's peak RSS (native allocations included) over one forward + backward, in a fresh process
whose inputs already exist (the logits; x and W with their .grad allocated), so that one case's
freed pages do not serve another. For cross_entropy it includes x.grad (every implementation
returns it: one logits' size).

    python bench/torch_losses.py [--rows 4096] [--dim 512] [--classes 32000] [--repeats 5]
"""

import argparse
import json
import subprocess
import sys

CASES = {
    "cross_entropy": ("torch", "fastdl", "fastdl inplace_backward"),
    "linear_cross_entropy": ("torch", "fastdl"),
}

_CHILD = """
import json, resource, statistics, time, torch, torch.nn.functional as F
from fastdl.torch.nn import functional as FF
loss_name, impl, rows, dim, classes, repeats = {args!r}
torch.manual_seed(0)
target = torch.randint(0, classes, (rows,))
if loss_name == "cross_entropy":
    base = torch.randn(rows, classes)
    def make():
        x = base.clone().requires_grad_()
        return x, x * 1.0  # the logits: a non-leaf, as a model's output is
    def run(inputs):
        x, logits = inputs
        if impl == "torch":
            loss = F.cross_entropy(logits, target)
        else:
            loss = FF.cross_entropy(logits, target, inplace_backward=impl.endswith("inplace_backward"))
        loss.backward()
else:
    x = torch.randn(rows, dim, requires_grad=True)
    w = (torch.randn(classes, dim) * dim ** -0.5).requires_grad_()
    def make():
        x.grad, w.grad = torch.zeros_like(x), torch.zeros_like(w)  # every implementation returns them
        return None
    def run(inputs):
        if impl == "torch":
            loss = F.cross_entropy(F.linear(x, w), target)
        else:
            loss = FF.linear_cross_entropy(x, w, target)
        loss.backward()
if repeats:
    run(make())
    times = []
    for _ in range(repeats):
        inputs = make()
        t = time.perf_counter(); run(inputs); times.append(time.perf_counter() - t)
        del inputs
    print(json.dumps(statistics.median(times) * 1e3))
else:
    inputs = make()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(inputs)
    print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))
"""


def _child(loss_name, impl, a, repeats):
    code = _CHILD.format(args=(loss_name, impl, a.rows, a.dim, a.classes, repeats))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=32000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    logits_mib = a.rows * a.classes * 4 / 2 ** 20
    print(f"fused losses, forward + backward, CPU float32: N={a.rows}, D={a.dim}, V={a.classes} "
          f"(the logits: {logits_mib:.0f} MiB)")
    print("| loss | implementation | median ms | vs torch | peak extra MiB (RSS) | vs torch |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for loss_name, impls in CASES.items():
        base = None
        for impl in impls:
            ms, peak = _child(loss_name, impl, a, a.repeats), _child(loss_name, impl, a, 0)
            base = base or (ms, peak)
            print(f"| {loss_name} | {impl} | {ms:.0f} | {ms / base[0]:.2f}x | {peak:.0f} | "
                  f"{peak / base[1] if base[1] else float('nan'):.3f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

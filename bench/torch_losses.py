"""fastdl.torch.nn.functional.cross_entropy vs torch's, forward + backward on (N, V) float32 logits
on the CPU: time (the median of repeats, each implementation in its own process, one after the
other) and peak extra memory (the growth of the process's peak RSS over one forward + backward,
measured in a fresh process so that one case's freed pages do not serve another). The extra
memory includes the gradient of the tensor the logits were computed from (x.grad, one logits' size
for every implementation).

    python bench/torch_losses.py [--rows 4096] [--classes 32000] [--repeats 7]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

CASES = ("torch", "fastdl", "fastdl inplace")


def _run_case(case, rows, classes, repeats):
    """Runs in a child process: {"ms": median time, "peak_mib": peak RSS growth during one call}."""
    import torch
    import torch.nn.functional as F
    from fastdl.torch.nn import functional as FF

    torch.manual_seed(0)
    base = torch.randn(rows, classes)
    target = torch.randint(0, classes, (rows,))

    def once():
        x = base.clone().requires_grad_()  # the logits a model would hand over (not counted below)
        logits = x * 1.0  # a non-leaf, as a model's output is
        if case == "torch":
            loss = F.cross_entropy(logits, target)
        else:
            loss = FF.cross_entropy(logits, target, inplace_backward=case == "fastdl inplace")
        loss.backward()
        return x

    once()  # warm-up: allocator pools, first-touch
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return {"ms": statistics.median(times) * 1e3}


def _peak(case, rows, classes):
    code = f"""
import resource, torch, torch.nn.functional as F
from fastdl.torch.nn import functional as FF
torch.manual_seed(0)
base = torch.randn({rows}, {classes}); target = torch.randint(0, {classes}, ({rows},))
x = base.clone().requires_grad_(); logits = x * 1.0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
case = {case!r}
loss = F.cross_entropy(logits, target) if case == "torch" else FF.cross_entropy(logits, target, inplace_backward=case == "fastdl inplace")
loss.backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--classes", type=int, default=32000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_run_case(a.child, a.rows, a.classes, a.repeats)))
        return 0
    logits_mib = a.rows * a.classes * 4 / 2 ** 20
    print(f"cross-entropy forward + backward, ({a.rows}, {a.classes}) float32 logits ({logits_mib:.0f} MiB), CPU")
    print("| implementation | median ms | peak extra MiB (RSS) | extra / logits size |")
    print("| --- | ---: | ---: | ---: |")
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, "--child", case, "--rows", str(a.rows), "--classes",
                              str(a.classes), "--repeats", str(a.repeats)], capture_output=True, text=True,
                             check=True)
        ms = json.loads(out.stdout.strip().splitlines()[-1])["ms"]
        peak = _peak(case, a.rows, a.classes)
        print(f"| {case} | {ms:.1f} | {peak:.0f} | {peak / logits_mib:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""fastdl.torch.AdamW against torch.optim.AdamW(fused=True) on one CPU parameter of 10M values, in
bfloat16, float16 and float32 (and 16-bit parameters with fastdl's state_dtype=torch.float32, against
the same torch step: torch has no such option): the two steps interleaved, the median of 10 after 2
warm-ups.

    python bench/torch_half_steps.py [--size 10000000]
"""

import argparse
import statistics
import time

import torch

import fastdl.torch as fdt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=10_000_000)
    a = p.parse_args(argv)
    print("| dtype | fastdl.torch ms | torch fused ms | torch / fastdl |")
    print("| --- | ---: | ---: | ---: |")
    for dtype, state32 in ((torch.bfloat16, False), (torch.float16, False), (torch.float32, False),
                           (torch.bfloat16, True), (torch.float16, True)):
        p1 = torch.nn.Parameter(torch.randn(a.size).to(dtype))
        p2 = torch.nn.Parameter(p1.detach().clone())
        grad = torch.randn(a.size).to(dtype)
        p1.grad, p2.grad = grad, grad.clone()
        o1 = fdt.AdamW([p1], lr=1e-3, state_dtype=torch.float32 if state32 else None)
        o2 = torch.optim.AdamW([p2], lr=1e-3, fused=True)
        times = ([], [])
        for _ in range(12):
            for opt, t in zip((o1, o2), times):
                start = time.perf_counter()
                opt.step()
                t.append(time.perf_counter() - start)
        ours, theirs = (statistics.median(t[2:]) * 1e3 for t in times)
        label = str(dtype).replace("torch.", "") + (", fastdl state float32" if state32 else "")
        print(f"| {label} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

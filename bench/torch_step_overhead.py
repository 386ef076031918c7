"""The Python side of an optimizer step: Adam over 108 small float32 tensors (64 elements each,
so the arithmetic is negligible and the time is the per-step machinery), fastdl.torch against
torch.optim with fused=True and foreach=True, interleaved in one process; medians in us.

    python bench/torch_step_overhead.py [--tensors 108] [--size 64] [--steps 300]
"""

import argparse
import time

import numpy as np
import torch

import fastdl.torch as fdt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensors", type=int, default=108)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    optimizers = {}
    for name, make in (("fastdl.torch", lambda ps: fdt.Adam(ps, lr=1e-3)),
                       ("torch fused", lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)),
                       ("torch foreach", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True))):
        params = [torch.nn.Parameter(torch.randn(args.size, generator=gen)) for _ in range(args.tensors)]
        for p in params:
            p.grad = torch.randn(args.size, generator=gen) * 1e-3
        optimizers[name] = make(params)
    times = {name: [] for name in optimizers}
    for _ in range(10):  # warm-up: state allocation, first-step paths
        for opt in optimizers.values():
            opt.step()
    for _ in range(args.steps):
        for name, opt in optimizers.items():
            t = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t)
    base = np.median(times["fastdl.torch"])
    print(f"Adam step over {args.tensors} tensors of {args.size} floats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.steps} interleaved steps\n")
    print("| optimizer | us per step | vs fastdl.torch |\n| --- | ---: | ---: |")
    for name, ts in times.items():
        print(f"| {name} | {np.median(ts) * 1e6:,.0f} | {np.median(ts) / base:.2f}x |")


if __name__ == "__main__":
    main()

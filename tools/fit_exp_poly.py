"""Fits the polynomial csrc/cpu/vec_math.h uses for e^r - 1 on [-ln2/2, ln2/2]:
q(r) = r (c1 + c2 r + ... + cd r^(d-1)), minimising the maximum relative error of 1 + q(r)
against e^r (Lawson's iteratively reweighted least squares, which converges to the minimax fit).

    python tools/fit_exp_poly.py 5
"""

import sys

import numpy as np


def fit(degree, iterations=40, nodes=4000):
    half = np.log(2) / 2
    r = np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) * half
    basis = np.stack([r ** (k + 1) for k in range(degree)], axis=1)
    weights = np.ones_like(r)
    for _ in range(iterations):
        scale = weights / np.exp(r)
        coef, *_ = np.linalg.lstsq(basis * scale[:, None], (np.exp(r) - 1) * scale, rcond=None)
        err = np.abs(1 + basis @ coef - np.exp(r)) / np.exp(r)
        weights = weights * np.sqrt(err)
        weights /= weights.sum()
    dense = np.linspace(-half, half, 200_001)
    worst = np.max(np.abs(1 + np.stack([dense ** (k + 1) for k in range(degree)], axis=1) @ coef - np.exp(dense))
                   / np.exp(dense))
    return coef, worst


if __name__ == "__main__":
    degree = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    coef, worst = fit(degree)
    print(f"degree {degree}: max relative error {worst:.3g}")
    for k, c in enumerate(coef, start=1):
        print(f"  c{k} = {np.float32(c)!r}")

"""pytest-benchmark suite: every kernel of fastdl.bench, each implementation its own benchmark,
grouped by kernel so pytest-benchmark's table compares them.

    pytest bench/ --benchmark-only                       # full sizes (10M elements, 4096x1000)
    FASTDL_BENCH_QUICK=1 pytest bench/ --benchmark-only  # small sizes
"""

import os

import pytest

from fastdl.bench import all_cases

CASES = all_cases(quick=bool(os.environ.get("FASTDL_BENCH_QUICK")))
PARAMS = [pytest.param(case, impl, id=f"{case.name} | {impl}") for case in CASES for impl in case.impls]


@pytest.mark.parametrize("case,impl", PARAMS)
def test_kernel(benchmark, case, impl):
    benchmark.group = case.name
    benchmark.extra_info["bytes"] = case.bytes
    benchmark.pedantic(case.impls[impl], rounds=15, iterations=1, warmup_rounds=2)

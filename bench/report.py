"""Side-by-side benchmark report (fastdl vs NumPy vs PyTorch, with the bandwidth floor).

    python bench/report.py [--quick] [--only NAME] [--repeats N]

The same report as `fastdl bench` / `python -m fastdl.bench`; the cases live in fastdl/bench.py.
"""

from fastdl.bench import main

if __name__ == "__main__":
    raise SystemExit(main())

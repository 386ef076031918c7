"""bench/gpu_check.py --self-test: the GPU check's own logic (table, bandwidth and goal math, JSON,
arguments, the skip paths) runs on any machine, without CuPy or a GPU."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_self_test():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--self-test"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "checks passed" in p.stdout

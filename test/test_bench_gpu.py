"""bench/bench_gpu.py skips cleanly where no GPU is: exit 0 with a message, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the bench would run")
def test_bench_gpu_skips_without_a_gpu(tmp_path) -> None:
    out = tmp_path / "bench_gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU" in done.stdout and "skipped" in done.stdout
    assert not out.exists()

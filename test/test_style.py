"""Style held by tools: ``ruff check`` (ruff.toml) on the package, the tests and the benchmarks, and
``mypy`` (mypy.ini) on the
framework-free core, both run from the test environment's own Python (pinned in requirements.txt).
Each test fails with the tool's report; it is skipped only when the tool is not installed."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_tool(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed in this environment (requirements.txt pins it; run `make setup`)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900, check=False)


def test_ruff_passes_on_the_package_tests_and_benchmarks() -> None:
    done = _run_tool("ruff", ["check", "--no-cache", "--output-format", "concise", "utptrack_ros", "test", "bench"])
    assert done.returncode == 0, f"ruff check found problems:\n{done.stdout}{done.stderr}"


def test_mypy_passes_on_the_core() -> None:
    done = _run_tool("mypy", ["--config-file", "mypy.ini", "--cache-dir", "/dev/null"])
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"

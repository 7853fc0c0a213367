"""What a measurement ran on: one record of the machine, the load, the versions and the commit.

Results files, reports and benchmarks store :func:`machine_record` so every number can be read
next to the conditions it was measured under.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["cpu_model", "git_commit", "machine_record"]

_PACKAGE_DIR = Path(__file__).resolve().parent
# Versions are read from modules already imported: recording must not import torch or onnxruntime.
_VERSIONED = ("numpy", "cv2", "torch", "torchvision", "onnxruntime", "rclpy")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(path: Path = _PACKAGE_DIR) -> Optional[str]:
    """``HEAD`` of the git checkout holding ``path`` (``+dirty`` with uncommitted changes to
    tracked files); None outside a checkout or without git."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def _version(module: str) -> Optional[str]:
    mod = sys.modules.get(module)
    version = getattr(mod, "__version__", None) if mod is not None else None
    return str(version) if version is not None else None


def machine_record() -> dict[str, Any]:
    """Machine, load, versions and commit, JSON-ready.

    Keys: ``python``, ``platform``, ``cpu``, ``cpu_count``, ``load_1m`` / ``load_5m`` /
    ``load_15m`` (load averages when recorded), ``torch_threads`` (when torch is imported),
    ``versions`` (imported packages only), ``commit``.
    """
    record: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        record["load_1m"], record["load_5m"], record["load_15m"] = (round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        record["torch_threads"] = int(torch.get_num_threads())
    record["versions"] = {("opencv" if m == "cv2" else m): v for m in _VERSIONED if (v := _version(m)) is not None}
    record["commit"] = git_commit()
    return record

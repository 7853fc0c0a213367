"""Module-scoped fixtures: one node process + one test client per test module (ros_harness.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the ROS tests share helpers in ros_harness.py next to this file (pytest runs --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def ros_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])

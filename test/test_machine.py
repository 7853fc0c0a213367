"""The machine record stored with results: real load, CPU, versions and the checkout's commit."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from utptrack_ros.machine import git_commit, machine_record

REPO = Path(__file__).resolve().parents[1]


def test_machine_record_is_json_and_names_what_ran():
    record = json.loads(json.dumps(machine_record()))
    assert record["cpu_count"] == os.cpu_count() and record["cpu"]
    assert record["versions"]["numpy"] == np.__version__
    assert abs(record["load_1m"] - os.getloadavg()[0]) < 5


def test_commit_is_the_checkouts_head(tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit(REPO).split("+")[0] == head
    assert git_commit(tmp_path) is None  # not a checkout

"""The onnxruntime runtime sends nothing over the network and leaves the home directory alone.

onnxruntime 1.32 starts its telemetry at import (a device id under ``~/.cache/Microsoft``, then
DNS lookups of ``mobile.events.data.microsoft.com`` about 9 s later; runtime/ort_telemetry.py).
A child process loads a project weights file, creates the onnxruntime sessions through
``OrtNetwork`` from an export cache, runs a frame and stays alive past that delay, under
``strace``; its environment is scrubbed of ``ORT_DISABLE_TELEMETRY`` (this test process has
it, set by ``import utptrack_ros``), so only what the package itself does keeps it silent.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from utptrack_ros.checkpoint import save_model
from utptrack_ros.config import PruneConfig
from utptrack_ros.models import UTPTrack, model_config
from utptrack_ros.runtime.network import OrtNetwork
from utptrack_ros.runtime.ort_telemetry import TELEMETRY_ENV

STRACE = shutil.which("strace")
HOLD_S = 15.0  # the child lives this long after importing onnxruntime (telemetry DNS came at ~9 s)

CHILD = r"""
import sys, time
import utptrack_ros  # noqa: F401  (what a node or script imports first)
from utptrack_ros.checkpoint import load_model
from utptrack_ros.models.examples import example_inputs
from utptrack_ros.runtime.network import OrtNetwork

model = load_model(sys.argv[1])
network = OrtNetwork(model, cache_dir=sys.argv[2], threads=1)
t0 = time.monotonic()
assert network.runtime == "onnxruntime", network.runtime
x = example_inputs(model.config, seed=0)
templates = network.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)
network.forward_search(x.search, templates)
time.sleep(max(0.0, float(sys.argv[3]) - (time.monotonic() - t0)))
print("child done", flush=True)
"""


def _small_model() -> UTPTrack:
    torch.manual_seed(0)
    prune = PruneConfig(ce=((1, 0.7),), dte=((1, 0.7),), ste=((1, 0.7),), tta_mode="all")
    config = replace(model_config("o256"), name="o256", embed_dim=32, depth=2, num_heads=2,
                     head_channels=(16, 8, 8, 8), legacy_vit_params=False, prune=prune)
    return UTPTrack(config).eval()


def _lookups_and_remote_traffic(trace: str) -> list[str]:
    """strace lines that resolve a name or talk to a non-loopback address."""
    bad = []
    for line in trace.splitlines():
        if not re.search(r"\b(connect|sendto|sendmsg|sendmmsg)\(", line):
            continue
        if "htons(53)" in line or "nscd" in line:
            bad.append(line)  # a DNS query, wherever the resolver is
            continue
        for addr in re.findall(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', line):
            ip = addr[0] or addr[1]
            if not (ip.startswith("127.") or ip in ("::1", "0.0.0.0", "::")):
                bad.append(line)
    return bad


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_onnxruntime_sessions_stay_off_the_network_and_out_of_home(tmp_path):
    weights = save_model(_small_model(), tmp_path / "small.safetensors")
    cache = tmp_path / "cache"
    OrtNetwork(_small_model(), cache_dir=cache, threads=1)  # export here: the child only loads
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (TELEMETRY_ENV, "XDG_CACHE_HOME")}
    env.update(HOME=str(home), UTPTRACK_CACHE_DIR=str(cache))
    trace = tmp_path / "strace.txt"
    proc = subprocess.run(
        [STRACE, "-f", "--seccomp-bpf", "-o", str(trace), "-e", "trace=connect,sendto,sendmsg,sendmmsg",
         sys.executable, "-c", CHILD, str(weights), str(cache), str(HOLD_S)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and "child done" in proc.stdout, proc.stderr[-3000:]
    text = trace.read_text()
    assert "+++ exited with 0 +++" in text  # strace really followed the child
    assert _lookups_and_remote_traffic(text) == []
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"files created under HOME: {written}"


def test_onnxruntime_imported_before_the_package_is_reported():
    """Too late to switch telemetry off: the package says so instead of pretending."""
    code = (
        "import logging, os, sys\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import onnxruntime\n"
        "import utptrack_ros\n"
        "from utptrack_ros.runtime.ort_telemetry import import_onnxruntime\n"
        "import_onnxruntime()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != TELEMETRY_ENV}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime telemetry is on in this process (imported before utptrack_ros)" in proc.stderr

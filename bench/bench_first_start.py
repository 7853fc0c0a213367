"""First start of a shipped CPU preset on a fresh robot: process start -> the node is active.

Runs the real node (``utptrack_node``, or ``python -m utptrack_ros.ros.main``) with
``config/rgb_cpu.yaml`` (tiny, shipped weights, ``backend: auto`` = onnxruntime on the CPU) and
an empty user cache (``UTPTRACK_CACHE_DIR`` = a new temporary folder), as a first start after
installation does. It prints the seconds to "active on" and whether the onnxruntime graphs were
exported into the user cache or came from the install's prebuilt graphs
(``share/utptrack_ros/onnx``, made by ``make setup`` / ``colcon build``).

    python bench/bench_first_start.py [--runs 2] [--preset config/rgb_cpu.yaml]

``--no-prebuilt`` hides the prebuilt graphs (``UTPTRACK_PREBUILT_ONNX=0``) to measure the export.
Writes ``artifacts/bench/first_start.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from utptrack_ros.machine import machine_record

REPO = Path(__file__).resolve().parents[1]


def first_start(preset: Path, prebuilt: bool, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="utptrack-first-start-") as cache:
        env = dict(os.environ, UTPTRACK_CACHE_DIR=cache, ROS_DOMAIN_ID="199", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1",
                   FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_large_shm.xml"))
        if not prebuilt:
            env["UTPTRACK_PREBUILT_ONNX"] = "0"
        cmd = [sys.executable, "-m", "utptrack_ros.ros.main", "--ros-args", "--params-file", str(preset)]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
        lines: list[str] = []
        active = None
        done = threading.Event()

        def read() -> None:
            nonlocal active
            for line in proc.stdout:
                lines.append(line)
                if "active on" in line:
                    active = time.monotonic() - start
                    break
                if "activate failed" in line or "configure failed" in line:
                    break
            done.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            done.wait(timeout)
        finally:
            proc.send_signal(2)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        text = "".join(lines)
        exported = "exporting" in text or bool(list(Path(cache).glob("onnx/*/search.onnx")))
        return {"active_s": active, "exported_into_user_cache": exported,
                "log_tail": text[-1500:] if active is None else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", type=Path, default=REPO / "config" / "rgb_cpu.yaml")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-prebuilt", action="store_true", help="hide the install's prebuilt graphs")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    runs = [first_start(args.preset, not args.no_prebuilt, args.timeout) for _ in range(args.runs)]
    for i, r in enumerate(runs):
        where = "export into the user cache" if r["exported_into_user_cache"] else "prebuilt (no export)"
        active = f"{r['active_s']:.1f} s" if r["active_s"] is not None else "not active"
        print(f"run {i}: {active} to active; graphs: {where}")
        if r["log_tail"]:
            print(r["log_tail"])
    out = REPO / "artifacts" / "bench" / "first_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    load = os.getloadavg()
    out.write_text(json.dumps({"preset": str(args.preset), "prebuilt": not args.no_prebuilt, "runs": runs,
                               "environment": machine_record()}, indent=2))
    print(f"load average {load[0]:.2f} on {os.cpu_count()} CPUs; wrote {out}")
    return 0 if all(r["active_s"] is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Start-up work that must not hold the node's GIL (ros/preparation.py): the model stack is
imported before the node exists, and onnxruntime graphs are exported by a child process."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from utptrack_ros.models.inference import prepare_for_inference  # noqa: E402
from utptrack_ros.runtime.export import DEFAULT_OPSET, SEARCH_FILE  # noqa: E402
from utptrack_ros.runtime.graph_names import graphs_folder, weights_digest  # noqa: E402
from utptrack_ros.ros.preparation import (Progress, export_graphs_in_child, load_network, running_children,  # noqa: E402
                                          stop_children)
from utptrack_ros.tracker import Tracker  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_the_entry_point_imports_the_model_stack_before_the_node_exists():
    """The node is replaced by a probe that reports what is imported when it would be created."""
    code = ("import gc, sys\nimport utptrack_ros.ros.main as m\n"
            "class Probe:\n"
            "    def __init__(self, *a, **k):\n"
            "        mods = [n for n in ('torch', 'timm', 'torchvision', 'onnxruntime', 'utptrack_ros.tracker') if n in sys.modules]\n"
            "        print('IMPORTED', ' '.join(mods), 'FROZEN', gc.get_freeze_count(), flush=True)\n"
            "        raise SystemExit(0)\n"
            "m.TrackerNode = Probe\nm.run(['utptrack_node'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(REPO),
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("IMPORTED")), "")
    assert line, out.stdout + out.stderr[-3000:]
    words = line.split()
    assert words[1:6] == ["torch", "timm", "torchvision", "onnxruntime", "utptrack_ros.tracker"], line
    assert int(words[-1]) > 100_000, f"the model stack's objects are not frozen out of the GC: {line}"


def test_missing_graphs_are_exported_by_a_child_process_and_only_loaded_here(tmp_path):
    model = load_network("tiny", "random", 0, Progress())
    prepared = prepare_for_inference(model)
    folder = tmp_path / "onnx" / graphs_folder(prepared.config, weights_digest(prepared), prepared.prune, DEFAULT_OPSET)
    progress = Progress()
    pid = export_graphs_in_child(prepared, tmp_path, "tiny", "random", 0, progress)
    assert pid is not None and pid != os.getpid()
    graph = folder / SEARCH_FILE
    assert graph.is_file()
    written = graph.stat()
    # cached now: no second export, and the tracker loads these files instead of exporting again
    assert export_graphs_in_child(prepared, tmp_path, "tiny", "random", 0, progress) is None
    tracker = Tracker(prepared, optimize=False, backend="onnxruntime", onnx_cache=tmp_path)
    assert tracker.backend == "onnxruntime"
    assert (graph.stat().st_ino, graph.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_child_that_rebuilds_other_weights_exports_nothing(tmp_path):
    prepared = prepare_for_inference(load_network("tiny", "random", 0, Progress()))
    with pytest.raises(RuntimeError, match="weights differ"):
        export_graphs_in_child(prepared, tmp_path, "tiny", "random", 1, Progress())  # seed 1: other weights
    assert not list((tmp_path / "onnx").glob("*/" + SEARCH_FILE)) if (tmp_path / "onnx").exists() else True


def test_an_export_child_is_stopped_when_the_node_shuts_down(tmp_path):
    """SIGINT during a start-up export: ``stop_children`` (called by the entry point's shutdown)
    ends the child at once, the transition waiting on it fails, and no graph is left half-written."""
    prepared = prepare_for_inference(load_network("tiny", "random", 0, Progress()))
    failures: list[BaseException] = []

    def export() -> None:
        try:
            export_graphs_in_child(prepared, tmp_path, "tiny", "random", 0, Progress())
        except BaseException as err:  # noqa: BLE001 - recorded for the assertion
            failures.append(err)

    thread = threading.Thread(target=export)
    thread.start()
    end = time.monotonic() + 60
    while not running_children() and time.monotonic() < end:
        time.sleep(0.05)
    children = running_children()
    assert children, "no export child started"
    time.sleep(1.0)  # the child is importing / exporting now
    t0 = time.monotonic()
    stop_children()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - t0 < 3.0
    assert all(c.poll() is not None for c in children) and not running_children()
    assert failures and isinstance(failures[0], RuntimeError) and "failed with exit code" in str(failures[0])
    folder = tmp_path / "onnx" / graphs_folder(prepared.config, weights_digest(prepared), prepared.prune, DEFAULT_OPSET)
    assert not (folder / SEARCH_FILE).exists()

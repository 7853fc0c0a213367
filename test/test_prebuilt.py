"""Graphs prebuilt at install time (runtime/prebuilt.py): a first start of the shipped CPU presets
exports nothing, and graphs are used only for the weights, keep ratios and versions they were
exported from, and only intact."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from utptrack_ros import MultiTracker  # noqa: E402
from utptrack_ros.models import create_model  # noqa: E402
from utptrack_ros.runtime.graph_names import graphs_folder, weights_digest  # noqa: E402
from utptrack_ros.runtime.prebuilt import MANIFEST, check_manifest, find_prebuilt, prebuilt_roots  # noqa: E402
from utptrack_ros.tracker import Tracker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INSTALLED = REPO / "install" / "share" / "utptrack_ros" / "onnx"


def installed_folder() -> Path:
    folders = sorted(p for p in INSTALLED.glob("tiny-*") if (p / MANIFEST).is_file()) if INSTALLED.is_dir() else []
    if not folders:
        pytest.skip("no prebuilt graphs in install/ (make setup)")
    return folders[0]


def frames():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = []
    for i in range(4):
        img = base.copy()
        img[60 + 3 * i:100 + 3 * i, 80 + 4 * i:120 + 4 * i] = (230, 40, 40)
        out.append(img)
    return out


def test_the_shipped_model_on_onnxruntime_starts_from_the_install_without_exporting(tmp_path):
    installed_folder()
    assert INSTALLED.resolve() in [r.resolve() for r in prebuilt_roots()]

    cache = tmp_path / "user-cache"
    multi = MultiTracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    assert multi.backend == "onnxruntime" and multi.network.graphs_dir.parent.resolve() == INSTALLED.resolve()
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    assert tracker.backend == "onnxruntime"
    assert not cache.exists(), "an export was written into the user cache"
    # the graphs are the shipped weights' own: same boxes as the torch model
    reference = Tracker.from_pretrained("tiny")
    images = frames()
    for t in (tracker, reference):
        t.init(images[0], (80.0, 60.0, 40.0, 40.0))
    for img in images[1:]:
        np.testing.assert_allclose(tracker.track(img).box.as_xywh(), reference.track(img).box.as_xywh(), atol=0.05)


def test_graphs_are_found_only_for_the_weights_and_keep_ratios_they_were_exported_from():
    folder = installed_folder()
    model = Tracker.from_pretrained("tiny").model
    assert graphs_folder(model.config, weights_digest(model), model.prune, 17) == folder.name
    assert find_prebuilt(folder.name) == folder
    other_ratios = model.prune.with_keep_ratio(0.5, 0.5, 0.5)
    assert find_prebuilt(graphs_folder(model.config, weights_digest(model), other_ratios, 17)) is None

    random = create_model("tiny")
    assert find_prebuilt(graphs_folder(random.config, weights_digest(random), random.prune, 17)) is None


def test_damaged_or_renamed_graphs_are_refused_and_left_as_they_are(tmp_path, monkeypatch, caplog):
    folder = installed_folder()
    prefix = tmp_path / "prefix"
    root = prefix / "share" / "utptrack_ros" / "onnx"
    renamed = root / "tiny-00000000000000000000"
    shutil.copytree(folder, renamed)
    damaged = root / folder.name
    shutil.copytree(folder, damaged)
    data = bytearray((damaged / "search.onnx").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # same length, bytes changed
    (damaged / "search.onnx").write_bytes(bytes(data))

    assert check_manifest(folder) is None
    assert "names" in check_manifest(renamed)
    assert "damaged" in check_manifest(damaged)
    (renamed / "extra.onnx").write_bytes(b"x")
    assert "differ" in check_manifest(renamed)

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert root in prebuilt_roots()
    assert find_prebuilt(renamed.name) is None
    assert "not used" in caplog.text
    before = sorted(p.name for p in damaged.iterdir())
    found = find_prebuilt(folder.name)  # the intact install copy, never the damaged one
    assert found is None or found.resolve() == folder.resolve()
    assert sorted(p.name for p in damaged.iterdir()) == before  # nothing deleted or rewritten
    monkeypatch.setenv("UTPTRACK_PREBUILT_ONNX", "0")
    assert prebuilt_roots() == [] and find_prebuilt(folder.name) is None

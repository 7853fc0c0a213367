"""``Tracker(backend="onnxruntime")``: the shipped model exported, cached and run by onnxruntime
tracks like the torch tracker; cache reuse, corrupt cache, live keep-ratio changes."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from utptrack_ros.errors import InputError
from utptrack_ros.runtime import export as export_module
from utptrack_ros.tracker import MultiTracker, Tracker

PX_TOL = 1e-2  # float rounding between runtimes, in image pixels


def _frames(n=32, size=(480, 640)):
    rng = np.random.default_rng(3)
    background = rng.integers(0, 255, size + (3,), dtype=np.uint8)
    frames, boxes = [], []
    for i in range(n):
        x, y = 200 + 3 * i, 150 + 2 * i
        frame = background.copy()
        frame[y : y + 60, x : x + 40] = (220, 40, 40)
        frame[y + 20 : y + 40, x + 10 : x + 30] = (250, 250, 60)
        frames.append(frame)
        boxes.append((x, y, 40, 60))
    return frames, boxes


@pytest.fixture(scope="module", autouse=True)
def _no_prebuilt_graphs():
    """The export cache is under test here; graphs prebuilt at install (test_prebuilt.py) would
    otherwise serve the shipped model without an export."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTPTRACK_PREBUILT_ONNX", "0")
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("utptrack-cache")


@pytest.fixture(scope="module")
def pair(cache):
    pair = Tracker.from_pretrained("tiny"), Tracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    for tracker in pair:  # every 25th frame updates the dynamic template (this target scores < 0.7)
        tracker.set_config(replace(tracker.config, update_threshold=0.2))
    return pair


def _run(tracker, frames, box, prompt=None):
    out = [tracker.init(frames[0], box, prompt=prompt)]
    out += [tracker.track(f) for f in frames[1:]]
    return out


def _assert_same_run(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert np.abs(np.array(ra.box.as_xywh()) - np.array(rb.box.as_xywh())).max() <= PX_TOL
        assert abs(ra.confidence - rb.confidence) <= 1e-4
        assert ra.state == rb.state
        assert ra.ledger == rb.ledger
        assert np.array_equal(ra.search_keep_mask, rb.search_keep_mask)
        assert ra.template_updated == rb.template_updated


@pytest.mark.parametrize("prompt", [None, "the red and yellow box"])
def test_onnxruntime_tracker_follows_the_torch_tracker(pair, prompt):
    ref, ort = pair
    assert (ref.backend, ort.backend) == ("torch", "onnxruntime")
    frames, boxes = _frames()
    a, b = _run(ref, frames, boxes[0], prompt), _run(ort, frames, boxes[0], prompt)
    _assert_same_run(a, b)
    assert any(r.template_updated for r in b)  # the dynamic-template path ran (frame 25)
    assert int(b[-1].search_keep_mask.sum()) < b[-1].search_keep_mask.size  # pruned
    assert b[-1].task_probs is None  # the task head is not exported
    err = np.abs(np.array(b[-1].box.as_xywh()) - np.array(boxes[-1])).max()
    assert err < 10.0, (b[-1].box, boxes[-1])  # and it really tracks the target


def test_cached_graphs_load_without_exporting(pair, cache, monkeypatch):
    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds the graphs")

    monkeypatch.setattr(export_module, "export_onnx", no_export)
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    assert tracker.backend == "onnxruntime"
    frames, boxes = _frames(6)
    _assert_same_run(_run(pair[0], frames, boxes[0]), _run(tracker, frames, boxes[0]))


def test_corrupt_cached_graph_is_exported_again(pair, cache, tmp_path):
    own = tmp_path / "cache"
    shutil.copytree(cache, own)
    (search,) = own.glob("onnx/tiny-*/search.onnx")
    search.write_bytes(b"not an onnx file")
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=own)
    assert tracker.backend == "onnxruntime"
    assert search.stat().st_size > 1000
    frames, boxes = _frames(6)
    _assert_same_run(_run(pair[0], frames, boxes[0]), _run(tracker, frames, boxes[0]))


def test_uncached_keep_ratios_run_on_torch_until_prepared(cache, monkeypatch):
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    shipped = tracker.model.prune
    exports = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *a, **k: exports.append(a))
    tracker.set_prune(shipped.off())
    assert tracker.backend == "torch" and not exports  # a live change never stalls on an export
    ref = Tracker.from_pretrained("tiny_base")
    frames, boxes = _frames(6)
    _assert_same_run(_run(ref, frames, boxes[0]), _run(tracker, frames, boxes[0]))
    tracker.set_prune(shipped)  # cached: back on onnxruntime at once
    assert tracker.backend == "onnxruntime" and not exports


def test_several_targets_run_one_graph_call_each(cache):
    frames, boxes = _frames(8)
    second = [(60, 300, 50, 50)] * len(frames)
    for f in frames:
        f[300:350, 60:110] = (30, 200, 30)
    ref = MultiTracker.from_pretrained("tiny")
    ort = MultiTracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=cache)
    a = [ref.init(frames[0], [boxes[0], second[0]])] + [ref.track(f) for f in frames[1:]]
    b = [ort.init(frames[0], [boxes[0], second[0]])] + [ort.track(f) for f in frames[1:]]
    for ra, rb in zip(a, b):
        _assert_same_run(ra, rb)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(InputError, match="backend must be 'torch' or 'onnxruntime'"):
        Tracker.from_pretrained("tiny", backend="tensorrt")

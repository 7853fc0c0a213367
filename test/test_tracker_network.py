"""Both runtimes satisfy the one ``TrackerNetwork`` protocol the tracker calls."""
from __future__ import annotations

import pytest

from utptrack_ros.runtime.network import OrtNetwork
from utptrack_ros.runtime.tracker_network import TorchNetwork, TrackerNetwork
from utptrack_ros.tracker import MultiTracker


def test_torch_tracker_network_is_the_protocol_and_prepares_nothing():
    tracker = MultiTracker.from_pretrained("tiny")
    assert isinstance(tracker.network, TorchNetwork) and isinstance(tracker.network, TrackerNetwork)
    assert tracker.backend == "torch" and tracker.network.prepare() is None
    tracker.set_prune(tracker.model.prune)  # reaches the model through the protocol


def test_onnxruntime_network_is_the_protocol(tmp_path):
    pytest.importorskip("onnxruntime")

    tracker = MultiTracker.from_pretrained("tiny", backend="onnxruntime", onnx_cache=tmp_path)
    assert isinstance(tracker.network, OrtNetwork) and isinstance(tracker.network, TrackerNetwork)
    assert tracker.backend == tracker.network.runtime

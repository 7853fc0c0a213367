"""Offline runner: real OpenCV peers in spawned workers, the real core tracker in process, real files."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from eval.eval_synthetic import SyntheticSequence

from utptrack_ros.eval import metrics as M
from utptrack_ros.eval.offline import run_offline, write_results
from utptrack_ros.eval.peers import OpenCVTracker
from utptrack_ros.eval.results import load_results
from utptrack_ros.eval.sequence_run import SequenceRun
from utptrack_ros.eval.specs import CoreTrackerFactory, TrackerSpec, peer_spec

# Sources are partials of an importable class: spawned workers open them by import.
_seq_a = functools.partial(
    SyntheticSequence,
    "seq_a",
    num_frames=22,
    seed=1,
    absent_frames=range(9, 12),
    attributes={"occlusion": True, "split": "test"},
)
# target absent on frames 0-2 (init on frame 3), lens covered on 13, a broken frame on 17
_seq_b = functools.partial(
    SyntheticSequence,
    "seq_b",
    num_frames=22,
    seed=2,
    absent_frames=range(0, 3),
    blank_frames=[13],
    corrupt_frames=[17],
    attributes={"occlusion": False, "fast_motion": True, "seed": 1},
    velocity=(2.0, 1.0),
)


def _local_sequence() -> SyntheticSequence:
    """Defined in a test module that spawned workers cannot import (pytest importlib mode)."""
    return SyntheticSequence("local", 4)


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("peer_run") / "results"
    results = run_offline(
        [peer_spec("csrt"), peer_spec("kcf")], [_seq_a, _seq_b], out, workers=2, progress=False, report=False
    )
    return out, results


def test_results_folder_layout_and_json(peer_run):
    out, results = peer_run
    assert load_results(out) == results
    assert results["schema"] == "utptrack_ros.eval.offline/1"
    assert list(results["trackers"]) == ["csrt", "kcf"]
    assert list(results["sequences"]) == ["seq_a", "seq_b"]
    assert results["sequences"]["seq_b"]["image_size"] == [128, 96]
    for tracker in ("csrt", "kcf"):
        for seq in ("seq_a", "seq_b"):
            for suffix in (".txt", "_time.txt", "_frames.csv"):
                assert (out / tracker / f"{seq}{suffix}").is_file()
    assert not list(out.parent.glob(".results.tmp-*"))  # the temp folder was moved, not left


def test_result_files_follow_the_init_rule(peer_run):
    out, _ = peer_run
    seq = _seq_b()
    boxes = np.loadtxt(out / "csrt" / "seq_b.txt", delimiter=",")
    assert boxes.shape == (22, 4)
    assert np.isnan(boxes[:3]).all()  # no prediction before the first annotated frame
    np.testing.assert_array_equal(boxes[3], seq.gt[3])  # init frame: the GT box
    times = np.loadtxt(out / "csrt" / "seq_b_time.txt")
    assert np.isnan(times[:3]).all() and (times[3:] > 0).sum() >= 18


def test_metrics_in_json_match_a_rescoring_of_the_text_files(peer_run):
    out, results = peer_run
    for tracker in ("csrt", "kcf"):
        per_seq = []
        for factory in (_seq_a, _seq_b):
            seq = factory()
            boxes = np.loadtxt(out / tracker / f"{seq.name}.txt", delimiter=",")
            m = M.evaluate_sequence(
                boxes, seq.gt, seq.absent, image_size=(128, 96), name=seq.name, attributes=seq.attributes
            )
            per_seq.append(m)
            stored = results["results"][tracker]["per_sequence"][seq.name]["metrics"]
            assert stored["auc"] == pytest.approx(m.auc, abs=1e-9)
            assert stored["ao"] == pytest.approx(m.ao, abs=0.05)  # boxes are rounded to 0.01 px
        overall = results["results"][tracker]["overall"]
        assert overall["auc"] == pytest.approx(M.aggregate(per_seq).auc, abs=1e-9)
    assert results["results"]["csrt"]["overall"]["auc"] > 50.0


def test_missed_frames_failed_updates_and_latency(peer_run):
    out, results = peer_run
    for tracker in ("csrt", "kcf"):
        per = results["results"][tracker]["per_sequence"]["seq_b"]
        assert per["metrics"]["num_missed_frames"] == 1  # the broken frame 17 raised InputError
        assert per["metrics"]["iou"][17] == -1
        assert len(per["frame_errors"]) == 1 and "frame 17" in per["frame_errors"][0]
        assert per["frames"]["boxes_xywh"][17] == [None] * 4
        assert per["latency"]["num_frames_sent"] == 22 - 4  # frames after the init frame 3
        assert per["latency"]["num_missed_frames"] == 1
        # covered lens on frame 13: the update fails, the previous box is kept and counted
        assert per["num_failed_updates"] >= 1 and per["frames"]["state"][13] == "lost"
        assert per["frames"]["boxes_xywh"][13] == per["frames"]["boxes_xywh"][12]
        assert per["frames"]["confidence"][13] == 0.0
        lat = results["results"][tracker]["latency"]
        assert lat["num_frames_sent"] == (22 - 1) + (22 - 4)
        assert len(lat["latencies_ms"]) == lat["num_frames_received"]
        assert lat["latency_p50_ms"] <= lat["latency_p95_ms"] <= lat["latency_max_ms"]
    per_attr = results["results"]["csrt"]["per_attribute"]
    assert sorted(per_attr) == ["fast_motion", "occlusion"]
    assert per_attr["occlusion"]["sequences"] == ["seq_a"]


def test_refuses_to_overwrite_unless_forced(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "keep.txt").write_text("previous results")
    short = functools.partial(SyntheticSequence, "short", 6)
    with pytest.raises(FileExistsError, match="--force"):
        run_offline([peer_spec("kcf")], [short], out, progress=False, report=False)
    assert (out / "keep.txt").read_text() == "previous results"
    run_offline([peer_spec("kcf")], [short], out, force=True, progress=False, report=False)
    assert not (out / "keep.txt").exists() and (out / "kcf" / "short.txt").is_file()


def test_a_crash_writes_nothing_over_existing_results(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "keep.txt").write_text("previous results")
    broken = TrackerSpec("broken", functools.partial(OpenCVTracker, 42))  # a bug: 42.lower()
    short = functools.partial(SyntheticSequence, "short", 6)
    with pytest.raises(AttributeError):
        run_offline([peer_spec("kcf"), broken], [short], out, force=True, progress=False, report=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temp folder left behind


def test_a_source_workers_cannot_import_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="could not load its task"):
        run_offline([peer_spec("kcf")], [_local_sequence, _local_sequence], tmp_path / "r", workers=2, progress=False)
    assert not (tmp_path / "r").exists()


def test_a_worker_process_that_dies_fails_the_run_instead_of_hanging(tmp_path):
    """A real process death in a worker (the source calls os._exit there) is an error, not a
    pool waiting forever for results that never come."""
    dies = functools.partial(os._exit, 3)
    with pytest.raises(RuntimeError, match="worker process died"):
        run_offline([peer_spec("kcf")], [dies, dies], tmp_path / "r", workers=2, progress=False, report=False)
    assert not (tmp_path / "r").exists()


def test_duplicate_names_are_refused(tmp_path):
    short = functools.partial(SyntheticSequence, "short", 4)
    with pytest.raises(ValueError, match="unique"):
        run_offline([peer_spec("kcf"), peer_spec("kcf")], [short], tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="unique"):
        run_offline([peer_spec("kcf")], [short, short], tmp_path / "b", progress=False, report=False)
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="aux"):
        TrackerSpec("x", short, aux="lidar")


def test_core_tracker_in_a_sweep_records_tokens(tmp_path):
    """The real core tracker (random weights: pipeline only) with keep 0.5 and depth on, beside a
    peer; the unpruned variant's kept fraction is the ledger's 1.0 (checked in the tracker tests)."""
    seq = functools.partial(SyntheticSequence, "core", 6, seed=4, absent_frames=[0])
    specs = [
        TrackerSpec("tiny@0.5", CoreTrackerFactory("tiny", keep=0.5, pretrained=False), aux="auto"),
        peer_spec("kcf"),
    ]
    results = run_offline(specs, [seq], tmp_path / "core", progress=False, report=False)
    pruned = results["results"]["tiny@0.5"]
    assert 0.0 < pruned["kept_fraction_mean"] < 0.8
    assert results["results"]["kcf"]["kept_fraction_mean"] is None  # peers prune nothing
    per = pruned["per_sequence"]["core"]
    assert per["aux_used"] == "depth" and per["metrics"]["init_index"] == 1
    frames = per["frames"]
    assert frames["state"][0] == "none" and set(frames["state"][1:]) <= {"tracking", "lost"}
    assert all(0.0 <= c <= 1.0 for c in frames["confidence"][1:])
    assert all(0.0 < k <= 1.0 for k in frames["kept_fraction"][2:])
    with np.load(tmp_path / "core" / per["files"]["tokens"]) as tok:
        masks, regions = tok["search_keep_mask"], tok["search_region"]
    assert masks.shape == (6, 12, 12) and masks.dtype == bool
    assert np.isnan(regions[0]).all() and np.isfinite(regions[1:]).all()
    assert 0 < masks[2:].sum(axis=(1, 2)).max() < 144  # search tokens were pruned
    csv_text = (tmp_path / "core" / "tiny@0.5" / "core_frames.csv").read_text().splitlines()
    assert csv_text[0].startswith("frame,stamp_ns,x,y,w,h,confidence,state,kept_fraction")
    assert len(csv_text) == 7
    json.dumps(results, allow_nan=False)


def test_write_results_from_recorded_outputs_like_a_live_replay(tmp_path):
    """What the ROS replay does: outputs recorded elsewhere, scored and written by write_results."""
    seq = SyntheticSequence("replay", 12, seed=8, absent_frames=[0])
    n = seq.length
    boxes = seq.gt.copy()
    boxes[0] = np.nan  # nothing before the init frame 1
    boxes[[5, 9]] = np.nan  # outputs that never arrived
    stamps = np.array([seq.stamp_ns(i) for i in range(n)])
    sent = np.where(np.arange(n) > 1, stamps, -1)
    received = np.where(np.arange(n) > 1, stamps + 20_000_000 + (np.arange(n) % 2) * 4_000_000, -1)
    received[[5, 9]] = -1
    run = SequenceRun.from_outputs(
        "node", seq, boxes, sent_ns=sent, received_ns=received, kept_fraction=np.full(n, 0.6), num_dropped_frames=2
    )
    assert run.init_index == 1 and run.state[5] == "none" and run.state[6] == "tracking"
    results = write_results(
        [run], tmp_path / "replay", trackers={"node": {"description": "live node"}}, settings={"mode": "replay"}
    )
    per = results["results"]["node"]
    assert per["overall"]["num_missed_frames"] == 2
    # 9 exact frames (init + 8) score 20/21 each; absent frame 0 and the 2 missed frames fail
    assert per["overall"]["auc"] == pytest.approx(9 * 20 / 21 / 12 * 100)
    lat = per["latency"]
    assert (lat["num_frames_sent"], lat["num_missed_frames"], lat["num_dropped_frames"]) == (10, 2, 2)
    assert lat["latency_min_ms"] == pytest.approx(20.0) and lat["latency_max_ms"] == pytest.approx(24.0)
    assert per["kept_fraction_mean"] == pytest.approx(0.6)
    assert results["settings"] == {"mode": "replay"}
    assert (tmp_path / "replay" / "report.md").is_file() and (tmp_path / "replay" / "node" / "replay.txt").is_file()


def test_eval_modules_import_without_rclpy():
    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs'):\n"
        "    sys.modules[name] = None\n"
        "import utptrack_ros.eval.metrics, utptrack_ros.eval.peers, utptrack_ros.eval.offline\n"
        "import utptrack_ros.eval.report, utptrack_ros.eval.cli\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""The replay end to end: the real ``utptrack_node`` in a subprocess, real DDS, real bags.

One lock-step replay of two RGB-D bags (one node, re-activated between the bags) serves most
tests; a second run goes through the CLI in ``rate`` mode with the ground truth from a text file.
The model has seeded random weights (saved to a file shared by the node and the offline rows), so
the plumbing is checked by equality with the framework-free Tracker on the same frames, and the
metrics by the independent ``got10k`` toolkit on the same boxes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
try:
    from utptrack_ros.msg import TrackedTarget  # noqa: F401
except ImportError as err:  # pragma: no cover
    pytest.skip(f"ROS interfaces not built (make setup): {err}", allow_module_level=True)

from got10k.experiments.got10k import ExperimentGOT10k  # noqa: E402
from got10k.experiments.otb import ExperimentOTB  # noqa: E402
from got10k.utils.metrics import center_error, rect_iou  # noqa: E402
from replay_helpers import SIZE, domain_id, make_bag, make_sequence  # noqa: E402
from rosbags.highlevel import AnyReader  # noqa: E402

from utptrack_ros import replay as R  # noqa: E402
from utptrack_ros.data import BagTopics  # noqa: E402
from utptrack_ros.eval.report import format_cell, format_replay_table  # noqa: E402
from utptrack_ros.replay import cli as replay_cli  # noqa: E402

pytestmark = pytest.mark.ros

LENGTH = 14
LIVE = "tiny@node"
FAR = np.array([1e6, 1e6, 1.0, 1.0])


@pytest.fixture(scope="module")
def lockstep(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("replay_lockstep")
    paths = [make_bag(root / "bag_a", 0, LENGTH), make_bag(root / "bag_b", 1, LENGTH)]
    weights = R.random_weights_file("tiny", root)
    bags = [R.open_bag(p) for p in paths]
    node = R.NodeOptions(weights=weights, num_threads=1, domain_id=domain_id("lockstep"), log_dir=root / "logs")
    results = R.evaluate(bags, root / "out", node=node, compare=["pruned", "csrt"], record_dir=root / "rec",
                         progress=False)
    return root, bags, results


def _frames(results: dict, tracker: str, seq: str) -> dict:
    return results["results"][tracker]["per_sequence"][seq]["frames"]


def _boxes(results: dict, tracker: str, seq: str) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in _frames(results, tracker, seq)["boxes_xywh"]])


def _read_bag(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([path]) as reader:  # no typestore given: the custom type comes from the bag itself
        for connection, t, raw in reader.messages():
            out.setdefault(connection.topic, []).append((t, reader.deserialize(raw, connection.msgtype)))
    return out


def test_lockstep_answers_every_frame(lockstep):
    _, bags, results = lockstep
    for bag in bags:
        info = results["settings"]["bags"][bag.name]
        assert info["init"]["success"], info["init"]["message"]
        assert info["init"]["frame"] == 0
        assert info["answered"] == LENGTH - 1 and info["missed"] == 0 and info["late_answers"] == 0
        counters = info["node_counters"]
        # the node received, paired and processed every frame of this bag (counters relative to its start)
        assert counters["rgb_received"] == counters["aux_received"] == LENGTH
        assert counters["matched"] == counters["processed"] == LENGTH
        assert counters["dropped_stale"] == counters["unmatched_rgb"] == counters["errors"] == 0
        lat = results["results"][LIVE]["per_sequence"][bag.name]["latency"]
        assert lat["num_frames_sent"] == lat["num_frames_received"] == LENGTH - 1
        assert lat["num_missed_frames"] == 0 and lat["num_dropped_frames"] == 0
        assert np.isfinite(_boxes(results, LIVE, bag.name)).all()
        assert info["modality"] == "depth" and info["topics"]["aux"] == "/camera/depth/image_raw"
    assert results["results"][LIVE]["overall"]["num_missed_frames"] == 0


def test_output_stamps_match_input_stamps(lockstep):
    root, bags, results = lockstep
    for bag in bags:
        stamps = [int(s) for s in bag.sequence.stamps_ns]
        assert _frames(results, LIVE, bag.name)["stamp_ns"] == stamps
        recorded = _read_bag(root / "rec" / bag.name)
        targets = [m for _, m in recorded["/utptrack/target"]]
        stamp = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in targets]
        idle = [s for s, m in zip(stamp, targets) if m.state == 0]
        tracked = [(s, m) for s, m in zip(stamp, targets) if m.state != 0]
        assert idle == stamps[:1]  # frame 0 answered IDLE before the init
        assert [s for s, _ in tracked] == stamps  # the init output, then one answer per frame, in order
        assert [m.frame_index for _, m in tracked] == list(range(LENGTH))
        assert {m.target_id for _, m in tracked} == {bag.name}
        assert {(m.header.frame_id, m.image_width, m.image_height) for m in targets} == {
            ("camera_color_optical_frame", *SIZE)}
        boxes = np.array([[m.center_x - m.size_x / 2, m.center_y - m.size_y / 2, m.size_x, m.size_y]
                          for _, m in tracked[1:]])
        np.testing.assert_allclose(boxes, _boxes(results, LIVE, bag.name)[1:], atol=1e-9)
        diagnostics = [m for _, m in recorded["/diagnostics"]]
        assert diagnostics and all(any(s.name == "/utptrack: tracker" for s in d.status) for d in diagnostics)


def test_live_boxes_equal_the_direct_tracker_on_the_same_frames(lockstep):
    _, bags, results = lockstep
    for bag in bags:
        live, direct = _boxes(results, LIVE, bag.name), _boxes(results, "tiny", bag.name)
        np.testing.assert_allclose(live, direct, atol=0.05)
        kept_live = np.array(_frames(results, LIVE, bag.name)["kept_fraction"][1:], float)
        kept_direct = np.array(_frames(results, "tiny", bag.name)["kept_fraction"][1:], float)
        np.testing.assert_allclose(kept_live, kept_direct, atol=1e-6)
    assert results["results"][LIVE]["overall"]["auc"] == pytest.approx(results["results"]["tiny"]["overall"]["auc"],
                                                                        abs=0.5)


def test_the_node_s_3d_points_are_scored_and_equal_the_offline_ones(lockstep):
    """The bags play camera_info with depth: the live row's points are the node's own
    (TrackedTarget.position), scored in 3D next to the 2D metrics, and equal to the spatial core
    run offline on the same boxes and depth frames (the offline ``tiny`` row)."""
    root, bags, results = lockstep
    live_pos = results["results"][LIVE]["position3d"]
    assert live_pos and live_pos["overall"]["num_valid"] > 0, live_pos
    for bag in bags:
        live, direct = _frames(results, LIVE, bag.name), _frames(results, "tiny", bag.name)
        live_xyz = np.array([[np.nan if v is None else v for v in row] for row in live["points_xyz"]], float)
        direct_xyz = np.array([[np.nan if v is None else v for v in row] for row in direct["points_xyz"]], float)
        scored = slice(1, None)  # after the init frame
        assert np.isfinite(live_xyz[scored]).any()
        np.testing.assert_array_equal(np.isfinite(live_xyz[scored]), np.isfinite(direct_xyz[scored]))
        np.testing.assert_allclose(live_xyz[scored], direct_xyz[scored], atol=2e-3)  # 2 mm (boxes agree to 0.05 px)
        assert set(live["point_status"][1:]) <= {"ok", "no_valid_depth", "too_few_valid", "occluded", "outside_image",
                                                 "lost"}
        # the live points are the node's messages, not recomputed from its boxes
        tracked = [m for _, m in _read_bag(root / "rec" / bag.name)["/utptrack/target"] if m.state != 0]
        published = np.array([(m.position.x, m.position.y, m.position.z) if m.has_position else (np.nan,) * 3
                              for m in tracked[1:]])
        np.testing.assert_array_equal(published, live_xyz[scored])
        assert [m.position_status for m in tracked[1:]] == live["point_status"][1:]
        seq_pos = results["results"][LIVE]["per_sequence"][bag.name]["position3d"]
        assert np.isfinite(seq_pos["median_mm"])


def _clip(boxes: np.ndarray, w: float, h: float) -> np.ndarray:
    """True intersection with the image (our convention; got10k shifts boxes sticking out left/top)."""
    x1, y1 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
    x2, y2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def test_metrics_equal_got10k_on_the_replayed_boxes(lockstep):
    _, bags, results = lockstep
    otb = object.__new__(ExperimentOTB)  # only the scoring methods (no dataset download)
    otb.nbins_iou, otb.nbins_ce = 21, 51
    got = object.__new__(ExperimentGOT10k)
    got.nbins_iou = 101
    succ, prec, norm, pooled = [], [], [], []
    for bag in bags:
        seq = results["sequences"][bag.name]
        gt = np.array([[np.nan if v is None else v for v in row] for row in seq["gt_xywh"]])
        absent = np.array(seq["absent"], bool)
        W, H = seq["image_size"]
        pred = _boxes(results, LIVE, bag.name)
        # OTB: absent frames are failures at every threshold -> a far-away GT box for got10k
        gt_t = gt.copy()
        gt_t[absent] = FAR
        boxes = pred.copy()
        boxes[0] = gt_t[0]
        ious, ces = otb._calc_metrics(boxes, gt_t.copy())
        s, p = otb._calc_curves(ious, ces)
        scale = np.tile(100.0 / gt_t[:, 2:4], 2)  # pixel distance on boxes scaled by 100/GT size = 100 x normalised
        nce = center_error(boxes * scale, gt_t * scale)
        nce[absent] = np.inf
        norm.append(otb._calc_curves(np.zeros(len(gt_t)), nce)[1])
        succ.append(s)
        prec.append(p)
        per = results["results"][LIVE]["per_sequence"][bag.name]["metrics"]
        assert per["auc"] == pytest.approx(np.mean(s) * 100, abs=1e-9)
        assert per["precision"] == pytest.approx(p[20] * 100, abs=1e-9)
        # GOT-10k: frames after the init frame, absent ones dropped, boxes clipped to the image
        keep = ~absent[1:]
        iou = rect_iou(_clip(pred[1:], W, H)[keep], _clip(gt[1:], W, H)[keep], bound=(W, H))
        pooled.append(iou)
        assert per["ao"] == pytest.approx(np.mean(iou) * 100, abs=1e-7)
    overall = results["results"][LIVE]["overall"]
    assert overall["auc"] == pytest.approx(np.mean(np.mean(succ, axis=0)) * 100, abs=1e-9)
    assert overall["precision"] == pytest.approx(np.mean(prec, axis=0)[20] * 100, abs=1e-9)
    assert overall["norm_precision"] == pytest.approx(np.mean(norm, axis=0)[20] * 100, abs=1e-9)
    ao, sr, _, _ = got._evaluate(np.concatenate(pooled), np.zeros(0))
    assert overall["ao"] == pytest.approx(ao * 100, abs=1e-7)
    assert overall["sr50"] == pytest.approx(sr * 100, abs=1e-9)
    assert overall["sr75"] == pytest.approx(np.mean(np.concatenate(pooled) > 0.75) * 100, abs=1e-9)


def test_latency_from_publish_and_arrival_times(lockstep):
    _, bags, results = lockstep
    latencies = []
    for bag in bags:
        info = results["settings"]["bags"][bag.name]
        sent = np.array([np.nan if v is None else v for v in info["sent_ms"]])
        received = np.array([np.nan if v is None else v for v in info["received_ms"]])
        assert np.isnan(sent[0]) and np.isfinite(sent[1:]).all()  # frame 0 = init frame, not timed
        assert (np.diff(sent[1:]) > 0).all()  # lock-step: one frame after the other
        assert (sent[2:] >= received[1:-1]).all()  # ... each sent after the previous answer
        lat = received[1:] - sent[1:]
        assert (lat > 0).all()
        latencies.append(lat)
        per = results["results"][LIVE]["per_sequence"][bag.name]["latency"]
        assert per["latency_p50_ms"] == pytest.approx(np.percentile(lat, 50), abs=1e-3)
        assert per["latency_max_ms"] == pytest.approx(lat.max(), abs=1e-3)
    pooled = np.concatenate(latencies)
    lat = results["results"][LIVE]["latency"]
    assert lat["latency_mean_ms"] == pytest.approx(pooled.mean(), abs=1e-3)
    assert lat["latency_p95_ms"] == pytest.approx(np.percentile(pooled, 95), abs=1e-3)


def test_report_has_plots_and_matches_the_json(lockstep):
    root, bags, results = lockstep
    out = root / "out"
    assert json.loads((out / "results.json").read_text())["results"][LIVE]["overall"] == \
        results["results"][LIVE]["overall"]
    report = json.loads((out / "report.json").read_text())
    rows = {r["tracker"]: r for r in report["tables"]["summary"]["rows"]}
    assert list(rows) == [LIVE, "tiny", "csrt"]
    for name, row in rows.items():
        assert row["auc"] == results["results"][name]["overall"]["auc"]
        assert row["latency_mean_ms"] == results["results"][name]["latency"]["latency_mean_ms"]
    md = (out / "report.md").read_text()
    assert f"| {LIVE} | {format_cell(rows[LIVE]['auc'], 1)} | {format_cell(rows[LIVE]['precision'], 1)} |" in md
    for plot in ["curves.png", "latency_hist.png"] + [f"{k}_{b.name}.png" for b in bags for k in ("iou", "strip")]:
        data = (out / "plots" / plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, plot
    table = format_replay_table(results)
    for bag in bags:
        line = next(row for row in table.splitlines() if row.startswith(bag.name))
        assert line.split()[1:7] == ["depth", str(LENGTH), str(LENGTH - 1), "0", "0", "0"]


def test_rate_mode_through_the_cli_with_a_gt_file(tmp_path, capsys):
    path = make_bag(tmp_path / "no_gt", 2, 20, topics=BagTopics(groundtruth=None), storage="sqlite3")
    seq = make_sequence(2, 20)
    gt = tmp_path / "groundtruth.txt"
    np.savetxt(gt, seq.gt, delimiter=",", fmt="%.4f")
    parser = argparse.ArgumentParser()
    replay_cli.add_arguments(parser)
    args = parser.parse_args([str(path), "--gt-file", str(gt), "--mode", "rate", "--rate", "2", "--record",
                              str(tmp_path / "rec"), "--out", str(tmp_path / "out"), "--weights", "random",
                              "--threads", "1", "--compare", "none", "--domain-id", str(domain_id("rate")),
                              "--no-progress"])
    assert replay_cli.run(args) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    info = results["settings"]["bags"][seq.name]
    assert results["settings"]["mode"] == "live-rate" and info["gt_source"] == f"file {gt}"
    assert info["init"]["success"]
    np.testing.assert_allclose(np.array(results["sequences"][seq.name]["gt_xywh"], float)[~seq.absent],
                               seq.gt[~seq.absent], atol=1e-4)
    # recorded timing / rate: never early (late is possible on a loaded machine)
    bag_t = np.array(info["bag_time_ns"], np.int64)
    sent = np.array([np.nan if v is None else v for v in info["sent_ms"]])
    due = (bag_t[1:] - bag_t[1]) / 1e6 / 2.0
    assert (sent[1:] >= due - 1.0).all()
    # every frame is accounted for: answered, or lost before the node (DDS) or dropped by it
    c = info["node_counters"]
    not_received = (20 - c["rgb_received"])
    assert info["answered"] + info["missed"] == 19 and info["answered"] >= 1
    assert info["missed"] == not_received + c["dropped_stale"] + c["unmatched_rgb"]
    assert results["results"]["tiny@node"]["latency"]["num_missed_frames"] == info["missed"]
    line = next(row for row in printed.splitlines() if row.startswith("tiny@node"))
    assert format_cell(results["results"]["tiny@node"]["overall"]["auc"], 1) == line.split()[1]
    assert (tmp_path / "rec" / seq.name / "metadata.yaml").is_file()

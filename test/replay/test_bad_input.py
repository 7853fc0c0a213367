"""Bad input to ``utptrack eval``: a clear error naming what is wrong, and nothing written over
existing results. Every case fails while the bags are checked, before a node is started."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_helpers import BLOB_TYPE, make_bag, write_custom_bag

from utptrack_ros import demo
from utptrack_ros import replay as R
from utptrack_ros.data import BagTopics
from utptrack_ros.data.bag import bag_typestore
from utptrack_ros.data.errors import FrameCountError, MissingTopicError, SequenceFormatError, UnsupportedMessageError
from utptrack_ros.errors import ConfigError
from utptrack_ros.replay import cli as replay_cli
from utptrack_ros.replay.bags import read_play_frames
from utptrack_ros.types import Modality

FRAMES = 6


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    out = {
        "good": make_bag(root / "good", length=FRAMES),
        "no_gt": make_bag(root / "no_gt", length=FRAMES, topics=BagTopics(groundtruth=None)),
        "no_prompt": make_bag(root / "no_prompt", length=FRAMES, topics=BagTopics(prompt=None)),
        "blob": write_custom_bag(root / "blob", BLOB_TYPE),
        "string": write_custom_bag(root / "string", "std_msgs/msg/String"),
    }
    # corrupt copies of the good bag
    truncated = root / "truncated"
    shutil.copytree(out["good"], truncated)
    mcap = next(truncated.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    out["truncated"] = truncated
    garbage_meta = root / "garbage_meta"
    shutil.copytree(out["good"], garbage_meta)
    (garbage_meta / "metadata.yaml").write_text("rosbag2_bagfile_information: [this is: not, {a bag")
    out["garbage_meta"] = garbage_meta
    noise = root / "noise.mcap"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out["noise"] = noise
    gt_short = root / "gt_short.txt"
    gt_short.write_text("".join("10,10,20,20\n" for _ in range(FRAMES - 1)))
    out["gt_short"] = gt_short
    gt_bad = root / "gt_bad.txt"
    gt_bad.write_text("10,10,20,20\n" * 2 + "10,10,20\n" + "10,10,20,20\n" * (FRAMES - 3))
    out["gt_bad"] = gt_bad
    return out


def _eval_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def existing_results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    (out / "plots").mkdir(parents=True)
    (out / "results.json").write_text('{"earlier": "results"}')
    (out / "report.md").write_text("# an earlier report\n")
    (out / "plots" / "curves.png").write_bytes(b"\x89PNG earlier")
    return out


CASES = [
    # (id, bag key, extra args, error class for open_bag kwargs, text the error must contain)
    ("modality topic missing", "good", ["--modality", "thermal"], MissingTopicError,
     ["no thermal topic '/thermal/image_raw'", "the bag has:", "/camera/depth/image_raw (sensor_msgs/msg/Image)"]),
    ("colour topic missing", "good", ["--topics", "color=/cam/rgb"], MissingTopicError,
     ["no color topic '/cam/rgb'", "/camera/color/image_raw (sensor_msgs/msg/Image)"]),
    ("ground-truth topic missing", "no_gt", [], MissingTopicError,
     ["no ground-truth topic '/groundtruth'"]),
    ("prompt topic missing", "no_prompt", ["--prompt", "on"], MissingTopicError,
     ["no prompt topic '/prompt'"]),
    ("unknown message type", "blob", [], UnsupportedMessageError,
     ["topic '/camera/color/image_raw' has type my_msgs/msg/Blob", "expected sensor_msgs/msg/Image"]),
    ("wrong message type", "string", [], UnsupportedMessageError,
     ["has type std_msgs/msg/String", "expected sensor_msgs/msg/Image"]),
    ("gt file frame count", "no_gt", ["--gt-file", "{gt_short}"], FrameCountError,
     [f"{FRAMES - 1} ground-truth boxes but", f"has {FRAMES} frames on /camera/color/image_raw"]),
    ("gt file malformed", "no_gt", ["--gt-file", "{gt_bad}"], SequenceFormatError,
     ["gt_bad.txt:3: expected 4 numbers"]),
    ("truncated bag", "truncated", [], SequenceFormatError, ["truncated: cannot open bag"]),
    ("corrupt metadata", "garbage_meta", [], SequenceFormatError, ["garbage_meta", "cannot open bag"]),
    ("noise mcap file", "noise", [], SequenceFormatError, ["noise.mcap", "cannot open bag"]),
]


def _argv(bags: dict[str, Path], key: str, extra: list[str]) -> list[str]:
    return [str(bags[key])] + [a.format(**{k: str(v) for k, v in bags.items()}) for a in extra]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_names_the_problem_and_keeps_existing_results(case, bags, existing_results, capsys):
    _, key, extra, _, texts = case
    before = _snapshot(existing_results)
    args = _eval_args(*_argv(bags, key, extra), "--out", str(existing_results), "--force", "--weights", "random",
                      "--no-progress")
    assert replay_cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("utptrack eval: error: ")
    for text in texts:
        assert text in err, f"{text!r} not in: {err}"
    assert _snapshot(existing_results) == before  # even with --force nothing was replaced
    assert sorted(p.name for p in existing_results.parent.iterdir()) == ["results"]  # no temp folders left


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_open_bag_raises_the_named_error(case, bags):
    _, key, extra, error, texts = case
    args = _eval_args(*_argv(bags, key, extra), "--out", "unused")
    gt = args.gt_file[0] if args.gt_file else None
    with pytest.raises(error) as info:
        R.open_bag(args.bags[0], topics=replay_cli.bag_topics(args), modality=args.modality, prompt=args.prompt,
                   gt_file=gt)
    assert texts[0] in str(info.value)


def test_missing_bag_and_existing_results_without_force(bags, existing_results, tmp_path, capsys):
    before = _snapshot(existing_results)
    assert replay_cli.run(_eval_args(str(bags["good"]), "--out", str(existing_results))) == 1
    assert "already holds results" in capsys.readouterr().err
    assert _snapshot(existing_results) == before
    assert replay_cli.run(_eval_args(str(tmp_path / "nope"), "--out", str(tmp_path / "new"))) == 1
    err = capsys.readouterr().err
    assert "nope: bag does not exist" in err
    assert not (tmp_path / "new").exists()


def test_gt_file_count_must_match_bags(bags, tmp_path, capsys):
    args = _eval_args(str(bags["good"]), str(bags["no_gt"]), "--gt-file", str(bags["gt_short"]), "--out",
                      str(tmp_path / "o"))
    assert replay_cli.run(args) == 1
    assert "--gt-file given 1 times for 2 bags" in capsys.readouterr().err


def test_gt_file_replaces_the_topic(bags, tmp_path):
    gt = tmp_path / "gt.txt"
    rows = np.array([[5.0 + i, 6.0, 30.0, 20.0] for i in range(FRAMES)])
    rows[2] = np.nan  # absent
    np.savetxt(gt, rows, delimiter=",", fmt="%.3f")
    bag = R.open_bag(bags["no_gt"], gt_file=gt)
    np.testing.assert_allclose(bag.sequence.gt[[0, 1, 3]], rows[[0, 1, 3]])
    assert bag.sequence.absent.tolist() == [False, False, True, False, False, False]
    assert bag.gt_source == f"file {gt}" and "has_groundtruth" not in bag.sequence.attributes


def test_modality_auto_and_prompt_resolution(bags):
    bag = R.open_bag(bags["good"])
    assert bag.modality is Modality.DEPTH and bag.aux_topic == "/camera/depth/image_raw"
    assert bag.use_prompt and bag.sequence.prompt
    rgb = R.open_bag(bags["good"], modality="rgb", prompt="off")
    assert rgb.modality is Modality.RGB and rgb.aux_topic is None
    assert not rgb.use_prompt and rgb.sequence.prompt is None and rgb.sequence.modalities == ()
    assert R.open_bag(bags["no_prompt"]).use_prompt is False


def test_bag_checks_and_offline_openers_need_no_rclpy(bags):
    """Offline-mode workers import replay to open bags: it must not need rclpy for that."""

    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "from utptrack_ros import replay; from utptrack_ros.replay import cli as replay_cli\n"
        f"seq = replay_cli.open_sequence(__import__('pathlib').Path({str(bags['good'])!r}), replay.BagTopics(), "
        "'auto', 'auto', None)\n"
        "print(seq.length, [m.value for m in seq.modalities])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(FRAMES), "['depth']"]


def test_cli_defaults_are_the_option_dataclasses_defaults():
    """``utptrack eval`` shows and takes the defaults of ``ReplayOptions`` / ``NodeOptions``."""

    args = _eval_args("bag", "--out", "o")
    assert replay_cli.replay_options(args) == R.ReplayOptions()
    node = R.NodeOptions()
    assert (args.model, args.device, args.threads, args.keep, args.node_name, args.domain_id, args.params_file) == (
        node.model, node.device, node.num_threads, node.keep, node.node_name, node.domain_id, node.params_file)
    changed = dataclasses.replace(R.ReplayOptions(), frame_timeout_s=2.5, drain_timeout_s=0.5, modality="rgb")
    args = _eval_args("bag", "--out", "o", "--frame-timeout", "2.5", "--drain-timeout", "0.5", "--modality", "rgb")
    assert replay_cli.replay_options(args) == changed


def test_compare_rows_are_parsed_once_for_eval_and_demo():
    assert R.parse_compare("none") == [] and R.parse_compare(" csrt, kcf ") == ["csrt", "kcf"]
    with pytest.raises(ConfigError, match="got lidar"):
        R.parse_compare("csrt,lidar")
    assert _eval_args("bag", "--out", "o", "--compare", "unpruned,mil").compare == ["unpruned", "mil"]
    with pytest.raises(SystemExit):
        _eval_args("bag", "--out", "o", "--compare", "csrt,lidar")
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert R.parse_compare(parser.parse_args([]).compare) == list(R.COMPARE_CHOICES)


def test_camera_info_is_played_before_each_depth_frame_and_remapped(bags):
    """An RGB-D bag's colour camera_info is played (first) with every frame's depth so that the
    node's ~/target_point has intrinsics; an RGB-only replay does not play it."""

    bag = R.open_bag(bags["good"])
    assert bag.info_topic == "/camera/color/camera_info"
    frames = read_play_frames(bag)
    ts = bag_typestore()
    for frame in frames:
        topics = [t for t, _ in frame.before if t != bag.topics.prompt]
        assert topics == [bag.info_topic, bag.aux_topic], topics
        info = ts.deserialize_cdr(frame.before[[t for t, _ in frame.before].index(bag.info_topic)][1],
                                  "sensor_msgs/msg/CameraInfo")
        assert int(info.header.stamp.sec) * 10**9 + int(info.header.stamp.nanosec) == frame.stamp_ns
        assert info.k[0] > 0 and (info.width, info.height) == bag.sequence.image_size
    rgb = R.open_bag(bags["good"], modality="rgb")
    assert rgb.info_topic is None and all(t != "/camera/color/camera_info" for f in read_play_frames(rgb) for t, _ in f.before)
    assert bag.info_topic in bag.node_key()

"""The real-footage validation set (scripts/build_real_footage.py, docs/eval.md "Real footage").

The committed annotations are checked always; the built sequence folders only when
``data/real/`` holds them (the frames come from Debian packages and are not committed).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from utptrack_ros.data import load_folder
from utptrack_ros.eval.sequence_run import run_sequence
from utptrack_ros.eval.specs import peer_spec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_real_footage.py"
BUILT = ROOT / "data" / "real"


def _load_script():
    spec = importlib.util.spec_from_file_location("build_real_footage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_real_footage"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


brf = _load_script()
CLIP_NAMES = [c.name for c in brf.CLIPS]


def _annotation(name):
    return json.loads((brf.ANNOTATIONS / f"{name}.json").read_text())


def test_clip_list_is_sound():
    assert len(CLIP_NAMES) == len(set(CLIP_NAMES)) >= 6
    for clip in brf.CLIPS:
        assert clip.package not in brf.RESERVED_PACKAGES, f"{clip.name}: opencv-doc videos are the held-out set"
        assert "opencv-doc" not in clip.member
        assert len(clip.sha256) == 64 and int(clip.sha256, 16) >= 0
        assert clip.count > 0 and clip.first >= 0 and clip.scale > 0
        assert clip.target and clip.kind and clip.licence
    assert {p.stem for p in brf.ANNOTATIONS.glob("*.json")} == set(CLIP_NAMES), "orphan or missing annotation"


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_annotation_format_and_boxes(name):
    clip = brf.CLIPS_BY_NAME[name]
    ann = _annotation(name)
    assert ann["format"] == brf.ANNOTATION_FORMAT and ann["clip"] == name and ann["method"]
    boxes, prov = ann["boxes"], ann["provenance"]
    assert len(boxes) == len(prov) == clip.count
    assert set(prov) <= set(brf.PROVENANCE) - {"P"}, "an unfinished annotation (proposals) was committed"
    assert prov[0] == "K", "the first frame initialises every tracker: it needs a hand-drawn box"
    width, height = clip.size
    for i, (box, p) in enumerate(zip(boxes, prov)):
        if p in "UA":
            assert box is None, f"{name} frame {i}: no box expected for provenance {p}"
            continue
        assert len(box) == 4 and all(math.isfinite(v) for v in box), f"{name} frame {i}: {box}"
        x, y, w, h = box
        assert w > 0 and h > 0, f"{name} frame {i}: empty box {box}"
        assert x >= -0.5 and y >= -0.5 and x + w <= width + 0.5 and y + h <= height + 0.5, \
            f"{name} frame {i}: {box} leaves the {width}x{height} frame"
    for key, box in ann["keyframes"].items():
        assert prov[int(key)] == "K" and boxes[int(key)] == box
    assert ann["counts"] == {c: prov.count(c) for c in ann["counts"]} and sum(ann["counts"].values()) == clip.count
    # mostly certain: at most 5 % of the frames left out of the truth
    assert sum(p in "UA" for p in prov) <= 0.05 * clip.count


def test_ground_truth_leaves_uncertain_frames_out():
    ann = {"boxes": [[1, 2, 3, 4], None, [5, 6, 7, 8], None], "provenance": "KUFA"}
    gt, absent = brf.ground_truth(ann)
    assert absent.tolist() == [False, True, False, True]
    assert np.isnan(gt[[1, 3]]).all() and gt[2].tolist() == [5, 6, 7, 8]


def _built(name):
    path = BUILT / name
    if not (path / "color").is_dir():
        pytest.skip(f"{path} is absent: run `.venv/bin/python scripts/build_real_footage.py` "
                    "(downloads Debian packages) to build the real-footage set")
    return path


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_built_folder_matches_annotation(name):
    path = _built(name)
    clip = brf.CLIPS_BY_NAME[name]
    seq = load_folder(path)
    gt, absent = brf.ground_truth(_annotation(name))
    assert seq.length == clip.count and seq.image_size == clip.size
    np.testing.assert_allclose(seq.gt, gt, equal_nan=True)
    assert seq.absent.tolist() == absent.tolist()
    assert seq.prompt == clip.target
    assert seq.attributes["source"]["sha256"] == clip.sha256
    assert seq.rgb(0).shape == (clip.size[1], clip.size[0], 3)


def test_built_folder_runs_through_the_evaluation_layer():
    path = _built("face_close")
    run = run_sequence(peer_spec("csrt"), functools.partial(load_folder, path), max_frames=20)
    seq = load_folder(path)
    boxes = np.asarray(run.boxes_xywh, dtype=float)[:20]
    assert boxes.shape == (20, 4) and np.isfinite(boxes).all()
    # the truth follows the face: a tracker started on it stays near it over 20 frames
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    truth = seq.gt[:20, :2] + seq.gt[:20, 2:] / 2
    assert np.abs(centres - truth).max() < 0.5 * seq.gt[0, 2]

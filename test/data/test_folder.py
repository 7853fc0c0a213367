"""Folder layout: round trip against the in-memory sequence, and clear errors for broken folders."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from data.datautils import assert_same_sequence

from utptrack_ros.data import (
    ArrayFrames,
    FrameCountError,
    SequenceError,
    SequenceFormatError,
    TrackingSequence,
    load_folder,
    write_folder,
)
from utptrack_ros.types import Modality


def test_folder_round_trip_equals_memory(small_seq, tmp_path):
    path = write_folder(small_seq, tmp_path)
    assert path == tmp_path / small_seq.name
    for sub in ("color", "depth", "thermal", "event"):
        assert len(list((path / sub).iterdir())) == small_seq.length
    loaded = load_folder(path)
    # RGB is JPEG q95 (lossy); every other stream is lossless
    assert_same_sequence(small_seq, loaded, rgb_tol=5.0, gt_tol=1e-9)
    assert loaded.name == small_seq.name
    assert loaded.attributes == json.loads(json.dumps(small_seq.attributes))
    assert set(loaded.frame_info) == set(small_seq.frame_info)
    for key, values in small_seq.frame_info.items():
        np.testing.assert_allclose(loaded.frame_info[key], values)
    assert small_seq.absent.any(), "fixture should have absent frames"
    lines = (path / "groundtruth.txt").read_text().splitlines()
    assert lines[int(np.flatnonzero(small_seq.absent)[0])] == "NaN,NaN,NaN,NaN"
    assert (path / "absence.label").read_text().split() == [str(int(a)) for a in small_seq.absent]
    assert (path / "nlp.txt").read_text().strip() == small_seq.prompt


def test_write_refuses_to_overwrite(small_seq, tmp_path):
    write_folder(small_seq, tmp_path)
    with pytest.raises(SequenceError, match="already exists"):
        write_folder(small_seq, tmp_path)
    write_folder(small_seq, tmp_path, overwrite=True)


@pytest.fixture()
def folder(tmp_path):
    rgb = [np.full((8, 10, 3), i * 20, np.uint8) for i in range(3)]
    depth = [np.full((8, 10), 1000 + i, np.uint16) for i in range(3)]
    gt = np.array([[1, 1, 4, 4], [2, 1, 4, 4], [np.nan] * 4])
    seq = TrackingSequence("tiny", ArrayFrames(rgb, {Modality.DEPTH: depth}), gt, prompt="a grey square")
    return write_folder(seq, tmp_path)


def test_tiny_folder_loads(folder):
    seq = load_folder(folder)
    assert seq.length == 3 and seq.modalities == (Modality.DEPTH,)
    assert seq.absent.tolist() == [False, False, True]
    assert seq.aux("depth", 2)[0, 0] == 1002 and seq.aux("depth", 2).dtype == np.uint16
    assert seq.box(0).as_xywh() == (1, 1, 4, 4) and seq.box(2) is None
    with pytest.raises(SequenceError, match="no thermal frames"):
        seq.aux(Modality.THERMAL, 0)


def test_groundtruth_count_mismatch(folder):
    gt = folder / "groundtruth.txt"
    gt.write_text(gt.read_text() + "1,2,3,4\n")
    with pytest.raises(FrameCountError, match=r"groundtruth.txt: 4 boxes but color/ has 3 frames"):
        load_folder(folder)


def test_absence_count_mismatch(folder):
    (folder / "absence.label").write_text("0\n0\n")
    with pytest.raises(FrameCountError, match="absence.label: 2 flags"):
        load_folder(folder)


def test_aux_count_mismatch(folder):
    (folder / "depth" / "000003.png").unlink()
    with pytest.raises(FrameCountError, match="depth: 2 frames but color/ has 3"):
        load_folder(folder)


def test_bad_groundtruth_line(folder):
    (folder / "groundtruth.txt").write_text("1,1,4,4\n2,1,four,4\nNaN,NaN,NaN,NaN\n")
    with pytest.raises(SequenceFormatError, match=r"groundtruth.txt:2: expected 4 numbers"):
        load_folder(folder)


def test_missing_parts(folder, tmp_path):
    (folder / "groundtruth.txt").unlink()
    with pytest.raises(SequenceFormatError, match="groundtruth.txt is missing"):
        load_folder(folder)
    shutil.rmtree(folder / "color")
    with pytest.raises(SequenceFormatError, match="no color/ folder"):
        load_folder(folder)
    with pytest.raises(SequenceFormatError, match="not a sequence folder"):
        load_folder(tmp_path / "nope")


def test_corrupt_image_names_the_file(folder):
    (folder / "color" / "000002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    seq = load_folder(folder)  # lazy: counts are fine
    seq.rgb(0)
    with pytest.raises(SequenceFormatError, match=r"000002.jpg: not a readable image"):
        seq.rgb(1)


def test_depth_must_be_16_bit(folder):
    cv2.imwrite(str(folder / "depth" / "000001.png"), np.zeros((8, 10), np.uint8))
    with pytest.raises(SequenceFormatError, match="depth must be a 1-channel 16-bit PNG"):
        load_folder(folder).aux(Modality.DEPTH, 0)


def test_bad_meta_json(folder):
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(SequenceFormatError, match="meta.json: not valid JSON"):
        load_folder(folder)


def test_sequence_validates_shapes():
    frames = ArrayFrames([np.zeros((4, 4, 3), np.uint8)] * 2)
    with pytest.raises(SequenceError, match=r"gt must have shape \(N, 4\)"):
        TrackingSequence("x", frames, np.zeros((2, 3)))
    with pytest.raises(FrameCountError, match="2 frames but 3 ground-truth rows"):
        TrackingSequence("x", frames, np.zeros((3, 4)))
    seq = TrackingSequence("x", frames, np.array([[0, 0, 1, 1], [np.nan, 0, 1, 1]]), absent=[False, False])
    assert seq.absent.tolist() == [False, True] and np.isnan(seq.gt[1]).all()
    with pytest.raises(IndexError):
        seq.rgb(2)

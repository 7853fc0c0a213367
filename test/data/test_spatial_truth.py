"""The generator's 3D ground truth (target position, camera), the opt-in depth_holes challenge, and
both travelling through bags (camera_info topic) and folders."""
from __future__ import annotations

import numpy as np
import pytest
from data.datautils import SMALL, make
from rosbags.highlevel import AnyReader

from utptrack_ros.data import (
    Challenge,
    SequenceSpec,
    generate,
    load_bag,
    load_folder,
    random_challenges,
    write_bag,
    write_folder,
)
from utptrack_ros.data.bag import CAMERA_INFO, bag_typestore
from utptrack_ros.data.camera import camera_intrinsics, target_positions
from utptrack_ros.data.spec import OPT_IN_CHALLENGES
from utptrack_ros.spatial.depth import central_region
from utptrack_ros.types import Box, Modality


def test_target_position_lies_on_the_box_centre_ray_at_the_targets_depth():
    seq = make(21, {"scale_change": 1.0, "partial_occlusion": 1.0}, length=16)
    positions = target_positions(seq)
    cam = camera_intrinsics(seq.attributes, seq.image_size)
    assert positions.shape == (16, 3) and cam is not None
    assert np.isnan(positions[seq.absent]).all() and np.isfinite(positions[~seq.absent]).all()
    renderer = seq.frames.renderer
    for i in np.flatnonzero(~seq.absent):
        x, y, w, h = seq.gt[i]
        # the camera projects the point back onto the box centre (pixel centres at integers)
        np.testing.assert_allclose(cam.project(positions[i][None])[0], [x + w / 2 - 0.5, y + h / 2 - 0.5], atol=1e-6)
        # its z is the target's noise-free surface depth around the box centre
        _, _, clean_mm, _ = renderer.composite(float(i), with_aux=True)
        rows, cols = central_region(Box(x, y, w, h), *seq.image_size, 0.5)
        target = float(seq.frames.renderer.scene.target.depth[i])
        region = clean_mm[rows, cols]
        near_target = region[np.abs(region - target) < 0.1 * target]  # the target's own pixels (not occluders)
        assert abs(np.median(near_target) / 1000.0 - positions[i, 2]) < 0.01
        assert 0.5 < positions[i, 2] < 7.5


def test_depth_holes_is_opt_in_and_touches_only_the_targets_depth():
    seeds = range(400)
    assert not any(Challenge.DEPTH_HOLES in random_challenges(s) for s in seeds)
    assert OPT_IN_CHALLENGES == {Challenge.DEPTH_HOLES}
    base = make(33, {"partial_occlusion": 0.5}, length=10)
    holed = make(33, {"partial_occlusion": 0.5, "depth_holes": 1.0}, length=10)
    np.testing.assert_array_equal(base.gt, holed.gt)
    np.testing.assert_array_equal(target_positions(base), target_positions(holed))
    assert holed.attributes["challenges"]["depth_holes"] == 1.0
    assert 0.5 < holed.attributes["depth_holes"]["target_fraction"] <= 1.0
    lost = []
    for i in range(10):
        np.testing.assert_array_equal(base.rgb(i), holed.rgb(i))
        for m in (Modality.THERMAL, Modality.EVENT):
            np.testing.assert_array_equal(base.aux(m, i), holed.aux(m, i))
        d0, d1 = base.aux(Modality.DEPTH, i), holed.aux(Modality.DEPTH, i)
        changed = d0 != d1
        assert (d1[changed] == 0).all()  # holes only remove returns
        x, y, w, h = base.gt[i]
        outside = np.ones_like(changed)
        outside[max(int(y) - 2, 0):int(y + h) + 2, max(int(x) - 2, 0):int(x + w) + 2] = False
        assert not changed[outside].any()  # and only on the target
        lost.append(changed.sum() / max((d0[~outside] > 0).sum(), 1))
    assert np.mean(lost) > 0.15  # of the box's returns (the box also holds background and the occluder)


def test_random_challenges_of_existing_seeds_are_unchanged():
    """Adding an opt-in challenge must not shift the draws of any seed (values recorded before it)."""
    assert random_challenges(2) == {Challenge.FAST_MOTION: 0.809, Challenge.PARTIAL_OCCLUSION: 0.722,
                                    Challenge.CAMERA_SHAKE: 0.845, Challenge.LOW_RESOLUTION: 0.437}
    assert random_challenges(200_005) == {Challenge.FULL_OCCLUSION: 0.802}
    assert random_challenges(100_003) == {Challenge.ROTATION: 0.483, Challenge.PARTIAL_OCCLUSION: 0.701,
                                          Challenge.OUT_OF_VIEW: 0.534, Challenge.ILLUMINATION: 0.405}


def test_camera_and_positions_travel_through_bags_and_folders(tmp_path):
    seq = make(21, {"out_of_view": 1.0}, length=16)
    assert seq.absent.any()
    bag = write_bag(seq, tmp_path / "bag")
    from_bag = load_bag(bag)
    np.testing.assert_array_equal(target_positions(from_bag), target_positions(seq))
    info = from_bag.attributes["camera_info"]
    cam = seq.attributes["camera"]
    assert (info["width"], info["height"]) == SMALL and info["frame_id"] == "camera_color_optical_frame"
    assert info["k"] == [cam["fx"], 0.0, cam["cx"], 0.0, cam["fy"], cam["cy"], 0.0, 0.0, 1.0]
    assert camera_intrinsics(from_bag.attributes, from_bag.image_size) == camera_intrinsics(seq.attributes, SMALL)
    folder = load_folder(write_folder(seq, tmp_path / "f"))
    np.testing.assert_array_equal(target_positions(folder), target_positions(seq))
    assert camera_intrinsics(folder.attributes, folder.image_size) == camera_intrinsics(seq.attributes, SMALL)


def test_bag_camera_info_is_one_per_colour_frame_with_its_stamp(tmp_path):
    seq = make(21, length=6)
    path = write_bag(seq, tmp_path / "bag", "sqlite3")
    stamps = {}
    with AnyReader([path], default_typestore=bag_typestore()) as reader:
        for connection, bag_time, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype in (CAMERA_INFO, "sensor_msgs/msg/Image"):
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                assert stamp == bag_time and msg.header.frame_id == "camera_color_optical_frame"
                stamps.setdefault(connection.topic, []).append(stamp)
    assert stamps["/camera/color/camera_info"] == stamps["/camera/color/image_raw"] == list(seq.stamps_ns)


def test_sequences_without_a_camera_write_no_camera_info(tmp_path):
    seq = make(21, length=4)
    bare = type(seq)(seq.name, seq.frames, seq.gt, seq.absent, seq.prompt, {"seed": 21}, {}, seq.stamps_ns)
    assert camera_intrinsics(bare.attributes, SMALL) is None and target_positions(bare) is None
    loaded = load_bag(write_bag(bare, tmp_path / "bag"))
    assert "camera_info" not in loaded.attributes


@pytest.mark.parametrize("challenges", [{}, {"depth_holes": 0.6, "partial_occlusion": 1.0}])
def test_positions_do_not_need_depth_frames(challenges):
    """The 3D ground truth comes from the scene, so RGB-only sequences have it too."""
    spec = SequenceSpec(seed=44, length=8, size=SMALL, challenges=challenges, modalities=())
    rgb_only, full = generate(spec), make(44, challenges, length=8)
    np.testing.assert_array_equal(target_positions(rgb_only), target_positions(full))

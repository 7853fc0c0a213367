"""spatial: CameraInfo intrinsics, undistortion, back-projection and the robust target depth.

The geometry cases are built so that each classic mistake gives a clearly wrong answer: the camera
has fx != fy and a principal point away from the image centre (swapped axes, a centred principal
point or a dropped half-pixel all move the point by more than the tolerance), depth comes in
millimetres and in metres, and the distortion cases use strong coefficients near the image corner
with the forward models written out here (not taken from OpenCV)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from utptrack_ros.errors import InputError
from utptrack_ros.spatial import (
    CameraInfoError,
    CameraIntrinsics,
    DepthConfig,
    DepthImageError,
    DepthStatus,
    TargetLocator,
    box_centre_pixel,
    depth_unit,
    estimate_depth,
    locate_target,
    locate_targets,
)
from utptrack_ros.types import Box

W, H = 640, 480
FX, FY, CX, CY = 500.0, 400.0, 300.0, 200.0  # fx != fy, principal point away from (W/2, H/2)


def camera_info(k=(FX, 0, CX, 0, FY, CY, 0, 0, 1), d=(), model="plumb_bob", p=None, width=W, height=H,
                binning=(0, 0), roi=(0, 0, 0, 0)):
    """A duck-typed sensor_msgs/CameraInfo (the fields rclpy and rosbags messages have)."""
    if p is None:
        p = (k[0], 0, k[2], 0, 0, k[4], k[5], 0, 0, 0, 1, 0)
    return SimpleNamespace(width=width, height=height, distortion_model=model, d=list(d), k=list(k),
                           r=[1, 0, 0, 0, 1, 0, 0, 0, 1], p=list(p), binning_x=binning[0], binning_y=binning[1],
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3],
                                               do_rectify=False))


def box_at_pixel(u: float, v: float, w: float = 40, h: float = 30) -> Box:
    """A box whose centre is pixel (u, v) (pixel centres at integers; boxes are continuous)."""
    return Box.from_cxcywh(u + 0.5, v + 0.5, w, h)


def depth_image(z_m: float, box: Box, background_m: float = 5.0, metres: bool = False) -> np.ndarray:
    """Background at ``background_m`` with the box's pixels at ``z_m``; uint16 mm or float32 m."""
    z = np.full((H, W), background_m, np.float64)
    x0, y0, x1, y1 = (int(round(v)) for v in box.as_xyxy())
    z[max(y0, 0):y1, max(x0, 0):x1] = z_m
    return z.astype(np.float32) if metres else np.round(z * 1000).astype(np.uint16)


# -- geometry: axes, units, principal point, half pixel ------------------------------------------

@pytest.mark.parametrize("metres", [False, True], ids=["16UC1_mm", "32FC1_m"])
def test_point_has_the_right_axes_units_and_principal_point(metres):
    cam = CameraIntrinsics.from_camera_info(camera_info())
    truth = np.array([0.5, -0.25, 2.0])  # right of and above the optical axis
    u, v = FX * truth[0] / truth[2] + CX, FY * truth[1] / truth[2] + CY  # 425, 150
    box = box_at_pixel(u, v)
    point = locate_target(depth_image(truth[2], box, metres=metres), box, cam)
    assert point.ok and point.pixel == (u, v)
    # wrong axis order, mm taken as m, (W/2, H/2) as principal point, or the half pixel dropped
    # (2 mm here) each move the answer by more than 0.5 mm
    np.testing.assert_allclose(point.position_m, truth, atol=5e-4)
    assert point.depth.depth_m == pytest.approx(2.0) and point.depth.valid_fraction == 1.0


def test_box_centre_pixel_convention():
    assert box_centre_pixel(Box(10, 20, 1, 1)) == (10.0, 20.0)  # the box covering exactly pixel (10, 20)
    assert box_centre_pixel(Box(0, 0, W, H)) == ((W - 1) / 2, (H - 1) / 2)


def test_several_targets_each_get_their_point():
    cam = CameraIntrinsics.from_camera_info(camera_info())
    truths = [np.array([0.5, -0.25, 2.0]), np.array([-0.6, 0.3, 3.0]), np.array([0.0, 0.0, 1.5])]
    depth = np.full((H, W), 6000, np.uint16)
    boxes = []
    for t in truths:
        box = box_at_pixel(FX * t[0] / t[2] + CX, FY * t[1] / t[2] + CY, 30, 30)
        x0, y0, x1, y1 = (int(round(v)) for v in box.as_xyxy())
        depth[y0:y1, x0:x1] = round(t[2] * 1000)
        boxes.append(box)
    points = locate_targets(depth, boxes, cam)
    for point, truth in zip(points, truths):
        np.testing.assert_allclose(point.position_m, truth, atol=5e-4)


def test_camera_info_from_a_real_sensor_msgs_message():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    msg = sensor_msgs.CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.0] * 5,
                                 k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0],
                                 p=[FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0])
    cam = CameraIntrinsics.from_camera_info(msg)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) == (W, H, FX, FY, CX, CY)
    assert cam.distortion_model == ""  # zero D: nothing to undistort


# -- distortion -----------------------------------------------------------------------------

def plumb_bob(x, y, k1, k2, p1, p2, k3, k4=0.0, k5=0.0, k6=0.0):
    """Normalised undistorted -> distorted coordinates (Brown-Conrady; rational when k4..k6 != 0)."""
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3) / (1 + k4 * r2 + k5 * r2 ** 2 + k6 * r2 ** 3)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def equidistant(x, y, k1, k2, k3, k4):
    r = math.hypot(x, y)
    theta = math.atan(r)
    theta_d = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4 + k3 * theta ** 6 + k4 * theta ** 8)
    return x * theta_d / r, y * theta_d / r


DISTORTED = [
    ("plumb_bob", (-0.28, 0.09, 0.0012, -0.0009, -0.015), plumb_bob),
    ("rational_polynomial", (0.4, -0.05, 0.001, 0.0005, 0.02, 0.7, 0.05, 0.01), plumb_bob),
    ("equidistant", (0.05, -0.02, 0.004, -0.001), equidistant),
]


@pytest.mark.parametrize("model, d, forward", DISTORTED, ids=[m for m, _, _ in DISTORTED])
def test_raw_image_is_undistorted_with_its_model(model, d, forward):
    cam = CameraIntrinsics.from_camera_info(camera_info(d=d, model=model))
    truth = np.array([-0.75, 0.55, 1.8])  # towards the lower-left corner, where distortion is large
    xd, yd = forward(truth[0] / truth[2], truth[1] / truth[2], *d)
    u, v = FX * xd + CX, FY * yd + CY
    assert 0 <= u < W and 0 <= v < H
    box = box_at_pixel(u, v, 20, 20)
    depth = depth_image(truth[2], box)
    np.testing.assert_allclose(locate_target(depth, box, cam).position_m, truth, atol=1e-3)
    ignored = locate_target(depth, box, CameraIntrinsics.from_camera_info(camera_info()))  # D dropped
    assert np.linalg.norm(np.subtract(ignored.position_m, truth)) > 0.03
    np.testing.assert_allclose(cam.project(truth[None]), [[u, v]], atol=1e-6)  # inverse of back_project


def test_rectified_image_uses_p_and_ignores_d():
    fxp, fyp, cxp, cyp = 450.0, 360.0, 330.0, 230.0
    info = camera_info(d=(-0.3, 0.1, 0, 0, 0), p=(fxp, 0, cxp, 0, 0, fyp, cyp, 0, 0, 0, 1, 0))
    rect = CameraIntrinsics.from_camera_info(info, rectified=True)
    truth = np.array([0.3, 0.2, 2.5])
    box = box_at_pixel(fxp * truth[0] / truth[2] + cxp, fyp * truth[1] / truth[2] + cyp)
    depth = depth_image(truth[2], box)
    np.testing.assert_allclose(locate_target(depth, box, rect).position_m, truth, atol=5e-4)
    raw = locate_target(depth, box, CameraIntrinsics.from_camera_info(info))  # K + D on a rectified image
    assert np.linalg.norm(np.subtract(raw.position_m, truth)) > 0.03


def test_binning_and_roi_map_pixels_to_the_sensor():
    info = camera_info(d=(-0.2, 0.05, 0, 0, 0), binning=(2, 2), roi=(64, 32, 512, 384))
    cam = CameraIntrinsics.from_camera_info(info)
    assert (cam.width, cam.height) == (256, 192)
    truth = np.array([0.2, -0.1, 2.0])
    xd, yd = plumb_bob(truth[0] / truth[2], truth[1] / truth[2], -0.2, 0.05, 0, 0, 0)
    u_full, v_full = FX * xd + CX, FY * yd + CY
    u, v = (u_full - 64 + 0.5) / 2 - 0.5, (v_full - 32 + 0.5) / 2 - 0.5  # binned pixel centres
    np.testing.assert_allclose(cam.back_project([[u, v]], [truth[2]])[0], truth, atol=5e-4)
    cam.check_image_size(256, 192)
    with pytest.raises(CameraInfoError, match=r"describes a 256x192 image \(calibrated 640x480, binning 2x2"):
        cam.check_image_size(640, 480)


# -- bad camera info ------------------------------------------------------------------------------

@pytest.mark.parametrize("info, message", [
    (camera_info(k=(0,) * 9), "K is all zeros: the camera is not calibrated"),
    (camera_info(k=(0, 0, CX, 0, FY, CY, 0, 0, 1)), "K has fx = 0.0"),
    (camera_info(k=(-FX, 0, CX, 0, FY, CY, 0, 0, 1)), "focal lengths must be > 0"),
    (camera_info(k=(FX, 0, CX, 0, math.nan, CY, 0, 0, 1)), "non-finite fy"),
    (camera_info(k=(FX, 0, math.inf, 0, FY, CY, 0, 0, 1)), "non-finite cx"),
    (camera_info(width=0, height=0), r"no image size \(0x0\)"),
    (camera_info(d=(0.1, 0.0, 0.0, 0.0, 0.0), model="mei"), "unknown distortion model 'mei'"),
    (camera_info(d=(0.1, 0.0, 0.0), model="plumb_bob"), "takes 4 or 5 coefficients"),
    (camera_info(d=(0.1, math.nan, 0, 0, 0)), "non-finite coefficients"),
    (camera_info(roi=(600, 0, 100, 100)), "ROI 100x100 at \\(600, 0\\) lies outside"),
], ids=["uncalibrated", "zero_fx", "negative_fx", "nan_fy", "inf_cx", "no_size", "unknown_model", "count",
        "nan_d", "roi"])
def test_bad_camera_info_is_refused_with_a_reason(info, message):
    with pytest.raises(CameraInfoError, match=message) as err:
        CameraIntrinsics.from_camera_info(info)
    assert isinstance(err.value, InputError)


def test_lenient_distortion_cases():
    # zero coefficients: nothing to undistort, whatever the model is called
    assert CameraIntrinsics.from_camera_info(camera_info(d=(0.0,) * 5, model="mei")).distortion_model == ""
    # plumb_bob padded with zeros to 8 coefficients
    padded = CameraIntrinsics.from_camera_info(camera_info(d=(0.1, 0, 0, 0, 0, 0, 0, 0)))
    assert padded.distortion == (0.1, 0, 0, 0, 0)


def test_rectified_needs_a_calibrated_p():
    with pytest.raises(CameraInfoError, match="P is all zeros"):
        CameraIntrinsics.from_camera_info(camera_info(p=(0,) * 12), rectified=True)


def test_depth_of_another_size_than_the_camera_info():
    cam = CameraIntrinsics.from_camera_info(camera_info())
    with pytest.raises(CameraInfoError, match="describes a 640x480 image but the depth image is 320x240"):
        locate_target(np.full((240, 320), 2000, np.uint16), Box(10, 10, 20, 20), cam)


# -- depth input ----------------------------------------------------------------------------

def test_depth_encodings():
    assert depth_unit("16UC1") == "mm" and depth_unit("32FC1") == "m" and depth_unit("mono16") == "mm"
    for encoding in ("rgb8", "8UC1", "32FC3", "16SC1"):
        with pytest.raises(DepthImageError, match=f"depth encoding '{encoding}' is not a depth image"):
            depth_unit(encoding)
    cam = CameraIntrinsics.from_camera_info(camera_info())
    for bad in (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.uint16), np.zeros((H, W), np.int32)):
        with pytest.raises(DepthImageError):
            locate_target(bad, Box(10, 10, 20, 20), cam)


@pytest.mark.parametrize("fill, words", [
    (np.uint16(0), "400 0 (no return)"),
    (np.float32(np.nan), "400 NaN"),
    (np.float32(np.inf), "400 +inf (too far)"),
    (np.float32(-np.inf), "400 -inf (too near)"),
    (np.float32(0.0), "400 <= 0"),
], ids=["zeros_mm", "nan", "plus_inf", "minus_inf", "zero_m"])
def test_all_invalid_depth_gives_no_point_and_says_why(fill, words):
    cam = CameraIntrinsics.from_camera_info(camera_info())
    box = Box(100, 100, 40, 40)  # central region 20 x 20 = 400 pixels
    depth = np.full((H, W), 3.0 if fill.dtype == np.float32 else 3000, fill.dtype)
    depth[110:130, 110:130] = fill
    point = locate_target(depth, box, cam)
    assert not point.ok and point.position_m is None
    assert point.depth.status is DepthStatus.NO_VALID_DEPTH and math.isnan(point.depth.depth_m)
    assert point.depth.valid_fraction == 0.0
    assert "no valid depth" in point.reason
    assert words in point.reason, point.reason


def test_too_few_valid_pixels_and_boxes_outside_the_image():
    cam = CameraIntrinsics.from_camera_info(camera_info())
    depth = np.zeros((H, W), np.uint16)
    depth[110, 110:113] = 2000  # 3 of 400 valid
    few = locate_target(depth, Box(100, 100, 40, 40), cam)
    assert few.depth.status is DepthStatus.TOO_FEW_VALID and not few.ok
    assert few.depth.valid_fraction == pytest.approx(3 / 400) and "only 3 of the box's central 400" in few.reason
    outside = locate_target(depth, Box(W + 10, 10, 30, 30), cam)
    assert outside.depth.status is DepthStatus.OUTSIDE_IMAGE and "outside the 640x480 depth image" in outside.reason
    assert locate_target(depth, Box(10, 10, 0, 5), cam).depth.status is DepthStatus.OUTSIDE_IMAGE


def test_box_partly_outside_uses_the_part_inside():
    depth = np.full((H, W), 2500, np.uint16)
    est = estimate_depth(depth, Box(-30, -20, 80, 60))  # central region 40 x 30, 30 x 25 of it inside
    assert est.ok and est.depth_m == 2.5 and est.num_pixels == 30 * 25


# -- robustness: background and occluders ---------------------------------------------------

def _baselines(depth: np.ndarray, box: Box) -> tuple[float, float]:
    """A plain mean and median of the valid depths over the whole box (metres)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box.as_xyxy())
    z = depth[y0:y1, x0:x1].astype(np.float64) / 1000.0
    z = z[z > 0]
    return float(z.mean()), float(np.median(z))


def _noisy(z_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Depth noise like a structured-light camera (sigma 1 mm + 1.5e-6 z^2)."""
    sigma = 1.0 + 1.5e-6 * z_mm ** 2
    return np.round(z_mm + rng.normal(0, 1, z_mm.shape) * sigma).astype(np.uint16)


def test_target_in_front_of_a_receding_floor(rng):
    """A thin target (a cross) covering 44 % of its box in front of a floor whose depth recedes
    across the box: background is most of the box, so mean and median land behind the target."""
    v = np.arange(H, dtype=np.float64)[:, None] * np.ones((1, W))
    z = 6000.0 - 6.0 * v  # floor: 6 m at the top row, 3.1 m at the bottom
    box = Box(200, 150, 120, 120)
    cross = np.zeros((H, W), bool)
    cross[150:270, 245:275] = True
    cross[195:225, 200:320] = True
    z[cross] = 2200.0
    depth = _noisy(z, rng)
    est = estimate_depth(depth, box)
    mean, median = _baselines(depth, box)
    assert abs(est.depth_m - 2.2) < 0.01, est
    assert abs(mean - 2.2) > 0.4 and abs(median - 2.2) > 0.4
    assert est.spread_m < 0.02 and 0.3 < est.cluster_fraction < 1.0


def test_target_behind_a_slanted_occluder(rng):
    """An occluder (a slanted board, depths spread from 0.9 to 1.5 m) covers the left 55 % of the
    box's central region; the flat target at 2.4 m is the largest single cluster."""
    box = Box(200, 150, 160, 120)
    z = np.full((H, W), 4500.0)
    z[150:270, 200:360] = 2400.0
    cols = np.arange(W, dtype=np.float64)
    occluder = np.zeros((H, W), bool)
    occluder[:, 200:284] = True  # central region spans columns 240..319: 44 of 80 columns covered
    z[occluder] = np.broadcast_to(900.0 + (cols - 200) * 7.2, (H, W))[occluder]
    depth = _noisy(z, rng)
    est = estimate_depth(depth, box)
    rows, cols_ = slice(180, 240), slice(240, 320)
    plain = depth[rows, cols_].astype(np.float64) / 1000.0
    assert abs(est.depth_m - 2.4) < 0.01, est
    assert abs(plain.mean() - 2.4) > 0.4 and abs(float(np.median(plain)) - 2.4) > 0.4  # central region too
    mean, median = _baselines(depth, box)
    assert abs(mean - 2.4) > 0.4 and abs(median - 2.4) > 0.2


def test_cluster_spans_the_targets_own_relief(rng):
    """A bulging target (centre 60 mm nearer than its rim) is one cluster: the estimate is inside
    its relief and the spread reports it."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    r = np.hypot(xx - 300, yy - 240) / 60.0
    z = np.full((H, W), 5000.0)
    inside = r < 1
    z[inside] = 2000.0 - 60.0 * np.sqrt(1 - r[inside])
    depth = _noisy(z, rng)
    est = estimate_depth(depth, Box(240, 180, 120, 120))
    assert 1.94 < est.depth_m < 2.0 and 0.005 < est.spread_m < 0.04 and est.cluster_fraction > 0.95


def test_holes_in_the_target_are_skipped(rng):
    depth = np.full((H, W), 4000, np.uint16)
    depth[200:280, 280:360] = 1800
    depth[200:280:2, 280:360] = 0  # every second row lost (IR-absorbing stripes)
    est = estimate_depth(_noisy(depth.astype(np.float64), rng) * (depth > 0), Box(280, 200, 80, 80))
    assert est.ok and abs(est.depth_m - 1.8) < 0.005 and est.valid_fraction == pytest.approx(0.5)


def test_depth_config_is_validated():
    with pytest.raises(ValueError, match="core_fraction"):
        DepthConfig(core_fraction=0.0)
    with pytest.raises(ValueError, match="min_depth_m < max_depth_m"):
        DepthConfig(min_depth_m=5.0, max_depth_m=1.0)
    depth = np.full((H, W), 0.2, np.float32)
    est = estimate_depth(depth, Box(10, 10, 20, 20), DepthConfig(min_depth_m=0.3))
    assert est.status is DepthStatus.NO_VALID_DEPTH and "100 out of range" in est.reason


# -- over time: the prior keeps the target through an occluder ------------------------------

def _occlusion_frames(rng, covered_columns):
    """Target at 2.4 m filling the box, an occluder at 1.2 m covering the box's left columns."""
    box = Box(200, 150, 160, 120)
    frames = []
    for columns in covered_columns:
        z = np.full((H, W), 4500.0)
        z[150:270, 200:360] = 2400.0
        z[:, 200:200 + columns] = 1200.0
        frames.append(_noisy(z, rng))
    return box, frames


def test_prior_keeps_the_target_while_an_occluder_covers_most_of_the_centre(rng):
    # central columns are 240..319: 0, 30 %, 70 % and 85 % of them covered, then 100 %, then clear
    box, frames = _occlusion_frames(rng, [0, 64, 96, 108, 160, 0])
    cam = CameraIntrinsics.from_camera_info(camera_info())
    locator = TargetLocator()
    stamps = [i * 33_000_000 for i in range(len(frames))]
    points = [locator.locate(f, {"a": box}, cam, s)["a"] for f, s in zip(frames, stamps)]
    for point in points[:4]:  # 70 % and 85 % covered: without the prior the occluder would win
        assert point.ok and abs(point.position_m[2] - 2.4) < 0.01, point
    assert estimate_depth(frames[2], box).depth_m == pytest.approx(1.2, abs=0.01)  # no prior: occluder wins
    hidden = points[4]
    assert hidden.depth.status is DepthStatus.OCCLUDED and not hidden.ok
    assert "a surface at 1.20 m covers 100 %" in hidden.reason and "last at 2.40 m" in hidden.reason
    assert points[5].ok and abs(points[5].position_m[2] - 2.4) < 0.01  # back in view: prior still fresh
    # a stale prior is dropped: the fully covered frame 2 s later is the occluder's depth
    late = locator.locate(frames[4], {"a": box}, cam, stamps[5] + 2_000_000_000)["a"]
    assert late.ok and abs(late.position_m[2] - 1.2) < 0.01
    locator.forget("a")
    assert locator.prior("a", stamps[5]) is None


def test_prior_follows_a_target_moving_in_depth_and_lets_go_of_a_vanished_one(rng):
    depth = np.full((H, W), 5000.0)
    depth[150:270, 200:360] = 2400.0
    box = Box(200, 150, 160, 120)
    moved = estimate_depth(_noisy(depth * 1.1, rng), box, prior_depth_m=2.4)  # 10 % farther: same target
    assert moved.ok and abs(moved.depth_m - 2.64) < 0.01
    gone = np.full((H, W), 5000.0)  # the box now holds only background, farther than the prior
    assert estimate_depth(_noisy(gone, rng), box, prior_depth_m=2.4).depth_m == pytest.approx(5.0, abs=0.03)


def test_a_ring_is_measured_on_the_ring_not_through_its_hole(rng):
    """The central region of a ring sees the wall behind it; the wall also surrounds the box, and
    the ring is the nearer cluster the surround lacks, so the ring's depth is taken from the box."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    r = np.hypot(xx - 320, yy - 240)
    z = 4000.0 + 0.3 * (xx - 320)  # a slightly slanted wall
    z[(r >= 28) & (r < 40)] = 2000.0
    depth = _noisy(z, rng)
    box = Box(280, 200, 80, 80)
    est = estimate_depth(depth, box)
    assert est.ok and est.region == "box" and abs(est.depth_m - 2.0) < 0.01, est
    plain = estimate_depth(depth, box, DepthConfig(hollow_targets=False))
    assert plain.region == "centre" and abs(plain.depth_m - 4.0) < 0.05
    # a board reaching in from the left, covering more of the box than the ring, is in the
    # surround as well: not taken for the target
    boarded = z.copy()
    boarded[:, :312] = 1000.0
    with_board = estimate_depth(_noisy(boarded, rng), box)
    assert with_board.region == "box" and abs(with_board.depth_m - 2.0) < 0.01, with_board
    # a solid disc of the same size stays a centre measurement
    z[r < 40] = 2000.0
    solid = estimate_depth(_noisy(z, rng), box)
    assert solid.region == "centre" and abs(solid.depth_m - 2.0) < 0.01

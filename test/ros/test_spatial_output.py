"""The node's 3D output (ros/spatial_output.py) with real sensor_msgs/CameraInfo messages: the point
in the image's optical frame, and a reason (never a point) for every bad input of issue 19."""
import math

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from utptrack_ros.ros.spatial_output import HAVE_MARKER, SpatialOutput, marker_msg, point_msg
from utptrack_ros.types import Box

W, H, FX, FY, CX, CY = 64, 48, 50.0, 60.0, 40.0, 20.0
STAMP = 5_000_000_000


def info(width=W, height=H, fx=FX, stamp_ns=STAMP, d=(), model=""):
    msg = CameraInfo()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.width, msg.height = width, height
    msg.k = [fx, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    msg.d, msg.distortion_model = list(d), model
    return msg


BOX = Box(20.0, 10.0, 10.0, 8.0)  # centre (25, 14) -> pixel (24.5, 13.5)


def depth_mm(z_m=2.0):
    return np.full((H, W), int(z_m * 1000), np.uint16)


def test_point_is_back_projected_in_the_optical_frame_with_the_principal_point_and_units():
    out = SpatialOutput()
    assert out.on_camera_info(info()) == ""
    r = out.locate("a", BOX, (W, H), STAMP, depth_mm(2.0))
    assert r.ok and r.reason == ""
    x, y, z = r.point.position_m
    assert z == pytest.approx(2.0, abs=0.01)  # millimetres read as millimetres
    assert x == pytest.approx((24.5 - CX) / FX * z, abs=1e-3)  # left of the principal point: negative x
    assert y == pytest.approx((13.5 - CY) / FY * z, abs=1e-3)  # above it: negative y (y down)
    header = Header(frame_id="cam_color_optical_frame")
    header.stamp.sec = 5
    p = point_msg(header, r.point)
    assert p.header.frame_id == "cam_color_optical_frame" and p.header.stamp.sec == 5
    assert (p.point.x, p.point.y, p.point.z) == pytest.approx(r.point.position_m)
    if HAVE_MARKER:
        m = marker_msg(header, r.point, "a")
        assert m.header.frame_id == header.frame_id and m.pose.position.z == pytest.approx(z)


def test_float_metres_depth_gives_the_same_point():
    out = SpatialOutput()
    out.on_camera_info(info())
    a = out.locate("a", BOX, (W, H), STAMP, depth_mm(2.0)).point.position_m
    b = out.locate("b", BOX, (W, H), STAMP, np.full((H, W), 2.0, np.float32)).point.position_m
    assert a == pytest.approx(b, abs=1e-3)


def test_distortion_moves_the_point():
    plain, distorted = SpatialOutput(), SpatialOutput()
    plain.on_camera_info(info())
    distorted.on_camera_info(info(d=(-0.3, 0.1, 0.0, 0.0, 0.0), model="plumb_bob"))
    a = plain.locate("a", BOX, (W, H), STAMP, depth_mm()).point.position_m
    b = distorted.locate("a", BOX, (W, H), STAMP, depth_mm()).point.position_m
    assert abs(a[0] - b[0]) > 1e-3


@pytest.mark.parametrize("bad, words", [
    (dict(fx=0.0), "K"), (dict(fx=math.nan), "K"), (dict(width=0), "no image size")])
def test_bad_intrinsics_give_a_reason_and_no_point(bad, words):
    out = SpatialOutput()
    out.on_camera_info(info())
    error = out.on_camera_info(info(**bad))
    assert error and words in error
    r = out.locate("a", BOX, (W, H), STAMP, depth_mm())
    assert not r.ok and r.point is None and "camera_info refused" in r.reason  # the earlier valid one is not used


def test_camera_info_of_another_size_missing_or_stopped():
    out = SpatialOutput()
    r = out.locate("a", BOX, (W, H), STAMP, depth_mm())
    assert not r.ok and "no camera_info received" in r.reason and "no camera_info" in out.status()
    out.on_camera_info(info(width=2 * W, height=2 * H))
    r = out.locate("a", BOX, (W, H), STAMP, depth_mm())
    assert not r.ok and "does not belong to this image" in r.reason
    out.on_camera_info(info())
    r = out.locate("a", BOX, (W, H), STAMP + 3_000_000_000, depth_mm())
    assert not r.ok and "camera_info stopped" in r.reason


def test_no_valid_depth_or_another_encoding_gives_a_reason():
    out = SpatialOutput()
    out.on_camera_info(info())
    r = out.locate("a", BOX, (W, H), STAMP, np.zeros((H, W), np.uint16))
    assert not r.ok and r.point.position_m is None and r.reason
    r = out.locate("a", BOX, (W, H), STAMP, np.full((H, W), np.nan, np.float32))
    assert not r.ok and r.reason
    r = out.locate("a", BOX, (W, H), STAMP, np.zeros((H, W, 3), np.uint8))
    assert not r.ok and r.point is None and r.reason
    r = out.locate("a", BOX, (W, H), STAMP, None)
    assert not r.ok and "no depth frame" in r.reason

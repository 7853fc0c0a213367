"""The diagnostics snapshot builder and status rules (ros/diagnostics.py): pure, no rclpy."""
from __future__ import annotations

import numpy as np
import pytest

from utptrack_ros.ros import diagnostics as diag
from utptrack_ros.ros.inputs import SyncStatus
from utptrack_ros.ros.session import TargetSession
from utptrack_ros.types import Box, LayerTokens, TokenLedger, TrackResult, TrackState

S = 10**9
FACTS = dict(node_name="/n", lifecycle_state="active", active=True, active_since_ns=0, stale_s=2.0, modality="depth",
             slop_s=0.02)


def statuses(stats: diag.NodeStats, now_ns: int, **kw) -> tuple:
    return tuple(diag.build_statuses(diag.snapshot(stats, now_ns, **{**FACTS, **kw})))


def test_last_arrival_survives_the_rate_window():
    """A 24 s gap after 100 s of frames: "no RGB image for 24.0 s", not "since activation"."""
    stats = diag.NodeStats()
    for k in range(1000):
        stats.arrived(False, k * S // 10)
    now = 99_900_000_000 + 24 * S
    inp, _ = statuses(stats, now)
    assert stats.rates["rgb_hz"].rate(now) == 0.0  # the window emptied ...
    assert inp.level == diag.STALE and "no RGB image for 24.0 s" in inp.message  # ... the last arrival did not


def test_depth_validity_counts_zero_nan_and_inf_as_invalid():
    assert diag.depth_valid_fraction(np.full((4, 4), np.inf, np.float32)) == 0.0
    assert diag.depth_valid_fraction(np.array([[1.0, np.nan], [-np.inf, 0.0]], np.float32)) == 0.25
    assert diag.depth_valid_fraction(np.array([[0, 1000]], np.uint16)) == 0.5
    assert diag.depth_valid_fraction(None) is None


def test_late_frames_warn_with_the_fix_and_other_clocks_are_not_measured():
    stats = diag.NodeStats()
    for k in range(10):
        stats.arrived(False, 100 * S + k * S // 30)
        stats.stamped(100 * S + k * S // 30, 100 * S + k * S // 30 - int(2.7 * S))  # 2.7 s late
    inp, _ = statuses(stats, 100 * S + S // 3)
    assert inp.level == diag.WARN and "frames arrive 2.70 s after their stamps" in inp.message
    assert "fastdds_large_shm.xml" in inp.message and "camera driver AND the node" in inp.message
    values = dict(inp.values)
    assert values["input age p50 s"] == "2.700" and values["clock offset s"] == ""
    other = diag.NodeStats()
    other.arrived(False, 1_700_000_000 * S)
    other.stamped(1_700_000_000 * S, 1000 * S)  # a bag replayed without use_sim_time
    inp, _ = statuses(other, 1_700_000_000 * S)
    assert inp.level == diag.OK and dict(inp.values)["input age p50 s"] == ""
    assert float(dict(inp.values)["clock offset s"]) > 1e9


def test_failing_frames_warn_then_a_streak_is_an_error_and_one_success_clears_it():
    stats = diag.NodeStats()
    stats.arrived(False, S)
    stats.frame_failed("frame 1 failed (InputError): crop too large")
    _, trk = statuses(stats, S)
    assert trk.level == diag.WARN and "1 frames failed: frame 1 failed" in trk.message
    for _ in range(diag.ERROR_STREAK):
        stats.frame_failed("frame 2 failed (InputError): crop too large")
    _, trk = statuses(stats, S)
    assert trk.level == diag.ERROR and f"{diag.ERROR_STREAK + 1} frames in a row failed" in trk.message
    stats.frame_done(S, {"latency": 5.0})
    statuses(stats, S)  # the period that saw the failures
    _, trk = statuses(stats, S)
    assert trk.level == diag.OK and trk.message == "idle"


def test_sync_status_session_jumps_and_preparation_are_reported():
    stats = diag.NodeStats()
    stats.arrived(False, S)
    sync = SyncStatus(counters={"matched": 0, "time_jumps": 1}, silent_fallback=False, mismatch_fallback=True,
                      mismatch_s=3.5, offset_ns=500_000_000, last_aux_arrival_ns=S)
    session = TargetSession(prompt="cup")
    inp, trk = statuses(stats, S, sync=sync, session=session, last_jump="RGB stamps jumped back 60.000 s")
    assert inp.level == diag.WARN
    assert "depth stamps are +0.500 s from the RGB stamps, beyond sync.slop_s=0.02" in inp.message
    assert "RGB stamps jumped back 60.000 s" in inp.message
    assert dict(inp.values)["aux offset s"] == "0.500" and dict(inp.values)["aux fallback"] == "True"
    assert dict(trk.values)["prompt"] == "cup"
    _, trk = statuses(stats, S, active=False, lifecycle_state="configuring",
                      preparing="exporting onnxruntime graphs (12.0 s)")
    assert trk.level == diag.OK and trk.message == "configuring: exporting onnxruntime graphs (12.0 s)"


def test_several_targets_are_listed_and_a_lost_one_is_named():
    def result(state, confidence):
        ledger = TokenLedger(LayerTokens(-1, 4, 1, 1), ())
        return TrackResult(Box(1, 2, 3, 4), confidence, state, 3, ledger, Box(0, 0, 8, 8), np.ones((2, 2), bool))

    session = TargetSession()
    session.start("cup", 0, result(TrackState.TRACKING, 0.8))
    session.start("ball", 0, result(TrackState.TRACKING, 0.7))
    _, trk = statuses(diag.NodeStats(), S, session=session)
    assert trk.level == diag.OK and trk.message == "tracking 2 targets"
    assert dict(trk.values)["targets"] == "cup: tracking 0.80, ball: tracking 0.70"
    session.record([1], [result(TrackState.LOST, 0.04)])
    _, trk = statuses(diag.NodeStats(), S, session=session)
    assert trk.level == diag.WARN and "lost: ball (0.04)" in trk.message and "cup" not in trk.message


@pytest.mark.parametrize("error", ["configure failed (ModuleNotFoundError): No module named 'timm'"])
def test_a_failed_transition_is_an_error(error):
    _, trk = statuses(diag.NodeStats(), S, active=False, lifecycle_state="unconfigured", config_error=error)
    assert trk.level == diag.ERROR and trk.message == error

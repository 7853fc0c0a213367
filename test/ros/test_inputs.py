"""InputFrames: the synchroniser, init history and mailbox behind one lock, and the time-line
restarts it detects. Hand-stamped items, no rclpy."""
from __future__ import annotations

import pytest

from utptrack_ros.errors import InputError
from utptrack_ros.ros.inputs import JUMP_BACK_NS, InputFrames
from utptrack_ros.ros.sync import ApproximateSync, Stamped

MS = 1_000_000
S = 1_000_000_000


def frames(aux: bool = True, buffer: int = 5) -> InputFrames:
    f = InputFrames()
    f.start(ApproximateSync(20 * MS, 5, S, aux_enabled=aux, start_ns=1), buffer)
    return f


def test_pairs_go_to_the_mailbox_and_the_history_answers_by_stamp():
    f = frames()
    assert f.add("RGB", False, Stamped(100 * S, 1, "r"), 1) is None
    assert f.add("depth", True, Stamped(100 * S + 5 * MS, 2, "d"), 2) is None
    got = f.mailbox.take(timeout=0)
    assert got.rgb.payload == "r" and got.aux.payload == "d"
    assert f.find(100 * S, "image").payload == "r" and f.find(0, "image").payload == "r"
    assert f.nearest_aux(100 * S, 20 * MS).payload == "d"
    with pytest.raises(InputError, match=r"1 frames buffered, stamps 100.000000 .. 100.000000"):
        f.find(99 * S, "image")


def test_stamps_going_back_start_a_new_time_line():
    f = frames(aux=False)
    for k in range(3):
        f.add("RGB", False, Stamped(100 * S + k * 33 * MS, k, k), k)
    # reordered by a few ms: no new time line, nothing cleared
    assert f.add("RGB", False, Stamped(100 * S + 10 * MS, 3, 3), 3) is None
    assert f.find(100 * S, "image").payload == 0 and f.time_jumps == 0
    # a bag loop / driver restart: 60 s back
    jump = f.add("RGB", False, Stamped(40 * S, 4, "new"), 4)
    assert jump is not None and jump.from_ns == 100 * S + 66 * MS and jump.to_ns == 40 * S
    assert "jumped back 60.066 s" in jump.describe() and "tracking goes on" in jump.describe()
    assert f.time_jumps == 1 and f.last_jump == jump
    # the old frames are gone from the history; the new one is there; later frames are no jump
    with pytest.raises(InputError, match="1 frames buffered"):
        f.find(100 * S, "image")
    assert f.find(40 * S, "image").payload == "new"
    assert f.add("RGB", False, Stamped(40 * S + 33 * MS, 5), 5) is None
    assert f.status(6).counters["time_jumps"] == 1


def test_a_jump_on_one_stream_lets_the_other_follow_without_a_second_jump():
    f = frames()
    f.add("RGB", False, Stamped(100 * S, 1), 1)
    f.add("depth", True, Stamped(100 * S, 1), 1)
    assert f.add("RGB", False, Stamped(5 * S, 2), 2) is not None
    assert f.add("depth", True, Stamped(5 * S, 2), 2) is None  # the same new time line
    assert f.time_jumps == 1
    got = f.mailbox.take(timeout=0)
    assert got.stamp_ns == 5 * S and got.aux is not None
    assert JUMP_BACK_NS == S


def test_stopped_inputs_ignore_frames_and_close_the_mailbox():
    f = frames()
    f.stop()
    assert not f.open and f.mailbox.closed
    assert f.add("RGB", False, Stamped(1 * S, 1), 1) is None and f.status(1) is None
    with pytest.raises(InputError, match="no image received yet on 'image'"):
        f.find(0, "image")

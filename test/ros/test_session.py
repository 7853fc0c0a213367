"""The node's target session and the text checks behind it: pure, no rclpy."""
from __future__ import annotations

import numpy as np
import pytest

from utptrack_ros.errors import InputError
from utptrack_ros.ros.session import MAX_TARGET_ID_CHARS, TargetSession, clean_prompt, clean_target_id
from utptrack_ros.types import Box, LayerTokens, TokenLedger, TrackResult, TrackState


def result(state: TrackState = TrackState.TRACKING) -> TrackResult:
    ledger = TokenLedger(LayerTokens(-1, 4, 1, 1), ())
    return TrackResult(Box(1, 2, 3, 4), 0.9, state, 0, ledger, Box(0, 0, 8, 8), np.ones((2, 2), bool))


def test_ids_numbered_or_requested_and_each_target_gated_by_its_init_stamp():
    s = TargetSession(prompt="cup")
    assert not s.tracking and s.state is TrackState.IDLE and s.admitted(0) == []
    assert s.start(s.new_id(""), 100, result()) == "1" and s.tracking and s.state is TrackState.TRACKING
    assert s.admitted(100) == [] and s.admitted(101) == [0]
    s.record([0], [result(TrackState.LOST)])
    assert s.state is TrackState.LOST
    assert s.start(s.new_id("car"), 200, result()) == "car"
    assert s.ids == ["1", "car"] and s.admitted(150) == [0] and s.admitted(201) == [0, 1]
    assert s.start(s.new_id(""), 300, result(), replaces=0) == "2"  # requested ids do not use up numbers
    assert s.ids == ["car", "2"] and s.index("2") == 1 and s.index("1") is None
    s.stamps_restarted()  # stamps went backwards: the old init stamps gate nothing any more
    assert s.admitted(5) == [0, 1] and s.target_id == "car"
    assert s.drop("nobody") == [] and s.drop("car") == ["car"] and s.ids == ["2"]
    assert s.drop() == ["2"] and not s.tracking and s.state is TrackState.IDLE and s.prompt == "cup"
    assert s.drop() == []


def test_numbers_skip_ids_a_user_already_took():
    s = TargetSession()
    s.start(s.new_id("1"), 0, result())
    assert s.new_id("") == "2"


@pytest.mark.parametrize("bad, why", [("car\nERROR forged", "control characters"), ("a\x1b[31m", "control characters"),
                                      ("x" * (MAX_TARGET_ID_CHARS + 1), "at most")])
def test_target_ids_that_could_forge_logs_are_refused(bad, why):
    with pytest.raises(InputError, match=why):
        clean_target_id(bad)
    assert clean_target_id("person 3 (left)") == "person 3 (left)"


def test_prompts_lose_control_characters_and_extra_whitespace():
    assert clean_prompt("  red\n\tcup\x1b[0m ", 100) == "red cup [0m"
    with pytest.raises(InputError, match="at most 5"):
        clean_prompt("abcdef", 5)

"""Fixtures of the data tests (helpers live in data/datautils.py)."""
from __future__ import annotations

import pytest

from data.datautils import small_seq as _small_seq

from utptrack_ros.data import TrackingSequence


@pytest.fixture(scope="session")
def small_seq() -> TrackingSequence:
    """Every modality, distractors (so a prompt) and an out-of-view stretch (absent frames)."""
    return _small_seq()

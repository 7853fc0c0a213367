"""Tracking sequences: the in-memory ``TrackingSequence`` view, folder and rosbag2 readers/writers, and
the synthetic multimodal sequence generator (docs/architecture.md "Sequences", docs/data.md).

Imports no ROS package: bags are read and written with ``rosbags``.
"""
from __future__ import annotations

from .bag import BagTopics, load_bag, write_bag
from .errors import (
                     FrameCountError,
                     MissingTopicError,
                     SequenceError,
                     SequenceFormatError,
                     SourceLibraryError,
                     UnsupportedMessageError,
)
from .folder import load_folder, write_folder
from .generator import generate, generate_many
from .sequence import ArrayFrames, FrameSource, SequenceFrame, TrackingSequence
from .spec import GENERATOR_VERSION, SPLITS, Challenge, SequenceSpec, random_challenges, spec_for, split_of

__all__ = [
    "ArrayFrames", "BagTopics", "Challenge", "FrameCountError", "FrameSource", "GENERATOR_VERSION",
    "MissingTopicError", "SPLITS", "SequenceError", "SequenceFormatError", "SequenceFrame", "SequenceSpec",
    "TrackingSequence",
    "SourceLibraryError", "UnsupportedMessageError", "generate", "generate_many", "load_bag", "load_folder",
    "random_challenges", "spec_for", "split_of", "write_bag", "write_folder",
]

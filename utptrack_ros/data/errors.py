"""Errors raised by ``utptrack_ros.data`` (sequence folders, bags, image sources).

Each message names the file, topic or field that is wrong and what was expected.
"""
from __future__ import annotations

from ..errors import InputError, UTPTrackError


class SequenceError(InputError):
    """A sequence folder or bag cannot be used."""


class SequenceFormatError(SequenceError):
    """A file or message is missing, corrupt or malformed (names the file or topic)."""


class FrameCountError(SequenceFormatError):
    """Two parts of one sequence disagree on the number of frames (e.g. groundtruth.txt vs color/)."""


class MissingTopicError(SequenceError):
    """A bag lacks a topic that was asked for (the message lists the topics the bag has)."""


class UnsupportedMessageError(SequenceError):
    """A bag topic carries a message type or image encoding this reader cannot decode."""


class SourceLibraryError(UTPTrackError):
    """The curated image sources (``utptrack_ros/data/sources``) are missing or unreadable."""

"""Exceptions raised by the framework-free core.

Only the ROS layer (``utptrack_ros.ros``) and the CLI catch these; the core raises them with a
message that says what was expected and what arrived.
"""
from __future__ import annotations


class UTPTrackError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(UTPTrackError, ValueError):
    """A configuration value or mapping is invalid (unknown key, out-of-range value...)."""


class InputError(UTPTrackError, ValueError):
    """An image, box, auxiliary frame or prompt handed to the core is unusable."""


class CheckpointError(UTPTrackError):
    """A weights file cannot be read or does not match the model (names the keys)."""


class NotInitializedError(UTPTrackError, RuntimeError):
    """``Tracker.track`` was called before ``Tracker.init``."""

"""The tracked target as the node sees it: its id, the stamp of the frame it was initialised on,
the language prompt and the last result. Pure Python (no rclpy); the node guards it with its
tracker lock.

Text that reaches logs and ``/diagnostics`` is checked here: a target id is refused when it has
control characters (a newline would forge log lines) or is too long; prompts have control
characters turned into spaces and whitespace collapsed.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Optional

from ..errors import InputError
from ..types import TrackResult, TrackState

__all__ = ["TargetSession", "clean_target_id", "clean_prompt", "MAX_TARGET_ID_CHARS"]

MAX_TARGET_ID_CHARS = 64


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def clean_target_id(text: str) -> str:
    """``text`` as a target id; raises InputError when it has control characters or is too long."""
    if _has_control(text):
        raise InputError(f"target_id {text!r} has control characters (newline, tab, escape...); use printable text")
    if len(text) > MAX_TARGET_ID_CHARS:
        raise InputError(f"target_id has {len(text)} characters; at most {MAX_TARGET_ID_CHARS}")
    return text


def clean_prompt(text: str, limit: int) -> str:
    """``text`` with control characters as spaces and whitespace collapsed; raises InputError
    when longer than ``limit`` characters."""
    text = " ".join("".join(" " if _has_control(c) else c for c in text).split())
    if len(text) > limit:
        raise InputError(f"prompt has {len(text)} characters; at most {limit} (input.max_prompt_chars)")
    return text


@dataclass
class TargetSession:
    """One target at a time: started by ``~/init_target``, dropped by ``~/reset`` or deactivation."""

    prompt: str = ""
    target_id: str = ""
    init_stamp_ns: int = -1  # frames stamped at or before it were queued before the init
    last: Optional[TrackResult] = None
    _next_id: int = field(default=1, repr=False)

    @property
    def tracking(self) -> bool:
        return bool(self.target_id)

    @property
    def state(self) -> TrackState:
        return self.last.state if self.tracking and self.last is not None else TrackState.IDLE

    def start(self, requested_id: str, stamp_ns: int, result: TrackResult) -> str:
        """A target initialised on the frame stamped ``stamp_ns``; returns its id:
        ``requested_id`` (checked with :func:`clean_target_id` before the init) or the next number."""
        target_id = requested_id or str(self._next_id)
        if not requested_id:
            self._next_id += 1
        self.target_id, self.init_stamp_ns, self.last = target_id, stamp_ns, result
        return target_id

    def admits(self, stamp_ns: int) -> bool:
        """Whether a frame stamped ``stamp_ns`` comes after the init frame (older ones were
        already in the mailbox when the target started: tracking them would go backwards)."""
        return stamp_ns > self.init_stamp_ns

    def record(self, result: TrackResult) -> None:
        self.last = result

    def stamps_restarted(self) -> None:
        """Stamps went backwards (driver restart, looping bag, sim-time reset): the init stamp
        means nothing on the new time line, so every new frame is admitted."""
        self.init_stamp_ns = -1

    def drop(self) -> str:
        """Forget the target (the prompt stays); returns the id it had ("" if none)."""
        had = self.target_id
        self.target_id, self.init_stamp_ns, self.last = "", -1, None
        return had

"""The tracked targets as the node sees them: each one's id, the stamp of the frame it was
initialised on and its last result, in the tracker's batch order; the session's language prompt.
Pure Python (no rclpy); the node guards it with its tracker lock.

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

__all__ = ["Target", "TargetSession", "clean_target_id", "clean_prompt", "MAX_TARGET_ID_CHARS"]

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
class Target:
    """One tracked target: its id, the stamp of the frame it started on, its last result."""

    target_id: str
    init_stamp_ns: int  # frames stamped at or before it were queued before its init
    last: Optional[TrackResult] = None

    @property
    def state(self) -> TrackState:
        return self.last.state if self.last is not None else TrackState.IDLE

    def admits(self, stamp_ns: int) -> bool:
        """Whether a frame stamped ``stamp_ns`` comes after this target's init frame (older ones
        were already in the mailbox when it started: tracking them would go backwards)."""
        return stamp_ns > self.init_stamp_ns


@dataclass
class TargetSession:
    """The node's targets, in the tracker's batch order: started by ``~/init_target``, dropped by
    ``~/drop_target``, ``~/reset`` or deactivation; the language prompt of the session."""

    prompt: str = ""
    targets: list[Target] = field(default_factory=list)
    _next_id: int = field(default=1, repr=False)

    @property
    def tracking(self) -> bool:
        return bool(self.targets)

    @property
    def ids(self) -> list[str]:
        return [t.target_id for t in self.targets]

    @property
    def target_id(self) -> str:
        """The first (oldest) target's id ("" without targets)."""
        return self.targets[0].target_id if self.targets else ""

    @property
    def state(self) -> TrackState:
        """The first target's state (IDLE without targets)."""
        return self.targets[0].state if self.targets else TrackState.IDLE

    @property
    def last(self) -> Optional[TrackResult]:
        """The first target's last result."""
        return self.targets[0].last if self.targets else None

    def index(self, target_id: str) -> Optional[int]:
        """The batch index of ``target_id`` (None when not tracked)."""
        return next((i for i, t in enumerate(self.targets) if t.target_id == target_id), None)

    def new_id(self, requested_id: str) -> str:
        """``requested_id`` (checked with :func:`clean_target_id` before) or the next free number."""
        if requested_id:
            return requested_id
        while str(self._next_id) in self.ids:
            self._next_id += 1
        self._next_id += 1
        return str(self._next_id - 1)

    def start(self, target_id: str, stamp_ns: int, result: TrackResult, replaces: Optional[int] = None) -> str:
        """Target ``target_id`` (from :meth:`new_id`) started on the frame stamped ``stamp_ns``; it
        joins the end of the batch, as in ``MultiTracker.add``; ``replaces``: the index of the
        target it replaces (removed from the batch). Returns its id."""
        if replaces is not None:
            del self.targets[replaces]
        self.targets.append(Target(target_id, stamp_ns, result))
        return target_id

    def admitted(self, stamp_ns: int) -> list[int]:
        """Indices of the targets a frame stamped ``stamp_ns`` is for (:meth:`Target.admits`)."""
        return [i for i, t in enumerate(self.targets) if t.admits(stamp_ns)]

    def record(self, indices: list[int], results: list[TrackResult]) -> None:
        for i, result in zip(indices, results):
            self.targets[i].last = result

    def stamps_restarted(self) -> None:
        """Stamps went backwards (driver restart, looping bag, sim-time reset): the init stamps
        mean nothing on the new time line, so every new frame is admitted."""
        for t in self.targets:
            t.init_stamp_ns = -1

    def drop(self, target_id: Optional[str] = None) -> list[str]:
        """Forget ``target_id`` (every target with None; the prompt stays); returns the ids dropped."""
        if target_id is None:
            had, self.targets = self.ids, []
            return had
        index = self.index(target_id)
        if index is None:
            return []
        del self.targets[index]
        return [target_id]

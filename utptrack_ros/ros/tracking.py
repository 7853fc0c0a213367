"""The running Tracker and the target session behind one lock: what the worker (frames), the
init service, the prompt topic and reset share. Pure Python over the core Tracker (no rclpy);
the node only feeds it and publishes what it returns.

Policies that live here:

* a frame stamped at or before the init frame is skipped (it was queued before the target
  started; tracking it would go backwards), until stamps restart on a new time line;
* an unusable aux frame (another size than RGB, ...) does not lose the target: the frame is
  tracked, or the target initialised, RGB-only, with a note saying why;
* a prompt is encoded *outside* the lock (milliseconds with the encoder loaded at activation)
  and swapped in under it, so tracking never waits for the text encoder.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from ..types import Modality, TrackResult
from .session import TargetSession, clean_target_id

__all__ = ["Tracking", "Tracked"]


@dataclass(frozen=True)
class Tracked:
    """One frame's outcome: ``result`` None = no target (IDLE); ``note`` says why it ran RGB-only."""

    result: Optional[TrackResult]
    target_id: str
    aux_fallback: bool
    note: str = ""


class Tracking:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.session = TargetSession()
        self.tracker: Any = None  # utptrack_ros.tracker.Tracker while active
        self.modality = Modality.RGB
        self._features: Any = None  # the session prompt's text feature

    def start(self, tracker: Any, modality: Modality) -> None:
        """Activation: track with ``tracker`` (no target yet)."""
        features = tracker.encode_prompt(self.session.prompt) if self.session.prompt else None
        with self._lock:
            self.tracker, self.modality, self._features = tracker, modality, features
            self.session.drop()

    def stop(self) -> Any:
        """Deactivation: drop the target and the tracker (returned, to free its device)."""
        with self._lock:
            tracker, self.tracker = self.tracker, None
            self.session.drop()
        return tracker

    def track(self, stamp_ns: int, rgb: np.ndarray, aux: Optional[np.ndarray]) -> Optional[Tracked]:
        """The next frame; None when it is skipped (inactive, or stamped before the init frame)."""
        fallback, note = self.modality is not Modality.RGB and aux is None, ""
        with self._lock:
            if self.tracker is None:
                return None
            if not self.tracker.initialized:
                return Tracked(None, "", fallback)
            if not self.session.admits(stamp_ns):
                return None
            try:
                result = self.tracker.track(rgb, aux)
            except InputError as err:  # the aux frame's fault only if RGB-only succeeds
                if aux is None:
                    raise
                result, fallback = self.tracker.track(rgb, None), True
                note = f"{self.modality.value} frame unusable ({err}); this frame tracked RGB-only"
            self.session.record(result)
            return Tracked(result, self.session.target_id, fallback, note)

    def init(self, stamp_ns: int, rgb: np.ndarray, box: Any, aux: Optional[np.ndarray], requested_id: str,
             prompt: str) -> tuple[Tracked, list[str]]:
        """Start a target on the frame stamped ``stamp_ns``: its first result and notes for the
        answer. Raises InputError (the current target kept) when the request cannot start one."""
        requested_id = clean_target_id(requested_id)
        prompt = prompt or self.session.prompt
        tracker, features = self.tracker, self._features if prompt == self.session.prompt else None
        if tracker is None:
            raise InputError("the node is not active")
        if prompt and features is None:
            features = tracker.encode_prompt(prompt)
        with self._lock:
            if self.tracker is not tracker:
                raise InputError("the node was deactivated meanwhile")
            notes = []
            if aux is not None:
                try:
                    result = tracker.init(rgb, box, aux, self.modality, prompt or None, features)
                except InputError as err:
                    aux, notes = None, [f"{self.modality.value} frame unusable ({err}): initialised RGB-only"]
            elif self.modality is not Modality.RGB:
                notes = [f"no {self.modality.value} frame within slop of that image: initialised RGB-only"]
            if aux is None:
                result = tracker.init(rgb, box, None, self.modality, prompt or None, features)
            target_id = self.session.start(requested_id, stamp_ns, result)
        fallback = self.modality is not Modality.RGB and aux is None
        return Tracked(result, target_id, fallback, notes[0] if notes else ""), notes + ([f"prompt {prompt!r}"] if prompt else [])

    def set_prompt(self, text: str) -> None:
        """The session's prompt (blank = none), applied to the current target at once."""
        tracker = self.tracker
        features = tracker.encode_prompt(text) if tracker is not None and text else None
        with self._lock:
            self.session.prompt, self._features = text, features
            if self.tracker is not None and self.tracker.initialized:
                self.tracker.set_prompt(text or None, features=features)

    def reset(self) -> str:
        """Drop the target; returns the id it had ("" if none)."""
        with self._lock:
            if self.tracker is not None:
                self.tracker.reset()
            return self.session.drop()

    def stamps_restarted(self) -> None:
        with self._lock:
            self.session.stamps_restarted()

    def configure(self, config: Any, prune: Any) -> Optional[str]:
        """Live tracker settings; returns the backend the next frame runs on (None if inactive)."""
        with self._lock:
            if self.tracker is None:
                return None
            self.tracker.set_config(config)
            self.tracker.set_prune(prune)
            return self.tracker.backend

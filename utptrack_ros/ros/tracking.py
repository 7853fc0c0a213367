"""The running MultiTracker and the target session behind one lock: what the worker (frames), the
init and drop services, the prompt topic and reset share. Pure Python over the core Tracker (no rclpy);
the node only feeds it and publishes what it returns.

Policies that live here:

* a frame stamped at or before a target's init frame is not tracked for that target (it was
  queued before the target started; tracking it would go backwards), until stamps restart on a
  new time line; the other targets track it;
* ``~/init_target`` with the id of a tracked target restarts it; with another id it adds a
  target, up to ``input.max_targets`` (with 1, the new target replaces the old one);
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
    """One frame's outcome: ``results`` one ``(target_id, TrackResult)`` per target tracked on it
    (empty = no target: IDLE); ``note`` says why it ran RGB-only."""

    results: list[tuple[str, TrackResult]]
    aux_fallback: bool
    note: str = ""

    @property
    def result(self) -> Optional[TrackResult]:
        """The first target's result (None without targets)."""
        return self.results[0][1] if self.results else None

    @property
    def target_id(self) -> str:
        return self.results[0][0] if self.results else ""


class Tracking:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.session = TargetSession()
        self.tracker: Any = None  # utptrack_ros.tracker.MultiTracker while active
        self.modality = Modality.RGB
        self.max_targets = 1
        self._features: Any = None  # the session prompt's text feature

    def start(self, tracker: Any, modality: Modality, max_targets: int = 1) -> None:
        """Activation: track with ``tracker`` (no target yet), at most ``max_targets`` at once."""
        features = tracker.encode_prompt(self.session.prompt) if self.session.prompt else None
        with self._lock:
            self.tracker, self.modality, self._features, self.max_targets = tracker, modality, features, max_targets
            tracker.reset()
            self.session.drop()

    def stop(self) -> Any:
        """Deactivation: drop the targets and the tracker (returned, to free its device)."""
        with self._lock:
            tracker, self.tracker = self.tracker, None
            self.session.drop()
        return tracker

    def track(self, stamp_ns: int, rgb: np.ndarray, aux: Optional[np.ndarray]) -> Optional[Tracked]:
        """The next frame, every target in one batched forward; None when it is skipped (inactive,
        or stamped before every target's init frame). A target initialised on a later frame
        than this one sits this frame out."""
        fallback, note = self.modality is not Modality.RGB and aux is None, ""
        with self._lock:
            if self.tracker is None:
                return None
            if not self.tracker.initialized:
                return Tracked([], fallback)
            indices = self.session.admitted(stamp_ns)
            if not indices:
                return None
            subset = indices if len(indices) < self.tracker.num_targets else None
            try:
                results = self.tracker.track(rgb, aux, subset)
            except InputError as err:  # the aux frame's fault only if RGB-only succeeds
                if aux is None:
                    raise
                results, fallback = self.tracker.track(rgb, None, subset), True
                note = f"{self.modality.value} frame unusable ({err}); this frame tracked RGB-only"
            self.session.record(indices, results)
            ids = self.session.ids
            return Tracked([(ids[i], r) for i, r in zip(indices, results)], fallback, note)

    def init(self, stamp_ns: int, rgb: np.ndarray, box: Any, aux: Optional[np.ndarray], requested_id: str,
             prompt: str) -> tuple[Tracked, list[str]]:
        """Start a target on the frame stamped ``stamp_ns``: its first result and notes for the
        answer. A ``requested_id`` being tracked restarts that target; another id joins the others
        (with ``max_targets`` 1 it replaces the one target). Raises InputError (every current
        target kept) when the request cannot start one."""
        requested_id = clean_target_id(requested_id)
        prompt = prompt or self.session.prompt
        tracker, features = self.tracker, self._features if prompt == self.session.prompt else None
        if tracker is None:
            raise InputError("the node is not active")
        if prompt and features is None:
            features = tracker.encode_prompt(prompt)
        known = {prompt: features} if prompt and features is not None else None
        with self._lock:
            if self.tracker is not tracker:
                raise InputError("the node was deactivated meanwhile")
            replaces = self.session.index(requested_id) if requested_id else None
            if replaces is None and len(self.session.targets) >= self.max_targets:
                if self.max_targets > 1:
                    raise InputError(f"already tracking {len(self.session.targets)} targets ({', '.join(self.session.ids)}; "
                                     f"input.max_targets={self.max_targets}): drop one with ~/drop_target, or "
                                     "re-initialise one by its target_id")
                replaces = 0
            notes = []
            if aux is not None:
                try:
                    result = tracker.add(rgb, [box], aux, [prompt or None], known, self.modality)[0]
                except InputError as err:
                    aux, notes = None, [f"{self.modality.value} frame unusable ({err}): initialised RGB-only"]
            elif self.modality is not Modality.RGB:
                notes = [f"no {self.modality.value} frame within slop of that image: initialised RGB-only"]
            if aux is None:
                result = tracker.add(rgb, [box], None, [prompt or None], known, self.modality)[0]
            if replaces is not None:
                tracker.remove([replaces])
            target_id = self.session.start(self.session.new_id(requested_id), stamp_ns, result, replaces)
        fallback = self.modality is not Modality.RGB and aux is None
        return Tracked([(target_id, result)], fallback, notes[0] if notes else ""), notes + ([f"prompt {prompt!r}"] if prompt else [])

    def set_prompt(self, text: str) -> None:
        """The session's prompt (blank = none), applied to every current target at once."""
        tracker = self.tracker
        features = tracker.encode_prompt(text) if tracker is not None and text else None
        with self._lock:
            self.session.prompt, self._features = text, features
            if self.tracker is not None and self.tracker.initialized:
                self.tracker.set_prompt(text or None, features=features)  # every target

    def drop(self, target_id: Optional[str] = None) -> list[str]:
        """Drop ``target_id`` (every target with None); returns the ids dropped ([] if none matched)."""
        with self._lock:
            if target_id is None:
                if self.tracker is not None:
                    self.tracker.reset()
                return self.session.drop()
            index = self.session.index(target_id)
            if index is None:
                return []
            if self.tracker is not None and self.tracker.initialized:
                self.tracker.remove([index])
            return self.session.drop(target_id)

    def stamps_restarted(self) -> None:
        with self._lock:
            self.session.stamps_restarted()

    def configure(self, config: Any, prune: Any = None) -> Optional[str]:
        """Live tracker settings and keep ratios (None: unchanged); returns the backend the next
        frame runs on (None if inactive)."""
        with self._lock:
            if self.tracker is None:
                return None
            self.tracker.set_config(config)
            if prune is not None:
                self.tracker.set_prune(prune)
            return self.tracker.backend

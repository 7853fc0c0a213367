"""What the node publishes per frame: ``~/target`` (one message per target), ``~/targets`` (all of
a frame's targets in one message), ``~/debug_image``, ``~/detections`` and the 3D output.

Lifecycle publishers, created at configure (:class:`Outputs`) and destroyed at cleanup:
``~/target`` and ``~/targets`` always; ``~/debug_image`` with ``output.debug_image`` (only while someone
subscribes); ``~/detections`` where vision_msgs is installed; ``~/target_point`` and
``~/target_marker`` for the depth modality (spatial_output.py). Every message carries the input
image's header (stamp and frame id copied, never re-stamped).
"""
from __future__ import annotations

from typing import Any, Optional

from sensor_msgs.msg import Image
from utptrack_ros.msg import TrackedTarget, TrackedTargets

from ..sensors import fill_image
from ..types import Modality
from . import messages
from .spatial_output import DISABLED, SpatialTopics, fill_position

__all__ = ["Outputs"]


class Outputs:
    """The output publishers of one configuration (module docstring)."""

    def __init__(self, node: Any, settings: Any) -> None:
        self.modality = settings.modality.value
        self.target = node.create_lifecycle_publisher(TrackedTarget, "~/target", 10)
        self.targets = node.create_lifecycle_publisher(TrackedTargets, "~/targets", 10)
        self.debug = node.create_lifecycle_publisher(Image, "~/debug_image", 2) if settings.output.debug_image else None
        self.detections = (node.create_lifecycle_publisher(messages.Detection2DArray, "~/detections", 10)
                           if messages.HAVE_VISION_MSGS else None)
        self.spatial = SpatialTopics(node) if settings.modality is Modality.DEPTH else None

    def publish_init(self, result: Any, header: Any, stamp_ns: int, depth: Any, target_id: str, size: tuple[int, int],
                     aux_fallback: bool, primary: bool) -> tuple[str, str]:
        """A new target's init-frame result on ``~/target``, at once (latency 0), with its 3D output
        (``primary``: it is the first target, whose point goes on ``~/target_point``); returns the
        3D output's ``(kind, text)`` as :meth:`publish_frame` does."""
        msg = messages.target_msg(TrackedTarget(), result, header, target_id, size, self.modality, aux_fallback, 0.0)
        self.forget_target(target_id)  # a restarted target's depth is no prior for the new box
        kind, text = self._position(msg, header, stamp_ns, target_id, result, size, depth, primary)
        self.target.publish(msg)
        return kind, text

    def forget_target(self, target_id: Optional[str] = None) -> None:
        """A target was dropped or restarted (every target with None: ``~/reset``)."""
        if self.spatial is not None:
            self.spatial.forget(target_id)

    def publish_frame(self, frame: Any, stamp_ns: int, depth: Any, out: Any, latency_ms: float
                      ) -> tuple[list[Any], tuple[str, str]]:
        """One tracked frame: a ``~/target`` message per target (an IDLE one without targets), all
        of them in one ``~/targets`` message, and the 3D output (``out``: tracking.py's output,
        ``frame``: inputs.Frame). Returns the ``~/target`` messages and the 3D output's
        ``(kind, text)`` (:meth:`SpatialTopics.publish`; the first target's that is not ``("", "")``)."""
        size = (frame.array.shape[1], frame.array.shape[0])
        batch = TrackedTargets(header=frame.header)
        if not out.results:
            self.target.publish(messages.idle_msg(TrackedTarget(), frame.header, size, self.modality, latency_ms))
            self.targets.publish(batch)
            return [], ("", "")
        outcome = ("", "")
        for index, (target_id, result) in enumerate(out.results):
            msg = messages.target_msg(TrackedTarget(), result, frame.header, target_id, size, self.modality,
                                      out.aux_fallback, latency_ms)
            kind, text = self._position(msg, frame.header, stamp_ns, target_id, result, size, depth, index == 0)
            if kind and not outcome[0]:
                outcome = (kind, text)
            self.target.publish(msg)
            batch.targets.append(msg)
        self.targets.publish(batch)
        return batch.targets, outcome

    def _position(self, msg: Any, header: Any, stamp_ns: int, target_id: str, result: Any, size: tuple[int, int],
                  depth: Any, primary: bool) -> tuple[str, str]:
        """``msg``'s 3D fields, with the point and marker published when there is one; the 3D
        output's ``(kind, text)`` (:meth:`SpatialTopics.publish`)."""
        spatial, kind, text = (self.spatial.publish(header, stamp_ns, target_id, result, size, depth, primary)
                               if self.spatial is not None else (DISABLED, "", ""))
        fill_position(msg, spatial)
        return kind, text

    def publish_extras(self, frame: Any, msgs: list[Any], out: Any) -> None:
        """The debug image (while subscribed) and ``~/detections`` of the ``~/target`` messages just published."""
        if self.debug is not None and self.debug.get_subscription_count() > 0:
            img = fill_image(Image(), messages.render_debug(frame.array, out.results), "rgb8")
            img.header = frame.header
            self.debug.publish(img)
        if self.detections is not None:
            self.detections.publish(messages.detection_array(frame.header, msgs))

    def destroy(self, node: Any) -> None:
        for pub in (self.target, self.targets, self.debug, self.detections):
            if pub is not None:
                node.destroy_lifecycle_publisher(pub)
        if self.spatial is not None:
            self.spatial.destroy(node)

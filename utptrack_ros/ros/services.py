"""The node's target services: ``~/init_target`` (start a target on a buffered frame),
``~/drop_target`` (stop one) and ``~/reset`` (stop all).

Both answer in every lifecycle state (a refusal says why: not active yet, what is being
prepared, the last transition failure) and never raise (guards.py: ``success=false`` with the
reason); a refused init keeps every current target. Called with the node as first argument.
"""
from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..types import Modality
from . import messages
from .guards import answers_errors
from .session import clean_prompt

__all__ = ["drop_target", "init_target", "reset"]


@answers_errors
def init_target(node: Any, request: Any, response: Any) -> Any:
    """Start the requested target on the buffered frame the request names (newest when unstamped):
    a new one, or the restart of the target with that id (tracking.py)."""
    response.success, response.target_id = False, node.tracking.session.target_id
    response.message = messages.init_refusal(node.lifecycle_state, node.tracking.tracker is not None,
                                             node.progress.describe(), node.config_error)
    if response.message:
        return response
    s = node.settings
    try:
        req = messages.init_request(request)
        item = node.inputs.find(req.stamp_ns, node.resolve_topic_name(node.image_topic(False)))
        frame = item.payload
        if req.frame_id and req.frame_id != frame.header.frame_id:
            raise InputError(f"header.frame_id {req.frame_id!r} differs from the image's {frame.header.frame_id!r}")
        aux = node.inputs.nearest_aux(item.stamp_ns, int(s.sync.slop_s * 1e9)) if s.modality is not Modality.RGB else None
        out, notes = node.tracking.init(item.stamp_ns, frame.array, req.box, aux.payload.array if aux else None,
                                        req.target_id, clean_prompt(req.prompt, s.input.max_prompt_chars))
    except InputError as err:
        response.message = f"refused: {err}"
        node.get_logger().warning(f"init_target {response.message}")
        return response
    kind, text = node.outputs.publish_init(out.result, frame.header, item.stamp_ns, aux.payload.array if aux else None,
                                           out.target_id, (frame.array.shape[1], frame.array.shape[0]), out.aux_fallback,
                                           primary=node.tracking.session.target_id == out.target_id)
    if kind == "problem":
        node.problem(text, "no_3d")
    response.success, response.target_id, response.frame_stamp = True, out.target_id, frame.header.stamp
    b = req.box
    response.message = (f"tracking target '{out.target_id}' from the frame stamped {item.stamp_ns * 1e-9:.6f} "
                        f"(box center {b.cx:.1f}, {b.cy:.1f}; size {b.w:.1f} x {b.h:.1f})" + "".join(f"; {n}" for n in notes))
    if aux is not None and out.aux_fallback:
        node.get_logger().warning(response.message)
    else:
        node.get_logger().info(response.message)
    return response


@answers_errors
def reset(node: Any, request: Any, response: Any) -> Any:
    """Drop every target; the node stays active and IDLE."""
    had = node.tracking.drop()
    if node.outputs is not None:
        node.outputs.forget_target()
    response.success = True
    names = ", ".join(f"'{t}'" for t in had)
    response.message = (f"target{'s' if len(had) > 1 else ''} {names} dropped; state IDLE" if had
                        else "no target was tracked; state IDLE")
    node.get_logger().info(response.message)
    return response


@answers_errors
def drop_target(node: Any, request: Any, response: Any) -> Any:
    """Drop the target ``request.target_id``; the others go on."""
    target_id = str(request.target_id)
    dropped = node.tracking.drop(target_id) if target_id else []
    response.success = bool(dropped)
    if dropped:
        if node.outputs is not None:
            node.outputs.forget_target(target_id)
        left = node.tracking.session.ids
        response.message = f"target '{target_id}' dropped; " + (f"tracking {', '.join(left)}" if left else "state IDLE")
        node.get_logger().info(response.message)
    else:
        ids = node.tracking.session.ids
        response.message = (f"refused: no target has the id {target_id!r} (tracking: {', '.join(ids) or 'none'})"
                            if target_id else "refused: target_id is empty (~/reset drops every target)")
        node.get_logger().warning(f"drop_target {response.message}")
    return response

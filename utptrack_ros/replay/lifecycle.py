"""The node between bags, driven from the player: waiting until it is active, a fresh activation
on each bag's clock, and its status and counters read from ``/diagnostics``."""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional

from .node_process import NodeProcess
from .options import ReplayError
from .player import Player

_TRANSITION_ACTIVATE, _TRANSITION_DEACTIVATE = 3, 4


def _diag_values(msg: Any, ns: str) -> dict[str, dict[str, str]]:
    out = {}
    for s in msg.status:
        if s.name.startswith(ns + ":"):
            level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
            out[s.name.split(": ", 1)[1]] = {"level": int(level), "message": s.message,
                                             **{kv.key: kv.value for kv in s.values}}
    return out


def _counters(status: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    """The integer counters of the node's ``input`` status (processed, dropped_stale, matched...)."""
    out = {}
    for key, value in status.get("input", {}).items():
        if key != "level" and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
    return out


def _wait_active(player: Player, node: NodeProcess, timeout: float) -> None:
    end = time.monotonic() + timeout
    state = None
    while time.monotonic() < end:
        if not node.alive():
            raise ReplayError(f"the node exited with code {node.proc.returncode} before it became active; "
                              f"its log ({node.log_path}):\n{node.log_tail()}")
        state = player.node_state(timeout=2.0)
        if state == "active":
            return
        if state is not None and state != "active":
            # autostart finished (the services answer only once the node spins) but failed
            raise ReplayError(f"the node is '{state}' instead of active (configure or activate failed); "
                              f"its log ({node.log_path}):\n{node.log_tail()}")
        time.sleep(0.2)
    raise ReplayError(f"the node did not become active within {timeout:.0f} s (last state: {state}); "
                      f"its log ({node.log_path}):\n{node.log_tail()}")


def _start_bag(player: Player, node: NodeProcess, first_ns: int, period_ns: int) -> dict[str, dict[str, str]]:
    """A fresh activation for the next bag, on the bag's clock; returns the node's status right after.

    ``/clock`` jumps to ``A = first - 4 periods`` (before the bag, so the bag's own time never goes
    back) and steps forward until the node's diagnostics timer fires: a status stamped after ``A``
    proves the node's clock is there (the node's time source keeps only the newest ``/clock``
    message, so this is the only safe acknowledgement). The node is then deactivated (if active) and
    activated again: fresh tracker, sync queues, init buffer, and sync timers started on this clock
    (the model stays loaded). The clock steps on until the next status: the baseline the bag's
    counters are measured from. With the replay's diagnostics period (0.2 s) the aux stream has been
    silent for about 0.6 s when the first frame comes, inside ``sync.aux_timeout_s`` (1 s by
    default), so the first frame is paired normally.
    """
    start = first_ns - 4 * period_ns
    clock, status = _advance_clock(player, start, first_ns - 2 * period_ns, period_ns)
    if status is None:
        raise ReplayError(f"the node sent no /diagnostics while /clock moved; log:\n{node.log_tail()}")
    if player.node_state() == "active" and not player.transition(_TRANSITION_DEACTIVATE):
        raise ReplayError(f"could not deactivate the node before a bag; log:\n{node.log_tail()}")
    if not player.transition(_TRANSITION_ACTIVATE):
        raise ReplayError(f"could not activate the node before a bag; log:\n{node.log_tail()}")
    _, status = _advance_clock(player, clock, first_ns - period_ns // 5, period_ns, jump=False)
    if status is None:
        raise ReplayError(f"the node sent no /diagnostics after activation; log:\n{node.log_tail()}")
    return status


def _advance_clock(player: Player, start_ns: int, limit_ns: int, period_ns: int, *, jump: bool = True,
                   timeout: float = 5.0) -> tuple[int, Optional[dict]]:
    """Publish ``/clock`` = ``start_ns`` (if ``jump``), then step it forward by a tenth of a
    diagnostics period every 30 ms (at most to ``limit_ns``) until the node sends a status stamped
    at or after ``start_ns`` (strictly after it without ``jump``: the clock was already there, so
    only a later status is new). Returns (last clock published, that status or None after ``timeout``)."""
    with player._lock:
        since = len(player.diagnostics)  # bags may share stamps: only statuses sent from now on count

    def newest() -> Optional[Any]:
        for _, msg in reversed(player.diagnostics[since:]):
            stamp = int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
            if stamp > start_ns or (jump and stamp == start_ns):
                return msg
        return None

    clock = start_ns
    if jump:
        player.publish_clock(clock)
    end = time.monotonic() + timeout
    step = max(1, period_ns // 10)
    while time.monotonic() < end:
        msg = player.wait(newest, 0.03)
        if msg is not None:
            return clock, _diag_values(msg, player.ns)
        if clock + step <= limit_ns:
            clock += step
            player.publish_clock(clock)
    return clock, None


def _flush_diagnostics(player: Player, t_ns: int, period_ns: int) -> Optional[dict]:
    """The node's status after the clock moved on from ``t_ns`` (at most 3 periods), or None."""
    return _advance_clock(player, t_ns, t_ns + 3 * period_ns, period_ns, jump=False)[1]

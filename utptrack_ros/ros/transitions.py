"""Lifecycle transitions off the executor.

A transition keeps its ROS 2 meaning: ``~/change_state`` answers when the transition is done,
with its result (``configure`` returns once the weights are loaded, ``activate`` once the model is
on its device and warmed up), and ``get_state`` answers the transition state meanwhile
(``configuring``, ``activating``). Its work, which can take tens of seconds (weights, an
onnxruntime export, warm-up, the prompt encoder), never runs on the executor: every service,
parameter request and ``/diagnostics`` keeps being served.

* :func:`serve_transitions_off_executor`: each ``~/change_state`` request runs in a thread of its
  own; the service callback is a coroutine awaiting it (rclpy's executors, the EventsExecutor
  included, keep spinning while a coroutine callback waits). The service moves to a reentrant
  callback group so the node's default group (``get_state``, parameters) is never held by it.
  A second request while one runs is refused by the state machine, as ROS 2 defines.
* :func:`start_in_thread`: ``autostart`` (configure + activate at start-up) in a thread, once the
  executor spins.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.task import Future

__all__ = ["serve_transitions_off_executor", "start_in_thread", "autostart"]


def serve_transitions_off_executor(node: Any) -> None:
    """Rewire ``node``'s ``~/change_state`` service as the module docstring says."""
    service = next(s for s in node.services if s.srv_name.endswith("/change_state"))
    run_transition = service.callback

    async def change_state(request: Any, response: Any) -> Any:
        done: Future = Future()

        def work() -> None:
            try:
                done.set_result(run_transition(request, response))
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting callback
                done.set_exception(err)

        threading.Thread(target=work, name="utptrack-transition", daemon=True).start()
        return await done

    service.callback = change_state
    group = ReentrantCallbackGroup()
    service.callback_group = group
    group.add_entity(service)


def autostart(node: Any) -> bool:
    """configure + activate; False (logged) when a transition fails."""
    log = node.get_logger()
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        log.error("autostart: configure failed; staying unconfigured (the reason is logged above and on /diagnostics)")
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        log.error("autostart: activate failed; staying inactive (the reason is logged above and on /diagnostics)")
        return False
    return True


def start_in_thread(run: Callable[[], Any], name: str = "utptrack-autostart") -> threading.Thread:
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread

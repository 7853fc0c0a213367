"""Callbacks that never take the node down: every exception is answered or logged.

* :func:`answers_errors` (services): ``success=false`` with the exception as the reason, logged
  with its traceback; the node keeps running and keeps its target.
* :func:`logs_errors` (topics, timers): counted and logged (rate-limited) through the node's
  ``problem(text)``.
* :func:`transition` (lifecycle): the step is reported to ``node.progress`` while it runs (for
  /diagnostics) and an earlier failure (``node.config_error``) is cleared; any exception is a failed transition with its reason (``node.transition_failed``:
  logged, and ERROR on /diagnostics) instead of rclpy's silent ``ERROR`` return.
"""
from __future__ import annotations

import functools
import traceback
from typing import Any, Callable

__all__ = ["answers_errors", "logs_errors", "transition"]


def answers_errors(callback: Callable) -> Callable:
    @functools.wraps(callback)
    def guarded(node: Any, request: Any, response: Any) -> Any:
        try:
            return callback(node, request, response)
        except Exception as err:  # noqa: BLE001 - the service answers, the node keeps its target
            response.success = False
            response.message = f"failed ({type(err).__name__}): {err}; the node keeps running and keeps its target"
            node.get_logger().error(f"{callback.__name__.strip('_')}: {response.message}\n{traceback.format_exc()}")
            return response
    return guarded


def logs_errors(callback: Callable) -> Callable:
    @functools.wraps(callback)
    def guarded(node: Any, *args: Any) -> None:
        try:
            callback(node, *args)
        except Exception as err:  # noqa: BLE001 - one bad message must not stop the node
            node.problem(f"{callback.__name__.strip('_')} failed ({type(err).__name__}): {err}")
    return guarded


def transition(name: str) -> Callable:
    def wrap(callback: Callable) -> Callable:
        @functools.wraps(callback)
        def run(node: Any, state: Any) -> Any:
            node.progress.start(f"{name}: starting")
            node.config_error = ""  # a new attempt: an earlier failure is history
            try:
                return callback(node, state)
            except Exception as err:  # noqa: BLE001 - any failure: reason logged and published
                return node.transition_failed(f"{name} failed ({type(err).__name__}): {err}", traceback.format_exc())
            finally:
                node.progress.done()
        return run
    return wrap

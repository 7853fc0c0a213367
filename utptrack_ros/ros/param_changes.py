"""Parameter changes at run time, validate-then-apply.

:func:`validate` (rclpy's on-set callback) builds the settings the whole new parameter set would
give and refuses the request with the reason when they are invalid: nothing is applied.
:func:`apply` (the post-set callback) then applies what can change live (``tracker.*``,
``prune.*``, ``sync.*`` and ``output.diagnostics_period_s``) and says which changes wait for the
next configure. Neither waits for the model stack: before it is imported, the core defaults
stand in for the variant's ranges (``preparation.variant_tracker_config``). Called with the node
as first argument.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from rcl_interfaces.msg import SetParametersResult

from ..errors import ConfigError
from . import preparation
from .params import LIVE_PREFIXES, build_settings

__all__ = ["LIVE_OUTPUT", "validate", "apply"]

LIVE_OUTPUT = "output.diagnostics_period_s"  # applied at once: the timer is re-created


def variant_for(node: Any, name: str) -> Any:
    """The variant's tracker settings for ``name`` (the configured one's, or without importing)."""
    if node.variant is None or node.settings is None or name != node.settings.model.name:
        return preparation.variant_tracker_config(name, import_now=False)
    return node.variant


def validate(node: Any, params: list) -> SetParametersResult:
    try:
        values = node.parameter_values(params)
        build_settings(values, variant_for(node, str(values["model.name"])))
    except ConfigError as err:
        return SetParametersResult(successful=False, reason=str(err))
    except Exception as err:  # noqa: BLE001 - e.g. the model stack cannot be imported
        return SetParametersResult(successful=False, reason=f"could not check the values ({type(err).__name__}): {err}")
    return SetParametersResult(successful=True)


def apply(node: Any, params: list) -> None:
    try:
        _apply(node, params)
    except Exception as err:  # noqa: BLE001 - validated values that still fail to apply
        node.get_logger().error(f"parameters {[p.name for p in params]} could not be applied ({type(err).__name__}): {err}")


def _apply(node: Any, params: list) -> None:
    names = [p.name for p in params]
    log = node.get_logger()
    if LIVE_OUTPUT in names:
        node.start_diagnostics(float(node.get_parameter(LIVE_OUTPUT).value))
    live = [n for n in names if n.startswith(LIVE_PREFIXES)]
    later = [n for n in names if not n.startswith(LIVE_PREFIXES) and n not in (LIVE_OUTPUT, "use_sim_time")]
    if later and node.settings is not None:
        log.info(f"{later} take effect at the next configure")
    if not live or node.settings is None:
        return
    new = build_settings(node.parameter_values(), variant_for(node, node.settings.model.name))
    node.settings = replace(node.settings, tracker=new.tracker, sync=new.sync, prune_enabled=new.prune_enabled,
                            keep_ratios=new.keep_ratios)
    pruning = [n for n in live if n.startswith("prune.")]
    # keep ratios change only when prune.* did: other live changes leave the token budget's choice alone
    backend = node.tracking.configure(new.tracker, new.prune_config(node.model.config.prune) if pruning else None)
    if pruning and node.budget_reason:
        node.budget_reason = f"keep ratios set at run time ({', '.join(pruning)}); the budget chosen at activate no longer applies"
    node.inputs.set_sync_params(int(new.sync.slop_s * 1e9), new.sync.queue_size, int(new.sync.aux_timeout_s * 1e9))
    if backend is not None:
        log.info(f"applied live: {', '.join(f'{p.name}={p.value}' for p in params if p.name in live)}")
        if new.model.backend != backend:
            log.warning(f"no {new.model.backend} graphs for these keep ratios yet: tracking runs on "
                        f"{backend} until the next activate exports them")

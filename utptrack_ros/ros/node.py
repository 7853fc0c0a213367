"""TrackerNode: the lifecycle node around the framework-free Tracker. Wiring only.

Each concept has its module: the tracker and the target behind one lock (tracking.py,
session.py), the inputs: synchroniser, init history, mailbox and time-line restarts (inputs.py,
sync.py), the worker thread (worker.py) and what it publishes (outputs.py, spatial_output.py),
the target services (services.py), the transitions' heavy part (preparation.py) run off the
executor (transitions.py), /diagnostics (diagnostics.py), message conversions (messages.py),
parameters (params.py) and their run-time changes (param_changes.py), callback guards
(guards.py), benchmark tracing (trace.py).

Lifecycle (docs/ros.md "Lifecycle"): ``configure`` validates the parameters and loads the
weights, ``activate`` builds the MultiTracker on its device (graphs exported for onnxruntime), warms it
up, loads the prompt encoder when the model has a text token, starts the worker and subscribes;
``deactivate`` unsubscribes, stops the worker, drops the targets and frees device memory;
``cleanup`` drops the model. Transitions run in a thread of their own and answer when done; the
services, parameters and /diagnostics (which says what is being prepared) answer meanwhile.

Threads: the executor runs the callbacks, all short (convert a frame, answer a request); the
worker runs ``MultiTracker.track`` (every target in one batched forward) on the newest
synchronised set (one-slot mailbox) and publishes
with the input's header. Image subscriptions are raw (serialized CDR read by sensors.py without a
copy); ``UTPTRACK_RAW_INPUT=0`` subscribes to deserialised messages instead. Every callback answers or logs every exception (a service with
``success=false`` and the reason): the node keeps running and keeps its targets.
"""
from __future__ import annotations

import functools
import os
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from utptrack_ros.srv import DropTarget, InitTarget

from ..errors import ConfigError, InputError
from ..sensors import SensorError, stamp_to_ns
from ..types import Modality
from . import diagnostics as diag
from . import messages, param_changes, preparation, services
from .guards import logs_errors, transition
from .inputs import Frame, InputFrames, TimeJump
from .outputs import Outputs
from .params import NodeSettings, build_settings, effective_core_values, parameter_defaults, parameter_descriptor, settings_summary
from .qos import describe, qos_profile
from .session import clean_prompt
from .sync import ApproximateSync, Stamped
from .tracking import Tracking
from .trace import trace_from_env
from .transitions import serve_transitions_off_executor
from .worker import Worker

__all__ = ["TrackerNode"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class TrackerNode(LifecycleNode):
    """See the module docstring; topics, services, messages and parameters are listed in the README ("The ROS 2 node")."""

    def __init__(self, node_name: str = "utptrack", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, default in parameter_defaults().items():
            self.declare_parameter(name, default, parameter_descriptor(name))
        self.add_on_set_parameters_callback(functools.partial(param_changes.validate, self))
        self.add_post_set_parameters_callback(functools.partial(param_changes.apply, self))
        self.settings: Optional[NodeSettings] = None
        self.config_error = ""
        self.tracking = Tracking()
        self.inputs = InputFrames()
        self.stats = diag.NodeStats()
        self.model = self.variant = None
        self.budget_reason = ""  # why the keep ratios running now were chosen (prune.mode / deadline_ms)
        self.progress = preparation.Progress()
        self.trace = trace_from_env()
        self.outputs: Optional[Outputs] = None  # from configure to cleanup
        self._worker: Optional[Worker] = None
        self._subs: list = []
        self._active_since: Optional[int] = None
        self._last_depth = None  # its valid fraction is computed at the diagnostics period only
        self._last_jump = ""
        self._logged: dict[str, float] = {}
        self._inputs_group = ReentrantCallbackGroup()
        self._services_group = MutuallyExclusiveCallbackGroup()
        self.create_service(InitTarget, "~/init_target", functools.partial(services.init_target, self),
                            callback_group=self._services_group)
        self.create_service(DropTarget, "~/drop_target", functools.partial(services.drop_target, self),
                            callback_group=self._services_group)
        self.create_service(Trigger, "~/reset", functools.partial(services.reset, self), callback_group=self._services_group)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = None
        self.start_diagnostics(float(self.get_parameter(param_changes.LIVE_OUTPUT).value))
        serve_transitions_off_executor(self)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def parameter_values(self, overrides: Optional[list] = None) -> dict:
        values = {name: self.get_parameter(name).value for name in parameter_defaults()}
        values.update({p.name: p.value for p in overrides or []})
        return values

    def warn(self, text: str, kind: str, every_s: float = 2.0) -> None:
        now = time.monotonic()
        if now - self._logged.get(kind, -1e9) >= every_s:
            self._logged[kind] = now
            self.get_logger().warning(text)

    def problem(self, text: str, counter: str = "bad_input") -> None:
        """Count, remember for /diagnostics, and log (at most every 2 s per kind of problem)."""
        self.stats.problem(text, counter)
        self.warn(text, f"{counter}:{text[:30]}")

    def transition_failed(self, reason: str, details: str = "") -> TransitionCallbackReturn:
        self.config_error = reason
        self.get_logger().error(reason + (f"\n{details}" if details else ""))
        return FAILURE

    def start_diagnostics(self, period_s: float) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(period_s, self._publish_diagnostics, MutuallyExclusiveCallbackGroup())

    # -- lifecycle -------------------------------------------------------------------------
    @transition("configure")
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.progress.step("checking parameters (importing the model stack unless imported at start)")
        try:
            self.variant = preparation.variant_tracker_config(str(self.get_parameter("model.name").value))
            settings = build_settings(self.parameter_values(), self.variant)
        except ConfigError as err:
            return self.transition_failed(f"invalid parameters: {err}")
        try:
            model = preparation.load_network(settings.model.name, settings.model.weights, settings.model.seed, self.progress)
        except Exception as err:  # noqa: BLE001 - any load failure is reported, the node keeps running
            return self.transition_failed(f"model load failed ({type(err).__name__}): {err}")
        if (preparation.family_of(model.config.name) != preparation.family_of(settings.model.name)
                and preparation.is_registered(model.config.name)):
            # a weights file decides its own variant (e.g. an OSTrack-384 file under model.name o256):
            # unset tracker.* parameters mean that variant's settings (its search factor, no updates)
            self.variant = preparation.variant_tracker_config(model.config.name)
            settings = build_settings(self.parameter_values(), self.variant)
            self.get_logger().info(f"the weights file holds {model.config.name}: its tracker settings apply")
        self.model, self.settings, self.config_error = model, settings, ""
        self.tracking.session.prompt = settings.input.prompt
        # show the effective core values (unset parameters = the variant's own)
        self.set_parameters([Parameter(k, value=v) for k, v in effective_core_values(settings, model.config.prune).items()])
        self.outputs = Outputs(self, settings)
        log = self.get_logger()
        log.info(f"configured: {settings_summary(settings)}")
        log.info(f"input '{self.image_topic(False)}' QoS: {describe(self._qos(False))}")
        if settings.modality is not Modality.RGB:
            log.info(f"input '{self.image_topic(True)}' ({settings.modality.value}) QoS: {describe(self._qos(True))}")
        return SUCCESS

    @transition("activate")
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        tracker, self.budget_reason = preparation.build_tracker(self.model, s, self.progress)
        self.tracking.start(tracker, s.modality, s.input.max_targets)
        now = self.now_ns()
        self.inputs.start(ApproximateSync(int(s.sync.slop_s * 1e9), s.sync.queue_size, int(s.sync.aux_timeout_s * 1e9),
                                          aux_enabled=s.modality is not Modality.RGB, start_ns=now), s.input.init_buffer)
        self._active_since, self.config_error = now, ""
        self._worker = Worker(self.inputs, self.tracking, self.stats, self.outputs, self.trace, self.problem, self.warn,
                              self.now_ns)
        self._worker.start()
        self._subscribe()
        self.get_logger().info(f"active on {tracker.device} ({s.model.name}, {tracker.backend}, modality {s.modality.value})"
                               + (f"; token budget: {self.budget_reason}" if self.budget_reason else ""))
        return super().on_activate(state)

    @transition("deactivate")
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.get_logger().info("deactivated: inputs closed, target dropped, device memory freed")
        return super().on_deactivate(state)

    @transition("cleanup")
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.outputs is not None:
            self.outputs.destroy(self)
        self.outputs, self.model, self.settings = None, None, None
        return SUCCESS

    @transition("shutdown")
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return SUCCESS

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self.inputs.stop()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        self._active_since = None
        preparation.release_device(self.tracking.stop(), self.model)

    def release(self) -> None:
        """Stop the worker and inputs outside the lifecycle (process exit), flush the trace."""
        if self._worker is not None:
            self._stop_inputs()
        self.trace.flush()

    # -- inputs ----------------------------------------------------------------------------
    def image_topic(self, aux: bool) -> str:
        compressed = self.settings.input.aux_compressed if aux else self.settings.input.compressed
        return ("aux/image" if aux else "image") + ("/compressed" if compressed else "")

    def _qos(self, aux: bool):
        inp = self.settings.input
        return qos_profile(inp.qos_aux if aux else inp.qos_image, inp.qos_depth)

    def _subscribe(self) -> None:
        raw = os.environ.get("UTPTRACK_RAW_INPUT", "1") != "0"  # serialized bytes, read by sensors.*_from_cdr
        for aux in (False, True) if self.settings.modality is not Modality.RGB else (False,):
            topic, qos = self.image_topic(aux), self._qos(aux)

            def incompatible(event: Any, topic: str = topic, qos: Any = qos) -> None:
                self.problem(f"'{topic}': a publisher's QoS is incompatible with ours ({describe(qos)}; policy "
                              f"{event.last_policy_kind}): no frames will arrive. Set input.qos_image/qos_aux "
                              "(best_effort receives from every publisher)")
            self._subs.append(self.create_subscription(
                CompressedImage if topic.endswith("compressed") else Image, topic, functools.partial(self._on_frame, aux),
                qos, callback_group=self._inputs_group, raw=raw,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible)))
        self._subs.append(self.create_subscription(String, "prompt", self._on_prompt, 10, callback_group=self._services_group))
        if self.outputs.spatial is not None:
            # camera drivers publish camera_info with the sensor-data profile or reliable: best effort receives both
            self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                       qos_profile("sensor_data", 5), callback_group=self._inputs_group))

    @logs_errors
    def _on_camera_info(self, msg: Any) -> None:
        spatial = self.outputs.spatial if self.outputs is not None else None
        error = spatial.output.on_camera_info(msg) if spatial is not None else ""
        if error:
            self.problem(error, "camera_info")

    @logs_errors
    def _on_frame(self, aux: bool, raw: Any) -> None:
        """Both streams: read, stamp, bound, convert, then pair and buffer (inputs.py)."""
        received, now, cpu = time.perf_counter(), self.now_ns(), self.trace.mark()
        inp, modality = self.settings.input, self.settings.modality
        stream = modality.value if aux else "RGB"
        self.stats.arrived(aux, now)
        compressed = inp.aux_compressed if aux else inp.compressed
        try:
            msg, header = messages.read_image(raw, compressed)
            parsed = time.perf_counter()
            stamp = self._stamp(header, now, stream)
            if stamp is None:
                return
            if not aux:
                self.stats.stamped(now, stamp)
            array = messages.image_array(msg, compressed, modality if aux else Modality.RGB, inp.max_image_pixels)
        except SensorError as err:
            return self.problem(f"{stream} frame dropped: {err}")
        except Exception as err:  # noqa: BLE001 - bytes neither reader understands
            return self.problem(f"{stream} frame dropped: unreadable message ({type(err).__name__}: {err})")
        if aux and modality is Modality.DEPTH:
            self._last_depth = array
        converted = time.perf_counter()
        jump = self.inputs.add(stream, aux, Stamped(stamp, now, Frame(header, array, received, (converted - received) * 1e3)), now)
        if jump is not None:
            self._new_time_line(jump)
        self.trace.input("aux" if aux else "rgb", stamp, received, parsed, converted, cpu)

    def _stamp(self, header: Any, now_ns: int, stream: str) -> Optional[int]:
        stamp = stamp_to_ns(header.stamp)
        if stamp != 0:
            return stamp
        if self.settings.input.zero_stamp == "now":
            header.stamp = self.get_clock().now().to_msg()
            return now_ns
        self.problem(f"{stream} frame with header.stamp == 0 dropped: stamps are needed to synchronise and are "
                      "copied into ~/target (fix the driver, or set input.zero_stamp:=now)", "zero_stamp")
        return None

    def _new_time_line(self, jump: TimeJump) -> None:
        self.tracking.stamps_restarted()
        self._last_jump = jump.describe()
        self.warn(self._last_jump, "time jump")

    @logs_errors
    def _on_prompt(self, msg: String) -> None:
        limit = self.settings.input.max_prompt_chars if self.settings else 500
        try:
            text = clean_prompt(str(msg.data), limit)
        except InputError as err:
            return self.problem(f"prompt refused: {err}; keeping the current prompt")
        self.tracking.set_prompt(text)
        self.get_logger().info(f"prompt set to {text!r}" if text else "prompt cleared: no text guidance")

    # -- diagnostics -----------------------------------------------------------------------
    @logs_errors
    def _publish_diagnostics(self) -> None:
        self.trace.flush()
        now, s, tracker = self.now_ns(), self.settings, self.tracking.tracker
        snap = diag.snapshot(
            self.stats, now, sync=self.inputs.status(now), session=self.tracking.session,
            extra_counts={"dropped_stale": self.inputs.mailbox.dropped},
            node_name=self.get_fully_qualified_name(), lifecycle_state=self.lifecycle_state, active=tracker is not None,
            config_error=self.config_error, preparing=self.progress.describe(),
            model=s.model.name if s else str(self.get_parameter("model.name").value),
            device=str(tracker.device) if tracker is not None else (s.model.device if s else ""),
            backend=tracker.backend if tracker is not None else (s.model.backend if s else ""),
            modality=s.modality.value if s else str(self.get_parameter("input.modality").value),
            slop_s=s.sync.slop_s if s else 0.0, stale_s=s.output.stale_s if s else 2.0,
            active_since_ns=self._active_since, last_jump=self._last_jump, budget=self.budget_reason if tracker else "",
            depth_valid_fraction=diag.depth_valid_fraction(self._last_depth) if s and s.modality is Modality.DEPTH else None)
        self._diag_pub.publish(diag.to_msg(diag.build_statuses(snap), self.get_clock().now().to_msg()))
        if snap.input_age_s is not None and snap.input_age_s > diag.LATE_S:
            self.warn(f"frames arrive {snap.input_age_s:.2f} s after their stamps (median): boxes are that old; "
                       f"{diag.LATE_FIX}", "late input", every_s=10.0)

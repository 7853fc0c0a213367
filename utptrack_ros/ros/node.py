"""TrackerNode: the lifecycle node around the framework-free Tracker. Wiring only.

Each concept has its module: the tracker and the target behind one lock (tracking.py,
session.py), the inputs: synchroniser, init history, mailbox and time-line restarts (inputs.py,
sync.py), the transitions' heavy part (preparation.py) run off the executor (transitions.py),
/diagnostics (diagnostics.py), message conversions (messages.py), parameters (params.py), callback
guards (guards.py), benchmark tracing (trace.py).

Lifecycle (docs/ros.md "Lifecycle"): ``configure`` validates the parameters and loads the
weights, ``activate`` builds the Tracker on its device (graphs exported for onnxruntime), warms it
up, loads the prompt encoder when the model has a text token, starts the worker and subscribes;
``deactivate`` unsubscribes, stops the worker, drops the target and frees device memory;
``cleanup`` drops the model. Transitions run in a thread of their own and answer when done; the
services, parameters and /diagnostics (which says what is being prepared) answer meanwhile.

Threads: the executor runs the callbacks, all short (convert a frame, answer a request); the
worker runs ``Tracker.track`` on the newest synchronised set (one-slot mailbox) and publishes
with the input's header. Image subscriptions are raw (serialized CDR read by sensors.py without a
copy); ``UTPTRACK_RAW_INPUT=0`` subscribes to deserialised messages instead. Every callback answers or logs every exception (a service with
``success=false`` and the reason): the node keeps running and keeps its target.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import replace
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from utptrack_ros.msg import TrackedTarget
from utptrack_ros.srv import InitTarget

from ..errors import ConfigError, InputError
from ..sensors import SensorError, fill_image, stamp_to_ns
from ..types import Modality, TrackState
from . import diagnostics as diag
from . import messages, preparation
from .guards import answers_errors, logs_errors, transition
from .inputs import Frame, InputFrames, TimeJump
from .params import (LIVE_PREFIXES, NodeSettings, build_settings, effective_core_values, parameter_defaults,
                     parameter_descriptor, settings_summary)
from .qos import describe, qos_profile
from .session import clean_prompt
from .spatial_output import DISABLED, HAVE_MARKER, LOST, SpatialOutput, SpatialResult, fill_position, marker_msg, point_msg
from .sync import ApproximateSync, Stamped, SyncedSet
from .tracking import Tracking
from .trace import trace_from_env
from .transitions import serve_transitions_off_executor

__all__ = ["TrackerNode"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
LIVE_OUTPUT = "output.diagnostics_period_s"  # applied at once: the timer is re-created


class TrackerNode(LifecycleNode):
    """See the module docstring; topics, services, messages and parameters are listed in the README ("The ROS 2 node")."""

    def __init__(self, node_name: str = "utptrack", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, default in parameter_defaults().items():
            self.declare_parameter(name, default, parameter_descriptor(name))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.settings: Optional[NodeSettings] = None
        self.config_error = ""
        self.tracking = Tracking()
        self.inputs = InputFrames()
        self.stats = diag.NodeStats()
        self._model = self._variant = None
        self.progress = preparation.Progress()
        self._trace = trace_from_env()
        self._worker: Optional[threading.Thread] = None
        self._subs: list = []
        self._target_pub = self._debug_pub = self._detections_pub = None
        self._point_pub = self._marker_pub = None
        self.spatial: Optional[SpatialOutput] = None  # depth modality only: ~/target_point from camera_info
        self._active_since: Optional[int] = None
        self._last_depth = None  # its valid fraction is computed at the diagnostics period only
        self._last_jump = ""
        self._logged: dict[str, float] = {}
        self._inputs_group = ReentrantCallbackGroup()
        self._services_group = MutuallyExclusiveCallbackGroup()
        self.create_service(InitTarget, "~/init_target", self._on_init_target, callback_group=self._services_group)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._services_group)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = None
        self._start_diagnostics(float(self.get_parameter(LIVE_OUTPUT).value))
        serve_transitions_off_executor(self)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _parameter_values(self, overrides: Optional[list] = None) -> dict:
        values = {name: self.get_parameter(name).value for name in parameter_defaults()}
        values.update({p.name: p.value for p in overrides or []})
        return values

    def _warn(self, text: str, kind: str, every_s: float = 2.0) -> None:
        now = time.monotonic()
        if now - self._logged.get(kind, -1e9) >= every_s:
            self._logged[kind] = now
            self.get_logger().warning(text)

    def problem(self, text: str, counter: str = "bad_input") -> None:
        """Count, remember for /diagnostics, and log (at most every 2 s per kind of problem)."""
        self.stats.problem(text, counter)
        self._warn(text, f"{counter}:{text[:30]}")

    def transition_failed(self, reason: str, details: str = "") -> TransitionCallbackReturn:
        self.config_error = reason
        self.get_logger().error(reason + (f"\n{details}" if details else ""))
        return FAILURE

    def _start_diagnostics(self, period_s: float) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(period_s, self._publish_diagnostics, MutuallyExclusiveCallbackGroup())

    # -- lifecycle -------------------------------------------------------------------------
    @transition("configure")
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.progress.step("importing the model stack (torch, timm) and checking parameters")
        try:
            self._variant = preparation.variant_tracker_config(str(self.get_parameter("model.name").value))
            settings = build_settings(self._parameter_values(), self._variant)
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
            self._variant = preparation.variant_tracker_config(model.config.name)
            settings = build_settings(self._parameter_values(), self._variant)
            self.get_logger().info(f"the weights file holds {model.config.name}: its tracker settings apply")
        self._model, self.settings, self.config_error = model, settings, ""
        self.tracking.session.prompt = settings.input.prompt
        # show the effective core values (unset parameters = the variant's own)
        self.set_parameters([Parameter(k, value=v) for k, v in effective_core_values(settings, model.config.prune).items()])
        self._target_pub = self.create_lifecycle_publisher(TrackedTarget, "~/target", 10)
        if settings.output.debug_image:
            self._debug_pub = self.create_lifecycle_publisher(Image, "~/debug_image", 2)
        if messages.HAVE_VISION_MSGS:
            self._detections_pub = self.create_lifecycle_publisher(messages.Detection2DArray, "~/detections", 10)
        log = self.get_logger()
        if settings.modality is Modality.DEPTH:
            self.spatial = SpatialOutput()
            self._point_pub = self.create_lifecycle_publisher(PointStamped, "~/target_point", 10)
            if HAVE_MARKER:
                from visualization_msgs.msg import Marker
                self._marker_pub = self.create_lifecycle_publisher(Marker, "~/target_marker", 10)
            else:
                log.warning("visualization_msgs is not importable: no ~/target_marker for RViz (~/target_point is published)")
        log.info(f"configured: {settings_summary(settings)}")
        log.info(f"input '{self._topic(False)}' QoS: {describe(self._qos(False))}")
        if settings.modality is not Modality.RGB:
            log.info(f"input '{self._topic(True)}' ({settings.modality.value}) QoS: {describe(self._qos(True))}")
        return SUCCESS

    @transition("activate")
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        tracker = preparation.build_tracker(self._model, s, self.progress)
        self.tracking.start(tracker, s.modality)
        now = self._now_ns()
        self.inputs.start(ApproximateSync(int(s.sync.slop_s * 1e9), s.sync.queue_size, int(s.sync.aux_timeout_s * 1e9),
                                          aux_enabled=s.modality is not Modality.RGB, start_ns=now), s.input.init_buffer)
        self._active_since, self.config_error = now, ""
        self._worker = threading.Thread(target=self._work, name="utptrack-worker", daemon=True)
        self._worker.start()
        self._subscribe()
        self.get_logger().info(f"active on {tracker.device} ({s.model.name}, {tracker.backend}, modality {s.modality.value})")
        return super().on_activate(state)

    @transition("deactivate")
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.get_logger().info("deactivated: inputs closed, target dropped, device memory freed")
        return super().on_deactivate(state)

    @transition("cleanup")
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for pub in (self._target_pub, self._debug_pub, self._detections_pub, self._point_pub, self._marker_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._target_pub = self._debug_pub = self._detections_pub = None
        self._point_pub = self._marker_pub = self.spatial = None
        self._model, self.settings = None, None
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
        preparation.release_device(self.tracking.stop(), self._model)

    def release(self) -> None:
        """Stop the worker and inputs outside the lifecycle (process exit), flush the trace."""
        if self._worker is not None:
            self._stop_inputs()
        self._trace.flush()

    # -- inputs ----------------------------------------------------------------------------
    def _topic(self, aux: bool) -> str:
        compressed = self.settings.input.aux_compressed if aux else self.settings.input.compressed
        return ("aux/image" if aux else "image") + ("/compressed" if compressed else "")

    def _qos(self, aux: bool):
        inp = self.settings.input
        return qos_profile(inp.qos_aux if aux else inp.qos_image, inp.qos_depth)

    def _subscribe(self) -> None:
        raw = os.environ.get("UTPTRACK_RAW_INPUT", "1") != "0"  # serialized bytes, read by sensors.*_from_cdr
        for aux in (False, True) if self.settings.modality is not Modality.RGB else (False,):
            topic, qos = self._topic(aux), self._qos(aux)

            def incompatible(event: Any, topic: str = topic, qos: Any = qos) -> None:
                self.problem(f"'{topic}': a publisher's QoS is incompatible with ours ({describe(qos)}; policy "
                              f"{event.last_policy_kind}): no frames will arrive. Set input.qos_image/qos_aux "
                              "(best_effort receives from every publisher)")
            self._subs.append(self.create_subscription(
                CompressedImage if topic.endswith("compressed") else Image, topic, functools.partial(self._on_frame, aux),
                qos, callback_group=self._inputs_group, raw=raw,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible)))
        self._subs.append(self.create_subscription(String, "prompt", self._on_prompt, 10, callback_group=self._services_group))
        if self.spatial is not None:
            # camera drivers publish camera_info with the sensor-data profile or reliable: best effort receives both
            self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                       qos_profile("sensor_data", 5), callback_group=self._inputs_group))

    @logs_errors
    def _on_camera_info(self, msg: Any) -> None:
        error = self.spatial.on_camera_info(msg) if self.spatial is not None else ""
        if error:
            self.problem(error, "camera_info")

    @logs_errors
    def _on_frame(self, aux: bool, raw: Any) -> None:
        """Both streams: read, stamp, bound, convert, then pair and buffer (inputs.py)."""
        received, now, cpu = time.perf_counter(), self._now_ns(), self._trace.mark()
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
        self._trace.input("aux" if aux else "rgb", stamp, received, parsed, converted, cpu)

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
        self._warn(self._last_jump, "time jump")

    @logs_errors
    def _on_prompt(self, msg: String) -> None:
        limit = self.settings.input.max_prompt_chars if self.settings else 500
        try:
            text = clean_prompt(str(msg.data), limit)
        except InputError as err:
            return self.problem(f"prompt refused: {err}; keeping the current prompt")
        self.tracking.set_prompt(text)
        self.get_logger().info(f"prompt set to {text!r}" if text else "prompt cleared: no text guidance")

    # -- worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self.inputs.mailbox.take(timeout=0.25)
            if item is None:
                if self.inputs.mailbox.closed:
                    return
                continue
            try:
                self._process(item)
            except Exception as err:  # noqa: BLE001 - the worker survives any single frame
                text = f"frame stamped {item.stamp_ns * 1e-9:.6f} failed ({type(err).__name__}): {err}"
                self.stats.frame_failed(text)
                self._warn(text, "frame failed")

    def _process(self, item: SyncedSet) -> None:
        frame: Frame = item.rgb.payload
        taken, cpu = time.perf_counter(), self._trace.mark()
        out = self.tracking.track(item.stamp_ns, frame.array, item.aux.payload.array if item.aux is not None else None)
        if out is None:  # inactive meanwhile, or queued before the target started
            if self.tracking.tracker is not None:
                self.stats.counts["skipped_before_init"] += 1
            return
        if out.note:
            self.problem(out.note)
        result, target_id, modality = out.result, out.target_id, self.settings.modality
        tracked, cpu_publish = time.perf_counter(), self._trace.mark()
        size, latency = (frame.array.shape[1], frame.array.shape[0]), (tracked - frame.received) * 1e3
        if result is None:
            msg = messages.idle_msg(TrackedTarget(), frame.header, size, modality.value, latency)
        else:
            msg = messages.target_msg(TrackedTarget(), result, frame.header, target_id, size, modality.value,
                                      out.aux_fallback, latency)
        if result is not None:
            depth = item.aux.payload.array if item.aux is not None else None
            fill_position(msg, self._publish_point(frame, item.stamp_ns, depth, target_id, result))
        self._target_pub.publish(msg)
        done = time.perf_counter()
        timings = result.timings_ms if result is not None else {}
        self._trace.frame(item.stamp_ns, taken, tracked, done, timings, cpu, cpu_publish)
        stages = {k: v for k, v in timings.items() if k in ("preprocess", "model", "postprocess")}
        stages.update(latency=(done - frame.received) * 1e3, convert=frame.convert_ms, publish=(done - tracked) * 1e3,
                      wait=(taken - frame.received) * 1e3 - frame.convert_ms)
        self.stats.frame_done(self._now_ns(), stages)
        if self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0:
            img = fill_image(Image(), messages.render_debug(frame.array, result, target_id), "rgb8")
            img.header = frame.header
            self._debug_pub.publish(img)
        if self._detections_pub is not None:
            self._detections_pub.publish(messages.detection_array(msg))

    def _publish_point(self, frame: Frame, stamp_ns: int, depth: Any, target_id: str, result: Any) -> SpatialResult:
        """The spatial core on the tracked box: a point and a marker, or a reason (WARN + /diagnostics), never a made-up value."""
        if self.spatial is None:
            return DISABLED
        if result.state is not TrackState.TRACKING:
            return LOST
        size = (frame.array.shape[1], frame.array.shape[0])
        out = self.spatial.locate(target_id, result.box, size, stamp_ns, depth)
        if not out.ok and (self.spatial.infos_received == 0 or depth is None):
            # no camera_info at all (3D output unused) or an RGB-only frame (reported as aux fallback): not a fault
            self._warn(f"{out.reason} (target '{target_id}')", "no 3d input", every_s=30.0)
        elif not out.ok:
            self.problem(f"{out.reason} (target '{target_id}': no 3D position; the 2D output goes on)", "no_3d")
        else:
            self._point_pub.publish(point_msg(frame.header, out.point))
            if self._marker_pub is not None:
                self._marker_pub.publish(marker_msg(frame.header, out.point, target_id))
        return out

    # -- services --------------------------------------------------------------------------
    @answers_errors
    def _on_init_target(self, request: Any, response: Any) -> Any:
        response.success, response.target_id = False, self.tracking.session.target_id
        response.message = messages.init_refusal(self.lifecycle_state, self.tracking.tracker is not None,
                                                 self.progress.describe(), self.config_error)
        if response.message:
            return response
        s = self.settings
        try:
            req = messages.init_request(request)
            item = self.inputs.find(req.stamp_ns, self.resolve_topic_name(self._topic(False)))
            frame: Frame = item.payload
            if req.frame_id and req.frame_id != frame.header.frame_id:
                raise InputError(f"header.frame_id {req.frame_id!r} differs from the image's {frame.header.frame_id!r}")
            aux = self.inputs.nearest_aux(item.stamp_ns, int(s.sync.slop_s * 1e9)) if s.modality is not Modality.RGB else None
            out, notes = self.tracking.init(item.stamp_ns, frame.array, req.box, aux.payload.array if aux else None,
                                            req.target_id, clean_prompt(req.prompt, s.input.max_prompt_chars))
        except InputError as err:
            response.message = f"refused: {err}"
            self.get_logger().warning(f"init_target {response.message}")
            return response
        size = (frame.array.shape[1], frame.array.shape[0])
        if self.spatial is not None:
            self.spatial.forget()  # the last target's depth is no prior for the new one
        msg = messages.target_msg(TrackedTarget(), out.result, frame.header, out.target_id, size, s.modality.value,
                                  out.aux_fallback, 0.0)
        self._target_pub.publish(fill_position(msg, self._publish_point(frame, item.stamp_ns, aux.payload.array if aux else None,
                                                                        out.target_id, out.result)))
        response.success, response.target_id, response.frame_stamp = True, out.target_id, frame.header.stamp
        b = req.box
        response.message = (f"tracking target '{out.target_id}' from the frame stamped {item.stamp_ns * 1e-9:.6f} "
                            f"(box center {b.cx:.1f}, {b.cy:.1f}; size {b.w:.1f} x {b.h:.1f})" + "".join(f"; {n}" for n in notes))
        if aux is not None and out.aux_fallback:
            self.get_logger().warning(response.message)
        else:
            self.get_logger().info(response.message)
        return response

    @answers_errors
    def _on_reset(self, request: Any, response: Any) -> Any:
        had = self.tracking.reset()
        if self.spatial is not None:
            self.spatial.forget()
        response.success = True
        response.message = f"target '{had}' dropped; state IDLE" if had else "no target was tracked; state IDLE"
        self.get_logger().info(response.message)
        return response

    # -- parameters ------------------------------------------------------------------------
    def _variant_for(self, name: str):
        if self._variant is None or self.settings is None or name != self.settings.model.name:
            return preparation.variant_tracker_config(name, import_now=False)
        return self._variant

    def _validate_parameters(self, params: list) -> SetParametersResult:
        try:
            values = self._parameter_values(params)
            build_settings(values, self._variant_for(str(values["model.name"])))
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        except Exception as err:  # noqa: BLE001 - e.g. the model stack cannot be imported
            return SetParametersResult(successful=False, reason=f"could not check the values ({type(err).__name__}): {err}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list) -> None:
        try:
            self._apply(params)
        except Exception as err:  # noqa: BLE001 - validated values that still fail to apply
            self.get_logger().error(f"parameters {[p.name for p in params]} could not be applied ({type(err).__name__}): {err}")

    def _apply(self, params: list) -> None:
        names = [p.name for p in params]
        if LIVE_OUTPUT in names:
            self._start_diagnostics(float(self.get_parameter(LIVE_OUTPUT).value))
        live = [n for n in names if n.startswith(LIVE_PREFIXES)]
        later = [n for n in names if not n.startswith(LIVE_PREFIXES) and n not in (LIVE_OUTPUT, "use_sim_time")]
        if later and self.settings is not None:
            self.get_logger().info(f"{later} take effect at the next configure")
        if not live or self.settings is None:
            return
        new = build_settings(self._parameter_values(), self._variant_for(self.settings.model.name))
        self.settings = replace(self.settings, tracker=new.tracker, sync=new.sync, prune_enabled=new.prune_enabled,
                                keep_ratios=new.keep_ratios)
        backend = self.tracking.configure(new.tracker, new.prune_config(self._model.config.prune))
        self.inputs.set_sync_params(int(new.sync.slop_s * 1e9), new.sync.queue_size, int(new.sync.aux_timeout_s * 1e9))
        if backend is not None:
            self.get_logger().info(f"applied live: {', '.join(f'{p.name}={p.value}' for p in params if p.name in live)}")
            if new.model.backend != backend:
                self.get_logger().warning(f"no {new.model.backend} graphs for these keep ratios yet: tracking runs on "
                                          f"{backend} until the next activate exports them")

    # -- diagnostics -----------------------------------------------------------------------
    @logs_errors
    def _publish_diagnostics(self) -> None:
        self._trace.flush()
        now, s, tracker = self._now_ns(), self.settings, self.tracking.tracker
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
            active_since_ns=self._active_since, last_jump=self._last_jump,
            depth_valid_fraction=diag.depth_valid_fraction(self._last_depth) if s and s.modality is Modality.DEPTH else None)
        self._diag_pub.publish(diag.to_msg(diag.build_statuses(snap), self.get_clock().now().to_msg()))
        if snap.input_age_s is not None and snap.input_age_s > diag.LATE_S:
            self._warn(f"frames arrive {snap.input_age_s:.2f} s after their stamps (median): boxes are that old; "
                       f"{diag.LATE_FIX}", "late input", every_s=10.0)

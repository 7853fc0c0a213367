"""TrackerNode: the lifecycle node around the framework-free Tracker. Wiring only.

Lifecycle: ``__init__`` declares parameters, the ``/diagnostics`` publisher and the two
services (they answer in every state: an init while unconfigured is refused with the reason,
and a failed configure is reported on /diagnostics); ``on_configure`` validates parameters and
loads the model on the CPU (a load error -> FAILURE, logged and on /diagnostics), creates
``~/target`` and ``~/debug_image``; ``on_activate`` builds the Tracker on ``model.device``,
warms it up, starts the worker thread and subscribes; ``on_deactivate`` unsubscribes, stops the
worker, drops the target and frees device memory; ``on_cleanup`` drops the model.

Data path: image subscriptions are raw (serialized CDR bytes; rclpy's deserialisation into
Python objects costs more than the rest of the callback), read by sensors.py into light
messages with zero-copy data; callbacks only convert (sensors.py) and hand the frame to the
synchroniser (sync.py) and the init history; synchronised sets go to a one-slot mailbox; the
worker thread runs ``Tracker.track`` on the newest set and publishes with the input's header.
Tracking runs in that worker, never in an executor callback, so the services answer while the
model runs, whatever executor spins the node (main.py). ``UTPTRACK_TRACE_FILE`` turns on
per-frame stage timestamps (trace.py) for the benchmark; ``UTPTRACK_RAW_INPUT=0`` subscribes to
deserialised messages instead (rclpy's path; for A/B measurements and as an escape hatch).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.serialization import deserialize_message
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from ..errors import ConfigError, InputError
from ..sensors import (
    SensorError, aux_to_array, compressed_from_cdr, compressed_to_aux, compressed_to_rgb, fill_image, image_from_cdr,
    image_to_rgb, stamp_to_ns,
)
from ..types import Modality, TrackResult, TrackState
from . import diagnostics as diag
from . import messages
from .params import (LIVE_PREFIXES, NodeSettings, build_settings, effective_core_values, parameter_defaults,
                     parameter_descriptor, settings_summary)
from .qos import describe, qos_profile
from .sync import ApproximateSync, FrameHistory, NewestSetMailbox, Stamped, SyncedSet
from .trace import StageTrace

__all__ = ["TrackerNode", "Frame"]


@dataclass(frozen=True)
class Frame:
    """A converted input image and what the worker needs to publish for it."""

    header: Any  # std_msgs/Header of the input message (copied into outputs)
    array: np.ndarray  # RGB (H, W, 3) uint8, or the aux array
    received: float  # time.perf_counter() at callback entry (latency is a steady-clock duration)
    convert_ms: float


def _variant_tracker_config(name: str):
    from ..config import TrackerConfig
    from ..models import default_tracker_config, list_models

    if name not in list_models():
        raise ConfigError(f"model.name {name!r} is not a registered variant; registered: {list_models()}")
    return default_tracker_config(name) if name else TrackerConfig()


def load_model(name: str, weights: str, seed: int):
    """The network on the CPU: shipped weights (``""``), a weights file, or ``"random"``."""
    import torch
    from pathlib import Path

    from ..errors import CheckpointError
    from ..models import create_model
    from ..tracker import Tracker

    if weights == "random":
        torch.manual_seed(seed)
        return create_model(name)
    if weights and not Path(weights).expanduser().is_file():
        raise CheckpointError(f"model.weights: no such file {weights!r}")
    return Tracker.from_pretrained(name, weights=str(Path(weights).expanduser()) if weights else None, device="cpu").model


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
        self._model = None
        self._tracker = None
        self._tracker_lock = threading.RLock()
        self._input_lock = threading.Lock()
        self._sync: Optional[ApproximateSync] = None
        self._history = FrameHistory()
        self._mailbox: NewestSetMailbox[SyncedSet] = NewestSetMailbox()
        self._worker: Optional[threading.Thread] = None
        self._subs: list = []
        self._target_pub = self._debug_pub = self._detections_pub = None
        self._inputs_group = ReentrantCallbackGroup()
        self._services_group = MutuallyExclusiveCallbackGroup()
        self._active_since: Optional[int] = None
        self._target_id = ""
        self._next_id = 1
        self._init_stamp_ns = -1
        self._prompt = ""
        self._last: Optional[TrackResult] = None
        self._last_problem = ""
        self._logged: dict[str, float] = {}
        self._last_depth: Optional[np.ndarray] = None  # its valid fraction is computed for /diagnostics only
        self._counts = {"processed": 0, "zero_stamp": 0, "bad_input": 0, "skipped_before_init": 0, "errors": 0}
        self._prev_counts: dict = {}
        self._rates = {k: diag.RateMeter() for k in ("rgb_hz", "aux_hz", "output_hz")}
        self._stages = {k: diag.Window() for k in ("latency", "convert", "wait", "preprocess", "model", "postprocess", "publish")}
        self._trace = StageTrace.from_env()
        # The services answer in every state (an init while unconfigured gets success=false and
        # the reason), and /diagnostics reports every state, including a failed configure.
        from utptrack_ros.srv import InitTarget

        self._tracker_services = [
            self.create_service(InitTarget, "~/init_target", self._on_init_target, callback_group=self._services_group),
            self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._services_group),
        ]
        self._diag_pub = self.create_publisher(_diag_type(), "/diagnostics", 10)
        period = float(self.get_parameter("output.diagnostics_period_s").value)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics, MutuallyExclusiveCallbackGroup())

    # -- helpers ---------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def _parameter_values(self, overrides: Optional[list] = None) -> dict:
        values = {name: self.get_parameter(name).value for name in parameter_defaults()}
        for p in overrides or []:
            values[p.name] = p.value
        return values

    def _problem(self, text: str, counter: str = "bad_input", kind: Optional[str] = None) -> None:
        """Count, remember for /diagnostics, and log (at most every 2 s per kind of problem)."""
        self._counts[counter] += 1
        self._last_problem = text
        kind = kind or f"{counter}:{text[:30]}"
        now = time.monotonic()
        if now - self._logged.get(kind, -1e9) >= 2.0:
            self._logged[kind] = now
            self.get_logger().warning(text)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            variant = _variant_tracker_config(str(self.get_parameter("model.name").value))
            settings = build_settings(self._parameter_values(), variant)
        except ConfigError as err:
            return self._configure_failed(f"invalid parameters: {err}")
        try:
            model = load_model(settings.model.name, settings.model.weights, settings.model.seed)
        except Exception as err:  # noqa: BLE001 - any load failure is reported, the node keeps running
            return self._configure_failed(f"model load failed ({type(err).__name__}): {err}")
        self._model, self.settings, self.config_error = model, settings, ""
        self._prompt = settings.input.prompt
        self._history = FrameHistory(settings.input.init_buffer)
        # show the effective core values (unset parameters = the variant's own)
        fill = [Parameter(k, value=v) for k, v in effective_core_values(settings, model.config.prune).items()]
        self.set_parameters(fill)
        from utptrack_ros.msg import TrackedTarget

        self._target_pub = self.create_lifecycle_publisher(TrackedTarget, "~/target", 10)
        if settings.output.debug_image:
            self._debug_pub = self.create_lifecycle_publisher(Image, "~/debug_image", 2)
        if messages.HAVE_VISION_MSGS:
            self._detections_pub = self.create_lifecycle_publisher(messages.Detection2DArray, "~/detections", 10)
        log = self.get_logger()
        log.info(f"configured: {settings_summary(settings)}")
        log.info(f"input '{self._rgb_topic()}' QoS: {describe(self._qos('image'))}")
        if settings.modality is not Modality.RGB:
            log.info(f"input '{self._aux_topic()}' ({settings.modality.value}) QoS: {describe(self._qos('aux'))}")
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.config_error = reason
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        from ..tracker import Tracker

        s = self.settings
        try:
            import torch

            if s.model.num_threads:
                torch.set_num_threads(s.model.num_threads)
            self._model.set_prune(s.prune_config(self._model.config.prune))
            if s.model.backend == "onnxruntime":
                self.get_logger().info("model.backend onnxruntime: loading graphs (exported first if not "
                                       "cached for these weights and keep ratios: ~20 s for tiny)")
            tracker = Tracker(self._model, s.tracker, s.model.device, backend=s.model.backend,
                              onnx_cache=s.model.onnx_cache or None, threads=s.model.num_threads or None)
            self._warm_up(tracker)
        except Exception as err:  # noqa: BLE001 - e.g. CUDA requested but unavailable
            self.config_error = f"activate failed ({type(err).__name__}): {err}"
            self.get_logger().error(self.config_error)
            return TransitionCallbackReturn.FAILURE
        now = self._now_ns()
        with self._tracker_lock:
            self._tracker, self._last, self._target_id, self._init_stamp_ns = tracker, None, "", -1
        with self._input_lock:
            self._sync = ApproximateSync(
                int(s.sync.slop_s * 1e9), s.sync.queue_size, int(s.sync.aux_timeout_s * 1e9),
                aux_enabled=s.modality is not Modality.RGB, start_ns=now,
            )
            self._history.clear()
        self._active_since = now
        self._mailbox.reopen()
        self._worker = threading.Thread(target=self._work, name="utptrack-worker", daemon=True)
        self._worker.start()
        self._subscribe()
        self.get_logger().info(
            f"active on {tracker.device} ({s.model.name}, {tracker.backend}, modality {s.modality.value})")
        return super().on_activate(state)

    def _warm_up(self, tracker) -> None:
        image = np.zeros((64, 64, 3), np.uint8)
        image[16:48, 16:48] = 200
        tracker.init(image, (16.0, 16.0, 32.0, 32.0))
        tracker.track(image)
        tracker.reset()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.get_logger().info("deactivated: inputs closed, target dropped, device memory freed")
        return super().on_deactivate(state)

    def _stop_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        with self._tracker_lock:
            device = self._tracker.device if self._tracker is not None else None
            self._tracker, self._last, self._target_id = None, None, ""
        self._active_since = None
        if device is not None and device.type == "cuda":
            import torch

            self._model.to("cpu")
            torch.cuda.empty_cache()

    def release(self) -> None:
        """Stop the worker and inputs outside the lifecycle (process exit)."""
        if self._worker is not None:
            self._stop_inputs()
        if self._trace is not None:
            self._trace.flush()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for pub in (self._target_pub, self._debug_pub, self._detections_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._target_pub = self._debug_pub = self._detections_pub = None
        self._model, self.settings = None, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._worker is not None:
            self._stop_inputs()
        if self.settings is not None:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    # -- subscriptions -------------------------------------------------------------------------
    def _rgb_topic(self) -> str:
        return "image/compressed" if self.settings.input.compressed else "image"

    def _aux_topic(self) -> str:
        return "aux/image/compressed" if self.settings.input.aux_compressed else "aux/image"

    def _qos(self, which: str) -> QoSProfile:
        inp = self.settings.input
        return qos_profile(inp.qos_image if which == "image" else inp.qos_aux, inp.qos_depth)

    def _subscribe(self) -> None:
        s = self.settings

        def incompatible(topic: str):
            def cb(event: Any) -> None:
                self._problem(
                    f"'{topic}': a publisher's QoS is incompatible with ours ({describe(self._qos('image' if topic.startswith('image') else 'aux'))}; "
                    f"policy {event.last_policy_kind}): no frames will arrive. Set input.qos_image/qos_aux "
                    "(best_effort receives from every publisher)"
                )
            return SubscriptionEventCallbacks(incompatible_qos=cb)

        # raw: the callbacks get the serialized bytes and read them with sensors.*_from_cdr
        raw = os.environ.get("UTPTRACK_RAW_INPUT", "1") != "0"
        rgb_type = CompressedImage if s.input.compressed else Image
        self._subs.append(self.create_subscription(
            rgb_type, self._rgb_topic(), self._on_rgb, self._qos("image"),
            callback_group=self._inputs_group, event_callbacks=incompatible(self._rgb_topic()), raw=raw))
        if s.modality is not Modality.RGB:
            aux_type = CompressedImage if s.input.aux_compressed else Image
            self._subs.append(self.create_subscription(
                aux_type, self._aux_topic(), self._on_aux, self._qos("aux"),
                callback_group=self._inputs_group, event_callbacks=incompatible(self._aux_topic()), raw=raw))
        self._subs.append(self.create_subscription(
            String, "prompt", self._on_prompt, 10, callback_group=self._services_group))

    @staticmethod
    def _read(raw: Any, compressed: bool) -> tuple[Any, Header]:
        """Serialized image -> (light message whose ``data`` views ``raw``, std_msgs/Header).

        Bytes in an encapsulation sensors.py does not read go through rclpy's deserialiser; a
        message object (``UTPTRACK_RAW_INPUT=0``) is used as it is."""
        if not isinstance(raw, bytes):
            return raw, raw.header
        try:
            msg = compressed_from_cdr(raw) if compressed else image_from_cdr(raw)
        except SensorError:
            msg = deserialize_message(raw, CompressedImage if compressed else Image)
            return msg, msg.header
        h = msg.header
        return msg, Header(stamp=Time(sec=h.stamp.sec, nanosec=h.stamp.nanosec), frame_id=h.frame_id)

    def _stamp(self, header: Header, now_ns: int, stream: str) -> Optional[int]:
        stamp = stamp_to_ns(header.stamp)
        if stamp != 0:
            return stamp
        if self.settings.input.zero_stamp == "now":
            header.stamp = self.get_clock().now().to_msg()
            return now_ns
        self._problem(
            f"{stream} frame with header.stamp == 0 dropped: stamps are needed to synchronise and are "
            "copied into ~/target (fix the driver, or set input.zero_stamp:=now)", "zero_stamp")
        return None

    def _on_rgb(self, raw: bytes) -> None:
        received, now = time.perf_counter(), self._now_ns()
        cpu = time.thread_time() if self._trace is not None else 0.0
        self._rates["rgb_hz"].tick(now)
        compressed = self.settings.input.compressed
        try:
            msg, header = self._read(raw, compressed)
        except Exception as err:  # noqa: BLE001 - bytes neither reader understands
            self._problem(f"RGB frame dropped: unreadable message ({type(err).__name__}: {err})")
            return
        parsed = time.perf_counter()
        stamp = self._stamp(header, now, "RGB")
        if stamp is None:
            return
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except SensorError as err:
            self._problem(f"RGB frame dropped: {err}")
            return
        converted = time.perf_counter()
        item = Stamped(stamp, now, Frame(header, rgb, received, (converted - received) * 1e3))
        with self._input_lock:
            if self._sync is None:
                return
            self._history.add_rgb(item)
            ready = self._sync.add_rgb(item, now)
        if ready is not None:
            self._mailbox.put(ready)
        if self._trace is not None:
            self._trace_input("rgb", stamp, received, parsed, converted, cpu)

    def _on_aux(self, raw: bytes) -> None:
        received, now = time.perf_counter(), self._now_ns()
        cpu = time.thread_time() if self._trace is not None else 0.0
        self._rates["aux_hz"].tick(now)
        modality = self.settings.modality
        compressed = self.settings.input.aux_compressed
        try:
            msg, header = self._read(raw, compressed)
        except Exception as err:  # noqa: BLE001 - bytes neither reader understands
            self._problem(f"{modality.value} frame dropped: unreadable message ({type(err).__name__}: {err})")
            return
        parsed = time.perf_counter()
        stamp = self._stamp(header, now, modality.value)
        if stamp is None:
            return
        try:
            arr = compressed_to_aux(msg, modality) if compressed else aux_to_array(msg, modality)
        except SensorError as err:
            self._problem(f"{modality.value} frame dropped: {err}")
            return
        if modality is Modality.DEPTH:
            self._last_depth = arr
        converted = time.perf_counter()
        item = Stamped(stamp, now, Frame(header, arr, received, (converted - received) * 1e3))
        with self._input_lock:
            if self._sync is None:
                return
            self._history.add_aux(item)
            ready = self._sync.add_aux(item, now)
        if ready is not None:
            self._mailbox.put(ready)
        if self._trace is not None:
            self._trace_input("aux", stamp, received, parsed, converted, cpu)

    def _trace_input(self, stream: str, stamp: int, received: float, parsed: float, converted: float, cpu: float) -> None:
        self._trace.add({"ev": "input", "stream": stream, "stamp": stamp, "t_entry": received, "t_parsed": parsed,
                         "t_converted": converted, "t_done": time.perf_counter(), "cpu": time.thread_time() - cpu})

    def _on_prompt(self, msg: String) -> None:
        text = " ".join(str(msg.data).split())
        limit = self.settings.input.max_prompt_chars if self.settings else 500
        if len(text) > limit:
            self._problem(f"prompt of {len(text)} characters refused (input.max_prompt_chars={limit}); keeping the current prompt")
            return
        self._prompt = text
        self.get_logger().info(f"prompt set to {text!r}" if text else "prompt cleared: no text guidance")
        with self._tracker_lock:
            if self._tracker is not None and self._tracker.initialized:
                try:
                    self._tracker.set_prompt(text or None)
                except Exception as err:  # noqa: BLE001
                    self._problem(f"prompt could not be applied ({type(err).__name__}): {err}")

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._mailbox.take(timeout=0.25)
            if item is None:
                if self._mailbox.closed:
                    return
                continue
            try:
                self._process(item)
            except Exception as err:  # noqa: BLE001 - the worker must survive any single frame
                self._problem(f"frame {item.stamp_ns} failed ({type(err).__name__}): {err}", "errors")

    def _process(self, item: SyncedSet) -> None:
        frame: Frame = item.rgb.payload
        taken = time.perf_counter()
        if self._trace is not None:
            cpu_thread, cpu_process = time.thread_time(), time.process_time()
        modality = self.settings.modality
        h, w = frame.array.shape[:2]
        with self._tracker_lock:
            tracker = self._tracker
            if tracker is None or self._target_pub is None:
                return
            if not tracker.initialized:
                result = None
            elif item.stamp_ns <= self._init_stamp_ns:
                self._counts["skipped_before_init"] += 1
                return
            else:
                aux = item.aux.payload.array if item.aux is not None else None
                fallback = modality is not Modality.RGB and aux is None
                try:
                    result = tracker.track(frame.array, aux)
                except InputError as err:  # e.g. aux size mismatch: keep the target, use RGB only
                    self._problem(f"{modality.value} frame unusable ({err}); this frame tracked RGB-only")
                    result, fallback = tracker.track(frame.array, None), True
                self._last = result
            target_id = self._target_id
        t_pub = time.perf_counter()
        if self._trace is not None:
            cpu_publish = time.thread_time()
        from utptrack_ros.msg import TrackedTarget

        latency = (t_pub - frame.received) * 1e3
        if result is None:
            msg = messages.idle_msg(TrackedTarget(), frame.header, (w, h), modality.value, latency)
        else:
            msg = messages.target_msg(TrackedTarget(), result, frame.header, target_id, (w, h), modality.value, fallback, latency)
        self._target_pub.publish(msg)
        done = time.perf_counter()
        if self._trace is not None:
            self._trace.add({"ev": "frame", "stamp": item.stamp_ns, "t_taken": taken, "t_tracked": t_pub, "t_published": done,
                             "timings_ms": dict(result.timings_ms) if result is not None else {},
                             "cpu_thread": time.thread_time() - cpu_thread, "cpu_process": time.process_time() - cpu_process,
                             "cpu_publish": time.thread_time() - cpu_publish})
        self._rates["output_hz"].tick(self._now_ns())
        self._counts["processed"] += 1
        self._record_stages(frame, taken, result, (done - t_pub) * 1e3, (done - frame.received) * 1e3)
        self._publish_extras(frame, result, msg, target_id)

    def _record_stages(self, frame: Frame, taken: float, result: Optional[TrackResult], publish_ms: float, total_ms: float) -> None:
        st = self._stages
        st["latency"].add(total_ms)
        st["convert"].add(frame.convert_ms)
        st["wait"].add((taken - frame.received) * 1e3 - frame.convert_ms)
        st["publish"].add(publish_ms)
        if result is not None:
            for key in ("preprocess", "model", "postprocess"):
                if key in result.timings_ms:
                    st[key].add(result.timings_ms[key])

    def _publish_extras(self, frame: Frame, result: Optional[TrackResult], msg: Any, target_id: str) -> None:
        if self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0:
            img = fill_image(Image(), messages.render_debug(frame.array, result, target_id), "rgb8")
            img.header = frame.header
            self._debug_pub.publish(img)
        if self._detections_pub is not None:
            self._detections_pub.publish(messages.detection_array(msg))

    # -- services ------------------------------------------------------------------------------
    def _on_init_target(self, request: Any, response: Any) -> Any:
        response.success, response.target_id = False, self._target_id
        state = self.lifecycle_state
        if state != "active" or self._tracker is None:
            why = "the model is not configured" if state == "unconfigured" else f"the node is {state}"
            response.message = f"refused: {why}; configure and activate the node first"
            if self.config_error:
                response.message += f" (last error: {self.config_error})"
            return response
        try:
            req = messages.init_request(request)
            frame_item = self._find_frame(req.stamp_ns)
            frame: Frame = frame_item.payload
            if req.frame_id and req.frame_id != frame.header.frame_id:
                raise InputError(f"header.frame_id {req.frame_id!r} differs from the image's {frame.header.frame_id!r}")
            h, w = frame.array.shape[:2]
            messages.check_box_in_image(req.box, w, h)
            prompt = " ".join(req.prompt.split()) or self._prompt
            limit = self.settings.input.max_prompt_chars
            if len(prompt) > limit:
                raise InputError(f"prompt has {len(prompt)} characters; at most {limit} (input.max_prompt_chars)")
            modality = self.settings.modality
            aux_item = None
            if modality is not Modality.RGB:
                with self._input_lock:
                    aux_item = self._history.nearest_aux(frame_item.stamp_ns, int(self.settings.sync.slop_s * 1e9))
            target_id = req.target_id or str(self._next_id)
            with self._tracker_lock:
                tracker = self._tracker
                if tracker is None:
                    raise InputError("the node was deactivated meanwhile")
                result = tracker.init(
                    frame.array, req.box, aux_item.payload.array if aux_item else None, modality, prompt or None
                )
                self._target_id, self._init_stamp_ns, self._last = target_id, frame_item.stamp_ns, result
                if not req.target_id:
                    self._next_id += 1
        except InputError as err:
            response.message = f"refused: {err}"
            self.get_logger().warning(f"init_target {response.message}")
            return response
        from utptrack_ros.msg import TrackedTarget

        msg = messages.target_msg(TrackedTarget(), result, frame.header, target_id, (w, h), modality.value, aux_item is None and modality is not Modality.RGB, 0.0)
        self._target_pub.publish(msg)
        response.success, response.target_id = True, target_id
        response.frame_stamp = frame.header.stamp
        notes = []
        if modality is not Modality.RGB and aux_item is None:
            notes.append(f"no {modality.value} frame within slop of that image: initialised RGB-only")
        if prompt:
            notes.append(f"prompt {prompt!r}")
        b = req.box
        response.message = (
            f"tracking target '{target_id}' from the frame stamped {frame_item.stamp_ns * 1e-9:.6f} "
            f"(box center {b.cx:.1f}, {b.cy:.1f}; size {b.w:.1f} x {b.h:.1f})" + ("; " + "; ".join(notes) if notes else "")
        )
        self.get_logger().info(response.message)
        return response

    def _find_frame(self, stamp_ns: int) -> Stamped:
        with self._input_lock:
            item = self._history.get(stamp_ns)
            span, count = self._history.stamp_range(), len(self._history)
        if item is not None:
            return item
        if count == 0:
            raise InputError(f"no image received yet on '{self.resolve_topic_name(self._rgb_topic())}'")
        lo, hi = span
        raise InputError(
            f"no buffered frame with stamp {stamp_ns * 1e-9:.9f}; {count} frames buffered, stamps "
            f"{lo * 1e-9:.6f} .. {hi * 1e-9:.6f} (use one of them, or a zero stamp for the latest)"
        )

    def _on_reset(self, request: Any, response: Any) -> Any:
        with self._tracker_lock:
            had = self._target_id
            if self._tracker is not None:
                self._tracker.reset()
            self._target_id, self._last, self._init_stamp_ns = "", None, -1
        response.success = True
        response.message = f"target '{had}' dropped; state IDLE" if had else "no target was tracked; state IDLE"
        self.get_logger().info(response.message)
        return response

    # -- parameters ------------------------------------------------------------------------------
    def _validate_parameters(self, params: list) -> SetParametersResult:
        try:
            values = self._parameter_values(params)
            build_settings(values, _variant_tracker_config(str(values["model.name"])))
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list) -> None:
        names = [p.name for p in params]
        live = [n for n in names if n.startswith(LIVE_PREFIXES)]
        later = [n for n in names if not n.startswith(LIVE_PREFIXES)]
        if later and self.settings is not None:
            self.get_logger().info(f"{later} take effect at the next configure")
        if not live or self.settings is None:
            return
        values = self._parameter_values()
        settings = build_settings(values, _variant_tracker_config(self.settings.model.name))
        self.settings = settings_with_live(self.settings, settings)
        with self._tracker_lock:
            if self._tracker is not None:
                self._tracker.set_config(settings.tracker)
                self._tracker.set_prune(settings.prune_config(self._model.config.prune))
        with self._input_lock:
            if self._sync is not None:
                self._sync.set_params(int(settings.sync.slop_s * 1e9), settings.sync.queue_size, int(settings.sync.aux_timeout_s * 1e9))
        if self._tracker is not None:
            self.get_logger().info(f"applied live: {', '.join(f'{p.name}={p.value}' for p in params if p.name in live)}")
            if settings.model.backend != self._tracker.backend:
                self.get_logger().warning(
                    f"no {settings.model.backend} graphs for these keep ratios yet: tracking runs on "
                    f"{self._tracker.backend} until the next activate exports them")

    # -- diagnostics -----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._trace is not None:
            self._trace.flush()
        now = self._now_ns()
        s = self.settings
        with self._input_lock:
            sync_counts = self._sync.counters.as_dict() if self._sync is not None else {}
            fallback = self._sync.aux_fallback(now) if self._sync is not None and self._tracker is not None else False
            last_aux = self._sync.last_aux_arrival_ns() if self._sync is not None else None
        counts = {**sync_counts, **self._counts, "dropped_stale": self._mailbox.dropped}
        new = {k: v - self._prev_counts.get(k, 0) for k, v in counts.items()}
        self._prev_counts = counts
        last = self._last
        stages = {
            "latency p50 ms": self._stages["latency"].percentile(50),
            "latency p90 ms": self._stages["latency"].percentile(90),
            "latency p99 ms": self._stages["latency"].percentile(99),
        }
        stages.update({f"{k} p50 ms": self._stages[k].percentile(50) for k in ("convert", "wait", "preprocess", "model", "postprocess", "publish")})
        tracker = self._tracker
        snap = diag.Snapshot(
            node_name=self.get_fully_qualified_name(),
            lifecycle_state=self.lifecycle_state,
            active=tracker is not None,
            now_ns=now,
            config_error=self.config_error,
            model=s.model.name if s else str(self.get_parameter("model.name").value),
            device=str(tracker.device) if tracker is not None else (s.model.device if s else ""),
            backend=tracker.backend if tracker is not None else (s.model.backend if s else "torch"),
            modality=s.modality.value if s else str(self.get_parameter("input.modality").value),
            aux_fallback=fallback,
            aux_silent_s=((now - (last_aux if last_aux is not None else (self._active_since or now))) / 1e9),
            last_rgb_ns=self._rates["rgb_hz"].last() if self._active_since is not None and (self._rates["rgb_hz"].last() or 0) >= self._active_since else None,
            active_since_ns=self._active_since,
            stale_s=s.output.stale_s if s else 2.0,
            rates={k: m.rate(now) for k, m in self._rates.items()},
            counters=counts,
            new=new,
            last_problem=self._last_problem,
            tracker_state=(last.state.value if last is not None and self._target_id else TrackState.IDLE.value),
            target_id=self._target_id,
            confidence=float(last.confidence) if last is not None else 0.0,
            kept_fraction=float(last.kept_fraction) if last is not None else 0.0,
            frame_index=int(last.frame_index) if last is not None else -1,
            prompt=self._prompt,
            latency=stages,
            depth_valid_fraction=self._depth_valid_fraction() if s is not None and s.modality is Modality.DEPTH else None,
        )
        self._diag_pub.publish(diag.to_msg(diag.build_statuses(snap), self.get_clock().now().to_msg()))


    def _depth_valid_fraction(self) -> Optional[float]:
        """Fraction of valid pixels (> 0; NaN is not) of the latest depth frame: computed here, at
        the diagnostics period, not per frame in the callback."""
        depth = self._last_depth
        return None if depth is None else float(np.count_nonzero(depth > 0) / depth.size)


def settings_with_live(old: NodeSettings, new: NodeSettings) -> NodeSettings:
    """Take the live groups (tracker, prune, sync) from ``new``; the rest waits for configure."""
    from dataclasses import replace

    return replace(old, tracker=new.tracker, sync=new.sync, prune_enabled=new.prune_enabled, keep_ratios=new.keep_ratios)


def _diag_type():
    from diagnostic_msgs.msg import DiagnosticArray

    return DiagnosticArray

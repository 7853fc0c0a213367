"""Rosbag replay evaluation through the live tracker node over DDS (docs/replay.md).

Pipeline (``evaluate``):

1. **Open and check every bag first** (``open_bag``): the colour, the chosen aux, the prompt and the
   ground-truth topics must exist with the expected message types; a ground-truth text file must
   have one row per colour frame. Errors name the bag, topic or file (``utptrack_ros.data``
   errors); nothing is started and nothing is written.
2. **Start the real node** (``NodeProcess``): the ``utptrack_node`` entry point in a subprocess
   with ``--params-file`` (the user's preset, then the replay's overrides: ``use_sim_time``,
   ``autostart``, model, weights, modality, keep ratios) and remaps ``image:=<colour topic>``,
   ``aux/image:=<aux topic>``, ``prompt:=<prompt topic>``. Player and node share a private
   ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the FastDDS large-SHM profile.
   One node serves all bags that need the same inputs; before every bag it is deactivated and
   activated again on the bag's clock (fresh target, sync queues and init buffer; the model stays
   loaded), and its /diagnostics counters are read as a baseline.
3. **Play each bag** (``Player``, an rclpy node in this process): publishes ``/clock`` from the
   recorded times (the node runs under ``use_sim_time``) and the recorded messages *as recorded*
   (serialized bytes, so headers and stamps are untouched) on their recorded topics. Frames up
   to the first annotated one are played one by one (each waits for the node's answer, proving
   the frame is in the node's init buffer); then ``~/init_target`` is called with that frame's
   stamp and GT box (and the bag's prompt). The remaining frames are played in the chosen mode:
   ``lockstep`` (the next frame waits for the answer to the previous one, up to
   ``frame_timeout_s``; no answer = missed frame), ``realtime`` or ``rate`` (recorded timing
   scaled by ``rate``; outputs collected as they come, the node drops what it cannot keep up
   with). Outputs on ``~/target`` are matched to inputs by header stamp; ``/diagnostics`` is
   recorded, and read again at the end of every bag (the clock is stepped on until the node's
   diagnostics timer fires) for the node's own counters.
4. **Compare and write** (``eval.offline.write_results``): the live run of each bag becomes a
   ``SequenceRun`` (boxes, publish and arrival times); comparison rows (the same model pruned
   and unpruned, OpenCV CSRT/KCF/MIL) run offline on the same decoded frames; one results folder
   and report (Markdown, HTML, PNG, JSON). Optionally the node's outputs are written to new bags.

Latency (ros2_benchmark vocabulary): *sent* = when the player published the colour message,
*received* = when its ``~/target`` arrived in the player (both ``time.monotonic_ns``), so the
latency is stamp-to-output through DDS, conversion, sync, the model and back. The node's own
``latency_ms`` / ``model_ms`` are kept per frame too.

Imports: rclpy only inside the player and the functions that need it, so the bag checks and the
offline comparisons work without ROS.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..data import BagTopics, Sequence as DataSequence, load_bag
from ..data.errors import (FrameCountError, MissingTopicError, SequenceError, SequenceFormatError,
                           UnsupportedMessageError)
from ..data.folder import read_groundtruth
from ..data.sequence import AUX_MODALITIES
from ..errors import UTPTrackError
from ..types import Modality

logger = logging.getLogger(__name__)

__all__ = [
    "MODES", "ReplayOptions", "NodeOptions", "ReplayBag", "PlayFrame", "BagRecord", "ReplayError",
    "open_bag", "read_play_frames", "NodeProcess", "Player", "replay_bags", "comparison_specs", "evaluate",
    "find_share_file", "private_domain_id", "check_new_dir", "bag_topic_types", "write_output_bag",
    "COMPARE_CHOICES",
]

MODES = ("lockstep", "realtime", "rate")
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
TARGET_TYPE = "utptrack_ros/msg/TrackedTarget"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
STATE_NAMES = {0: "idle", 1: "tracking", 2: "lost"}
COMPARE_CHOICES = ("pruned", "unpruned", "csrt", "kcf", "mil")
REPO = Path(__file__).resolve().parents[2]


class ReplayError(UTPTrackError):
    """The replay could not run: the node did not come up, or a bag could not be played."""


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions:
    """How bags are played.

    Attributes:
        mode: ``lockstep`` (next frame after the answer to the previous one), ``realtime``
            (recorded timing) or ``rate`` (recorded timing divided by ``rate``).
        rate: playback speed factor for ``rate`` (2.0 = twice as fast); 1.0 for ``realtime``.
        frame_timeout_s: lock-step: wait this long for an answer, then count the frame missed.
        drain_timeout_s: timed modes: after the last frame, wait this long for late answers.
        init_timeout_s: the ``~/init_target`` call (the first init with a prompt loads the text
            encoder in the node).
        prompt: ``auto`` (use the bag's prompt topic when present), ``on``, ``off``.
        modality: aux stream fed to the node: ``auto`` (the bag's first of depth/thermal/event),
            ``rgb`` (none) or a modality name.
    """

    mode: str = "lockstep"
    rate: float = 1.0
    frame_timeout_s: float = 10.0
    drain_timeout_s: float = 5.0
    init_timeout_s: float = 120.0
    prompt: str = "auto"
    modality: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"replay mode must be one of {MODES}, got {self.mode!r}")
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise ValueError(f"replay rate must be a positive number, got {self.rate!r}")
        if self.mode == "realtime" and self.rate != 1.0:
            raise ValueError("mode 'realtime' plays at rate 1.0; use mode 'rate' for another factor")
        if self.frame_timeout_s <= 0 or self.drain_timeout_s < 0 or self.init_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.prompt not in ("auto", "on", "off"):
            raise ValueError(f"prompt must be auto, on or off, got {self.prompt!r}")
        if self.modality not in ("auto", "rgb") + tuple(m.value for m in AUX_MODALITIES):
            raise ValueError(f"modality must be auto, rgb, depth, thermal or event, got {self.modality!r}")


@dataclass(frozen=True)
class NodeOptions:
    """The node under test.

    Attributes:
        model: registered variant (``model.name``).
        weights: weights file; None = the variant's shipped weights. The same file feeds the
            offline comparison rows.
        device: ``model.device``.
        num_threads: ``model.num_threads`` (0 = torch's default).
        keep: one keep ratio for CE/DTE/STE (``prune.keep_ratio_*``); None = the model's own.
        params_file: the user's parameter preset, applied before the replay's overrides.
        node_name: the node's name (``~/target`` = ``/<node_name>/target``).
        domain_id: ``ROS_DOMAIN_ID`` for node and player; None = a private one (``private_domain_id``).
        startup_timeout_s: how long the node may take to become active.
        log_dir: where node logs go (default: a temporary folder).
    """

    model: str = "tiny"
    weights: Optional[Path] = None
    device: str = "cpu"
    num_threads: int = 0
    keep: Optional[float] = None
    params_file: Optional[Path] = None
    node_name: str = "utptrack"
    domain_id: Optional[int] = None
    startup_timeout_s: float = 180.0
    log_dir: Optional[Path] = None


# --------------------------------------------------------------------------------------------
# Bags: checks, sequences, raw messages to play
# --------------------------------------------------------------------------------------------


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


@functools.lru_cache(maxsize=None)
def _open_error_types() -> tuple[type[BaseException], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    return (AnyReaderError, ReaderError, OSError, ValueError, KeyError)


def _open_reader(path: Path) -> Any:
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise SequenceFormatError(f"{path}: bag does not exist")
    try:
        reader = AnyReader([path], default_typestore=_typestore())
        reader.open()
    except _open_error_types() as err:
        raise SequenceFormatError(f"{path}: cannot open bag ({type(err).__name__}: {err})") from err
    return reader


def bag_topic_types(path: Union[str, Path]) -> dict[str, str]:
    """``{topic: message type}`` of a bag (reads only its metadata).

    Raises:
        SequenceFormatError: the bag does not exist or cannot be opened.
    """
    reader = _open_reader(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


@dataclass
class ReplayBag:
    """One bag ready to play: its decoded sequence (GT applied) and what feeds the node.

    Attributes:
        path: the bag.
        sequence: colour + the replayed aux stream, GT from the topic or the text file.
        topics: topic names (colour, the aux topics, prompt, GT).
        modality: aux stream fed to the node (``Modality.RGB`` = none).
        color_type / aux_type: message types of the colour / aux topic.
        use_prompt: the bag's prompt topic is played and its prompt passed to the init.
        gt_source: ``topic /groundtruth`` or ``file <path>``.
    """

    path: Path
    sequence: DataSequence
    topics: BagTopics
    modality: Modality
    color_type: str
    aux_type: Optional[str]
    use_prompt: bool
    gt_source: str

    @property
    def aux_topic(self) -> Optional[str]:
        return None if self.modality is Modality.RGB else self.topics.aux(self.modality)

    @property
    def name(self) -> str:
        return str(self.sequence.name)

    def node_key(self) -> tuple:
        """Bags with equal keys can share one node process (same inputs and remaps)."""
        return (self.topics.color, self.color_type, self.modality.value, self.aux_topic, self.aux_type,
                self.topics.prompt if self.use_prompt else None)


def _choose_modality(requested: str, topics: BagTopics, available: Mapping[str, str], path: Path) -> Modality:
    if requested == "rgb":
        return Modality.RGB
    if requested == "auto":
        for m in AUX_MODALITIES:
            topic = topics.aux(m)
            if topic and topic in available:
                return m
        return Modality.RGB
    modality = Modality(requested)
    topic = topics.aux(modality)
    if not topic or topic not in available:
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(available.items())) or "none"
        raise MissingTopicError(f"{path}: no {modality.value} topic {topic!r}; the bag has: {listing}")
    return modality


def open_bag(path: Union[str, Path], *, topics: Optional[BagTopics] = None, modality: str = "auto",
             prompt: str = "auto", gt_file: Optional[Union[str, Path]] = None) -> ReplayBag:
    """Check a bag and decode its sequence for replay and scoring.

    Args:
        path: rosbag2 bag (directory, or a single ``.mcap`` / ``.db3`` file).
        topics: topic names (default ``BagTopics()``); ``groundtruth`` is ignored when ``gt_file``.
        modality: ``auto``, ``rgb`` or a modality name (``ReplayOptions.modality``).
        prompt: ``auto`` / ``on`` / ``off`` (``on`` requires the prompt topic).
        gt_file: ground truth as a tracking-format text file (``x,y,w,h`` per colour frame; NaN
            rows = absent) instead of the bag's GT topic.

    Raises:
        MissingTopicError: a requested topic is not in the bag (the message lists the bag's topics).
        UnsupportedMessageError: a topic carries an unexpected message type or image encoding.
        FrameCountError: the GT topic or file does not have one box per colour frame.
        SequenceFormatError: the bag or the GT file is missing, corrupt or malformed.
    """
    path = Path(path)
    topics = topics or BagTopics()
    available = bag_topic_types(path)
    chosen = _choose_modality(modality, topics, available, path)
    if prompt == "on" and not (topics.prompt and topics.prompt in available):
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(available.items())) or "none"
        raise MissingTopicError(f"{path}: no prompt topic {topics.prompt!r}; the bag has: {listing}")
    use_prompt = prompt != "off" and bool(topics.prompt and topics.prompt in available)
    if use_prompt and available[topics.prompt] != STRING:
        raise UnsupportedMessageError(f"{path}: topic {topics.prompt!r} has type {available[topics.prompt]}, "
                                      f"expected {STRING}")
    read_topics = dataclasses.replace(topics, groundtruth=None) if gt_file is not None else topics
    if not use_prompt:
        read_topics = dataclasses.replace(read_topics, prompt=None)
    seq = load_bag(path, read_topics, modalities=[] if chosen is Modality.RGB else [chosen])
    gt_source = f"topic {topics.groundtruth}"
    if gt_file is not None:
        gt_path = Path(gt_file)
        if not gt_path.is_file():
            raise SequenceFormatError(f"{gt_path}: ground-truth file does not exist")
        gt = read_groundtruth(gt_path)
        if len(gt) != seq.length:
            raise FrameCountError(f"{gt_path}: {len(gt)} ground-truth boxes but {path} has {seq.length} frames on "
                                  f"{topics.color}; the file needs one x,y,w,h line per colour frame")
        attributes = {k: v for k, v in seq.attributes.items() if k != "has_groundtruth"}
        seq = DataSequence(name=seq.name, frames=seq.frames, gt=gt, prompt=seq.prompt, attributes=attributes,
                           frame_info=seq.frame_info, stamps_ns=seq.stamps_ns)
        gt_source = f"file {gt_path}"
    stamps = np.asarray(seq.stamps_ns)
    if len(stamps) > 1 and np.any(np.diff(stamps) <= 0):
        k = int(np.flatnonzero(np.diff(stamps) <= 0)[0])
        raise SequenceFormatError(f"{path}: colour frames {k} and {k + 1} share the stamp {stamps[k]}; outputs are "
                                  "matched to inputs by stamp, so every colour frame needs its own")
    from ..eval.metrics import valid_gt_mask

    if not valid_gt_mask(seq.gt, seq.absent).any():
        raise SequenceFormatError(f"{path}: no frame has a valid ground-truth box (nothing to initialise on)")
    aux_topic = None if chosen is Modality.RGB else topics.aux(chosen)
    return ReplayBag(path=path, sequence=seq, topics=topics, modality=chosen, color_type=available[topics.color],
                     aux_type=available.get(aux_topic) if aux_topic else None, use_prompt=use_prompt,
                     gt_source=gt_source)


@dataclass
class PlayFrame:
    """What the player publishes for colour frame ``index`` (serialized messages as recorded).

    ``before``: ``(topic, bytes)`` published first (the frame's aux message, prompts recorded
    up to this frame); ``color``: the colour message; ``bag_time_ns``: its recorded time.
    """

    index: int
    stamp_ns: int
    bag_time_ns: int
    color: bytes
    before: list[tuple[str, bytes]] = field(default_factory=list)


def _header_stamp_ns(reader: Any, raw: bytes, msgtype: str) -> int:
    msg = reader.deserialize(raw, msgtype)
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def read_play_frames(bag: ReplayBag) -> list[PlayFrame]:
    """The serialized messages to publish, grouped per colour frame (in the sequence's order).

    Aux messages are paired with the colour frame of nearest stamp (within half the median frame
    period, like ``load_bag``); prompts go before the first colour frame recorded at or after them.

    Raises:
        SequenceFormatError: the bag cannot be read (e.g. truncated).
    """
    stamps = np.asarray(bag.sequence.stamps_ns, dtype=np.int64)
    index_of = {int(s): i for i, s in enumerate(stamps)}
    period = int(np.median(np.diff(stamps))) if len(stamps) > 1 else 10**8
    tolerance = period // 2
    wanted = {bag.topics.color: "color"}
    if bag.aux_topic:
        wanted[bag.aux_topic] = "aux"
    if bag.use_prompt and bag.topics.prompt:
        wanted[bag.topics.prompt] = "prompt"
    color: dict[int, tuple[int, bytes]] = {}
    aux: dict[int, list[tuple[int, bytes]]] = {}
    prompts: list[tuple[int, bytes]] = []
    reader = _open_reader(bag.path)
    try:
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, bag_time, raw in reader.messages(connections=connections):
            kind = wanted[connection.topic]
            raw = bytes(raw)
            if kind == "prompt":
                prompts.append((int(bag_time), raw))
                continue
            stamp = _header_stamp_ns(reader, raw, connection.msgtype)
            if kind == "color":
                if stamp in index_of:
                    color[index_of[stamp]] = (int(bag_time), raw)
                continue
            k = int(np.clip(np.searchsorted(stamps, stamp), 0, len(stamps) - 1))
            near = min((c for c in (k - 1, k) if 0 <= c < len(stamps)), key=lambda c: abs(int(stamps[c]) - stamp))
            if abs(int(stamps[near]) - stamp) <= tolerance:
                aux.setdefault(near, []).append((stamp, raw))
    except SequenceError:
        raise
    except Exception as err:  # rosbags raises many types for truncated/corrupt storage
        raise SequenceFormatError(f"{bag.path}: cannot read bag messages ({type(err).__name__}: {err})") from err
    finally:
        reader.close()
    missing = [i for i in range(len(stamps)) if i not in color]
    if missing:
        raise SequenceFormatError(f"{bag.path}: colour frame {missing[0]} (stamp {stamps[missing[0]]}) could not be "
                                  "read back for playing")
    prompts.sort(key=lambda p: p[0])
    frames = []
    p = 0
    for i in range(len(stamps)):
        bag_time, raw = color[i]
        before: list[tuple[str, bytes]] = []
        while p < len(prompts) and (prompts[p][0] <= bag_time or i == len(stamps) - 1):
            before.append((bag.topics.prompt, prompts[p][1]))  # type: ignore[arg-type]
            p += 1
        for _, raw_aux in sorted(aux.get(i, []), key=lambda a: a[0]):
            before.append((bag.aux_topic, raw_aux))  # type: ignore[arg-type]
        frames.append(PlayFrame(i, int(stamps[i]), bag_time, raw, before))
    return frames


# --------------------------------------------------------------------------------------------
# The node process
# --------------------------------------------------------------------------------------------


def find_share_file(relative: str) -> Optional[Path]:
    """A file of this package's share folder (``config/...``, ``msg/...``): the colcon install
    next to the generated interfaces, ``AMENT_PREFIX_PATH`` entries, then the source checkout."""
    candidates: list[Path] = []
    try:
        import utptrack_ros.msg as generated

        # <prefix>/lib/pythonX.Y/site-packages/utptrack_ros/msg/__init__.py -> <prefix>
        for location in getattr(generated, "__path__", []):
            prefix = Path(location).resolve().parents[4]
            candidates.append(prefix / "share" / "utptrack_ros" / relative)
    except ImportError:
        pass
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "utptrack_ros" / relative)
    candidates.append(REPO / relative)
    return next((c for c in candidates if c.is_file()), None)


def private_domain_id() -> int:
    """A ``ROS_DOMAIN_ID`` in 130..229 for this process (player and node only; discovery is
    limited to this host), away from the user's own ``ROS_DOMAIN_ID``."""
    user = os.environ.get("ROS_DOMAIN_ID", "")
    seed = zlib.crc32(f"{os.getpid()}:{time.time_ns()}".encode())
    domain = 130 + seed % 100
    if user.isdigit() and int(user) == domain:
        domain = 130 + (domain - 129) % 100
    return domain


def replay_environment(domain_id: int) -> dict[str, str]:
    """Environment shared by node and player: private domain, localhost discovery, the FastDDS
    profile for camera-sized messages (unless the user set one)."""
    env = {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    }
    profile = find_share_file("config/fastdds_large_shm.xml")
    if profile is not None and not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def _node_command() -> list[str]:
    script = Path(sys.executable).with_name("utptrack_node")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "utptrack_ros.ros.main"]


def _yaml_params(values: Mapping[str, Any]) -> str:
    """A ROS 2 parameters file for every node (``/**``); dotted names become nested keys."""
    import yaml

    nested: dict[str, Any] = {}
    for name, value in values.items():
        *groups, leaf = name.split(".")
        level = nested
        for g in groups:
            level = level.setdefault(g, {})
        level[leaf] = value
    return yaml.safe_dump({"/**": {"ros__parameters": nested}}, sort_keys=False)


class NodeProcess:
    """The real node (``utptrack_node --ros-args ...``) in a subprocess, logging to a file."""

    def __init__(self, bag: ReplayBag, options: NodeOptions, domain_id: int, log_path: Path,
                 diagnostics_period_s: float = 1.0) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        overrides: dict[str, Any] = {
            "use_sim_time": True,
            "autostart": True,
            "model.name": options.model,
            "model.weights": str(options.weights) if options.weights else "",
            "model.device": options.device,
            "model.num_threads": int(options.num_threads),
            "input.modality": bag.modality.value,
            "input.compressed": bag.color_type == COMPRESSED,
            "input.aux_compressed": bag.aux_type == COMPRESSED,
            "output.diagnostics_period_s": float(diagnostics_period_s),
        }
        if options.keep is not None:
            overrides.update({f"prune.keep_ratio_{c}": float(options.keep) for c in ("ce", "dte", "ste")})
        params = log_path.with_suffix(".params.yaml")
        params.write_text(_yaml_params(overrides))
        cmd = _node_command() + ["--ros-args", "-r", f"__node:={options.node_name}"]
        if options.params_file is not None:
            if not Path(options.params_file).is_file():
                raise ReplayError(f"params file {options.params_file} does not exist")
            cmd += ["--params-file", str(options.params_file)]
        cmd += ["--params-file", str(params)]
        rgb_in = "image/compressed" if bag.color_type == COMPRESSED else "image"
        cmd += ["-r", f"{rgb_in}:={bag.topics.color}"]
        if bag.aux_topic:
            aux_in = "aux/image/compressed" if bag.aux_type == COMPRESSED else "aux/image"
            cmd += ["-r", f"{aux_in}:={bag.aux_topic}"]
        if bag.use_prompt and bag.topics.prompt:
            cmd += ["-r", f"prompt:={bag.topics.prompt}"]
        self.command = cmd
        env = dict(os.environ)
        env.update(replay_environment(domain_id))
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logger.info("node started (pid %d): %s", self.proc.pid, " ".join(cmd))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------------------------
# The player (rclpy)
# --------------------------------------------------------------------------------------------


@dataclass
class Arrival:
    """One ``~/target`` message as received by the player."""

    received_ns: int  # time.monotonic_ns() in the player
    stamp_ns: int
    msg: Any


class Player:
    """The replay's rclpy node: publishers for the bag topics and ``/clock``, the node's
    ``~/target`` and ``/diagnostics`` subscriptions, its services. Spins in its own thread.

    QoS: inputs RELIABLE, KEEP_LAST(5), VOLATILE (compatible with the node's ``reliable`` and
    ``best_effort`` subscriptions); ``/clock`` RELIABLE depth 1 (the node's time source reads it
    best effort); ``~/target`` and ``/diagnostics`` RELIABLE with deep queues, so nothing the node
    sends is lost on the player's side.
    """

    def __init__(self, domain_id: int, node_name: str = "utptrack") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from utptrack_ros.msg import TrackedTarget
        from utptrack_ros.srv import InitTarget

        self.ns = f"/{node_name}"
        self._lock = threading.Condition()
        self.arrivals: list[Arrival] = []
        self.diagnostics: list[tuple[int, Any]] = []  # (received_ns, DiagnosticArray)
        self._saved_env = {k: os.environ.get(k) for k in replay_environment(domain_id)}
        os.environ.update(replay_environment(domain_id))  # read by the middleware when the node is created
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        try:
            self.node = rclpy.create_node("utptrack_replay_player", context=self.context,
                                          start_parameter_services=False)
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.VOLATILE)
        self._publishers: dict[tuple[str, str], Any] = {}
        self.clock_pub = self.node.create_publisher(
            Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._clock_type = Clock
        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.target_sub = self.node.create_subscription(TrackedTarget, f"{self.ns}/target", self._on_target, deep)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, deep)
        self.init_client = self.node.create_client(InitTarget, f"{self.ns}/init_target")
        self.state_client = self.node.create_client(GetState, f"{self.ns}/get_state")
        self.change_client = self.node.create_client(ChangeState, f"{self.ns}/change_state")
        self._init_type, self._get_state, self._change_state = InitTarget, GetState, ChangeState
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, name="replay-player", daemon=True)
        self._thread.start()

    # -- callbacks (executor thread) ------------------------------------------------------------
    def _on_target(self, msg: Any) -> None:
        now = time.monotonic_ns()
        stamp = int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
        with self._lock:
            self.arrivals.append(Arrival(now, stamp, msg))
            self._lock.notify_all()

    def _on_diagnostics(self, msg: Any) -> None:
        if not any(s.name.startswith(self.ns + ":") for s in msg.status):
            return
        with self._lock:
            self.diagnostics.append((time.monotonic_ns(), msg))
            self._lock.notify_all()

    # -- publishing -------------------------------------------------------------------------------
    def publisher(self, topic: str, msgtype: str) -> Any:
        key = (topic, msgtype)
        if key not in self._publishers:
            from sensor_msgs.msg import CompressedImage, Image
            from std_msgs.msg import String

            cls = {IMAGE: Image, COMPRESSED: CompressedImage, STRING: String}[msgtype]
            qos = self._qos_in if msgtype != STRING else 10
            self._publishers[key] = self.node.create_publisher(cls, topic, qos)
        return self._publishers[key]

    def publish_clock(self, t_ns: int) -> None:
        msg = self._clock_type()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 10**9)
        self.clock_pub.publish(msg)

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """``predicate()`` (called under the lock) once truthy, else None after ``timeout`` s."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.05))

    def arrival_count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def call(self, client: Any, request: Any, timeout: float) -> Any:
        """Call a service; None when it is unavailable or does not answer in ``timeout`` s."""
        end = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=max(0.1, timeout)):
            return None
        future = client.call_async(request)
        while not future.done() and time.monotonic() < end:
            time.sleep(0.005)
        if not future.done():
            future.cancel()
            return None
        return future.result()

    def node_state(self, timeout: float = 2.0) -> Optional[str]:
        res = self.call(self.state_client, self._get_state.Request(), timeout)
        return None if res is None else str(res.current_state.label)

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        from lifecycle_msgs.msg import Transition

        request = self._change_state.Request(transition=Transition(id=transition_id))
        res = self.call(self.change_client, request, timeout)
        return bool(res is not None and res.success)

    def init_target(self, stamp_ns: int, box_xywh: Sequence[float], prompt: str, target_id: str,
                    timeout: float) -> Any:
        x, y, w, h = (float(v) for v in box_xywh)
        req = self._init_type.Request(center_x=x + w / 2.0, center_y=y + h / 2.0, size_x=w, size_y=h,
                                      prompt=prompt, target_id=target_id)
        req.header.stamp.sec, req.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
        return self.call(self.init_client, req, timeout)

    def target_publishers(self) -> int:
        return self.target_sub.get_publisher_count()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


# --------------------------------------------------------------------------------------------
# Playing one bag
# --------------------------------------------------------------------------------------------


@dataclass
class BagRecord:
    """What the replay of one bag recorded (per frame arrays have one row per colour frame)."""

    bag: ReplayBag
    sent_ns: np.ndarray  # -1 = not part of the timed stream (up to the init frame)
    received_ns: np.ndarray  # -1 = no answer (missed), or up to the init frame
    boxes_xywh: np.ndarray  # NaN = no box
    confidence: np.ndarray
    kept_fraction: np.ndarray
    state: list[str]
    node_latency_ms: np.ndarray  # the node's own latency_ms (arrival in the node -> publish)
    model_ms: np.ndarray
    init_index: int
    init_ok: bool
    init_message: str
    init_call_ms: float
    bag_time_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # recorded time per frame
    late_answers: int = 0
    extra_answers: int = 0
    node_counters: dict[str, Any] = field(default_factory=dict)
    node_status: dict[str, Any] = field(default_factory=dict)
    targets: list[Arrival] = field(default_factory=list)
    diagnostics: list[tuple[int, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def num_frames(self) -> int:
        return len(self.sent_ns)

    @property
    def answered(self) -> int:
        return int((self.received_ns[self.init_index + 1:] >= 0).sum())

    @property
    def missed(self) -> int:
        return int((self.received_ns[self.init_index + 1:] < 0).sum())


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


class _BagPlayer:
    """Plays one bag on a running node; see the module docstring for the protocol."""

    def __init__(self, player: Player, bag: ReplayBag, options: ReplayOptions, diag_period_s: float,
                 progress: bool, node: Optional[NodeProcess] = None) -> None:
        self.p, self.bag, self.o = player, bag, options
        self.diag_period_ns = int(diag_period_s * 1e9)
        self.progress = progress
        self.node = node

    def _await(self, find: Callable[[], Optional[Arrival]], timeout: float) -> Optional[Arrival]:
        """``find()``'s arrival, or None after ``timeout``; raises at once if the node process died."""
        node = self.node
        found = self.p.wait(lambda: find() or (node is not None and not node.alive()), timeout)
        if found is True and node is not None:
            raise ReplayError(f"the node exited (code {node.proc.returncode}) while playing {self.bag.name}; "
                              f"its log ({node.log_path}):\n{node.log_tail()}")
        return found or None

    def _publish_frame(self, frame: PlayFrame) -> int:
        p = self.p
        p.publish_clock(frame.bag_time_ns)
        for topic, raw in frame.before:
            msgtype = STRING if topic == self.bag.topics.prompt else (self.bag.aux_type or IMAGE)
            p.publisher(topic, msgtype).publish(raw)
        pub = p.publisher(self.bag.topics.color, self.bag.color_type)
        sent = time.monotonic_ns()
        pub.publish(frame.color)
        return sent

    def _wait_inputs_matched(self, timeout: float = 30.0) -> None:
        pubs = [self.p.publisher(self.bag.topics.color, self.bag.color_type)]
        if self.bag.aux_topic:
            pubs.append(self.p.publisher(self.bag.aux_topic, self.bag.aux_type or IMAGE))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(pub.get_subscription_count() > 0 for pub in pubs) and self.p.target_publishers() > 0:
                time.sleep(0.2)  # the reader side finishes matching a moment after the writer side
                return
            time.sleep(0.05)
        raise ReplayError(f"the node did not subscribe to {[pub.topic_name for pub in pubs]} within {timeout:.0f} s")

    def _answer(self, stamp: int, since: int) -> Callable[[], Optional[Arrival]]:
        arrivals = self.p.arrivals

        def find() -> Optional[Arrival]:
            for a in reversed(arrivals[since:]):
                if a.stamp_ns == stamp:
                    return a
            return None

        return find

    def play(self, frames: list[PlayFrame], baseline: Optional[Mapping[str, Mapping[str, str]]] = None) -> BagRecord:
        """Play ``frames`` (``read_play_frames``); ``baseline``: the node's status before the bag
        (its counters are reported as increases over it)."""
        from tqdm import tqdm

        bag, seq, o = self.bag, self.bag.sequence, self.o
        n = len(frames)
        from ..eval.metrics import first_valid_index

        init = first_valid_index(seq.gt, seq.absent)
        rec = BagRecord(bag=bag, sent_ns=np.full(n, -1, np.int64), received_ns=np.full(n, -1, np.int64),
                        boxes_xywh=np.full((n, 4), np.nan), confidence=np.full(n, np.nan),
                        kept_fraction=np.full(n, np.nan), state=["none"] * n, node_latency_ms=np.full(n, np.nan),
                        model_ms=np.full(n, np.nan), init_index=init, init_ok=False, init_message="",
                        init_call_ms=float("nan"), bag_time_ns=np.array([f.bag_time_ns for f in frames], np.int64))
        self._wait_inputs_matched()
        start_arrivals = self.p.arrival_count()
        start_diags = len(self.p.diagnostics)
        t_wall = time.monotonic()
        bar = tqdm(total=n, desc=f"replay {bag.name}", unit="frame", disable=not self.progress, leave=False)
        try:
            # 1. frames up to the first annotated one, one by one (retried: the first frames after
            #    (re)activation may race the subscription match)
            for frame in frames[: init + 1]:
                for attempt in range(3):
                    since = self.p.arrival_count()
                    self._publish_frame(frame)
                    if self._await(self._answer(frame.stamp_ns, since), min(o.frame_timeout_s, 5.0 * (attempt + 1))):
                        break
                else:
                    raise ReplayError(f"{bag.name}: the node did not answer frame {frame.index} (stamp "
                                      f"{frame.stamp_ns}) before the init; is it active on {bag.topics.color}?")
                bar.update()
            # 2. the init service on the first annotated frame
            prompt = (seq.prompt or "") if bag.use_prompt else ""
            t0 = time.monotonic_ns()
            res = self.p.init_target(frames[init].stamp_ns, seq.gt[init], prompt, bag.name, o.init_timeout_s)
            rec.init_call_ms = (time.monotonic_ns() - t0) / 1e6
            if res is None:
                raise ReplayError(f"{bag.name}: ~/init_target did not answer within {o.init_timeout_s:.0f} s")
            rec.init_ok, rec.init_message = bool(res.success), str(res.message)
            if not res.success:
                logger.warning("%s: init refused: %s", bag.name, res.message)
            else:
                rec.boxes_xywh[init] = seq.gt[init]
                rec.state[init] = "init"
            # 3. the rest, in the chosen mode
            after_init = self.p.arrival_count()
            rest = frames[init + 1:] if rec.init_ok else []
            if o.mode == "lockstep":
                self._lockstep(rest, rec, after_init, bar)
            else:
                self._timed(rest, rec, after_init, bar)
            bar.update(n - bar.n)
        finally:
            bar.close()
        rec.wall_time_s = time.monotonic() - t_wall
        last_time = frames[-1].bag_time_ns
        status = _flush_diagnostics(self.p, last_time, self.diag_period_ns)
        if status is None:
            logger.warning("%s: no /diagnostics from the node after the bag", bag.name)
        else:
            rec.node_status = status
            before = _counters(baseline or {})
            rec.node_counters = {k: v - before.get(k, 0) for k, v in _counters(status).items()}
        with self.p._lock:
            rec.targets = list(self.p.arrivals[start_arrivals:])
            rec.diagnostics = list(self.p.diagnostics[start_diags:])
        return rec

    def _store(self, rec: BagRecord, i: int, arrival: Arrival) -> None:
        m = arrival.msg
        rec.received_ns[i] = arrival.received_ns
        rec.state[i] = STATE_NAMES.get(int(m.state), str(m.state))
        rec.node_latency_ms[i] = float(m.latency_ms)
        rec.model_ms[i] = float(m.model_ms)
        if int(m.state) != 0:  # IDLE carries no box
            rec.boxes_xywh[i] = (m.center_x - m.size_x / 2.0, m.center_y - m.size_y / 2.0, m.size_x, m.size_y)
            rec.confidence[i] = float(m.confidence)
            rec.kept_fraction[i] = float(m.kept_token_fraction)

    def _lockstep(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        missed = 0
        for frame in frames:
            start = self.p.arrival_count()
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            arrival = self._await(self._answer(frame.stamp_ns, start), self.o.frame_timeout_s)
            if arrival is None:
                missed += 1
                logger.warning("%s: no answer to frame %d within %.1f s (missed)", self.bag.name, frame.index,
                               self.o.frame_timeout_s)
            else:
                self._store(rec, frame.index, arrival)
            bar.update()
            bar.set_postfix_str(f"missed {missed}")
        # answers that came after their frame's timeout do not count; they are reported
        with self.p._lock:
            answered_late = {a.stamp_ns for a in self.p.arrivals[since:]}
        rec.late_answers = sum(1 for f in frames if rec.received_ns[f.index] < 0 and f.stamp_ns in answered_late)

    def _timed(self, frames: list[PlayFrame], rec: BagRecord, since: int, bar: Any) -> None:
        if not frames:
            return
        rate = 1.0 if self.o.mode == "realtime" else self.o.rate
        base_bag = frames[0].bag_time_ns
        t0 = time.monotonic_ns()
        clock_step = 20_000_000  # /clock every 20 ms of wall time between frames (like `ros2 bag play --clock 50`)
        for frame in frames:
            due = t0 + int((frame.bag_time_ns - base_bag) / rate)
            while True:
                now = time.monotonic_ns()
                if now >= due:
                    break
                sim = base_bag + int((now - t0) * rate)
                self.p.publish_clock(min(sim, frame.bag_time_ns))
                time.sleep(min(clock_step, due - now) / 1e9)
            rec.sent_ns[frame.index] = self._publish_frame(frame)
            bar.update()
        index = {f.stamp_ns: f.index for f in frames}
        pending = set(index)
        end = time.monotonic() + self.o.drain_timeout_s

        def all_in() -> bool:
            for a in self.p.arrivals[since:]:
                pending.discard(a.stamp_ns)
            return not pending

        self.p.wait(all_in, max(0.0, end - time.monotonic()))
        with self.p._lock:
            arrivals = list(self.p.arrivals[since:])
        seen: set[int] = set()
        for a in arrivals:
            i = index.get(a.stamp_ns)
            if i is None:
                continue
            if a.stamp_ns in seen:
                rec.extra_answers += 1
                continue
            seen.add(a.stamp_ns)
            self._store(rec, i, a)


# --------------------------------------------------------------------------------------------
# Node lifecycle between bags, output bags
# --------------------------------------------------------------------------------------------

_TRANSITION_ACTIVATE, _TRANSITION_DEACTIVATE = 3, 4


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


def target_msg_definition() -> str:
    """``msg/TrackedTarget.msg`` of this package (for registering the type with rosbags)."""
    path = find_share_file("msg/TrackedTarget.msg")
    if path is None:
        raise ReplayError("msg/TrackedTarget.msg not found (build the interfaces: make setup)")
    return path.read_text()


def write_output_bag(record: BagRecord, path: Path, node_name: str) -> Path:
    """The node's outputs during one bag as a new rosbag2 (mcap): ``/<node>/target`` at each
    output's header stamp, ``/diagnostics`` at each message's stamp (both on the replay clock)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    ts = _typestore()
    ts.register(get_types_from_msg(target_msg_definition(), TARGET_TYPE))
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    with writer:
        source = {"bag": str(record.bag.path), "sequence": record.bag.name}
        writer.set_custom_data("utptrack.replay", json.dumps(source))
        targets = writer.add_connection(f"/{node_name}/target", TARGET_TYPE, typestore=ts)
        diags = writer.add_connection("/diagnostics", DIAGNOSTICS_TYPE, typestore=ts)
        items = [(a.stamp_ns, targets, a.msg) for a in record.targets]
        for _, msg in record.diagnostics:
            items.append((int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec), diags, msg))
        for t, connection, msg in sorted(items, key=lambda x: x[0]):
            writer.write(connection, int(t), serialize_message(msg))
    return path


# --------------------------------------------------------------------------------------------
# Replaying many bags
# --------------------------------------------------------------------------------------------


def replay_bags(bags: Sequence[ReplayBag], options: ReplayOptions, node: NodeOptions, *,
                progress: bool = True, diagnostics_period_s: float = 0.2) -> list[BagRecord]:
    """Play every bag through the node (one node process per distinct input set).

    Returns:
        One ``BagRecord`` per bag, in the order given.

    Raises:
        ReplayError: the node did not start / become active / answer before the init.
    """
    from tqdm import tqdm

    domain = node.domain_id if node.domain_id is not None else private_domain_id()
    log_dir = Path(node.log_dir) if node.log_dir else Path(tempfile.mkdtemp(prefix="utptrack-replay-logs-"))
    groups: dict[tuple, list[int]] = {}
    for i, bag in enumerate(bags):
        groups.setdefault(bag.node_key(), []).append(i)
    records: list[Optional[BagRecord]] = [None] * len(bags)
    overall = tqdm(total=len(bags), desc="replay", unit="bag", disable=not progress)
    player = Player(domain, node.node_name)
    try:
        for k, indices in enumerate(groups.values()):
            first = bags[indices[0]]
            proc = NodeProcess(first, node, domain, log_dir / f"node_{k}.log", diagnostics_period_s)
            try:
                _wait_active(player, proc, node.startup_timeout_s)
                if player.target_publishers() > 1:
                    raise ReplayError(f"another node publishes {player.ns}/target in ROS domain {domain}; choose "
                                      "another domain id")
                for index in indices:
                    bag = bags[index]
                    frames = read_play_frames(bag)
                    first_ns = min(frames[0].bag_time_ns, frames[0].stamp_ns)
                    baseline = _start_bag(player, proc, first_ns, int(diagnostics_period_s * 1e9))
                    records[index] = _BagPlayer(player, bag, options, diagnostics_period_s, progress, proc).play(
                        frames, baseline)
                    r = records[index]
                    overall.set_postfix_str(f"{bag.name}: {r.answered} answered, {r.missed} missed")
                    overall.update()
                    if not proc.alive():
                        raise ReplayError(f"the node exited during {bag.name}; log:\n{proc.log_tail()}")
            finally:
                code = proc.stop()
                logger.info("node stopped (exit code %s), log %s", code, proc.log_path)
    finally:
        overall.close()
        player.close()
    return [r for r in records if r is not None]


def comparison_specs(compare: Sequence[str], node: NodeOptions, *, use_prompt: bool,
                     live_name: str = "", note: str = "") -> list[Any]:
    """Offline rows run on the same decoded frames: ``pruned`` (the node's model, direct),
    ``unpruned`` (the same weights, every keep ratio 1.0), ``csrt``/``kcf``/``mil``."""
    from ..eval.offline import CoreTrackerFactory, TrackerSpec, peer_spec

    weights = str(node.weights) if node.weights else None
    specs = []
    for item in compare:
        if item not in COMPARE_CHOICES:
            raise ValueError(f"unknown comparison {item!r}; choose from {COMPARE_CHOICES}")
        if item == "pruned":
            factory = CoreTrackerFactory(node.model, weights=weights, keep=node.keep, device=node.device)
            keep = f", keep {node.keep:g}" if node.keep is not None else ""
            specs.append(TrackerSpec(node.model, factory, aux="auto", use_prompt=use_prompt,
                                     description=f"UTPTrack {node.model}{keep}, offline (direct Tracker"
                                                 + (f", same frames and weights as {live_name})" if live_name else ")")
                                                 + note))
        elif item == "unpruned":
            factory = CoreTrackerFactory(node.model, weights=weights, keep=1.0, device=node.device)
            specs.append(TrackerSpec(f"{node.model}_unpruned", factory, aux="auto", use_prompt=use_prompt,
                                     description=f"UTPTrack {node.model}, same weights, every keep ratio 1.0, offline"
                                                 + note))
        else:
            specs.append(peer_spec(item))
    return specs


def _run_offline_rows(specs: Sequence[Any], sequences: Sequence[DataSequence], progress: bool,
                      num_threads: int = 0) -> list[Any]:
    from tqdm import tqdm

    from ..eval.offline import CoreTrackerFactory, run_sequence

    runs = []
    bar = tqdm(total=len(specs) * len(sequences), desc="comparisons", unit="run", disable=not progress)
    saved_threads = None
    if num_threads > 0 and any(isinstance(s.factory, CoreTrackerFactory) for s in specs):
        import torch

        saved_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)  # the node's thread budget, for comparable timings
    try:
        for spec in specs:
            for seq in sequences:
                runs.append(run_sequence(spec, seq))
                bar.set_postfix_str(f"{spec.name}/{seq.name}")
                bar.update()
    finally:
        bar.close()
        if saved_threads is not None:
            import torch

            torch.set_num_threads(saved_threads)
    return runs


def _live_run(record: BagRecord, name: str) -> Any:
    from ..eval.offline import SequenceRun

    time_ms = np.full(record.num_frames, np.nan)
    ok = (record.sent_ns >= 0) & (record.received_ns >= 0)
    time_ms[ok] = (record.received_ns[ok] - record.sent_ns[ok]) / 1e6
    time_ms[record.init_index] = record.init_call_ms
    dropped = None
    if record.node_counters:
        dropped = int(record.node_counters.get("dropped_stale", 0) + record.node_counters.get("unmatched_rgb", 0))
    run = SequenceRun.from_outputs(
        name, record.bag.sequence, record.boxes_xywh, sent_ns=record.sent_ns, received_ns=record.received_ns,
        confidence=record.confidence, state=record.state, kept_fraction=record.kept_fraction, time_ms=time_ms,
        aux_used=record.bag.modality.value if record.bag.modality is not Modality.RGB else "none",
        prompt_used=bool(record.bag.use_prompt and record.bag.sequence.prompt), source=str(record.bag.path),
        num_dropped_frames=dropped,
    )
    if not record.init_ok:
        run.error = f"init refused: {record.init_message}"
    return run


def check_new_dir(path: Optional[Path], force: bool, what: str) -> None:
    """Refuse a folder that holds files (unless ``force``), before anything runs."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{path} already holds {what}; choose another folder or pass --force to replace it")


def _record_summary(record: BagRecord) -> dict[str, Any]:
    r = record
    stream = r.sent_ns >= 0
    origin = int(r.sent_ns[stream][0]) if stream.any() else 0
    sent_ms = np.where(stream, (r.sent_ns - origin) / 1e6, np.nan)
    received_ms = np.where(r.received_ns >= 0, (r.received_ns - origin) / 1e6, np.nan)
    return {
        "bag": str(r.bag.path),
        "gt_source": r.bag.gt_source,
        "modality": r.bag.modality.value,
        "topics": {"color": r.bag.topics.color, "aux": r.bag.aux_topic,
                   "prompt": r.bag.topics.prompt if r.bag.use_prompt else None},
        "message_types": {"color": r.bag.color_type, "aux": r.bag.aux_type},
        "prompt": r.bag.sequence.prompt if r.bag.use_prompt else None,
        "init": {"frame": r.init_index, "stamp_ns": int(r.bag.sequence.stamp_ns(r.init_index)), "success": r.init_ok,
                 "message": r.init_message, "service_ms": r.init_call_ms},
        "frames": r.num_frames,
        "answered": r.answered,
        "missed": r.missed,
        "late_answers": r.late_answers,
        "extra_answers": r.extra_answers,
        "node_counters": r.node_counters,
        "node_status": r.node_status,
        "bag_time_ns": [int(t) for t in r.bag_time_ns],
        "sent_ms": sent_ms,  # player clock, from the first timed frame; NaN up to the init frame
        "received_ms": received_ms,  # same origin; NaN = no answer
        "node_latency_ms": r.node_latency_ms,
        "node_model_ms": r.model_ms,
        "wall_time_s": round(r.wall_time_s, 3),
    }


def evaluate(bags: Sequence[ReplayBag], out_dir: Union[str, Path], *, options: ReplayOptions = ReplayOptions(),
             node: NodeOptions = NodeOptions(), compare: Sequence[str] = COMPARE_CHOICES,
             record_dir: Optional[Union[str, Path]] = None, force: bool = False, report: bool = True,
             progress: bool = True, note: str = "") -> dict[str, Any]:
    """Replay ``bags`` through the node, run the comparison rows, write results and report.

    Args:
        bags: from ``open_bag`` (checked before anything starts).
        out_dir: results folder (``eval.offline.write_results`` layout); refused when it holds
            files unless ``force``, and replaced only after everything succeeded.
        options / node: how to play, which node.
        compare: offline comparison rows (``COMPARE_CHOICES``); empty for none.
        record_dir: write the node's outputs per bag to ``<record_dir>/<sequence>/`` (mcap).
        force: replace existing ``out_dir`` / ``record_dir`` contents.
        report: write the Markdown/HTML/PNG report.
        progress: progress bars.
        note: appended to the model rows' descriptions (e.g. `` (RANDOM WEIGHTS)``).

    Returns:
        The results dict (``results.json``).

    Raises:
        FileExistsError: ``out_dir`` or ``record_dir`` holds files and ``force`` is False.
        ReplayError: the node could not be started or driven.
        ValueError: no bags, duplicate sequence names, unknown comparison.
    """
    out_dir = Path(out_dir)
    record_path = Path(record_dir) if record_dir is not None else None
    check_new_dir(out_dir, force, "results")
    check_new_dir(record_path, force, "recorded bags")
    if not bags:
        raise ValueError("nothing to replay: give at least one bag")
    names = [b.name for b in bags]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"sequence names must be unique across the bags; repeated: {dupes}")
    use_prompt = any(b.use_prompt and b.sequence.prompt for b in bags)
    live_name = f"{node.model}@node"
    specs = comparison_specs(list(compare), node, use_prompt=use_prompt, live_name=live_name, note=note)

    t_start = time.time()
    records = replay_bags(bags, options, node, progress=progress)
    t_live = time.time() - t_start
    runs = [_live_run(r, live_name) for r in records]
    runs += _run_offline_rows(specs, [b.sequence for b in bags], progress, node.num_threads)

    recorded: Optional[Path] = None
    if record_path is not None:  # written aside now, moved into place once the results are written
        record_path.parent.mkdir(parents=True, exist_ok=True)
        recorded = Path(tempfile.mkdtemp(prefix=f".{record_path.name}.tmp-", dir=record_path.parent))
    try:
        if recorded is not None:
            from ..eval.offline import safe_name

            for r in records:
                write_output_bag(r, recorded / safe_name(r.bag.name), node.node_name)
        results = _write(records, runs, specs, out_dir, options, node, live_name, use_prompt, note, t_start, t_live,
                         record_path, force, report, bags)
        if recorded is not None and record_path is not None:
            check_new_dir(record_path, force, "recorded bags")
            if record_path.exists():
                shutil.rmtree(record_path)
            recorded.rename(record_path)
    finally:
        if recorded is not None and recorded.exists():
            shutil.rmtree(recorded, ignore_errors=True)
    return results


def _write(records: Sequence[BagRecord], runs: list[Any], specs: Sequence[Any], out_dir: Path, options: ReplayOptions,
           node: NodeOptions, live_name: str, use_prompt: bool, note: str, t_start: float, t_live: float,
           record_path: Optional[Path], force: bool, report: bool, bags: Sequence[ReplayBag]) -> dict[str, Any]:
    from ..eval.offline import write_results

    keep = f", keep {node.keep:g}" if node.keep is not None else ""
    trackers = {live_name: {"description": f"UTPTrack {node.model}{keep} through the ROS node ({options.mode}"
                                           f"{'' if options.mode != 'rate' else f' x{options.rate:g}'}, DDS){note}",
                            "aux": "auto", "use_prompt": use_prompt, "live": True}}
    for spec in specs:
        trackers[spec.name] = {"description": spec.description, "aux": spec.aux, "use_prompt": spec.use_prompt}
    settings = {
        "mode": f"live-{options.mode}",
        "replay": dataclasses.asdict(options),
        "node": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(node).items()},
        "weights": str(node.weights) if node.weights else "shipped",
        "wall_time_s": round(time.time() - t_start, 3),
        "live_wall_time_s": round(t_live, 3),
        "init_rule": "first frame with a valid GT box; ~/init_target with that frame's stamp and GT box",
        "latency": "live: sent = player publishes the colour message, received = its ~/target arrives in the "
                   "player (monotonic clock); offline rows: the track() call",
        "dropped_frames": "node counters dropped_stale + unmatched_rgb (its /diagnostics after each bag)",
        "bags": {r.bag.name: _record_summary(r) for r in records},
        "record_dir": str(record_path) if record_path else None,
    }
    sequences = {b.name: b.sequence for b in bags}
    return write_results(runs, out_dir, trackers=trackers, settings=settings, force=force, report=report,
                         sequences=sequences)



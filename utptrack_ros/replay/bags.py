"""Bag input: checks, the decoded sequence to score (``open_bag`` -> ``ReplayBag``) and the raw
messages to play per colour frame (``read_play_frames`` -> ``PlayFrame``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from ..data import BagTopics, TrackingSequence, load_bag
from ..data.bag import STRING, bag_topic_types, open_bag_reader
from ..data.errors import (FrameCountError, MissingTopicError, SequenceError, SequenceFormatError,
                            UnsupportedMessageError)
from ..data.folder import read_groundtruth
from ..data.sequence import AUX_MODALITIES
from ..eval.metrics import valid_gt_mask
from ..types import Modality


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
        info_topic: the colour camera_info topic played with a depth stream (the node's
            ``~/target_point``), None when the bag has none or the aux stream is not depth.
    """

    path: Path
    sequence: TrackingSequence
    topics: BagTopics
    modality: Modality
    color_type: str
    aux_type: Optional[str]
    use_prompt: bool
    gt_source: str
    info_topic: Optional[str] = None

    @property
    def aux_topic(self) -> Optional[str]:
        return None if self.modality is Modality.RGB else self.topics.aux(self.modality)

    @property
    def name(self) -> str:
        return str(self.sequence.name)

    def node_key(self) -> tuple:
        """Bags with equal keys can share one node process (same inputs and remaps)."""
        return (self.topics.color, self.color_type, self.modality.value, self.aux_topic, self.aux_type,
                self.topics.prompt if self.use_prompt else None, self.info_topic)


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
        seq = TrackingSequence(name=seq.name, frames=seq.frames, gt=gt, prompt=seq.prompt, attributes=attributes,
                           frame_info=seq.frame_info, stamps_ns=seq.stamps_ns)
        gt_source = f"file {gt_path}"
    stamps = np.asarray(seq.stamps_ns)
    if len(stamps) > 1 and np.any(np.diff(stamps) <= 0):
        k = int(np.flatnonzero(np.diff(stamps) <= 0)[0])
        raise SequenceFormatError(f"{path}: colour frames {k} and {k + 1} share the stamp {stamps[k]}; outputs are "
                                  "matched to inputs by stamp, so every colour frame needs its own")
    if not valid_gt_mask(seq.gt, seq.absent).any():
        raise SequenceFormatError(f"{path}: no frame has a valid ground-truth box (nothing to initialise on)")
    aux_topic = None if chosen is Modality.RGB else topics.aux(chosen)
    return ReplayBag(path=path, sequence=seq, topics=topics, modality=chosen, color_type=available[topics.color],
                     aux_type=available.get(aux_topic) if aux_topic else None, use_prompt=use_prompt,
                     gt_source=gt_source,
                     info_topic=topics.camera_info if chosen is Modality.DEPTH and topics.camera_info in available else None)


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
    if bag.info_topic:
        wanted[bag.info_topic] = "info"
    color: dict[int, tuple[int, bytes]] = {}
    aux: dict[int, list[tuple[int, str, bytes]]] = {}  # aux and camera_info, by colour frame
    prompts: list[tuple[int, bytes]] = []
    reader = open_bag_reader(bag.path)
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
                aux.setdefault(near, []).append((stamp, kind, raw))
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
        # camera_info first (as drivers publish it before the image it describes), then the aux frame
        for _, kind, raw_aux in sorted(aux.get(i, []), key=lambda a: (a[1] != "info", a[0])):
            before.append((bag.info_topic if kind == "info" else bag.aux_topic, raw_aux))  # type: ignore[arg-type]
        frames.append(PlayFrame(i, int(stamps[i]), bag_time, raw, before))
    return frames

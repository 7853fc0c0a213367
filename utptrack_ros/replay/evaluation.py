"""Replaying many bags and evaluating them: one node process per input set (``replay_bags``),
the offline comparison rows (``comparison_specs``), results and report (``evaluate``)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..data import TrackingSequence
from ..errors import ConfigError
from ..eval.offline import write_results
from ..eval.position3d import PointTrack
from ..eval.results import check_out_dir, safe_name
from ..eval.sequence_run import SequenceRun, run_sequence
from ..eval.specs import CoreTrackerFactory, TrackerSpec, peer_spec
from ..types import Modality
from .bags import ReplayBag, read_play_frames
from .node_process import private_domain_id, start_replay_node
from .options import COMPARE_CHOICES, NodeOptions, ReplayError, ReplayOptions
from .output_bag import write_output_bag
from .player import BagRecord, Player

logger = logging.getLogger(__name__)


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
            proc = start_replay_node(first, node, domain, log_dir / f"node_{k}.log", diagnostics_period_s)
            try:
                player.wait_active(proc, node.startup_timeout_s)
                if player.target_publishers() > 1:
                    raise ReplayError(f"another node publishes {player.ns}/target in ROS domain {domain}; choose "
                                      "another domain id")
                for index in indices:
                    bag = bags[index]
                    frames = read_play_frames(bag)
                    first_ns = min(frames[0].bag_time_ns, frames[0].stamp_ns)
                    baseline = player.start_bag(proc, first_ns, int(diagnostics_period_s * 1e9))
                    r = player.play_bag(bag, frames, options, diagnostics_period_s, progress=progress, node=proc,
                                        baseline=baseline)
                    records[index] = r
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
                     live_name: str = "", note: str = "") -> list[TrackerSpec]:
    """Offline rows run on the same decoded frames: ``pruned`` (the node's model, direct),
    ``unpruned`` (the same weights, every keep ratio 1.0), ``csrt``/``kcf``/``mil``.

    Raises:
        ConfigError: an unknown comparison.
    """
    weights = str(node.weights) if node.weights else None
    specs = []
    for item in compare:
        if item not in COMPARE_CHOICES:
            raise ConfigError(f"unknown comparison {item!r}; choose from {COMPARE_CHOICES}")
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


def _run_offline_rows(specs: Sequence[TrackerSpec], sequences: Sequence[TrackingSequence], progress: bool,
                      num_threads: int = 0) -> list[SequenceRun]:
    from tqdm import tqdm

    runs = []
    bar = tqdm(total=len(specs) * len(sequences), desc="comparisons", unit="run", disable=not progress)
    saved_threads = None
    if num_threads > 0 and any(isinstance(s.factory, CoreTrackerFactory) for s in specs):
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
            torch.set_num_threads(saved_threads)
    return runs


def _live_run(record: BagRecord, name: str) -> SequenceRun:
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
        num_dropped_frames=dropped, points=_published_points(record),
    )
    if not record.init_ok:
        run.error = f"init refused: {record.init_message}"
    return run


def _published_points(record: BagRecord) -> Optional[PointTrack]:
    """The node's own 3D points (``~/target``'s position fields) when the bag played camera_info
    with depth; None otherwise (the 3D evaluation then has nothing to score)."""
    if record.bag.info_topic is None or len(record.points_xyz) != record.num_frames:
        return None
    status = list(record.position_status)
    for i in range(min(record.init_index + 1, len(status))):
        status[i] = "before_init"  # the init frame's box is the ground truth: not scored
    points = record.points_xyz.copy()
    points[: record.init_index + 1] = np.nan
    return PointTrack(points_xyz=points, status=status, spread_m=record.depth_spread_m.copy(),
                      valid_fraction=record.depth_valid_fraction.copy())


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
        ConfigError: no bags, duplicate sequence names, unknown comparison.
    """
    out_dir = Path(out_dir)
    record_path = Path(record_dir) if record_dir is not None else None
    check_out_dir(out_dir, force, "results")
    check_out_dir(record_path, force, "recorded bags")
    if not bags:
        raise ConfigError("nothing to replay: give at least one bag")
    names = [b.name for b in bags]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"sequence names must be unique across the bags; repeated: {dupes}")
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
            for r in records:
                write_output_bag(r, recorded / safe_name(r.bag.name), node.node_name)
        results = _write(records, runs, specs, out_dir, options, node, live_name, use_prompt, note, t_start, t_live,
                         record_path, force, report, bags)
        if recorded is not None and record_path is not None:
            check_out_dir(record_path, force, "recorded bags")
            if record_path.exists():
                shutil.rmtree(record_path)
            recorded.rename(record_path)
    finally:
        if recorded is not None and recorded.exists():
            shutil.rmtree(recorded, ignore_errors=True)
    return results


def _write(records: Sequence[BagRecord], runs: list[SequenceRun], specs: Sequence[TrackerSpec], out_dir: Path, options: ReplayOptions,
           node: NodeOptions, live_name: str, use_prompt: bool, note: str, t_start: float, t_live: float,
           record_path: Optional[Path], force: bool, report: bool, bags: Sequence[ReplayBag]) -> dict[str, Any]:
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

"""Results I/O: runs scored into the results dict (``score_runs``, ``results_dict``), the per-run
files of a results folder (``write_run_files``), ``results.json`` (``load_results``) and the
folder rules (``check_out_dir``, ``replace_dir``). The runner (``eval.offline``) and the report
(``eval.report``) both build on this module; it imports neither.

Results folder layout::

    results.json                       every number (schema ``SCHEMA``)
    <tracker>/<seq>.txt                x,y,w,h per line (pytracking style, %.2f, nan = no output)
    <tracker>/<seq>_time.txt           seconds per frame (got10k style, nan = no call)
    <tracker>/<seq>_frames.csv         frame, stamp_ns, box, confidence, state, kept, time, failed
    <tracker>/<seq>_tokens.npz         search_region (N, 4), search_keep_mask (N, F, F) if reported
    <tracker>/<seq>_points.csv         the target's 3D point per frame + status + GT (RGB-D with a camera)
    report.md / report.html / report.json / plots/   (``eval.report``) unless disabled
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, InputError
from ..machine import machine_record
from . import metrics as M
from . import position3d as P
from .sequence_run import SequenceRun

SCHEMA = "utptrack_ros.eval.offline/1"
POINTS_CSV_COLUMNS = (
    "frame", "x_m", "y_m", "z_m", "status", "spread_m", "valid_fraction", "gt_x_m", "gt_y_m", "gt_z_m",
)  # fmt: skip
FRAME_CSV_COLUMNS = (
    "frame", "stamp_ns", "x", "y", "w", "h", "confidence", "state", "kept_fraction", "time_ms", "failed_update",
)  # fmt: skip


def safe_name(name: str) -> str:
    """A file-name-safe version of a tracker or sequence name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", name).strip("._")
    return cleaned or "unnamed"


def to_jsonable(obj: Any) -> Any:
    """numpy -> Python, non-finite floats -> None, recursively (for ``json.dump(allow_nan=False)``)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def check_unique(names: Sequence[str], what: str) -> None:
    """Raises ``ConfigError`` naming the repeated entries of ``names``."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{what} must be unique; repeated: {dupes}")


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def score_runs(runs: Sequence[SequenceRun]) -> dict[str, Any]:
    """Metrics of one tracker's runs: per sequence, overall, per attribute, latency.

    Returns:
        ``{"overall", "position3d", "latency", "per_attribute", "per_sequence", "kept_fraction_mean",
        "init_time_ms_mean", "num_failed_updates", "num_frame_errors"}`` (JSON-ready values);
        ``position3d`` (``eval.position3d``: ``overall`` and ``per_attribute`` 3D error statistics)
        is None unless some sequence has depth frames, a camera and ground-truth positions.
    """
    seq_metrics = []
    per_sequence: dict[str, Any] = {}
    streams = []
    positions: dict[str, P.PositionStats] = {}
    for run in runs:
        m = run.metrics()
        seq_metrics.append(m)
        in_stream = run.sent_ns >= 0
        stream = (run.sent_ns[in_stream], run.received_ns[in_stream])
        streams.append(stream)
        tracked = np.zeros(run.num_frames, bool)
        tracked[run.init_index + 1 :] = True
        per_sequence[run.sequence] = {
            "metrics": m.to_dict(),
            "latency": M.latency_stats([stream], num_dropped_frames=run.num_dropped_frames).to_dict(),
            "kept_fraction_mean": _nanmean(run.kept_fraction[tracked]),
            "init_time_ms": run.init_time_ms,
            "num_failed_updates": int(run.failed_update.sum()),
            "aux_used": run.aux_used,
            "prompt_used": run.prompt_used,
            "error": run.error,
            "frame_errors": list(run.frame_errors),
            "frames": {
                "stamp_ns": run.stamp_ns,
                "boxes_xywh": run.boxes_xywh,
                "confidence": run.confidence,
                "state": list(run.state),
                "kept_fraction": run.kept_fraction,
                "time_ms": run.time_ms,
                "failed_update": run.failed_update,
            },
        }
        if run.points is not None:
            per_sequence[run.sequence]["frames"].update(
                points_xyz=run.points.points_xyz, point_status=list(run.points.status))
            if run.gt_points_xyz is not None:
                positions[run.sequence] = P.position_stats(run.points.points_xyz, run.gt_points_xyz, run.init_index)
                per_sequence[run.sequence]["position3d"] = positions[run.sequence].to_dict()
        if run.points_error:
            per_sequence[run.sequence]["position3d_error"] = run.points_error
    kept = np.concatenate([r.kept_fraction[r.init_index + 1 :] for r in runs]) if runs else np.zeros(0)
    dropped = [r.num_dropped_frames for r in runs if r.num_dropped_frames is not None]
    latency = M.latency_stats(streams, num_dropped_frames=sum(dropped) if dropped else None)
    position3d = None
    if positions:
        flags = {m.name: m.attributes for m in seq_metrics}
        position3d = {
            "overall": P.pool(list(positions.values())).to_dict(),
            "per_attribute": {a: st.to_dict() for a, st in P.pool_by_attribute(positions, flags).items()},
        }
    return to_jsonable(
        {
            "overall": M.aggregate(seq_metrics).to_dict(),
            "position3d": position3d,
            "latency": latency.to_dict(per_frame=True),
            "per_attribute": {k: v.to_dict() for k, v in M.aggregate_by_attribute(seq_metrics).items()},
            "per_sequence": per_sequence,
            "kept_fraction_mean": _nanmean(kept),
            "init_time_ms_mean": _nanmean(np.array([r.init_time_ms for r in runs])),
            "num_failed_updates": int(sum(int(r.failed_update.sum()) for r in runs)),
            "num_frame_errors": int(sum(len(r.frame_errors) for r in runs)),
        }
    )


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def group_runs(runs: Sequence[SequenceRun], trackers: Optional[Mapping[str, Mapping[str, Any]]] = None
               ) -> tuple[dict[str, dict[str, Any]], dict[str, list[SequenceRun]]]:
    """Row metadata and runs per row, in row order (``trackers`` first, then rows in order of
    appearance), each row's runs sorted by sequence name.

    Raises:
        InputError: no runs.
        ConfigError: two rows, or two runs of one row, would share a file name.
    """
    if not runs:
        raise InputError("no runs to write")
    meta = {name: dict(info) for name, info in (trackers or {}).items()}
    for run in runs:
        meta.setdefault(run.tracker, {"description": ""})
    check_unique([safe_name(n) for n in meta], "tracker names (as folder names)")
    by_tracker: dict[str, list[SequenceRun]] = {n: [] for n in meta}
    for run in runs:
        by_tracker[run.tracker].append(run)
    for name, lst in by_tracker.items():
        check_unique([safe_name(r.sequence) for r in lst], f"sequence names of {name!r} (as file names)")
        lst.sort(key=lambda r: r.sequence)
    return meta, by_tracker


def results_dict(meta: Mapping[str, Mapping[str, Any]], by_tracker: Mapping[str, Sequence[SequenceRun]],
                 settings: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The ``results.json`` dict of grouped runs (``group_runs``), before per-run file names are added."""
    runs = [r for lst in by_tracker.values() for r in lst]
    first_runs = {r.sequence: r for r in sorted(runs, key=lambda r: r.sequence)}
    return {
        "schema": SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": machine_record(),
        "settings": dict(settings or {}),
        "conventions": {"otb": M.CONVENTION_OTB, "got10k": M.CONVENTION_GOT10K, "latency": M.CONVENTION_LATENCY,
                        "position3d": P.CONVENTION_3D},
        "trackers": {name: {**info, "folder": safe_name(name)} for name, info in meta.items() if by_tracker[name]},
        "sequences": {s: _sequence_info(r) for s, r in first_runs.items()},
        "results": {name: score_runs(lst) for name, lst in by_tracker.items() if lst},
    }


def _sequence_info(run: SequenceRun) -> dict[str, Any]:
    return {
        "source": run.source,
        "num_frames": run.num_frames,
        "image_size": list(run.image_size),
        "attributes": to_jsonable(run.attributes),
        "modalities": run.modalities,
        "prompt": run.prompt,
        "absent": run.absent.astype(int).tolist(),
        "gt_xywh": to_jsonable(run.gt_xywh),
    }


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_run_files(run: SequenceRun, folder: Path) -> dict[str, str]:
    """One run's files in its row's folder; returns ``{kind: file name}``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(run.sequence)
    files = {"boxes": f"{stem}.txt", "times": f"{stem}_time.txt", "frames": f"{stem}_frames.csv"}
    np.savetxt(folder / files["boxes"], run.boxes_xywh, fmt="%.2f", delimiter=",")
    np.savetxt(folder / files["times"], run.time_ms / 1e3, fmt="%.6f")
    with open(folder / files["frames"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FRAME_CSV_COLUMNS)
        for i in range(run.num_frames):
            x, y, w, h = run.boxes_xywh[i]
            writer.writerow(
                [i, int(run.stamp_ns[i])]
                + [f"{v:.2f}" for v in (x, y, w, h)]
                + [
                    f"{run.confidence[i]:.4f}",
                    run.state[i],
                    f"{run.kept_fraction[i]:.4f}",
                    f"{run.time_ms[i]:.3f}",
                    int(run.failed_update[i]),
                ]
            )
    if run.points is not None:
        files["points"] = f"{stem}_points.csv"
        with open(folder / files["points"], "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(POINTS_CSV_COLUMNS)
            gt = run.gt_points_xyz if run.gt_points_xyz is not None else np.full((run.num_frames, 3), np.nan)
            for i in range(run.num_frames):
                writer.writerow([i, *(f"{v:.4f}" for v in run.points.points_xyz[i]), run.points.status[i],
                                 f"{run.points.spread_m[i]:.4f}", f"{run.points.valid_fraction[i]:.3f}",
                                 *(f"{v:.4f}" for v in gt[i])])
    if run.search_keep_mask is not None and run.search_region is not None:
        files["tokens"] = f"{stem}_tokens.npz"
        np.savez_compressed(
            folder / files["tokens"], search_region=run.search_region, search_keep_mask=run.search_keep_mask
        )
    return files


def write_results_json(results: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """``folder/results.json`` of ``results``; returns the JSON-ready dict written."""
    data = to_jsonable(results)
    with open(folder / "results.json", "w") as fh:
        json.dump(data, fh, indent=1, allow_nan=False)
    return data


def load_results(out_dir: Union[str, Path]) -> dict[str, Any]:
    """Read ``results.json`` of a results folder."""
    with open(Path(out_dir) / "results.json") as fh:
        return json.load(fh)


def check_out_dir(path: Optional[Path], force: bool, what: str = "results") -> None:
    """Refuse a folder that holds files (unless ``force``), before anything runs; None passes.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty folder and ``force`` is False.
    """
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise FileExistsError(f"{path} already holds {what}; choose another folder or pass --force to replace it")


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir``; an existing ``out_dir`` is removed only after the move."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)

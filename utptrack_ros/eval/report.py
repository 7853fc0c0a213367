"""Evaluation report: Markdown + self-contained HTML + PNG plots + JSON, from one results dict.

Input: the dict ``eval.offline.write_results`` writes to ``results.json`` (schema
``results.SCHEMA``; scores in percent under the conventions named in its ``conventions``).

Consistency by construction: ``build_report_data`` turns the results into tables of raw numbers
(written to ``report.json``); Markdown, HTML and the terminal table are all rendered from those
tables by one cell formatter (``format_cell``), so every number shown is the JSON value rounded
to the column's decimals.

Plots (matplotlib ``Figure`` + Agg canvas, no pyplot state): success / precision / normalised
precision curves of all trackers, latency histogram, IoU over time per sequence, and a frame
strip per sequence with the GT box, every tracker's box and, where the tracker reported them,
the search region and its pruned search tokens (cells of the search grid that did *not* survive
candidate elimination are shaded; kept cells stay clear).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError
from . import metrics as M
from .results import safe_name, to_jsonable

logger = logging.getLogger(__name__)

REPORT_SCHEMA = "utptrack_ros.eval.report/1"
MISSING = "n/a"


@dataclass(frozen=True)
class Column:
    """One table column: dict key, header text, decimals (None = text)."""

    key: str
    header: str
    decimals: Optional[int] = None


SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("tracker", "Tracker"),
    Column("auc", "AUC", 1),
    Column("precision", "P@20px", 1),
    Column("norm_precision", "NP@0.2", 1),
    Column("ao", "AO", 1),
    Column("sr50", "SR0.5", 1),
    Column("sr75", "SR0.75", 1),
    Column("fps", "FPS", 1),
    Column("out_rate_hz", "Out Hz", 1),
    Column("latency_mean_ms", "Lat mean ms", 1),
    Column("latency_p50_ms", "Lat p50 ms", 1),
    Column("latency_p95_ms", "Lat p95 ms", 1),
    Column("latency_max_ms", "Lat max ms", 1),
    Column("kept_tokens_pct", "Kept tok %", 1),
    Column("missed_frames", "Missed", 0),
    Column("dropped_frames", "Dropped", 0),
    Column("failed_updates", "Failed upd", 0),
)

# The live replay's per-bag view (``settings.bags`` of a replay's results.json).
REPLAY_COLUMNS: tuple[Column, ...] = (
    Column("sequence", "Sequence"),
    Column("modality", "Aux"),
    Column("frames", "Frames", 0),
    Column("answered", "Answered", 0),
    Column("missed", "Missed", 0),
    Column("late", "Late", 0),
    Column("dropped", "Node dropped", 0),
    Column("init", "Init"),
    Column("e2e_p50", "E2E p50 ms", 1),
    Column("e2e_p95", "E2E p95 ms", 1),
    Column("node_p50", "Node p50 ms", 1),
    Column("model_p50", "Model p50 ms", 1),
)

TRACKER_COLUMNS: tuple[Column, ...] = (
    Column("tracker", "Tracker"),
    Column("description", "What it is"),
)


def format_cell(value: Any, decimals: Optional[int]) -> str:
    """The one formatter of every number in the Markdown, HTML and terminal tables."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return MISSING
    if decimals is None:
        return str(value)
    return f"{float(value):.{decimals}f}"


# --------------------------------------------------------------------------------------------
# Tables (raw numbers)
# --------------------------------------------------------------------------------------------


def _pct(value: Optional[float]) -> Optional[float]:
    return None if value is None else value * 100.0


def summary_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per tracker (``SUMMARY_COLUMNS`` keys), in the order of ``results['trackers']``.

    FPS is ``1000 / mean latency`` (the tracker's own rate); Out Hz is ros2_benchmark's
    ``MEAN_FRAME_RATE`` of outputs (includes frame loading offline, transport live).
    """
    rows = []
    for name in results["trackers"]:
        res = results["results"][name]
        overall, lat = res["overall"], res["latency"]
        rows.append(
            {
                "tracker": name,
                "auc": overall["auc"],
                "precision": overall["precision"],
                "norm_precision": overall["norm_precision"],
                "ao": overall["ao"],
                "sr50": overall["sr50"],
                "sr75": overall["sr75"],
                "fps": lat["mean_processing_rate_hz"],
                "out_rate_hz": lat["mean_frame_rate_hz"],
                "latency_mean_ms": lat["latency_mean_ms"],
                "latency_p50_ms": lat["latency_p50_ms"],
                "latency_p95_ms": lat["latency_p95_ms"],
                "latency_max_ms": lat["latency_max_ms"],
                "kept_tokens_pct": _pct(res.get("kept_fraction_mean")),
                "missed_frames": overall["num_missed_frames"],
                "dropped_frames": lat.get("num_dropped_frames"),
                "failed_updates": res.get("num_failed_updates", 0),
            }
        )
    return rows


def _median(values: Any) -> Optional[float]:
    arr = np.array([v for v in (values or []) if v is not None], dtype=np.float64)
    return float(np.median(arr)) if arr.size else None


def replay_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per replayed bag: frames answered / missed / late, the node's drop counters (stale +
    unmatched RGB), the init result and latencies (``REPLAY_COLUMNS`` keys); [] offline."""
    live = next((n for n, t in results["trackers"].items() if t.get("live")), None)
    rows = []
    for name, info in (results.get("settings", {}).get("bags") or {}).items():
        lat = results["results"][live]["per_sequence"][name]["latency"] if live else {}
        counters = info.get("node_counters") or {}
        rows.append(
            {
                "sequence": name,
                "modality": info.get("modality"),
                "frames": info.get("frames"),
                "answered": info.get("answered"),
                "missed": info.get("missed"),
                "late": info.get("late_answers"),
                "dropped": (counters.get("dropped_stale", 0) + counters.get("unmatched_rgb", 0)) if counters else None,
                "init": "ok" if (info.get("init") or {}).get("success") else "refused",
                "e2e_p50": lat.get("latency_p50_ms"),
                "e2e_p95": lat.get("latency_p95_ms"),
                "node_p50": _median(info.get("node_latency_ms")),
                "model_p50": _median(info.get("node_model_ms")),
            }
        )
    return rows


POSITION_COLUMNS: tuple[Column, ...] = (
    Column("tracker", "Tracker"),
    Column("auc", "AUC", 1),
    Column("precision", "P@20px", 1),
    Column("frames", "3D frames", 0),
    Column("valid_pct", "3D valid %", 1),
    Column("median_mm", "3D median mm", 1),
    Column("p95_mm", "3D p95 mm", 1),
)


def position_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per tracker with 3D results (``eval.position3d``): the 2D headline next to the 3D error
    statistics (``POSITION_COLUMNS`` keys); [] when no tracker has them."""
    rows = []
    for name in results["trackers"]:
        res = results["results"][name]
        pos = (res.get("position3d") or {}).get("overall")
        if not pos:
            continue
        rows.append({"tracker": name, "auc": res["overall"]["auc"], "precision": res["overall"]["precision"],
                     "frames": pos["num_frames"], "valid_pct": _pct(pos["valid_fraction"]),
                     "median_mm": pos["median_mm"], "p95_mm": pos["p95_mm"]})
    return rows


def position_attribute_table(results: Mapping[str, Any]) -> dict[str, Any]:
    """Rows per challenge attribute: each tracker's 3D median, p95 (mm) and valid %."""
    trackers = [t for t in results["trackers"] if (results["results"][t].get("position3d") or {}).get("overall")]
    attrs = sorted({a for t in trackers for a in results["results"][t]["position3d"]["per_attribute"]})
    rows = []
    for a in attrs:
        row: dict[str, Any] = {"attribute": a}
        for t in trackers:
            stats = results["results"][t]["position3d"]["per_attribute"].get(a) or {}
            row[f"{t}/median"], row[f"{t}/p95"] = stats.get("median_mm"), stats.get("p95_mm")
            row[f"{t}/valid"] = _pct(stats.get("valid_fraction"))
        rows.append(row)
    cols = [Column("attribute", "Attribute")]
    for t in trackers:
        cols += [Column(f"{t}/median", f"{t} med mm", 1), Column(f"{t}/p95", f"{t} p95 mm", 1),
                 Column(f"{t}/valid", f"{t} valid %", 1)]
    return _table(cols, rows)


def tracker_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"tracker": n, "description": t.get("description", "")} for n, t in results["trackers"].items()]


def attribute_table(results: Mapping[str, Any], metric: str = "auc") -> dict[str, Any]:
    """Rows per challenge attribute: number of sequences and each tracker's ``metric``."""
    trackers = list(results["trackers"])
    attrs = sorted({a for t in trackers for a in results["results"][t]["per_attribute"]})
    rows = []
    for a in attrs:
        row: dict[str, Any] = {"attribute": a, "num_sequences": None}
        for t in trackers:
            agg = results["results"][t]["per_attribute"].get(a)
            row[t] = agg[metric] if agg else None
            if agg:
                row["num_sequences"] = agg["num_sequences"]
        rows.append(row)
    cols = [Column("attribute", "Attribute"), Column("num_sequences", "Seqs", 0)]
    cols += [Column(t, f"{t} {metric.upper()}", 1) for t in trackers]
    return _table(cols, rows)


def sequence_table(results: Mapping[str, Any], metric: str = "auc") -> dict[str, Any]:
    """Rows per sequence: frames, attributes set, each tracker's ``metric`` and missed frames."""
    trackers = list(results["trackers"])
    rows = []
    for s, info in results["sequences"].items():
        flags = [k for k, v in M.attribute_flags(info.get("attributes") or {}).items() if v]
        row: dict[str, Any] = {"sequence": s, "num_frames": info["num_frames"], "attributes": ", ".join(sorted(flags))}
        for t in trackers:
            per = results["results"][t]["per_sequence"].get(s)
            row[t] = per["metrics"][metric] if per else None
            row[f"{t}/missed"] = per["metrics"]["num_missed_frames"] if per else None
        rows.append(row)
    cols = [Column("sequence", "Sequence"), Column("num_frames", "Frames", 0), Column("attributes", "Attributes")]
    for t in trackers:
        cols += [Column(t, f"{t} {metric.upper()}", 1), Column(f"{t}/missed", f"{t} missed", 0)]
    return _table(cols, rows)


ENVIRONMENT_COLUMNS: tuple[Column, ...] = (Column("item", "Item"), Column("value", "Value"))


def _node_runs(results: Mapping[str, Any]) -> list[str]:
    """``backend on device (model)`` of each node the live replay ran, from its /diagnostics."""
    seen: list[str] = []
    for bag in (results.get("settings", {}).get("bags") or {}).values():
        tracker = (bag.get("node_status") or {}).get("tracker") or {}
        if tracker.get("backend"):
            text = f"{tracker['backend']} on {tracker.get('device', '?')} ({tracker.get('model', '?')})"
            if text not in seen:
                seen.append(text)
    return seen


def environment_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the numbers were measured on: machine, load, versions, commit, node backend and threads."""
    env = results.get("environment") or {}
    rows: list[dict[str, Any]] = []

    def add(item: str, value: Any) -> None:
        if value not in (None, "", {}):
            rows.append({"item": item, "value": str(value)})

    add("CPU", env.get("cpu"))
    add("CPU cores", env.get("cpu_count"))
    if "load_1m" in env:
        add("load average (1/5/15 min, at write)", f"{env['load_1m']} / {env.get('load_5m')} / {env.get('load_15m')}")
    add("platform", env.get("platform"))
    add("python", env.get("python"))
    versions = dict(env.get("versions") or {})
    versions.update({k: env[k] for k in ("numpy", "opencv", "torch") if k in env})  # older results files
    add("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    add("torch threads (evaluation process)", env.get("torch_threads"))
    add("commit", env.get("commit"))
    node = results.get("settings", {}).get("node") or {}
    add("node backend", "; ".join(_node_runs(results)))
    if "num_threads" in node:
        add("node torch threads", node["num_threads"] or "torch default (one per core)")
    return rows


# Footnotes shared by the Markdown and HTML renderings (each follows the table it explains).
SUMMARY_NOTE = (
    "FPS = 1000 / mean tracker latency; Out Hz = rate of outputs (ros2_benchmark MEAN_FRAME_RATE); "
    "Missed = frames without output; Dropped = frames the node reported dropping (live replay only); "
    "Failed upd = OpenCV updates that reported failure."
)
POSITION_NOTE = (
    "3D = the target's point from the tracker's box, the aligned depth frame and the camera intrinsics, "
    "against the generator's ground-truth position (error in mm over frames with a point after the init "
    "frame; valid % = frames with a point / frames with the target present). See the position3d convention."
)
REPLAY_NOTE = (
    "E2E = colour publish -> ~/target received; Node = the node's own latency field; "
    "Model = the network's time inside the node."
)


def build_report_data(results: Mapping[str, Any], plots: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The tables (raw numbers) every rendering uses; written as ``report.json``."""
    return {
        "schema": REPORT_SCHEMA,
        "created_utc": results.get("created_utc"),
        "conventions": dict(results.get("conventions", {})),
        "trackers": dict(results["trackers"]),
        "mode": results.get("settings", {}).get("mode", "offline"),
        "tables": {
            "summary": _table(SUMMARY_COLUMNS, summary_rows(results)),
            "trackers": _table(TRACKER_COLUMNS, tracker_rows(results)),
            "replay": _table(REPLAY_COLUMNS, replay_rows(results)),
            "position3d": _table(POSITION_COLUMNS, position_rows(results)),
            "position3d_attributes": position_attribute_table(results),
            "attributes_auc": attribute_table(results, "auc"),
            "sequences_auc": sequence_table(results, "auc"),
            "environment": _table(ENVIRONMENT_COLUMNS, environment_rows(results)),
        },
        "plots": dict(plots or {}),
    }


def _table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A JSON-ready table: ``columns`` as ``{key, header, decimals}`` dicts, rows of raw values."""
    cols = [{"key": c.key, "header": c.header, "decimals": c.decimals} for c in columns]
    return {"columns": cols, "rows": to_jsonable([dict(r) for r in rows])}


def _cells(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = table["columns"]
    header = [c["header"] for c in cols]
    body = [[format_cell(row.get(c["key"]), c["decimals"]) for c in cols] for row in table["rows"]]
    return header, body


def markdown_table(table: Mapping[str, Any]) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (``format_cell`` for every number)."""
    header, body = _cells(table)
    esc = [h.replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(esc) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def html_table(table: Mapping[str, Any]) -> str:
    """An HTML table of ``table`` (same cells as ``markdown_table``)."""
    header, body = _cells(table)
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
    out.append("</table>")
    return "\n".join(out)


def format_replay_table(results: Mapping[str, Any]) -> str:
    """Fixed-width terminal table of :func:`replay_rows`."""
    return _fixed_width(_table(REPLAY_COLUMNS, replay_rows(results)))


def format_summary_table(results: Mapping[str, Any], keys: Optional[Sequence[str]] = None) -> str:
    """Fixed-width terminal table of the summary rows (same cells as the Markdown).

    Args:
        results: the results dict.
        keys: the ``SUMMARY_COLUMNS`` to show, in this order; None = all of them.

    Raises:
        ConfigError: a key that is not a summary column.
    """
    columns = SUMMARY_COLUMNS
    if keys is not None:
        by_key = {c.key: c for c in SUMMARY_COLUMNS}
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise ConfigError(f"unknown summary columns {unknown}; choose from {list(by_key)}")
        columns = tuple(by_key[k] for k in keys)
    return _fixed_width(_table(columns, summary_rows(results)))


def _fixed_width(table: Mapping[str, Any]) -> str:
    header, body = _cells(table)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _color(i: int) -> str:
    palette = ["#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    return palette[i % len(palette)]


def _arr(values: Sequence[Optional[float]]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_curves(results: Mapping[str, Any], path: Path) -> None:
    """Success, precision and normalised-precision curves of every tracker (overall)."""
    fig = _figure(15, 4.4)
    axes = fig.subplots(1, 3)
    specs = [
        ("success_curve", "iou_thresholds", "auc", "Success (IoU > t)", "Overlap threshold t", "AUC"),
        ("precision_curve", "precision_thresholds_px", "precision", "Precision", "Centre error threshold [px]", "P@20"),
        (
            "norm_precision_curve",
            "norm_precision_thresholds",
            "norm_precision",
            "Normalised precision",
            "Normalised centre error threshold",
            "NP@0.2",
        ),
    ]
    for ax, (curve, thr, score, title, xlabel, label) in zip(axes, specs):
        for i, name in enumerate(results["trackers"]):
            overall = results["results"][name]["overall"]
            ax.plot(
                _arr(overall[thr]),
                _arr(overall[curve]),
                color=_color(i),
                lw=2,
                label=f"{name} [{label} {format_cell(overall[score], 1)}]",
            )
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Fraction of frames")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if curve == "success_curve" else "lower right")
    fig.tight_layout()
    fig.savefig(path)


def plot_latency_histogram(results: Mapping[str, Any], path: Path) -> None:
    """Histogram of per-frame latency (ms, log bins) of every tracker."""
    fig = _figure(7.5, 4.2)
    ax = fig.subplots()
    lats = {n: _arr(results["results"][n]["latency"].get("latencies_ms", [])) for n in results["trackers"]}
    pooled = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in lats.values()] or [np.zeros(0)])
    if pooled.size:
        bins = np.geomspace(max(pooled.min() * 0.9, 1e-3), pooled.max() * 1.1, 40)
        for i, (name, v) in enumerate(lats.items()):
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
                ax.hist(
                    v, bins=bins, histtype="step", lw=2, color=_color(i), label=f"{name} (p50 {np.median(v):.1f} ms)"
                )
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("Latency per frame [ms]")
    ax.set_ylabel("Frames")
    ax.set_title("Tracker latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def plot_iou_over_time(results: Mapping[str, Any], sequence: str, path: Path) -> None:
    """IoU per frame of every tracker on one sequence; absent-target frames shaded, missed marked."""
    info = results["sequences"][sequence]
    fig = _figure(10, 3.2)
    ax = fig.subplots()
    absent = np.asarray(info.get("absent") or [], dtype=bool)
    for idx in np.flatnonzero(absent):
        ax.axvspan(idx - 0.5, idx + 0.5, color="0.85", lw=0)
    for i, name in enumerate(results["trackers"]):
        per = results["results"][name]["per_sequence"].get(sequence)
        if not per:
            continue
        iou = _arr(per["metrics"]["iou"])
        boxes = np.array(
            [[np.nan if v is None else v for v in b] for b in per["frames"]["boxes_xywh"]], dtype=np.float64
        )
        missed = np.asarray(~np.isfinite(boxes).all(axis=1))
        missed[: per["metrics"]["init_index"] + 1] = False
        shown = np.where(iou < 0, np.nan, iou)
        ax.plot(
            np.arange(iou.size),
            shown,
            color=_color(i),
            lw=1.5,
            label=f"{name} (AUC {format_cell(per['metrics']['auc'], 1)})",
        )
        if missed.any():
            ax.plot(np.flatnonzero(missed), np.zeros(int(missed.sum())), "x", color=_color(i), ms=5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Frame (grey: target absent; x: no output)")
    ax.set_ylabel("IoU")
    ax.set_title(f"IoU over time: {sequence}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def _tokens(out_dir: Path, per: Mapping[str, Any]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    rel = (per.get("files") or {}).get("tokens")
    if not rel or not (out_dir / rel).is_file():
        return None
    with np.load(out_dir / rel) as data:
        return data["search_region"], data["search_keep_mask"]


def plot_frame_strip(
    results: Mapping[str, Any], sequence: str, seq: Any, out_dir: Path, path: Path, num_frames: int = 5
) -> list[int]:
    """Frames of one sequence with GT (white dashed) and every tracker's box; the pruned search
    tokens of the first tracker that reported them are shaded inside its search region.

    Returns:
        The frame indices shown.
    """
    from matplotlib.patches import Rectangle

    info = results["sequences"][sequence]
    n = int(info["num_frames"])
    trackers = list(results["trackers"])
    pers = {t: results["results"][t]["per_sequence"].get(sequence) for t in trackers}
    init = min((p["metrics"]["init_index"] for p in pers.values() if p), default=0)
    frames = sorted({int(round(v)) for v in np.linspace(init, n - 1, num_frames)})
    token_owner = next(((t, tok) for t in trackers if pers[t] and (tok := _tokens(out_dir, pers[t])) is not None), None)
    gt = np.array([[np.nan if v is None else v for v in b] for b in info["gt_xywh"]], dtype=np.float64)

    fig = _figure(3.2 * len(frames), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(frames)))
    for ax, i in zip(axes, frames):
        image = np.asarray(seq.rgb(i))
        h, w = image.shape[:2]
        ax.imshow(image, interpolation="nearest")
        if token_owner is not None:
            regions, masks = token_owner[1]
            if np.isfinite(regions[i]).all():
                x, y, rw, rh = regions[i]
                shade = np.zeros(masks[i].shape + (4,), dtype=np.float32)
                shade[~masks[i]] = (0.0, 0.0, 0.0, 0.55)
                shade[masks[i]] = (0.2, 1.0, 0.2, 0.12)
                ax.imshow(shade, extent=(x, x + rw, y + rh, y), interpolation="nearest")
                ax.add_patch(Rectangle((x, y), rw, rh, fill=False, ec="yellow", lw=1, ls=":"))
        if np.isfinite(gt[i]).all():
            ax.add_patch(Rectangle(gt[i][:2], gt[i][2], gt[i][3], fill=False, ec="white", lw=2, ls="--"))
        for k, t in enumerate(trackers):
            if not pers[t]:
                continue
            b = [np.nan if v is None else v for v in pers[t]["frames"]["boxes_xywh"][i]]
            if np.isfinite(b).all():
                ax.add_patch(Rectangle((b[0], b[1]), b[2], b[3], fill=False, ec=_color(k), lw=1.8))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"frame {i}", fontsize=9)
        ax.axis("off")
    handles = [Rectangle((0, 0), 1, 1, fill=False, ec="white", ls="--", label="GT")]
    handles += [Rectangle((0, 0), 1, 1, fill=False, ec=_color(k), label=t) for k, t in enumerate(trackers)]
    if token_owner is not None:
        handles.append(Rectangle((0, 0), 1, 1, fc=(0, 0, 0, 0.55), label=f"pruned search tokens ({token_owner[0]})"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, facecolor="0.9")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    return frames


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def _conventions_md(conv: Mapping[str, str]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in conv.items())


def render_markdown(data: Mapping[str, Any]) -> str:
    """The Markdown report of ``build_report_data`` output (images referenced relatively)."""
    t = data["tables"]
    p = data["plots"]
    parts = [
        "# Tracking evaluation",
        "",
        f"Generated {data.get('created_utc') or ''}. Scores in percent; every number below is in "
        "`report.json` (and the raw per-frame data in `results.json`).",
        "",
        f"Mode: **{data.get('mode', 'offline')}**.",
        "",
        "## Summary",
        "",
        markdown_table(t["summary"]),
        "",
        SUMMARY_NOTE,
        "",
        markdown_table(t["trackers"]),
        "",
    ]
    if t.get("position3d", {}).get("rows"):
        parts += ["## 3D position", "", markdown_table(t["position3d"]), "", POSITION_NOTE, ""]
        if t["position3d_attributes"]["rows"]:
            parts += [markdown_table(t["position3d_attributes"]), ""]
    if t["replay"]["rows"]:
        parts += ["## Live replay through the node (per bag)", "", markdown_table(t["replay"]), "", REPLAY_NOTE, ""]
    if p.get("curves"):
        parts += [f"![success and precision curves]({p['curves']})", ""]
    if p.get("latency"):
        parts += [f"![latency histogram]({p['latency']})", ""]
    if t["attributes_auc"]["rows"]:
        parts += ["## Per challenge attribute (AUC)", "", markdown_table(t["attributes_auc"]), ""]
    parts += ["## Per sequence (AUC)", "", markdown_table(t["sequences_auc"]), ""]
    for seq, files in (p.get("sequences") or {}).items():
        parts += [f"### {seq}", ""]
        if files.get("iou"):
            parts += [f"![IoU over time {seq}]({files['iou']})", ""]
        if files.get("strip"):
            parts += [f"![frames {seq}]({files['strip']})", ""]
    if t["environment"]["rows"]:
        parts += ["## Environment", "", markdown_table(t["environment"]), ""]
    parts += ["## Conventions", "", _conventions_md(data.get("conventions", {})), ""]
    return "\n".join(parts)


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1500px}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}code{background:#f4f4f4}"
)


def render_html(data: Mapping[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, no scripts; images referenced relatively)."""
    t = data["tables"]
    p = data["plots"]
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'><title>Tracking evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Tracking evaluation</h1>",
        f"<p>Generated {esc(str(data.get('created_utc') or ''))}. Scores in percent; every number is in "
        "<code>report.json</code>.</p>",
        f"<p>Mode: <b>{esc(str(data.get('mode', 'offline')))}</b>.</p>",
        "<h2>Summary</h2>",
        html_table(t["summary"]),
        f"<p>{esc(SUMMARY_NOTE)}</p>",
        html_table(t["trackers"]),
    ]
    if t.get("position3d", {}).get("rows"):
        parts += ["<h2>3D position</h2>", html_table(t["position3d"]), f"<p>{esc(POSITION_NOTE)}</p>"]
        if t["position3d_attributes"]["rows"]:
            parts.append(html_table(t["position3d_attributes"]))
    if t["replay"]["rows"]:
        parts += ["<h2>Live replay through the node (per bag)</h2>", html_table(t["replay"]), f"<p>{esc(REPLAY_NOTE)}</p>"]
    if p.get("curves"):
        parts.append(f"<img src='{esc(p['curves'])}' alt='curves'>")
    if p.get("latency"):
        parts.append(f"<img src='{esc(p['latency'])}' alt='latency histogram'>")
    if t["attributes_auc"]["rows"]:
        parts += ["<h2>Per challenge attribute (AUC)</h2>", html_table(t["attributes_auc"])]
    parts += ["<h2>Per sequence (AUC)</h2>", html_table(t["sequences_auc"])]
    for seq, files in (p.get("sequences") or {}).items():
        parts.append(f"<h3>{esc(seq)}</h3>")
        for key in ("iou", "strip"):
            if files.get(key):
                parts.append(f"<img src='{esc(files[key])}' alt='{esc(key)} {esc(seq)}'>")
    if t["environment"]["rows"]:
        parts += ["<h2>Environment</h2>", html_table(t["environment"])]
    parts.append("<h2>Conventions</h2><ul>")
    parts += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in data.get("conventions", {}).items()]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_report(
    results: Mapping[str, Any],
    out_dir: Union[str, Path],
    sequences: Optional[Mapping[str, Any]] = None,
    *,
    strip_frames: int = 5,
    max_sequence_plots: int = 12,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``plots/*.png`` into ``out_dir``.

    Args:
        results: the ``results.json`` dict (its per-tracker ``files`` are relative to
            ``out_dir``, where the token overlays are read from).
        out_dir: the results folder.
        sequences: name -> sequence with ``rgb(i)``, for the frame strips (none without it).
        strip_frames: frames per strip.
        max_sequence_plots: IoU/strip plots for at most this many sequences (the first ones).

    Returns:
        Paths of the written documents (``markdown``, ``html``, ``json``).
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Any] = {"curves": "plots/curves.png", "latency": "plots/latency_hist.png", "sequences": {}}
    plot_curves(results, out_dir / plots["curves"])
    plot_latency_histogram(results, out_dir / plots["latency"])
    for s in list(results["sequences"])[:max_sequence_plots]:
        files: dict[str, Any] = {"iou": f"plots/iou_{safe_name(s)}.png"}
        plot_iou_over_time(results, s, out_dir / files["iou"])
        if sequences and s in sequences:
            files["strip"] = f"plots/strip_{safe_name(s)}.png"
            files["strip_frames"] = plot_frame_strip(
                results, s, sequences[s], out_dir, out_dir / files["strip"], strip_frames
            )
        plots["sequences"][s] = files

    data = to_jsonable(build_report_data(results, plots))
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "json": out_dir / "report.json"}
    paths["json"].write_text(json.dumps(data, indent=1, allow_nan=False))
    paths["markdown"].write_text(render_markdown(data))  # rendered from the dict just written
    paths["html"].write_text(render_html(data))
    logger.debug("report written to %s", paths["markdown"])
    return paths

"""The evaluation entry points: trackers x sequences run offline (``run_offline``) and any
recorded runs written as one results folder with its report (``write_results``, also used by
the live bag replay).

The concepts live apart: the rows and their tracker factories in ``eval.specs``, sequence
sources in ``eval.sources``, one tracker on one sequence (the init rule, what is recorded) in
``eval.sequence_run``, the worker processes in ``eval.pool``, scores and files in
``eval.results``, the report in ``eval.report``.

The results folder (layout: ``eval.results``) is written to a temporary sibling and moved into
place at the end; an existing non-empty folder is refused unless ``force``; nothing is written
over it on errors.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ..errors import ConfigError
from .pool import run_tasks
from .report import write_report
from .results import (
    check_out_dir,
    check_unique,
    group_runs,
    replace_dir,
    results_dict,
    safe_name,
    write_results_json,
    write_run_files,
)
from .sequence_run import SequenceRun
from .sources import SequenceSource, open_sequences
from .specs import TrackerSpec

logger = logging.getLogger(__name__)


def run_offline(
    trackers: Sequence[TrackerSpec],
    sources: Sequence[SequenceSource],
    out_dir: Union[str, Path],
    *,
    workers: int = 1,
    force: bool = False,
    max_frames: Optional[int] = None,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Run every tracker on every sequence, score them and write the results folder.

    Args:
        trackers: the compared rows (unique names); e.g. a sweep over keep ratios, aux on/off,
            prompt on/off, plus OpenCV peers (``peer_spec``).
        sources: sequences or picklable callables opening them (opened in the workers).
        out_dir: results folder; must not hold files unless ``force``.
        workers: parallel spawned processes; ``<= 1`` runs in this process (no thread limits).
        force: replace an existing non-empty ``out_dir`` (only once everything succeeded).
        max_frames: cut every sequence to its first frames (quick looks).
        progress: show a tqdm bar.
        report: also write the Markdown/HTML/PNG report (``eval.report.write_report``).

    Returns:
        The results dict written to ``results.json``.

    Raises:
        FileExistsError: ``out_dir`` holds files and ``force`` is False.
        ConfigError: duplicate tracker or sequence names, or nothing to run.
        InputError: a sequence without annotated frames.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    check_unique([t.name for t in trackers], "tracker names")
    if not trackers or not sources:
        raise ConfigError("nothing to run: give at least one tracker and one sequence")

    tasks = [(spec, src, max_frames) for src in sources for spec in trackers]
    logger.info("eval-offline: %d trackers x %d sequences, %d workers", len(trackers), len(sources), workers)
    t_start = time.time()
    runs = run_tasks(tasks, workers, progress)
    return write_results(
        runs,
        out_dir,
        trackers={t.name: {"description": t.description, "aux": t.aux, "use_prompt": t.use_prompt} for t in trackers},
        settings={
            "mode": "offline",
            "workers": workers,
            "max_frames": max_frames,
            "wall_time_s": round(time.time() - t_start, 3),
            "init_rule": "first frame with a valid GT box; its GT box initialises the tracker",
            "latency": "offline: sent/received = perf_counter_ns around each track call after the init frame",
        },
        force=force,
        report=report,
        sequences=(lambda: open_sequences(sources)) if report else None,
    )


def write_results(
    runs: Sequence[SequenceRun],
    out_dir: Union[str, Path],
    *,
    trackers: Optional[Mapping[str, Mapping[str, Any]]] = None,
    settings: Optional[Mapping[str, Any]] = None,
    force: bool = False,
    report: bool = True,
    sequences: Union[None, Mapping[str, Any], Callable[[], Mapping[str, Any]]] = None,
) -> dict[str, Any]:
    """Score recorded runs and write the results folder atomically (also for live replays).

    Args:
        runs: one ``SequenceRun`` per (tracker, sequence); a live bag replay fills ``sent_ns``
            with publish times and ``received_ns`` with output arrival times (-1 = never).
        out_dir: results folder; must not hold files unless ``force``.
        trackers: row name -> metadata (``description``, ``aux``, ``use_prompt``...), in row
            order; rows not listed follow in order of appearance.
        settings: how the runs were made (stored as is; say what sent/received mean).
        force: replace an existing non-empty ``out_dir`` (only once everything succeeded).
        report: also write the report (``eval.report.write_report``).
        sequences: name -> sequence (or a callable returning that mapping) for the frame strips.

    Returns:
        The results dict written to ``results.json``.

    Raises:
        FileExistsError: ``out_dir`` holds files and ``force`` is False.
        InputError: no runs.
        ConfigError: two runs of one tracker on sequences of the same (file) name.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    meta, by_tracker = group_runs(runs, trackers)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        results = results_dict(meta, by_tracker, settings)
        for name, lst in by_tracker.items():
            for run in lst:
                files = write_run_files(run, tmp / safe_name(name))
                results["results"][name]["per_sequence"][run.sequence]["files"] = {
                    k: f"{safe_name(name)}/{v}" for k, v in files.items()}
        results = write_results_json(results, tmp)
        if report:
            opened = sequences() if callable(sequences) else sequences
            write_report(results, tmp, sequences=opened)
        check_out_dir(out_dir, force)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("results written to %s", out_dir)
    return results

"""The offline runner's process pool: ``(spec, source, max_frames)`` tasks run in this process or
in spawned worker processes (one thread each for OpenMP/MKL, OpenCV and torch), with a progress bar.

Tasks travel pickled: tracker factories and sequence sources must be importable top-level
callables (e.g. ``functools.partial`` of a module-level function or class). A task a worker
cannot unpickle, or a worker process that dies, fails the run with a ``RuntimeError`` saying so
instead of waiting forever.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import cv2

from .sequence_run import SequenceRun, run_sequence
from .sources import SequenceSource
from .specs import TrackerSpec

Task = tuple[TrackerSpec, SequenceSource, Optional[int]]


def run_tasks(tasks: list[Task], workers: int, progress: bool) -> list[SequenceRun]:
    """Run every task (``run_sequence``); ``workers <= 1`` runs them here, in order (no thread
    limits), else in that many spawned processes (runs in order of completion).

    Raises:
        RuntimeError: a worker could not load its task, or a worker process died.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="eval-offline", unit="run", disable=not progress)
    runs: list[SequenceRun] = []
    try:
        if workers <= 1:
            for task in tasks:
                runs.append(_run_task(task))
                bar.set_postfix_str(f"{runs[-1].tracker}/{runs[-1].sequence}")
                bar.update()
        else:
            blobs = [pickle.dumps(task) for task in tasks]  # unpicklable specs fail here, clearly
            # not multiprocessing.Pool: it waits forever when a worker process dies (seen once in
            # the suite: both spawned workers exited and the run hung); the executor raises instead
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
            try:
                for future in as_completed([pool.submit(_run_pickled_task, blob) for blob in blobs]):
                    run = future.result()
                    runs.append(run)
                    bar.set_postfix_str(f"{run.tracker}/{run.sequence}")
                    bar.update()
            except BrokenProcessPool as err:
                raise RuntimeError(f"an evaluation worker process died ({err}); rerun with workers=1 to see why") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return runs


def _run_task(task: Task) -> SequenceRun:
    spec, source, max_frames = task
    return run_sequence(spec, source, max_frames)


def _init_worker() -> None:
    """Spawned-worker initialiser: one thread for OpenMP/MKL and OpenCV (torch: ``_OneThread``)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    cv2.setNumThreads(1)


@dataclass(frozen=True)
class _OneThread:
    """A worker's tracker factory: builds the tracker, then one intra-op thread for torch (only
    if the tracker imported torch)."""

    factory: Callable[[], Any]

    def __call__(self) -> Any:
        tracker = self.factory()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        return tracker


def _run_pickled_task(blob: bytes) -> SequenceRun:
    """Worker entry: unpickle here so a task the worker cannot import fails with a clear error
    (multiprocessing.Pool would otherwise lose the task and wait forever)."""
    try:
        spec, source, max_frames = pickle.loads(blob)
    except Exception as err:  # any unpickling failure: re-raise as one picklable error
        raise RuntimeError(
            f"a worker could not load its task ({type(err).__name__}: {err}); tracker factories and "
            "sequence sources must be importable top-level callables (e.g. functools.partial of a "
            "module-level function or class)"
        ) from None
    return _run_task((replace(spec, factory=_OneThread(spec.factory)), source, max_frames))

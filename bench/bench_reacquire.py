"""Re-acquisition, LOST calibration and the collapse guards of the shipped ``tiny`` tracker (issue 18).

Runs ``Tracker.from_pretrained("tiny")`` (onnxruntime, one thread) with one or more
``TrackerConfig`` settings on generated sequences and prints, per setting and set:

* OTB AUC (``eval.results.score_runs``) on the RGB acceptance suite's first ``--count`` test
  sequences (``train.evaluate.suite_sources("rgb", ...)``) and on val-split sequences with the
  target leaving the view (``out_of_view``) or hidden (``full_occlusion``);
* LOST precision / recall against "the box is wrong" (IoU < 0.1, absent frames included) over
  every tracked frame; a frame counts as flagged when its state is not TRACKING (LOST or
  RECOVERING), and, apart, when it is LOST;
* re-finding: on the out-of-view sequences, and on the same sequences turned by 180 degrees from
  the frame the target is gone (so it comes back at the opposite border, far from where it left),
  the frames from its return until the first TRACKING frame with IoU >= 0.5.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_reacquire.py --count 10 \
        --setting base='{"reacquire_after": 0}' --setting new='{}'
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np

from utptrack_ros.boxes import iou_xywh
from utptrack_ros.data.generator import generate
from utptrack_ros.data.spec import spec_for
from utptrack_ros.eval.results import score_runs
from utptrack_ros.eval.sequence_run import run_tracker
from utptrack_ros.tracker import Tracker
from utptrack_ros.train.evaluate import suite_sources


class TurnedAfterLeaving:
    """A sequence whose frames are turned by 180 degrees from its first absent frame on: the
    target comes back at the opposite border, far from where it left."""

    def __init__(self, seq: Any) -> None:
        self._seq = seq
        self.name = seq.name + "_turned"
        self.absent = np.asarray(seq.absent, dtype=bool)
        self.start = int(np.argmax(self.absent)) if self.absent.any() else len(self.absent)
        height, width = seq.rgb(0).shape[:2]
        gt = np.array(seq.gt, dtype=float)
        gt[self.start:, 0] = width - gt[self.start:, 0] - gt[self.start:, 2]
        gt[self.start:, 1] = height - gt[self.start:, 1] - gt[self.start:, 3]
        self.gt = gt
        self.prompt = seq.prompt
        self.attributes = seq.attributes
        self.modalities = ()

    def __len__(self) -> int:
        return len(self.gt)

    def rgb(self, i: int) -> np.ndarray:
        image = self._seq.rgb(i)
        return np.ascontiguousarray(image[::-1, ::-1]) if i >= self.start else image

    def aux(self, modality: Any, i: int) -> np.ndarray:
        raise KeyError(modality)

    def stamp_ns(self, i: int) -> int:
        return self._seq.stamp_ns(i)


def leave_sequences(count: int, length: int, size: tuple[int, int]) -> list[Any]:
    """Val-split sequences (indices 600 ..) where the target leaves the view or is fully hidden."""
    out = []
    for i in range(count):
        challenges = {"out_of_view": 1.0} if i % 2 == 0 else {"full_occlusion": 1.0}
        out.append(generate(spec_for("val", 600 + i, challenges=challenges, length=length, size=size,
                                     modalities=())))
    return out


def frame_iou(run: Any) -> np.ndarray:
    """IoU per frame after the init frame (0 where the target is absent or there is no box)."""
    n, init = run.num_frames, run.init_index
    out = np.zeros(n - init - 1)
    for k, i in enumerate(range(init + 1, n)):
        gt, box = run.gt_xywh[i], run.boxes_xywh[i]
        if not run.absent[i] and np.all(np.isfinite(gt)) and np.all(np.isfinite(box)):
            out[k] = float(iou_xywh(box, gt))
    return out


def lost_pr(runs: list[Any], states: tuple[str, ...] = ("lost", "recovering")) -> tuple[float, float, int]:
    """Precision and recall of "the state is one of ``states``" as a detector of IoU < 0.1."""
    flagged, wrong = [], []
    for run in runs:
        flagged.append(np.array([s in states for s in run.state[run.init_index + 1:]]))
        wrong.append(frame_iou(run) < 0.1)
    f, w = np.concatenate(flagged), np.concatenate(wrong)
    precision = float((f & w).sum() / max(1, f.sum()))
    recall = float((f & w).sum() / max(1, w.sum()))
    return precision, recall, int(w.sum())


def refind_frames(run: Any) -> float:
    """Frames from the target's return (first visible frame after its last absent run) until the
    first TRACKING frame with IoU >= 0.5; inf if never."""
    absent = np.asarray(run.absent, dtype=bool)
    if not absent.any():
        return float("nan")
    back = int(np.nonzero(absent)[0][-1]) + 1
    for i in range(back, run.num_frames):
        if run.state[i] == "tracking" and np.all(np.isfinite(run.boxes_xywh[i])) \
                and iou_xywh(run.boxes_xywh[i], run.gt_xywh[i]) >= 0.5:
            return float(i - back)
    return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10, help="sequences per set")
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--setting", action="append", default=[],
                    help="NAME=JSON of TrackerConfig overrides on tiny's defaults (repeatable)")
    ap.add_argument("--sets", default="rgb,leave,turned")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()
    size = (320, 240)
    settings = [s.split("=", 1) for s in args.setting] or [["default", "{}"]]
    sets: dict[str, list[Any]] = {}
    wanted = args.sets.split(",")
    if "rgb" in wanted:
        sets["rgb"] = [src() for src in suite_sources("rgb", args.count, args.length, size)]
    leave = leave_sequences(args.count, args.length, size)
    if "leave" in wanted:
        sets["leave"] = leave
    if "turned" in wanted:
        sets["turned"] = [TurnedAfterLeaving(s) for s in leave if s.attributes.get("out_of_view")]
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime", threads=1)
    base = tracker.config
    table: dict[str, Any] = {}
    for name, overrides in settings:
        tracker.set_config(replace(base, **json.loads(overrides)))
        row: dict[str, Any] = {}
        for set_name, seqs in sets.items():
            t0 = time.perf_counter()
            runs = [run_tracker(tracker, s, name) for s in seqs]
            auc = score_runs(runs)["overall"]["auc"]
            precision, recall, wrong = lost_pr(runs)
            lost_only = lost_pr(runs, ("lost",))
            refind = [refind_frames(r) for r in runs if np.asarray(r.absent).any()]
            found = [f for f in refind if np.isfinite(f)]
            row[set_name] = {
                "auc": auc, "lost_precision": precision, "lost_recall": recall, "wrong_frames": wrong,
                "lost_only_precision": lost_only[0], "lost_only_recall": lost_only[1],
                "refound": f"{len(found)}/{len(refind)}",
                "refind_median": float(np.median(found)) if found else None,
                "refind_max": max(found) if found else None, "seconds": time.perf_counter() - t0,
            }
            r = row[set_name]
            print(f"{name:12s} {set_name:9s} AUC {auc:5.1f} | LOST P {precision:.2f} R {recall:.2f} "
                  f"({wrong} wrong frames; LOST alone P {lost_only[0]:.2f} R {lost_only[1]:.2f}) | re-found {r['refound']} median {r['refind_median']} "
                  f"max {r['refind_max']} | {r['seconds']:.0f} s", flush=True)
        table[name] = row
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=1)


if __name__ == "__main__":
    main()

"""Accuracy of fp16 / bf16 tracking against fp32 on the same sequences (the contract in docs/gpu.md).

For each dtype, the real ``MultiTracker(dtype=...)`` tracks the same frames from the same init box
as the float32 tracker; per frame it compares the box with the float32 tracker's (IoU: mean and
5th percentile; centre error in px) and the kept search tokens (the fraction of the float32
run's kept indices also kept), both along each tracker's own track (drift included) and on the
float32 tracker's exact inputs (precision alone, no drift: kept tokens and the IoU of the
unwindowed argmax boxes in the crop). Models: the shipped ``tiny`` on
test-split sequences of the generator, and ``o256`` with random weights (seed 0). Runs on the
CPU or ``--device cuda``.

    .venv/bin/python bench/bench_dtype.py [--sequences 3] [--frames 60] [--o256-frames 20]

Results: ``artifacts/bench/bench_dtype.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utptrack_ros.boxes import iou_xywh
from utptrack_ros.data import generate, spec_for
from utptrack_ros.models import create_model
from utptrack_ros.models.heads import decode_boxes
from utptrack_ros.tracker import MultiTracker, load_variant

DTYPES = ("float16", "bfloat16")


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of the kept tokens ``a`` (bool mask) that ``b`` keeps too."""
    return float((a & b).sum() / max(a.sum(), 1))


class SameInputs:
    """The float32 tracker's network, also running ``low`` on each frame's exact inputs (template
    tokens cast) and recording the kept-token agreement of the two: pruning alone, no drift."""

    def __init__(self, network: Any, low: Any) -> None:
        self.network, self.low, self.kept, self.iou = network, low, [], []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.network, name)

    def forward_search(self, search: Any, tokens: Any, text: Any = None, task: Any = None) -> Any:
        out = self.network.forward_search(search, tokens, text, task)
        cast = type(tokens)(*(None if t is None else t.to(self.low.dtype) for t in (tokens.st, tokens.dt)),
                            tokens.st_fg.to(self.low.dtype))
        low = self.low.forward_search(search, cast, text, task)
        self.kept.append(agreement(out.search_keep_mask.cpu().numpy(), low.search_keep_mask.cpu().numpy()))
        self.iou.append(float(iou_xywh(*(crop_box(maps) for maps in (out, low)))[0]))
        return out


def crop_box(out: Any) -> np.ndarray:
    """The argmax box of ``out``'s maps (no window), ``x, y, w, h`` in the search crop (units of its side)."""
    cx, cy, w, h = decode_boxes(out.score_map, out.size_map, out.offset_map)[0].double().numpy().T
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)


def run(model: Any, frames: list, box: np.ndarray, dtype: str, device: str,
        same: Any = None) -> tuple[np.ndarray, list]:
    tracker = MultiTracker(model, device=device, dtype=dtype)
    if same is not None:
        tracker.network = same(tracker.network)
    tracker.init(frames[0], [box])
    boxes, keeps = [], []
    for image in frames[1:]:
        result = tracker.track(image)[0]
        boxes.append(result.box.as_xywh())
        keeps.append(result.search_keep_mask.reshape(-1))
    return np.array(boxes), keeps


def same_inputs(model: Any, frames: list, box: np.ndarray, dtype: str, device: str) -> dict[str, list[float]]:
    low = MultiTracker(model, device=device, dtype=dtype).network
    recorder: list[SameInputs] = []
    run(model, frames, box, "float32", device, lambda net: recorder.append(SameInputs(net, low)) or recorder[0])
    return {"kept_same_inputs": recorder[0].kept, "iou_same_inputs": recorder[0].iou}


def compare(ref: tuple[np.ndarray, list], low: tuple[np.ndarray, list]) -> dict[str, Any]:
    iou = iou_xywh(ref[0], low[0])
    centre = np.hypot(*((ref[0][:, :2] + ref[0][:, 2:] / 2) - (low[0][:, :2] + low[0][:, 2:] / 2)).T)
    kept = [agreement(a, b) for a, b in zip(ref[1], low[1])]
    return {"iou": iou.tolist(), "centre_px": centre.tolist(), "kept_agreement": kept}


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    iou = np.concatenate([r["iou"] for r in rows])
    centre = np.concatenate([r["centre_px"] for r in rows])
    kept = np.concatenate([r["kept_agreement"] for r in rows])
    same = np.concatenate([r["kept_same_inputs"] for r in rows])
    step = np.concatenate([r["iou_same_inputs"] for r in rows])
    return {"frames": int(iou.size), "iou_mean": float(iou.mean()), "iou_p5": float(np.percentile(iou, 5)),
            "iou_min": float(iou.min()), "centre_px_mean": float(centre.mean()),
            "centre_px_max": float(centre.max()), "kept_mean": float(kept.mean()), "kept_min": float(kept.min()),
            "kept_same_inputs_mean": float(same.mean()), "kept_same_inputs_min": float(same.min()),
            "iou_same_inputs_mean": float(step.mean()), "iou_same_inputs_p5": float(np.percentile(step, 5)),
            "iou_same_inputs_min": float(step.min())}


def measure(name: str, model: Any, sequences: list, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    refs = [run(model, frames, box, "float32", device) for frames, box in sequences]
    for dtype in DTYPES:
        try:
            rows = [compare(ref, run(model, frames, box, dtype, device))
                    | same_inputs(model, frames, box, dtype, device)
                    for ref, (frames, box) in zip(refs, sequences)]
        except RuntimeError as err:  # an op without a kernel for this dtype on this device
            out[dtype] = {"error": str(err).splitlines()[0]}
        else:
            out[dtype] = summary(rows)
        print(f"{name} {dtype}: {json.dumps(out[dtype])}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--o256-frames", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/bench_dtype.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    def clip(index: int, length: int) -> tuple[list, np.ndarray]:
        seq = generate(spec_for("test", index, length=length, modalities=()))
        frames = [f.rgb for f in seq.iter_frames()]
        return frames, seq.gt[0]

    tiny_seqs = [clip(i, args.frames) for i in range(args.sequences)]
    torch.manual_seed(0)
    record = {"device": args.device, "torch": torch.__version__,
              "tiny": measure("tiny", load_variant("tiny"), tiny_seqs, args.device),
              "o256": measure("o256", create_model("o256").eval(), [clip(0, args.o256_frames)], args.device)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

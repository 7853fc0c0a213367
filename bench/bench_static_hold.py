"""Does the tracker hold a target on a static real image? (issue 18, the first tracked frame)

A real still (``skimage.data``: coins, astronaut, coffee, chelsea) is repeated unchanged, so a
correct tracker keeps the init box. Prints, per case, the IoU of the shipped ``tiny`` tracker's
box with the init box on frame 1 and its minimum / mean over ``--frames`` frames, side by side
with OpenCV CSRT on the same frames, plus ablations of the first-step settings (Hann window off,
colour order swapped, search factor 5, template factor 2.5, unpruned) with ``--ablate``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_static_hold.py [--frames 10] [--ablate] \
        [--config '{"min_size_ratio": 0}']

``--config`` overrides ``TrackerConfig`` fields of tiny's settings (JSON), e.g. to see a guard's
effect by turning it off.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import cv2
import numpy as np
import skimage.data as sk

from utptrack_ros.boxes import iou_xywh
from utptrack_ros.tracker import Tracker


def cases() -> list[tuple[str, np.ndarray, list[float]]]:
    coins = np.ascontiguousarray(np.stack([sk.coins()] * 3, -1))
    return [
        ("coins-a (coin among coins)", coins, [35, 18, 50, 50]),
        ("coins-b (coin among coins)", coins, [98, 20, 48, 48]),
        ("astronaut face", sk.astronaut(), [170, 20, 130, 150]),
        ("coffee cup", sk.coffee(), [150, 60, 300, 260]),
        ("chelsea head", sk.chelsea(), [140, 20, 190, 180]),
    ]


def hold(tracker: Tracker, image: np.ndarray, box: list[float], frames: int, swap: bool = False) -> list[float]:
    image = np.ascontiguousarray(image[..., ::-1]) if swap else image
    tracker.init(image, box)
    return [float(iou_xywh(np.array(tracker.track(image).box.as_xywh()), np.array(box))) for _ in range(frames)]


def csrt(image: np.ndarray, box: list[float], frames: int) -> list[float]:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    t = cv2.TrackerCSRT.create()
    t.init(bgr, tuple(int(v) for v in box))
    return [float(iou_xywh(np.array(t.update(bgr)[1], float), np.array(box))) for _ in range(frames)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--config", default="{}", help="JSON of TrackerConfig overrides")
    args = ap.parse_args()
    tracker = Tracker.from_pretrained("tiny")
    tracker.set_config(dataclasses.replace(tracker.config, **json.loads(args.config)))
    base = tracker.config
    means = []
    for name, image, box in cases():
        m, c = hold(tracker, image, box, args.frames), csrt(image, box, args.frames)
        means.append((np.mean(m), np.mean(c)))
        print(f"{name:28s} tiny IoU f1 {m[0]:.2f} min {min(m):.2f} mean {np.mean(m):.2f} | "
              f"CSRT f1 {c[0]:.2f} min {min(c):.2f} mean {np.mean(c):.2f}")
    tiny_mean, csrt_mean = np.mean(means, axis=0)
    print(f"{'mean over the cases':28s} tiny IoU {tiny_mean:.2f} | CSRT IoU {csrt_mean:.2f}")
    if not args.ablate:
        return
    variants = [("hann off", dataclasses.replace(base, hann_window=False), False),
                ("BGR input", base, True),
                ("search factor 5", dataclasses.replace(base, search_factor=5.0), False),
                ("template factor 2.5", dataclasses.replace(base, template_factor=2.5), False)]
    for label, cfg, swap in variants:
        tracker.set_config(cfg)
        print(label, " | ".join(f"{n.split()[0]} {np.mean(hold(tracker, im, b, 5, swap)):.2f}" for n, im, b in cases()))
    tracker.set_config(base)
    tracker.set_prune(tracker.model.prune.off())
    print("unpruned", " | ".join(f"{n.split()[0]} {np.mean(hold(tracker, im, b, 5)):.2f}" for n, im, b in cases()))


if __name__ == "__main__":
    main()

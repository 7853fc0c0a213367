"""Generated sequences are pinned: a few specs covering every challenge and every aux modality
must reproduce what ``GENERATOR_VERSION`` "1" produced when the pins were taken
(``pinned_sequences.json`` next to this file).

What is pinned, and how closely:

* the plan: ground truth, absent flags, stamps, the prompt, the metadata keys listed here and the
  per-frame info. Strings, integers and flags must be equal; floats equal to 1e-9 relative, since the
  last bit of a float from ``tan``/``sin`` differs between CPU classes and libm builds;
* the frames: for every frame and every stream, the mean of each channel over an 8x8 grid of blocks,
  within one level (uint8) or two units (uint16: mm, centikelvin). OpenCV's SIMD paths round
  differently on another CPU class (docs/data.md, "Splits and seeds"), which moves a block mean by a
  fraction of a level; moving the target by one pixel or changing a colour moves it by several.

A change that alters frames, ground truth, the prompt or the existing metadata fails here. If that
change is meant (a new generator), bump ``data.spec.GENERATOR_VERSION`` and re-pin with
``.venv/bin/python test/data/test_pinned_sequences.py --repin``. New metadata keys are allowed: only
the keys listed here are pinned.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if __package__ in (None, ""):  # run as a script to re-pin
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.datautils import SMALL  # noqa: E402

from utptrack_ros.data import Challenge, SequenceSpec, generate, spec_for  # noqa: E402
from utptrack_ros.types import Modality  # noqa: E402

PIN_FILE = Path(__file__).with_name("pinned_sequences.json")

#: Metadata keys that are pinned (a tuple value: the sub-keys that are).
ATTRIBUTE_KEYS: dict[str, Any] = {
    "ambient_c": None, "challenges": None, "darkness": None, "distractors": None, "fps": None, "generator": None,
    "generator_version": None, "language": None, "occluders": None, "out_of_view": None, "seed": None,
    "speed_px_per_frame": None, "split": None,
    "background": ("name", "depth_plane", "camera_pan"),
    "camera": ("cx", "cy", "depth_unit", "event_render", "event_substeps", "event_threshold", "exposure", "fx", "fy",
               "hfov_deg", "rgb_lowres_factor", "thermal_unit"),
    "target": ("category", "colour", "pattern", "source", "aspect", "aspect_class", "low_texture", "temperature_c",
               "depth0_mm", "perspective_deg", "deformation"),
}
FRAME_INFO_KEYS = ("angle_deg", "blur_px", "camera_motion_px", "dark", "illumination", "in_view", "occluded", "speed_px",
                   "visibility")
FLOAT_REL_TOL = 1e-9
GRID = 8
#: Allowed difference of a block mean, by dtype: one level of uint8, two units of uint16 (mm, centikelvin).
BLOCK_TOL = {"uint8": 1.0, "uint16": 2.0}

#: The challenges there were when the pins were taken; a challenge added later (opt-in, e.g.
#: ``depth_holes``) would change "every challenge" by definition, so it is not in these specs.
PINNED_CHALLENGES = tuple(c for c in Challenge if c is not Challenge.DEPTH_HOLES)

SPECS = {
    "every_challenge_full": SequenceSpec(seed=7000, length=12, size=SMALL, challenges={c: 1.0 for c in PINNED_CHALLENGES}),
    "every_challenge_half": SequenceSpec(seed=7001, length=12, size=SMALL, challenges={c: 0.5 for c in PINNED_CHALLENGES}),
    "no_challenge_thermal_event": SequenceSpec(seed=7002, length=10, size=SMALL,
                                               modalities=(Modality.THERMAL, Modality.EVENT)),
    "val_drawn_mix_depth": spec_for("val", 37, length=10, size=SMALL, probability=0.4, modalities=(Modality.DEPTH,)),
    "test_drawn_mix": spec_for("test", 74, length=10, size=SMALL, probability=0.4),
    "train_rgb_only": spec_for("train", 111, length=10, size=SMALL, modalities=()),
    "depth_holes_depth": SequenceSpec(seed=7003, length=10, size=SMALL, challenges={Challenge.DEPTH_HOLES: 0.7},
                                      modalities=(Modality.DEPTH,)),
}


def _plain(value: Any) -> Any:
    """JSON-ready copy: arrays to lists, numpy scalars to Python ones."""
    return json.loads(json.dumps(value, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _pinned_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: attributes[key] if sub is None else {k: attributes[key][k] for k in sub}
            for key, sub in ATTRIBUTE_KEYS.items()}


def _block_means(frame: np.ndarray) -> list[list[float]]:
    """Mean of each channel over a GRID x GRID partition of the frame: (GRID*GRID, channels)."""
    a = frame.reshape(*frame.shape[:2], -1).astype(np.float64)
    rows = np.array_split(np.arange(a.shape[0]), GRID)
    cols = np.array_split(np.arange(a.shape[1]), GRID)
    return [[round(float(v), 3) for v in a[r[0]:r[-1] + 1, c[0]:c[-1] + 1].mean(axis=(0, 1))] for r in rows for c in cols]


def fingerprint(spec: SequenceSpec) -> dict[str, Any]:
    """The pinned description of the sequence ``spec`` generates: its plan and its frames' block means."""
    seq = generate(spec)
    plan = {"gt": seq.gt, "absent": seq.absent, "stamps_ns": seq.stamps_ns, "prompt": seq.prompt,
            "attributes": _pinned_attributes(seq.attributes),
            "frame_info": {k: seq.frame_info[k] for k in FRAME_INFO_KEYS}}
    frames = []
    for i in range(seq.length):
        arrays = {"rgb": seq.rgb(i), **{m.value: seq.aux(m, i) for m in seq.modalities}}
        frames.append({name: {"dtype": a.dtype.name, "shape": list(a.shape), "blocks": _block_means(a)}
                       for name, a in arrays.items()})
    return {"plan": _plain(plan), "frames": frames}


def plan_differences(got: Any, pinned: Any, path: str = "plan") -> list[str]:
    """Where ``got`` differs from ``pinned``: exact for everything but floats (relative FLOAT_REL_TOL)."""
    if isinstance(pinned, dict) and isinstance(got, dict):
        if set(got) != set(pinned):
            return [f"{path}: keys {sorted(set(got) ^ set(pinned))} differ"]
        return [d for k in pinned for d in plan_differences(got[k], pinned[k], f"{path}.{k}")]
    if isinstance(pinned, list) and isinstance(got, list):
        if len(got) != len(pinned):
            return [f"{path}: length {len(got)} != pinned {len(pinned)}"]
        return [d for i, (g, p) in enumerate(zip(got, pinned)) for d in plan_differences(g, p, f"{path}[{i}]")]
    if isinstance(pinned, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        same = (math.isnan(pinned) and math.isnan(got)) or math.isclose(got, pinned, rel_tol=FLOAT_REL_TOL, abs_tol=1e-12)
        return [] if same else [f"{path}: {got!r} != pinned {pinned!r}"]
    if type(got) is not type(pinned) or got != pinned:
        return [f"{path}: {got!r} != pinned {pinned!r}"]
    return []


def frame_differences(got: list[dict[str, Any]], pinned: list[dict[str, Any]]) -> list[str]:
    """Frames, streams, dtypes or shapes that differ, and block means beyond BLOCK_TOL."""
    if len(got) != len(pinned):
        return [f"{len(got)} frames != pinned {len(pinned)}"]
    out = []
    for i, (g_frame, p_frame) in enumerate(zip(got, pinned)):
        if set(g_frame) != set(p_frame):
            out.append(f"frame {i}: streams {sorted(g_frame)} != pinned {sorted(p_frame)}")
            continue
        for name, p in p_frame.items():
            g = g_frame[name]
            if (g["dtype"], g["shape"]) != (p["dtype"], p["shape"]):
                out.append(f"frame {i} {name}: {g['dtype']} {g['shape']} != pinned {p['dtype']} {p['shape']}")
                continue
            worst = float(np.abs(np.asarray(g["blocks"]) - np.asarray(p["blocks"])).max())
            if worst > BLOCK_TOL[p["dtype"]]:
                out.append(f"frame {i} {name}: a block mean moved by {worst:.2f} (> {BLOCK_TOL[p['dtype']]})")
    return out


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    return json.loads(PIN_FILE.read_text())


def test_pinned_specs_cover_every_challenge_and_modality(pinned):
    challenges = {c for spec in SPECS.values() for c, _ in spec.challenges}
    modalities = {m for spec in SPECS.values() for m in spec.modalities}
    assert challenges == set(Challenge)
    assert modalities == {Modality.DEPTH, Modality.THERMAL, Modality.EVENT}
    assert {spec.split for spec in SPECS.values()} == {"train", "val", "test"}
    assert set(pinned) == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_sequence_matches_its_pin(name, pinned):
    got = fingerprint(SPECS[name])
    assert plan_differences(got["plan"], pinned[name]["plan"]) == []
    assert frame_differences(got["frames"], pinned[name]["frames"]) == []


def test_the_comparison_catches_a_moved_target_and_a_changed_float(pinned):
    """The tolerances absorb a last-bit or one-level difference, not a one-pixel move of the target."""
    seq = generate(SPECS["no_challenge_thermal_event"])
    frame = seq.rgb(3)
    x, y, w, h = (int(round(v)) for v in seq.gt[3])
    moved = frame.copy()
    moved[y:y + h, x + 1:x + w + 1] = frame[y:y + h, x:x + w]
    base = [{"rgb": {"dtype": "uint8", "shape": list(frame.shape), "blocks": _block_means(frame)}}]
    nudged = [{"rgb": {"dtype": "uint8", "shape": list(frame.shape),
                       "blocks": _block_means(np.clip(frame.astype(np.int16) + 1, 0, 255).astype(np.uint8))}}]
    shifted = [{"rgb": {"dtype": "uint8", "shape": list(frame.shape), "blocks": _block_means(moved)}}]
    assert frame_differences(nudged, base) == []
    assert frame_differences(shifted, base) != []
    plan = pinned["no_challenge_thermal_event"]["plan"]
    fx = plan["attributes"]["camera"]["fx"]
    assert plan_differences({**plan, "prompt": plan["prompt"]}, plan) == []
    last_bit = {**plan, "attributes": {**plan["attributes"], "camera": {**plan["attributes"]["camera"],
                                                                         "fx": math.nextafter(fx, math.inf)}}}
    assert plan_differences(last_bit, plan) == []
    changed = {**plan, "attributes": {**plan["attributes"], "camera": {**plan["attributes"]["camera"], "fx": fx * 1.001}}}
    assert plan_differences(changed, plan) == ["plan.attributes.camera.fx: "
                                               f"{fx * 1.001!r} != pinned {fx!r}"]


def repin() -> None:
    PIN_FILE.write_text(json.dumps({name: fingerprint(spec) for name, spec in sorted(SPECS.items())},
                                   sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {PIN_FILE} ({PIN_FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--repin"]:
        sys.exit(f"usage: {sys.argv[0]} --repin  (only when GENERATOR_VERSION changed on purpose)")
    repin()

"""Generated sequences are pinned: a few specs covering every challenge and every aux modality
hash to the values ``GENERATOR_VERSION`` "1" produced when the pins were taken.

A change that alters frames, ground truth, the prompt or the existing metadata fails here. If that
change is meant (a new generator), bump ``data.spec.GENERATOR_VERSION`` and re-pin; an upgrade of
OpenCV/numpy or another CPU class may change rendered frames (docs/data.md, "Splits and seeds")
but never the plan (``plan``: ground truth, prompt and metadata). New metadata keys are allowed: the
metadata hash covers the keys listed here.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
from data.datautils import SMALL

from utptrack_ros.data import Challenge, SequenceSpec, generate, spec_for
from utptrack_ros.types import Modality

#: Metadata keys the hash covers (a dict value: the sub-keys it covers).
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

PINNED = {  # name: (plan, frames)
    "every_challenge_full": ('bfec69e97e04a8acf112775fa0ea3fcd3cdbc31fc4a7213851ec04466cb20a6f', 'd81e89293e6cbea0b6a0882961e80af6bf3c4a8c2b3963bfeed6c203a904cd9c'),
    "every_challenge_half": ('5f4884a11dcd547f984433b4b76a585f043a538c364a6cb849caa773f8acb066', '3fdc1ec2b4d31760ea2bbe1fb73ef096d842a68cfb2da2979ae87f1d538f249b'),
    "no_challenge_thermal_event": ('616be0dbb5bf4eb086c886aa828caf077d6b317c2608b517bc9ce5961f32ae62', '7fc15d856b3fb5e4fc45a53c862111c572d22d26319402e8692570ed7bf55533'),
    "test_drawn_mix": ('5618fec4f7154e1d6ee9f20b57b4f0df4e4700fea730de8bf5f8c803e8f6490d', 'a2af89a2e91a1e3dca7e0e0705896037ee5f86cde9056e83eefe7577e636dc2f'),
    "train_rgb_only": ('3f8f4c9f0873bf070a32858e1a9df2f9fac0140c00829ad37d45c84940301e64', '0f57cdb40901e4296152d79118f863fb2dc2c45a80e3d9f167a3c20dbab45683'),
    "depth_holes_depth": ('204c0dea939664127fbacb2d83818d77424f1dbea07e7fe31cfa2e51058718fa', '2a9c16def85aec66cc2c0fc2ada28c3911a61ec9b4e5e2ebe4043224797b74e2'),
    "val_drawn_mix_depth": ('ad6cbc7de447638809513eb19253d9ea94b2e57feca548e141eea112fb68780b', '210bdc0b1c3097ed13383e5e088509ed51301226fa850471cef201517542e416'),
}


def _hash(*items: Any) -> str:
    digest = hashlib.sha256()
    for item in items:
        if isinstance(item, np.ndarray):
            digest.update(f"{item.dtype.str}{item.shape}".encode())
            digest.update(np.ascontiguousarray(item).tobytes())
        else:
            digest.update(json.dumps(item, sort_keys=True, default=lambda o: o.tolist()).encode())
    return digest.hexdigest()


def _pinned_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: attributes[key] if sub is None else {k: attributes[key][k] for k in sub}
            for key, sub in ATTRIBUTE_KEYS.items()}


def sequence_hashes(spec: SequenceSpec) -> tuple[str, str]:
    """(plan, frames): ground truth + stamps + prompt + pinned metadata, and every frame array."""
    seq = generate(spec)
    plan = _hash(seq.gt, seq.absent, seq.stamps_ns, seq.prompt, _pinned_attributes(seq.attributes),
                 *(seq.frame_info[k] for k in FRAME_INFO_KEYS))
    frames = _hash(*(a for i in range(seq.length) for a in (seq.rgb(i), *(seq.aux(m, i) for m in seq.modalities))))
    return plan, frames


def test_pinned_specs_cover_every_challenge_and_modality():
    challenges = {c for spec in SPECS.values() for c, _ in spec.challenges}
    modalities = {m for spec in SPECS.values() for m in spec.modalities}
    assert challenges == set(Challenge)
    assert modalities == {Modality.DEPTH, Modality.THERMAL, Modality.EVENT}
    assert {spec.split for spec in SPECS.values()} == {"train", "val", "test"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_sequence_matches_its_pin(name):
    plan, frames = sequence_hashes(SPECS[name])
    assert (plan, frames) == PINNED[name]

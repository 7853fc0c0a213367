"""TrackingSequence generator: ``generate(spec)`` returns a :class:`~utptrack_ros.data.sequence.TrackingSequence`
whose frames render on demand from real image content (``data.sources``), with ground truth,
aux modalities, a language description, attributes and per-frame info.

```python
from utptrack_ros.data import generate, spec_for, SequenceSpec, Challenge
seq = generate(spec_for("train", 17))                     # challenges drawn from the seed
seq = generate(SequenceSpec(seed=5, challenges={Challenge.DARKNESS: 0.8}, size=(640, 480)))
for frame in seq.iter_frames():                           # frame.rgb, frame.aux[Modality.DEPTH], frame.gt
    ...
```
Ground truth is computed eagerly (cheap: target mask only); frames render lazily and are cached
a few at a time, so random access (training samplers) renders only what it touches.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from ..types import Modality
from .language import Described, describe
from .render import Renderer
from .scene import plan_scene
from .sequence import DEFAULT_START_NS, TrackingSequence
from .sources import SourceLibrary, load_library
from .spec import GENERATOR_VERSION, SequenceSpec, rng_for


class RenderedFrames:
    """``FrameSource`` backed by a ``Renderer`` (frames render on first access)."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer

    @property
    def modalities(self) -> tuple[Modality, ...]:
        order = (Modality.DEPTH, Modality.THERMAL, Modality.EVENT)
        return tuple(m for m in order if m in self.renderer.scene.spec.modalities)

    def __len__(self) -> int:
        return self.renderer.scene.length

    def rgb(self, index: int) -> np.ndarray:
        return self.renderer.frame(index)["rgb"]

    def aux(self, modality: Modality, index: int) -> Optional[np.ndarray]:
        return self.renderer.frame(index)[modality]


def generate(spec: SequenceSpec, library: Optional[SourceLibrary] = None) -> TrackingSequence:
    """The sequence described by ``spec`` (deterministic in ``spec``); frames render lazily."""
    library = library or load_library()
    scene = plan_scene(spec, library)
    renderer = Renderer(scene)
    gt, absent, info = renderer.groundtruth()
    target = scene.target
    distractors = [layer for layer in scene.layers if layer.role == "distractor"]
    first = [Described(layer.sprite.category, layer.sprite.colour, layer.sprite.pattern, float(layer.x[0]),
                       float(layer.y[0]))
             for layer in [target, *distractors]]
    prompt, language = describe(first[0], first[1:], scene.width, scene.height, rng_for(spec.seed, "language"))
    attributes = {
        "generator": "utptrack_ros.data.generator", "generator_version": GENERATOR_VERSION,
        "seed": spec.seed, "split": spec.split, "fps": spec.fps,
        "challenges": {c.value: s for c, s in spec.challenge_strengths.items()}, "language": language, **scene.attributes,
    }
    stamps = DEFAULT_START_NS + np.round(np.arange(spec.length) * 1e9 / spec.fps).astype(np.int64)
    return TrackingSequence(name=spec.sequence_name, frames=RenderedFrames(renderer), gt=gt, absent=absent, prompt=prompt,
                    attributes=attributes, frame_info=info, stamps_ns=stamps)


def generate_many(specs: "list[SequenceSpec] | Iterator[SequenceSpec]") -> Iterator[TrackingSequence]:
    """``generate`` over several specs, sharing one source library."""
    library = load_library()
    for spec in specs:
        yield generate(spec, library)

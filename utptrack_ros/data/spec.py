"""What to generate: challenges, the per-sequence spec, and the seed/split convention.

Splits are seed ranges (documented in docs/data.md):

=========  ======================  =========================================================
split      seeds                   sources
=========  ======================  =========================================================
train      0 .. 99_999             curated sources without ``holdout``
val        100_000 .. 100_999      all sources (held-out objects/backgrounds appear)
test       200_000 .. 200_999      all sources
custom     any other seed          all sources
=========  ======================  =========================================================

``spec_for(split, index)`` gives sequence ``index`` of a split with challenges drawn from its seed;
the same seed always gives the same sequence (for a given ``GENERATOR_VERSION``).
"""
from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Optional, Union, cast

import numpy as np

from ..types import Modality
from .errors import SequenceError

GENERATOR_VERSION = "1"
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "val": range(100_000, 101_000),
    "test": range(200_000, 201_000),
}


class Challenge(str, enum.Enum):
    """Controllable difficulties; each has a strength in (0, 1]."""

    SCALE_CHANGE = "scale_change"            # target depth (and so size) varies by up to ~5x
    FAST_MOTION = "fast_motion"              # 3-9x faster target motion, sudden velocity kicks
    MOTION_BLUR = "motion_blur"              # long exposure: object and camera motion smear
    ROTATION = "rotation"                    # in-plane rotation, up to a full turn
    DEFORMATION = "deformation"              # non-rigid warp of the target
    PARTIAL_OCCLUSION = "partial_occlusion"  # occluders cover part of the target
    FULL_OCCLUSION = "full_occlusion"        # an occluder hides the target completely (absent frames)
    OUT_OF_VIEW = "out_of_view"              # target leaves the frame and comes back (absent frames)
    DISTRACTORS = "distractors"              # similar objects (same category or colour) near the target
    ILLUMINATION = "illumination"            # global gain, moving spotlight and colour cast change
    DARKNESS = "darkness"                    # RGB nearly black + noisy; depth/thermal/event unaffected
    CAMERA_SHAKE = "camera_shake"            # jittery camera translation + rotation
    LOW_RESOLUTION = "low_resolution"        # small target and down/up-sampled RGB
    CAMOUFLAGE = "camouflage"                # target textured like the background (low RGB contrast)
    DEPTH_HOLES = "depth_holes"              # parts of the target give no depth (opt-in: never drawn at random)

    @classmethod
    def parse(cls, value: Union["Challenge", str]) -> "Challenge":
        try:
            return cls(value)
        except ValueError:
            raise SequenceError(f"unknown challenge {value!r}; expected one of {[c.value for c in cls]}") from None


ChallengeSpec = Union[Mapping[Union[Challenge, str], float], Iterable[Union[Challenge, str]]]


def _normalise_challenges(challenges: ChallengeSpec) -> tuple[tuple[Challenge, float], ...]:
    items = challenges.items() if isinstance(challenges, Mapping) else ((c, 1.0) for c in challenges)
    out = {}
    for key, strength in items:
        strength = float(strength)
        if not 0.0 <= strength <= 1.0:
            raise SequenceError(f"challenge {key!r}: strength must be in [0, 1], got {strength}")
        if strength > 0:
            out[Challenge.parse(key)] = strength
    return tuple(sorted(out.items(), key=lambda kv: kv[0].value))


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that determines one generated sequence.

    Attributes:
        seed: the only source of randomness (see module doc for the split ranges).
        length: number of frames.
        size: (width, height) in pixels; 320x240 for training, 640x480 for demo bags.
        fps: frame rate (stamps and motion blur exposure are per frame).
        challenges: challenge -> strength in (0, 1]; a list means strength 1.
        modalities: aux modalities to render (RGB is always rendered).
        event_threshold: ESIM contrast threshold on log intensity.
        event_substeps: log-intensity samples per frame interval (>= 1) for the event simulator.
        name: sequence name; default ``<split>_<seed>``.
    """

    seed: int
    length: int = 100
    size: tuple[int, int] = (320, 240)
    fps: float = 30.0
    challenges: ChallengeSpec = ()
    modalities: tuple[Modality, ...] = (Modality.DEPTH, Modality.THERMAL, Modality.EVENT)
    event_threshold: float = 0.2
    event_substeps: int = 2
    name: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "challenges", _normalise_challenges(self.challenges))
        mods = tuple(Modality(m) for m in self.modalities)
        if Modality.RGB in mods:
            raise SequenceError("modalities lists aux streams only; RGB is always generated")
        object.__setattr__(self, "modalities", mods)
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        if self.length < 2:
            raise SequenceError(f"length must be >= 2, got {self.length}")
        if not (32 <= self.size[0] <= 4096 and 32 <= self.size[1] <= 4096):
            raise SequenceError(f"size must be within 32..4096 px, got {self.size}")
        if self.event_substeps < 1:
            raise SequenceError(f"event_substeps must be >= 1, got {self.event_substeps}")

    def strength(self, challenge: Challenge) -> float:
        """Strength of ``challenge`` (0.0 when off)."""
        return self.challenge_strengths.get(challenge, 0.0)

    @property
    def challenge_strengths(self) -> dict[Challenge, float]:
        """challenge -> strength in (0, 1] of the challenges that are on."""
        # __post_init__ normalised ``challenges`` (any ChallengeSpec) to (Challenge, strength) pairs
        return dict(cast("tuple[tuple[Challenge, float], ...]", self.challenges))

    @property
    def split(self) -> str:
        return split_of(self.seed)

    @property
    def sequence_name(self) -> str:
        return self.name or f"{self.split}_{self.seed:06d}"

    def with_challenges(self, challenges: ChallengeSpec) -> "SequenceSpec":
        return replace(self, challenges=challenges)


def split_of(seed: int) -> str:
    """``train`` / ``val`` / ``test`` for seeds in their ranges, else ``custom``."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    return "custom"


def rng_for(seed: int, stream: str, *index: int) -> np.random.Generator:
    """Independent random stream per (seed, named purpose, indices): toggling one challenge does not
    change the random draws of unrelated parts of a sequence."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(stream.encode()), *index])


#: Challenges only an explicit spec turns on: ``random_challenges`` neither draws nor picks them, so
#: adding one leaves every seed's drawn challenges (and so every existing sequence) as it was.
OPT_IN_CHALLENGES = frozenset({Challenge.DEPTH_HOLES})

#: Probability that a random spec enables each challenge (training mix).
DEFAULT_CHALLENGE_PROBABILITY = 0.22


def random_challenges(seed: int, probability: float = DEFAULT_CHALLENGE_PROBABILITY
                      ) -> dict[Challenge, float]:
    """Challenges drawn from ``seed``: each on with ``probability``, strength uniform in [0.3, 1]
    (``OPT_IN_CHALLENGES`` excepted)."""
    rng = rng_for(seed, "challenges")
    chosen = {}
    for challenge in Challenge:
        if challenge in OPT_IN_CHALLENGES:
            continue
        on, strength = rng.random() < probability, rng.uniform(0.3, 1.0)
        if on:
            chosen[challenge] = round(float(strength), 3)
    return chosen


def spec_for(split: str, index: int, *, challenges: Optional[ChallengeSpec] = None,
             probability: float = DEFAULT_CHALLENGE_PROBABILITY, **overrides: object) -> SequenceSpec:
    """Spec of sequence ``index`` of ``split`` (seed = split start + index).

    ``challenges=None`` draws them from the seed (``random_challenges``); other keyword arguments
    override ``SequenceSpec`` fields (``length``, ``size``, ``modalities``...).
    """
    if split not in SPLITS:
        raise SequenceError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    seeds = SPLITS[split]
    if not 0 <= index < len(seeds):
        raise SequenceError(f"split {split} has {len(seeds)} sequences; index {index} is out of range")
    seed = seeds[index]
    chosen = random_challenges(seed, probability) if challenges is None else challenges
    return SequenceSpec(seed=seed, challenges=chosen, **overrides)  # type: ignore[arg-type]

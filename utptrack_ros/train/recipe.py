"""Training recipe: one frozen dataclass tree, read from YAML by ``config.from_mapping``.

Every field is documented on its dataclass; unknown YAML keys are refused with their names.
Named recipes live in ``recipes/``; :data:`DEFAULT_RECIPE` produced the shipped model
(``weights/tiny.safetensors``; docs/training.md). Superseded recipes live in ``recipes/archive/``
and still load by name, with a warning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from ..config import from_mapping, to_mapping
from ..errors import ConfigError
from .losses import BOX_AT, LossWeights
from .sampling import SamplingConfig

RECIPES_DIR = Path(__file__).with_name("recipes")
ARCHIVE_DIR = RECIPES_DIR / "archive"
#: The shipped model's recipe, and ``utptrack train``'s default.
DEFAULT_RECIPE = "tiny_onestage"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Where training sequences come from (``utptrack_ros.data``, train split only).

    Attributes:
        train_sequences: distinct training sequences (train-split indices ``first_sequence ..
            first_sequence + n - 1``); the stream cycles through them in a seed-shuffled order.
        first_sequence: first train-split index (a fine-tuning stage can see new sequences).
        sequence_length: frames per generated sequence.
        image_size: (width, height) of generated frames.
        challenge_probability: chance that each challenge is on in a sequence (generator mix).
        pool_size: sequences each data stream holds at once (samples mix across them).
        samples_per_sequence: samples drawn from a sequence before it is replaced.
        num_workers: data-loader worker processes per rank (0 = in the training process).
        stem_in_loader: on the CPU, the loader workers also build the tensors, encode the
            prompts and run the frozen MobileNetV2 blocks (``optim.stem_trainable_from``), so
            that work overlaps the training step on the other core instead of adding to it
            (``loop.LoaderTensors``; needs ``num_workers >= 1``; ignored on GPUs).
        val_sequences: validation sequences (val split) tracked with the real tracker at each
            validation (never test seeds).
        val_length: frames per validation sequence.
    """

    train_sequences: int = 2000
    first_sequence: int = 0
    sequence_length: int = 100
    image_size: tuple[int, int] = (320, 240)
    challenge_probability: float = 0.22
    pool_size: int = 8
    samples_per_sequence: int = 48
    num_workers: int = 1
    stem_in_loader: bool = False
    val_sequences: int = 8
    val_length: int = 100


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and a cosine (or step) decay.

    Attributes:
        batch_size: samples per step per rank.
        steps: optimisation steps (the run length; the prune schedule and LR scale with it).
        lr: peak learning rate of the transformer, heads, embeddings and text projection.
        stem_lr_scale: LR multiplier of the (trainable part of the) pretrained stem.
        weight_decay: AdamW weight decay (not applied to norms, biases, embeddings).
        warmup_steps: linear LR warm-up.
        schedule: ``cosine`` (to ``min_lr_ratio`` * lr) or ``step`` (x0.1 at 80 %).
        min_lr_ratio: final LR of the cosine schedule as a fraction of ``lr``.
        grad_clip: max global grad norm (0 = off).
        stem_trainable_from: MobileNetV2 ``features`` index from which the stem trains; earlier
            blocks are frozen (no gradients, BatchNorm in eval mode). 0 trains the whole stem.
    """

    batch_size: int = 16
    steps: int = 3000
    lr: float = 5e-4
    stem_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    stem_trainable_from: int = 7


@dataclass(frozen=True)
class PruneSchedule:
    """Keep-rate schedule of method.md 4.6, in fractions of the run instead of epochs.

    The keep rate is 1 before ``start``, then cosine-decays to each component's final ratio
    (the first ratio the model config lists for CE / DTE / STE) over ``warm``, then stays.

    Attributes:
        start: fraction of ``steps`` before pruning starts (UTPTrack-S: 12/180 epochs).
        warm: fraction of ``steps`` of the cosine decay (UTPTrack-S: 48/180).
        unpruned_prob: after ``start``, the chance that a step runs unpruned anyway, so the
            unpruned model (``tiny_base``) stays as good as the pruned one.
    """

    start: float = 0.1
    warm: float = 0.4
    unpruned_prob: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """Everything one training run depends on.

    Attributes:
        model: registered variant to train (``tiny``).
        pretrained_stem: initialise the MobileNetV2 stem from the offline ImageNet weights.
        seed: seeds torch, numpy and the data streams (sequences themselves are fixed by their
            own seeds from the train split).
        init_from: start from the weights of this project ``.safetensors`` file (a fine-tuning
            stage; relative paths are relative to the working directory) instead of the stem's
            ImageNet weights and a fresh transformer; optimiser and step start anew.
        data / sampling / optim / prune / losses: see their classes.
        box_at: where the box losses read the size/offset maps (``losses.tracking_loss``).
        channels_last: run the convolutions channels-last (faster on CPU; same results).
        score_prior: initial centre-map probability of every cell (CenterNet bias init; 0 = keep
            the model's own init).
        log_every: steps between metric-log lines.
        checkpoint_every: steps between resumable checkpoints.
        val_every: steps between validations with the real tracker (0 = only at the end).
    """

    model: str = "tiny"
    pretrained_stem: bool = True
    seed: int = 0
    init_from: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    prune: PruneSchedule = field(default_factory=PruneSchedule)
    losses: LossWeights = field(default_factory=LossWeights)
    box_at: str = "gt_cell"
    score_prior: float = 0.01
    channels_last: bool = True
    log_every: int = 10
    checkpoint_every: int = 250
    val_every: int = 500

    def __post_init__(self) -> None:
        if self.box_at not in BOX_AT:
            raise ConfigError(f"box_at must be one of {BOX_AT}, got {self.box_at!r}")
        if self.optim.schedule not in ("cosine", "step"):
            raise ConfigError(f"optim.schedule must be cosine or step, got {self.optim.schedule!r}")
        if self.optim.steps < 1 or self.optim.batch_size < 1:
            raise ConfigError("optim.steps and optim.batch_size must be >= 1")
        unknown = set(self.sampling.modality_probs) - {"rgb", "depth", "thermal", "event"}
        if unknown:
            raise ConfigError(f"sampling.modality_probs: unknown modalities {sorted(unknown)}")


def load_recipe(source: Union[str, Path, Mapping[str, Any], None] = None, **overrides: Any) -> Recipe:
    """A recipe from a YAML file, a recipe name (``recipes/``, then ``recipes/archive/``), a
    mapping or the dataclass defaults.

    ``overrides`` are dotted keys (``optim.steps=200``) applied on top.
    """
    if source is None:
        mapping: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        mapping = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            path = _named_recipe_path(str(source))
        mapping = yaml.safe_load(path.read_text()) or {}
    for key, value in overrides.items():
        _set_dotted(mapping, key, value)
    return from_mapping(Recipe, mapping, where="recipe")


def named_recipes() -> list[str]:
    """Names of the current recipes (``recipes/*.yaml``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def archived_recipes() -> list[str]:
    """Names of the superseded recipes (``recipes/archive/*.yaml``; its README says what replaced them)."""
    return sorted(p.stem for p in ARCHIVE_DIR.glob("*.yaml"))


def _named_recipe_path(name: str) -> Path:
    if (RECIPES_DIR / f"{name}.yaml").is_file():
        return RECIPES_DIR / f"{name}.yaml"
    if (ARCHIVE_DIR / f"{name}.yaml").is_file():
        log.warning("recipe %r is archived: it trained a model that no longer ships (%s; the shipped model's "
                    "recipe is %r)", name, ARCHIVE_DIR / "README.md", DEFAULT_RECIPE)
        return ARCHIVE_DIR / f"{name}.yaml"
    raise ConfigError(f"recipe {name!r}: no such file (named recipes: {named_recipes()}; "
                      f"archived: {archived_recipes()})")


def _set_dotted(mapping: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = mapping
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``optim.steps=200`` -> ("optim.steps", 200) (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def recipe_to_mapping(recipe: Recipe) -> dict[str, Any]:
    return to_mapping(recipe)


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """``recipe`` with dotted-key overrides applied (re-validated)."""
    mapping = to_mapping(recipe)
    for key, value in overrides.items():
        _set_dotted(mapping, key, value)
    return from_mapping(Recipe, mapping, where="recipe")


__all__ = [
    "DataConfig",
    "OptimConfig",
    "PruneSchedule",
    "Recipe",
    "DEFAULT_RECIPE",
    "archived_recipes",
    "load_recipe",
    "named_recipes",
    "parse_override",
    "recipe_to_mapping",
    "with_overrides",
    "replace",
]

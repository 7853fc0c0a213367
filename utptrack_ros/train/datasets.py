"""Streams of training batches from generated sequences (train split only), DDP-aware.

Each data stream (one per rank x loader worker) keeps a pool of ``pool_size`` sequences,
draws samples from random pool members with :func:`sampling.draw_sample`, and replaces a
sequence after ``samples_per_sequence`` draws by the next one in its own order. Streams are
disjoint: stream ``s`` of ``S`` takes the positions ``s, s + S, s + 2S, ...`` of one
seed-shuffled permutation of the train-split indices ``0 .. train_sequences-1`` (the
DistributedSampler idea applied to a generator), so ranks and workers never duplicate work and
a run is a deterministic function of the recipe seed, world size and worker count.

Batches leave the stream as uint8 numpy arrays (cheap to pass between processes); tensors are
built in the training process by :func:`to_tensors` with the tracker's own normalisation.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..data.generator import generate
from ..data.spec import spec_for
from ..preprocess import crops_to_tensor
from ..types import Modality
from .sampling import Sample, SamplingConfig, SequenceLike, draw_sample

log = logging.getLogger(__name__)

SequenceFactory = Callable[[int], SequenceLike]


@dataclass
class Batch:
    """A collated batch (numpy, uint8 crops; ``None`` aux entries mean "RGB duplicated")."""

    static_rgb: list[np.ndarray]
    static_aux: list[Optional[np.ndarray]]
    dynamic_rgb: list[np.ndarray]
    dynamic_aux: list[Optional[np.ndarray]]
    search_rgb: list[np.ndarray]
    search_aux: list[Optional[np.ndarray]]
    static_box: np.ndarray  # (B, 4)
    dynamic_box: np.ndarray  # (B, 4)
    gt_cxcywh: np.ndarray  # (B, 4)
    positive: np.ndarray  # (B,) bool
    task: np.ndarray  # (B,) int64
    prompts: list[str]
    modalities: list[str]

    def __len__(self) -> int:
        return len(self.prompts)


def collate(samples: list[Sample]) -> Batch:
    return Batch(
        static_rgb=[s.static_rgb for s in samples],
        static_aux=[s.static_aux for s in samples],
        dynamic_rgb=[s.dynamic_rgb for s in samples],
        dynamic_aux=[s.dynamic_aux for s in samples],
        search_rgb=[s.search_rgb for s in samples],
        search_aux=[s.search_aux for s in samples],
        static_box=np.stack([s.static_box for s in samples]).astype(np.float32),
        dynamic_box=np.stack([s.dynamic_box for s in samples]).astype(np.float32),
        gt_cxcywh=np.stack([s.gt_cxcywh for s in samples]).astype(np.float32),
        positive=np.array([s.positive for s in samples], dtype=bool),
        task=np.array([s.task for s in samples], dtype=np.int64),
        prompts=[s.prompt for s in samples],
        modalities=[s.modality for s in samples],
    )


@dataclass
class TensorBatch:
    """Model inputs and targets on the training device."""

    search: torch.Tensor
    static: torch.Tensor
    dynamic: torch.Tensor
    static_box: torch.Tensor
    dynamic_box: torch.Tensor
    text: Optional[torch.Tensor]
    task: torch.Tensor
    gt_cxcywh: torch.Tensor
    positive: torch.Tensor


def to_tensors(batch: Batch, in_chans: int, device: torch.device, text_encoder=None) -> TensorBatch:
    """Normalised tensors exactly as the tracker builds them (``preprocess.crops_to_tensor``).

    ``text_encoder`` (``models.text.TextEncoder``) encodes the prompts; "" is the zero vector.
    """
    text = None
    if text_encoder is not None:
        text = text_encoder.encode([p or None for p in batch.prompts]).to(device)
    return TensorBatch(
        search=crops_to_tensor(batch.search_rgb, batch.search_aux, in_chans, device),
        static=crops_to_tensor(batch.static_rgb, batch.static_aux, in_chans, device),
        dynamic=crops_to_tensor(batch.dynamic_rgb, batch.dynamic_aux, in_chans, device),
        static_box=torch.from_numpy(batch.static_box).to(device),
        dynamic_box=torch.from_numpy(batch.dynamic_box).to(device),
        text=text,
        task=torch.from_numpy(batch.task).to(device),
        gt_cxcywh=torch.from_numpy(batch.gt_cxcywh).to(device),
        positive=torch.from_numpy(batch.positive).to(device),
    )


def stream_order(num_sequences: int, seed: int, stream: int, num_streams: int) -> Iterator[int]:
    """Train-split indices for one stream: every ``num_streams``-th entry of seeded permutations
    (a fresh permutation per pass over the ``num_sequences`` sequences)."""
    epoch = 0
    position = stream
    while True:
        perm = np.random.default_rng([seed, epoch, 7919]).permutation(num_sequences)
        while position < num_sequences:
            yield int(perm[position])
            position += num_streams
        position -= num_sequences
        epoch += 1


class SamplePool:
    """A rotating pool of sequences of one stream and the draws from it."""

    def __init__(
        self,
        factory: SequenceFactory,
        order: Iterator[int],
        pool_size: int,
        samples_per_sequence: int,
        sampling: SamplingConfig,
        template_size: int,
        search_size: int,
        rng: np.random.Generator,
    ) -> None:
        self.factory, self.order = factory, order
        self.pool_size, self.samples_per_sequence = pool_size, samples_per_sequence
        self.sampling, self.template_size, self.search_size = sampling, template_size, search_size
        self.rng = rng
        self.pool: list[SequenceLike] = []
        self.uses: list[int] = []
        self.opened = 0

    def _open_next(self) -> SequenceLike:
        self.opened += 1
        return self.factory(next(self.order))

    def draw(self) -> Sample:
        while len(self.pool) < self.pool_size:
            self.pool.append(self._open_next())
            # stagger the first replacements so the pool turns over smoothly
            self.uses.append(int(self.rng.integers(0, self.samples_per_sequence)) if self.opened <= self.pool_size else 0)
        for _ in range(100):
            k = int(self.rng.integers(len(self.pool)))
            sample = draw_sample(self.pool[k], self.rng, self.sampling, self.template_size, self.search_size)
            self.uses[k] += 1
            if self.uses[k] >= self.samples_per_sequence or sample is None:
                self.pool[k] = self._open_next()
                self.uses[k] = 0
            if sample is not None:
                return sample
        raise RuntimeError("no usable training sample in 100 draws (sequences without annotated frames?)")


class TripletStream(IterableDataset):
    """Endless batches for one rank; loader workers split the rank's stream further.

    Args:
        factory: train-split index -> sequence (picklable, e.g. ``data_source.TrainSequences``).
        num_sequences: distinct train-split indices to use.
        batch_size: samples per yielded batch.
        rank / world_size: DDP position of this process.
        seed: recipe seed (and the resume step, so a resumed run draws fresh samples).
        tensorize: applied to each batch where it is drawn (in the loader worker), e.g.
            ``loop.LoaderTensors``; the stream then yields its result instead of the ``Batch``.
    """

    def __init__(
        self,
        factory: SequenceFactory,
        num_sequences: int,
        batch_size: int,
        sampling: SamplingConfig,
        template_size: int,
        search_size: int,
        pool_size: int,
        samples_per_sequence: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        tensorize: Optional[Callable[[Batch], TensorBatch]] = None,
    ) -> None:
        super().__init__()
        self.tensorize = tensorize
        self.factory, self.num_sequences, self.batch_size = factory, num_sequences, batch_size
        self.sampling, self.template_size, self.search_size = sampling, template_size, search_size
        self.pool_size, self.samples_per_sequence = pool_size, samples_per_sequence
        self.rank, self.world_size, self.seed = rank, world_size, seed

    def __iter__(self) -> Iterator[Batch | TensorBatch]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        stream = self.rank * workers + worker
        streams = self.world_size * workers
        if info is not None:
            torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, stream, 104729])
        pool = SamplePool(
            self.factory,
            stream_order(self.num_sequences, self.seed, stream, streams),
            self.pool_size,
            self.samples_per_sequence,
            self.sampling,
            self.template_size,
            self.search_size,
            rng,
        )
        while True:
            batch = collate([pool.draw() for _ in range(self.batch_size)])
            yield batch if self.tensorize is None else self.tensorize(batch)


# -- generated sequences ------------------------------------------------------------------------


class CachedSequence:
    """A sequence view that keeps every frame it has rendered (a pool member is sampled many times)."""

    def __init__(self, seq: SequenceLike) -> None:
        self._seq = seq
        self.name = getattr(seq, "name", "")
        self.gt = seq.gt
        self.absent = seq.absent
        self.prompt = seq.prompt
        self.attributes = getattr(seq, "attributes", {})
        self._rgb: dict[int, np.ndarray] = {}
        self._aux: dict[tuple[object, int], Optional[np.ndarray]] = {}

    @property
    def modalities(self):
        return self._seq.modalities

    def __len__(self) -> int:
        return len(self.gt)

    def rgb(self, index: int) -> np.ndarray:
        if index not in self._rgb:
            self._rgb[index] = self._seq.rgb(index)
        return self._rgb[index]

    def aux(self, modality, index: int) -> Optional[np.ndarray]:
        key = (modality, index)
        if key not in self._aux:
            self._aux[key] = self._seq.aux(modality, index)
        return self._aux[key]


AUX_NAMES = ("depth", "thermal", "event")


@dataclass(frozen=True)
class GeneratedSequences:
    """Picklable ``index -> sequence`` of one split of ``utptrack_ros.data`` (frames render lazily).

    Attributes:
        split: ``train`` or ``val`` (never ``test`` in training).
        length / image_size / challenge_probability: generator settings (``data.spec_for``).
        aux_weights: each sequence renders RGB plus *one* auxiliary stream drawn from these
            weights by its index (rendering one aux stream instead of three costs ~45 % less);
            empty = RGB only.
        cache: keep rendered frames (pool members are sampled many times).
        first_index: added to every index (``data.first_sequence``).
    """

    split: str = "train"
    length: int = 100
    image_size: tuple[int, int] = (320, 240)
    challenge_probability: float = 0.22
    aux_weights: tuple[tuple[str, float], ...] = (("depth", 1.0), ("thermal", 1.0), ("event", 1.0))
    cache: bool = True
    first_index: int = 0

    def modalities_for(self, index: int) -> tuple:
        names = [n for n, w in self.aux_weights if w > 0]
        if not names:
            return ()
        p = np.array([w for n, w in self.aux_weights if w > 0], dtype=np.float64)
        k = int(np.random.default_rng([index, 271828]).choice(len(names), p=p / p.sum()))
        return (Modality(names[k]),)

    def __call__(self, index: int) -> SequenceLike:
        index += self.first_index
        spec = spec_for(
            self.split,
            index,
            probability=self.challenge_probability,
            length=self.length,
            size=tuple(self.image_size),
            modalities=self.modalities_for(index),
        )
        seq = generate(spec)
        return CachedSequence(seq) if self.cache else seq

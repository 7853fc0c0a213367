"""The training loop: optimiser, schedules, DDP, resumable checkpoints, metrics log, validation.

:func:`train` runs a :class:`Trainer`: setup (model, resume state, frozen stem prefix, optimiser,
data), then per step :meth:`Trainer.step`, and when due :meth:`Trainer.log`,
:meth:`Trainer.checkpoint` and :meth:`Trainer.validate_and_save`.

One process per device. Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
``DistributedDataParallel`` (NCCL on GPUs, Gloo on CPUs), every rank draws its own disjoint
data stream (``datasets.TripletStream``), and only rank 0 logs, validates and writes files.

Output folder::

    recipe.yaml          the resolved recipe
    metrics.jsonl        one JSON object per logged step / validation (rank 0)
    last.pt              resumable state (model, optimiser, step, RNG, recipe); written atomically
    best.safetensors     project checkpoint (``checkpoint.save_model``) with the best val AUC
    final.safetensors    the weights after the last step
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..checkpoint import load_model, save_model
from ..config import PruneConfig
from ..errors import ConfigError
from ..eval.metrics import aggregate
from ..eval.sequence_run import run_tracker
from ..models import UTPTrack, create_model
from ..models.pruning import keep_rate_schedule
from ..models.stems import FrozenPrefix, MobileNetV2Stem
from ..models.text import TextEncoder, create_text_encoder
from ..tracker import Tracker
from .datasets import Batch, SequenceFactory, TensorBatch, TripletStream, to_tensors
from .losses import tracking_loss
from .recipe import Recipe, recipe_to_mapping

log = logging.getLogger(__name__)

STATE_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"


# -- distributed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (no-op without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def choose_device(device: str, dist_info: DistInfo) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist_info.local_rank)
    return dev


# -- model, parameters, schedules -----------------------------------------------------------------


def init_for_training(model: UTPTrack, score_prior: float) -> None:
    """CenterNet's focal-loss initialisation: the centre branch's last bias gives every cell the
    prior probability ``score_prior`` (sigmoid(0) = 0.5 everywhere makes the first focal losses
    ~30x larger and slows the start)."""
    if score_prior > 0:
        with torch.no_grad():
            bias = model.box_head.conv5_ctr.bias
            assert bias is not None  # the head's convs have biases
            bias.fill_(math.log(score_prior / (1 - score_prior)))


def _prefix_stem(model: UTPTrack, blocks: int) -> Optional[MobileNetV2Stem]:
    """The model's stem if it can freeze a prefix of ``blocks`` blocks (a MobileNetV2 stem, blocks > 0)."""
    stem = model.backbone.patch_embed
    return stem if isinstance(stem, MobileNetV2Stem) and blocks > 0 else None


def freeze_stem_prefix(model: UTPTrack, blocks: int, precomputed: bool = False) -> Optional[FrozenPrefix]:
    """Freeze the stem's first ``blocks`` MobileNetV2 blocks (``MobileNetV2Stem.freeze_prefix``);
    None, and nothing frozen, for other stems or ``blocks`` 0."""
    stem = _prefix_stem(model, blocks)
    return None if stem is None else stem.freeze_prefix(blocks, precomputed=precomputed)


class LoaderTensors:
    """``Batch`` -> ``TensorBatch`` in the data-loader worker (``data.stem_in_loader``).

    Builds the tensors (``datasets.to_tensors``), encodes the prompts and runs the stem's frozen
    blocks (its :class:`~utptrack_ros.models.stems.FrozenPrefix`, one thread) where the batch is
    drawn, so on a 2-core CPU that work runs beside the training step instead of inside it; the
    model's stem (frozen with ``precomputed``) then starts at the first trainable block. The
    function is the same as the in-process path (the tests compare the outputs).
    """

    def __init__(self, prefix: FrozenPrefix, in_chans: int, text_encoder: str) -> None:
        # the encoder's name, not the encoder: the worker builds its own (create_text_encoder
        # keeps one per process), so nothing large is pickled
        self.prefix, self.in_chans, self.text_encoder_name = prefix, in_chans, text_encoder

    def __call__(self, batch: Batch) -> TensorBatch:
        tb = to_tensors(batch, self.in_chans, torch.device("cpu"), create_text_encoder(self.text_encoder_name))
        feats = [self.prefix(x) for x in (tb.search, tb.static, tb.dynamic)]
        return replace(tb, search=feats[0], static=feats[1], dynamic=feats[2])


def param_groups(model: UTPTrack, lr: float, stem_scale: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: stem (lr * stem_scale) vs the rest; no decay on 1-D params and embeddings."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_stem = name.startswith("backbone.patch_embed.features")
        no_decay = p.ndim <= 1 or "pos_embed" in name or name.endswith("_token")
        groups.setdefault((is_stem, no_decay), []).append(p)
    out = []
    for (is_stem, no_decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": lr * (stem_scale if is_stem else 1.0),
                "base_lr": lr * (stem_scale if is_stem else 1.0),
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{'stem' if is_stem else 'main'}{'_nodecay' if no_decay else ''}",
            }
        )
    return out


def lr_factor(step: int, recipe: Recipe) -> float:
    o = recipe.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    if o.schedule == "step":
        return 0.1 if step >= 0.8 * o.steps else 1.0
    t = (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def final_keep_ratios(prune: PruneConfig) -> tuple[float, float, float]:
    """The first configured ratio of CE, DTE and STE (method.md 4.6: ``r`` = first list entry)."""

    def first(items: tuple[tuple[int, float], ...]) -> float:
        return items[0][1] if items else 1.0

    return first(prune.ce), first(prune.dte), first(prune.ste)


def keep_rates(step: int, recipe: Recipe, final: tuple[float, float, float]) -> tuple[float, float, float]:
    """Scheduled CE/DTE/STE keep rates at ``step`` (epochs of method.md 4.6 = fractions of steps)."""
    start, warm = recipe.prune.start * recipe.optim.steps, recipe.prune.warm * recipe.optim.steps
    return tuple(keep_rate_schedule(step, r, start, max(warm, 1e-9)) for r in final)  # type: ignore[return-value]


# -- resumable state ------------------------------------------------------------------------------


def save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, recipe: Recipe, extra: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "recipe": json.dumps(recipe_to_mapping(recipe), sort_keys=True),
            "torch_rng": torch.get_rng_state(),
            "extra": json.dumps(extra),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- validation with the real tracker -------------------------------------------------------------


def validate(model: UTPTrack, sequences: list[Any], prune: Optional[PruneConfig] = None) -> dict[str, float]:
    """Track ``sequences`` (RGB only) with ``tracker.Tracker`` through the evaluation's tracking
    loop (``eval.sequence_run.run_tracker``: initialised on the first frame with a valid GT box,
    the evaluation's one init rule) and score them (OTB AUC / precision / normalised precision, %).

    ``sequences`` follow ``eval.sources.SequenceLike`` (``data.TrackingSequence``: also ``name`` and ``stamp_ns``).
    """
    was_training = model.training
    tracker = Tracker(model, device="cpu")
    if prune is not None:
        tracker.set_prune(prune)
    runs = [run_tracker(tracker, seq, "val") for seq in sequences]
    model.train(was_training)
    agg = aggregate([run.metrics() for run in runs])
    return {"auc": agg.auc, "precision": agg.precision, "norm_precision": agg.norm_precision}


# -- the loop ---------------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log_line(fh: IO[str], record: dict[str, Any]) -> None:
    fh.write(json.dumps(record, sort_keys=True) + "\n")
    fh.flush()


class MetricWindow:
    """Sums of the step losses and timings since the last metrics line."""

    def __init__(self, started: float) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.samples = 0
        self.data_s = 0.0
        self.started = started

    def add(self, parts: dict[str, float], samples: int) -> None:
        for k, v in parts.items():
            if not math.isnan(v):
                self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.samples += samples

    def means(self, now: float) -> dict[str, float]:
        """Mean of each loss part, samples/s and data-loading seconds per step."""
        record = {k: v / self.steps for k, v in self.sums.items()}
        record.update(samples_per_s=self.samples / (now - self.started), data_s_per_step=self.data_s / self.steps)
        return record


class Trainer:
    """One training run, in the order it happens.

    The constructor sets up (output folder, model, resume state, optimiser, data, validation
    sequences); :meth:`step` runs one optimisation step; :meth:`log` writes a metrics line;
    :meth:`checkpoint` writes the resumable state; :meth:`validate_and_save` tracks the
    validation sequences and keeps the best weights; :meth:`run` is the loop over them.
    Arguments are those of :func:`train`.
    """

    def __init__(
        self,
        recipe: Recipe,
        out_dir: Path,
        sequence_factory: SequenceFactory,
        val_factory: Optional[SequenceFactory],
        device: str,
        threads: Optional[int],
        resume: bool,
        progress: bool,
        max_steps: Optional[int],
    ) -> None:
        self.recipe = recipe
        self.dist = init_distributed()
        self.device = choose_device(device, self.dist)
        if threads:
            torch.set_num_threads(threads)
        self.out_dir = Path(out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_mapping(recipe), sort_keys=False))
        _seed_everything(recipe.seed)
        self.model = self._build_model()
        self.final_rates = final_keep_ratios(self.model.config.prune)
        state = self._load_state(resume)
        self.start_step = self.step_count = int(state["step"]) if state is not None else 0
        in_loader = self._stem_in_loader()
        prefix = self._freeze_stem_prefix(in_loader)
        self.opt, self.best = self._optimiser(state)
        self.ddp_model = self._distributed_model()
        self.loader, self.tensorize, self.text_encoder = self._data(
            sequence_factory, threads, prefix if in_loader else None
        )
        self.val_sequences: list[Any] = []
        if val_factory is not None and self.dist.is_main and recipe.data.val_sequences > 0:
            self.val_sequences = [val_factory(i) for i in range(recipe.data.val_sequences)]
        self.keep_rng = np.random.default_rng([recipe.seed, self.start_step, 31])  # draws the unpruned steps
        self.metrics_fh = open(self.out_dir / METRICS_FILE, "a") if self.dist.is_main else None
        self.last_step = recipe.optim.steps if max_steps is None else min(recipe.optim.steps, max_steps)
        self.bar = self._progress_bar() if progress and self.dist.is_main else None
        self.model.train()
        # what the last step did, for the log line and the summary
        self.world_batch = recipe.optim.batch_size * self.dist.world_size
        self.lr_scale = 1.0
        self.rates = (1.0, 1.0, 1.0)
        self.parts: dict[str, float] = {}
        self.started = time.perf_counter()
        self.window = MetricWindow(self.started)

    # -- setup ----------------------------------------------------------------------------------

    def _build_model(self) -> UTPTrack:
        """The recipe's model: from ``init_from``'s weights, or fresh with the focal-loss init."""
        recipe = self.recipe
        if recipe.init_from:
            model = load_model(recipe.init_from)
            if model.config.name != recipe.model:
                raise ConfigError(
                    f"init_from {recipe.init_from!r} holds {model.config.name!r}, the recipe trains {recipe.model!r}"
                )
            log.info("starting from the weights in %s", recipe.init_from)
            return model
        model = create_model(recipe.model, pretrained_stem=recipe.pretrained_stem)
        init_for_training(model, recipe.score_prior)
        return model

    def _load_state(self, resume: bool) -> Optional[dict[str, Any]]:
        """The resumable state of an earlier run in the output folder (its weights loaded), if any."""
        path = self.out_dir / STATE_FILE
        if not (resume and path.is_file()):
            return None
        state = load_state(path)
        self.model.load_state_dict(state["model"])
        log.info("resuming from %s at step %d", path, int(state["step"]))
        return state

    def _stem_in_loader(self) -> bool:
        """Whether ``data.stem_in_loader`` takes effect (CPU, a loader worker, frozen stem blocks)."""
        recipe = self.recipe
        if not recipe.data.stem_in_loader:
            return False
        has_prefix = _prefix_stem(self.model, recipe.optim.stem_trainable_from) is not None
        if self.device.type != "cpu" or recipe.data.num_workers < 1 or not has_prefix:
            log.info("data.stem_in_loader ignored: it needs the CPU, num_workers >= 1 and frozen stem blocks")
            return False
        return True

    def _freeze_stem_prefix(self, in_loader: bool) -> Optional[FrozenPrefix]:
        """Model to its device, the stem's first blocks frozen (``optim.stem_trainable_from``; run
        in the loader worker if ``in_loader``), channels-last."""
        self.model.to(self.device)
        prefix = freeze_stem_prefix(self.model, self.recipe.optim.stem_trainable_from, precomputed=in_loader)
        if self.recipe.channels_last:
            self.model.to(memory_format=torch.channels_last)
        return prefix

    def _optimiser(self, state: Optional[dict[str, Any]]) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
        """AdamW over the trainable parameters and the best validation so far (both resumed from ``state``)."""
        o = self.recipe.optim
        opt = torch.optim.AdamW(param_groups(self.model, o.lr, o.stem_lr_scale, o.weight_decay), lr=o.lr)
        best: dict[str, Any] = {"auc": -1.0, "step": -1}
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            best = json.loads(state.get("extra", "{}")).get("best", best)
        return opt, best

    def _distributed_model(self) -> nn.Module:
        """The model wrapped in ``DistributedDataParallel`` under torchrun, else the model."""
        if not self.dist.enabled:
            return self.model
        dev = self.device
        return DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def _data(
        self, sequence_factory: SequenceFactory, threads: Optional[int], loader_prefix: Optional[FrozenPrefix]
    ) -> tuple[Iterator[Any], Optional[LoaderTensors], Optional[TextEncoder]]:
        """The batch iterator, the loader's tensor builder and the in-process text encoder. With
        ``loader_prefix`` (the stem's frozen prefix, run in the loader worker) the worker yields
        ``TensorBatch`` es (``tensorize``), else ``Batch`` es that :meth:`step` turns into tensors."""
        recipe, cfg = self.recipe, self.model.config
        text_encoder_name = cfg.text_encoder if cfg.text_dim else ""
        tensorize = None
        if loader_prefix is not None:
            tensorize = LoaderTensors(loader_prefix, cfg.in_chans, text_encoder_name)
            log.info("the loader worker runs the frozen stem blocks features[:%d]", loader_prefix.blocks)
            if threads is None:
                torch.set_num_threads(1)  # the worker takes the other core
        text_encoder = create_text_encoder(text_encoder_name) if tensorize is None else None
        stream = TripletStream(
            sequence_factory,
            recipe.data.train_sequences,
            recipe.optim.batch_size,
            recipe.sampling,
            cfg.template_size,
            cfg.search_size,
            recipe.data.pool_size,
            recipe.data.samples_per_sequence,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            seed=recipe.seed * 1_000_003 + self.start_step,
            tensorize=tensorize,
        )
        if recipe.data.num_workers == 0:
            return iter(stream), tensorize, text_encoder
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=recipe.data.num_workers,
            prefetch_factor=2,
            persistent_workers=True,
            multiprocessing_context="spawn" if self.device.type == "cuda" else None,
        )
        return iter(loader), tensorize, text_encoder

    def _progress_bar(self) -> Any:
        from tqdm import tqdm

        return tqdm(total=self.last_step, initial=self.start_step, desc="train", dynamic_ncols=True)

    # -- the steps ------------------------------------------------------------------------------

    def _next_batch(self) -> TensorBatch:
        batch = next(self.loader)
        if self.tensorize is not None:
            return batch
        return to_tensors(batch, self.model.config.in_chans, self.device, self.text_encoder)

    def step(self) -> None:
        """One optimisation step on the next batch, at the scheduled LR and keep rates."""
        recipe, step = self.recipe, self.step_count
        t0 = time.perf_counter()
        tb = self._next_batch()
        self.window.data_s += time.perf_counter() - t0
        self.lr_scale = lr_factor(step, recipe)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * self.lr_scale
        rates = keep_rates(step, recipe, self.final_rates)
        if min(rates) < 1.0 and self.keep_rng.random() < recipe.prune.unpruned_prob:
            rates = (1.0, 1.0, 1.0)
        self.rates = rates
        prune = self.model.config.prune.with_keep_ratio(*rates)
        out = self.ddp_model(tb.search, tb.static, tb.dynamic, tb.static_box, tb.dynamic_box, tb.text, tb.task, prune)
        loss, parts = tracking_loss(
            out.score_map, out.size_map, out.offset_map, out.task_logits, tb.gt_cxcywh, tb.positive, tb.task,
            recipe.losses, recipe.box_at,
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {parts}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.optim.grad_clip > 0:
            parts["grad_norm"] = float(nn.utils.clip_grad_norm_(self.model.parameters(), recipe.optim.grad_clip))
        self.opt.step()
        self.step_count += 1
        self.parts = parts
        self.window.add(parts, self.world_batch)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{parts['loss']:.3f}", iou=f"{parts.get('iou', float('nan')):.2f}", keep=f"{rates[0]:.2f}")

    def log(self) -> None:
        """Write the means since the last line, the LR and keep rates as a ``train`` metrics line."""
        now = time.perf_counter()
        record: dict[str, Any] = self.window.means(now)
        record.update(
            kind="train",
            step=self.step_count,
            lr=self.recipe.optim.lr * self.lr_scale,
            keep_ce=self.rates[0],
            keep_dte=self.rates[1],
            keep_ste=self.rates[2],
            elapsed_s=now - self.started,
        )
        assert self.metrics_fh is not None
        _log_line(self.metrics_fh, record)
        self.window = MetricWindow(now)

    def checkpoint(self) -> None:
        """The resumable state (model, optimiser, step, RNG, recipe, best validation), written atomically."""
        save_state(self.out_dir / STATE_FILE, self.model, self.opt, self.step_count, self.recipe, {"best": self.best})

    def validate_and_save(self) -> None:
        """Track the validation sequences, write a ``val`` metrics line, keep the best weights."""
        step, t_val = self.step_count, time.perf_counter()
        scores = validate(self.model, self.val_sequences)
        record: dict[str, Any] = {"kind": "val", "step": step, "seconds": time.perf_counter() - t_val, **scores}
        if scores["auc"] > self.best["auc"]:
            self.best = {"auc": scores["auc"], "step": step}
            extra = {"step": step, "val": scores, "recipe": recipe_to_mapping(self.recipe)}
            save_model(self.model, self.out_dir / "best.safetensors", extra=extra)
        record["best_auc"] = self.best["auc"]
        assert self.metrics_fh is not None
        _log_line(self.metrics_fh, record)
        if self.bar is not None:
            best = self.best
            self.bar.write(f"step {step}: val AUC {scores['auc']:.1f} P {scores['precision']:.1f} "
                           f"(best {best['auc']:.1f} @ {best['step']})")
        self.model.train()
        self.window.started = time.perf_counter()  # validation time is not training throughput

    def _log_due(self) -> bool:
        return self.step_count % self.recipe.log_every == 0 or self.step_count == self.last_step

    def _checkpoint_due(self) -> bool:
        every = self.recipe.checkpoint_every
        return bool(every) and self.step_count % every == 0

    def _validation_due(self) -> bool:
        every, step = self.recipe.val_every, self.step_count
        return bool(self.val_sequences) and (bool(every) and step % every == 0 or step == self.recipe.optim.steps)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Steps to the last step (logging, checkpointing and validating on rank 0 when due),
        then the final state and weights; returns the summary of :func:`train`."""
        main = self.dist.is_main
        try:
            while self.step_count < self.last_step:
                self.step()
                if main and self._log_due():
                    self.log()
                if main and self._checkpoint_due():
                    self.checkpoint()
                if main and self._validation_due():
                    self.validate_and_save()
            if main:
                self.checkpoint()
                extra = {"step": self.step_count, "recipe": recipe_to_mapping(self.recipe)}
                save_model(self.model, self.out_dir / "final.safetensors", extra=extra)
        finally:
            self.close()
        elapsed = time.perf_counter() - self.started
        return {
            "steps": self.step_count,
            "start_step": self.start_step,
            "seconds": elapsed,
            "samples_per_s": (self.step_count - self.start_step) * self.world_batch / max(elapsed, 1e-9),
            "last": self.parts,
            "best": self.best,
        }

    def close(self) -> None:
        """Close the progress bar and metrics file; leave the process group."""
        if self.bar is not None:
            self.bar.close()
        if self.metrics_fh is not None:
            self.metrics_fh.close()
        if self.dist.enabled:
            dist.destroy_process_group()


def train(
    recipe: Recipe,
    out_dir: Path,
    sequence_factory: SequenceFactory,
    val_factory: Optional[SequenceFactory] = None,
    device: str = "auto",
    threads: Optional[int] = None,
    resume: bool = True,
    progress: bool = True,
    max_steps: Optional[int] = None,
) -> dict[str, Any]:
    """Run (or resume) one training run (:class:`Trainer`).

    Args:
        recipe: the recipe.
        out_dir: output folder (see module doc); an existing ``last.pt`` is resumed if ``resume``.
        sequence_factory: train-split index -> sequence (picklable for loader workers).
        val_factory: val-split index -> sequence, or None to skip validation.
        device: ``auto``, ``cpu``, ``cuda``.
        threads: torch CPU threads. None: 1 when the loader worker runs the frozen stem
            (``data.stem_in_loader`` in effect: the worker takes the other core), else torch's default.
        progress: show a tqdm progress bar (rank 0).
        max_steps: stop after this step even if the recipe has more (for smoke tests; the
            schedules still follow ``recipe.optim.steps``).
    Returns:
        Summary dict (steps, start step, seconds, samples/s, last step's losses, best validation).
    """
    trainer = Trainer(recipe, out_dir, sequence_factory, val_factory, device, threads, resume, progress, max_steps)
    return trainer.run()

"""The training loop: optimiser, schedules, DDP, resumable checkpoints, metrics log, validation.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..config import PruneConfig
from ..errors import ConfigError
from ..models import UTPTrack, create_model
from ..models.pruning import keep_rate_schedule
from .datasets import Batch, TensorBatch, TripletStream, to_tensors
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
    import torch.distributed as dist

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


def frozen_stem_modules(model: UTPTrack, trainable_from: int) -> list[nn.Module]:
    """The MobileNetV2 blocks ``features[:trainable_from]`` (empty for other stems)."""
    stem = model.backbone.patch_embed
    features = getattr(stem, "features", None)
    if features is None or trainable_from <= 0:
        return []
    return list(features[:trainable_from])


def init_for_training(model: UTPTrack, score_prior: float) -> None:
    """CenterNet's focal-loss initialisation: the centre branch's last bias gives every cell the
    prior probability ``score_prior`` (sigmoid(0) = 0.5 everywhere makes the first focal losses
    ~30x larger and slows the start)."""
    if score_prior > 0:
        with torch.no_grad():
            model.box_head.conv5_ctr.bias.fill_(math.log(score_prior / (1 - score_prior)))


class FastFrozenStem:
    """Training-time shortcut for a MobileNetV2 stem whose first blocks are frozen.

    The frozen blocks ``features[:k]`` run as a separate BatchNorm-folded, channels-last copy
    under ``no_grad`` (``models.inference.fold_batchnorm``): the same function (they never
    change), ~1.7x less CPU per training step measured on the 2-core machine. The model's own
    modules and state dict are untouched (checkpoints stay standard); in eval mode (the
    tracker, validation) the stem's original forward runs. With ``precomputed`` set, training
    inputs already are the frozen blocks' output (:class:`LoaderTensors` ran them in the
    loader worker) and go straight to the trainable blocks.
    """

    def __init__(self, model: UTPTrack, trainable_from: int) -> None:
        import copy
        import types

        from ..models.inference import fold_batchnorm

        stem = model.backbone.patch_embed
        self.k = trainable_from
        frozen = copy.deepcopy(nn.Sequential(*stem.features[:trainable_from])).eval()
        fold_batchnorm(frozen)
        for p in frozen.parameters():
            p.requires_grad_(False)
        self.frozen = frozen.to(memory_format=torch.channels_last)
        self.precomputed = False
        original = type(stem).forward
        k, holder = trainable_from, self

        def forward(self_stem: nn.Module, x: torch.Tensor) -> torch.Tensor:
            if not self_stem.training:
                return original(self_stem, x)
            if holder.precomputed:
                y = x
            else:
                with torch.no_grad():
                    y = holder.frozen(x.contiguous(memory_format=torch.channels_last))
            return self_stem.proj(self_stem.features[k:](y)).flatten(2).transpose(1, 2)

        stem.forward = types.MethodType(forward, stem)

    def to(self, device: torch.device) -> "FastFrozenStem":
        self.frozen.to(device)
        return self

    @classmethod
    def install(cls, model: UTPTrack, trainable_from: int) -> Optional["FastFrozenStem"]:
        stem = model.backbone.patch_embed
        if getattr(stem, "features", None) is None or trainable_from <= 0:
            return None
        return cls(model, trainable_from)


class LoaderTensors:
    """``Batch`` -> ``TensorBatch`` in the data-loader worker (``data.stem_in_loader``).

    Builds the tensors (``datasets.to_tensors``), encodes the prompts and runs the frozen
    MobileNetV2 blocks (a :class:`FastFrozenStem`'s BatchNorm-folded copy, one thread) where the
    batch is drawn, so on a 2-core CPU that work runs beside the training step instead of inside
    it; the model's stem (``FastFrozenStem.precomputed``) then starts at the first trainable
    block. The function is the same as the in-process path (the tests compare the outputs).
    """

    def __init__(self, frozen: nn.Module, in_chans: int, text_encoder: str) -> None:
        # the encoder's name, not the encoder: the worker builds its own (create_text_encoder
        # keeps one per process), so nothing large is pickled
        self.frozen, self.in_chans, self.text_encoder_name = frozen, in_chans, text_encoder

    def __call__(self, batch: Batch) -> TensorBatch:
        from dataclasses import replace

        from ..models.text import create_text_encoder

        tb = to_tensors(batch, self.in_chans, torch.device("cpu"), create_text_encoder(self.text_encoder_name))
        with torch.no_grad():
            feats = [self.frozen(x.contiguous(memory_format=torch.channels_last)) for x in (tb.search, tb.static, tb.dynamic)]
        return replace(tb, search=feats[0], static=feats[1], dynamic=feats[2])


def freeze(modules: list[nn.Module]) -> None:
    for m in modules:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)


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
    """Track ``sequences`` (RGB only) with ``tracker.Tracker`` and score them (OTB AUC/P/NP)."""
    from ..eval.metrics import aggregate, evaluate_sequence
    from ..tracker import Tracker

    was_training = model.training
    tracker = Tracker(model, device="cpu")
    if prune is not None:
        tracker.set_prune(prune)
    scores = []
    for seq in sequences:
        present = np.flatnonzero(~seq.absent)
        first = int(present[0])
        preds = np.full((len(seq.gt), 4), np.nan)
        from ..types import Box

        tracker.init(seq.rgb(first), Box.from_sequence(seq.gt[first]))
        preds[first] = seq.gt[first]
        for i in range(first + 1, len(seq.gt)):
            preds[i] = tracker.track(seq.rgb(i)).box.as_xywh()
        scores.append(evaluate_sequence(preds, seq.gt, seq.absent, name=seq.name))
    model.train(was_training)
    agg = aggregate(scores)
    return {"auc": agg.auc, "precision": agg.precision, "norm_precision": agg.norm_precision}


# -- the loop ---------------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log_line(fh, record: dict[str, Any]) -> None:
    fh.write(json.dumps(record, sort_keys=True) + "\n")
    fh.flush()


def train(
    recipe: Recipe,
    out_dir: Path,
    sequence_factory,
    val_factory=None,
    device: str = "auto",
    threads: Optional[int] = None,
    resume: bool = True,
    progress: bool = True,
    max_steps: Optional[int] = None,
) -> dict[str, Any]:
    """Run (or resume) one training run.

    Args:
        recipe: the recipe.
        out_dir: output folder (see module doc); an existing ``last.pt`` is resumed if ``resume``.
        sequence_factory: train-split index -> sequence (picklable for loader workers).
        val_factory: val-split index -> sequence, or None to skip validation.
        device: ``auto``, ``cpu``, ``cuda``.
        threads: torch CPU threads. None: 1 when the loader worker runs the frozen stem
            (``data.stem_in_loader`` in effect: the worker takes the other core), else torch's default.
        max_steps: stop after this step even if the recipe has more (for smoke tests; the
            schedules still follow ``recipe.optim.steps``).
    Returns:
        Summary dict (steps, seconds, samples/s, last losses, best validation).
    """
    from ..checkpoint import save_model
    from ..models.text import create_text_encoder

    dist_info = init_distributed()
    dev = choose_device(device, dist_info)
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_mapping(recipe), sort_keys=False))

    _seed_everything(recipe.seed)
    if recipe.init_from:
        from ..checkpoint import load_model

        model = load_model(recipe.init_from)
        if model.config.name != recipe.model:
            raise ConfigError(f"init_from {recipe.init_from!r} holds {model.config.name!r}, the recipe trains {recipe.model!r}")
        log.info("starting from the weights in %s", recipe.init_from)
    else:
        model = create_model(recipe.model, pretrained_stem=recipe.pretrained_stem)
        init_for_training(model, recipe.score_prior)
    frozen = frozen_stem_modules(model, recipe.optim.stem_trainable_from)
    freeze(frozen)
    cfg = model.config
    final = final_keep_ratios(cfg.prune)

    start_step = 0
    state = None
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        state = load_state(state_path)
        model.load_state_dict(state["model"])
        start_step = int(state["step"])
        log.info("resuming from %s at step %d", state_path, start_step)
    model.to(dev)
    fast_stem = FastFrozenStem.install(model, recipe.optim.stem_trainable_from)
    if fast_stem is not None:
        fast_stem.to(dev)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(
        param_groups(model, recipe.optim.lr, recipe.optim.stem_lr_scale, recipe.optim.weight_decay),
        lr=recipe.optim.lr,
    )
    best = {"auc": -1.0, "step": -1}
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        best = json.loads(state.get("extra", "{}")).get("best", best)
    ddp_model: nn.Module = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    text_encoder_name = cfg.text_encoder if cfg.text_dim else ""
    tensorize = None  # set: the loader worker yields CPU TensorBatches (stem_in_loader runs on the CPU only)
    if recipe.data.stem_in_loader:
        if dev.type != "cpu" or recipe.data.num_workers < 1 or fast_stem is None:
            log.info("data.stem_in_loader ignored: it needs the CPU, num_workers >= 1 and frozen stem blocks")
        else:
            tensorize = LoaderTensors(fast_stem.frozen, cfg.in_chans, text_encoder_name)
            fast_stem.precomputed = True
            log.info("the loader worker runs the frozen stem blocks features[:%d]", fast_stem.k)
            if threads is None:
                torch.set_num_threads(1)
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
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        seed=recipe.seed * 1_000_003 + start_step,
        tensorize=tensorize,
    )
    loader: Iterator[Any]
    if recipe.data.num_workers > 0:
        from torch.utils.data import DataLoader

        loader = iter(
            DataLoader(
                stream,
                batch_size=None,
                num_workers=recipe.data.num_workers,
                prefetch_factor=2,
                persistent_workers=True,
                multiprocessing_context="spawn" if dev.type == "cuda" else None,
            )
        )
    else:
        loader = iter(stream)
    val_sequences = []
    if val_factory is not None and dist_info.is_main and recipe.data.val_sequences > 0:
        val_sequences = [val_factory(i) for i in range(recipe.data.val_sequences)]
    rng = np.random.default_rng([recipe.seed, start_step, 31])

    metrics_fh = open(out_dir / METRICS_FILE, "a") if dist_info.is_main else None
    last_step = recipe.optim.steps if max_steps is None else min(recipe.optim.steps, max_steps)
    bar = None
    if progress and dist_info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=last_step, initial=start_step, desc="train", dynamic_ncols=True)
    model.train()
    freeze(frozen)
    t_start = time.perf_counter()
    t_window, samples_window = time.perf_counter(), 0
    data_time = 0.0
    parts: dict[str, float] = {}
    running: dict[str, float] = {}
    step = start_step
    world_batch = recipe.optim.batch_size * dist_info.world_size

    def checkpoint(step: int) -> None:
        save_state(state_path, model, opt, step, recipe, {"best": best})

    try:
        while step < last_step:
            t0 = time.perf_counter()
            batch = next(loader)
            tb = batch if tensorize is not None else to_tensors(batch, cfg.in_chans, dev, text_encoder)
            data_time += time.perf_counter() - t0
            factor = lr_factor(step, recipe)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            rates = keep_rates(step, recipe, final)
            if min(rates) < 1.0 and rng.random() < recipe.prune.unpruned_prob:
                rates = (1.0, 1.0, 1.0)
            prune = cfg.prune.with_keep_ratio(*rates)
            out = ddp_model(
                tb.search, tb.static, tb.dynamic, tb.static_box, tb.dynamic_box, tb.text, tb.task, prune
            )
            loss, parts = tracking_loss(
                out.score_map,
                out.size_map,
                out.offset_map,
                out.task_logits,
                tb.gt_cxcywh,
                tb.positive,
                tb.task,
                recipe.losses,
                recipe.box_at,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step}: {parts}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.optim.grad_clip > 0:
                parts["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip))
            opt.step()
            step += 1
            samples_window += world_batch
            for k, v in parts.items():
                if not math.isnan(v):
                    running[k] = running.get(k, 0.0) + v
            running["n"] = running.get("n", 0.0) + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", iou=f"{parts.get('iou', float('nan')):.2f}", keep=f"{rates[0]:.2f}")
            if dist_info.is_main and (step % recipe.log_every == 0 or step == last_step):
                now = time.perf_counter()
                n = running.pop("n")
                record = {k: v / n for k, v in running.items()}
                record.update(
                    kind="train",
                    step=step,
                    lr=recipe.optim.lr * factor,
                    keep_ce=rates[0],
                    keep_dte=rates[1],
                    keep_ste=rates[2],
                    samples_per_s=samples_window / (now - t_window),
                    data_s_per_step=data_time / n,
                    elapsed_s=now - t_start,
                )
                _log_line(metrics_fh, record)
                running, samples_window, t_window, data_time = {}, 0, now, 0.0
            if dist_info.is_main and recipe.checkpoint_every and step % recipe.checkpoint_every == 0:
                checkpoint(step)
            do_val = val_sequences and (
                (recipe.val_every and step % recipe.val_every == 0) or step == recipe.optim.steps
            )
            if dist_info.is_main and do_val:
                t_val = time.perf_counter()
                scores = validate(model, val_sequences)
                record = {"kind": "val", "step": step, "seconds": time.perf_counter() - t_val, **scores}
                if scores["auc"] > best["auc"]:
                    best = {"auc": scores["auc"], "step": step}
                    save_model(model, out_dir / "best.safetensors", extra={"step": step, "val": scores, "recipe": recipe_to_mapping(recipe)})
                record["best_auc"] = best["auc"]
                _log_line(metrics_fh, record)
                if bar is not None:
                    bar.write(f"step {step}: val AUC {scores['auc']:.1f} P {scores['precision']:.1f} (best {best['auc']:.1f} @ {best['step']})")
                model.train()
                freeze(frozen)
                t_window = time.perf_counter()
        if dist_info.is_main:
            checkpoint(step)
            save_model(model, out_dir / "final.safetensors", extra={"step": step, "recipe": recipe_to_mapping(recipe)})
    finally:
        if bar is not None:
            bar.close()
        if metrics_fh is not None:
            metrics_fh.close()
        if dist_info.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
    elapsed = time.perf_counter() - t_start
    return {
        "steps": step,
        "start_step": start_step,
        "seconds": elapsed,
        "samples_per_s": (step - start_step) * world_batch / max(elapsed, 1e-9),
        "last": parts,
        "best": best,
    }

"""Training smoke tests: losses, sample construction, schedules, a few real optimisation steps.

Sequences here are small in-memory scenes (a textured target moving over a textured
background, with a depth stream); the loop and sampler read them through the same interface as
the generator's sequences.
"""
from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from utptrack_ros.checkpoint import load_model
from utptrack_ros.errors import ConfigError
from utptrack_ros.eval.metrics import aggregate
from utptrack_ros.eval.sequence_run import run_tracker
from utptrack_ros.models import create_model
from utptrack_ros.preprocess import crop_geometry, crop_image
from utptrack_ros.tracker import Tracker
from utptrack_ros.train import losses
from utptrack_ros.train.datasets import GeneratedSequences, collate, stream_order, to_tensors
from utptrack_ros.train.loop import (
    LoaderTensors,
    final_keep_ratios,
    freeze_stem_prefix,
    init_for_training,
    keep_rates,
    train,
    validate,
)
from utptrack_ros.train.recipe import load_recipe
from utptrack_ros.train.sampling import SamplingConfig, draw_sample
from utptrack_ros.types import Box, Modality, Task


class MovingSquare:
    """A textured 30x20 target gliding over a textured 160x120 background (+ depth)."""

    def __init__(self, seed: int = 0, n: int = 30, absent=()):
        rng = np.random.default_rng(seed)
        self.name = f"square_{seed}"
        self.bg = (rng.random((120, 160, 3)) * 120).astype(np.uint8)
        self.patch = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
        t = np.arange(n, dtype=np.float64)
        x, y = 20 + 2.5 * t + 5 * np.sin(t / 3), 30 + 1.2 * t
        self.gt = np.stack([x, y, np.full(n, 30.0), np.full(n, 20.0)], axis=1)
        self.absent = np.zeros(n, bool)
        self.absent[list(absent)] = True
        self.gt[self.absent] = np.nan
        self.prompt = "the bright square"
        self.attributes = {}

    @property
    def modalities(self):
        return (Modality.DEPTH,)

    def __len__(self):
        return len(self.gt)

    def rgb(self, i):
        img = self.bg.copy()
        if not self.absent[i]:
            x, y = int(round(self.gt[i, 0])), int(round(self.gt[i, 1]))
            img[y : y + 20, x : x + 30] = self.patch
        return img

    def stamp_ns(self, i):
        return 1_000_000_000 + i * 33_333_333

    def aux(self, modality, i):
        depth = np.full((120, 160), 3000, np.uint16)
        if not self.absent[i]:
            x, y = int(round(self.gt[i, 0])), int(round(self.gt[i, 1]))
            depth[y : y + 20, x : x + 30] = 1200
        return depth


def squares(index: int) -> MovingSquare:
    return MovingSquare(seed=index)


def short_squares(index: int) -> MovingSquare:
    return MovingSquare(seed=100 + index, n=8)


# -- losses -------------------------------------------------------------------------------------


def test_heatmap_peaks_on_the_cell_holding_the_centre():
    boxes = torch.tensor([[0.49, 0.26, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2]])
    heat = losses.gaussian_heatmap(boxes, torch.tensor([True, False]), grid=12)
    assert heat.shape == (2, 1, 12, 12)
    # cx*F = 5.88 -> column 5, cy*F = 3.12 -> row 3 (floor: the decoder adds offsets in [0, 1))
    assert heat[0, 0, 3, 5] == 1.0 and int((heat[0] == 1.0).sum()) == 1
    # 6x6 cells -> CornerNet radius 1.64 -> 1, sigma = (2r + 1) / 6 = 0.5: neighbours exp(-2), 2 away 0
    assert float(heat[0, 0, 3, 6]) == pytest.approx(math.exp(-2.0))
    assert float(heat[0, 0, 4, 6]) == pytest.approx(math.exp(-4.0))
    assert float(heat[0, 0, 3, 7]) == 0.0
    assert float(heat[1].abs().sum()) == 0.0  # negative sample: all zeros


def test_gaussian_radius_matches_cornernet_formula():
    # a 2.4 x 1.2 cell box at min_overlap 0.7: the third quadratic is the smallest root
    w, h, o = 2.4, 1.2, 0.7
    a3, b3, c3 = 4 * o, -2 * o * (h + w), (o - 1) * w * h
    r3 = (b3 + math.sqrt(b3 * b3 - 4 * a3 * c3)) / 2
    assert losses.gaussian_radius(w, h, o) == pytest.approx(r3)


def test_focal_loss_is_small_for_the_target_and_large_for_its_opposite():
    target = losses.gaussian_heatmap(torch.tensor([[0.5, 0.5, 0.3, 0.3]]), torch.tensor([True]), grid=8)
    good = target.clamp(1e-4, 1 - 1e-4)
    bad = (1 - target).clamp(1e-4, 1 - 1e-4)
    assert float(losses.focal_loss(good, target)) < 1e-3
    assert float(losses.focal_loss(bad, target)) > 5.0


def test_giou_of_identical_and_disjoint_boxes():
    a = torch.tensor([[0.1, 0.1, 0.4, 0.4]])
    loss, iou = losses.giou_loss(a, a)
    assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(iou) == pytest.approx(1.0)
    b = torch.tensor([[0.6, 0.6, 0.9, 0.9]])
    loss, iou = losses.giou_loss(a, b)
    # hull 0.8^2 = 0.64, union 0.18: GIoU = 0 - (0.64 - 0.18) / 0.64
    assert float(iou) == 0.0 and float(loss) == pytest.approx(1 + 0.46 / 0.64, rel=1e-5)


def test_boxes_at_reads_offsets_and_sizes_of_the_given_cell():
    size = torch.zeros(1, 2, 4, 4)
    off = torch.zeros(1, 2, 4, 4)
    size[0, :, 1, 2] = torch.tensor([0.3, 0.2])
    off[0, :, 1, 2] = torch.tensor([0.5, 0.25])
    box = losses.boxes_at(size, off, torch.tensor([[2, 1]]))
    assert box[0].tolist() == pytest.approx([(2 + 0.5) / 4, (1 + 0.25) / 4, 0.3, 0.2])


# -- samples are the tracker's inputs -------------------------------------------------------------


def test_search_sample_is_the_tracker_crop_and_its_box_maps_back():
    seq = MovingSquare()
    cfg = SamplingConfig(center_jitter=0.0, scale_jitter=0.0, brightness_jitter=0.0, gray_prob=0.0,
                         negative_prob=0.0, aux_missing_prob=0.0, modality_probs={"rgb": 1.0})
    rng = np.random.default_rng(3)
    for _ in range(5):
        s = draw_sample(seq, rng, cfg, 96, 192)
        assert s.positive and s.modality == "rgb" and s.search_aux is None
        # find the search frame: with zero jitter the crop is centred on the previous GT box
        matches = []
        for i in range(1, len(seq)):
            geom = crop_geometry(Box.from_sequence(seq.gt[i - 1]), 4.0, 192)
            if np.array_equal(crop_image(seq.rgb(i), geom), s.search_rgb):
                back = geom.crop_to_box(s.gt_cxcywh)
                matches.append(np.allclose(back.as_xywh(), seq.gt[i], atol=1e-4))
        assert matches and all(matches)


def test_absent_search_frame_is_a_negative_and_modality_sets_the_task():
    seq = MovingSquare(absent=range(10, 30))
    cfg = SamplingConfig(modality_probs={"rgb": 0.0, "depth": 1.0}, prompt_prob=0.0, aux_missing_prob=0.0,
                         static_first_prob=1.0)
    rng = np.random.default_rng(0)
    samples = [draw_sample(seq, rng, cfg, 96, 192) for _ in range(40)]
    negatives = [s for s in samples if not s.positive]
    assert negatives, "search frames 10..29 are absent: some samples must be negatives"
    assert all(np.all(s.gt_cxcywh == 0) for s in negatives)
    assert all(s.task == Task.DEPTH and s.search_aux is not None for s in samples)
    # the aux crop is the JET colormap of the depth crop (3 channels, not a copy of RGB)
    assert all(not np.array_equal(s.search_aux, s.search_rgb) for s in samples)


def test_stream_order_splits_sequences_between_streams():
    a = [next(it) for it in [stream_order(10, 0, 0, 2)] for _ in range(5)]
    b = [next(it) for it in [stream_order(10, 0, 1, 2)] for _ in range(5)]
    assert sorted(a + b) == list(range(10))


def test_keep_rate_schedule_runs_from_one_to_the_model_ratios():
    recipe = load_recipe("tiny", **{"optim.steps": 100, "prune.start": 0.1, "prune.warm": 0.4})
    final = final_keep_ratios(create_model("tiny").config.prune)
    assert keep_rates(0, recipe, final) == (1.0, 1.0, 1.0)
    mid = keep_rates(30, recipe, final)
    assert all(r > f and r < 1.0 for r, f in zip(mid, final))
    assert keep_rates(60, recipe, final) == pytest.approx(final)


# -- optimisation -----------------------------------------------------------------------------------


def test_loss_decreases_on_a_fixed_batch():
    """20 AdamW steps on one fixed batch of 4 must more than halve the loss (fails if gradients
    do not reach the heads, the targets are inconsistent, or the loss is wired wrongly).
    The stem is frozen below MobileNetV2 block 7 as in the recipe."""
    torch.manual_seed(0)
    seq = MovingSquare()
    cfg = SamplingConfig(negative_prob=0.0, prompt_prob=0.0)
    rng = np.random.default_rng(1)
    batch = collate([draw_sample(seq, rng, cfg, 96, 192) for _ in range(4)])
    model = create_model("tiny").train()
    init_for_training(model, 0.01)
    freeze_stem_prefix(model, 7)
    tb = to_tensors(batch, 6, torch.device("cpu"), text_encoder=None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    prune = model.prune.off()
    for _ in range(20):
        out = model(tb.search, tb.static, tb.dynamic, tb.static_box, tb.dynamic_box, None, tb.task, prune)
        loss, parts = losses.tracking_loss(out.score_map, out.size_map, out.offset_map, out.task_logits,
                                           tb.gt_cxcywh, tb.positive, tb.task)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(parts["loss"])
    assert all(math.isfinite(v) for v in history)
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3]), history


def test_train_runs_logs_resumes_and_writes_a_loadable_model(tmp_path):
    recipe = load_recipe(
        "tiny",
        **{
            "pretrained_stem": False,
            "optim.steps": 4,
            "optim.batch_size": 2,
            "optim.warmup_steps": 1,
            "data.num_workers": 0,
            "data.train_sequences": 3,
            "data.pool_size": 2,
            "data.val_sequences": 1,
            "log_every": 1,
            "checkpoint_every": 2,
            "val_every": 0,
        },
    )
    out = tmp_path / "run"
    first = train(recipe, out, squares, val_factory=short_squares, progress=False, max_steps=2)
    assert first["steps"] == 2 and (out / "last.pt").is_file()
    second = train(recipe, out, squares, val_factory=short_squares, progress=False)
    assert second["start_step"] == 2 and second["steps"] == 4
    lines = [json.loads(row) for row in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [row["step"] for row in lines if row["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]
    assert all(math.isfinite(row["loss"]) and row["samples_per_s"] > 0 for row in lines if row["kind"] == "train")
    assert [row["kind"] for row in lines].count("val") == 1  # validation at the last step
    model = load_model(out / "final.safetensors")
    seq = MovingSquare(seed=5, n=3)
    tracker = Tracker(model)
    tracker.init(seq.rgb(0), Box.from_sequence(seq.gt[0]), aux=seq.aux(Modality.DEPTH, 0), modality="depth")
    res = tracker.track(seq.rgb(1), aux=seq.aux(Modality.DEPTH, 1))
    assert res.box.is_finite()

    # a fine-tuning stage starts from those weights (new optimiser, step 0)
    final = str(out / "final.safetensors")
    stage2 = train(replace(recipe, init_from=final), tmp_path / "ft", squares, progress=False, max_steps=1)
    assert stage2["start_step"] == 0 and stage2["steps"] == 1
    before = load_model(final).state_dict()
    after = load_model(tmp_path / "ft" / "final.safetensors").state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and len(moved) < len(before)  # one step from the loaded weights, frozen stem untouched
    with pytest.raises(ConfigError, match="holds 'tiny', the recipe trains 'tiny_base'"):
        train(replace(recipe, init_from=final, model="tiny_base"), tmp_path / "bad", squares, progress=False)


def test_generated_sequences_start_at_first_index():
    shifted = GeneratedSequences("train", length=3, image_size=(64, 48), aux_weights=(), first_index=7, cache=False)
    assert shifted(0).attributes["seed"] == GeneratedSequences("train", length=3, image_size=(64, 48),
                                                               aux_weights=(), cache=False)(7).attributes["seed"]


def _stem_with_batchnorm_statistics(model):
    """The model's stem with non-trivial BatchNorm running statistics, so folding matters."""
    stem = model.backbone.patch_embed
    for m in stem.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return stem


@pytest.mark.parametrize("trainable_from", [7, 14])  # 14: the whole stem frozen (tiny_onestage)
def test_frozen_stem_prefix_computes_the_same_tokens(trainable_from):
    """The folded, channels-last prefix gives the stem's own output; eval mode runs the plain stem."""
    torch.manual_seed(0)
    model = create_model("tiny")
    stem = _stem_with_batchnorm_statistics(model)
    x = torch.randn(2, 6, 96, 96)
    stem.eval()
    with torch.no_grad():
        reference = stem(x)
    prefix = freeze_stem_prefix(model, trainable_from)
    assert prefix is not None and prefix.blocks == trainable_from
    stem.eval()
    with torch.no_grad():
        assert torch.equal(stem(x), reference)  # eval mode: the whole stem, unfolded
        stem.train()
        stem.features[trainable_from:].eval()  # same BatchNorm mode as the reference for the trainable part
        fast = stem(x)
    assert torch.allclose(fast, reference, atol=1e-4, rtol=1e-4)


def test_frozen_stem_prefix_is_frozen_and_leaves_the_state_dict_alone():
    """Frozen blocks: no gradients, BatchNorm in eval mode after model.train(); the prefix is no
    submodule (state dict keys and values are the plain model's); no prefix for 0 blocks."""
    model = create_model("tiny")
    keys = list(model.state_dict())
    freeze_stem_prefix(model, 7)
    model.train()
    stem = model.backbone.patch_embed
    assert all(not p.requires_grad for p in stem.features[:7].parameters())
    assert all(p.requires_grad for p in stem.features[7:].parameters())
    assert all(not m.training for block in stem.features[:7] for m in block.modules())
    assert all(m.training for block in stem.features[7:] for m in block.modules())
    assert list(model.state_dict()) == keys
    assert freeze_stem_prefix(create_model("tiny"), 0) is None
    with pytest.raises(ConfigError, match="frozen stem blocks must be in 0..14, got 15"):
        freeze_stem_prefix(create_model("tiny"), 15)


@pytest.mark.parametrize("trainable_from", [7, 14])  # 14: the whole stem frozen (tiny_onestage)
def test_loader_tensors_give_the_model_what_its_own_frozen_stem_computes(trainable_from):
    """data.stem_in_loader: the worker-side tensors (frozen prefix applied there) lead to the same
    outputs, keep masks and losses as the in-process path; the helper pickles without its text encoder."""

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    batch = collate([draw_sample(MovingSquare(seed=s), rng, SamplingConfig(prompt_prob=0.0), 96, 192) for s in range(3)])
    model = create_model("tiny").train()
    _stem_with_batchnorm_statistics(model)
    freeze_stem_prefix(model, trainable_from)
    model.eval()  # deterministic (no dropout, BatchNorm running statistics) ...
    model.backbone.patch_embed.training = True  # ... but the stem takes its training-time path
    prune = model.prune.with_keep_ratio(0.7, 0.7, 0.7)

    def outputs(tb):
        with torch.no_grad():
            out = model(tb.search, tb.static, tb.dynamic, tb.static_box, tb.dynamic_box, None, tb.task, prune)
        loss, parts = losses.tracking_loss(out.score_map, out.size_map, out.offset_map, out.task_logits,
                                           tb.gt_cxcywh, tb.positive, tb.task)
        return out, parts

    tb = to_tensors(batch, 6, torch.device("cpu"), text_encoder=None)
    reference, reference_parts = outputs(tb)
    prefix = freeze_stem_prefix(model, trainable_from, precomputed=True)  # the same blocks, run elsewhere
    model.backbone.patch_embed.training = True
    prepare = pickle.loads(pickle.dumps(LoaderTensors(prefix, 6, "")))
    pre = prepare(batch)
    channels, stride = {7: (32, 8), 14: (96, 16)}[trainable_from]  # output of block trainable_from - 1
    assert pre.search.shape == (3, channels, 192 // stride, 192 // stride)
    assert pre.static.shape == (3, channels, 96 // stride, 96 // stride)
    assert torch.equal(pre.gt_cxcywh, tb.gt_cxcywh) and torch.equal(pre.task, tb.task)
    out, parts = outputs(pre)
    for name in ("score_map", "size_map", "offset_map", "task_logits"):
        assert torch.allclose(getattr(out, name), getattr(reference, name), atol=1e-5), name
    assert torch.equal(out.search_keep_mask, reference.search_keep_mask)
    assert out.search_keep_mask.sum() < out.search_keep_mask.numel()  # pruning is on: the masks say something
    assert out.ledger == reference.ledger
    assert parts["loss"] == pytest.approx(reference_parts["loss"], abs=1e-5)


def test_train_with_the_frozen_stem_in_the_loader_worker(tmp_path):
    recipe = load_recipe(
        "tiny",
        **{
            "pretrained_stem": False,
            "optim.steps": 3,
            "optim.batch_size": 2,
            "optim.warmup_steps": 1,
            "data.num_workers": 1,
            "data.stem_in_loader": True,
            "data.train_sequences": 3,
            "data.pool_size": 2,
            "data.val_sequences": 0,
            "log_every": 1,
            "val_every": 0,
        },
    )
    assert torch.get_num_threads() == 2  # conftest
    summary = train(recipe, tmp_path / "run", squares, progress=False)
    assert summary["steps"] == 3
    assert torch.get_num_threads() == 1  # threads=None: the worker takes the other core
    lines = [json.loads(row) for row in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in lines if row["kind"] == "train"] == [1, 2, 3]
    assert all(math.isfinite(row["loss"]) for row in lines)


def test_validation_tracks_with_the_evaluation_runner_and_its_init_rule():
    """Validation initialises on the first frame with a valid GT box (the evaluation's rule), not
    on the first frame merely flagged present, and scores what ``eval.sequence_run`` records."""

    torch.manual_seed(0)
    model = create_model("tiny")
    seq = MovingSquare(seed=7, n=8, absent=(0,))
    seq.gt[1, 2] = 0.0  # frame 1: present, but its box has no width
    scores = validate(model, [seq])
    run = run_tracker(Tracker(model), seq, "val")
    assert run.init_index == 2 and np.isnan(run.boxes_xywh[:2]).all() and np.isfinite(run.boxes_xywh[2:]).all()
    agg = aggregate([run.metrics()])
    assert scores == {"auc": agg.auc, "precision": agg.precision, "norm_precision": agg.norm_precision}
    assert model.training  # validation leaves the model in the mode it found it

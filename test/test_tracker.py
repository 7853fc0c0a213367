"""The framework-free tracker: state machine, inputs, batching, template updates (method.md 6)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from utptrack_ros.checkpoint import save_model
from utptrack_ros.config import TrackerConfig
from utptrack_ros.errors import CheckpointError, ConfigError, InputError, NotInitializedError
from utptrack_ros.modalities import prepare_aux
from utptrack_ros.models import create_model
from utptrack_ros.tracker import MultiTracker, Tracker, load_variant
from utptrack_ros.types import Box, Modality, TrackState

H, W = 120, 160


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture
def frames():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
    depth = rng.integers(500, 3000, size=(H, W)).astype(np.uint16)
    return img, depth


def test_init_returns_the_given_box_and_track_stays_in_the_image(tiny, frames):
    img, _ = frames
    tr = Tracker(tiny)
    res = tr.init(img, [40, 30, 20, 24])
    assert res.box == Box(40, 30, 20, 24) and res.frame_index == 0 and res.state is TrackState.TRACKING
    for i in range(1, 4):
        res = tr.track(img)
        x1, y1, x2, y2 = res.box.as_xyxy()
        assert res.frame_index == i
        assert 0 <= x1 <= W - 10 and 10 <= x2 <= W and 0 <= y1 <= H - 10 and 10 <= y2 <= H
        assert 0.0 <= res.confidence <= 1.0
        assert res.search_keep_mask.shape == (12, 12) and res.search_keep_mask.sum() == res.ledger.final.sr
        assert set(res.timings_ms) == {"preprocess", "model", "postprocess", "total"}


def test_track_before_init_is_refused(tiny, frames):
    with pytest.raises(NotInitializedError):
        Tracker(tiny).track(frames[0])


@pytest.mark.parametrize(
    "image,box,match",
    [
        (np.zeros((H, W, 3), np.float32), [10, 10, 5, 5], "uint8"),
        (np.zeros((H, W), np.uint8), [10, 10, 5, 5], r"\(H, W, 3\)"),
        (None, [10, 10, 0, 5], "zero or negative area"),
        (None, [W + 5, 10, 5, 5], "outside"),
        (None, [-20, -20, 10, 10], "outside"),
        (None, [10, float("nan"), 5, 5], "non-finite"),
        (None, [1, 2, 3], "Box or"),
        (None, [10, 10, 0.001, 0.001], "degenerate"),
        (None, [-W, -H, 3 * W, 3 * H], "far larger than the 160x120 image"),
    ],
)
def test_bad_init_input_raises_value_error(tiny, frames, image, box, match):
    img = frames[0] if image is None else image
    with pytest.raises(ValueError, match=match):
        Tracker(tiny).init(img, box)


def test_aux_must_match_the_rgb_size_and_modality(tiny, frames):
    img, depth = frames
    tr = Tracker(tiny)
    with pytest.raises(InputError, match="register/resize"):
        tr.init(img, [40, 30, 20, 24], aux=depth[:-2], modality="depth")
    with pytest.raises(InputError, match="modality=rgb"):
        tr.init(img, [40, 30, 20, 24], aux=depth)
    rgb_only = create_model("o256", embed_dim=48, num_heads=3, head_channels=(8, 8, 8, 8))
    with pytest.raises(InputError, match="takes RGB only"):
        Tracker(rgb_only).init(img, [40, 30, 20, 24], aux=depth, modality=Modality.DEPTH)
    tr.init(img, [40, 30, 20, 24], aux=depth, modality="depth")
    with pytest.raises(InputError, match="register/resize"):
        tr.track(img, depth[:, :-1])
    assert tr.track(img, depth).frame_index == 1  # the target survived the rejected frame


def test_nan_depth_is_invalid_not_propagated(tiny, frames):
    img, depth = frames
    metres = depth.astype(np.float32) / 1000.0
    metres[20:60, 30:90] = np.nan
    zeros = depth.copy()
    zeros[20:60, 30:90] = 0
    a, b = Tracker(tiny), Tracker(tiny)
    a.init(img, [40, 30, 20, 24], aux=metres, modality="depth")
    b.init(img, [40, 30, 20, 24], aux=zeros, modality="depth")
    ra, rb = a.track(img, metres), b.track(img, zeros)
    assert np.isfinite(ra.confidence) and ra.box.is_finite()
    assert ra.box == rb.box and ra.confidence == rb.confidence


def test_batched_targets_equal_separate_trackers(tiny, frames):
    img, depth = frames
    boxes = [[40, 30, 20, 24], [100, 60, 30, 16]]
    multi = MultiTracker(tiny)
    multi.init(img, boxes, aux=depth, modality="depth")
    singles = [Tracker(tiny) for _ in boxes]
    for t, b in zip(singles, boxes):
        t.init(img, b, aux=depth, modality="depth")
    for _ in range(3):
        together = multi.track(img, depth)
        apart = [t.track(img, depth) for t in singles]
        for r1, r2 in zip(together, apart):
            assert np.allclose(r1.box.as_xywh(), r2.box.as_xywh(), atol=1e-3)
            assert abs(r1.confidence - r2.confidence) < 1e-5


def test_dynamic_template_update_schedule(tiny, frames):
    img, _ = frames
    always = Tracker(tiny, config=TrackerConfig(update_interval=3, update_threshold=0.0))
    always.init(img, [40, 30, 20, 24])
    flags = [always.track(img).template_updated for _ in range(7)]
    assert flags == [False, False, True, False, False, True, False]
    never = Tracker(tiny, config=TrackerConfig(update_interval=3, update_threshold=1.0))
    never.init(img, [40, 30, 20, 24])
    assert not any(never.track(img).template_updated for _ in range(6))


def test_dynamic_template_update_changes_the_dynamic_tokens_only(tiny, frames):
    img, _ = frames
    tr = MultiTracker(tiny, config=TrackerConfig(update_interval=1, update_threshold=0.0))
    tr.init(img, [[40, 30, 20, 24]])
    st, dt, fg = (t.clone() for t in (tr._targets.tokens.st, tr._targets.tokens.dt, tr._targets.tokens.st_fg))
    shifted = np.roll(img, 7, axis=1)
    tr.track(shifted)
    assert torch.equal(tr._targets.tokens.st, st) and torch.equal(tr._targets.tokens.st_fg, fg)
    assert not torch.equal(tr._targets.tokens.dt, dt)


def test_lost_target_reports_lost_and_holds_the_search_centre(tiny, frames):
    img, _ = frames
    tr = Tracker(tiny, config=TrackerConfig(lost_threshold=1.0))
    tr.init(img, [40, 30, 20, 24])
    first = tr.track(img)
    second = tr.track(img)
    assert first.state is TrackState.LOST and second.state is TrackState.LOST
    assert first.search_region == second.search_region  # searched around the init box both times


def test_live_config_and_prune_changes(tiny, frames):
    img, _ = frames
    tr = Tracker(tiny)
    tr.init(img, [40, 30, 20, 24])
    pruned = tr.track(img)
    tr.set_prune(tiny.config.prune.off())
    full = tr.track(img)
    tr.set_prune(tiny.config.prune)
    assert pruned.ledger.final.visual < full.ledger.final.visual == full.ledger.input.visual
    tr.set_config(replace(tr.config, lost_threshold=1.0))
    assert tr.track(img).state is TrackState.LOST


def test_prompt_switches_text_guidance_at_run_time(tiny, frames):
    img, _ = frames
    prompted, plain = Tracker(tiny), Tracker(tiny)
    prompted.init(img, [40, 30, 20, 24], prompt="the red cup on the left")
    plain.init(img, [40, 30, 20, 24])
    assert int(prompted._multi._targets.task[0]) == 1 and int(plain._multi._targets.task[0]) == 0
    a, b = prompted.track(img), plain.track(img)
    assert a.confidence != b.confidence  # the text token and TG changed the forward
    prompted.set_prompt("   ")  # blank: no prompt any more
    assert int(prompted._multi._targets.task[0]) == 0
    assert float(prompted._multi._targets.text.abs().sum()) == 0.0


def test_prompt_encoded_ahead_equals_encoded_inside(tiny, frames):
    """encode_prompt (another thread, no tracker state) + set_prompt(features=) / init(prompt_features=)
    give exactly what encoding inside the call gives; load_text_encoder loads it ahead."""
    img, _ = frames
    ahead, inside = Tracker(tiny), Tracker(tiny)
    assert ahead.load_text_encoder() is not None and ahead._multi._text_encoder is not None
    features = ahead.encode_prompt("  the red  cup ")
    assert features.shape == (tiny.config.text_dim,)
    ahead.init(img, [40, 30, 20, 24], prompt="the red cup", prompt_features=features)
    inside.init(img, [40, 30, 20, 24], prompt="the red cup")
    assert torch.equal(ahead._multi._targets.text, inside._multi._targets.text)
    assert ahead.track(img).box == inside.track(img).box
    other = ahead.encode_prompt("a blue car")
    ahead.set_prompt("a blue car", features=other)
    inside.set_prompt("a blue car")
    assert torch.equal(ahead._multi._targets.text, inside._multi._targets.text)
    assert float(ahead.encode_prompt("  ").abs().sum()) == 0.0


def test_refused_init_keeps_the_current_target(tiny, frames):
    img, depth = frames
    tr = Tracker(tiny)
    tr.init(img, [40, 30, 20, 24], aux=depth, modality="depth")
    with pytest.raises(InputError, match="register/resize"):
        tr.init(img, [10, 10, 20, 20], aux=depth[:60, :80], modality="thermal")
    assert tr.modality is Modality.DEPTH and tr.frame_index == 0
    with pytest.raises(ConfigError, match="template_factor"):
        tr.set_config(replace(tr.config, template_factor=1e5))
    with pytest.raises(InputError, match="degenerate"):
        tr.init(img, [10, 10, 0.001, 0.001])
    assert tr.modality is Modality.DEPTH
    assert tr.track(img, depth).frame_index == 1  # the first target, still tracked


def test_a_clip_margin_larger_than_the_image_keeps_the_box_in_the_image(tiny, frames):
    img, _ = frames
    tr = Tracker(tiny, config=TrackerConfig(clip_margin=100000, lost_threshold=0.0))
    tr.init(img, [40, 30, 20, 24])
    for _ in range(2):
        x1, y1, x2, y2 = tr.track(img).box.as_xyxy()
        assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H


def test_reset_forgets_the_target(tiny, frames):
    tr = Tracker(tiny)
    tr.init(frames[0], [40, 30, 20, 24])
    tr.reset()
    assert not tr.initialized
    with pytest.raises(NotInitializedError):
        tr.track(frames[0])


def test_from_pretrained_weights_file_and_base_name(tiny, tmp_path):
    path = save_model(tiny, tmp_path / "w.safetensors")
    pruned = Tracker.from_pretrained("tiny", weights=path)
    base = Tracker.from_pretrained("tiny_base", weights=path)
    assert pruned.model.prune == tiny.config.prune
    assert not base.model.prune.enabled
    for a, b in zip(pruned.model.state_dict().values(), base.model.state_dict().values()):
        assert torch.equal(a, b)
    half = tiny.config.prune.with_keep_ratio(0.5, 0.5, 0.5)
    assert Tracker.from_pretrained("tiny", weights=path, prune=half).model.prune == half
    loaded = load_variant("tiny_base", path)  # the one loader from_pretrained uses: the raw network
    assert not loaded.prune.enabled and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()))
    with pytest.raises(CheckpointError, match="no such file"):
        load_variant("tiny", tmp_path / "missing.safetensors")


def test_prepared_aux_frame_gives_the_same_result(tiny, frames):
    img, depth = frames
    a, b = Tracker(tiny), Tracker(tiny)
    a.init(img, [40, 30, 20, 24], aux=depth, modality="depth")
    b.init(img, [40, 30, 20, 24], aux=depth, modality="depth")
    ra = a.track(img, depth)
    rb = b.track(img, prepare_aux(depth, Modality.DEPTH, b.config.aux))
    assert ra.box == rb.box and ra.confidence == rb.confidence


def test_size_smoothing_moves_the_size_part_way_and_keeps_the_centre(tiny, frames):
    img, _ = frames
    init = Box(40, 30, 20, 24)
    plain, smooth = Tracker(tiny, config=TrackerConfig(lost_threshold=0.0, clip_margin=0)), Tracker(
        tiny, config=TrackerConfig(lost_threshold=0.0, clip_margin=0, size_smoothing=0.75))
    plain.init(img, init)
    smooth.init(img, init)
    p, s = plain.track(img), smooth.track(img)  # same search region: the same prediction
    assert p.box.cx == pytest.approx(s.box.cx) and p.box.cy == pytest.approx(s.box.cy)
    assert s.box.w == pytest.approx(0.75 * init.w + 0.25 * p.box.w)
    assert s.box.h == pytest.approx(0.75 * init.h + 0.25 * p.box.h)
    with pytest.raises(ValueError, match="size_smoothing"):
        TrackerConfig(size_smoothing=1.0)

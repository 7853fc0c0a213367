"""Generator API: determinism by seed, random access, splits, spec validation, sources, language."""
from __future__ import annotations

import numpy as np
import pytest
from data.datautils import SMALL, assert_same_sequence, make

from utptrack_ros.data import SPLITS, Challenge, SequenceError, SequenceSpec, generate, spec_for, split_of
from utptrack_ros.data.scene import plan_scene
from utptrack_ros.data.sources import load_library
from utptrack_ros.types import Modality


def _frames(seq, indices=(0, 5, 11)):
    return [(seq.rgb(i), *(seq.aux(m, i) for m in seq.modalities)) for i in indices]


def test_same_seed_same_sequence_different_seed_differs():
    spec = SequenceSpec(seed=123, length=12, size=SMALL, challenges={"distractors": 0.7, "camera_shake": 0.5})
    a, b = generate(spec), generate(spec)  # fresh objects, no shared cache
    np.testing.assert_array_equal(a.gt, b.gt)
    assert a.prompt == b.prompt and a.attributes == b.attributes
    for fa, fb in zip(_frames(a), _frames(b)):
        for xa, xb in zip(fa, fb):
            np.testing.assert_array_equal(xa, xb)
    c = generate(SequenceSpec(seed=124, length=12, size=SMALL, challenges={"distractors": 0.7, "camera_shake": 0.5}))
    assert not np.array_equal(a.rgb(0), c.rgb(0))
    assert not np.array_equal(a.gt, c.gt, equal_nan=True)


def test_random_access_equals_sequential_access():
    spec = SequenceSpec(seed=9, length=12, size=SMALL, challenges={"motion_blur": 1.0, "illumination": 1.0})
    sequential = generate(spec)
    frames = list(sequential.iter_frames())
    fresh = generate(spec)
    for i in (10, 3):  # first touch, out of order: renders i (and i-1 for events) on its own
        f = fresh.frame(i)
        np.testing.assert_array_equal(f.rgb, frames[i].rgb)
        for m in (Modality.DEPTH, Modality.THERMAL, Modality.EVENT):
            np.testing.assert_array_equal(f.aux[m], frames[i].aux[m])


def test_materialize_keeps_everything(small_seq):
    memory = small_seq.materialize()
    assert type(memory.frames).__name__ == "ArrayFrames"
    assert_same_sequence(small_seq, memory)
    assert memory.attributes == small_seq.attributes


def test_native_types_and_attributes(small_seq):
    w, h = small_seq.image_size
    assert (w, h) == SMALL
    assert small_seq.rgb(0).dtype == np.uint8 and small_seq.rgb(0).shape == (h, w, 3)
    assert small_seq.aux(Modality.DEPTH, 0).dtype == np.uint16 and small_seq.aux("depth", 0).shape == (h, w)
    assert small_seq.aux(Modality.THERMAL, 0).dtype == np.uint16
    assert small_seq.aux(Modality.EVENT, 0).shape == (h, w, 3)
    assert small_seq.attributes["challenges"] == {"distractors": 1.0, "out_of_view": 1.0}
    assert small_seq.attributes["seed"] == 7 and small_seq.attributes["split"] == "train"
    np.testing.assert_allclose(np.diff(small_seq.stamps_ns), 1e9 / 30, atol=1)
    assert small_seq.gt.shape == (30, 4) and np.isnan(small_seq.gt[small_seq.absent]).all()
    finite = small_seq.gt[~small_seq.absent]
    assert (finite[:, :2] >= 0).all() and (finite[:, 0] + finite[:, 2] <= w).all() and (finite[:, 2:] > 0).all()


def test_rgb_only_spec_renders_no_aux():
    seq = generate(SequenceSpec(seed=5, length=4, size=SMALL, modalities=()))
    assert seq.modalities == ()
    with pytest.raises(SequenceError, match="has no depth frames"):
        seq.aux(Modality.DEPTH, 0)


def test_splits_are_seed_ranges():
    assert split_of(0) == "train" and split_of(99_999) == "train"
    assert split_of(100_000) == "val" and split_of(100_999) == "val" and split_of(101_000) == "custom"
    assert split_of(200_000) == "test" and split_of(200_999) == "test" and split_of(-1) == "custom"
    assert spec_for("val", 3).seed == 100_003 and spec_for("test", 0, length=7).length == 7
    assert spec_for("test", 4).challenges == spec_for("test", 4).challenges  # drawn from the seed
    assert spec_for("test", 4, challenges=["darkness"]).challenges == ((Challenge.DARKNESS, 1.0),)
    with pytest.raises(SequenceError, match="out of range"):
        spec_for("val", len(SPLITS["val"]))
    with pytest.raises(SequenceError, match="unknown split"):
        spec_for("holdout", 0)
    assert generate(spec_for("test", 2, length=3, size=SMALL)).name == "test_200002"


def test_train_split_never_uses_holdout_sources():
    library = load_library()
    holdout_objects = {f"object:{o.name}" for o in library.objects if o.holdout}
    holdout_backgrounds = {b.name for b in library.backgrounds if b.holdout}
    assert holdout_objects and holdout_backgrounds
    seen_sources, seen_holdout = set(), False
    for seed in range(40):
        scene = plan_scene(SequenceSpec(seed=seed, length=3, size=SMALL), library)
        seen_sources.add(scene.attributes["target"]["source"])
        assert scene.attributes["target"]["source"] not in holdout_objects
        assert scene.attributes["background"]["name"] not in holdout_backgrounds
    for index in range(40):
        scene = plan_scene(spec_for("test", index, length=3, size=SMALL), library)
        seen_holdout |= scene.attributes["background"]["name"] in holdout_backgrounds
        seen_holdout |= scene.attributes["target"]["source"] in holdout_objects
    assert seen_holdout, "test split should draw held-out sources too"
    assert len(seen_sources) > 15, "targets should vary across seeds"


def test_spec_validation():
    with pytest.raises(SequenceError, match="unknown challenge 'fog'"):
        SequenceSpec(seed=1, challenges=["fog"])
    with pytest.raises(SequenceError, match=r"strength must be in \[0, 1\]"):
        SequenceSpec(seed=1, challenges={"darkness": 1.5})
    with pytest.raises(SequenceError, match="RGB is always generated"):
        SequenceSpec(seed=1, modalities=(Modality.RGB,))
    with pytest.raises(SequenceError, match="length must be >= 2"):
        SequenceSpec(seed=1, length=1)
    assert SequenceSpec(seed=1, challenges={"darkness": 0.0}).challenges == ()


def test_toggling_one_challenge_keeps_the_rest():
    """Independent random streams: adding distractors does not move the target."""
    base, more = make(31, {"rotation": 0.5}), make(31, {"rotation": 0.5, "distractors": 0.8})
    assert base.attributes["target"] == more.attributes["target"]
    both = ~base.absent & ~more.absent
    assert both.sum() > 10
    np.testing.assert_array_equal(base.gt[both], more.gt[both])


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_prompt_names_the_target_and_separates_it_from_distractors(seed):
    seq = make(seed, {"distractors": 1.0}, length=4)
    target, distractors, language = (seq.attributes[k] for k in ("target", "distractors", "language"))
    assert distractors
    prompt = seq.prompt.split()
    assert target["category"] in prompt
    assert language["colour"] in prompt
    assert language["discriminative"]
    for d in distractors:  # each distractor differs in at least one described attribute
        differs = d["category"] != target["category"] or d["colour"] != target["colour"] or (
            language["pattern"] is not None and d["pattern"] != target["pattern"])
        assert differs or language["position"], (seq.prompt, d)


def test_first_frame_is_clean_for_any_challenge_mix():
    """Trackers start from frame 0: the target is in view and unoccluded there, whatever the mix."""
    for index in range(40):
        seq = generate(spec_for("train", index, length=30, size=SMALL, probability=0.5))
        assert not seq.absent[0], seq.attributes["challenges"]
        assert seq.frame_info["in_view"][0] == 1.0, seq.attributes["challenges"]
        assert seq.frame_info["visibility"][0] > 0.9, seq.attributes["challenges"]

"""The shipped ``tiny`` weights really track: a regression guard for whatever file ships.

The acceptance numbers (30 test-split sequences per suite against OpenCV CSRT) come from
``python -m utptrack_ros.train.evaluate`` and live in the model card; this is the quick check
that runs in CI. It follows test-split sequences that no training run and no acceptance suite
draws (indices 900 .. 903, no challenges) with the shipped file as ``Tracker.from_pretrained``
loads it, and compares it with the trivial tracker that keeps reporting the first box (stage 4
weights: AUC 81.7 pruned, 81.9 unpruned, 20.9 for the held box).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from utptrack_ros.data.generator import generate
from utptrack_ros.data.spec import spec_for
from utptrack_ros.eval.metrics import aggregate, evaluate_sequence
from utptrack_ros.models import shipped_weights
from utptrack_ros.tracker import Tracker

INDICES = range(900, 904)
LENGTH = 40
SIZE = (320, 240)


@pytest.fixture(scope="module")
def sequences():
    return [generate(spec_for("test", i, challenges=(), length=LENGTH, size=SIZE, modalities=())) for i in INDICES]


def _follow(tracker: Tracker, seq) -> np.ndarray:
    first = np.flatnonzero(~seq.absent)[0]
    pred = np.full((len(seq.gt), 4), np.nan)
    pred[first] = seq.gt[first]
    tracker.init(seq.frames.rgb(first), seq.gt[first])
    for i in range(first + 1, len(seq.gt)):
        pred[i] = tracker.track(seq.frames.rgb(i)).box.as_xywh()
    return pred


def _held_first_box(seq) -> np.ndarray:
    first = np.flatnonzero(~seq.absent)[0]
    return np.repeat(seq.gt[first][None], len(seq.gt), axis=0)


def _score(preds, seqs):
    return aggregate([evaluate_sequence(p, s.gt, s.absent, image_size=SIZE, name=s.name) for p, s in zip(preds, seqs)])


def test_the_shipped_file_exists_and_names_its_recipe():
    path = shipped_weights("tiny")
    assert path is not None and path.stat().st_size < 25 * 2**20
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["extra"])["recipe"]["model"] == "tiny"
    assert json.loads(meta["model_config"])["name"] == "tiny"


@pytest.mark.parametrize("name", ["tiny", "tiny_base"])
def test_the_shipped_model_follows_held_out_sequences(sequences, name):
    tracker = Tracker.from_pretrained(name, threads=1)
    model = _score([_follow(tracker, s) for s in sequences], sequences)
    still = _score([_held_first_box(s) for s in sequences], sequences)
    assert model.auc > 60.0, f"{name}: AUC {model.auc:.1f} on easy held-out sequences"
    assert model.auc > still.auc + 30.0, f"{name}: AUC {model.auc:.1f} vs {still.auc:.1f} for the first box held"

"""The shipped ``tiny`` weights really track: a regression guard for whatever file ships.

The acceptance numbers (30 test-split sequences per suite against OpenCV CSRT) come from
``python -m utptrack_ros.train.evaluate`` and live in the model card; this is the quick check
that runs in CI. It follows test-split sequences that no training run and no acceptance suite
draws (indices 900 .. 903, no challenges) with the shipped file as ``Tracker.from_pretrained``
loads it, and compares it with the trivial tracker that keeps reporting the first box (the
shipped weights' scores on these sequences are in the model card).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from utptrack_ros.checkpoint import read_checkpoint
from utptrack_ros.data.generator import generate
from utptrack_ros.data.spec import spec_for
from utptrack_ros.eval.results import score_runs
from utptrack_ros.eval.sequence_run import run_sequence
from utptrack_ros.eval.specs import CoreTrackerFactory, TrackerSpec
from utptrack_ros.models import shipped_weights

INDICES = range(900, 904)
LENGTH = 40
SIZE = (320, 240)


@pytest.fixture(scope="module")
def sequences():
    return [generate(spec_for("test", i, challenges=(), length=LENGTH, size=SIZE, modalities=())) for i in INDICES]


def _held_first_box(run):
    """The same run as if the tracker kept reporting its init box."""
    return replace(run, boxes_xywh=np.repeat(run.gt_xywh[run.init_index][None], run.num_frames, axis=0))


def test_the_shipped_file_exists_and_names_its_recipe():
    path = shipped_weights("tiny")
    assert path is not None and path.stat().st_size < 25 * 2**20
    checkpoint = read_checkpoint(path)
    assert checkpoint.info["recipe"]["model"] == "tiny"
    assert checkpoint.model_config.name == "tiny"


@pytest.mark.parametrize("name", ["tiny", "tiny_base"])
def test_the_shipped_model_follows_held_out_sequences(sequences, name):
    spec = TrackerSpec(name, CoreTrackerFactory(name))
    runs = [run_sequence(spec, seq) for seq in sequences]
    assert [r.error for r in runs] == [None] * len(runs)
    model = score_runs(runs)["overall"]["auc"]
    still = score_runs([_held_first_box(r) for r in runs])["overall"]["auc"]
    assert model > 60.0, f"{name}: AUC {model:.1f} on easy held-out sequences"
    assert model > still + 30.0, f"{name}: AUC {model:.1f} vs {still:.1f} for the first box held"

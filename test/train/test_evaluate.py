"""The held-out evaluation driver builds its rows with the evaluation runner's tracker factory."""
from __future__ import annotations

from utptrack_ros.eval.specs import CoreTrackerFactory
from utptrack_ros.models import default_tracker_config, shipped_weights
from utptrack_ros.train import evaluate as E


def test_rows_are_core_tracker_factories_over_the_weights_file():
    weights = str(shipped_weights("tiny"))
    variant = E.weights_variant(weights)
    assert variant == "tiny"
    pruned = E.trained_factory(weights, variant, lost_threshold=0.3, update_threshold=0.9)
    assert isinstance(pruned, CoreTrackerFactory) and not pruned.reuse
    tracker = pruned()
    defaults = default_tracker_config("tiny")
    assert (tracker.config.lost_threshold, tracker.config.update_threshold) == (0.3, 0.9)
    assert tracker.config.search_factor == defaults.search_factor
    assert tracker.model.prune == tracker.model.config.prune  # the file's own keep ratios
    unpruned = E.trained_factory(weights, variant, unpruned=True)()
    assert unpruned.config == defaults
    assert unpruned.model.prune == tracker.model.prune.off()
    rows = E.suite_trackers("rgb", weights, None, variant)
    assert [r.name for r in rows] == ["tiny", "tiny_base", "csrt", "kcf", "mil"]
    assert rows[1].factory == E.trained_factory(weights, variant, unpruned=True)

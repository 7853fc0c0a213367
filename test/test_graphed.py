"""CUDA-graph bookkeeping (runtime/graphed.py) on the CPU: the closure stands in for the graph, so
what is checked is the keys, the static input buffers and the copies into them, and the cache."""
from __future__ import annotations

import pytest
import torch

from testutils import small_o
from utptrack_ros.errors import InputError
from utptrack_ros.models.examples import example_inputs
from utptrack_ros.runtime.graphed import GraphedNetwork


def eager(fn):
    return fn  # the "replay" runs the closure on the graph's static buffers


def inputs(model, batch, seed):
    x = example_inputs(model.config, batch, seed)
    with torch.inference_mode():
        tokens = model.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)
    return x.search, tokens


def same(a, b):
    for name in ("score_map", "size_map", "offset_map", "search_keep_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.fixture(scope="module")
def model():
    return small_o("o256")


def test_one_capture_per_key_and_inputs_copied_in_on_every_call(model) -> None:
    net = GraphedNetwork(model, capture=eager)
    with torch.inference_mode():
        for seed in (0, 1, 2):  # new crops and new templates (a template update): same graph
            search, tokens = inputs(model, 1, seed)
            same(net.forward_search(search, tokens), model.forward_search(search, tokens))
        assert net.captures == 1
        search, tokens = inputs(model, 2, 3)  # another batch size: its own graph
        same(net.forward_search(search, tokens), model.forward_search(search, tokens))
        assert net.captures == 2
        configured = model.prune
        net.set_prune(configured.off())  # other keep ratios: their own graph, then reused
        same(net.forward_search(search, tokens), model.forward_search(search, tokens))
        net.set_prune(configured)
        same(net.forward_search(search, tokens), model.forward_search(search, tokens))
        assert net.captures == 3 and net.graphs == 3


def test_outputs_are_copies_and_the_cache_is_bounded(model) -> None:
    net = GraphedNetwork(model, capture=eager, max_graphs=2)
    with torch.inference_mode():
        search, tokens = inputs(model, 1, 0)
        net.capture(search, tokens)
        assert net.captures == 1
        first = net.forward_search(search, tokens)
        kept = first.score_map.clone()
        other, tokens2 = inputs(model, 1, 5)
        net.forward_search(other, tokens2)
        assert torch.equal(first.score_map, kept)  # a later replay does not overwrite what was returned
        assert net.captures == 1
        for b in (2, 3):
            net.forward_search(*inputs(model, b, b))
        assert net.graphs == 2 and net.captures == 3
        net.forward_search(search, tokens)  # batch 1 was dropped (least recently used): captured again
        assert net.captures == 4


def test_the_default_capture_needs_cuda(model) -> None:
    with pytest.raises(InputError, match="CUDA graphs need"):
        GraphedNetwork(model)

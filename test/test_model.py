"""Network-level properties of the registered variants (random init; method.md 4, 12)."""
from __future__ import annotations

import pytest
import torch
from testutils import small_o

from utptrack_ros.config import PruneConfig
from utptrack_ros.errors import ConfigError
from utptrack_ros.models import create_model, encoder, list_models, model_config
from utptrack_ros.models.inference import prepare_for_inference
from utptrack_ros.models.pruning import keep_count
from utptrack_ros.types import Task


def _inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    search = torch.randn(batch, c.in_chans, c.search_size, c.search_size, generator=g)
    static = torch.randn(batch, c.in_chans, c.template_size, c.template_size, generator=g)
    dynamic = torch.randn(batch, c.in_chans, c.template_size, c.template_size, generator=g)
    box = torch.tensor([[0.3, 0.25, 0.4, 0.5]]).repeat(batch, 1)
    return search, static, dynamic, box, box


def _run(model, inputs, **kw):
    with torch.inference_mode():
        return model(*inputs, **kw)


def _expected_ledger(cfg):
    """(sr, st, dt) leaving each block, from ceil(ratio * n) at the configured layers."""
    n_sr, n_z = cfg.search_grid**2, cfg.template_grid**2
    counts, cur = [], [n_sr, n_z, n_z]
    for layer in range(cfg.depth):
        for i, comp in enumerate(("ce", "ste", "dte")):
            r = cfg.prune.ratio(comp, layer)
            if r < 1.0:
                cur[i] = keep_count(r, cur[i])
        counts.append(tuple(cur))
    return counts


def test_registry_lists_pruned_and_unpruned_variants():
    assert {"o256", "o256_base", "o384", "o384_base", "tiny", "tiny_base"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("o512")


def test_o_family_parameter_count_matches_official():
    # method.md 8.2: OSTrack-256 / UTPTrack-O have 92,518,533 parameters
    model = create_model("o256")
    assert sum(p.numel() for p in model.parameters()) == 92_518_533


@pytest.mark.parametrize("name", ["o256", "o384", "tiny"])
def test_ledger_matches_ceil_arithmetic(name):
    cfg = model_config(name)
    model = create_model(name, embed_dim=48, num_heads=3, head_channels=(8, 8, 8, 8)).eval()
    out = _run(model, _inputs(model, batch=1))
    assert [(layer.sr, layer.st, layer.dt) for layer in out.ledger.layers] == _expected_ledger(cfg)


def test_o256_ledger_reproduces_paper_token_counts():
    model = small_o()
    led = _run(model, _inputs(model, batch=1)).ledger
    assert led.input.visual == 384 and led.final.visual == 135
    assert round(led.average_visual) == 252


@pytest.mark.parametrize("name", ["o256", "tiny"])
def test_keep_ratio_one_equals_unpruned_model(name):
    pruned = (small_o(name) if name.startswith("o") else create_model(name).eval())
    base_name = f"{name}_base"
    base = (small_o(base_name) if name.startswith("o") else create_model(base_name).eval())
    base.load_state_dict(pruned.state_dict())
    inputs = _inputs(pruned)
    task = torch.tensor([int(Task.LANGUAGE), int(Task.RGB)])
    text = torch.randn(2, pruned.config.text_dim) if pruned.config.text_dim else None
    pruned.set_prune(pruned.config.prune.off())
    pruned.force_reorder = True  # tokens are still sorted by score and scattered back
    a = _run(pruned, inputs, text=text, task=task)
    b = _run(base, inputs, text=text, task=task)
    for x, y in ((a.score_map, b.score_map), (a.size_map, b.size_map), (a.offset_map, b.offset_map)):
        assert (x - y).abs().max() <= 1e-5
    assert a.ledger.final.visual == b.ledger.final.visual == a.ledger.input.visual


def test_force_reorder_runs_the_pruning_path_without_removing_tokens(monkeypatch):
    """The testing aid is set on the model and held by its blocks: with nothing removed, the
    search tokens are still re-ordered by score and scattered back (restore_search runs)."""
    model = create_model("tiny").eval()
    model.set_prune(model.config.prune.off())
    calls = []
    real = encoder.pruning.restore_search
    monkeypatch.setattr(encoder.pruning, "restore_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    inputs = _inputs(model)
    _run(model, inputs)
    assert not model.force_reorder and not calls
    model.force_reorder = True
    assert model.force_reorder and all(b.force_reorder for b in model.backbone.blocks)
    _run(model, inputs)
    assert calls
    model.force_reorder = False
    assert not any(b.force_reorder for b in model.backbone.blocks)


def test_runtime_budget_equals_fresh_model_with_those_ratios():
    model = small_o()
    budget = model.config.prune.with_keep_ratio(0.5, 0.6, 0.4)
    fresh = small_o(prune=budget)
    fresh.load_state_dict(model.state_dict())
    model.set_prune(budget)
    inputs = _inputs(model)
    a, b = _run(model, inputs), _run(fresh, inputs)
    assert torch.equal(a.score_map, b.score_map) and torch.equal(a.size_map, b.size_map)
    assert a.ledger == b.ledger
    assert a.ledger.final.sr == keep_count(0.5, keep_count(0.5, keep_count(0.5, 256)))


def test_pruning_off_restores_full_token_count():
    model = small_o()
    model.set_prune(PruneConfig())  # no pruning layers at all
    led = _run(model, _inputs(model, batch=1)).ledger
    assert all(layer.visual == 384 for layer in led.layers)


def test_removed_search_positions_are_exact_zeros_before_the_head():
    model = small_o()
    captured = {}
    model.box_head.register_forward_pre_hook(lambda mod, args: captured.setdefault("feat", args[0].clone()))
    out = _run(model, _inputs(model))
    feat = captured["feat"].flatten(2)  # (B, C, F*F)
    keep = out.search_keep_mask  # (B, F*F)
    assert int(keep[0].sum()) == out.ledger.final.sr == 89
    assert torch.count_nonzero(feat.transpose(1, 2)[~keep]) == 0
    assert bool((feat.transpose(1, 2)[keep].abs().sum(-1) > 0).all())  # kept ones are not zero


@pytest.mark.parametrize("mode", ["none", "soft", "all", "full"])
def test_static_centre_token_always_survives_ste(mode):
    model = small_o(prune=PruneConfig(ste=((1, 0.1), (2, 0.1), (3, 0.1)), tta_mode=mode))
    for seed in range(3):
        search, static, dynamic, box, _ = _inputs(model, batch=3, seed=seed)
        # tracker-style template boxes are centred in the crop
        wh = torch.tensor([[0.2, 0.3], [0.45, 0.15], [0.05, 0.05]])
        box = torch.cat([0.5 - wh / 2, wh], dim=1)
        with torch.inference_mode():
            tokens = model.embed_templates(static, dynamic, box, box)
            _, _, state, ledger = model.backbone(search, tokens, None, None, model.prune)
        assert ledger[-1].st == 1
        assert state.st_centre.all()  # the single surviving ST token is the centre


def test_text_guidance_needs_a_prompt_to_change_the_selection():
    model = create_model("tiny", prune=PruneConfig(ce=((1, 0.3),), text_guided="C")).eval()
    search, static, dynamic, box, _ = _inputs(model, batch=2)
    text = torch.randn(2, model.config.text_dim) * 5
    lang = torch.tensor([int(Task.LANGUAGE)] * 2)
    rgb = torch.tensor([int(Task.RGB)] * 2)
    guided = _run(model, (search, static, dynamic, box, box), text=text, task=lang)
    unguided = _run(model, (search, static, dynamic, box, box), text=text, task=rgb)
    assert not torch.equal(guided.search_keep_mask, unguided.search_keep_mask)
    # without a prompt TG is inert: same as a model with text guidance switched off
    model_off = create_model("tiny", prune=PruneConfig(ce=((1, 0.3),))).eval()
    model_off.load_state_dict(model.state_dict())
    plain = _run(model_off, (search, static, dynamic, box, box), text=text, task=rgb)
    assert torch.equal(unguided.search_keep_mask, plain.search_keep_mask)
    assert torch.equal(unguided.score_map, plain.score_map)


def test_batch_samples_are_independent():
    model = create_model("tiny").eval()
    search, static, dynamic, box, _ = _inputs(model, batch=2)
    text = torch.randn(2, model.config.text_dim)
    task = torch.tensor([int(Task.LANGUAGE), int(Task.DEPTH)])
    both = _run(model, (search, static, dynamic, box, box), text=text, task=task)
    for i in range(2):
        sl = slice(i, i + 1)
        one = _run(model, (search[sl], static[sl], dynamic[sl], box[sl], box[sl]), text=text[sl], task=task[sl])
        assert (one.score_map - both.score_map[sl]).abs().max() < 1e-5
        assert torch.equal(one.search_keep_mask, both.search_keep_mask[sl])


def test_training_forward_returns_what_the_losses_need():
    model = create_model("tiny").train()
    search, static, dynamic, box, _ = _inputs(model, batch=2)
    out = model(search, static, dynamic, box, box, task=torch.tensor([0, 2]), prune=model.prune.with_keep_ratio(0.8, 0.8, 0.8))
    assert out.score_map.shape == (2, 1, 12, 12) and out.size_map.shape == (2, 2, 12, 12)
    assert out.offset_map.shape == (2, 2, 12, 12) and out.boxes.shape == (2, 4)
    assert out.task_logits.shape == (2, 5)
    loss = out.score_map.mean() + out.size_map.mean() + out.offset_map.mean() + out.task_logits.logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


def test_invalid_prune_layers_are_rejected():
    model = small_o()
    with pytest.raises(ConfigError, match="layer 12 >= depth 12"):
        model.set_prune(PruneConfig(ce=((12, 0.5),)))
    with pytest.raises(ConfigError, match="keep ratio must be in"):
        PruneConfig(ce=((3, 1.5),))


def test_inference_rewrite_keeps_outputs():
    model = create_model("tiny").eval()
    for mod in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    fast = prepare_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    inputs = _inputs(model)
    a, b = _run(model, inputs), _run(fast, inputs)
    assert (a.score_map - b.score_map).abs().max() < 1e-5
    assert (a.size_map - b.size_map).abs().max() < 1e-5
    assert (a.offset_map - b.offset_map).abs().max() < 1e-4


def test_create_model_applies_prune_and_overrides_together():
    prune = PruneConfig(ce=((1, 0.5),), ste=((3, 0.5),))
    model = create_model("o256", prune=prune, depth=4, embed_dim=48, num_heads=3)
    assert model.config.depth == 4 and model.prune == prune

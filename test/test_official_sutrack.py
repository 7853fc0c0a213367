"""The S family: golden outputs of the official SUTrack code, reproduced by ``sutrack_b224``.

``test/fixtures/sutrack_golden.npz`` was produced once by ``scripts/golden_sutrack.py`` with the
official SUTrack code (chenxin-dlut/SUTrack, commit in ``sutrack_golden.json``) on a reduced
Fast-iTPN (width 32, stage depths 1/1, 4 attention blocks) with seeded random weights
(``sutrack_reduced.safetensors``: the official model's state dict, its CLIP a small stand-in
text tower): the official tracker ran RGB frames (duplicated to 6 channels) and RGB + auxiliary
frames, with dynamic-template updates every 3 frames. Here the same file is loaded (which
computes the no-prompt text feature from its CLIP entries, as for a released file) and runs in
:class:`~utptrack_ros.tracker.Tracker`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from utptrack_ros.checkpoint import load_weights, read_checkpoint
from utptrack_ros.config import PruneConfig, TrackerConfig
from utptrack_ros.models import create_model, model_config
from utptrack_ros.models.ledger import expected_ledger
from utptrack_ros.runtime import OrtBackend, TorchBackend, export_onnx
from utptrack_ros.tracker import Tracker
from utptrack_ros.types import Task

FIXTURES = Path(__file__).parent / "fixtures"
PROVENANCE = json.loads((FIXTURES / "sutrack_golden.json").read_text())
REDUCED = PROVENANCE["reduced"]
MAP_TOL = 1e-4
BOX_TOL_PX = 1e-3


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "sutrack_golden.npz") as data:
        return {k: data[k] for k in data.files}


def reduced_model(name: str = "sutrack_b224", **overrides):
    c = REDUCED["head_channels"]
    model = create_model(
        name,
        embed_dim=REDUCED["embed_dim"],
        stage_depths=tuple(REDUCED["stage_depths"]),
        depth=REDUCED["depth"],
        num_heads=REDUCED["num_heads"],
        head_channels=(c, c // 2, c // 4, c // 8),
        text_dim=REDUCED["text_dim"],
        **overrides,
    )
    assert load_weights(model, FIXTURES / "sutrack_reduced.safetensors").ok
    return model.eval()


def run_tracker(model, golden, case):
    config = TrackerConfig(search_factor=4.0, update_interval=REDUCED["update_interval"],
                           update_threshold=REDUCED["update_threshold"], lost_threshold=0.0)
    tracker = Tracker(model, config=config)
    outputs = []
    forward = tracker.model.forward_search

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        outputs.append(out)
        return out

    tracker.model.forward_search = recording
    frames, aux = golden["frames"], golden["aux"]
    if case == "rgbx":  # the auxiliary stream as a rendered 3-channel (event) frame, used as is
        tracker.init(frames[0], golden["init_box"], aux=aux[0], modality="event")
        results = [tracker.track(f, aux=a) for f, a in zip(frames[1:], aux[1:])]
    else:
        tracker.init(frames[0], golden["init_box"])
        results = [tracker.track(f) for f in frames[1:]]
    return results, outputs


def test_fixture_records_the_official_commit():
    assert PROVENANCE["official_repo"] == "chenxin-dlut/SUTrack" and len(PROVENANCE["official_commit"]) == 40
    assert read_checkpoint(FIXTURES / "sutrack_reduced.safetensors").info["official_commit"] == PROVENANCE["official_commit"]


def test_official_builder_state_dict_loads_strictly(golden):
    ckpt = read_checkpoint(FIXTURES / "sutrack_reduced.safetensors")
    assert ckpt.source == "sutrack"
    model = reduced_model()
    network_keys = {k for k in ckpt.state_dict if not k.startswith("text_encoder.clip.")}
    assert set(model.state_dict()) == network_keys | {"text_encoder.no_prompt"}
    assert {"encoder.body.cls_token", "encoder.body.blocks.5.attn.q_bias", "encoder.body.blocks.5.gamma_1",
            "encoder.body.fc_norm.weight", "text_encoder.norm1.weight", "task_decoder.layers.2.bias",
            "text_encoder.clip.text_projection"} <= set(ckpt.state_dict)
    # the no-prompt feature is CLIP's encode_text of 77 zero ids, computed from the file's CLIP entries
    np.testing.assert_allclose(model.no_prompt_feature.numpy(), golden["no_prompt_feature"], atol=1e-6)


@pytest.mark.parametrize("case", ["rgb", "rgbx"])
def test_tracker_reproduces_the_official_sutrack_tracker(golden, case):
    results, outputs = run_tracker(reduced_model(), golden, case)
    assert len(outputs) == len(golden[f"{case}.score_map"])
    for i, out in enumerate(outputs):
        for key in ("score_map", "size_map", "offset_map", "task_logits"):
            diff = np.abs(getattr(out, key).numpy() - golden[f"{case}.{key}"][i : i + 1]).max()
            assert diff <= MAP_TOL, f"frame {i + 1} {key}: max |diff| {diff:.2e}"
        assert np.abs(out.boxes.numpy()[0] - golden[f"{case}.decoded_box"][i]).max() <= MAP_TOL
    assert [r.template_updated for r in results] == golden[f"{case}.template_updated"].tolist()
    assert any(r.template_updated for r in results)  # the dynamic-template path ran
    boxes = np.array([r.box.as_xywh() for r in results])
    assert np.abs(boxes - golden[f"{case}.tracker_box"]).max() <= BOX_TOL_PX
    assert results[0].ledger.input.visual == 196 + 49 + 49  # CLS and TEXT are not visual tokens


def test_the_text_token_matters(golden):
    """The golden comparison can fail: a zero text feature instead of CLIP's no-prompt feature."""
    model = reduced_model()
    model.set_no_prompt_feature(torch.zeros(REDUCED["text_dim"]))
    tracker = Tracker(model, config=TrackerConfig(update_interval=0, lost_threshold=0.0))
    outputs = []
    forward = tracker.model.forward_search
    tracker.model.forward_search = lambda *a, **k: outputs.append(forward(*a, **k)) or outputs[-1]
    tracker.init(golden["frames"][0], golden["init_box"])
    tracker.track(golden["frames"][1])
    assert np.abs(outputs[0].score_map.numpy() - golden["rgb.score_map"][:1]).max() > 5 * MAP_TOL


def test_registered_s_family_ledgers_and_parameter_count():
    s224 = expected_ledger(model_config("s224"))
    assert (s224.input.visual, s224.final.visual, s224.average_visual) == (294, 90, 188.25)
    assert [(lt.sr, lt.st, lt.dt) for lt in s224.layers if lt.layer in (6, 9, 12, 15, 18, 21)] == [
        (138, 49, 49), (138, 30, 30), (97, 30, 30), (97, 18, 18), (68, 18, 18), (68, 11, 11)]
    s384 = expected_ledger(model_config("s384"))
    assert (s384.input.visual, s384.final.visual) == (864, 263)
    assert expected_ledger(model_config("sutrack_b224")).final.visual == 294
    model = create_model("sutrack_b224")
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters())
             for name in ("encoder", "decoder", "task_decoder", "text_encoder")}
    # method.md 8.3: encoder 84,345,472; head 4,704,645; task head 198,405; text proj + LNs 396,288
    assert parts == {"encoder": 84_345_472, "decoder": 4_704_645, "task_decoder": 198_405, "text_encoder": 396_288}
    assert len(model.state_dict()) == 1117 - 446 + 1  # every non-CLIP entry + the no-prompt feature


def test_onnxruntime_tracker_reproduces_the_official_sutrack_tracker(golden, tmp_path):
    """The exported graphs ([CLS, SR, ST, DT, TEXT], the no-prompt feature baked in) in the tracker."""
    config = TrackerConfig(search_factor=4.0, update_interval=REDUCED["update_interval"],
                           update_threshold=REDUCED["update_threshold"], lost_threshold=0.0)
    tracker = Tracker(reduced_model(), config=config, backend="onnxruntime", onnx_cache=tmp_path)
    assert tracker.backend == "onnxruntime"
    tracker.init(golden["frames"][0], golden["init_box"])
    results = [tracker.track(f) for f in golden["frames"][1:]]
    assert [r.template_updated for r in results] == golden["rgb.template_updated"].tolist()
    boxes = np.array([r.box.as_xywh() for r in results])
    assert np.abs(boxes - golden["rgb.tracker_box"]).max() <= BOX_TOL_PX


def test_pruned_s_model_exports_with_text_guidance(tmp_path):
    """s224's CTEM with text guidance (scaled to 4 blocks) through onnxruntime equals torch."""

    prune = PruneConfig(ce=((1, 0.7), (3, 0.7)), dte=((2, 0.6),), ste=((2, 0.6),), tta_mode="soft", text_guided="D")
    model = reduced_model("s224", prune=prune)
    export_onnx(model, tmp_path)
    ours, ref = OrtBackend(tmp_path), TorchBackend(model)
    g = np.random.default_rng(0)
    z = g.standard_normal((1, 6, 112, 112)).astype(np.float32)
    x = g.standard_normal((1, 6, 224, 224)).astype(np.float32)
    box = np.array([[0.3, 0.3, 0.4, 0.4]], np.float32)
    text = g.standard_normal((1, REDUCED["text_dim"])).astype(np.float32)
    for prompt in (None, text):
        a = ours.forward_search(x, ours.embed_templates(z, None, box, None), prompt)
        b = ref.forward_search(x, ref.embed_templates(z, None, box, None), prompt)
        assert max(np.abs(getattr(a, k) - getattr(b, k)).max() for k in ("score_map", "size_map", "offset_map")) <= 1e-4
        assert np.array_equal(a.search_keep_mask, b.search_keep_mask)
        assert (a.ledger.final.sr, a.ledger.final.st, a.ledger.final.dt) == (97, 30, 30)


def _s_inputs(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 6, 112, 112, generator=g)
    x = torch.randn(batch, 6, 224, 224, generator=g)
    box = torch.tensor([[0.3, 0.25, 0.4, 0.5]]).repeat(batch, 1)
    text = torch.randn(batch, REDUCED["text_dim"], generator=g)
    return z, x, box, text


_S_SCALED = dict(ce=((1, 0.7), (3, 0.7)), dte=((2, 0.6),), ste=((2, 0.6),), tta_mode="soft")


def test_keep_ratio_one_equals_the_unpruned_s_model():
    pruned = reduced_model("s224", prune=PruneConfig(**_S_SCALED, text_guided="D"))
    base = reduced_model("sutrack_b224")
    z, x, box, text = _s_inputs()
    task = torch.tensor([int(Task.LANGUAGE), int(Task.RGB)])
    pruned.set_prune(pruned.prune.off())
    pruned.force_reorder = True  # tokens still sorted by score and scattered back
    with torch.inference_mode():
        a = pruned(x, z, z, box, box, text=text, task=task)
        b = base(x, z, z, box, box, text=text, task=task)
    for key in ("score_map", "size_map", "offset_map", "task_logits"):
        assert (getattr(a, key) - getattr(b, key)).abs().max() <= 1e-5, key


def test_text_guidance_changes_the_selection_only_for_language_samples():
    guided = reduced_model("s224", prune=PruneConfig(**_S_SCALED, text_guided="C-D-S"))
    plain = reduced_model("s224", prune=PruneConfig(**_S_SCALED))
    z, x, box, text = _s_inputs(seed=3)
    text = text * 20  # a strong text token so its attention row matters
    lang = torch.full((2,), int(Task.LANGUAGE))
    rgb = torch.full((2,), int(Task.RGB))
    with torch.inference_mode():
        g_lang = guided(x, z, z, box, box, text=text, task=lang)
        p_lang = plain(x, z, z, box, box, text=text, task=lang)
        g_rgb = guided(x, z, z, box, box, text=text, task=rgb)
        p_rgb = plain(x, z, z, box, box, text=text, task=rgb)
    assert not torch.equal(g_lang.search_keep_mask, p_lang.search_keep_mask)
    assert torch.equal(g_rgb.search_keep_mask, p_rgb.search_keep_mask)
    assert torch.equal(g_rgb.score_map, p_rgb.score_map)


@pytest.mark.parametrize("name, expected", [
    ("sutrack_b224", 89_647_702), ("sutrack_b384", 89_890_902), ("sutrack_t224", 28_145_974), ("sutrack_l384", 318_997_654)])
def test_fast_itpn_sizes_match_the_official_state_dict_totals(name, expected):
    """method.md 8.3: non-CLIP state-dict totals of the official builders (parameters and the
    decoder's BatchNorm buffers; T: C 384, stages 1/1, 12 blocks, one template; L: C 768, 2/2, 40)."""
    model = create_model(name)
    entries = {k: v for k, v in model.state_dict().items() if k != "text_encoder.no_prompt"}
    assert sum(v.numel() for v in entries.values()) == expected
    depth = model.config.stage_depths[0] + model.config.stage_depths[1] + 2 + model.config.depth
    assert f"encoder.body.blocks.{depth - 1}.gamma_2" in entries and f"encoder.body.blocks.{depth}.gamma_2" not in entries
    if name == "sutrack_t224":  # [CLS, SR(196), ST(49), TEXT]: no dynamic template
        assert expected_ledger(model_config(name)).final.visual == 196 + 49

"""OSTrack runs as OSTrack: golden outputs of the official code, reproduced by ``ostrack*`` variants.

``test/fixtures/ostrack_golden.npz`` was produced once by ``scripts/golden_ostrack.py`` with the
official OSTrack code (botaoye/OSTrack, commit in ``ostrack_golden.json``) on a reduced
configuration (width 32, depth 4, CE at blocks 1-3) with seeded random weights
(``ostrack{256,384}_reduced.safetensors``, written from the official model's state dict): the
official tracker class ran a short synthetic sequence. Here the same weights run in this
project's :class:`~utptrack_ros.tracker.Tracker` over the same frames.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from utptrack_ros.checkpoint import load_weights, read_checkpoint
from utptrack_ros.config import PruneConfig, TrackerConfig
from utptrack_ros.models import create_model, model_config
from utptrack_ros.preprocess import crop_geometry, crop_image, crops_to_tensor
from utptrack_ros.models.ledger import expected_ledger
from utptrack_ros.runtime import export_ostrack_shaped
from utptrack_ros.tracker import Tracker
from utptrack_ros.types import Box

FIXTURES = Path(__file__).parent / "fixtures"
PROVENANCE = json.loads((FIXTURES / "ostrack_golden.json").read_text())
REDUCED = PROVENANCE["reduced"]
CASES = {"ce256": (256, True), "noce256": (256, False), "ce384": (384, True)}
MAP_TOL = 1e-4  # score / size / offset maps and decoded (normalised) boxes
BOX_TOL_PX = 1e-3  # tracker boxes in image pixels (float32 crops mapped back by ~100 px)


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "ostrack_golden.npz") as data:
        return {k: data[k] for k in data.files}


def reduced_model(size: int, ce: bool, num_templates: int = 1):
    """The registered OSTrack variant at the fixture's reduced width / depth, official weights loaded strictly."""
    name = f"ostrack{size}" if ce else f"ostrack{size}_noce"
    layers = tuple((layer, ratio) for layer, ratio in zip(REDUCED["ce_loc"], REDUCED["ce_keep_ratio"]))
    prune = PruneConfig(ce=layers if ce else (), tta_mode="none")
    c = REDUCED["head_channels"]
    model = create_model(
        name,
        embed_dim=REDUCED["embed_dim"],
        depth=REDUCED["depth"],
        num_heads=REDUCED["num_heads"],
        head_channels=(c, c // 2, c // 4, c // 8),
        prune=prune,
        num_templates=num_templates,
    )
    report = load_weights(model, FIXTURES / f"ostrack{size}_reduced.safetensors")
    assert report.ok
    return model.eval()


def run_tracker(model, frames, init_box, search_factor):
    """Our tracker with the official OSTrack procedure; per tracked frame: its result and the network output."""
    config = TrackerConfig(search_factor=search_factor, update_interval=0, lost_threshold=0.0)
    tracker = Tracker(model, config=config)
    outputs = []
    forward = tracker.model.forward_search

    def recording(*args, **kwargs):
        out = forward(*args, **kwargs)
        outputs.append(out)
        return out

    tracker.model.forward_search = recording
    tracker.init(frames[0], init_box)
    results = [tracker.track(frame) for frame in frames[1:]]
    return results, outputs


def test_fixture_records_the_official_commit():
    assert PROVENANCE["official_repo"] == "botaoye/OSTrack"
    assert len(PROVENANCE["official_commit"]) == 40
    meta = read_checkpoint(FIXTURES / "ostrack256_reduced.safetensors").info
    assert meta["official_commit"] == PROVENANCE["official_commit"]


def test_official_builder_state_dict_loads_strictly_with_its_own_key_set():
    """The fixture weights are the official model's ``state_dict()`` (every key, MAE leftovers included)."""
    ckpt = read_checkpoint(FIXTURES / "ostrack256_reduced.safetensors")
    assert ckpt.source == "ostrack"
    assert {"backbone.cls_token", "backbone.pos_embed", "backbone.pos_embed_z", "backbone.pos_embed_x"} <= set(ckpt.state_dict)
    model = reduced_model(256, ce=True)
    assert set(model.state_dict()) == set(ckpt.state_dict)


@pytest.mark.parametrize("case", list(CASES))
def test_tracker_reproduces_the_official_ostrack_tracker(golden, case):
    size, ce = CASES[case]
    model = reduced_model(size, ce)
    factor = 4.0 if size == 256 else 5.0
    results, outputs = run_tracker(model, golden["frames"], golden["init_box"], factor)
    assert len(outputs) == len(golden[f"{case}.score_map"])
    for i, out in enumerate(outputs):
        for key in ("score_map", "size_map", "offset_map"):
            diff = np.abs(getattr(out, key).numpy() - golden[f"{case}.{key}"][i : i + 1]).max()
            assert diff <= MAP_TOL, f"frame {i + 1} {key}: max |diff| {diff:.2e}"
        assert np.abs(out.boxes.numpy()[0] - golden[f"{case}.decoded_box"][i]).max() <= MAP_TOL
        assert np.array_equal(out.search_keep_mask.numpy()[0], golden[f"{case}.search_keep_mask"][i])
    ours = np.array([r.box.as_xywh() for r in results])
    assert np.abs(ours - golden[f"{case}.tracker_box"]).max() <= BOX_TOL_PX
    # what runs is one template: the ledger counts no dynamic-template tokens, nothing is updated
    g, n_z = size // 16, (size // 32) ** 2
    assert results[0].ledger.input.visual == g * g + n_z and results[0].ledger.input.dt == 0
    assert results[0].ledger.final.sr == (89 if size == 256 else 199) if ce else g * g
    assert not any(r.template_updated for r in results)


def test_the_same_weights_as_two_templates_leave_the_official_outputs(golden):
    """The golden comparison can fail: embedding the first crop twice (UTPTrack-O's start) moves
    the maps far outside the tolerance."""
    model = reduced_model(256, ce=True, num_templates=2)
    _, outputs = run_tracker(model, golden["frames"][:2], golden["init_box"], 4.0)
    diff = max(np.abs(getattr(outputs[0], k).numpy() - golden[f"ce256.{k}"][:1]).max()
               for k in ("score_map", "size_map", "offset_map"))
    assert diff > 100 * MAP_TOL


def test_template_updates_never_run_for_a_single_template_model(golden):
    model = reduced_model(256, ce=True)
    tracker = Tracker(model, config=TrackerConfig(update_interval=1, update_threshold=0.0))
    tracker.init(golden["frames"][0], golden["init_box"])
    results = [tracker.track(f) for f in golden["frames"][1:4]]
    assert not any(r.template_updated for r in results)
    assert all(r.ledger.input.dt == 0 for r in results)


def test_registered_ostrack_variants_have_the_official_token_counts():
    for name, (n_in, n_out) in {"ostrack256": (320, 153), "ostrack384": (720, 343),
                                "ostrack256_noce": (320, 320), "ostrack384_noce": (720, 720)}.items():
        ledger = expected_ledger(model_config(name))
        assert (ledger.input.visual, ledger.final.visual) == (n_in, n_out), name
        assert all(lt.dt == 0 and lt.st == ledger.input.st for lt in ledger.layers)
    torch.manual_seed(0)
    model = create_model("ostrack256", embed_dim=48, num_heads=3, head_channels=(8, 8, 8, 8)).eval()
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]])
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 256, 256), torch.randn(1, 3, 128, 128), None, box, None)
    assert [lt.sr for lt in out.ledger.layers if lt.layer in (3, 6, 9)] == [180, 126, 89]
    assert out.ledger == expected_ledger(model.config)


def test_onnxruntime_tracker_reproduces_the_official_tracker(golden, tmp_path):
    """The exported single-template graphs (no dynamic-template input) in the tracker."""
    model = reduced_model(256, ce=True)
    config = TrackerConfig(search_factor=4.0, update_interval=0, lost_threshold=0.0)
    tracker = Tracker(model, config=config, backend="onnxruntime", onnx_cache=tmp_path)
    assert tracker.backend == "onnxruntime"
    (export_dir,) = (tmp_path / "onnx").iterdir()
    assert [i.name for i in onnx.load(str(export_dir / "templates.onnx")).graph.input] == ["static", "static_box"]
    assert [i.name for i in onnx.load(str(export_dir / "search.onnx")).graph.input] == ["search", "st", "st_fg"]
    tracker.init(golden["frames"][0], golden["init_box"])
    boxes = np.array([tracker.track(f).box.as_xywh() for f in golden["frames"][1:]])
    assert np.abs(boxes - golden["ce256.tracker_box"]).max() <= BOX_TOL_PX


_TRACKERVIT_CHECK = r"""
import sys, numpy as np, cv2
path, data = sys.argv[1], np.load(sys.argv[2])
net = cv2.dnn.readNet(path)
net.setInput(data["template"], "template")
net.setInput(data["search"], "search")
outs = net.forward(["output1", "output2", "output3"])
print(max(float(np.abs(o.reshape(data[k].shape) - data[k]).max()) for o, k in zip(outs, ("score", "size", "offset"))))
"""


def test_ostrack_shaped_export_feeds_the_one_template(golden, tmp_path):
    """``template``, ``search`` -> ``output1..3`` equals the official maps of the first frame."""

    model = reduced_model(256, ce=True)
    path = export_ostrack_shaped(model, tmp_path / "ostrack.onnx")
    frames, box = golden["frames"], Box.from_sequence(golden["init_box"])
    crop = lambda image, factor, size: crops_to_tensor(  # noqa: E731
        [crop_image(image, crop_geometry(box, factor, size))], None, 3, torch.device("cpu"), channels_last=False).numpy()
    template, search = crop(frames[0], 2.0, 128), crop(frames[1], 4.0, 256)
    data = tmp_path / "io.npz"
    np.savez(data, template=template, search=search, score=golden["ce256.score_map"][:1],
             size=golden["ce256.size_map"][:1], offset=golden["ce256.offset_map"][:1])
    proc = subprocess.run([sys.executable, "-c", _TRACKERVIT_CHECK, str(path), str(data)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) <= MAP_TOL

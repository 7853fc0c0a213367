"""ONNX export + onnxruntime backend: parity with the torch model on a random-init tiny model."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from utptrack_ros.config import PruneConfig
from utptrack_ros.errors import InputError
from utptrack_ros.models import UTPTrack, create_model, model_config
from utptrack_ros.models.examples import example_inputs
from utptrack_ros.runtime import OrtBackend, TorchBackend, export_onnx, export_ostrack_shaped

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    with torch.no_grad():
        # Random init gives near-uniform attention, so token scores tie up to float noise and
        # torch / onnxruntime may keep different tokens; peaky attention separates the scores.
        for block in model.backbone.blocks:
            block.attn.qkv.weight.normal_(0.0, 0.2)
        # non-trivial BatchNorm statistics, so the export must carry them
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    exported = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny")
    return model, exported


def _inputs(config, seed):
    x = example_inputs(config, seed=seed)
    box = np.array([[0.2, 0.3, 0.45, 0.35]], dtype=np.float32)  # off-centre: a non-trivial TTA prior
    return x.search.numpy(), (x.static.numpy(), x.dynamic.numpy(), box, box.copy())


def _assert_same(a, b):
    for name in ("score_map", "size_map", "offset_map"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype == np.float32, name
        assert np.abs(x - y).max() <= TOL, (name, float(np.abs(x - y).max()))
    assert a.search_keep_mask.dtype == b.search_keep_mask.dtype == np.bool_
    assert np.array_equal(a.search_keep_mask, b.search_keep_mask)
    assert a.ledger == b.ledger


@pytest.mark.parametrize("prompt", [False, True])
def test_onnxruntime_matches_torch(tiny_export, prompt):
    model, exported = tiny_export
    ort_backend, torch_backend = OrtBackend(exported.directory, threads=1), TorchBackend(model)
    search, template_args = _inputs(model.config, seed=5)
    t_ort, t_ref = ort_backend.embed_templates(*template_args), torch_backend.embed_templates(*template_args)
    for name in ("st", "dt", "st_fg"):
        assert np.abs(getattr(t_ort, name) - getattr(t_ref, name)).max() <= TOL, name
    text = np.random.default_rng(2).standard_normal((1, model.config.text_dim)).astype(np.float32) if prompt else None
    a, b = ort_backend.forward_search(search, t_ort, text), torch_backend.forward_search(search, t_ref, text)
    _assert_same(a, b)
    n_kept = b.ledger.final.sr
    assert int(a.search_keep_mask.sum()) == n_kept < a.search_keep_mask.shape[1]  # pruning really happened


def test_prompt_graph_differs_from_the_plain_one(tiny_export):
    """Text guidance (DTE for tiny) must change what is computed, or the prompt graph is pointless."""
    model, exported = tiny_export
    backend = OrtBackend(exported.directory, threads=1)
    search, template_args = _inputs(model.config, seed=6)
    tokens = backend.embed_templates(*template_args)
    text = np.random.default_rng(3).standard_normal((1, model.config.text_dim)).astype(np.float32)
    plain = backend.forward_search(search, tokens)
    guided = backend.forward_search(search, tokens, text)
    ref = TorchBackend(model).forward_search(search, tokens, text)
    assert np.abs(guided.score_map - ref.score_map).max() <= TOL
    assert np.abs(guided.score_map - plain.score_map).max() > 1e-3


def test_graphs_are_static_opset_17_with_the_config(tiny_export):
    model, exported = tiny_export
    proto = onnx.load(str(exported.search))
    assert {o.domain: o.version for o in proto.opset_import}.get("", None) == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["utptrack.model_config"])["name"] == "tiny"
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), value.name
    assert OrtBackend(exported.directory).config == model.config


def test_wrong_input_shape_is_a_clear_error(tiny_export):
    model, exported = tiny_export
    backend = OrtBackend(exported.directory, threads=1)
    search, template_args = _inputs(model.config, seed=7)
    tokens = backend.embed_templates(*template_args)
    with pytest.raises(InputError, match="search: expected shape"):
        backend.forward_search(search[:, :3], tokens)


def test_importing_the_package_does_not_import_onnxruntime():
    code = (
        "import sys, utptrack_ros, utptrack_ros.runtime, utptrack_ros.checkpoint, utptrack_ros.profiling\n"
        "from utptrack_ros.runtime import export_onnx, TorchBackend\n"
        "assert 'onnxruntime' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _small_o_model() -> UTPTrack:
    """UTPTrack-O layout (3-channel, 128/256 crops, no text) at dim 64 / depth 4, peaky attention."""

    torch.manual_seed(0)
    prune = PruneConfig(ce=((1, 0.7), (2, 0.7)), dte=((2, 0.7),), ste=((2, 0.7),), tta_mode="all")
    config = replace(model_config("o256"), embed_dim=64, depth=4, num_heads=4, head_channels=(32, 16, 16, 8),
                     legacy_vit_params=False, prune=prune)
    model = UTPTrack(config).eval()
    with torch.no_grad():
        for block in model.backbone.blocks:
            block.attn.qkv.weight.normal_(0.0, 0.3)
    return model


def test_batched_export_for_a_model_without_text(tmp_path):
    model = _small_o_model()
    export_onnx(model, tmp_path, batch=2)
    ours, ref = OrtBackend(tmp_path, threads=1), TorchBackend(model)
    g = np.random.default_rng(0)
    crops = g.standard_normal((2, 3, 128, 128)).astype(np.float32)
    search = g.standard_normal((2, 3, 256, 256)).astype(np.float32)
    boxes = np.array([[0.2, 0.3, 0.4, 0.3], [0.1, 0.1, 0.6, 0.7]], np.float32)
    a = ours.forward_search(search, ours.embed_templates(crops, crops[::-1].copy(), boxes, boxes))
    b = ref.forward_search(search, ref.embed_templates(crops, crops[::-1].copy(), boxes, boxes))
    assert a.score_map.shape == (2, 1, 16, 16)
    _assert_same(a, b)
    assert not np.array_equal(a.search_keep_mask[0], a.search_keep_mask[1])  # per-sample selection


_CV2_CHECK = r"""
import sys, numpy as np, cv2
path, data = sys.argv[1], np.load(sys.argv[2])
net = cv2.dnn.readNet(path)
net.setInput(data["template"], "template")
net.setInput(data["search"], "search")
outs = net.forward(["output1", "output2", "output3"])
worst = max(float(np.abs(o.reshape(data[k].shape) - data[k]).max()) for o, k in zip(outs, ("score", "size", "offset")))
params = cv2.TrackerVit_Params()
params.net = path
tracker = cv2.TrackerVit.create(params)
image = np.zeros((240, 320, 3), np.uint8)
image[100:140, 150:190] = (0, 0, 255)
tracker.init(image, (150, 100, 40, 40))
ok, box = tracker.update(image)
print(worst, len(box), tracker.getTrackingScore())
"""


def test_ostrack_shaped_export_runs_in_opencv_trackervit(tmp_path):
    """The single-graph OSTrack contract (template, search -> output1..3) that cv2.TrackerVit loads."""

    model = _small_o_model()
    path = export_ostrack_shaped(model, tmp_path / "ostrack.onnx")
    g = np.random.default_rng(0)
    template = g.standard_normal((1, 3, 128, 128)).astype(np.float32)
    search = g.standard_normal((1, 3, 256, 256)).astype(np.float32)
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]])
    with torch.no_grad():
        t = torch.from_numpy(template)
        tokens = model.embed_templates(t, t, box, box)
        ref = model.forward_search(torch.from_numpy(search), tokens)
    data = tmp_path / "io.npz"
    np.savez(data, template=template, search=search, score=ref.score_map.numpy(), size=ref.size_map.numpy(),
             offset=ref.offset_map.numpy())
    # own process: an OpenCV importer crash must fail this test, not kill the test session
    proc = subprocess.run([sys.executable, "-c", _CV2_CHECK, str(path), str(data)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst, n_box, score = proc.stdout.split()
    assert float(worst) <= TOL and int(n_box) == 4 and 0.0 <= float(score) <= 1.0

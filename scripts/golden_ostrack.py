"""Golden outputs of the official OSTrack code on a reduced configuration (run by hand, not in CI).

The official code is imported from a checkout of botaoye/OSTrack given on the command line; none
of it is copied here. The script builds the official network classes at reduced width/depth,
gives them seeded random weights, runs the official tracker class (``lib.test.tracker.ostrack``)
over a short synthetic sequence and saves, per frame, the score / size / offset maps, the
decoded box, the kept search tokens and the tracker's box. ``test/test_official_ostrack.py``
checks that this project's ``ostrack*`` variants reproduce them.

Reduced configuration (everything else as the released yamls ``vitb_256_mae_ce_32x4_ep300`` /
``vitb_384_mae_ce_32x4_ep300`` / ``vitb_256_mae_32x4_ep300``): ViT width 32, depth 4, 2 heads,
MLP ratio 4, CE at blocks 1, 2, 3 with keep 0.7 (the released 3/6/9 schedule's token counts:
256 -> 180 -> 126 -> 89), centre head with NUM_CHANNELS 32 (widths 32/16/8/4); crops 128/256
(factors 2/4) and 192/384 (factors 2/5). Weights are rounded to float16 before use, so the
float16 fixture holds exactly the values the official code ran with.

Setup (the official code's imports; nothing of it is needed by the project)::

    git -C <mirror of botaoye/OSTrack> archive 33b5e12 | tar -x -C /tmp/OSTrack
    pip install --target /tmp/gen_deps easydict tensorboardX
    PYTHONPATH=/tmp/gen_deps python scripts/golden_ostrack.py --official /tmp/OSTrack \
        --commit 33b5e12ad6b9b0a3a11ba5f17d0b4a3e31c7dd5a --out test/fixtures

``torch._six``, ``jpeg4py`` and ``visdom`` (imported by the official tracker modules, unused
here) are replaced by empty modules; ``.cuda()`` is the identity, so everything runs on the CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import types
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

DIM, DEPTH, HEADS, HEAD_CHANNELS = 32, 4, 2, 32
CE_LOC, CE_KEEP = [1, 2, 3], [0.7, 0.7, 0.7]
SEED = 20260511
FRAMES, HEIGHT, WIDTH = 7, 120, 160
INIT_BOX = (58.0, 40.0, 28.0, 34.0)

# case -> (yaml, CE?, search size)
CASES = {
    "ce256": ("vitb_256_mae_ce_32x4_ep300", True, 256),
    "noce256": ("vitb_256_mae_32x4_ep300", False, 256),
    "ce384": ("vitb_384_mae_ce_32x4_ep300", True, 384),
}


def _shim_imports() -> None:
    """Modules the official tracker imports but does not use here, and CPU-only ``.cuda()``."""
    warnings.filterwarnings("ignore")
    six = types.ModuleType("torch._six")
    six.string_classes, six.int_classes = (str, bytes), int
    visdom, server = types.ModuleType("visdom"), types.ModuleType("visdom.server")
    visdom.Visdom, visdom.server = object, server
    sys.modules.update({"torch._six": six, "visdom": visdom, "visdom.server": server,
                        "jpeg4py": types.ModuleType("jpeg4py")})
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]


def frames() -> np.ndarray:
    """A smooth synthetic sequence: a textured ellipse drifting over a colour gradient."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    out = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(FRAMES):
        bg = np.stack([60 + 80 * xx / WIDTH, 90 + 60 * yy / HEIGHT, 140 - 50 * xx / WIDTH], axis=-1)
        bg += 25 * np.sin(xx / 9.0 + t * 0.3)[..., None] * np.cos(yy / 13.0)[..., None]
        cx, cy = INIT_BOX[0] + INIT_BOX[2] / 2 + 3.0 * t, INIT_BOX[1] + INIT_BOX[3] / 2 + 1.5 * t
        inside = ((xx - cx) / 15.0) ** 2 + ((yy - cy) / 18.0) ** 2 <= 1.0
        stripes = 128 + 100 * np.sign(np.sin((xx - cx) / 2.5))
        bg[inside] = np.stack([stripes, 255 - stripes, np.full_like(stripes, 40)], axis=-1)[inside]
        out[t] = np.clip(bg, 0, 255).astype(np.uint8)
    return out


def _config(official: Path, yaml: str) -> object:
    from lib.config.ostrack.config import cfg, update_config_from_file

    update_config_from_file(str(official / "experiments" / "ostrack" / f"{yaml}.yaml"))
    cfg.MODEL.HEAD.NUM_CHANNELS = HEAD_CHANNELS
    if cfg.MODEL.BACKBONE.CE_LOC:
        cfg.MODEL.BACKBONE.CE_LOC, cfg.MODEL.BACKBONE.CE_KEEP_RATIO = CE_LOC, CE_KEEP
    return cfg


def _network(cfg: object, ce: bool) -> nn.Module:
    """The official OSTrack network at reduced width and depth (official classes, official
    ``finetune_track`` and ``build_box_head``)."""
    from lib.models.layers.head import build_box_head
    from lib.models.ostrack.ostrack import OSTrack
    from lib.models.ostrack.vit import VisionTransformer
    from lib.models.ostrack.vit_ce import VisionTransformerCE

    kwargs = dict(patch_size=16, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, drop_path_rate=0.1)
    if ce:
        backbone = VisionTransformerCE(ce_loc=cfg.MODEL.BACKBONE.CE_LOC, ce_keep_ratio=cfg.MODEL.BACKBONE.CE_KEEP_RATIO, **kwargs)
    else:
        backbone = VisionTransformer(**kwargs)
    backbone.finetune_track(cfg=cfg, patch_start_index=1)
    return OSTrack(backbone, build_box_head(cfg, DIM), aux_loss=False, head_type=cfg.MODEL.HEAD.TYPE)


def random_weights(names_shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with O(1) activations, rounded to float16 (buffers: BN statistics too)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in names_shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)))
            continue
        if name.endswith("running_var"):
            value = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            value = torch.randn(shape, generator=g) * 0.2
        elif len(shape) >= 2 and "pos_embed" not in name and "cls_token" not in name:
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif name.endswith("weight"):  # LayerNorm / BatchNorm scales
            value = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:  # biases, position embeddings, cls token
            value = torch.randn(shape, generator=g) * 0.3
        out[name] = value
    # keep predicted sizes near the target's share of the search crop (1 / search factor) so the
    # box neither explodes nor collapses over the sequence and every frame exercises the pipeline
    out["box_head.conv5_size.weight"] *= 0.3
    out["box_head.conv5_size.bias"] = torch.full((2,), math.log(0.25 / 0.75)) + 0.1 * torch.randn(2, generator=g)
    return {k: (v.half().float() if v.is_floating_point() else v) for k, v in out.items()}


def run_case(official: Path, case: str, weights: dict[str, torch.Tensor], video: np.ndarray) -> dict[str, np.ndarray]:
    """Run the official tracker over ``video``; per-frame network outputs and tracker boxes."""
    import lib.test.tracker.ostrack as tracker_module

    yaml, ce, search_size = CASES[case]
    cfg = _config(official, yaml)
    net = _network(cfg, ce)
    net.load_state_dict(weights, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "OSTrack_ep0300.pth.tar"
        torch.save({"net": weights}, ckpt)
        tracker_module.build_ostrack = lambda cfg, training=False: net  # the reduced network
        params = SimpleNamespace(
            cfg=cfg, checkpoint=str(ckpt), debug=0, save_all_boxes=False,
            template_factor=cfg.TEST.TEMPLATE_FACTOR, template_size=cfg.TEST.TEMPLATE_SIZE,
            search_factor=cfg.TEST.SEARCH_FACTOR, search_size=cfg.TEST.SEARCH_SIZE,
        )
        tracker = tracker_module.OSTrack(params, "golden")
    assert tracker.network is net and search_size == cfg.TEST.SEARCH_SIZE

    records: list[dict[str, torch.Tensor]] = []
    forward = net.forward

    def recording_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        records.append(out)
        return out

    net.forward = recording_forward
    tracker.initialize(video[0], {"init_bbox": list(INIT_BOX)})
    boxes, keep, decoded, windowed, margin = [], [], [], [], []
    feat = search_size // 16
    for image in video[1:]:
        boxes.append(tracker.track(image)["target_bbox"])
        out = records[-1]
        decoded.append(out["pred_boxes"].view(4))
        response = tracker.output_window * out["score_map"]
        windowed.append(net.box_head.cal_bbox(response, out["size_map"], out["offset_map"]).view(4))
        top2 = response.flatten().topk(2).values
        margin.append(float(top2[0] - top2[1]))
        mask = torch.ones(feat * feat, dtype=torch.bool)
        for removed in out.get("removed_indexes_s") or []:
            if removed is not None:
                mask[removed.view(-1).long()] = False
        keep.append(mask)
    stack = lambda key: torch.cat([r[key] for r in records]).detach().numpy()  # noqa: E731
    return {
        "score_map": stack("score_map"),
        "size_map": stack("size_map"),
        "offset_map": stack("offset_map"),
        "decoded_box": torch.stack(decoded).detach().numpy(),
        "windowed_box": torch.stack(windowed).detach().numpy(),
        "windowed_margin": np.array(margin),
        "search_keep_mask": torch.stack(keep).numpy(),
        "tracker_box": np.array(boxes, dtype=np.float64),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of botaoye/OSTrack")
    parser.add_argument("--commit", required=True, help="the checkout's commit (recorded in the fixture)")
    parser.add_argument("--out", type=Path, required=True, help="fixture directory")
    args = parser.parse_args()
    _shim_imports()
    sys.path.insert(0, str(args.official.resolve()))
    from safetensors.torch import save_file

    torch.manual_seed(0)
    video = frames()
    args.out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"frames": video, "init_box": np.array(INIT_BOX)}
    weight_sets: dict[int, dict[str, torch.Tensor]] = {}
    for case, (yaml, ce, size) in CASES.items():
        if size not in weight_sets:
            shapes = {k: v.shape for k, v in _network(_config(args.official, yaml), ce).state_dict().items()}
            weight_sets[size] = random_weights(shapes, SEED + size)
            meta = {"official_repo": "botaoye/OSTrack", "official_commit": args.commit,
                    "generator": "scripts/golden_ostrack.py", "seed": str(SEED + size)}
            half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weight_sets[size].items()}
            save_file(half, str(args.out / f"ostrack{size}_reduced.safetensors"), metadata=meta)
        result = run_case(args.official, case, weight_sets[size], video)
        for key, value in result.items():
            arrays[f"{case}.{key}"] = value
        print(f"{case}: min top-2 margin of the windowed map {result['windowed_margin'].min():.2e}, "
              f"kept search tokens {result['search_keep_mask'].sum(1).tolist()}")
    np.savez_compressed(args.out / "ostrack_golden.npz", **arrays)
    provenance = {
        "official_repo": "botaoye/OSTrack", "official_commit": args.commit,
        "generator": "scripts/golden_ostrack.py", "torch": torch.__version__,
        "reduced": {"embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS, "head_channels": HEAD_CHANNELS,
                    "ce_loc": CE_LOC, "ce_keep_ratio": CE_KEEP},
        "cases": {case: yaml for case, (yaml, _, _) in CASES.items()},
    }
    (args.out / "ostrack_golden.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

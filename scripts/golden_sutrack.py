"""Golden outputs of the official SUTrack code on a reduced configuration (run by hand, not in CI).

Like ``scripts/golden_ostrack.py``: the official code is imported from a checkout of
chenxin-dlut/SUTrack given on the command line (none of it is copied here). The script builds the
official Fast-iTPN (``lib.models.sutrack.fastitpn.Fast_iTPN``) at reduced width and depth inside
the official encoder / decoder / task-decoder / text-encoder modules, gives them seeded random
weights and runs the official tracker class (``lib.test.tracker.sutrack.SUTRACK``) over a short
synthetic sequence, RGB only (the tracker duplicates it to 6 channels) and RGB + a 3-channel
auxiliary image (fed as the 6-channel frame the official RGB-E readers build). Saved per frame:
score / size / offset maps, task logits, the decoded box and the tracker's box.

Reduced configuration (otherwise ``experiments/sutrack/sutrack_b224.yaml``): Fast-iTPN width 32,
stage depths 1 / 1, 4 attention blocks, 2 heads, MLP ratios 3, layer scale 0.1; crops 112 / 224
(factors 2 / 4), 2 templates, dynamic-template update every 3 frames above confidence 0.5 (the
released 25 / 0.7 would not fire in 6 frames); decoder NUM_CHANNELS 16; text feature width 16.

CLIP itself (ViT-L/14, downloaded by ``clip.load`` in the official code) is replaced by a small
seeded CLIP text tower with CLIP's interface and parameter names (this project's
``models.clip_text.ClipTextEncoder`` at width 64, one layer, a 500-token vocabulary, output 16,
with ``encode_text``); the official ``TextEncoder`` runs unchanged on its output. Its weights are
part of the saved state dict (``text_encoder.clip.*``, as in released files), so loading the
fixture computes the no-prompt feature (77 zero ids) the way loading a released file does.

Setup::

    git -C <mirror of chenxin-dlut/SUTrack> archive d65052d | tar -x -C /tmp/SUTrack
    pip install --target /tmp/gen_deps easydict
    PYTHONPATH=/tmp/gen_deps python scripts/golden_sutrack.py --official /tmp/SUTrack \
        --commit d65052d1ba3fcf55010e1fb3665ee6616c139a2c --out test/fixtures
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import types
import warnings
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

DIM, STAGES, DEPTH, HEADS, HEAD_CHANNELS, TEXT_DIM = 32, (1, 1), 4, 2, 16, 16
UPDATE_INTERVAL, UPDATE_THRESHOLD = 3, 0.5
SEED = 20260512
FRAMES, HEIGHT, WIDTH = 7, 120, 160
INIT_BOX = (58.0, 40.0, 28.0, 34.0)


def stand_in_clip() -> nn.Module:
    """A small CLIP text tower (seeded by the caller) with CLIP's ``encode_text``."""
    from utptrack_ros.models.clip_text import ClipTextEncoder

    class StandInClip(ClipTextEncoder):
        def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return self.encode_ids(ids).clone()

    clip = StandInClip(width=64, layers=1, heads=1, vocab_size=500, output_dim=TEXT_DIM)
    with torch.no_grad():
        for p in clip.parameters():  # O(1) features from the all-zero ids
            p.normal_(0.0, 0.5) if p.dim() > 1 else p.normal_(1.0, 0.1) if p.dim() == 1 else None
    return clip


def _shim_imports() -> None:
    warnings.filterwarnings("ignore")
    clip = types.ModuleType("clip")
    clip.load = lambda name, device="cpu": (stand_in_clip(), None)
    clip.tokenize = lambda text: torch.zeros(1, 77, dtype=torch.long)
    sys.modules["clip"] = clip
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]


def frames() -> tuple[np.ndarray, np.ndarray]:
    """RGB frames and 3-channel auxiliary frames (a blob that differs from the RGB target)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rgb = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    aux = np.empty_like(rgb)
    for t in range(FRAMES):
        bg = np.stack([60 + 80 * xx / WIDTH, 90 + 60 * yy / HEIGHT, 140 - 50 * xx / WIDTH], axis=-1)
        bg += 25 * np.sin(xx / 9.0 + t * 0.3)[..., None] * np.cos(yy / 13.0)[..., None]
        cx, cy = INIT_BOX[0] + INIT_BOX[2] / 2 + 3.0 * t, INIT_BOX[1] + INIT_BOX[3] / 2 + 1.5 * t
        inside = ((xx - cx) / 15.0) ** 2 + ((yy - cy) / 18.0) ** 2 <= 1.0
        stripes = 128 + 100 * np.sign(np.sin((xx - cx) / 2.5))
        bg[inside] = np.stack([stripes, 255 - stripes, np.full_like(stripes, 40)], axis=-1)[inside]
        rgb[t] = np.clip(bg, 0, 255).astype(np.uint8)
        heat = 200 * np.exp(-(((xx - cx) / 12.0) ** 2 + ((yy - cy) / 14.0) ** 2)) + 30 * np.cos(yy / 7.0 - t)
        aux[t] = np.clip(np.stack([heat, heat * 0.5 + 40, 255 - heat], axis=-1), 0, 255).astype(np.uint8)
    return rgb, aux


def _config(official: Path) -> object:
    from lib.config.sutrack.config import cfg, update_config_from_file

    update_config_from_file(str(official / "experiments" / "sutrack" / "sutrack_b224.yaml"))
    cfg.MODEL.DECODER.NUM_CHANNELS = HEAD_CHANNELS
    cfg.TEST.UPDATE_INTERVALS.DEFAULT = UPDATE_INTERVAL
    cfg.TEST.UPDATE_THRESHOLD.DEFAULT = UPDATE_THRESHOLD
    return cfg


def _network(cfg: object) -> nn.Module:
    """The official SUTrack modules around a reduced official Fast-iTPN."""
    from lib.models.sutrack.clip import build_textencoder
    from lib.models.sutrack.decoder import build_decoder
    from lib.models.sutrack.encoder import EncoderBase
    from lib.models.sutrack.fastitpn import Fast_iTPN
    from lib.models.sutrack.sutrack import SUTRACK
    from lib.models.sutrack.task_decoder import build_task_decoder

    body = Fast_iTPN(
        search_size=cfg.DATA.SEARCH.SIZE, template_size=cfg.DATA.TEMPLATE.SIZE, patch_size=16, in_chans=6,
        embed_dim=DIM, depth_stage1=STAGES[0], depth_stage2=STAGES[1], depth=DEPTH, num_heads=HEADS,
        bridge_mlp_ratio=3.0, mlp_ratio=3.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        convmlp=True, naiveswiglu=True, subln=True, drop_path_rate=0.1, init_values=0.1, use_mean_pooling=True,
        cls_token=cfg.MODEL.ENCODER.CLASS_TOKEN, token_type_indicate=cfg.MODEL.ENCODER.TOKEN_TYPE_INDICATE,
    )
    encoder = EncoderBase(body, True, [], DIM)
    return SUTRACK(
        build_textencoder(cfg, encoder), encoder, build_decoder(cfg, encoder), build_task_decoder(cfg, encoder),
        num_frames=cfg.DATA.SEARCH.NUMBER, num_template=cfg.DATA.TEMPLATE.NUMBER,
        decoder_type=cfg.MODEL.DECODER.TYPE, task_feature_type=cfg.MODEL.TASK_DECODER.FEATURE_TYPE,
    )


def random_weights(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights with O(1) activations, rounded to float16 (see golden_ostrack.random_weights)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)))
            continue
        if name.endswith("running_var"):
            value = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("running_mean"):
            value = torch.randn(shape, generator=g) * 0.2
        elif name.endswith(("gamma_1", "gamma_2")):
            value = 0.1 + 0.3 * torch.rand(shape, generator=g)
        elif len(shape) >= 2 and "pos_embed" not in name and "cls_token" not in name:
            value = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("weight"):
            value = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            value = torch.randn(shape, generator=g) * 0.3
        out[name] = value
    out["decoder.conv5_size.weight"] *= 0.3
    out["decoder.conv5_size.bias"] = torch.full((2,), math.log(0.25 / 0.75)) + 0.1 * torch.randn(2, generator=g)
    return {k: (v.half().float() if v.is_floating_point() else v) for k, v in out.items()}


def run_case(official: Path, weights: dict[str, torch.Tensor], video: np.ndarray) -> dict[str, np.ndarray]:
    """The official tracker over ``video`` ((T, H, W, 3) RGB or (T, H, W, 6) RGB | aux)."""
    import lib.test.tracker.sutrack as tracker_module

    cfg = _config(official)
    net = _network(cfg)
    net.load_state_dict(weights, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "SUTRACK_ep0180.pth.tar"
        torch.save({"net": weights}, ckpt)
        tracker_module.build_sutrack = lambda cfg: net
        params = SimpleNamespace(
            cfg=cfg, checkpoint=str(ckpt), debug=0,
            template_factor=cfg.TEST.TEMPLATE_FACTOR, template_size=cfg.TEST.TEMPLATE_SIZE,
            search_factor=cfg.TEST.SEARCH_FACTOR, search_size=cfg.TEST.SEARCH_SIZE,
        )
        tracker = tracker_module.SUTRACK(params, "golden")
    records: list[dict[str, torch.Tensor]] = []
    decoder_forward = net.forward_decoder
    task_forward = net.forward_task_decoder

    def recording_decoder(feature, gt_score_map=None):
        out = decoder_forward(feature)
        out["task_logits"] = task_forward(feature).view(1, -1)
        records.append(out)
        return out

    net.forward_decoder = recording_decoder
    tracker.initialize(video[0], {"init_bbox": list(INIT_BOX)})
    boxes, updated, windowed = [], [], []
    for image in video[1:]:
        n_before = sum(t is not None for t in tracker.template_list)
        first_dt = tracker.template_list[1]
        boxes.append(tracker.track(image)["target_bbox"])
        updated.append(tracker.template_list[1] is not first_dt)
        assert n_before == len(tracker.template_list) == 2
        out = records[-1]
        response = tracker.output_window * out["score_map"]
        windowed.append(net.decoder.cal_bbox(response, out["size_map"], out["offset_map"]).view(4))
    stack = lambda key: torch.cat([r[key] for r in records]).detach().numpy()  # noqa: E731
    return {
        "score_map": stack("score_map"),
        "size_map": stack("size_map"),
        "offset_map": stack("offset_map"),
        "task_logits": stack("task_logits"),
        "decoded_box": stack("pred_boxes").reshape(-1, 4),
        "windowed_box": torch.stack(windowed).detach().numpy(),
        "template_updated": np.array(updated),
        "tracker_box": np.array(boxes, dtype=np.float64),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of chenxin-dlut/SUTrack")
    parser.add_argument("--commit", required=True, help="the checkout's commit (recorded in the fixture)")
    parser.add_argument("--out", type=Path, required=True, help="fixture directory")
    args = parser.parse_args()
    _shim_imports()
    sys.path.insert(0, str(args.official.resolve()))
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this project: the stand-in CLIP
    rgb, aux = frames()
    cfg = _config(args.official)
    shapes = {k: v.shape for k, v in _network(cfg).state_dict().items() if not k.startswith("text_encoder.clip.")}
    weights = random_weights(shapes, SEED)
    torch.manual_seed(SEED)
    clip = stand_in_clip()
    weights.update({f"text_encoder.clip.{k}": v.detach().half().float() for k, v in clip.state_dict().items()})
    clip.load_state_dict({k[len("text_encoder.clip."):]: v for k, v in weights.items() if k.startswith("text_encoder.clip.")})
    no_prompt = clip.encode_text(torch.zeros(1, 77, dtype=torch.long))[0]
    arrays: dict[str, np.ndarray] = {"frames": rgb, "aux": aux, "init_box": np.array(INIT_BOX),
                                     "no_prompt_feature": no_prompt.numpy()}
    for case, video in (("rgb", rgb), ("rgbx", np.concatenate([rgb, aux], axis=-1))):
        result = run_case(args.official, weights, video)
        arrays.update({f"{case}.{k}": v for k, v in result.items()})
        print(f"{case}: template updates {result['template_updated'].tolist()}, "
              f"task logits range {result['task_logits'].min():.2f}..{result['task_logits'].max():.2f}")
    ours = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    meta = {"official_repo": "chenxin-dlut/SUTrack", "official_commit": args.commit,
            "generator": "scripts/golden_sutrack.py", "seed": str(SEED)}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(ours, str(args.out / "sutrack_reduced.safetensors"), metadata=meta)
    np.savez_compressed(args.out / "sutrack_golden.npz", **arrays)
    provenance = dict(meta, torch=torch.__version__, reduced={
        "embed_dim": DIM, "stage_depths": list(STAGES), "depth": DEPTH, "num_heads": HEADS,
        "head_channels": HEAD_CHANNELS, "text_dim": TEXT_DIM, "update_interval": UPDATE_INTERVAL,
        "update_threshold": UPDATE_THRESHOLD}, yaml="sutrack_b224")
    (args.out / "sutrack_golden.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Golden outputs of the official UTPTrack-S network, pruning on, on a reduced configuration (run by hand).

Like ``scripts/golden_sutrack.py`` (whose synthetic frames, seeded weights and stand-in CLIP it
reuses): the official code is imported from a checkout of the ``UTPTrack-S`` folder of
EIT-NLP/UTPTrack given on the command line; none of it is copied here. The script builds the
official ``lib.models.sutrackcmp.ceatettamma_fastitpn.CEATETTAMMA_Fast_iTPN`` (the released
``sutrackcmp/ceatettamma_b224`` encoder) at reduced width and depth inside the official
``EncoderBase`` / decoder / task decoder / text encoder, gives them seeded random weights and runs
the official encoder (``ce_template_mask`` from the official ``generate_mask_cond``, the soft TTA
mask built inside the encoder from the template boxes) and decoder on official crops
(``sample_target``, ``Preprocessor``, ``transform_image_to_crop``) of a synthetic sequence.

Reduced configuration: Fast-iTPN width 32, stage depths 1 / 1, 8 attention blocks, 2 heads; the
released schedule scaled from 24 to 8 blocks: CE 0.7 at stage-3 blocks 2, 4, 6 (released 6, 12,
18), DTE and STE 0.6 at 3, 5, 7 (released 9, 15, 21), so the token counts per pruning layer are
the released S224 ones (search 196 -> 138 -> 97 -> 68, templates 49 -> 30 -> 18 -> 11);
``TOKEN_TYPE_AWARE_PRUNING='SOFT_ALL_FOREGROUND'``, ``MULTIMODAL_AWARE_PRUNING=True``.

Cases (each: 6 search frames; the dynamic template is the static crop until frame 4, then the
crop of frame 3): ``language`` (task index 1, a prompt, text guidance on DTE as S224's ``'D'``),
``event`` (task index 4, RGB | auxiliary 6-channel crops, no prompt: 77 zero ids; guidance off),
``language_ste`` (target ``'S'``, as S384) and ``language_all`` (``'C-D-S'``). Saved per frame:
the crops, template boxes and text feature fed in, score / size / offset maps, task logits, the
decoded box, and per pruning layer the official global indices of the kept tokens (search, static
and dynamic template) in their kept (score) order.

Setup (the fetchable snapshot of EIT-NLP/UTPTrack may lack ``UTPTrack-S/``; its files at the
commit below are the reference; folders it shares with chenxin-dlut/SUTrack, e.g. ``lib/utils``,
``lib/test``, ``lib/models/sutrack``, ``experiments/sutrack``, come from SUTrack)::

    pip install --target /tmp/gen_deps easydict
    PYTHONPATH=/tmp/gen_deps python scripts/golden_utptrack_s.py --official <UTPTrack>/UTPTrack-S \
        --commit 128ae8248ea6c848407f37fcbfc4022a5d55b42e --out test/fixtures
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_sutrack import (  # noqa: E402  (the shared synthetic scene, weights and stand-in CLIP)
    HEAD_CHANNELS, HEADS, INIT_BOX, STAGES, TEXT_DIM, UPDATE_INTERVAL, _shim_imports, frames,
    random_weights, stand_in_clip,
)

DIM, DEPTH = 32, 8
CE_LOC, TE_LOC = (2, 4, 6), (3, 5, 7)
CE_RATIO, TE_RATIO = 0.7, 0.6
SEED = 20260605
DT_FRAME = 3  # the dynamic template is this frame's crop from frame DT_FRAME + 1 on
PROMPT_IDS = (7, 311, 42, 128, 499, 3)  # stand-in vocabulary (500 ids); 499 = the "EOT" (largest id)
PROMPT = "the striped target"  # tokenised to PROMPT_IDS (the stand-in CLIP's vocabulary)
CASES = (("language", 1, "D"), ("event", 4, "D"), ("language_ste", 1, "S"), ("language_all", 1, "C-D-S"))
TRACKER_CASES = (("language", "tnl2k"), ("event", "visevent"))  # official dataset names -> task 1 / 4
INPUTS = {"language": "rgb", "event": "rgbx", "language_ste": "rgb", "language_all": "rgb"}
UPDATE_THRESHOLD = 0.25  # the windowed confidences of these weights are ~0.27-0.30
MOTION = (3.0, 1.5)  # px per frame, as golden_sutrack.frames()


def true_box(t: int) -> list[float]:
    x, y, w, h = INIT_BOX
    return [x + MOTION[0] * t, y + MOTION[1] * t, w, h]


def _config(official: Path) -> object:
    from lib.config.sutrack.config import cfg, update_config_from_file

    update_config_from_file(str(official / "experiments" / "sutrack" / "sutrack_b224.yaml"))
    cfg.MODEL.DECODER.NUM_CHANNELS = HEAD_CHANNELS
    return cfg


def _network(cfg: object, target: str) -> nn.Module:
    """The official UTPTrack-S encoder (reduced) in the official SUTrack-family modules."""
    from lib.models.sutrackcmp.ceatettamma_fastitpn import CEATETTAMMA_Fast_iTPN
    from lib.models.sutrackcmp.clip import build_textencoder
    from lib.models.sutrackcmp.decoder import build_decoder
    from lib.models.sutrackcmp.encoder import EncoderBase
    from lib.models.sutrackcmp.sutrackcmp import SUTRACKCMP
    from lib.models.sutrackcmp.task_decoder import build_task_decoder

    body = CEATETTAMMA_Fast_iTPN(
        search_size=cfg.DATA.SEARCH.SIZE, template_size=cfg.DATA.TEMPLATE.SIZE, patch_size=16, in_chans=6,
        embed_dim=DIM, depth_stage1=STAGES[0], depth_stage2=STAGES[1], depth=DEPTH, num_heads=HEADS,
        bridge_mlp_ratio=3.0, mlp_ratio=3.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        convmlp=True, naiveswiglu=True, subln=True, drop_path_rate=0.1, init_values=0.1, use_mean_pooling=True,
        cls_token=True, token_type_indicate=True,
        ce_loc=list(CE_LOC), ce_keep_ratio=[CE_RATIO] * 3, dte_loc=list(TE_LOC), dte_keep_ratio=[TE_RATIO] * 3,
        ste_loc=list(TE_LOC), ste_keep_ratio=[TE_RATIO] * 3, token_type_aware_pruing="SOFT_ALL_FOREGROUND",
        multimodal_aware_pruning=True, multimodal_aware_pruning_target=target,
    )
    body.num_frames, body.num_template = 1, 2
    encoder = EncoderBase(body, True, [], DIM)
    return SUTRACKCMP(
        build_textencoder(cfg, encoder), encoder, build_decoder(cfg, encoder), build_task_decoder(cfg, encoder),
        num_frames=1, num_template=2, decoder_type=cfg.MODEL.DECODER.TYPE,
        task_feature_type=cfg.MODEL.TASK_DECODER.FEATURE_TYPE,
    )


def _crops(video: np.ndarray) -> dict[str, np.ndarray]:
    """Official uint8 crops and template boxes of tracked frames 1..T-1: the search region around
    the previous frame's true box; the static template at frame 0, the dynamic one at DT_FRAME."""
    from lib.test.tracker.utils import sample_target, transform_image_to_crop

    def template(t: int) -> tuple[np.ndarray, np.ndarray]:
        box = true_box(t)
        crop, factor = sample_target(video[t], box, 2.0, output_sz=112)
        anno = transform_image_to_crop(torch.tensor(box), torch.tensor(box), factor, torch.Tensor([112, 112]), normalize=True)
        return crop, anno.float().numpy()

    (static, static_box), (dynamic, dynamic_box) = template(0), template(DT_FRAME)
    search = np.stack([sample_target(video[t], true_box(t - 1), 4.0, output_sz=224)[0] for t in range(1, len(video))])
    return {"search": search, "static": static, "dynamic": dynamic, "static_box": static_box, "dynamic_box": dynamic_box}


def record_kept(net: nn.Module) -> list[dict]:
    """After every stage-3 block: the official global indices of the kept tokens (score order)."""
    kept: list[dict] = []
    for i, blk in enumerate(net.encoder.body.blocks[-DEPTH:]):
        def recording(*args, _forward=blk.forward, _i=i, **kwargs):
            out = _forward(*args, **kwargs)
            kept.append({"layer": _i, "sz": out[1].clone(), "dz": out[2].clone(), "x": out[5].clone()})
            return out

        blk.forward = recording
    return kept


def kept_arrays(per_frame: list[list[dict]]) -> dict[str, np.ndarray]:
    def stack(layer: int, comp: str) -> np.ndarray:
        return torch.cat([next(k[comp] for k in kept if k["layer"] == layer) for kept in per_frame]).numpy()

    out = {f"kept_sr_{layer}": stack(layer, "x") for layer in CE_LOC}
    for layer in TE_LOC:
        out[f"kept_st_{layer}"] = stack(layer, "sz")
        out[f"kept_dt_{layer}"] = stack(layer, "dz") - (112 // 16) ** 2  # the official DT indices count after ST's 49
    return out


def run_network(net: nn.Module, crops: dict[str, np.ndarray], text_ids: torch.Tensor, task: int) -> dict:
    """The official encoder + decoder per frame, fed as the official tracker feeds them."""
    from lib.models.sutrackcmp.compression.ce import generate_mask_cond
    from lib.test.tracker.utils import Preprocessor

    pre = Preprocessor()

    def tensor(crop: np.ndarray) -> torch.Tensor:
        image = pre.process(crop)
        return image if image.shape[1] == 6 else torch.cat([image, image], dim=1)

    cfg = SimpleNamespace(DATA=SimpleNamespace(TEMPLATE=SimpleNamespace(SIZE=112)),
                          MODEL=SimpleNamespace(ENCODER=SimpleNamespace(STRIDE=16)))
    mask = generate_mask_cond(cfg, 1, torch.device("cpu")).repeat(1, 2)  # as the official tracker
    kept = record_kept(net)
    static, dynamic = tensor(crops["static"]), tensor(crops["dynamic"])
    boxes = [torch.from_numpy(crops[k]).unsqueeze(0) for k in ("static_box", "dynamic_box")]
    records, per_frame = [], []
    with torch.no_grad():
        text_src = net.forward_textencoder(text_ids)
        for t, search in enumerate(crops["search"], start=1):
            kept.clear()
            later = t > DT_FRAME
            xz, _ = net.forward_encoder([static, dynamic if later else static], [tensor(search)],
                                        [boxes[0], boxes[1] if later else boxes[0]], text_src, torch.tensor([task]),
                                        ce_template_mask=mask)
            out = net.forward_decoder(xz)
            out["task_logits"] = net.forward_task_decoder(xz).view(1, -1)
            records.append(out)
            per_frame.append(list(kept))
        text_feature = net.text_encoder.clip.encode_text(text_ids).float()
    return {
        "text_feature": text_feature.numpy(),
        **{key: torch.cat([r[key] for r in records]).numpy() for key in ("score_map", "size_map", "offset_map", "task_logits")},
        "decoded_box": torch.cat([r["pred_boxes"] for r in records]).reshape(-1, 4).numpy(),
        **kept_arrays(per_frame),
    }


def run_tracker(official: Path, net: nn.Module, weights: dict, video: np.ndarray, dataset: str) -> dict:
    """The official UTPTrack-S tracker (``lib.test.tracker.sutrackcmp``) over the whole video."""
    import lib.test.tracker.sutrackcmp as tracker_module

    cfg = _config(official)
    cfg.MODEL.ENCODER.CE_LOC = list(CE_LOC)
    cfg.TEST.UPDATE_INTERVALS.DEFAULT = UPDATE_INTERVAL
    cfg.TEST.UPDATE_THRESHOLD.DEFAULT = UPDATE_THRESHOLD
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "SUTRACKCMP_ep0180.pth.tar"
        torch.save({"net": weights}, ckpt)
        tracker_module.build_sutrackcmp = lambda cfg: net
        params = SimpleNamespace(cfg=cfg, checkpoint=str(ckpt), debug=0, template_factor=cfg.TEST.TEMPLATE_FACTOR,
                                 template_size=cfg.TEST.TEMPLATE_SIZE, search_factor=cfg.TEST.SEARCH_FACTOR,
                                 search_size=cfg.TEST.SEARCH_SIZE)
        tracker = tracker_module.SUTRACKCMP(params, dataset)
    records = []
    decoder_forward = net.forward_decoder
    net.forward_decoder = lambda feature, gt_score_map=None: records.append(decoder_forward(feature)) or records[-1]
    kept = record_kept(net)
    tracker.initialize(video[0], {"init_bbox": list(INIT_BOX), "init_nlp": [PROMPT] * len(video)})
    boxes, updated, per_frame = [], [], []
    for image in video[1:]:
        kept.clear()
        first_dt = tracker.template_list[1]
        boxes.append(tracker.track(image, {"init_nlp": [PROMPT] * len(video)})["target_bbox"])
        updated.append(tracker.template_list[1] is not first_dt)
        per_frame.append(list(kept))
    net.forward_decoder = decoder_forward
    return {
        "score_map": torch.cat([r["score_map"] for r in records]).numpy(),
        "tracker_box": np.array(boxes, dtype=np.float64),
        "template_updated": np.array(updated),
        **kept_arrays(per_frame),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of EIT-NLP/UTPTrack's UTPTrack-S folder")
    parser.add_argument("--commit", required=True, help="the checkout's commit (recorded in the fixture)")
    parser.add_argument("--out", type=Path, required=True, help="fixture directory")
    args = parser.parse_args()
    _shim_imports()
    prompt = torch.zeros(1, 77, dtype=torch.long)
    prompt[0, : len(PROMPT_IDS)] = torch.tensor(PROMPT_IDS)
    sys.modules["clip"].tokenize = lambda text: prompt.clone() if text == PROMPT else torch.zeros(1, 77, dtype=torch.long)
    sys.path.insert(0, str(args.official.resolve()))
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this project: the stand-in CLIP
    rgb, aux = frames()
    videos = {"rgb": rgb, "rgbx": np.concatenate([rgb, aux], axis=-1)}
    cfg = _config(args.official)
    shapes = {k: v.shape for k, v in _network(cfg, "D").state_dict().items() if not k.startswith("text_encoder.clip.")}
    weights = random_weights(shapes, SEED)
    torch.manual_seed(SEED)
    clip = stand_in_clip()
    weights.update({f"text_encoder.clip.{k}": v.detach().half().float() for k, v in clip.state_dict().items()})
    arrays: dict[str, np.ndarray] = {"frames": rgb, "aux": aux, "init_box": np.array(INIT_BOX), "prompt_ids": prompt.numpy()}
    crops = {name: _crops(video) for name, video in videos.items()}
    arrays.update({f"rgb.{k}": v for k, v in crops["rgb"].items()})
    for key in ("search", "static", "dynamic"):  # RGB | aux crops: the RGB half is the RGB crop
        assert np.array_equal(crops["rgbx"][key][..., :3], crops["rgb"][key])
        arrays[f"aux.{key}"] = crops["rgbx"][key][..., 3:]
    for case, task, target in CASES:
        net = _network(cfg, target).eval()
        net.load_state_dict(weights, strict=True)
        result = run_network(net, crops[INPUTS[case]], prompt if task == 1 else torch.zeros(1, 77, dtype=torch.long), task)
        arrays.update({f"{case}.{k}": v for k, v in result.items()})
        print(f"{case}: kept search at block {CE_LOC[-1]} (frame 1) {result[f'kept_sr_{CE_LOC[-1]}'][0][:8].tolist()}..., "
              f"dt at {TE_LOC[0]} {result[f'kept_dt_{TE_LOC[0]}'][0][:8].tolist()}...")
    for case, dataset in TRACKER_CASES:
        net = _network(cfg, "D").eval()
        result = run_tracker(args.official, net, weights, videos[INPUTS[case]], dataset)
        arrays.update({f"tracker_{case}.{k}": v for k, v in result.items()})
        print(f"tracker {case} ({dataset}): template updates {result['template_updated'].tolist()}")
    ours = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    meta = {"official_repo": "EIT-NLP/UTPTrack", "official_folder": "UTPTrack-S", "official_commit": args.commit,
            "generator": "scripts/golden_utptrack_s.py", "seed": str(SEED)}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(ours, str(args.out / "utptrack_s_reduced.safetensors"), metadata=meta)
    np.savez_compressed(args.out / "utptrack_s_golden.npz", **arrays)
    provenance = dict(meta, torch=torch.__version__, yaml="sutrackcmp/ceatettamma_b224", reduced={
        "embed_dim": DIM, "stage_depths": list(STAGES), "depth": DEPTH, "num_heads": HEADS,
        "head_channels": HEAD_CHANNELS, "text_dim": TEXT_DIM, "ce": [[i, CE_RATIO] for i in CE_LOC],
        "dte": [[i, TE_RATIO] for i in TE_LOC], "ste": [[i, TE_RATIO] for i in TE_LOC], "tta_mode": "soft",
        "dt_frame": DT_FRAME, "prompt": PROMPT, "update_interval": UPDATE_INTERVAL,
        "update_threshold": UPDATE_THRESHOLD,
        "cases": [{"name": c, "task_index": t, "text_guided": g, "inputs": INPUTS[c]} for c, t, g in CASES],
        "tracker_cases": [{"name": c, "dataset": d, "text_guided": "D", "inputs": INPUTS[c]} for c, d in TRACKER_CASES]})
    (args.out / "utptrack_s_golden.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``utptrack convert``: an official training checkpoint -> a weights-only project file.

The released files are full training states (method.md 8.1): UTPTrack-O's ``OSTrackCMP_ep0300``
is 1.1 GB (the weights plus AdamW moments and pickled ``settings`` / ``stats`` objects),
UTPTrack-S's 2 GB. :func:`convert_checkpoint` reads one without running its pickled code
(``checkpoint.read_checkpoint``), picks the variant from the file's own content
(``official.choose_variant``, or ``name``), loads the weights strictly into that variant and
writes them with its :class:`~utptrack_ros.config.ModelConfig` as a safetensors file
(``checkpoint.save_model``): 370 MB for a ViT-B model, 185 MB with ``--half``. The output loads
everywhere a weights path is accepted (``checkpoint.load_model``, ``Tracker.from_pretrained``,
the node's ``model.weights``) as the same variant, without the official metadata.

SUTrack / UTPTrack-S files keep the tracking network and the no-prompt text feature computed
from their CLIP weights; the CLIP model itself (text and visual towers, 1.7 GB in float32) is
not written, so language prompts need the CLIP text weights from the original file.

``--half`` stores float16 values (loaded back into float32 models): half the size, every
weight rounded to float16.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

from .checkpoint import SOURCE_OSTRACK, SOURCE_SUTRACK, load_model, read_checkpoint, save_model
from .errors import CheckpointError
from .official import choose_s_variant, choose_variant

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# container fields worth keeping as provenance in the converted file
_PROVENANCE_KEYS = ("epoch", "net_type", "actor_type", "settings.script_name", "settings.config_name",
                    "settings.project_path")


def convert_checkpoint(src: PathLike, dst: PathLike, name: Optional[str] = None, half: bool = False) -> dict[str, Any]:
    """Write ``src``'s weights and model config to ``dst`` (safetensors); see the module docstring.

    Args:
        src: official ``.pth.tar`` training checkpoint (or any file ``load_model`` reads).
        dst: output path (refused if it is ``src``).
        name: registered variant to build instead of the one the file's content selects.
        half: store float16 values.
    Returns:
        The provenance stored in the output's metadata (``converted_from``, ``variant``, ...).
    Raises:
        CheckpointError: unreadable / unsafe input, weights that do not load strictly.
    """
    src_path, dst_path = Path(src), Path(dst)
    if dst_path.exists() and src_path.exists() and dst_path.resolve() == src_path.resolve():
        raise CheckpointError(f"{dst_path}: the output would overwrite the input")
    ckpt = read_checkpoint(src_path)
    provenance: dict[str, Any] = {"converted_from": src_path.name, "source": ckpt.source}
    provenance.update({k: ckpt.info[k] for k in _PROVENANCE_KEYS if isinstance(ckpt.info.get(k), (str, int, float))})
    if name is None and ckpt.source in (SOURCE_OSTRACK, SOURCE_SUTRACK):
        choose = choose_variant if ckpt.source == SOURCE_OSTRACK else choose_s_variant
        choice = choose(ckpt.state_dict, ckpt.info)
        name = choice.name
        provenance["variant_evidence"] = choice.evidence
        if choice.assumed:
            provenance["variant_assumed"] = choice.assumed
    del ckpt  # the memory-mapped input is read again, strictly, by load_model
    model = load_model(src_path, name=name)
    provenance["variant"] = model.config.name
    if half:
        model = model.half()
        provenance["dtype"] = "float16"
    save_model(model, dst_path, extra=provenance)
    log.info("converted %s -> %s (%s, %s)", src_path, dst_path, model.config.name, "float16" if half else "float32")
    return provenance


# -- CLI verb ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``utptrack convert``."""
    parser.add_argument("src", type=Path, help="official training checkpoint (.pth.tar) or another weights file")
    parser.add_argument("dst", type=Path, help="output .safetensors file (weights + model config)")
    parser.add_argument("--config", "--model", dest="model", default=None,
                        help="registered variant to build (default: chosen from the file's content)")
    parser.add_argument("--half", action="store_true", help="store float16 values (half the size)")


def run(args: argparse.Namespace) -> int:
    """Execute ``utptrack convert``: print what was written."""
    provenance = convert_checkpoint(args.src, args.dst, name=args.model, half=args.half)
    size_in, size_out = args.src.stat().st_size, args.dst.stat().st_size
    print(f"wrote {args.dst} ({size_out / 1e6:.1f} MB, from {size_in / 1e6:.1f} MB): variant {provenance['variant']}"
          + (f" ({provenance['variant_evidence']})" if "variant_evidence" in provenance else ""))
    if "variant_assumed" in provenance:
        print(f"note: {provenance['variant_assumed']}; pass --config NAME if that is wrong")
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack convert`
    from utptrack_ros.cli import main

    sys.exit(main(["convert", *sys.argv[1:]]))

"""Which registered variant an official OSTrack-layout weights file holds, from the file's content.

OSTrack-256/384 (CE and no-CE configs) and UTPTrack-O write the same state-dict keys and shapes
(method.md 8.2), so the weights alone tell only the grid size (``backbone.pos_embed_x``: 256 or
576 search tokens). The official trainers also store who wrote the file (method.md 8.1;
``lib/train/trainers/base_trainer.py`` of both repositories):

* ``net_type``: ``type(net).__name__``: ``OSTrack`` or ``OSTrackCMP`` (UTPTrack-O);
* ``settings`` (a pickled ``lib.train.admin.settings.Settings``, read as an inert stub by
  ``checkpoint.py``): ``script_name`` (``ostrack`` / ``ostrackcmp``), ``config_name`` (the
  experiment yaml, e.g. ``vitb_256_mae_ce_32x4_ep300``, ``ceatetta_256_r7_all``) and
  ``output_sz`` (template / search crop sizes).

:func:`choose_variant` decides, in this order: the family from ``net_type`` or
``settings.script_name`` (neither: OSTrack, the layout's own family, with a warning), the size
from ``pos_embed_x`` (checked against ``settings.output_sz`` when present), and the schedule
from ``config_name``: OSTrack configs with ``_ce`` run CE (``ostrack256``), the others none
(``ostrack256_noce``); UTPTrack-O configs run the released CTEM schedule (``o256``). A config
name this module does not know is logged with the assumption made; ``name=`` overrides all of it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from .errors import CheckpointError
from .models.clip_text import ClipTextEncoder

log = logging.getLogger(__name__)

FAMILY_OSTRACK = "ostrack"
FAMILY_UTPTRACK_O = "utptrack-o"

# net_type (the network class name) and settings.script_name -> family
_NET_TYPES = {"OSTrack": FAMILY_OSTRACK, "OSTrackCMP": FAMILY_UTPTRACK_O}
_SCRIPTS = {"ostrack": FAMILY_OSTRACK, "ostrackcmp": FAMILY_UTPTRACK_O}

# the released experiment yamls (OSTrack @ 33b5e12 experiments/ostrack; UTPTrack-O per method.md 1)
OSTRACK_CE_CONFIGS = (
    "vitb_256_mae_ce_32x4_ep300",
    "vitb_256_mae_ce_32x4_got10k_ep100",
    "vitb_384_mae_ce_32x4_ep300",
    "vitb_384_mae_ce_32x4_got10k_ep100",
)
OSTRACK_NOCE_CONFIGS = ("vitb_256_mae_32x4_ep300", "vitb_384_mae_32x4_ep300")
UTPTRACK_O_CONFIGS = ("ceatetta_256_r7_all", "utptrack_384_r7_all")

_SIZES = {256: 256, 576: 384}  # search tokens in pos_embed_x -> search crop size


@dataclass(frozen=True)
class VariantChoice:
    """The registered variant for a file and why.

    Attributes:
        name: registered variant (``ostrack256``, ``ostrack384_noce``, ``o256``, ...).
        family: ``ostrack`` or ``utptrack-o``.
        evidence: what decided it, e.g. ``net_type=OSTrack, config_name=vitb_256_mae_ce_32x4_ep300``.
        assumed: what had to be assumed because the file does not say (empty when nothing was).
    """

    name: str
    family: str
    evidence: str
    assumed: str = ""


def _text(info: Mapping[str, Any], key: str) -> Optional[str]:
    value = info.get(key)
    return value if isinstance(value, str) and value else None


def _family(info: Mapping[str, Any]) -> tuple[Optional[str], list[str]]:
    evidence = []
    families = set()
    net_type = _text(info, "net_type")
    if net_type is not None:
        evidence.append(f"net_type={net_type}")
        if net_type in _NET_TYPES:
            families.add(_NET_TYPES[net_type])
    script = _text(info, "settings.script_name")
    if script is not None:
        evidence.append(f"script_name={script}")
        if script in _SCRIPTS:
            families.add(_SCRIPTS[script])
    if len(families) > 1:
        raise CheckpointError(f"the file's metadata contradicts itself ({', '.join(evidence)}); pass name=")
    return (families.pop() if families else None), evidence


def _search_size(state_dict: Mapping[str, Tensor], info: Mapping[str, Any]) -> int:
    pos = state_dict.get("backbone.pos_embed_x")
    if pos is None or pos.dim() != 3 or int(pos.shape[1]) not in _SIZES:
        shape = None if pos is None else tuple(pos.shape)
        raise CheckpointError(f"backbone.pos_embed_x {shape} matches no registered variant (256 or 576 tokens); pass name=")
    size = _SIZES[int(pos.shape[1])]
    output_sz = info.get("settings.output_sz")
    if isinstance(output_sz, Mapping) and output_sz.get("search") not in (None, size):
        raise CheckpointError(
            f"settings.output_sz says search {output_sz.get('search')} but pos_embed_x has {int(pos.shape[1])} tokens"
        )
    return size


def choose_variant(state_dict: Mapping[str, Tensor], info: Mapping[str, Any]) -> VariantChoice:
    """The registered variant of an OSTrack-layout state dict (module docstring).

    Args:
        state_dict: ``backbone.*`` / ``box_head.*`` weights.
        info: the container's scalar fields and ``settings.*`` fields (``Checkpoint.info``).
    Raises:
        CheckpointError: an unknown grid size, or metadata that contradicts itself.
    """
    size = _search_size(state_dict, info)
    family, evidence = _family(info)
    config = _text(info, "settings.config_name")
    if config is not None:
        evidence.append(f"config_name={config}")
    evidence.append(f"pos_embed_x={size // 16}x{size // 16}")
    assumed = ""
    if family is None:
        family = FAMILY_OSTRACK
        assumed = "no net_type / settings in the file: assumed OSTrack (its key layout)"
    if family == FAMILY_UTPTRACK_O:
        name = f"o{size}"
        if config not in UTPTRACK_O_CONFIGS:
            assumed = f"config {config!r} is not a released UTPTrack-O config: assumed the released CTEM schedule"
    elif config in OSTRACK_NOCE_CONFIGS:
        name = f"ostrack{size}_noce"
    else:
        name = f"ostrack{size}"
        if config not in OSTRACK_CE_CONFIGS:
            what = "no config name" if config is None else f"config {config!r} is not a released OSTrack config"
            assumed = "; ".join(a for a in (assumed, f"{what}: assumed CE (the released OSTrack models)") if a)
    choice = VariantChoice(name, family, ", ".join(evidence), assumed)
    if assumed:
        log.warning("weights run as %r (%s); %s. Pass name= (e.g. %s) if that is wrong",
                    name, choice.evidence, assumed, _alternatives(name))
    else:
        log.info("weights run as %r (%s)", name, choice.evidence)
    return choice


def _alternatives(name: str) -> str:
    size = "384" if "384" in name else "256"
    options = [f"ostrack{size}", f"ostrack{size}_noce", f"o{size}"]
    return " / ".join(o for o in options if o != name)


# -- the S family (SUTrack / UTPTrack-S) ---------------------------------------------------------

FAMILY_SUTRACK = "sutrack"
FAMILY_UTPTRACK_S = "utptrack-s"
_S_NET_TYPES = {"SUTRACK": FAMILY_SUTRACK, "SUTRACKCMP": FAMILY_UTPTRACK_S}
_S_SCRIPTS = {"sutrack": FAMILY_SUTRACK, "sutrackcmp": FAMILY_UTPTRACK_S}
UTPTRACK_S_CONFIGS = ("ceatettamma_b224", "ceatettamma_b384")
_S_SIZES = {196 + 49: 224, 576 + 144: 384}  # rows of encoder.body.pos_embed (search + template)
_S_WIDTHS = {384: "t", 512: "b", 768: "l"}  # Fast-iTPN embedding width -> size letter
_S_REGISTERED = ("sutrack_t224", "sutrack_b224", "sutrack_b384", "sutrack_l224", "sutrack_l384")


def choose_s_variant(state_dict: Mapping[str, Tensor], info: Mapping[str, Any]) -> VariantChoice:
    """The registered variant of a SUTrack-layout state dict (``encoder.body.*``).

    Size from ``encoder.body.pos_embed`` (245 rows: 224, 720: 384) and the embedding width
    (384 / 512 / 768: Fast-iTPN-T / B / L; T only at 224, UTPTrack-S only B); family from ``net_type`` (``SUTRACK`` /
    ``SUTRACKCMP``) or ``settings.script_name`` (``sutrack`` / ``sutrackcmp``): SUTrack files run
    unpruned (``sutrack_b224``), UTPTrack-S files with the released schedule (``s224``). Neither:
    SUTrack (the layout's own family), logged as an assumption.
    """
    pos = state_dict.get("encoder.body.pos_embed")
    if pos is None or pos.dim() != 3 or int(pos.shape[1]) not in _S_SIZES:
        shape = None if pos is None else tuple(pos.shape)
        raise CheckpointError(f"encoder.body.pos_embed {shape} matches no registered S variant (245 or 720 rows); pass name=")
    size, width = _S_SIZES[int(pos.shape[1])], int(pos.shape[2])
    backbone = _S_WIDTHS.get(width)
    if backbone is None or f"sutrack_{backbone}{size}" not in _S_REGISTERED:
        raise CheckpointError(
            f"encoder.body.pos_embed width {width} at {size} px: no registered Fast-iTPN variant "
            f"({', '.join(sorted(_S_REGISTERED))}); pass name="
        )
    evidence, families = [], set()
    for key, table in (("net_type", _S_NET_TYPES), ("settings.script_name", _S_SCRIPTS)):
        value = _text(info, key)
        if value is not None:
            evidence.append(f"{key.split('.')[-1]}={value}")
            if value in table:
                families.add(table[value])
    if len(families) > 1:
        raise CheckpointError(f"the file's metadata contradicts itself ({', '.join(evidence)}); pass name=")
    config = _text(info, "settings.config_name")
    if config is not None:
        evidence.append(f"config_name={config}")
    evidence.append(f"pos_embed={int(pos.shape[1])} rows")
    family = families.pop() if families else None
    assumed = ""
    if family is None:
        family = FAMILY_SUTRACK
        assumed = "no net_type / settings naming the family: assumed SUTrack (its key layout)"
    if family == FAMILY_UTPTRACK_S:
        if backbone != "b":
            raise CheckpointError(f"UTPTrack-S is released with Fast-iTPN-B (512) only, not width {width}; pass name=")
        name = f"s{size}"
        if config not in UTPTRACK_S_CONFIGS:
            assumed = f"config {config!r} is not a released UTPTrack-S config: assumed the released CTEM schedule"
    else:
        name = f"sutrack_{backbone}{size}"
    choice = VariantChoice(name, family, ", ".join(evidence), assumed)
    if assumed:
        log.warning("weights run as %r (%s); %s. Pass name= if that is wrong", name, choice.evidence, assumed)
    else:
        log.info("weights run as %r (%s)", name, choice.evidence)
    return choice


def clip_no_prompt_feature(state_dict: Mapping[str, Tensor], prefix: str = "text_encoder.clip.") -> Tensor:
    """CLIP ``encode_text`` of 77 zero token ids, from a checkpoint's CLIP text tower.

    The official trackers encode "no description" this way (method.md 3.4); the architecture
    (width, layers, heads = width / 64, vocabulary, output width) is read off the entries' shapes.

    Raises:
        CheckpointError: the CLIP text entries are incomplete or mis-shaped.
    """
    def entry(name: str) -> Tensor:
        if prefix + name not in state_dict:
            raise CheckpointError(f"CLIP text weights incomplete: no {prefix + name}")
        return state_dict[prefix + name]

    width = int(entry("positional_embedding").shape[1])
    layers = len({k.split(".")[3] for k in state_dict if k.startswith(prefix + "transformer.resblocks.")})
    encoder = ClipTextEncoder(
        width=width,
        layers=layers,
        heads=max(1, width // 64),
        vocab_size=int(entry("token_embedding.weight").shape[0]),
        output_dim=int(entry("text_projection").shape[1]),
        context_length=int(entry("positional_embedding").shape[0]),
    )
    encoder.load_clip_state_dict(state_dict, prefix)
    return encoder.encode_ids(torch.zeros(1, encoder.context_length, dtype=torch.long))[0].clone()

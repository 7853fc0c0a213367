"""The UTPTrack family: the network module and its registered variants.

* ``o256`` / ``o384``: UTPTrack-O (OSTrack ViT-B/16, RGB, two templates, CE @3,6,9 and
  DTE/STE @4,7,10, all keep 0.7, TTA ``all``; method.md 1, 4.4, 4.7).
* ``o256_base`` / ``o384_base``: the same networks with every keep ratio 1.0 (unpruned).
* ``ostrack256`` / ``ostrack384``: OSTrack itself (one template, CE @3,6,9 keep 0.7 from the
  static-template centre token, no dynamic template and no template updates; the
  ``vitb_*_mae_ce_32x4_*`` configs); ``ostrack256_noce`` / ``ostrack384_noce``: OSTrack's
  ``vitb_*_mae_32x4_ep300`` configs (no CE). OSTrack and UTPTrack-O files have the same
  state-dict keys; ``checkpoint.load_model`` tells them apart by the file's own metadata
  (``official.py``).
* ``tiny``: the CPU-sized unified model: ImageNet MobileNetV2 stem over 6-channel
  RGB|auxiliary crops (96 px templates, 192 px search), a 6-block dim-128 encoder, a text token
  with text-guided pruning, token-type embeddings and a task head. ``tiny_base`` is unpruned.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor, nn

from ..config import ModelConfig, PruneConfig, TrackerConfig
from ..errors import ConfigError
from ..types import LayerTokens, Task, TokenLedger
from .encoder import Block, OneStreamBackbone, TemplateTokens
from .heads import CenterHead, TaskHead, decode_boxes
from .pruning import keep_mask
from .stems import MobileNetV2Stem, PatchEmbed16


@dataclass
class ModelOutput:
    """Everything one forward pass produces (all tensors batch-first).

    Attributes:
        score_map: (B, 1, F, F) centre probabilities (not windowed).
        size_map: (B, 2, F, F) w, h as fractions of the search crop.
        offset_map: (B, 2, F, F) sub-cell offsets x, y.
        boxes: (B, 4) argmax-decoded normalised ``cx, cy, w, h`` in the search crop; None from
            runtimes that leave decoding to the caller (``runtime.network``: the tracker decodes
            the windowed maps itself).
        task_logits: (B, num_tasks) or None.
        ledger: token counts (identical for every sample of the batch).
        search_keep_mask: (B, F*F) bool, search tokens that survived every CE layer.
    """

    score_map: Tensor
    size_map: Tensor
    offset_map: Tensor
    boxes: Optional[Tensor]
    task_logits: Optional[Tensor]
    ledger: TokenLedger
    search_keep_mask: Tensor


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class UTPTrack(nn.Module):
    """One-stream tracker: templates + search (+ text) -> centre/size/offset maps."""

    def __init__(self, config: ModelConfig, pretrained_stem: bool = False) -> None:
        super().__init__()
        self.config = config
        if config.stem == "patch16":
            stem: nn.Module = PatchEmbed16(config.in_chans, config.embed_dim)
        else:
            stem = MobileNetV2Stem(config.in_chans, config.embed_dim, pretrained=pretrained_stem)
        self.backbone = OneStreamBackbone(
            stem=stem,
            dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
            norm_eps=config.norm_eps,
            template_size=config.template_size,
            search_size=config.search_size,
            token_type_embed=config.token_type_embed,
            legacy_vit_params=config.legacy_vit_params,
            num_templates=config.num_templates,
        )
        self.box_head = CenterHead(config.embed_dim, config.head_channels)
        self.text_proj = nn.Linear(config.text_dim, config.embed_dim) if config.text_dim else None
        self.task_head = TaskHead(config.embed_dim, config.embed_dim, config.num_tasks) if config.num_tasks else None
        for module in (self.backbone.blocks, self.text_proj, self.task_head):
            if module is not None:
                module.apply(init_weights)
        for p in (self.backbone.pos_embed_z, self.backbone.pos_embed_x):
            nn.init.trunc_normal_(p, std=0.02)
        if config.token_type_embed:
            for p in (
                self.backbone.search_token,
                self.backbone.template_foreground_token,
                self.backbone.template_background_token,
            ):
                nn.init.trunc_normal_(p, std=0.02)
        self.prune = config.prune

    # -- pruning control ---------------------------------------------------------------
    @property
    def force_reorder(self) -> bool:
        """Testing aid: every configured pruning layer re-orders the tokens by score (sort, gather,
        scatter back) even when its keep ratio removes none, so an unpruned model runs the pruning
        path. Set on the model; held by the encoder blocks."""
        return any(blk.force_reorder for blk in self.modules() if isinstance(blk, Block))

    @force_reorder.setter
    def force_reorder(self, on: bool) -> None:
        for blk in self.modules():
            if isinstance(blk, Block):
                blk.force_reorder = bool(on)

    def set_prune(self, prune: PruneConfig) -> None:
        """Replace the keep ratios used by later forwards (a run-time token budget).

        ``self.config.prune`` keeps describing the variant as designed; ``self.prune`` is what
        runs (checkpoint.save_model stores the latter).
        """
        replace(self.config, prune=prune)  # validates layer indices against the depth
        self.prune = prune

    # -- inputs ------------------------------------------------------------------------
    def embed_templates(
        self,
        static: Tensor,
        dynamic: Optional[Tensor] = None,
        static_box: Optional[Tensor] = None,
        dynamic_box: Optional[Tensor] = None,
    ) -> TemplateTokens:
        """Embed the template crops (B, C_in, T, T); boxes (B, 4) ``x, y, w, h`` / T.

        ``dynamic=None``: the dynamic template is the static crop (tracking start). Single-template
        models (``config.num_templates == 1``, OSTrack) ignore ``dynamic`` and return ``dt=None``.
        """
        return self.backbone.embed_templates(static, dynamic, static_box, dynamic_box)

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        """Tokens (B, n_z, C) of one template crop each, e.g. a new dynamic template."""
        return self.backbone.embed_template(crop, box)[0]

    def _text_inputs(
        self, batch: int, text: Optional[Tensor], task: Optional[Tensor], device: torch.device, dtype: torch.dtype
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if self.text_proj is None:
            return None, None
        if text is None:
            text = torch.zeros(batch, self.config.text_dim, device=device, dtype=dtype)
        if text.shape != (batch, self.config.text_dim):
            raise ConfigError(f"text features must be (B={batch}, {self.config.text_dim}), got {tuple(text.shape)}")
        if task is None:
            weight = torch.zeros(batch, device=device, dtype=dtype)
        else:
            weight = (task.to(device) == int(Task.LANGUAGE)).to(dtype)
        return self.text_proj(text).unsqueeze(1), weight

    # -- forward -----------------------------------------------------------------------
    def forward_search(
        self,
        search: Tensor,
        templates: TemplateTokens,
        text: Optional[Tensor] = None,
        task: Optional[Tensor] = None,
        prune: Optional[PruneConfig] = None,
    ) -> ModelOutput:
        """Track step with embedded templates.

        Args:
            search: (B, C_in, S, S) normalised search crop.
            templates: from :meth:`embed_templates`.
            text: (B, text_dim) text-encoder features (zeros = no prompt); ignored without a text token.
            task: (B,) long task indices (``types.Task``); LANGUAGE turns text guidance on.
            prune: keep ratios for this call (training schedules); default ``self.prune``.
        """
        b = search.shape[0]
        text_token, text_weight = self._text_inputs(b, text, task, search.device, search.dtype)
        feat, tokens, state, layers = self.backbone(
            search, templates, text_token, text_weight, prune or self.prune
        )
        f = self.config.search_grid
        fmap = feat.transpose(1, 2).reshape(b, -1, f, f)
        score, size, offset = self.box_head(fmap)
        boxes, _ = decode_boxes(score, size, offset)
        n_st = templates.st.shape[1]
        n_dt = templates.dt.shape[1] if self.config.num_templates == 2 and templates.dt is not None else 0
        ledger = TokenLedger(input=LayerTokens(-1, f * f, n_st, n_dt), layers=layers)
        return ModelOutput(
            score_map=score,
            size_map=size,
            offset_map=offset,
            boxes=boxes,
            task_logits=self.task_head(tokens) if self.task_head is not None else None,
            ledger=ledger,
            search_keep_mask=keep_mask(state.sr_index, f * f),
        )

    def forward(
        self,
        search: Tensor,
        static: Tensor,
        dynamic: Optional[Tensor],
        static_box: Tensor,
        dynamic_box: Optional[Tensor],
        text: Optional[Tensor] = None,
        task: Optional[Tensor] = None,
        prune: Optional[PruneConfig] = None,
    ) -> ModelOutput:
        """Full forward (training): embed templates, then :meth:`forward_search`."""
        templates = self.embed_templates(static, dynamic, static_box, dynamic_box)
        return self.forward_search(search, templates, text, task, prune)


# -- variants --------------------------------------------------------------------------

_O_PRUNE = PruneConfig(
    ce=((3, 0.7), (6, 0.7), (9, 0.7)),
    dte=((4, 0.7), (7, 0.7), (10, 0.7)),
    ste=((4, 0.7), (7, 0.7), (10, 0.7)),
    tta_mode="all",
)

_TINY_PRUNE = PruneConfig(  # O256's 3/6/9 and 4/7/10 of 12 blocks, scaled to 6 (64 % removed at the end)
    ce=((2, 0.7), (3, 0.7), (4, 0.7)),
    dte=((3, 0.7), (4, 0.7), (5, 0.7)),
    ste=((3, 0.7), (4, 0.7), (5, 0.7)),
    tta_mode="soft",
    text_guided="D",
)

O256 = ModelConfig(
    name="o256",
    stem="patch16",
    in_chans=3,
    embed_dim=768,
    depth=12,
    num_heads=12,
    template_size=128,
    search_size=256,
    legacy_vit_params=True,
    template_box="ostrack",
    prune=_O_PRUNE,
)
O384 = replace(O256, name="o384", template_size=192, search_size=384)

# OSTrack's CE: ce_template_mask = CTR_POINT (the template's centre token scores the search region)
_OSTRACK_CE = PruneConfig(ce=((3, 0.7), (6, 0.7), (9, 0.7)), tta_mode="none")
OSTRACK256 = replace(O256, name="ostrack256", num_templates=1, prune=_OSTRACK_CE)
OSTRACK384 = replace(OSTRACK256, name="ostrack384", template_size=192, search_size=384)
OSTRACK256_NOCE = replace(OSTRACK256, name="ostrack256_noce", prune=PruneConfig(tta_mode="none"))
OSTRACK384_NOCE = replace(OSTRACK384, name="ostrack384_noce", prune=PruneConfig(tta_mode="none"))
TINY = ModelConfig(
    name="tiny",
    stem="mobilenetv2",
    in_chans=6,
    embed_dim=128,
    depth=6,
    num_heads=4,
    mlp_ratio=4.0,
    drop_path_rate=0.05,
    template_size=96,
    search_size=192,
    head_channels=(64, 32, 32, 16),
    token_type_embed=True,
    text_dim=384,
    text_encoder="minilm",
    num_tasks=len(Task),
    prune=_TINY_PRUNE,
)


def _unpruned(cfg: ModelConfig) -> ModelConfig:
    return replace(cfg, name=f"{cfg.name}_base", prune=cfg.prune.off())


# The shipped tiny weights report LOST below confidence 0.1 (and hold the search centre): the
# threshold is chosen by a sweep on val-split sequences with the shipped weights; the sweep and
# its scores are in weights/MODEL_CARD.md, "Tracker settings".
_TINY_TRACKER = TrackerConfig(search_factor=4.0, lost_threshold=0.1)

# OSTrack's tracker: one template, never updated (method.md 6.3)
_OSTRACK256_TRACKER = TrackerConfig(search_factor=4.0, update_interval=0)
_OSTRACK384_TRACKER = TrackerConfig(search_factor=5.0, update_interval=0)

VARIANTS: dict[str, tuple[ModelConfig, TrackerConfig]] = {
    "ostrack256": (OSTRACK256, _OSTRACK256_TRACKER),
    "ostrack256_noce": (OSTRACK256_NOCE, _OSTRACK256_TRACKER),
    "ostrack384": (OSTRACK384, _OSTRACK384_TRACKER),
    "ostrack384_noce": (OSTRACK384_NOCE, _OSTRACK384_TRACKER),
    "o256": (O256, TrackerConfig(search_factor=4.0)),
    "o256_base": (_unpruned(O256), TrackerConfig(search_factor=4.0)),
    "o384": (O384, TrackerConfig(search_factor=5.0)),
    "o384_base": (_unpruned(O384), TrackerConfig(search_factor=5.0)),
    "tiny": (TINY, _TINY_TRACKER),
    "tiny_base": (_unpruned(TINY), _TINY_TRACKER),
}

"""The S family: SUTrack and UTPTrack-S networks on the Fast-iTPN backbone (method.md 2.2-3.4, 8.3).

Module names follow the official state dict: ``encoder.body`` (:class:`~.itpn.FastITPN`),
``decoder`` (the CENTER head, as OSTrack's), ``task_decoder.layers.{0,1,2}`` (5-way task MLP over
the mean of all output tokens), ``text_encoder.text_proj`` (CLIP feature -> one TEXT token; the
official ``norm1`` / ``norm2`` exist but are not applied). The CLIP text tower itself is not part
of this module: ``text`` arguments are CLIP ``encode_text`` features (``models.clip_text``).

The TEXT token is always in the sequence, as in SUTrack's B/L configs. Without a prompt it is
the projection of :attr:`SUTrack.no_prompt_feature` (the buffer ``text_encoder.no_prompt``):
CLIP's feature of 77 zero token ids, as the official tracker computes it. Loading an official
file computes it from the file's CLIP weights (``checkpoint.sutrack_filter_fn``); project files
store it. Text-guided pruning is on only for language samples (task index 1).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor, nn

from ..config import ModelConfig, PruneConfig, TrackerConfig
from ..errors import ConfigError
from ..types import LayerTokens, Task, TokenLedger
from .encoder import TemplateTokens
from .heads import CenterHead, TaskHead, decode_boxes
from .itpn import FastITPN
from .pruning import keep_mask
from .utptrack import ModelOutput, UTPTrack, init_weights


class _Encoder(nn.Module):
    """``encoder.body``: the official wrapper's only state."""

    def __init__(self, body: FastITPN) -> None:
        super().__init__()
        self.body = body


class TextProjection(nn.Module):
    """``text_encoder.{norm1, text_proj, norm2}``: only ``text_proj`` is applied (as officially)."""

    def __init__(self, text_dim: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(text_dim, eps=eps)
        self.text_proj = nn.Linear(text_dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.no_prompt: Tensor
        self.register_buffer("no_prompt", torch.zeros(text_dim))

    def forward(self, feature: Tensor) -> Tensor:
        """(B, text_dim) CLIP features -> (B, 1, C) TEXT tokens."""
        return self.text_proj(feature).unsqueeze(1)


class SUTrack(UTPTrack):
    """SUTrack / UTPTrack-S: the same calls as :class:`~.utptrack.UTPTrack` (``embed_templates``,
    ``forward_search``, ``forward``, ``set_prune``), official S-family weights names."""

    def __init__(self, config: ModelConfig, pretrained_stem: bool = False) -> None:
        nn.Module.__init__(self)
        if config.backbone != "fast_itpn":
            raise ConfigError(f"SUTrack needs backbone 'fast_itpn', got {config.backbone!r}")
        if not (config.text_dim and config.num_tasks):
            raise ConfigError("SUTrack needs a text token (text_dim) and a task head (num_tasks)")
        self.config = config
        body = FastITPN(
            in_chans=config.in_chans,
            dim=config.embed_dim,
            stage_depths=tuple(config.stage_depths),
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=config.drop_path_rate,
            norm_eps=config.norm_eps,
            template_size=config.template_size,
            search_size=config.search_size,
            num_templates=config.num_templates,
        )
        self.encoder = _Encoder(body)
        self.decoder = CenterHead(config.embed_dim, config.head_channels)
        self.task_decoder = TaskHead(config.embed_dim, config.head_channels[0], config.num_tasks)
        self.text_encoder = TextProjection(config.text_dim, config.embed_dim)
        body.apply(init_weights)
        for module in (self.task_decoder, self.text_encoder):
            module.apply(init_weights)
        for p in (body.pos_embed, body.cls_token, body.search_token, body.template_foreground_token,
                  body.template_background_token):
            nn.init.trunc_normal_(p, std=0.02)
        self.prune = config.prune

    # The official module names (encoder, decoder) stay the state-dict keys; the names the shared
    # UTPTrack code uses are read-only views of them here (UTPTrack assigns them as attributes).
    @property
    def backbone(self) -> FastITPN:  # type: ignore[override]
        return self.encoder.body

    @property
    def box_head(self) -> CenterHead:  # type: ignore[override]
        return self.decoder

    @property
    def no_prompt_feature(self) -> Tensor:
        return self.text_encoder.no_prompt

    def set_no_prompt_feature(self, feature: Tensor) -> None:
        """The text feature used without a prompt (officially CLIP ``encode_text`` of 77 zero ids)."""
        if feature.shape != (self.config.text_dim,):
            raise ConfigError(f"no-prompt feature must be ({self.config.text_dim},), got {tuple(feature.shape)}")
        self.text_encoder.no_prompt.copy_(feature.detach().to(self.text_encoder.no_prompt))

    def _text_inputs(
        self, batch: int, text: Optional[Tensor], task: Optional[Tensor], device: torch.device, dtype: torch.dtype
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if text is None:
            text = self.text_encoder.no_prompt.to(device, dtype).expand(batch, -1)
        if text.shape != (batch, self.config.text_dim):
            raise ConfigError(f"text features must be (B={batch}, {self.config.text_dim}), got {tuple(text.shape)}")
        if task is None:
            weight = torch.zeros(batch, device=device, dtype=dtype)
        else:
            weight = (task.to(device) == int(Task.LANGUAGE)).to(dtype)
            # a sample without a prompt (any task but LANGUAGE) gets CLIP's no-prompt feature,
            # whatever its text row holds (the tracker fills blank prompts with zeros)
            no_prompt = self.text_encoder.no_prompt.to(device, dtype).expand(batch, -1)
            text = torch.where(weight.bool().unsqueeze(1), text.to(dtype), no_prompt)
        return self.text_encoder(text.to(dtype)), weight

    def forward_search(
        self,
        search: Tensor,
        templates: TemplateTokens,
        text: Optional[Tensor] = None,
        task: Optional[Tensor] = None,
        prune=None,
    ) -> ModelOutput:
        """As :meth:`UTPTrack.forward_search`; ``text`` are CLIP features (B, text_dim), used for
        LANGUAGE samples; every other sample (and ``text=None``) gets :attr:`no_prompt_feature`,
        as the official tracker encodes 77 zero ids without a prompt. The task logits use the mean of every output token with the
        search tokens restored (zeros where pruned), as the official head reads them."""
        b = search.shape[0]
        text_token, text_weight = self._text_inputs(b, text, task, search.device, search.dtype)
        feat, tokens, state, layers = self.backbone(
            search, templates, text_token, text_weight, prune or self.prune
        )
        f = self.config.search_grid
        score, size, offset = self.decoder(feat.transpose(1, 2).reshape(b, -1, f, f))
        boxes, _ = decode_boxes(score, size, offset)
        everything = torch.cat([tokens[:, :1], feat, tokens[:, 1 + state.n_sr :]], dim=1)
        n_st = templates.st.shape[1]
        n_dt = templates.dt.shape[1] if self.config.num_templates == 2 and templates.dt is not None else 0
        return ModelOutput(
            score_map=score,
            size_map=size,
            offset_map=offset,
            boxes=boxes,
            task_logits=self.task_decoder(everything),
            ledger=TokenLedger(input=LayerTokens(-1, f * f, n_st, n_dt), layers=layers),
            search_keep_mask=keep_mask(state.sr_index, f * f),
        )


# -- variants ----------------------------------------------------------------------------------

SUTRACK_B224 = ModelConfig(
    name="sutrack_b224",
    backbone="fast_itpn",
    in_chans=6,
    embed_dim=512,
    stage_depths=(3, 3),
    depth=24,
    num_heads=8,
    mlp_ratio=3.0,
    template_size=112,
    search_size=224,
    token_type_embed=True,
    text_dim=768,
    text_encoder="clip",
    num_tasks=len(Task),
    template_box="sutrack",
    prune=PruneConfig(tta_mode="soft"),
)
SUTRACK_B384 = replace(SUTRACK_B224, name="sutrack_b384", template_size=192, search_size=384)
# Fast-iTPN-T (one template, no updates: ``experiments/sutrack/sutrack_t224.yaml``) and -L
SUTRACK_T224 = replace(SUTRACK_B224, name="sutrack_t224", embed_dim=384, stage_depths=(1, 1), depth=12,
                       num_heads=6, num_templates=1)
SUTRACK_L224 = replace(SUTRACK_B224, name="sutrack_l224", embed_dim=768, stage_depths=(2, 2), depth=40,
                       num_heads=12)
SUTRACK_L384 = replace(SUTRACK_L224, name="sutrack_l384", template_size=192, search_size=384)

# UTPTrack-S (sutrackcmp/ceatettamma_b224 / _b384): CE 0.7 at stage-3 blocks 6, 12, 18; DTE and
# STE 0.6 at 9, 15, 21; soft TTA bonus; text guidance on DTE (224) or STE (384)
_S_PRUNE = PruneConfig(
    ce=((6, 0.7), (12, 0.7), (18, 0.7)),
    dte=((9, 0.6), (15, 0.6), (21, 0.6)),
    ste=((9, 0.6), (15, 0.6), (21, 0.6)),
    tta_mode="soft",
    text_guided="D",
)
S224 = replace(SUTRACK_B224, name="s224", prune=_S_PRUNE)
S384 = replace(SUTRACK_B384, name="s384", prune=replace(_S_PRUNE, text_guided="S"))

_S_TRACKER = TrackerConfig(search_factor=4.0, update_interval=25, update_threshold=0.7)

S_VARIANTS: dict[str, tuple[ModelConfig, TrackerConfig]] = {
    "sutrack_b224": (SUTRACK_B224, _S_TRACKER),
    "sutrack_b384": (SUTRACK_B384, _S_TRACKER),
    "sutrack_t224": (SUTRACK_T224, replace(_S_TRACKER, update_interval=0)),
    "sutrack_l224": (SUTRACK_L224, _S_TRACKER),
    "sutrack_l384": (SUTRACK_L384, _S_TRACKER),
    "s224": (S224, _S_TRACKER),
    "s224_base": (replace(S224, name="s224_base", prune=S224.prune.off()), _S_TRACKER),
    "s384": (S384, _S_TRACKER),
    "s384_base": (replace(S384, name="s384_base", prune=S384.prune.off()), _S_TRACKER),
}

"""One-stream ViT encoder over ``[SR, ST, DT(, TEXT)]`` tokens with CTEM pruning (method.md 2.1, 4).

Blocks are pre-norm timm-style blocks (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``: the OSTrack/timm state-dict names). A block whose configured keep
ratios remove tokens computes explicit attention probabilities and, after the attention residual
and before the MLP, prunes in the order CE, DTE, STE, all scored from that same attention
tensor and indexed by the layout that existed when it was computed (method.md 4.2).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, cast

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from ..config import PruneConfig
from ..types import LayerTokens
from . import pruning


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm names).

    The output always comes from the fused SDPA kernel. ``forward(x, rows)`` also returns the
    attention probabilities of the query tokens at positions ``rows`` (B, R) — the only rows
    pruning scores use (method.md 4.2: the static-template centre, plus the text token for TG) —
    as (B, heads, R, N): the same softmax of the same logits, without materialising N x N, in
    float32 whatever the network's dtype (pruning ranks these scores).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rows: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        row_probs = None
        if rows is not None:
            r = rows.shape[1]
            q_rows = q.gather(2, rows.view(b, 1, r, 1).expand(b, self.num_heads, r, self.head_dim))
            # float32 scores also in a half-precision network: near-tied tokens rank as in float32
            row_probs = ((q_rows.float() * self.scale) @ k.float().transpose(-2, -1)).softmax(dim=-1)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out), row_probs


@dataclass
class TokenState:
    """Book-keeping of the current token layout ``[HEAD(n_head), SR(n_sr), ST(n_st), DT(n_dt), TEXT(0|1)]``.

    ``HEAD`` holds leading tokens that are never pruned (SUTrack's CLS token; none for the ViT).

    Attributes:
        sr_index: (B, n_sr) original raster positions of the current search tokens.
        st_centre: (B, n_st) bool, marks the static-template centre token.
        st_fg: (B, n_st) foreground fraction of each static-template patch (TTA source).
        text_weight: (B,) 1.0 where the sample has a prompt (TG active), else 0.0; None if the
            sequence has no text token.
    """

    n_sr: int
    n_st: int
    n_dt: int
    sr_index: Tensor
    st_centre: Tensor
    st_fg: Tensor
    text_weight: Optional[Tensor]
    n_head: int = 0

    @property
    def counts(self) -> tuple[int, int, int]:
        return (self.n_sr, self.n_st, self.n_dt)


class Block(nn.Module):
    """Pre-norm transformer block with an optional CTEM step between attention and MLP."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, norm_eps: float, layer: int
    ) -> None:
        super().__init__()
        self.layer = layer
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn: nn.Module = Attention(dim, num_heads)  # nn.Module: variants bring their own (models.itpn)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp: nn.Module = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    #: testing aid (set through the model's ``force_reorder``): re-order the tokens by score in every
    #: configured pruning layer even when none is removed
    force_reorder: bool = False

    def forward(self, x: Tensor, state: TokenState, prune: PruneConfig) -> tuple[Tensor, TokenState]:
        keep = (
            pruning.keep_count(prune.ratio("ce", self.layer), state.n_sr),
            pruning.keep_count(prune.ratio("ste", self.layer), state.n_st),
            pruning.keep_count(prune.ratio("dte", self.layer), state.n_dt),
        )
        active = (
            self._active(prune, "ce", keep[0] < state.n_sr),
            self._active(prune, "ste", keep[1] < state.n_st),
            self._active(prune, "dte", keep[2] < state.n_dt),
        )
        rows = None
        guided = state.text_weight is not None and bool(prune.text_guided)
        if any(active):  # query rows: the static-template centre (and the text token for TG)
            centre_pos = state.n_head + state.n_sr + state.st_centre.to(torch.int64).argmax(dim=1)
            rows = centre_pos.unsqueeze(1)
            if guided:
                # for every sample; weight 0 makes it inert without a prompt (no data-dependent
                # branch: one graph for export, no host sync on GPU)
                rows = torch.cat([rows, torch.full_like(rows, x.shape[1] - 1)], dim=1)
        y, row_probs = self.attn(self.norm1(x), rows)
        x = x + self.drop_path(self.scale_attn(y))
        if row_probs is not None:
            mean_rows = row_probs.mean(dim=1)  # (B, R, N): mean over heads
            text_row = mean_rows[:, 1] if guided else None
            x, state = self._eliminate(x, mean_rows[:, 0], text_row, state, keep, active, prune)
        x = x + self.drop_path(self.scale_mlp(self.mlp(self.norm2(x))))
        return x, state

    def scale_attn(self, y: Tensor) -> Tensor:
        """The attention branch before the residual add (blocks with layer scale multiply here)."""
        return y

    def scale_mlp(self, y: Tensor) -> Tensor:
        """The MLP branch before the residual add."""
        return y

    def _active(self, prune: PruneConfig, component: str, removes: bool) -> bool:
        configured = self.layer in dict(getattr(prune, component))
        return removes or (self.force_reorder and configured)

    def _eliminate(
        self,
        x: Tensor,
        centre_row: Tensor,
        text_row: Optional[Tensor],
        state: TokenState,
        keep: tuple[int, int, int],
        active: tuple[bool, bool, bool],
        prune: PruneConfig,
    ) -> tuple[Tensor, TokenState]:
        """CE, DTE and STE from one block's attention (method.md 4.2, 4.3, 4.5).

        Args:
            centre_row: (B, N) head-averaged attention of the static-template centre token.
            text_row: (B, N) head-averaged attention of the text token, or None (no TG).
        Both were computed on the layout in ``state``, before any of this block's pruning.
        """
        n_sr, n_st, n_dt = state.counts
        h = state.n_head
        st0, dt0 = h + n_sr, h + n_sr + n_st

        def scores(component: str, start: int, stop: int) -> Tensor:
            guided = text_row is not None and prune.text_guides(component)
            return pruning.component_scores(
                centre_row, start, stop, text_row if guided else None, state.text_weight if guided else None
            )

        head, sr, st, dt = x[:, :h], x[:, h:st0], x[:, st0:dt0], x[:, dt0 : dt0 + n_dt]
        tail = x[:, dt0 + n_dt :]
        sr_index, st_centre, st_fg = state.sr_index, state.st_centre, state.st_fg
        do_ce, do_ste, do_dte = active

        if do_ce:
            idx = pruning.select_topk(scores("ce", h, st0), keep[0])
            sr = pruning.gather_tokens(sr, idx)
            sr_index = sr_index.gather(1, idx)
        if do_dte:
            idx = pruning.select_topk(scores("dte", dt0, dt0 + n_dt), keep[2])
            dt = pruning.gather_tokens(dt, idx)
        if do_ste:
            bonus = st_centre.to(x.dtype) + pruning.tta_bonus(st_fg, prune.tta_mode)
            idx = pruning.select_topk(scores("ste", st0, dt0) + bonus, keep[1])
            st = pruning.gather_tokens(st, idx)
            st_centre = st_centre.gather(1, idx)
            st_fg = st_fg.gather(1, idx)

        x = torch.cat([head, sr, st, dt, tail] if h else [sr, st, dt, tail], dim=1)
        state = replace(
            state,
            n_sr=sr.shape[1],
            n_st=st.shape[1],
            n_dt=dt.shape[1],
            sr_index=sr_index,
            st_centre=st_centre,
            st_fg=st_fg,
        )
        return x, state


@dataclass
class TemplateTokens:
    """Embedded templates, computed once per (re)initialisation and reused every frame.

    Attributes:
        st: (B, n_z, C) static-template tokens (patch embedding + pos + type embeddings).
        dt: (B, n_z, C) dynamic-template tokens; None for single-template models (OSTrack).
        st_fg: (B, n_z) foreground fraction of each static-template patch (TTA source).
    """

    st: Tensor
    dt: Optional[Tensor]
    st_fg: Tensor


class TemplateEmbedding:
    """``embed_templates`` for a backbone with ``embed_template(crop, box) -> (tokens, fg)`` and
    ``num_templates`` (the ViT one-stream backbone and Fast-iTPN share it)."""

    num_templates: int

    def embed_template(self, crop: Tensor, box: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens (B, n_z, C) and per-patch foreground weights of template crops: the backbone's own."""
        raise NotImplementedError

    def embed_templates(
        self,
        static: Tensor,
        dynamic: Optional[Tensor] = None,
        static_box: Optional[Tensor] = None,
        dynamic_box: Optional[Tensor] = None,
    ) -> TemplateTokens:
        """Embed the templates (see :meth:`embed_template`), both in one stem pass.

        ``dynamic=None`` means the dynamic template is the static crop (how tracking starts,
        method.md 6.3), embedded once. Single-template models ignore ``dynamic`` and return
        ``dt=None``. ``static_box`` is required; ``dynamic_box`` defaults to it.
        """
        if static_box is None:
            raise ValueError("embed_templates needs static_box (B, 4)")
        if self.num_templates == 1 or dynamic is None:
            z, fg = self.embed_template(static, static_box)
            return TemplateTokens(st=z, dt=None if self.num_templates == 1 else z, st_fg=fg)
        b = static.shape[0]
        dynamic_box = static_box if dynamic_box is None else dynamic_box
        z, fg = self.embed_template(torch.cat([static, dynamic], dim=0), torch.cat([static_box, dynamic_box], dim=0))
        return TemplateTokens(st=z[:b], dt=z[b:], st_fg=fg[:b])


class OneStreamBackbone(TemplateEmbedding, nn.Module):
    """Stem + positional/type embeddings + blocks + final norm (OSTrack ``backbone.*`` names).

    Both templates share ``pos_embed_z`` (method.md 2.3); the sequence is ``[SR, ST, DT]`` plus
    an optional TEXT token at the end, or ``[SR, ST]`` for a single-template model (OSTrack,
    whose own order ``[Z, X]`` gives the same result: attention, norms and MLPs do not depend on
    token order). After the final norm the search tokens are restored to raster order with exact
    zeros at pruned positions (method.md 4.1 step 7).
    """

    def __init__(
        self,
        stem: nn.Module,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
        norm_eps: float,
        template_size: int,
        search_size: int,
        token_type_embed: bool,
        legacy_vit_params: bool,
        num_templates: int = 2,
    ) -> None:
        super().__init__()
        self.num_templates = num_templates
        self.template_size = template_size
        self.search_size = search_size
        self.template_grid = template_size // 16
        self.search_grid = search_size // 16
        self.patch_embed = stem
        if legacy_vit_params:  # unused by the forward pass; present so OSTrack files load strictly
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, 14 * 14 + 1, dim))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, self.template_grid**2, dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, self.search_grid**2, dim))
        self.token_type_embed = token_type_embed
        if token_type_embed:
            self.search_token = nn.Parameter(torch.zeros(dim))
            self.template_foreground_token = nn.Parameter(torch.zeros(dim))
            self.template_background_token = nn.Parameter(torch.zeros(dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, rates[i], norm_eps, layer=i) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self._centre = pruning.centre_index(self.template_grid)

    def embed_template(self, crop: Tensor, box: Tensor) -> tuple[Tensor, Tensor]:
        """Embed template crops (B, C_in, T, T) with target boxes (B, 4) ``x, y, w, h`` / T.

        Returns tokens (B, n_z, C) (patch + shared template pos + type embeddings) and the
        per-patch foreground fraction (B, n_z).
        """
        z = self.patch_embed(crop) + self.pos_embed_z
        fg = pruning.foreground_fraction(box, self.template_size).to(z.dtype)
        if self.token_type_embed:
            fg_w = fg.unsqueeze(-1)
            z = z + fg_w * self.template_foreground_token + (1 - fg_w) * self.template_background_token
        return z, fg

    def forward(
        self,
        search: Tensor,
        templates: TemplateTokens,
        text_token: Optional[Tensor],
        text_weight: Optional[Tensor],
        prune: PruneConfig,
    ) -> tuple[Tensor, Tensor, TokenState, tuple[LayerTokens, ...]]:
        """Run the one-stream encoder.

        Args:
            search: (B, C_in, S, S) normalised search crop.
            text_token: (B, 1, C) projected text feature, or None (no TEXT token).
            text_weight: (B,) 1.0 where a prompt is present (TG active), else 0.0.
        Returns:
            search_feat (B, N_sr, C) restored raster-order search tokens (zeros where pruned),
            tokens (B, n, C) the compacted normalised output sequence, the final TokenState,
            and the ledger (counts leaving each block).
        """
        x = self.patch_embed(search) + self.pos_embed_x
        if self.token_type_embed:
            x = x + self.search_token
        b, n_sr, _ = x.shape
        n_z = templates.st.shape[1]
        parts = [x, templates.st]
        if self.num_templates == 2:
            if templates.dt is None:
                raise ValueError("a two-template model needs dynamic-template tokens (TemplateTokens.dt)")
            parts.append(templates.dt)
        if text_token is not None:
            parts.append(text_token)
        seq = torch.cat(parts, dim=1)
        device = seq.device
        centre = torch.zeros(b, n_z, dtype=torch.bool, device=device)
        centre[:, self._centre] = True
        raster = torch.arange(n_sr, device=device).expand(b, n_sr)
        state = TokenState(
            n_sr=n_sr,
            n_st=n_z,
            n_dt=n_z if self.num_templates == 2 else 0,
            sr_index=raster,
            st_centre=centre,
            st_fg=templates.st_fg,
            text_weight=text_weight if text_token is not None else None,
        )
        ledger = []
        for blk in cast("list[Block]", self.blocks):
            seq, state = blk(seq, state, prune)
            ledger.append(LayerTokens(blk.layer, *state.counts))
        seq = self.norm(seq)
        if state.sr_index is raster:  # no CE ran: tokens are still in raster order
            search_feat = seq[:, :n_sr]
        else:
            search_feat = pruning.restore_search(seq[:, : state.n_sr], state.sr_index, n_sr)
        return search_feat, seq, state, tuple(ledger)

"""Fast-iTPN backbone of SUTrack / UTPTrack-S (method.md 2.2, 2.3), with CTEM on stage 3 (4.2).

Structure (state-dict names as in the official ``encoder.body.*``, method.md 8.3):

* ``patch_embed.proj``: Conv2d(C_in -> C/4, k 4, s 4), a stride-4 map;
* ``blocks[0 : d1]``: conv-MLP blocks at C/4 (``norm2`` LayerNorm over channels, ``mlp.fc1`` 1x1
  conv, GELU, ``mlp.ffn_ln`` LayerNorm, ``mlp.fc2`` 1x1 conv; no attention, no layer scale);
  ``blocks[d1]``: patch merge (``norm``, ``reduction`` Conv2d k 2 s 2) to C/2; ``d2`` conv-MLP
  blocks at C/2; a second merge to C (stride 16). Stages 1-2 run on each image separately;
* ``blocks[d1 + d2 + 2 :]``: ``depth`` pre-norm attention blocks at C: separate ``q_proj``,
  ``k_proj``, ``v_proj`` without bias plus ``q_bias`` / ``v_bias`` (k has none), ``proj``;
  SwiGLU MLP (``w1``, ``w2``, SiLU gate, ``ffn_ln`` sub-LayerNorm, ``w3``); layer scale
  ``gamma_1`` / ``gamma_2``. Pruning layer indices count these blocks only (stage-3 index i is
  state-dict block ``d1 + d2 + 2 + i``);
* ``cls_token``; one ``pos_embed`` table ``(1, N_x + N_z, C)``: search rows first, the template
  rows added to every template; ``search_token`` / ``template_foreground_token`` /
  ``template_background_token`` type embeddings (soft foreground fraction per template patch);
* ``fc_norm``: the final LayerNorm, on every token.

The stage-3 sequence is ``[CLS, SR, ST, DT, TEXT]``; CTEM runs exactly as in the ViT encoder
(``encoder.Block``) with CLS as a leading token that is never pruned. The official attention
computes q.k^T in float32; here the fused SDPA kernel computes the same softmax(q.k^T) v (in the
input dtype on the CPU), and the rows pruning scores use are computed explicitly.
"""
from __future__ import annotations

from typing import Optional, cast

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from ..config import PruneConfig
from ..types import LayerTokens
from . import pruning
from .encoder import Block, TemplateEmbedding, TemplateTokens, TokenState

BRIDGE_MLP_RATIO = 3.0  # stages 1-2 of every released Fast-iTPN (T, S, B, L)


class ConvMlp(nn.Module):
    """1x1 conv -> GELU -> LayerNorm over channels (sub-LN) -> 1x1 conv, on (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(x))
        x = self.ffn_ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.fc2(x)


class ConvMlpBlock(nn.Module):
    """Stage-1/2 block: ``x + mlp(norm2(x))`` with the LayerNorm over channels."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float, eps: float) -> None:
        super().__init__()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), eps)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.mlp(self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)))


class ConvPatchMerge(nn.Module):
    """LayerNorm over channels, then Conv2d(dim -> 2 dim, k 2, s 2)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.reduction = nn.Conv2d(dim, dim * 2, kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class ItpnAttention(nn.Module):
    """Self-attention with separate q/k/v projections, q and v biases only (no k bias).

    Same protocol as ``encoder.Attention``: ``forward(x, rows)`` returns the output and, for the
    query positions ``rows`` (B, R), the attention probabilities (B, heads, R, N) pruning scores use.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rows: Optional[Tensor] = None) -> tuple[Tensor, Optional[Tensor]]:
        b, n, c = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(self.k_proj(x))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))
        out = F.scaled_dot_product_attention(q, k, v)
        row_probs = None
        if rows is not None:
            r = rows.shape[1]
            q_rows = q.gather(2, rows.view(b, 1, r, 1).expand(b, self.num_heads, r, self.head_dim))
            logits = (q_rows.float() * self.scale) @ k.float().transpose(-2, -1)
            row_probs = logits.softmax(dim=-1)  # float32: pruning ranks these (also in a half network)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), row_probs


class SwiGLU(nn.Module):
    """``w3(ffn_ln(silu(w1 x) * w2 x))``."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(self.ffn_ln(self.act(self.w1(x)) * self.w2(x)))


class ItpnBlock(Block):
    """Stage-3 block: ``encoder.Block`` (CTEM between attention and MLP) with iTPN's attention,
    SwiGLU MLP and layer scale ``gamma_1`` / ``gamma_2``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float, eps: float, layer: int, init_values: float
    ) -> None:
        nn.Module.__init__(self)
        self.layer = layer
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = ItpnAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio), eps)
        self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
        self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))

    def scale_attn(self, y: Tensor) -> Tensor:
        return self.gamma_1 * y

    def scale_mlp(self, y: Tensor) -> Tensor:
        return self.gamma_2 * y


class PatchEmbed4(nn.Module):
    """``proj``: Conv2d(C_in -> dim, k 4, s 4)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=4, stride=4)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FastITPN(TemplateEmbedding, nn.Module):
    """The Fast-iTPN encoder body (module docstring); same calls as ``encoder.OneStreamBackbone``."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        stage_depths: tuple[int, ...],
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
        norm_eps: float,
        template_size: int,
        search_size: int,
        num_templates: int = 2,
        layer_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_templates = num_templates
        self.template_size = template_size
        self.template_grid = template_size // 16
        self.search_grid = search_size // 16
        self.depth = depth
        n_x, n_z = self.search_grid**2, self.template_grid**2
        d1, d2 = stage_depths
        self.patch_embed = PatchEmbed4(in_chans, dim // 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_x + n_z, dim))
        self.template_background_token = nn.Parameter(torch.zeros(dim))
        self.template_foreground_token = nn.Parameter(torch.zeros(dim))
        self.search_token = nn.Parameter(torch.zeros(dim))
        rates = iter(torch.linspace(0, drop_path_rate, d1 + d2 + depth).tolist())
        blocks: list[nn.Module] = [ConvMlpBlock(dim // 4, BRIDGE_MLP_RATIO, next(rates), norm_eps) for _ in range(d1)]
        blocks.append(ConvPatchMerge(dim // 4, norm_eps))
        blocks += [ConvMlpBlock(dim // 2, BRIDGE_MLP_RATIO, next(rates), norm_eps) for _ in range(d2)]
        blocks.append(ConvPatchMerge(dim // 2, norm_eps))
        blocks += [
            ItpnBlock(dim, num_heads, mlp_ratio, next(rates), norm_eps, layer=i, init_values=layer_scale)
            for i in range(depth)
        ]
        self.blocks = nn.ModuleList(blocks)
        self.fc_norm = nn.LayerNorm(dim, eps=norm_eps)
        self._centre = pruning.centre_index(self.template_grid)

    @property
    def stage3(self) -> nn.ModuleList:
        return self.blocks[len(self.blocks) - self.depth :]

    def _pyramid(self, image: Tensor) -> Tensor:
        """Stages 1-2 of one stream: (B, C_in, H, W) -> (B, (H/16)*(W/16), C)."""
        x = self.patch_embed(image)
        for blk in self.blocks[: len(self.blocks) - self.depth]:
            x = blk(x)
        return x.flatten(2).transpose(1, 2)

    def embed_template(self, crop: Tensor, box: Tensor) -> tuple[Tensor, Tensor]:
        """Template crops (B, C_in, T, T) with target boxes (B, 4) ``x, y, w, h`` / T -> tokens
        (B, n_z, C) (pyramid + template pos rows + soft fg/bg type embeddings) and the per-patch
        foreground fraction (B, n_z)."""
        n_x = self.search_grid**2
        z = self._pyramid(crop) + self.pos_embed[:, n_x:]
        fg = pruning.foreground_fraction(box, self.template_size).to(z.dtype).unsqueeze(-1)
        z = z + (fg * self.template_foreground_token + (1 - fg) * self.template_background_token)
        return z, fg.squeeze(-1)

    def forward(
        self,
        search: Tensor,
        templates: TemplateTokens,
        text_token: Optional[Tensor],
        text_weight: Optional[Tensor],
        prune: PruneConfig,
    ) -> tuple[Tensor, Tensor, TokenState, tuple[LayerTokens, ...]]:
        """Stage 3 over ``[CLS, SR, ST, DT, TEXT]`` (see ``OneStreamBackbone.forward``).

        Returns the restored search tokens (B, N_x, C) (zeros where pruned), the normalised
        output sequence ``[CLS, SR (compacted), ST, DT, TEXT]``, the final TokenState and the ledger.
        """
        n_x = self.search_grid**2
        x = self._pyramid(search) + self.pos_embed[:, :n_x] + self.search_token
        b, n_sr, _ = x.shape
        n_z = templates.st.shape[1]
        parts = [self.cls_token.expand(b, -1, -1), x, templates.st]
        if self.num_templates == 2:
            if templates.dt is None:
                raise ValueError("a two-template model needs dynamic-template tokens (TemplateTokens.dt)")
            parts.append(templates.dt)
        if text_token is not None:
            parts.append(text_token)
        seq = torch.cat(parts, dim=1)
        centre = torch.zeros(b, n_z, dtype=torch.bool, device=seq.device)
        centre[:, self._centre] = True
        raster = torch.arange(n_sr, device=seq.device).expand(b, n_sr)
        state = TokenState(
            n_sr=n_sr,
            n_st=n_z,
            n_dt=n_z if self.num_templates == 2 else 0,
            sr_index=raster,
            st_centre=centre,
            st_fg=templates.st_fg,
            text_weight=text_weight if text_token is not None else None,
            n_head=1,
        )
        ledger = []
        for blk in cast("list[Block]", self.stage3):
            seq, state = blk(seq, state, prune)
            ledger.append(LayerTokens(blk.layer, *state.counts))
        seq = self.fc_norm(seq)
        if state.sr_index is raster:
            search_feat = seq[:, 1 : 1 + n_sr]
        else:
            search_feat = pruning.restore_search(seq[:, 1 : 1 + state.n_sr], state.sr_index, n_sr)
        return search_feat, seq, state, tuple(ledger)

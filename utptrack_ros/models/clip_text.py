"""CLIP-style text encoder (method.md 3.4) for official SUTrack / UTPTrack-S checkpoints.

Architecture of CLIP ViT-L/14's text tower: token + positional embedding -> 12 causal
residual attention blocks (width 768, 12 heads, QuickGELU MLP) -> ``ln_final`` -> the row at the
position of the largest token id (the end-of-text token; position 0 for an all-zero input) ->
``@ text_projection``. "No description" is the all-zero id sequence, as in SUTrack. Weights come
from a checkpoint's ``text_encoder.clip.*`` entries (:meth:`ClipTextEncoder.load_clip_state_dict`);
nothing is downloaded. The BPE tokenizer needs CLIP's merges file ``bpe_simple_vocab_16e6.txt.gz``
(shipped in PyPI ``open_clip_torch``; or pass its path).
"""
from __future__ import annotations

import functools
import gzip
import html
import importlib.util
from pathlib import Path
from typing import Mapping, Optional, Sequence

import regex
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .text import normalise_prompt

CONTEXT_LENGTH = 77
SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable unicode map used by GPT-2/CLIP BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def default_vocab_path() -> Optional[Path]:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    return path if path.is_file() else None


class ClipTokenizer:
    """CLIP's lower-cased byte-level BPE; ``tokenize`` -> (B, 77) long ids, 0-padded."""

    def __init__(self, merges_path: Optional[Path] = None, num_merges: int = 49152 - 256 - 2) -> None:
        merges_path = merges_path or default_vocab_path()
        if merges_path is None:
            raise ConfigError("CLIP tokenizer needs bpe_simple_vocab_16e6.txt.gz (pip install open_clip_torch, or pass its path)")
        with gzip.open(merges_path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")[1 : num_merges + 1]
        merges = [tuple(line.split()) for line in lines if line.strip()]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]
        self._bpe = functools.lru_cache(maxsize=10000)(self._bpe_word)

    def _bpe_word(self, token: str) -> tuple[str, ...]:
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str) -> list[int]:
        text = " ".join(html.unescape(html.unescape(text)).split()).strip().lower()
        ids: list[int] = []
        for token in self.pattern.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(mapped))
        return ids

    def tokenize(self, prompts: Sequence[Optional[str]], context_length: int = CONTEXT_LENGTH) -> Tensor:
        out = torch.zeros(len(prompts), context_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            text = normalise_prompt(prompt)
            if not text:
                continue  # no description: all-zero ids (method.md 3.4)
            ids = [self.sot] + self.encode(text)[: context_length - 2] + [self.eot]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


class _QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x: (L, B, C)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_ResidualBlock(width, heads) for _ in range(layers))


class ClipTextEncoder(nn.Module):
    """CLIP text tower behind the :class:`~utptrack_ros.models.text.TextEncoder` protocol."""

    def __init__(
        self,
        tokenizer: Optional[ClipTokenizer] = None,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        vocab_size: int = 49408,
        output_dim: int = 768,
        context_length: int = CONTEXT_LENGTH,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.dim = output_dim
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, output_dim) * width**-0.5)
        mask = torch.full((context_length, context_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.eval()

    @torch.inference_mode()
    def encode_ids(self, ids: Tensor) -> Tensor:
        """(B, 77) token ids -> (B, output_dim) float32 features."""
        x = self.token_embedding(ids) + self.positional_embedding
        x = x.permute(1, 0, 2)
        for block in self.transformer.resblocks:
            x = block(x, self.causal_mask.to(x.dtype))
        x = self.ln_final(x.permute(1, 0, 2))
        eot = ids.argmax(dim=-1)  # first maximum: the end-of-text token (position 0 for all zeros)
        return (x[torch.arange(ids.shape[0]), eot] @ self.text_projection).float()

    def encode(self, prompts: Sequence[Optional[str]]) -> Tensor:
        if self.tokenizer is None:
            raise ConfigError("ClipTextEncoder needs a ClipTokenizer to encode strings")
        return self.encode_ids(self.tokenizer.tokenize(prompts, self.context_length))

    def load_clip_state_dict(self, state_dict: Mapping[str, Tensor], prefix: str = "text_encoder.clip.") -> None:
        """Load the text tower from a checkpoint's CLIP entries (the visual tower and
        ``logit_scale`` are ignored); missing or mis-shaped entries raise CheckpointError."""
        own = self.state_dict()
        picked = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix) and k[len(prefix) :] in own}
        missing = sorted(set(own) - set(picked))
        if missing:
            raise CheckpointError(f"CLIP text weights missing under {prefix!r}: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in picked.items() if v.shape != own[k].shape]
        if bad:
            raise CheckpointError(f"CLIP text weight shape mismatch: {bad[:8]}")
        self.load_state_dict({k: v.float() for k, v in picked.items()}, strict=True)

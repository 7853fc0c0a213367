"""Inference backends behind one protocol: the torch model or exported ONNX graphs in onnxruntime.

Both take numpy arrays and return numpy arrays with the contract of the model's
``embed_templates`` / ``forward_search`` (method.md 5, 11): score / size / offset maps and the
kept-search-token mask, plus the token ledger. Text guidance (method.md 4.5) is on exactly when
``text`` features are passed. onnxruntime is imported only when an :class:`OrtBackend` is built.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..config import ModelConfig, from_mapping
from ..errors import ConfigError, InputError
from ..models.utptrack import UTPTrack
from ..types import Task, TokenLedger
from .export import META_CONFIG, SEARCH_FILE, SEARCH_PROMPT_FILE, TEMPLATES_FILE
from .ort_telemetry import import_onnxruntime

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class TemplateArrays:
    """Embedded templates (computed on init and on dynamic-template updates).

    Attributes:
        st, dt: (B, n_z, C) float32 static / dynamic template tokens (``dt`` None for
            single-template models, OSTrack).
        st_fg: (B, n_z) float32 foreground fraction of each static-template patch.
    """

    st: np.ndarray
    dt: Optional[np.ndarray]
    st_fg: np.ndarray


@dataclass(frozen=True)
class SearchMaps:
    """One tracking step's outputs.

    Attributes:
        score_map: (B, 1, F, F) float32 centre probabilities (not windowed).
        size_map: (B, 2, F, F) float32 w, h as fractions of the search crop.
        offset_map: (B, 2, F, F) float32 sub-cell offsets x, y.
        search_keep_mask: (B, F*F) bool, search tokens that survived every CE layer.
        ledger: token counts leaving each encoder block.
    """

    score_map: np.ndarray
    size_map: np.ndarray
    offset_map: np.ndarray
    search_keep_mask: np.ndarray
    ledger: TokenLedger


def _f32(name: str, array: Any, shape: Sequence[int]) -> np.ndarray:
    a = np.ascontiguousarray(array, dtype=np.float32)
    if a.shape != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


class TorchBackend:
    """The torch model itself (CPU or GPU), with the same numpy call contract as :class:`OrtBackend`."""

    def __init__(self, model: UTPTrack, device: Union[str, torch.device] = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.config: ModelConfig = model.config

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)

    def embed_templates(
        self,
        static: np.ndarray,
        dynamic: Optional[np.ndarray],
        static_box: np.ndarray,
        dynamic_box: Optional[np.ndarray],
    ) -> TemplateArrays:
        def t(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
            return None if a is None else self._t(a)

        with torch.inference_mode():
            tok = self.model.embed_templates(self._t(static), t(dynamic), self._t(static_box), t(dynamic_box))
        dt = None if tok.dt is None else tok.dt.cpu().numpy()
        return TemplateArrays(tok.st.cpu().numpy(), dt, tok.st_fg.cpu().numpy())

    def forward_search(
        self, search: np.ndarray, templates: TemplateArrays, text: Optional[np.ndarray] = None
    ) -> SearchMaps:
        from ..models.encoder import TemplateTokens

        b = search.shape[0]
        task = None
        text_t = None
        if text is not None and self.config.text_dim:
            text_t = self._t(text)
            task = torch.full((b,), int(Task.LANGUAGE), dtype=torch.long, device=self.device)
        dt = None if templates.dt is None else self._t(templates.dt)
        tokens = TemplateTokens(self._t(templates.st), dt, self._t(templates.st_fg))
        with torch.inference_mode():
            out = self.model.forward_search(self._t(search), tokens, text_t, task)
        return SearchMaps(
            out.score_map.cpu().numpy(),
            out.size_map.cpu().numpy(),
            out.offset_map.cpu().numpy(),
            out.search_keep_mask.cpu().numpy(),
            out.ledger,
        )


class OrtBackend:
    """Exported graphs (:func:`~utptrack_ros.runtime.export.export_onnx`) run by onnxruntime.

    Args:
        directory: folder holding ``templates.onnx``, ``search.onnx`` (+ ``search_prompt.onnx``).
        threads: intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers, names or ``(name, options)`` pairs
            (default CPU; ``runtime.providers.resolve_providers`` builds them).
    Raises:
        ConfigError: missing files or metadata; ModuleNotFoundError if onnxruntime is absent.
    """

    def __init__(
        self, directory: PathLike, threads: Optional[int] = None, providers: Optional[Sequence[str]] = None
    ) -> None:
        try:
            ort = import_onnxruntime()  # telemetry off first (ort_telemetry)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError("OrtBackend needs onnxruntime (pip install onnxruntime==1.32.0)") from err
        self.directory = Path(directory)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._providers = list(providers or ["CPUExecutionProvider"])

        def session(name: str) -> Any:
            path = self.directory / name
            if not path.is_file():
                raise ConfigError(f"{path}: missing (export with utptrack_ros.runtime.export_onnx)")
            return ort.InferenceSession(str(path), sess_options=options, providers=self._providers)

        self._templates = session(TEMPLATES_FILE)
        self._search = session(SEARCH_FILE)
        meta = self._search.get_modelmeta().custom_metadata_map
        if META_CONFIG not in meta:
            raise ConfigError(f"{self.directory / SEARCH_FILE}: no {META_CONFIG} metadata")
        self.config = from_mapping(ModelConfig, json.loads(meta[META_CONFIG]))
        prompt = self.directory / SEARCH_PROMPT_FILE
        self._search_prompt = session(SEARCH_PROMPT_FILE) if prompt.is_file() else None
        self.batch = int(self._search.get_inputs()[0].shape[0])
        from ..models.ledger import expected_ledger

        self._ledger = expected_ledger(self.config)
        log.info("onnxruntime backend %r from %s (providers %s)", self.config.name, self.directory, self._providers)

    @property
    def providers_in_use(self) -> list[str]:
        """The providers onnxruntime registered for the search graph, in priority order (a
        requested one it could not start is missing)."""
        return list(self._search.get_providers())

    def embed_templates(
        self,
        static: np.ndarray,
        dynamic: Optional[np.ndarray],
        static_box: np.ndarray,
        dynamic_box: Optional[np.ndarray],
    ) -> TemplateArrays:
        c = self.config
        crop = (self.batch, c.in_chans, c.template_size, c.template_size)
        feeds = {
            "static": _f32("static", static, crop),
            "static_box": _f32("static_box", static_box, (self.batch, 4)),
        }
        if c.num_templates == 1:
            st, st_fg = self._templates.run(None, feeds)
            return TemplateArrays(st, None, st_fg)
        feeds["dynamic"] = feeds["static"] if dynamic is None else _f32("dynamic", dynamic, crop)
        feeds["dynamic_box"] = feeds["static_box"] if dynamic_box is None else _f32("dynamic_box", dynamic_box, (self.batch, 4))
        st, dt, st_fg = self._templates.run(None, feeds)
        return TemplateArrays(st, dt, st_fg)

    def forward_search(
        self, search: np.ndarray, templates: TemplateArrays, text: Optional[np.ndarray] = None
    ) -> SearchMaps:
        c = self.config
        feeds = {
            "search": _f32("search", search, (self.batch, c.in_chans, c.search_size, c.search_size)),
            "st": _f32("st", templates.st, templates.st.shape),
            "st_fg": _f32("st_fg", templates.st_fg, templates.st_fg.shape),
        }
        if c.num_templates == 2:
            if templates.dt is None:
                raise InputError("dt: a two-template model needs dynamic-template tokens")
            feeds["dt"] = _f32("dt", templates.dt, templates.dt.shape)
        session = self._search
        if text is not None and c.text_dim:
            if self._search_prompt is None:
                raise ConfigError(f"{self.directory}: no {SEARCH_PROMPT_FILE} for text-guided tracking")
            feeds["text"] = _f32("text", text, (self.batch, c.text_dim))
            session = self._search_prompt
        score, size, offset, keep = session.run(None, feeds)
        return SearchMaps(score, size, offset, keep.astype(bool), self._ledger)

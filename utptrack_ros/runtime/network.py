"""The tracker's network run by onnxruntime, with torch tensors in and out (``backend="onnxruntime"``).

:class:`OrtNetwork` has the three calls :class:`~utptrack_ros.tracker.MultiTracker` makes on a
model (``embed_templates``, ``embed_template``, ``forward_search``) and ``set_prune``, so the
tracker runs unchanged on either runtime. Graphs are static-shape (keep ratios baked in,
batch 1; :mod:`.export`), so they are exported once per (weights, config, keep ratios) into a
cache directory and loaded from there afterwards:

* ``<cache>/onnx/<variant>-<fingerprint>/`` with ``fingerprint`` = SHA-256 over the weights,
  the model config with its keep ratios, the opset and the torch / package versions;
  ``<cache>`` = ``$UTPTRACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/utptrack_ros``, else
  ``~/.cache/utptrack_ros``. An export takes ~20 s for ``tiny`` on 2 cores; loading ~0.3 s.
* Graphs prebuilt at install time for the shipped presets (``share/utptrack_ros/onnx``,
  :mod:`.prebuilt`) are used read-only before the cache, when their folder name (the same
  fingerprint) and checksums match: a first start then exports nothing.
* A cache folder that onnxruntime cannot load (truncated or corrupt file) is exported again.
* Keep ratios changed live (:meth:`OrtNetwork.set_prune`) use cached graphs when they exist and
  otherwise run on the torch model (same outputs) until :meth:`OrtNetwork.prepare` exports them:
  a 20 s export never stalls tracking (the node calls it on activate).
* Several targets run one graph call each (the graphs have batch 1 for text guidance).

Why: at width 128 torch pays a fixed per-operator cost that pruning cannot remove; onnxruntime
runs the same graphs faster per frame and its pruned / unpruned latency follows the MACs
(docs/profiling.md). The task head is not exported: ``task_logits`` is None on this runtime.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..config import PruneConfig
from ..errors import ConfigError
from ..models.encoder import TemplateTokens
from ..models.utptrack import ModelOutput, UTPTrack
from ..types import Task
from .backends import OrtBackend, TemplateArrays
from .export import SEARCH_FILE
from .graph_names import graphs_folder, weights_digest
from .ort_telemetry import import_onnxruntime
from .providers import TENSORRT, resolve_providers, session_fallback

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
CACHE_ENV = "UTPTRACK_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$UTPTRACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/utptrack_ros``, else ``~/.cache/utptrack_ros``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "utptrack_ros"


class OrtNetwork:
    """``model``'s tracking calls run by onnxruntime; ``model`` stays the torch reference.

    Args:
        model: the UTPTrack the graphs are exported from (eval mode; CPU).
        cache_dir: root of the export cache (default :func:`default_cache_dir`).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        opset: ONNX opset of the exports.
        providers: execution providers asked for, ``tensorrt`` / ``cuda`` / ``cpu`` (default
            ``cpu``; :mod:`.providers`): those this onnxruntime lacks fall back towards the CPU
            with a logged reason (:attr:`provider`, :attr:`provider_reason`).
        trt_cache_dir: TensorRT engine cache (default ``<cache_dir>/tensorrt``).
    Raises:
        ModuleNotFoundError: onnxruntime is not installed.
        ConfigError: the graphs cannot be exported or loaded.
    """

    def __init__(
        self,
        model: UTPTrack,
        cache_dir: Optional[PathLike] = None,
        threads: Optional[int] = None,
        opset: int = 17,
        providers: Union[None, str, Sequence[str]] = None,
        trt_cache_dir: Optional[PathLike] = None,
    ) -> None:
        # fail before any cache handling when onnxruntime is absent (``_load`` treats load
        # errors as a corrupt cache and deletes it); telemetry off before the import
        ort = import_onnxruntime()

        self.model = model.eval()
        self.config = model.config
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.threads = threads
        self.opset = opset
        trt_cache = Path(trt_cache_dir).expanduser() if trt_cache_dir else self.cache_dir / "tensorrt"
        self.providers = resolve_providers(providers, ort.get_available_providers(), trt_cache)
        if self.providers.fell_back:
            log.warning("onnxruntime providers: %s", self.providers.reason)
        if TENSORRT in self.providers.names:
            log.info("TensorRT builds an engine per graph on the first run (minutes on a Jetson); "
                     "cached in %s for later starts", trt_cache)
        self._weights = weights_digest(model)  # the weights never change; keep ratios do
        self._loaded: dict[Path, OrtBackend] = {}  # export folder -> its graphs
        self._active: Optional[OrtBackend] = None
        self.prepare()

    # -- graphs ------------------------------------------------------------------------------
    @property
    def prune(self) -> PruneConfig:
        return self.model.prune

    @property
    def runtime(self) -> str:
        """``onnxruntime``, or ``torch`` while no graphs exist for the current keep ratios."""
        return "onnxruntime" if self._active is not None else "torch"

    def export_dir(self, prune: Optional[PruneConfig] = None) -> Path:
        """The cache folder of the graphs for ``prune`` (default: the current keep ratios)."""
        prune = self.prune if prune is None else prune
        return self.cache_dir / "onnx" / graphs_folder(self.config, self._weights, prune, self.opset)

    @property
    def provider(self) -> Optional[str]:
        """The execution provider running the graphs now (None while on torch)."""
        return None if self._active is None else self._active.providers_in_use[0]

    @property
    def provider_reason(self) -> str:
        """Why :attr:`provider` is not the one asked for ("" when it is)."""
        if self._active is None:
            return self.providers.reason
        return session_fallback(self.providers, self._active.providers_in_use) or self.providers.reason

    @property
    def graphs_dir(self) -> Optional[Path]:
        """The folder of the graphs running now (prebuilt or cache), None while on torch."""
        return None if self._active is None else self._active.directory

    def _activate(self, export: bool) -> Path:
        """Use the graphs for the current keep ratios: loaded, prebuilt at install (read-only,
        ``runtime.prebuilt``), cached on disk, or (``export``) new."""
        directory = self.export_dir()
        if directory not in self._loaded:
            backend = self._load_prebuilt(directory.name) or self._load(directory)
            if backend is None and export:
                self._export(directory)
                backend = self._load(directory, strict=True)
            if backend is not None:
                self._loaded[directory] = backend
        self._active = self._loaded.get(directory)
        return directory

    def prepare(self) -> Path:
        """Export (unless cached) and load the graphs for the current keep ratios; returns their folder."""
        return self._activate(export=True)

    def set_prune(self, prune: PruneConfig) -> None:
        """New keep ratios: cached graphs if they exist, else the torch model until :meth:`prepare`."""
        self.model.set_prune(prune)
        self._activate(export=False)
        if self._active is None:
            log.warning("no onnxruntime graphs for keep ratios %s yet: tracking runs on torch until "
                        "prepare() exports them (~20 s; the node does on activate)", prune)

    def _load_prebuilt(self, folder: str) -> Optional[OrtBackend]:
        """The install's graphs for ``folder``, if intact; never modified (a failure -> the cache)."""
        from .prebuilt import find_prebuilt

        directory = find_prebuilt(folder)
        if directory is None:
            return None
        try:
            return OrtBackend(directory, threads=self.threads, providers=self.providers.session_providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            log.warning("prebuilt graphs in %s do not load (%s: %s); using the cache", directory, type(err).__name__, err)
            return None

    def _load(self, directory: Path, strict: bool = False) -> Optional[OrtBackend]:
        if not (directory / SEARCH_FILE).is_file():
            if strict:
                raise ConfigError(f"{directory}: export wrote no {SEARCH_FILE}")
            return None
        try:
            return OrtBackend(directory, threads=self.threads, providers=self.providers.session_providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            if strict:
                raise ConfigError(f"{directory}: onnxruntime cannot load the exported graphs: {err}") from err
            log.warning("cached graphs in %s do not load (%s: %s); exporting them again",
                        directory, type(err).__name__, err)
            shutil.rmtree(directory, ignore_errors=True)
            return None

    def _export(self, directory: Path) -> None:
        from .export import export_onnx

        log.info("exporting %s for onnxruntime into %s (once per weights and keep ratios)",
                 self.config.name, directory)
        tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            export_onnx(self.model, tmp, opset=self.opset)
            try:
                os.rename(tmp, directory)
            except OSError:
                if not (directory / SEARCH_FILE).is_file():
                    raise
                log.info("%s was written by another process meanwhile; using it", directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- the tracker's calls -----------------------------------------------------------------
    def embed_templates(
        self, static: Tensor, dynamic: Optional[Tensor], static_box: Tensor, dynamic_box: Optional[Tensor]
    ) -> TemplateTokens:
        """As ``UTPTrack.embed_templates`` (``dynamic=None``: the static crop)."""
        if self._active is None:
            return self.model.embed_templates(static, dynamic, static_box, dynamic_box)

        def row(x: Optional[Tensor], i: int) -> Optional[np.ndarray]:
            return None if x is None else _np(x[i : i + 1])

        active = self._active
        parts = [active.embed_templates(_np(static[i : i + 1]), row(dynamic, i), _np(static_box[i : i + 1]),
                                        row(dynamic_box, i))
                 for i in range(static.shape[0])]

        def joined(arrays: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.concatenate(arrays))

        dts = [p.dt for p in parts if p.dt is not None]  # none from a single-template model's graphs
        return TemplateTokens(joined([p.st for p in parts]), joined(dts) if dts else None,
                              joined([p.st_fg for p in parts]))

    def embed_template(self, crop: Tensor, box: Tensor) -> Tensor:
        """Tokens of one template crop each (the dynamic-template update)."""
        if self._active is None:
            return self.model.embed_template(crop, box)
        tokens = self.embed_templates(crop, crop, box, box)
        # a single-template (OSTrack) graph embeds its one crop as ``st``, as the torch model does
        return tokens.st if tokens.dt is None else tokens.dt

    def forward_search(
        self, search: Tensor, templates: TemplateTokens, text: Optional[Tensor] = None, task: Optional[Tensor] = None
    ) -> ModelOutput:
        if self._active is None:
            return self.model.forward_search(search, templates, text, task)
        active, dt = self._active, templates.dt
        maps = []
        for i in range(search.shape[0]):
            prompt = task is not None and text is not None and int(task[i]) == int(Task.LANGUAGE)
            arrays = TemplateArrays(_np(templates.st[i : i + 1]), None if dt is None else _np(dt[i : i + 1]),
                                    _np(templates.st_fg[i : i + 1]))
            row_text = _np(text[i : i + 1]) if prompt and text is not None else None
            maps.append(active.forward_search(_np(search[i : i + 1]), arrays, row_text))
        score, size, offset, keep = (torch.from_numpy(np.concatenate([getattr(m, k) for m in maps]))
                                     for k in ("score_map", "size_map", "offset_map", "search_keep_mask"))
        return ModelOutput(score, size, offset, None, None, maps[0].ledger, keep)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()

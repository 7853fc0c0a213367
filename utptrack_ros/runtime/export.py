"""Static-shape ONNX export of a UTPTrack variant (method.md 11: fixed-shape opset-17 export).

Two graphs per variant, so an onnxruntime backend needs no torch at tracking time:

* ``templates.onnx``: ``static``, ``dynamic`` (B, C_in, T, T) normalised crops and
  ``static_box``, ``dynamic_box`` (B, 4) ``x, y, w, h`` / T -> ``st``, ``dt`` (B, n_z, C) embedded
  template tokens and ``st_fg`` (B, n_z) static-template foreground fractions (run on init and on
  each dynamic-template update);
* ``search.onnx``: ``search`` (B, C_in, S, S) + the three template outputs -> ``score_map``
  (B, 1, F, F), ``size_map`` (B, 2, F, F), ``offset_map`` (B, 2, F, F), ``search_keep_mask``
  (B, F*F) bool (run every frame). Models with a text token also get ``search_prompt.onnx``
  with an extra ``text`` (B, text_dim) input and text-guided pruning on (method.md 4.5).

Single-template models (OSTrack, ``ModelConfig.num_templates == 1``) have no dynamic template:
their ``templates.onnx`` takes ``static``, ``static_box`` -> ``st``, ``st_fg`` and their
``search.onnx`` takes ``search``, ``st``, ``st_fg``.

The keep ratios are baked in (static shapes: ``ceil(ratio * n)`` per layer), as is everything in
:class:`~utptrack_ros.config.ModelConfig`, which is stored as JSON in the model metadata.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). The TorchScript
exporter (``dynamo=False``) cannot trace ``Tensor.scatter(dim, index, <python bool>)`` in the
keep-mask code. ``aten.sort.stable`` has no onnxscript translation, so it is given one here: ONNX
``TopK`` over the whole axis, whose documented tie-break (lower index first) is a stable sort.
onnxscript emits opset 18; the graph is converted to opset 17 (the highest TensorRT 8.5 on
JetPack 5 reads) with ``onnx.version_converter``. Whether text guidance is on is decided by a
data-dependent ``bool()`` in the encoder, which torch.export resolves only for a constant
task index, hence the separate prompt graph and batch 1 for models with a text token.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union, cast

import torch
from torch import Tensor, nn

from ..config import ModelConfig, PruneConfig, to_mapping
from ..errors import ConfigError
from ..models.encoder import TemplateTokens
from ..models.utptrack import UTPTrack
from ..types import Task

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TEMPLATES_FILE = "templates.onnx"
SEARCH_FILE = "search.onnx"
SEARCH_PROMPT_FILE = "search_prompt.onnx"
TEMPLATE_INPUTS = ("static", "dynamic", "static_box", "dynamic_box")
TEMPLATE_OUTPUTS = ("st", "dt", "st_fg")
SEARCH_INPUTS = ("search", "st", "dt", "st_fg")
SINGLE_TEMPLATE_INPUTS = ("static", "static_box")  # single-template (OSTrack) models
SINGLE_TEMPLATE_OUTPUTS = ("st", "st_fg")
SINGLE_SEARCH_INPUTS = ("search", "st", "st_fg")
SEARCH_OUTPUTS = ("score_map", "size_map", "offset_map", "search_keep_mask")
OSTRACK_INPUTS = ("template", "search")
OSTRACK_OUTPUTS = ("output1", "output2", "output3")  # score, size, offset (cv2.TrackerVit names)
META_CONFIG = "utptrack.model_config"
META_GRAPH = "utptrack.graph"
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ExportedModel:
    """Paths of one export.

    Attributes:
        directory: where the files are.
        templates / search: the two graphs; search_prompt: the text-guided search graph (models
            with a text token) or None.
        config: the exported ModelConfig (keep ratios baked in).
        batch: the static batch size; opset: ONNX opset of the files.
    """

    directory: Path
    templates: Path
    search: Path
    search_prompt: Optional[Path]
    config: ModelConfig
    batch: int
    opset: int


class _TemplateGraph(nn.Module):
    def __init__(self, model: UTPTrack) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, static: Tensor, dynamic: Tensor, static_box: Tensor, dynamic_box: Tensor
    ) -> tuple[Tensor, Optional[Tensor], Tensor]:
        t = self.model.embed_templates(static, dynamic, static_box, dynamic_box)
        return t.st, t.dt, t.st_fg


class _SingleTemplateGraph(nn.Module):
    """The template graph of a single-template (OSTrack) model."""

    def __init__(self, model: UTPTrack) -> None:
        super().__init__()
        self.model = model

    def forward(self, static: Tensor, static_box: Tensor) -> tuple[Tensor, ...]:
        t = self.model.embed_templates(static, None, static_box, None)
        return t.st, t.st_fg


class _SearchCall(nn.Module):
    """``forward_search`` with a constant task: text guidance on (prompt) or off. The two search
    graphs below differ in their inputs only."""

    def __init__(self, model: UTPTrack, prompt: bool) -> None:
        super().__init__()
        self.model = model
        self.prompt = prompt

    def maps(self, search: Tensor, st: Tensor, dt: Optional[Tensor], st_fg: Tensor,
             text: Optional[Tensor]) -> tuple[Tensor, ...]:
        # built from python data so torch.export can constant-fold the encoder's TG check
        task_id = int(Task.LANGUAGE) if self.prompt else int(Task.RGB)
        task = torch.tensor([task_id] * search.shape[0], dtype=torch.long)
        out = self.model.forward_search(search, TemplateTokens(st, dt, st_fg), text, task)
        return out.score_map, out.size_map, out.offset_map, out.search_keep_mask


class _SearchGraph(_SearchCall):
    """The search graph of a two-template model."""

    def forward(self, search: Tensor, st: Tensor, dt: Tensor, st_fg: Tensor, text: Optional[Tensor] = None) -> tuple[Tensor, ...]:
        return self.maps(search, st, dt, st_fg, text)


class _SingleSearchGraph(_SearchCall):
    """The search graph of a single-template (OSTrack) model: no ``dt`` input."""

    def forward(self, search: Tensor, st: Tensor, st_fg: Tensor, text: Optional[Tensor] = None) -> tuple[Tensor, ...]:
        return self.maps(search, st, None, st_fg, text)


def centred_template_box(config: ModelConfig) -> list[float]:
    """The box prior of a target filling the central half of the template crop (the crop is 2x
    the target's size), by the family's template-box rule (``preprocess.template_box``)."""
    from ..preprocess import CropGeometry, template_box
    from ..types import Box

    t = config.template_size
    geom = CropGeometry(cx=0.0, cy=0.0, side=t, x1=-(t // 2), y1=-(t // 2), out_size=t)
    return [float(v) for v in template_box(geom, Box.from_cxcywh(0.0, 0.0, t / 2.0, t / 2.0), config.template_box)]


class _OstrackShapedGraph(nn.Module):
    """One template crop + search crop -> score/size/offset, the OSTrack / cv2.TrackerVit contract.

    A single-template (OSTrack) model embeds the one template, as OSTrack does; a two-template
    model uses it as both ST and DT (both start as the first-frame crop, method.md 6.3). The
    box prior assumes the target fills the central half of the template crop
    (:func:`centred_template_box`), since this contract carries no box.
    """

    def __init__(self, model: UTPTrack) -> None:
        super().__init__()
        self.model = model
        self.box = centred_template_box(model.config)

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, ...]:
        box = torch.tensor([self.box], dtype=template.dtype).expand(template.shape[0], 4)
        t = self.model.embed_templates(template, None, box, None)
        out = self.model.forward_search(search, t)
        return out.score_map, out.size_map, out.offset_map


def _sort_stable(self: Any, stable: bool = True, dim: int = -1, descending: bool = False) -> tuple[Any, Any]:
    """onnxscript translation of ``aten.sort.stable``: TopK over the whole axis (ties: lower index first)."""
    from onnxscript import opset18 as op
    from onnxscript.onnx_types import INT64

    # ``Constant`` is typed as any tensor type (its type follows the attribute): these are int64
    axis = cast(INT64, op.Constant(value_int=dim))
    n = op.Reshape(op.Gather(op.Shape(self), axis, axis=0), cast(INT64, op.Constant(value_ints=[1])))
    values, indices = op.TopK(self, n, axis=dim, largest=int(bool(descending)), sorted=1)
    return values, indices


def _gelu(self: Any, approximate: str = "none") -> Any:
    """onnxscript translation of exact ``aten.gelu``: 0.5 x (1 + erf(x / sqrt 2)), written with
    multiplications. onnxscript's own form (``Div`` by sqrt 2 first) crashes OpenCV 5.1's ONNX
    importer (segfault in ``cv2.dnn.readNet``); this one loads there and in onnxruntime."""
    from onnxscript import opset18 as op

    if approximate != "none":
        raise ConfigError(f"only exact GELU is exported, got approximate={approximate!r}")
    half = op.Mul(self, op.Constant(value_float=0.5))
    erf = op.Erf(op.Mul(self, op.Constant(value_float=float(1.0 / math.sqrt(2.0)))))
    return op.Mul(half, op.Add(erf, op.Constant(value_float=1.0)))


def _translations() -> dict[Any, Any]:
    from onnxscript.onnx_types import FLOAT, INT64

    _sort_stable.__annotations__ = {"self": FLOAT, "return": tuple[FLOAT, INT64]}
    _gelu.__annotations__ = {"self": FLOAT, "approximate": str, "return": FLOAT}
    return {torch.ops.aten.sort.stable: _sort_stable, torch.ops.aten.gelu.default: _gelu}


def _to_opset(model: Any, opset: int) -> Any:
    """Convert an opset-18 onnxscript graph down to ``opset`` (17) and validate it."""
    import onnx
    from onnx import version_converter

    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset == current:
        return model
    if opset > current:
        raise ConfigError(f"cannot raise the opset from {current} to {opset}")
    converted = version_converter.convert_version(model, opset)
    for node in converted.graph.node:
        if node.op_type.startswith("Reduce") and opset < 18:
            # the converter moves `axes` to an attribute but keeps the opset-18-only flag
            for attr in list(node.attribute):
                if attr.name == "noop_with_empty_axes":
                    if attr.i != 0:
                        raise ConfigError(f"{node.name}: noop_with_empty_axes=1 has no opset-{opset} equivalent")
                    node.attribute.remove(attr)
    onnx.checker.check_model(converted, full_check=True)
    return converted


def _export(module: nn.Module, args: tuple[Tensor, ...], inputs: tuple[str, ...], outputs: tuple[str, ...],
            path: Path, opset: int, metadata: dict[str, str]) -> Path:
    import onnx

    quiet = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript")]
    levels = [q.level for q in quiet]
    for q in quiet:  # their graph passes log every rewrite at INFO
        q.setLevel(max(q.level, logging.WARNING))
    try:
        program = _torch_export(module, args, inputs, outputs)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    proto = _to_opset(program.model_proto, opset)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    log.info("exported %s (opset %d, inputs %s)", path, opset, list(inputs))
    return path


def _torch_export(module: nn.Module, args: tuple[Tensor, ...], inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    return torch.onnx.export(
        module.eval(),
        args,
        dynamo=True,
        opset_version=18,
        input_names=list(inputs),
        output_names=list(outputs),
        custom_translation_table=_translations(),
        external_data=False,
        verbose=False,
    )


def _example(config: ModelConfig, batch: int) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    t, s, c = config.template_size, config.search_size, config.in_chans
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]]).expand(batch, 4).contiguous()
    return (
        torch.randn(batch, c, t, t, generator=g),
        torch.randn(batch, c, t, t, generator=g),
        box,
        box.clone(),
        torch.randn(batch, c, s, s, generator=g),
    )


def export_onnx(
    model: UTPTrack,
    out_dir: PathLike,
    opset: int = DEFAULT_OPSET,
    batch: int = 1,
    prune: Optional[PruneConfig] = None,
) -> ExportedModel:
    """Export ``model`` as static-shape ONNX graphs (see the module docstring).

    Args:
        model: a UTPTrack (weights as loaded; put in eval mode here).
        out_dir: directory for ``templates.onnx``, ``search.onnx`` (+ ``search_prompt.onnx``).
        opset: 17 (default) or 18.
        batch: static batch size (1 for models with a text token).
        prune: keep ratios to bake in (default: the model's current ones).
    Returns:
        :class:`ExportedModel`.
    Raises:
        ConfigError: batch > 1 with a text token, or an unsupported opset.
    """
    config: ModelConfig = model.config
    if opset not in (17, 18):
        raise ConfigError(f"opset must be 17 or 18, got {opset}")
    if batch < 1 or (config.text_dim and batch != 1):
        raise ConfigError(f"batch must be 1 for models with a text token (and >= 1), got {batch}")
    old_prune = model.prune
    old_training = model.training
    prune = old_prune if prune is None else prune
    model.set_prune(prune)
    model.eval()
    out = Path(out_dir)
    exported = replace(config, prune=prune)
    meta_config = json.dumps(to_mapping(exported), sort_keys=True)
    try:
        static, dynamic, sbox, dbox, search = _example(config, batch)
        with torch.no_grad():
            t = model.embed_templates(static, dynamic, sbox, dbox)
        template_graph: nn.Module
        template_args: tuple[Tensor, ...]
        template_inputs: tuple[str, ...]
        template_outputs: tuple[str, ...]
        search_graph: type[_SearchCall]
        search_args: tuple[Tensor, ...]
        search_inputs: tuple[str, ...]
        if config.num_templates == 1:
            template_graph, template_args = _SingleTemplateGraph(model), (static, sbox)
            template_inputs, template_outputs = SINGLE_TEMPLATE_INPUTS, SINGLE_TEMPLATE_OUTPUTS
            search_graph, search_args = _SingleSearchGraph, (search, t.st, t.st_fg)
            search_inputs = SINGLE_SEARCH_INPUTS
        else:
            if t.dt is None:
                raise ConfigError(f"{config.name}: a two-template model returned no dynamic-template tokens")
            template_graph, template_args = _TemplateGraph(model), (static, dynamic, sbox, dbox)
            template_inputs, template_outputs = TEMPLATE_INPUTS, TEMPLATE_OUTPUTS
            search_graph, search_args = _SearchGraph, (search, t.st, t.dt, t.st_fg)
            search_inputs = SEARCH_INPUTS
        templates = _export(
            template_graph, template_args, template_inputs, template_outputs,
            out / TEMPLATES_FILE, opset, {META_CONFIG: meta_config, META_GRAPH: "templates"},
        )
        search_path = _export(
            search_graph(model, prompt=False), search_args, search_inputs, SEARCH_OUTPUTS,
            out / SEARCH_FILE, opset, {META_CONFIG: meta_config, META_GRAPH: "search"},
        )
        prompt_path = None
        if config.text_dim:
            text = torch.randn(batch, config.text_dim, generator=torch.Generator().manual_seed(1))
            prompt_path = _export(
                search_graph(model, prompt=True), (*search_args, text),
                (*search_inputs, "text"), SEARCH_OUTPUTS, out / SEARCH_PROMPT_FILE, opset,
                {META_CONFIG: meta_config, META_GRAPH: "search_prompt"},
            )
    finally:
        model.set_prune(old_prune)
        model.train(old_training)
    return ExportedModel(out, templates, search_path, prompt_path, exported, batch, opset)


def export_ostrack_shaped(model: UTPTrack, path: PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export with OSTrack's single-graph contract (``template``, ``search`` -> ``output1..3``).

    This is the interface ``cv2.TrackerVit`` loads: template (1, 3, T, T), search (1, 3, S, S)
    -> score (1, 1, F, F), size (1, 2, F, F), offset (1, 2, F, F). The template is embedded on
    every call (as in OSTrack's exported graphs). An OSTrack model feeds it as its one template;
    a UTPTrack-O model as both static and dynamic template (never updated: the contract has no
    second template).
    """
    config: ModelConfig = model.config
    if config.in_chans != 3 or config.text_dim:
        raise ConfigError(f"the OSTrack contract needs a 3-channel model without text, got {config.name!r}")
    static, _, _, _, search = _example(config, 1)
    old_training = model.training
    try:
        return _export(
            _OstrackShapedGraph(model.eval()), (static, search), OSTRACK_INPUTS, OSTRACK_OUTPUTS, Path(path), opset,
            {META_CONFIG: json.dumps(to_mapping(config), sort_keys=True), META_GRAPH: "ostrack"},
        )
    finally:
        model.train(old_training)

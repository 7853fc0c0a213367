"""onnxruntime execution providers: what the user asks for, what this onnxruntime has, what runs.

Short names ``tensorrt``, ``cuda``, ``cpu`` (or onnxruntime's own ``TensorrtExecutionProvider``,
``CUDAExecutionProvider``, ``CPUExecutionProvider``). A request expands to a fallback chain that
always ends on the CPU: ``tensorrt`` -> TensorRT, CUDA, CPU (onnxruntime gives TensorRT the nodes
it supports and the rest to the next provider); ``cuda`` -> CUDA, CPU; ``cpu`` -> CPU.
:func:`resolve_providers` keeps the ones ``onnxruntime.get_available_providers()`` lists and says
why any were dropped (the CPU wheel ``onnxruntime`` has no GPU providers: install
``onnxruntime-gpu``, on a Jetson the JetPack build). A provider onnxruntime lists but cannot start
(CUDA / TensorRT libraries missing) is dropped by onnxruntime itself when the session is built:
:func:`session_fallback` compares the session's providers with the request.

TensorRT builds an engine per graph on the first run (minutes on a Jetson); with
``trt_engine_cache_enable`` it is written to ``trt_cache_dir`` and reused on later starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import ConfigError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

SHORT_NAMES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}
CHAINS = {TENSORRT: (TENSORRT, CUDA, CPU), CUDA: (CUDA, CPU), CPU: (CPU,)}


def provider_name(name: str) -> str:
    """onnxruntime's name of provider ``name`` (short or full); ConfigError for any other."""
    full = SHORT_NAMES.get(name.strip().lower(), name.strip())
    if full not in CHAINS:
        raise ConfigError(f"onnxruntime provider must be one of {sorted(set(SHORT_NAMES))} "
                          f"(or {sorted(CHAINS)}), got {name!r}")
    return full


@dataclass(frozen=True)
class ProviderChoice:
    """The providers to build sessions with, and why any requested one is missing.

    Attributes:
        requested: the full chain asked for, in order.
        names: the providers of that chain this onnxruntime has (ends with the CPU provider).
        options: per name, its provider options (TensorRT: the engine cache).
        reason: why requested providers were dropped; ``""`` when none were.
    """

    requested: tuple[str, ...]
    names: tuple[str, ...]
    options: tuple[dict, ...]
    reason: str = ""

    @property
    def session_providers(self) -> list[Any]:
        """The ``providers=`` argument of ``onnxruntime.InferenceSession``."""
        return [(n, o) if o else n for n, o in zip(self.names, self.options)]

    @property
    def fell_back(self) -> bool:
        return bool(self.reason)


def resolve_providers(
    requested: Union[None, str, Sequence[str]],
    available: Sequence[str],
    trt_cache_dir: Optional[Union[str, os.PathLike]] = None,
    trt_fp16: bool = False,
) -> ProviderChoice:
    """The chain for ``requested`` (default ``cpu``) restricted to ``available``
    (``onnxruntime.get_available_providers()``), with TensorRT's engine cache in ``trt_cache_dir``."""
    if requested is None or requested == "" or requested == []:
        requested = ["cpu"]
    if isinstance(requested, str):
        requested = requested.split(",")
    chain: list[str] = []
    for name in requested:
        for p in CHAINS[provider_name(name)]:
            if p not in chain:
                chain.append(p)
    if chain[-1] != CPU:
        chain = [p for p in chain if p != CPU] + [CPU]
    names = [p for p in chain if p in available or p == CPU]
    missing = [p for p in chain if p not in names]
    reason = ""
    if missing:
        reason = (f"{', '.join(missing)} not in this onnxruntime (it has {', '.join(available) or 'none'}; "
                  f"GPU providers need the onnxruntime-gpu package): running on {names[0]}")
    options = []
    for p in names:
        if p == TENSORRT:
            opts: dict = {"trt_fp16_enable": bool(trt_fp16)}
            if trt_cache_dir is not None:
                path = str(Path(trt_cache_dir).expanduser())
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=path,
                            trt_timing_cache_enable=True, trt_timing_cache_path=path)
            options.append(opts)
        else:
            options.append({})
    return ProviderChoice(tuple(chain), tuple(names), tuple(options), reason)


def session_fallback(choice: ProviderChoice, session_providers: Sequence[str]) -> str:
    """Why a built session runs on another provider than ``choice``'s first ("" when it does not):
    onnxruntime drops a provider it lists but cannot start (its libraries missing)."""
    if not session_providers or session_providers[0] == choice.names[0]:
        return ""
    dropped = [p for p in choice.names if p not in session_providers]
    return (f"onnxruntime could not start {', '.join(dropped)} (CUDA / TensorRT libraries; see its log): "
            f"running on {session_providers[0]}")

"""onnxruntime execution providers (runtime/providers.py): the request resolved against what this
onnxruntime has, the CPU fallback with its reason, and the provider a real tracker runs on."""
from __future__ import annotations

import numpy as np
import pytest

from utptrack_ros.errors import ConfigError, InputError
from utptrack_ros.runtime.ort_telemetry import import_onnxruntime
from utptrack_ros.runtime.providers import CPU, CUDA, TENSORRT, resolve_providers, session_fallback
from utptrack_ros.tracker import Tracker

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_requests_expand_to_chains_ending_on_the_cpu(tmp_path) -> None:
    trt = resolve_providers("tensorrt", GPU_BUILD, tmp_path / "engines", trt_fp16=True)
    assert trt.names == (TENSORRT, CUDA, CPU) and not trt.fell_back
    options = dict(zip(trt.names, trt.options))[TENSORRT]
    assert options["trt_engine_cache_enable"] is True and options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert trt.session_providers[0] == (TENSORRT, options) and trt.session_providers[1:] == [CUDA, CPU]
    assert resolve_providers("cuda", GPU_BUILD).names == (CUDA, CPU)
    assert resolve_providers(["CPUExecutionProvider"], GPU_BUILD).names == (CPU,)
    assert resolve_providers(None, GPU_BUILD).names == (CPU,)
    with pytest.raises(ConfigError, match="provider must be one of"):
        resolve_providers("rocm", GPU_BUILD)


def test_missing_gpu_providers_fall_back_with_a_reason() -> None:
    available = import_onnxruntime().get_available_providers()
    if CUDA in available:
        pytest.skip("this onnxruntime has CUDA: nothing falls back")
    choice = resolve_providers("tensorrt", available)
    assert choice.names == (CPU,) and choice.fell_back
    assert TENSORRT in choice.reason and CUDA in choice.reason and "onnxruntime-gpu" in choice.reason
    # a provider onnxruntime lists but cannot start is dropped by the session itself
    listed = resolve_providers("cuda", GPU_BUILD)
    assert session_fallback(listed, [CPU]).startswith("onnxruntime could not start CUDAExecutionProvider")
    assert session_fallback(listed, [CUDA, CPU]) == ""


def test_a_tracker_asking_for_cuda_runs_on_the_cpu_provider_and_says_why(tmp_path, monkeypatch) -> None:
    if CUDA in import_onnxruntime().get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setenv("UTPTRACK_PREBUILT_ONNX", "0")
    with pytest.raises(InputError, match="backend must be"):
        Tracker.from_pretrained("tiny", backend="tensorrt")
    with pytest.raises(ConfigError, match="provider must be one of"):
        Tracker.from_pretrained("tiny", backend="onnxruntime:rocm", onnx_cache=tmp_path)
    tracker = Tracker.from_pretrained("tiny", backend="onnxruntime:cuda", onnx_cache=tmp_path)
    assert tracker.backend == "onnxruntime"
    assert tracker.network.provider == CPU
    assert "CUDAExecutionProvider not in this onnxruntime" in tracker.network.provider_reason
    image = np.random.default_rng(2).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    tracker.init(image, [100, 80, 40, 50])
    assert tracker.track(image).box.is_finite()

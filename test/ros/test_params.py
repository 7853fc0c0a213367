"""Parameter validation (pure: no node) and the diagnostics status rules."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from utptrack_ros.config import BudgetConfig, PruneConfig, TrackerConfig
from utptrack_ros.errors import ConfigError
from utptrack_ros.models import default_tracker_config

pytest.importorskip("rclpy")
from utptrack_ros.ros import diagnostics as diag  # noqa: E402
from utptrack_ros.ros.params import (  # noqa: E402
    CORE_PARAMS,
    PARAM_SPECS,
    build_settings,
    effective_core_values,
    parameter_defaults,
    parameter_descriptor,
    settings_summary,
)
from utptrack_ros.ros.preparation import Progress, build_tracker  # noqa: E402
from utptrack_ros.ros.qos import describe, qos_profile  # noqa: E402
from testutils import small_o  # noqa: E402


def values(**kw):
    v = parameter_defaults()
    v.update({k.replace("__", "."): x for k, x in kw.items()})
    return v


def test_defaults_come_from_the_dataclasses_and_unset_core_values_mean_the_variant():
    d = parameter_defaults()
    assert d["sync.slop_s"] == 0.02 and d["model.name"] == "tiny" and d["input.qos_image"] == "reliable"
    assert all(d[name] is None for name in CORE_PARAMS)
    o384 = default_tracker_config("o384")
    s = build_settings(d, o384)
    assert s.tracker == o384 and s.tracker.search_factor == 5.0  # not TrackerConfig()'s 4.0
    s = build_settings(values(tracker__search_factor=3, tracker__aux__depth_max_mm=5000), o384)
    assert s.tracker.search_factor == 3.0 and s.tracker.aux.depth_max_mm == 5000.0


@pytest.mark.parametrize(
    "change, text",
    [
        ({"tracker__lost_threshold": 1.5}, "lost_threshold must be in [0, 1]"),
        ({"tracker__hann_window": 1}, "expected true/false"),
        ({"tracker__update_interval": 2.5}, "expected an integer"),
        ({"tracker__aux__thermal_mode": "agc"}, "thermal_mode"),
        ({"prune__keep_ratio_ce": 0.0}, "(0, 1]"),
        ({"prune__keep_ratio_ste": float("nan")}, "finite"),
        ({"sync__slop_s": -0.1}, "sync.slop_s"),
        ({"sync__queue_size": 0}, "sync.queue_size"),
        ({"input__modality": "lidar"}, "input.modality must be one of"),
        ({"input__qos_aux": "fast"}, "input.qos_aux must be one of"),
        ({"input__zero_stamp": "keep"}, "drop or now"),
        ({"input__prompt": "x" * 600}, "at most input.max_prompt_chars"),
        ({"model__device": "tpu"}, "model.device"),
        ({"model__backend": "tensorrt"}, "model.backend must be auto, torch, onnxruntime"),
        ({"model__backend": "onnxruntime", "model__device": "cuda"}, "runs on the CPU"),
        ({"model__dtype": "float64"}, "model.dtype must be float32, float16, bfloat16"),
        ({"model__backend": "onnxruntime", "model__dtype": "float16"}, "runs float32 only"),
        ({"output__stale_s": 0.0}, "output.stale_s"),
        ({"prune__mode": "fast"}, "prune.mode must be one of"),
        ({"prune__mode": "off", "prune__deadline_ms": 5.0}, "prune.deadline_ms needs prune.mode"),
        ({"prune__deadline_ms": -1.0}, "prune.deadline_ms"),
        ({"input__max_targets": 0}, "input.max_targets"),
    ],
)
def test_invalid_values_are_rejected_with_the_reason(change, text):
    with pytest.raises(ConfigError) as err:
        build_settings(values(**change), TrackerConfig())
    assert text in str(err.value)


def test_token_budget_parameters():
    assert build_settings(values(), TrackerConfig()).budget == BudgetConfig()
    s = build_settings(values(prune__mode="auto", prune__deadline_ms=4), TrackerConfig())
    assert s.budget.mode == "auto" and s.budget.deadline_ms == 4.0


def test_keep_ratios_and_prune_switch():
    variant = PruneConfig(ce=((1, 0.7), (2, 0.7)), dte=((2, 0.7),), ste=((2, 0.7),))
    s = build_settings(values(prune__keep_ratio_ce=0.5), TrackerConfig())
    p = s.prune_config(variant)
    assert p.ce == ((1, 0.5), (2, 0.5)) and p.dte == ((2, 0.7),)
    assert not build_settings(values(prune__enabled=False), TrackerConfig()).prune_config(variant).enabled
    eff = effective_core_values(build_settings(values(), TrackerConfig()), variant)
    assert eff["prune.keep_ratio_ce"] == 0.7 and eff["tracker.lost_threshold"] == TrackerConfig().lost_threshold


def test_qos_profiles():
    assert describe(qos_profile("reliable", 2)) == "RELIABLE, KEEP_LAST(2), VOLATILE"
    assert describe(qos_profile("sensor_data", 5)) == "BEST_EFFORT, KEEP_LAST(5), VOLATILE"
    with pytest.raises(ValueError):
        qos_profile("fast", 1)


def test_diagnostic_levels():
    base = dict(node_name="/n", lifecycle_state="active", active=True, now_ns=10 * 10**9, active_since_ns=0, stale_s=2.0)
    inp, trk = diag.build_statuses(diag.Snapshot(**base, last_rgb_ns=int(9.5e9)))
    assert inp.level == diag.OK and trk.level == diag.OK
    inp, _ = diag.build_statuses(diag.Snapshot(**base, last_rgb_ns=int(7e9)))
    assert inp.level == diag.STALE and "no RGB image for 3.0 s" in inp.message
    inp, _ = diag.build_statuses(diag.Snapshot(**base, last_rgb_ns=None))
    assert inp.level == diag.STALE and "since activation" in inp.message
    inp, _ = diag.build_statuses(diag.Snapshot(**base, last_rgb_ns=int(9.9e9), aux_fallback=True, modality="thermal", aux_silent_s=4.0))
    assert inp.level == diag.WARN and "thermal stream silent for 4.0 s" in inp.message
    _, trk = diag.build_statuses(diag.Snapshot(**{**base, "active": False, "lifecycle_state": "unconfigured"}, config_error="model load failed: x"))
    assert trk.level == diag.ERROR and trk.message == "model load failed: x"
    rate = diag.RateMeter(window_s=5.0)
    for k in range(11):
        rate.tick(k * 10**8)  # 10 Hz on the node clock
    assert rate.rate(10**9) == pytest.approx(10.0)
    assert rate.rate(20 * 10**9) == 0.0  # window passed


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_config_preset_validates():
    presets = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"rgb_cpu", "rgbd", "rgbt", "rgbe", "rgb_language", "o256_gpu", "s224_rgbd",
                                        "s224_rgbt", "s224_rgbe", "s224_language"}
    for path in presets:
        params = _flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
        s = build_settings({**parameter_defaults(), **params}, default_tracker_config(params["model.name"]))
        assert s.autostart, path.name


def test_every_parameter_has_a_descriptor_with_a_description_and_the_right_mutability():
    for name in parameter_defaults():
        d = parameter_descriptor(name)
        assert d.name == name and d.dynamic_typing
        assert len(d.description) > 20, f"{name}: no description"
        start_up = name in ("autostart", "prune.mode", "prune.deadline_ms") or name.startswith(("model.", "input."))
        assert d.read_only == start_up, f"{name}: read_only should be {start_up}"
    for path in ("model.weights", "model.onnx_cache"):  # paths: never settable by a peer at run time
        assert parameter_descriptor(path).read_only


def _numeric_specs():
    return sorted((n, s.bounds) for n, s in PARAM_SPECS.items() if s.bounds is not None)


def test_numeric_parameters_have_ranges_and_validation_uses_the_same_bounds():
    """The range ros2 param describe shows is what build_settings enforces, at both ends."""

    specs = _numeric_specs()
    names = {n for n, _ in specs}
    numeric = {n for n, v in parameter_defaults().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numeric |= {n for n, tp in CORE_PARAMS.items() if tp in (int, float)}
    assert numeric - {"autostart"} <= names, f"numeric parameters without a range: {sorted(numeric - names)}"
    base = values(input__init_buffer=1, input__max_image_pixels=1)  # the init-history budget stays out of the way
    for name, b in specs:
        d = parameter_descriptor(name)
        is_int = isinstance(b.low, int) and isinstance(b.high, int)
        rng = d.integer_range if is_int else d.floating_point_range
        assert len(rng) == 1 and (rng[0].from_value, rng[0].to_value) == (b.low, b.high), name
        step = 1 if is_int else max(1e-6, (b.high - b.low) * 1e-6)
        ok = [b.high] + ([] if b.low_open else [b.low]) + ([b.low + step] if b.low_open else [])
        # thermal_low_pct < thermal_high_pct also holds: each end is tried against the other's far end
        partner = {"tracker.aux.thermal_low_pct": ("tracker.aux.thermal_high_pct", 100.0, b.high - 1),
                   "tracker.aux.thermal_high_pct": ("tracker.aux.thermal_low_pct", 0.0, b.low + 1)}.get(name)
        where = dict(base)
        if partner:
            where[partner[0]] = partner[1]
            ok = [partner[2] if v == partner[1] else v for v in ok]
        for value in ok:
            build_settings({**where, name: value}, TrackerConfig())
        for value in ([b.high + step] + ([b.low] if b.low_open else [b.low - step])):
            with pytest.raises(ConfigError, match=name.rsplit(".", 1)[-1]):
                build_settings({**where, name: value}, TrackerConfig())


@pytest.mark.parametrize("name, value", [
    ("tracker.search_factor", 1e6), ("tracker.template_factor", 1e5), ("tracker.search_factor", 0.5),
    ("input.max_image_pixels", 10**9), ("input.init_buffer", 10**6), ("sync.queue_size", 10**6),
])
def test_what_sizes_an_allocation_is_bounded_with_the_reason(name, value):
    with pytest.raises(ConfigError) as err:
        build_settings(values(**{name.replace(".", "__"): value}), TrackerConfig())
    assert name.rsplit(".", 1)[-1] in str(err.value) and "must be in" in str(err.value) and "(" in str(err.value)
    if name.startswith("tracker."):  # the core refuses it too (Tracker.set_config, notebooks)

        with pytest.raises(ConfigError, match=name.rsplit(".", 1)[-1]):
            replace(TrackerConfig(), **{name.rsplit(".", 1)[-1]: value})


def test_the_init_history_budget_bounds_buffer_times_frame_size():
    build_settings(values(), TrackerConfig())  # the defaults fit
    with pytest.raises(ConfigError, match="GiB of buffered frames"):
        build_settings(values(input__init_buffer=1000), TrackerConfig())
    build_settings(values(input__init_buffer=1000, input__max_image_pixels=640 * 480), TrackerConfig())


def test_backend_auto_is_onnxruntime_on_the_cpu_and_torch_on_cuda():
    assert parameter_defaults()["model.backend"] == "auto"
    s = build_settings(values(), TrackerConfig())
    assert s.model.backend == "onnxruntime" and s.requested_backend == "auto"
    assert "backend=onnxruntime (auto)" in settings_summary(s)
    for device in ("cuda", "cuda:1"):
        assert build_settings(values(model__device=device), TrackerConfig()).model.backend == "torch"
    # device auto resolves like the tracker does (no CUDA on the CI machine: the CPU)

    expected = "torch" if torch.cuda.is_available() else "onnxruntime"
    assert build_settings(values(model__device="auto"), TrackerConfig()).model.backend == expected
    s = build_settings(values(model__backend="torch"), TrackerConfig())
    assert s.model.backend == "torch" and "(auto)" not in settings_summary(s)
    # onnxruntime runs float32 only: a half-precision network makes auto choose torch
    s = build_settings(values(model__dtype="bfloat16"), TrackerConfig())
    assert s.model.backend == "torch" and s.model.dtype == "bfloat16"


def test_model_dtype_reaches_the_tracker():
    tracker, _ = build_tracker(small_o(), build_settings(values(model__dtype="bfloat16"), TrackerConfig()), Progress())
    assert tracker.dtype == "bfloat16" and {p.dtype for p in tracker.model.parameters()} == {torch.bfloat16}


def test_every_cpu_preset_also_runs_on_cuda():
    """`device:=cuda` with a shipped preset resolves to torch instead of failing validation."""

    for path in sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml")):
        params = _flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
        for device, backend in (("cuda", "torch"), ("cpu", "onnxruntime")):
            merged = {**parameter_defaults(), **params, "model.device": device}
            s = build_settings(merged, default_tracker_config(params["model.name"]))
            assert s.model.backend == backend, (path.name, device)

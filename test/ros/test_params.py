"""Parameter validation (pure: no node) and the diagnostics status rules."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from utptrack_ros.config import PruneConfig, TrackerConfig  # noqa: E402
from utptrack_ros.errors import ConfigError  # noqa: E402
from utptrack_ros.models import default_tracker_config  # noqa: E402
from utptrack_ros.ros import diagnostics as diag  # noqa: E402
from utptrack_ros.ros.params import CORE_PARAMS, build_settings, effective_core_values, parameter_defaults  # noqa: E402
from utptrack_ros.ros.qos import describe, qos_profile  # noqa: E402


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
        ({"model__backend": "tensorrt"}, "model.backend must be torch or onnxruntime"),
        ({"model__backend": "onnxruntime", "model__device": "cuda"}, "runs on the CPU"),
        ({"output__stale_s": 0.0}, "output.stale_s"),
    ],
)
def test_invalid_values_are_rejected_with_the_reason(change, text):
    with pytest.raises(ConfigError) as err:
        build_settings(values(**change), TrackerConfig())
    assert text in str(err.value)


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
    from pathlib import Path

    import yaml

    presets = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"rgb_cpu", "rgbd", "rgbt", "rgbe", "rgb_language", "o256_gpu"}
    for path in presets:
        params = _flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"])
        s = build_settings({**parameter_defaults(), **params}, default_tracker_config(params["model.name"]))
        assert s.autostart, path.name


def test_launch_file_compiles_and_declares_the_arguments():
    import ast
    from pathlib import Path

    src = (Path(__file__).resolve().parents[2] / "launch" / "tracker.launch.py").read_text()
    tree = ast.parse(src)
    declared = {c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call)
                and getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    assert declared >= {"params_file", "weights", "modality", "namespace", "use_sim_time", "image", "aux_image", "autostart"}

"""Start-up-only parameters (model.*, input.*): each configuration is a node started with it.

The node refuses to change them at run time (test_param_descriptors.py), so bad weights and the
compressed input path are each tried on a node process of their own.
"""
from __future__ import annotations

import time

import pytest
import torch

from utptrack_ros.checkpoint import save_model
from utptrack_ros.config import PruneConfig
from utptrack_ros.models import create_model, default_tracker_config

pytest.importorskip("rclpy")
from ros_harness import REPO, Client, H, NodeProcess, W, domain_id, ros_env, start_node, target_box  # noqa: E402

pytestmark = pytest.mark.ros

PARAMS = """
/**:
  ros__parameters:
    autostart: true
    model: {{name: tiny, weights: '{weights}', seed: 0, device: cpu, num_threads: 1, backend: torch}}
    input: {{modality: rgb, compressed: {compressed}}}
    output: {{diagnostics_period_s: 0.25}}
"""


def start(tmp, tag: str, weights: str, compressed: bool = False) -> tuple[NodeProcess, Client]:
    params = tmp / f"{tag}.yaml"
    params.write_text(PARAMS.format(weights=weights, compressed=str(compressed).lower()))
    return start_node(params, ros_env(tag), tmp / f"{tag}.log"), Client(domain_id(tag))


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_bad_weights_fail_configure_with_the_reason_and_the_node_stays_up(case, ros_tmp):
    weights = ros_tmp / f"{case}.safetensors"
    if case == "corrupt":
        weights.write_bytes(b"\x00garbage" * 100)
    proc, client = start(ros_tmp, f"test_start_up_config_{case}", str(weights))
    try:
        d = client.wait_diagnostics(lambda d: d["tracker"][0] == 2, timeout=90, what="ERROR tracker status")
        assert "model load failed" in d["tracker"][1]
        assert ("no such file" in d["tracker"][1]) == (case == "missing"), d["tracker"][1]
        assert client.state() == "unconfigured"
        res = client.init((10.0, 10.0, 20.0, 20.0))
        assert not res.success and "the model is not configured" in res.message
        assert proc.proc.poll() is None
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_compressed_rgb_input(ros_tmp):
    proc, client = start(ros_tmp, "test_start_up_config_compressed", "random", compressed=True)
    try:
        client.log_containing("active on cpu", timeout=90)
        time.sleep(0.5)
        t = client.target_for(client.publish_compressed(0))
        assert t.state == 0 and t.modality == "rgb" and (t.image_width, t.image_height) == (W, H)
        res = client.init(target_box(0))
        assert res.success, res.message
        t = client.target_for(client.publish_compressed(1))
        assert t.frame_index == 1 and t.target_id == res.target_id and not t.aux_fallback
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_first_start_of_the_shipped_cpu_preset_exports_nothing(ros_tmp):
    """config/rgb_cpu.yaml (shipped tiny, backend auto = onnxruntime) with an empty user cache:
    the graphs prebuilt at install (share/utptrack_ros/onnx) are used; nothing is exported."""

    if not list((REPO / "install" / "share" / "utptrack_ros" / "onnx").glob("tiny-*/manifest.json")):
        pytest.skip("no prebuilt graphs in install/ (make setup)")
    tag = "test_start_up_config_first_start"
    env = ros_env(tag)
    cache = ros_tmp / "empty-user-cache"
    env["UTPTRACK_CACHE_DIR"] = str(cache)
    proc = start_node(REPO / "config" / "rgb_cpu.yaml", env, ros_tmp / f"{tag}.log")
    client = Client(domain_id(tag))
    try:
        assert "onnxruntime" in client.log_containing("active on cpu", timeout=90).msg
        assert not cache.exists(), "the first start exported graphs into the user cache"
        d = client.wait_diagnostics(lambda d: d["tracker"][2].get("backend") == "onnxruntime", what="backend")
        assert d["tracker"][2]["model"] == "tiny"
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_a_weights_file_of_another_variant_brings_its_tracker_settings(ros_tmp):
    """model.name o256 with a file that holds an OSTrack-384 network: the file decides the network,
    and the unset tracker.* parameters must mean that variant's settings (search factor 5, no
    template update), not o256's."""

    torch.manual_seed(0)
    small = create_model("ostrack384", embed_dim=32, depth=4, num_heads=2, head_channels=(32, 16, 8, 4),
                         prune=PruneConfig(ce=((1, 0.7), (2, 0.7), (3, 0.7)), tta_mode="none"))
    weights = save_model(small, ros_tmp / "ostrack384_small.safetensors")
    expected, o256 = default_tracker_config("ostrack384"), default_tracker_config("o256")
    assert (expected.search_factor, expected.update_interval) != (o256.search_factor, o256.update_interval)
    tag = "test_start_up_config_variant"
    params = ros_tmp / f"{tag}.yaml"
    params.write_text(PARAMS.format(weights=str(weights), compressed="false").replace("name: tiny", "name: o256"))
    proc, client = start_node(params, ros_env(tag), ros_tmp / f"{tag}.log"), Client(domain_id(tag))
    try:
        client.log_containing("active on cpu", timeout=120)
        values = client.get_params(["tracker.search_factor", "tracker.update_interval"])
        assert values == [expected.search_factor, expected.update_interval], values
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]


def test_prune_mode_auto_measures_chooses_and_says_why(ros_tmp):
    """prune.mode auto: at activate the node times the unpruned and the configured forward here,
    runs the cheaper one, caches the table, and says which and why in the log and /diagnostics."""
    tag = "test_start_up_config_budget"
    params = ros_tmp / f"{tag}.yaml"
    cache = ros_tmp / "budget_cache"
    params.write_text(PARAMS.format(weights="random", compressed="false").replace(
        "output: {diagnostics_period_s: 0.25}",
        "output: {diagnostics_period_s: 0.25}\n    prune: {mode: auto}").replace(
        "backend: torch}", f"backend: torch, onnx_cache: '{cache}'}}"))
    proc, client = start_node(params, ros_env(tag), ros_tmp / f"{tag}.log"), Client(domain_id(tag))
    try:
        line = client.log_containing("token budget: auto:", timeout=120).msg
        chosen = line.split("token budget: auto: ")[1].split()[0]
        chosen = line.split("staying ")[1].split()[0] if chosen == "staying" else chosen
        assert chosen in ("unpruned", "configured"), line
        assert list((cache / "budget").glob("*.json")), "no cost table cached"
        d = client.wait_diagnostics(lambda d: d["tracker"][2].get("token budget", "").startswith("auto:"),
                                    what="the token budget on /diagnostics")
        assert "batch 1" in d["tracker"][2]["token budget"]
        client.publish(0)
        time.sleep(0.3)
        assert client.init(target_box(0)).success
        t = client.target_for(client.publish(1))
        assert (t.kept_token_fraction == 1.0) == (chosen == "unpruned"), (chosen, t.kept_token_fraction)
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]

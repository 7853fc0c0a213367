"""Parameter descriptors over real DDS: what `ros2 param describe` shows, and what `ros2 param
set` may change (start-up-only parameters, paths above all, are refused; live ones are range-checked)."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters  # noqa: E402
from ros_harness import Client, domain_id, ros_env, start_node  # noqa: E402

from utptrack_ros.ros.params import parameter_defaults  # noqa: E402

pytestmark = pytest.mark.ros

PARAMS = """
/**:
  ros__parameters:
    autostart: false
    model: {name: tiny, weights: random, seed: 0, device: cpu, num_threads: 1, backend: torch}
"""


@pytest.fixture(scope="module")
def node(ros_tmp):
    params = ros_tmp / "params.yaml"
    params.write_text(PARAMS)
    tag = "test_param_descriptors"
    proc = start_node(params, ros_env(tag), ros_tmp / "node.log")
    client = Client(domain_id(tag))
    try:
        yield proc, client
    finally:
        client.close()
        proc.stop()


def _call(client: Client, srv_type, name: str, request):
    c = client.node.create_client(srv_type, f"{client.ns}/{name}")
    try:
        return client.call(c, request)
    finally:
        client.node.destroy_client(c)


def describe(client: Client, names: list[str]) -> dict:
    res = _call(client, DescribeParameters, "describe_parameters", DescribeParameters.Request(names=names))
    return dict(zip(names, res.descriptors))


def get(client: Client, name: str):
    return _call(client, GetParameters, "get_parameters", GetParameters.Request(names=[name])).values[0]


def test_describe_shows_descriptions_ranges_and_read_only(node):
    _, client = node
    names = sorted(parameter_defaults())
    d = describe(client, names)
    assert all(len(d[n].description) > 20 for n in names), [n for n in names if not d[n].description]
    r = d["tracker.search_factor"].floating_point_range
    assert len(r) == 1 and (r[0].from_value, r[0].to_value) == (1.0, 8.0)
    r = d["input.qos_depth"].integer_range
    assert len(r) == 1 and (r[0].from_value, r[0].to_value) == (1, 100)
    assert d["model.onnx_cache"].read_only and d["model.weights"].read_only and d["input.modality"].read_only
    assert not d["tracker.lost_threshold"].read_only and not d["sync.slop_s"].read_only
    assert "search crop side" in d["tracker.search_factor"].additional_constraints


def test_start_up_parameters_are_refused_at_run_time(node):
    _, client = node
    for name, value in (("model__onnx_cache", "/tmp/../etc/utptrack"), ("model__weights", "/etc/shadow"),
                        ("input__modality", "depth"), ("autostart", True)):
        res = client.set_params(**{name: value})[0]
        assert not res.successful and "read-only" in res.reason, (name, res.reason)
    assert get(client, "model.onnx_cache").string_value == ""
    assert get(client, "model.weights").string_value == "random"


def test_core_parameters_are_filled_at_configure_and_range_checked_live(node):
    _, client = node
    assert get(client, "tracker.search_factor").type == 0  # declared without a value
    assert client.transition(Transition.TRANSITION_CONFIGURE)
    assert get(client, "tracker.search_factor").double_value == 4.0  # the variant's, filled in
    res = client.set_params(tracker__search_factor=1e6)[0]
    assert not res.successful and "tracker.search_factor" in res.reason
    res = client.set_params(tracker__template_factor=1e5)[0]
    assert not res.successful and "tracker.template_factor" in res.reason
    assert client.set_params(tracker__search_factor=6.0)[0].successful
    assert get(client, "tracker.search_factor").double_value == 6.0
    assert client.set_params(sync__slop_s=0.05)[0].successful

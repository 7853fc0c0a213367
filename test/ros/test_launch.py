"""launch/tracker.launch.py: the params file decides unless an argument is given, and everything
the launch starts (the camera driver too) runs under the FastDDS transport profile.

Always: the launch file read statically (its DeclareLaunchArgument names and defaults).
With launch_ros importable (a ROS 2 install; not on PyPI): the file run through the launch API
the way `ros2 launch` does (ros2launch's launch_a_launch_file), the node resolved from the
repo's install/ through the ament index, its lifecycle state read over DDS.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from ros_harness import REPO, Client, domain_id, ros_env  # noqa: E402

pytestmark = pytest.mark.ros

LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"
PROFILE = REPO / "config" / "fastdds_large_shm.xml"


def declared_arguments() -> dict[str, ast.Call]:
    tree = ast.parse(LAUNCH_FILE.read_text())
    return {c.args[0].value: c for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, "id", "") == "DeclareLaunchArgument"}


def keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def module_constant(name: str):
    tree = ast.parse(LAUNCH_FILE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == name)
    return ast.literal_eval(node.value)


def test_launch_file_declares_the_arguments():
    declared = declared_arguments()
    assert set(declared) >= {"params_file", "weights", "model", "modality", "device", "backend", "namespace",
                             "use_sim_time", "autostart", "image", "aux_image", "fastdds_profile", "camera_launch",
                             "camera_args", "camera_info"}


def test_arguments_that_set_parameters_default_to_empty_so_the_params_file_wins():
    """An argument mapped to a node parameter is passed only when given: its default is '' (the
    old launch file always passed autostart=true, overriding a YAML's autostart: false)."""
    declared = declared_arguments()
    overrides = module_constant("OVERRIDES")
    assert overrides["autostart"] == "autostart" and overrides["backend"] == "model.backend"
    assert overrides["use_sim_time"] == "use_sim_time" and overrides["device"] == "model.device"
    for arg in overrides:
        default = keyword(declared[arg], "default_value")
        assert isinstance(default, ast.Constant) and default.value == "", f"{arg} must default to ''"
    assert module_constant("BACKENDS") == ["auto", "torch", "onnxruntime"]
    assert ast.unparse(keyword(declared["backend"], "choices")) == "[''] + BACKENDS"
    # no hard-coded parameter dict besides OVERRIDES
    tree = ast.parse(LAUNCH_FILE.read_text())
    literal_keys = {k.value for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys
                    if isinstance(k, ast.Constant)}
    assert not literal_keys & {"autostart", "use_sim_time", "model.backend"} - set(overrides), literal_keys


# -- through the launch API ------------------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import sys
    import launch
    path, *args = sys.argv[1:]
    service = launch.LaunchService(argv=args, noninteractive=True)
    service.include_launch_description(launch.LaunchDescription([launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.AnyLaunchDescriptionSource(path),
        launch_arguments=[tuple(a.split(":=", 1)) for a in args])]))
    sys.exit(service.run())
""")

CAMERA_LAUNCH = textwrap.dedent("""
    # stands in for a camera driver's launch file: prints what its process sees
    import sys
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch.substitutions import LaunchConfiguration

    def generate_launch_description():
        code = ("import os; print('CAMERA profile=' + os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', 'unset')"
                " + ' width=' + sys.argv[1] + ' params_file=' + sys.argv[2], flush=True)")
        return LaunchDescription([
            DeclareLaunchArgument("width", default_value="640"),
            DeclareLaunchArgument("params_file", default_value="camera-default"),
            ExecuteProcess(cmd=[sys.executable, "-c", "import sys; " + code,
                                LaunchConfiguration("width"), LaunchConfiguration("params_file")], output="screen"),
        ])
""")

NO_AUTOSTART = """
/**:
  ros__parameters:
    autostart: false
    model: {name: tiny, weights: random, seed: 0, device: cpu, num_threads: 1, backend: torch}
"""


@pytest.fixture(scope="module")
def launch_env(ros_tmp):
    pytest.importorskip("launch_ros", reason="launch_ros (a ROS 2 install) not importable")
    if not (REPO / "install" / "lib" / "utptrack_ros" / "utptrack_node").is_file():
        pytest.skip("no install/ (make setup)")
    (ros_tmp / "driver.py").write_text(DRIVER)
    (ros_tmp / "camera.launch.py").write_text(CAMERA_LAUNCH)
    (ros_tmp / "no_autostart.yaml").write_text(NO_AUTOSTART)
    env = ros_env("test_launch")
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(REPO / "install"), sys.prefix, env.get("AMENT_PREFIX_PATH", "")])
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE")  # the launch file sets it (or the test does)
    return env


class Launch:
    def __init__(self, tmp: Path, env: dict, *args: str) -> None:
        self.log_path = tmp / f"launch-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(tmp / "driver.py"), str(LAUNCH_FILE), *args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 90.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return self.log()
            assert self.proc.poll() is None, f"launch exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} in the launch log:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 2)  # SIGINT, as Ctrl-C in a terminal
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def test_the_params_file_decides_autostart_unless_the_argument_is_given(launch_env, ros_tmp):
    yaml_file = f"params_file:={ros_tmp / 'no_autostart.yaml'}"
    client = Client(domain_id("test_launch"))
    try:
        launch = Launch(ros_tmp, launch_env, yaml_file)
        try:
            launch.wait_log("executor:")
            assert client.state() == "unconfigured"  # autostart: false in the YAML
            time.sleep(3.0)
            assert client.state() == "unconfigured" and "configured:" not in launch.log()
        finally:
            assert launch.stop() == 0, launch.log()[-3000:]
        launch = Launch(ros_tmp, launch_env, yaml_file, "autostart:=true", "backend:=torch")
        try:
            launch.wait_log("active on cpu")
            assert client.state() == "active"
            assert "backend=torch" in launch.log()
        finally:
            assert launch.stop() == 0, launch.log()[-3000:]
    finally:
        client.close()


def test_the_camera_driver_runs_under_the_transport_profile_with_only_its_own_arguments(launch_env, ros_tmp):
    camera = f"camera_launch:={ros_tmp / 'camera.launch.py'}"
    nodes = f"params_file:={ros_tmp / 'no_autostart.yaml'}"
    launch = Launch(ros_tmp, launch_env, nodes, camera, "camera_args:=width:=1280")
    try:
        out = launch.wait_log("CAMERA profile=")
        line = next(x for x in out.splitlines() if "CAMERA profile=" in x)
        assert f"profile={Path(REPO / 'install/share/utptrack_ros/config/fastdds_large_shm.xml')}" in line, line
        assert "width=1280" in line and "params_file=camera-default" in line, line
        launch.wait_log("executor:")  # the tracker starts too
    finally:
        assert launch.stop() == 0, launch.log()[-3000:]
    # the environment's own profile is kept; fastdds_profile:='' leaves the environment alone
    for env_value, arg, expected in ((str(PROFILE), (), str(PROFILE)), (None, ("fastdds_profile:=",), "unset")):
        env = dict(launch_env)
        if env_value:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = env_value
        launch = Launch(ros_tmp, env, nodes, camera, *arg)
        try:
            line = next(x for x in launch.wait_log("CAMERA profile=").splitlines() if "CAMERA profile=" in x)
            assert f"profile={expected} " in line, line
        finally:
            assert launch.stop() == 0, launch.log()[-3000:]

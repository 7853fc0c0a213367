"""The install tree, resolved the way ``ros2 run`` and ``ros2 launch`` resolve it.

Two builds of the same CMakeLists.txt must give the same, complete tree:

* the venv layout ``make setup`` writes (scripts/build_interfaces.sh: colcon with
  ``-DUTPTRACK_VENV_BUILD=ON`` into ``install/``, merged);
* a plain ROS 2 workspace (``colcon build`` of ``src/utptrack_ros``, isolated layout), built here
  in a temporary folder against the venv's ROS wheels as a sourced ROS install would be.

For each: ``ament_index_python`` (as ros2run / launch_ros do) finds the package prefix from
``AMENT_PREFIX_PATH``; ``<prefix>/lib/utptrack_ros/utptrack_node`` exists, is executable and
runs (``--help`` exits 0 from a clean environment); ``share/utptrack_ros`` holds package.xml,
the launch file, the config presets and the presets' prebuilt onnxruntime graphs; the ament
resource marker is there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from utptrack_ros.runtime.prebuilt import check_manifest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
INSTALL = REPO / "install"
PACKAGE_SOURCES = ("CMakeLists.txt", "package.xml", "msg", "srv", "launch", "config", "utptrack_ros")

pytest.importorskip("ament_index_python")

# what `ros2 run utptrack_ros utptrack_node` and launch_ros's Node(package=..., executable=...)
# do: get_package_prefix, then <prefix>/lib/<package>/<executable> (ExecutableInPackage)
RESOLVE = r"""
import json, os, sys
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from ament_index_python import get_resource
pkg = "utptrack_ros"
prefix = get_package_prefix(pkg)
share = get_package_share_directory(pkg)
libexec = os.path.join(prefix, "lib", pkg)
exe = os.path.join(libexec, "utptrack_node")
marker, _ = get_resource("packages", pkg)
print(json.dumps({
    "prefix": prefix, "share": share, "libexec_exists": os.path.isdir(libexec),
    "executable": exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None,
    "share_files": sorted(os.path.relpath(os.path.join(d, f), share)
                          for d, _, fs in os.walk(share) for f in fs),
    "marker": marker is not None,
}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """What a robot's shell has after `source install/setup.bash`, minus everything else of ours."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def resolve(prefix_path: list[Path], pythonpath: str = "") -> dict:
    env = clean_env(AMENT_PREFIX_PATH=os.pathsep.join(str(p) for p in prefix_path))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", RESOLVE], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_tree(found: dict, prefix: Path, pythonpath: str = "") -> set[str]:
    """The checks a robot relies on; returns the package's share files (for comparing layouts)."""
    assert Path(found["prefix"]) == prefix
    assert found["libexec_exists"], f"no {prefix}/lib/utptrack_ros: ros2 run / ros2 launch fail"
    assert found["executable"], f"no executable {prefix}/lib/utptrack_ros/utptrack_node"
    assert found["marker"], "no ament resource marker share/ament_index/resource_index/packages/utptrack_ros"
    files = set(found["share_files"])
    presets = {f"config/{p.name}" for p in (REPO / "config").iterdir()}
    assert {"package.xml", "launch/tracker.launch.py"} | presets <= files
    # the CPU presets' onnxruntime graphs, prebuilt at install, intact (runtime/prebuilt.py)

    graphs = sorted({f.split("/")[1] for f in files if f.startswith("onnx/") and f.endswith("/manifest.json")})
    assert graphs, "no prebuilt onnxruntime graphs in share/utptrack_ros/onnx"
    for folder in graphs:
        assert check_manifest(Path(found["share"]) / "onnx" / folder) is None, folder
    env = clean_env()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    run = subprocess.run([found["executable"], "--help"], env=env, cwd="/", capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage: utptrack_node" in run.stdout
    lib = sorted(p.name for p in (prefix / "lib" / "utptrack_ros").iterdir())
    return {f for f in files if f.split("/")[0] in ("launch", "config", "onnx") or f == "package.xml"} | {
        f"lib/{name}" for name in lib}


def _venv_tree() -> set[str]:
    if not (INSTALL / "share" / "utptrack_ros").is_dir():
        pytest.skip("no install/ (run make setup)")
    return check_tree(resolve([INSTALL, VENV]), INSTALL)


def test_make_setup_install_tree_runs_like_a_ros_workspace():
    _venv_tree()


@pytest.mark.slow
def test_plain_colcon_workspace_gives_the_same_tree(tmp_path):
    """A ROS 2 workspace build of the repo (~1 min on 2 cores: rosidl generation, compile, graph export)."""
    venv_files = _venv_tree()
    src = tmp_path / "ws" / "src" / "utptrack_ros"
    src.mkdir(parents=True)
    for item in PACKAGE_SOURCES:
        path = REPO / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / item)
    ws = tmp_path / "ws"
    # the venv's ROS wheels play the sourced /opt/ros/<distro>
    env = clean_env(AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    build = subprocess.run(
        [str(VENV / "bin" / "colcon"), "build", "--event-handlers", "console_cohesion+", "summary-", "status-",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    prefix = ws / "install" / "utptrack_ros"
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = prefix / "lib" / pyver / "site-packages"
    assert (site / "utptrack_ros" / "ros" / "main.py").is_file(), "Python package not installed"
    assert (site / "utptrack_ros" / "msg").is_dir(), "generated interfaces not installed"
    found = resolve([prefix, VENV], pythonpath=str(site))
    ws_files = check_tree(found, prefix, pythonpath=str(site))
    assert ws_files == venv_files

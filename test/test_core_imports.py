"""The core stays usable without ROS: rclpy and the ROS message packages are imported only by
``utptrack_ros/ros/`` (the node) and ``utptrack_ros/replay/`` (the bag replay's player); every
other module says so in its source and imports with them blocked."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import utptrack_ros
from utptrack_ros import MultiTracker, Tracker
from utptrack_ros.tracker import MultiTracker as Direct

PACKAGE = Path(__file__).resolve().parents[1] / "utptrack_ros"
ROS_LAYERS = ("ros", "replay")  # the only subpackages that may import ROS
ROS_PACKAGES = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "rosgraph_msgs", "builtin_interfaces", "std_msgs",
                "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "lifecycle_msgs", "tf2_ros", "message_filters",
                "launch", "launch_ros", "utptrack_ros.msg", "utptrack_ros.srv")


def _core_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in ROS_LAYERS]


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ros_imports(path: Path) -> list[str]:
    """ROS imports anywhere in the file (function-local ones too), as ``line N: name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # relative imports of the ROS layers (``from .ros import ...``, ``from ..replay.x import ...``)
            names = [f"utptrack_ros.{node.module}"] if node.module and node.module.split(".")[0] in ROS_LAYERS else []
        for name in names:
            if any(name == r or name.startswith(r + ".") for r in ROS_PACKAGES) or any(
                    name == f"utptrack_ros.{layer}" or name.startswith(f"utptrack_ros.{layer}.") for layer in ROS_LAYERS):
                found.append(f"line {node.lineno}: {name}")
                break
    return found


def test_only_ros_and_replay_import_ros():
    """No module outside ros/ and replay/ imports rclpy, a message package or those two layers,
    not even inside a function. ``cli.py`` names its verbs' modules as strings (importlib)."""
    assert len(_core_files()) > 50
    found = {str(p.relative_to(PACKAGE)): _ros_imports(p) for p in _core_files()}
    found = {k: v for k, v in found.items() if v and k != "demo.py"}
    assert not found, f"ROS imports outside ros/ and replay/: {found}"
    # the demo is the one core-side caller of the replay, and only inside its run(): checked apart
    demo = _ros_imports(PACKAGE / "demo.py")
    assert demo and all("utptrack_ros.replay" in d for d in demo)
    assert _ros_imports(PACKAGE / "replay" / "player.py")  # the walker does see ROS imports


def test_core_imports_without_rclpy():
    """Every module outside ros/ and replay/ imports with rclpy and the message packages blocked."""
    modules = [_module(p) for p in _core_files() if p.name != "__main__.py"]
    code = (
        "import sys\n"
        f"for name in {[r for r in ROS_PACKAGES if '.' not in r]!r}:\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "from utptrack_ros import Tracker, create_model\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_class_the_readme_documents_for_the_core_is_importable_from_the_package():
    """README "The core in Python" names these beside ``Tracker``: each must be a public
    attribute of ``utptrack_ros`` (listed in ``__all__``), not only of a submodule."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("## The core in Python")
    section = readme[start:readme.index("\n## ", start + 1)]
    names = set(re.findall(r"`([A-Z][a-z]+[A-Za-z]*)`", section)) | set(
        re.findall(r"from utptrack_ros import ([A-Za-z, ]+)", section)[0].replace(" ", "").split(","))
    names -= {"ValueError"}  # builtins named in passing
    assert {"Tracker", "MultiTracker", "Box"} <= names
    missing = sorted(n for n in names if n not in utptrack_ros.__all__ or not hasattr(utptrack_ros, n))
    assert not missing, f"documented in the README but not importable from utptrack_ros: {missing}"
    assert MultiTracker is Direct and Tracker.__module__ == MultiTracker.__module__

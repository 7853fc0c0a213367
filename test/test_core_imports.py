"""The core must stay usable without ROS: importing it with rclpy blocked works."""
from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "utptrack_ros",
    "utptrack_ros.types",
    "utptrack_ros.config",
    "utptrack_ros.boxes",
    "utptrack_ros.models",
    "utptrack_ros.models.text",
    "utptrack_ros.preprocess",
    "utptrack_ros.postprocess",
    "utptrack_ros.modalities",
    "utptrack_ros.spatial",
    "utptrack_ros.tracker",
]


def test_core_imports_without_rclpy():
    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'rosidl_runtime_py'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {CORE_MODULES!r}:\n    importlib.import_module(m)\n"
        "from utptrack_ros import Tracker, create_model\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_every_class_the_readme_documents_for_the_core_is_importable_from_the_package():
    """README "The core in Python" names these beside ``Tracker``: each must be a public
    attribute of ``utptrack_ros`` (listed in ``__all__``), not only of a submodule."""
    import re
    from pathlib import Path

    import utptrack_ros

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("## The core in Python")
    section = readme[start:readme.index("\n## ", start + 1)]
    names = set(re.findall(r"`([A-Z][a-z]+[A-Za-z]*)`", section)) | set(
        re.findall(r"from utptrack_ros import ([A-Za-z, ]+)", section)[0].replace(" ", "").split(","))
    names -= {"ValueError"}  # builtins named in passing
    assert {"Tracker", "MultiTracker", "Box"} <= names
    missing = sorted(n for n in names if n not in utptrack_ros.__all__ or not hasattr(utptrack_ros, n))
    assert not missing, f"documented in the README but not importable from utptrack_ros: {missing}"
    from utptrack_ros import MultiTracker, Tracker
    from utptrack_ros.tracker import MultiTracker as Direct

    assert MultiTracker is Direct and Tracker.__module__ == MultiTracker.__module__

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

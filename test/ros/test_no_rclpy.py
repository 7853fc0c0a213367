"""sensors.py and the pure parts of the ROS layer import with rclpy blocked (bag readers and
the sync unit tests rely on that)."""
from __future__ import annotations

import subprocess
import sys


def test_sensors_and_sync_import_without_rclpy():
    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs'):\n"
        "    sys.modules[name] = None\n"
        "import utptrack_ros.sensors, utptrack_ros.ros, utptrack_ros.ros.sync, utptrack_ros.ros.diagnostics\n"
        "import utptrack_ros.tracker\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    blocked = subprocess.run([sys.executable, "-c", "import sys; sys.modules['rclpy'] = None\nimport utptrack_ros.ros.node"],
                             capture_output=True, text=True, timeout=120)
    assert blocked.returncode != 0 and "rclpy" in blocked.stderr  # the node itself does need rclpy

"""pip install of utptrack_ros (the framework-free core, the CLI and the rclpy node code).

On a ROS 2 workspace the package is built by colcon through CMakeLists.txt (ament_cmake),
which also generates the msg/srv interfaces; this file serves `pip install -e .`.
"""
from setuptools import find_packages, setup

setup(
    name="utptrack_ros",
    version="0.1.0",
    description="UTPTrack: token-pruned one-stream ViT single-object tracking for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["utptrack_ros", "utptrack_ros.*"]),
    package_data={
        "utptrack_ros": ["py.typed", "weights/*"],
        "utptrack_ros.data": ["sources/*.json", "sources/*.md", "sources/*/*"],
        "utptrack_ros.train": ["recipes/*.yaml", "recipes/archive/*"],
    },
    include_package_data=True,
    entry_points={
        "console_scripts": [
            "utptrack = utptrack_ros.cli:main",
            "utptrack_node = utptrack_ros.ros.main:main",
        ],
    },
)

"""Launch the utptrack_ros tracker node (standard ROS 2 Python launch API; needs launch_ros).

    ros2 launch utptrack_ros tracker.launch.py \
        params_file:=$(ros2 pkg prefix utptrack_ros)/share/utptrack_ros/config/rgbd.yaml \
        image:=/camera/color/image_raw aux_image:=/camera/aligned_depth_to_color/image_raw

Without ros2 launch (this repo's venv), the same node starts with:

    utptrack_node --ros-args --params-file config/rgbd.yaml \
        -r image:=/camera/color/image_raw -r aux/image:=/camera/aligned_depth_to_color/image_raw
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

MODALITIES = ["rgb", "depth", "thermal", "event"]

# launch argument -> node parameter; an empty argument keeps the params file's value
OVERRIDES = {"weights": "model.weights", "model": "model.name", "modality": "input.modality", "device": "model.device",
             "backend": "model.backend"}
BACKENDS = ["auto", "torch", "onnxruntime"]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("utptrack_ros"), "config", "rgb_cpu.yaml"]),
            description="parameter preset (share/utptrack_ros/config/*.yaml) or your own YAML file"),
        DeclareLaunchArgument("weights", default_value="", description="weights file; empty = the params file's"),
        DeclareLaunchArgument("model", default_value="", description="variant: tiny, o256, o384, ...; empty = the params file's"),
        DeclareLaunchArgument("modality", default_value="", choices=[""] + MODALITIES,
                              description="auxiliary stream on aux/image; empty = the params file's"),
        DeclareLaunchArgument("device", default_value="", description="cpu, cuda, cuda:N or auto; empty = the params file's"),
        DeclareLaunchArgument("backend", default_value="", choices=[""] + BACKENDS,
                              description="auto (onnxruntime on the CPU, torch on CUDA), torch or onnxruntime; "
                                          "empty = the params file's (presets: auto)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("node_name", default_value="utptrack", description="node name"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="follow /clock (bag replay: ros2 bag play --clock)"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="configure + activate at start; false = leave it to a lifecycle manager"),
        DeclareLaunchArgument("image", default_value="image", description="RGB input (sensor_msgs/Image)"),
        DeclareLaunchArgument("image_compressed", default_value="image/compressed",
                              description="RGB input when input.compressed is true (sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument("aux_image", default_value="aux/image",
                              description="auxiliary input: depth / thermal / event sensor_msgs/Image"),
        DeclareLaunchArgument("aux_image_compressed", default_value="aux/image/compressed",
                              description="auxiliary input when input.aux_compressed is true"),
        DeclareLaunchArgument("prompt", default_value="prompt", description="language prompt (std_msgs/String)"),
        OpaqueFunction(function=_tracker_node),
    ])


def _tracker_node(context):
    """The node: a LifecycleNode whose own `autostart` parameter does configure + activate
    (works on every distro; launch_ros's LifecycleNode(autostart=...) needs >= 0.26)."""
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    extra = {param: arg(name) for name, param in OVERRIDES.items() if arg(name)}
    params = [
        arg("params_file"),
        {"use_sim_time": arg("use_sim_time") == "true", "autostart": arg("autostart") == "true", **extra},
    ]
    return [LifecycleNode(
        package="utptrack_ros",
        executable="utptrack_node",
        name=arg("node_name"),
        namespace=arg("namespace"),
        output="screen",
        parameters=params,
        remappings=[
            ("image", arg("image")),
            ("image/compressed", arg("image_compressed")),
            ("aux/image", arg("aux_image")),
            ("aux/image/compressed", arg("aux_image_compressed")),
            ("prompt", arg("prompt")),
        ],
    )]

"""Launch the utptrack_ros tracker node (standard ROS 2 Python launch API; needs launch_ros).

    ros2 launch utptrack_ros tracker.launch.py \
        params_file:=$(ros2 pkg prefix utptrack_ros)/share/utptrack_ros/config/rgbd.yaml \
        image:=/camera/color/image_raw aux_image:=/camera/aligned_depth_to_color/image_raw

With the camera driver started under the same transport profile (one launch):

    ros2 launch utptrack_ros tracker.launch.py params_file:=.../rgbd.yaml \
        camera_launch:=$(ros2 pkg prefix realsense2_camera)/share/realsense2_camera/launch/rs_launch.py \
        camera_args:="align_depth.enable:=true" \
        image:=/camera/camera/color/image_raw aux_image:=/camera/camera/aligned_depth_to_color/image_raw \
        camera_info:=/camera/camera/color/camera_info

Transport: FASTDDS_DEFAULT_PROFILES_FILE is set to ``fastdds_profile`` (default: the environment's
value, else share/utptrack_ros/config/fastdds_large_shm.xml) for every process this launch starts,
the camera driver included: with FastDDS's default transports 640x480 RGB-D frames reached the
node 2.6-2.8 s late. ``fastdds_profile:=''`` leaves the environment as it is.

Parameters: the params file decides; a launch argument left empty passes nothing, so it cannot
override the file (``autostart``, ``use_sim_time``, ``backend``, ``device``, ``model``, ``weights``,
``modality``).

Without ros2 launch (this repo's venv), the same node starts with:

    export FASTDDS_DEFAULT_PROFILES_FILE=$PWD/config/fastdds_large_shm.xml
    utptrack_node --ros-args --params-file config/rgbd.yaml \
        -r image:=/camera/color/image_raw -r aux/image:=/camera/aligned_depth_to_color/image_raw \
        -r camera_info:=/camera/color/camera_info
"""
import shlex

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, OpaqueFunction
from launch.actions import SetEnvironmentVariable
from launch.launch_description_sources import AnyLaunchDescriptionSource
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

MODALITIES = ["rgb", "depth", "thermal", "event"]
BACKENDS = ["auto", "torch", "onnxruntime"]
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"

# launch argument -> node parameter; an empty argument passes nothing (the params file's value)
OVERRIDES = {"weights": "model.weights", "model": "model.name", "modality": "input.modality", "device": "model.device",
             "backend": "model.backend", "autostart": "autostart", "use_sim_time": "use_sim_time"}
BOOLEANS = ("autostart", "use_sim_time")


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("utptrack_ros")
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "rgb_cpu.yaml"]),
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
        DeclareLaunchArgument("use_sim_time", default_value="", choices=["", "true", "false"],
                              description="follow /clock (bag replay: ros2 bag play --clock); empty = the params "
                                          "file's (default false)"),
        DeclareLaunchArgument("autostart", default_value="", choices=["", "true", "false"],
                              description="configure + activate at start (false = leave it to a lifecycle "
                                          "manager); empty = the params file's (presets: true)"),
        DeclareLaunchArgument("image", default_value="image", description="RGB input (sensor_msgs/Image)"),
        DeclareLaunchArgument("image_compressed", default_value="image/compressed",
                              description="RGB input when input.compressed is true (sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument("aux_image", default_value="aux/image",
                              description="auxiliary input: depth / thermal / event sensor_msgs/Image"),
        DeclareLaunchArgument("aux_image_compressed", default_value="aux/image/compressed",
                              description="auxiliary input when input.aux_compressed is true"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="the colour camera's sensor_msgs/CameraInfo (depth modality: ~/target_point)"),
        DeclareLaunchArgument("prompt", default_value="prompt", description="language prompt (std_msgs/String)"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(PROFILE_VARIABLE, default_value=PathJoinSubstitution(
                [share, "config", "fastdds_large_shm.xml"])),
            description=f"FastDDS XML profile set as {PROFILE_VARIABLE} for every process this launch starts "
                        "(the camera driver too); empty = leave the environment as it is"),
        DeclareLaunchArgument("camera_launch", default_value="",
                              description="a camera driver's launch file to start under the same transport "
                                          "profile (e.g. realsense2_camera's rs_launch.py); empty = none"),
        DeclareLaunchArgument("camera_args", default_value="",
                              description="arguments of camera_launch, 'name:=value name:=value'"),
        OpaqueFunction(function=_transport),
        OpaqueFunction(function=_camera),
        OpaqueFunction(function=_tracker_node),
    ])


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def _transport(context):
    """FASTDDS_DEFAULT_PROFILES_FILE for everything started after this (unless disabled)."""
    profile = _arg(context, "fastdds_profile")
    return [SetEnvironmentVariable(PROFILE_VARIABLE, profile)] if profile else []


def _camera(context):
    """The camera driver's launch file, with only its own arguments (ours do not leak into it)."""
    path = _arg(context, "camera_launch")
    if not path:
        return []
    pairs = [item.split(":=", 1) for item in shlex.split(_arg(context, "camera_args"))]
    bad = [":=".join(p) for p in pairs if len(p) != 2 or not p[0]]
    if bad:
        raise ValueError(f"camera_args: expected name:=value items, got {bad}")
    profile = _arg(context, "fastdds_profile")
    # scoped, not forwarding: a fresh context for the driver; the profile is set again inside it
    return [GroupAction(scoped=True, forwarding=False, actions=[
        *([SetEnvironmentVariable(PROFILE_VARIABLE, profile)] if profile else []),
        IncludeLaunchDescription(AnyLaunchDescriptionSource(path), launch_arguments=[tuple(p) for p in pairs]),
    ])]


def _tracker_node(context):
    """The node: a LifecycleNode whose own `autostart` parameter does configure + activate
    (works on every distro; launch_ros's LifecycleNode(autostart=...) needs >= 0.26)."""
    extra = {param: _arg(context, name) for name, param in OVERRIDES.items() if _arg(context, name)}
    for name in BOOLEANS:
        if name in extra:
            extra[name] = extra[name] == "true"
    params = [_arg(context, "params_file"), *([extra] if extra else [])]
    return [LifecycleNode(
        package="utptrack_ros",
        executable="utptrack_node",
        name=_arg(context, "node_name"),
        namespace=_arg(context, "namespace"),
        output="screen",
        parameters=params,
        remappings=[
            ("image", _arg(context, "image")),
            ("image/compressed", _arg(context, "image_compressed")),
            ("aux/image", _arg(context, "aux_image")),
            ("aux/image/compressed", _arg(context, "aux_image_compressed")),
            ("camera_info", _arg(context, "camera_info")),
            ("prompt", _arg(context, "prompt")),
        ],
    )]

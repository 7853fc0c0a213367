"""Rosbag replay evaluation through the live tracker node over DDS (docs/replay.md).

Pipeline (``evaluate``):

1. **Open and check every bag first** (``open_bag``): the colour, the chosen aux, the prompt and the
   ground-truth topics must exist with the expected message types; a ground-truth text file must
   have one row per colour frame. Errors name the bag, topic or file (``utptrack_ros.data``
   errors); nothing is started and nothing is written.
2. **Start the real node** (``start_replay_node`` -> ``NodeProcess``): the ``utptrack_node`` entry point in a subprocess
   with ``--params-file`` (the user's preset, then the replay's overrides: ``use_sim_time``,
   ``autostart``, model, weights, modality, keep ratios) and remaps ``image:=<colour topic>``,
   ``aux/image:=<aux topic>``, ``prompt:=<prompt topic>``. Player and node share a private
   ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the FastDDS large-SHM profile.
   One node serves all bags that need the same inputs; before every bag it is deactivated and
   activated again on the bag's clock (fresh target, sync queues and init buffer; the model stays
   loaded), and its /diagnostics counters are read as a baseline.
3. **Play each bag** (``Player``, an rclpy node in this process): publishes ``/clock`` from the
   recorded times (the node runs under ``use_sim_time``) and the recorded messages *as recorded*
   (serialized bytes, so headers and stamps are untouched) on their recorded topics. Frames up
   to the first annotated one are played one by one (each waits for the node's answer, proving
   the frame is in the node's init buffer); then ``~/init_target`` is called with that frame's
   stamp and GT box (and the bag's prompt). The remaining frames are played in the chosen mode:
   ``lockstep`` (the next frame waits for the answer to the previous one, up to
   ``frame_timeout_s``; no answer = missed frame), ``realtime`` or ``rate`` (recorded timing
   scaled by ``rate``; outputs collected as they come, the node drops what it cannot keep up
   with). Outputs on ``~/target`` are matched to inputs by header stamp; ``/diagnostics`` is
   recorded, and read again at the end of every bag (the clock is stepped on until the node's
   diagnostics timer fires) for the node's own counters.
4. **Compare and write** (``eval.offline.write_results``): the live run of each bag becomes a
   ``SequenceRun`` (boxes, publish and arrival times); comparison rows (the same model pruned
   and unpruned, OpenCV CSRT/KCF/MIL) run offline on the same decoded frames; one results folder
   and report (Markdown, HTML, PNG, JSON). Optionally the node's outputs are written to new bags.

Latency (ros2_benchmark vocabulary): *sent* = when the player published the colour message,
*received* = when its ``~/target`` arrived in the player (both ``time.monotonic_ns``), so the
latency is stamp-to-output through DDS, conversion, sync, the model and back. The node's own
``latency_ms`` / ``model_ms`` are kept per frame too.

Imports: this package and ``ros/`` are the only ones that import rclpy, and here only the
``Player`` (when it is created) and ``write_output_bag`` (message serialisation) do, so the bag
checks and the offline comparisons work without ROS.

Modules: ``options`` (``ReplayOptions``, ``NodeOptions``, ``ReplayError``, the choices), ``bags``
(checks and the messages to play), ``node_process`` (a node in a subprocess, the replay's node under test, the shared environment),
``player`` (the rclpy player: publishing, the node between bags, playing one bag into a
``BagRecord``), ``output_bag`` (the node's outputs as a bag), ``evaluation`` (many bags,
comparison rows, results), ``cli`` (``utptrack eval``).
"""
from __future__ import annotations

from ..data import BagTopics
from ..data.bag import bag_topic_types
from .bags import PlayFrame, ReplayBag, open_bag, read_play_frames
from .evaluation import comparison_specs, evaluate, replay_bags
from .node_process import (NodeProcess, find_share_file, node_command, params_yaml, private_domain_id,
                           replay_environment, start_replay_node)
from .options import (COMPARE_CHOICES, MODES, NodeOptions, ReplayError, ReplayOptions, parse_compare,
                      random_weights_file)
from .output_bag import write_output_bag
from .player import STATE_NAMES, Arrival, BagRecord, Player

__all__ = [
    "Arrival", "BagRecord", "BagTopics", "COMPARE_CHOICES", "MODES", "NodeOptions", "NodeProcess", "PlayFrame",
    "Player", "ReplayBag", "ReplayError", "ReplayOptions", "STATE_NAMES", "bag_topic_types", "comparison_specs",
    "evaluate", "find_share_file", "node_command", "open_bag", "params_yaml", "parse_compare", "private_domain_id",
    "random_weights_file", "read_play_frames", "replay_bags", "replay_environment", "start_replay_node",
    "write_output_bag",
]

"""The ROS 2 layer over the framework-free core: the only subpackage that imports rclpy.

Modules: ``node`` (TrackerNode, a lifecycle node: wiring only), ``main`` (entry point
``utptrack_node``: executor, autostart, signals), ``transitions`` (lifecycle transitions off the
executor), ``preparation`` (their heavy part: weights, tracker, warm-up, prompt encoder),
``tracking`` (the tracker and the target session behind one lock), ``session`` (the target: id,
init stamp, prompt, last result), ``inputs`` (synchroniser + init history + mailbox, time-line
restarts), ``sync`` (approximate-time pairing + newest-set mailbox, pure Python), ``params``
(parameters from the core's dataclass defaults, validation), ``qos`` (profiles from parameter
strings), ``messages`` (serialized images -> arrays, TrackResult -> messages, init request ->
box, debug image), ``diagnostics`` (counters and statuses on the node clock), ``guards``
(callbacks that answer or log every exception), ``trace`` (benchmark stage stamps). Importing this package imports nothing.
"""

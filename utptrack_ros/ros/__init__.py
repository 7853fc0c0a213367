"""The ROS 2 layer over the framework-free core: the only subpackage that imports rclpy.

Modules: ``node`` (TrackerNode, a lifecycle node: wiring only), ``params`` (parameters from
the core's dataclass defaults, validation), ``sync`` (approximate-time pairing + newest-set
mailbox, pure Python), ``qos`` (profiles from parameter strings), ``messages`` (TrackResult ->
messages, init request -> box, debug image), ``diagnostics`` (status from counters on the node
clock), ``main`` (entry point ``utptrack_node``). Importing this package imports nothing.
"""

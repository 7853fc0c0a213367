"""A node in a subprocess (``NodeProcess``: start, SIGINT, kill; the replay, the ROS tests and
the node benchmarks all start the node through it), the replay's node under test
(``start_replay_node``: its parameters and remaps), and the environment node and player share
(private ROS domain, localhost discovery, the FastDDS large-SHM profile)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from ..data.bag import COMPRESSED
from .bags import ReplayBag
from .options import NodeOptions, ReplayError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]  # utptrack_ros/replay/node_process.py -> the checkout


def find_share_file(relative: str) -> Optional[Path]:
    """A file of this package's share folder (``config/...``, ``msg/...``): the colcon install
    next to the generated interfaces, ``AMENT_PREFIX_PATH`` entries, then the source checkout."""
    candidates: list[Path] = []
    try:
        import utptrack_ros.msg as generated  # noqa: PLC0415 - the generated interfaces may not be built

        # <prefix>/lib/pythonX.Y/site-packages/utptrack_ros/msg/__init__.py -> <prefix>
        for location in getattr(generated, "__path__", []):
            prefix = Path(location).resolve().parents[4]
            candidates.append(prefix / "share" / "utptrack_ros" / relative)
    except ImportError:
        pass
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "utptrack_ros" / relative)
    candidates.append(REPO / relative)
    return next((c for c in candidates if c.is_file()), None)


def private_domain_id() -> int:
    """A ``ROS_DOMAIN_ID`` in 130..229 for this process (player and node only; discovery is
    limited to this host), away from the user's own ``ROS_DOMAIN_ID``."""
    user = os.environ.get("ROS_DOMAIN_ID", "")
    seed = zlib.crc32(f"{os.getpid()}:{time.time_ns()}".encode())
    domain = 130 + seed % 100
    if user.isdigit() and int(user) == domain:
        domain = 130 + (domain - 129) % 100
    return domain


def replay_environment(domain_id: int) -> dict[str, str]:
    """Environment shared by node and player: private domain, localhost discovery, the FastDDS
    profile for camera-sized messages (unless the user set one)."""
    env = {
        "ROS_DOMAIN_ID": str(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    }
    profile = find_share_file("config/fastdds_large_shm.xml")
    if profile is not None and not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


def node_command() -> list[str]:
    """The node's program: the installed ``utptrack_node`` script next to this Python, else
    ``python -m utptrack_ros.ros.main`` (the same entry point)."""
    script = Path(sys.executable).with_name("utptrack_node")
    if script.is_file():
        return [str(script)]
    return node_module_command()


def node_module_command() -> list[str]:
    """``python -m utptrack_ros.ros.main`` with this Python (the entry point of the source tree)."""
    return [sys.executable, "-m", "utptrack_ros.ros.main"]


def params_yaml(values: Mapping[str, Any]) -> str:
    """A ROS 2 parameters file for every node (``/**``); dotted names become nested keys."""
    nested: dict[str, Any] = {}
    for name, value in values.items():
        *groups, leaf = name.split(".")
        level = nested
        for g in groups:
            level = level.setdefault(g, {})
        level[leaf] = value
    return yaml.safe_dump({"/**": {"ros__parameters": nested}}, sort_keys=False)


class NodeProcess:
    """A node (by default the real ``utptrack_node``) in a subprocess, logging to a file; stopped
    the way a user stops it (SIGINT, then SIGKILL after a timeout).

    Args:
        args: command-line arguments after the program (``--ros-args ...``).
        env: the whole environment of the process.
        log_path: the process's stdout and stderr (the folder is created).
        program: the program and its own options; default :func:`node_command`.
        cwd: working directory of the process; default this process's.
        new_session: start the process in its own session, so a Ctrl-C in this terminal reaches
            only this process (which then stops the node itself).
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path, *,
                 program: Optional[Sequence[str]] = None, cwd: Optional[Path] = None,
                 new_session: bool = False) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.command = [*(node_command() if program is None else program), *args]
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(self.command, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=None if cwd is None else str(cwd), start_new_session=new_session)
        logger.info("node started (pid %d): %s", self.proc.pid, " ".join(self.command))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """The whole log so far ("" when it cannot be read)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


def start_replay_node(bag: ReplayBag, options: NodeOptions, domain_id: int, log_path: Path,
                      diagnostics_period_s: float = 1.0) -> NodeProcess:
    """The node under test of a replay: ``options`` and the bag's inputs as parameters (a params
    file beside the log) and remaps, in the replay's private domain (:func:`replay_environment`).

    Raises:
        ReplayError: ``options.params_file`` does not exist.
    """
    overrides: dict[str, Any] = {
        "use_sim_time": True,
        "autostart": True,
        "model.name": options.model,
        "model.weights": str(options.weights) if options.weights else "",
        "model.device": options.device,
        "model.num_threads": int(options.num_threads),
        "input.modality": bag.modality.value,
        "input.compressed": bag.color_type == COMPRESSED,
        "input.aux_compressed": bag.aux_type == COMPRESSED,
        "output.diagnostics_period_s": float(diagnostics_period_s),
    }
    if options.keep is not None:
        overrides.update({f"prune.keep_ratio_{c}": float(options.keep) for c in ("ce", "dte", "ste")})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    params = log_path.with_suffix(".params.yaml")
    params.write_text(params_yaml(overrides))
    args = ["--ros-args", "-r", f"__node:={options.node_name}"]
    if options.params_file is not None:
        if not Path(options.params_file).is_file():
            raise ReplayError(f"params file {options.params_file} does not exist")
        args += ["--params-file", str(options.params_file)]
    args += ["--params-file", str(params)]
    rgb_in = "image/compressed" if bag.color_type == COMPRESSED else "image"
    args += ["-r", f"{rgb_in}:={bag.topics.color}"]
    if bag.aux_topic:
        aux_in = "aux/image/compressed" if bag.aux_type == COMPRESSED else "aux/image"
        args += ["-r", f"{aux_in}:={bag.aux_topic}"]
    if bag.info_topic:
        args += ["-r", f"camera_info:={bag.info_topic}"]
    if bag.use_prompt and bag.topics.prompt:
        args += ["-r", f"prompt:={bag.topics.prompt}"]
    env = dict(os.environ)
    env.update(replay_environment(domain_id))
    return NodeProcess(args, env, log_path, new_session=True)

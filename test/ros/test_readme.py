"""The README is the reference for the node's interfaces: its message blocks are the files in
``msg/`` / ``srv/`` and its parameter table names every declared parameter (and nothing else).
docs/ros.md links to these sections instead of copying them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from utptrack_ros.ros.params import parameter_defaults

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def section(text: str, heading: str) -> str:
    """The lines after ``heading`` up to the next heading of the same or a higher level (lines
    inside fenced code blocks are not headings: message comments start with '#')."""
    level = len(heading.split(" ")[0])
    lines = text[text.index(heading) + len(heading):].splitlines(keepends=True)
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            break
        out.append(line)
    return "".join(out)


def table_parameter_names(cell: str) -> list[str]:
    """Names in a parameter table's first cell: `a.b`, `c` (= a.c) and `a.x_y` / `_z` (= a.x_z)."""
    names: list[str] = []
    tokens = re.findall(r"`([^`]+)`", cell)
    for tok in tokens:
        if tok.startswith("_"):
            names.append(names[-1].rsplit("_", 1)[0] + tok)
        elif "." not in tok and names and "." in names[0]:
            names.append(names[0].rsplit(".", 1)[0] + "." + tok)
        else:
            names.append(tok)
    return names


def test_table_parameter_names_expands_the_short_forms():
    assert table_parameter_names("`prune.keep_ratio_ce` / `_dte` / `_ste`") == [
        "prune.keep_ratio_ce", "prune.keep_ratio_dte", "prune.keep_ratio_ste"]
    assert table_parameter_names("`tracker.aux.depth_max_mm`, `thermal_mode`") == [
        "tracker.aux.depth_max_mm", "tracker.aux.thermal_mode"]
    assert table_parameter_names("`autostart`") == ["autostart"]


@pytest.mark.parametrize("path", ["msg/TrackedTarget.msg", "msg/TrackedTargets.msg", "srv/InitTarget.srv",
                                  "srv/DropTarget.srv"])
def test_readme_message_blocks_are_the_interface_files(path):
    text = section(README, "#### Messages")
    match = re.search(rf"`{re.escape(path)}`:\n```\n(.*?)```", text, flags=re.S)
    assert match, f"README 'Messages' has no block for {path}"
    assert match.group(1) == (REPO / path).read_text()


def test_readme_parameter_table_names_every_declared_parameter():
    rows = [line for line in section(README, "### Parameters").splitlines() if line.startswith("| `")]
    documented = [name for row in rows for name in table_parameter_names(row.split("|")[1])]
    declared = set(parameter_defaults()) | {"use_sim_time"}
    assert len(documented) == len(set(documented)), "a parameter is documented twice"
    assert set(documented) - declared == set(), "documented but not declared"
    assert declared - set(documented) == set(), "declared but missing from the README table"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_commands_address_the_node_the_launch_example_starts():
    """The examples after the robot launch call the node under the namespace that launch gives it."""
    node = section(README, "## The ROS 2 node")
    launches = [b for b in bash_blocks(node) if "ros2 launch utptrack_ros" in b]
    assert launches
    ns = {m for b in launches for m in re.findall(r"namespace:=(\S+)", b)}
    assert len(ns) == 1, f"one namespace in the launch examples, got {ns}"
    prefix = f"/{ns.pop()}/"
    calls = re.findall(r"ros2 (?:service call|param set|lifecycle set|topic pub --once|param describe) (\S+)", node)
    assert calls
    wrong = [c for c in calls if not c.startswith(prefix)]
    assert not wrong, f"commands not under {prefix}: {wrong}"


def test_readme_sets_the_transport_profile_before_starting_anything():
    for block in bash_blocks(README):
        lines = block.splitlines()
        exports = [i for i, line in enumerate(lines) if "FASTDDS_DEFAULT_PROFILES_FILE=" in line]
        starts = [i for i, line in enumerate(lines) if re.search(r"\butptrack_node\b|ros2 launch|ros2 run", line)]
        if exports and starts:
            assert max(exports) < min(starts), f"the profile is exported after a start in:\n{block}"


def test_readme_parameter_table_says_when_each_parameter_applies():
    """The 'when' column is what the node does: start-up = read-only descriptor, live = applied
    to the running tracker (LIVE_PREFIXES), configure = the rest."""
    # ROS only in this test: the README checks above run where rclpy is missing
    from utptrack_ros.ros.param_changes import LIVE_OUTPUT  # noqa: PLC0415
    from utptrack_ros.ros.params import LIVE_PREFIXES, parameter_descriptor  # noqa: PLC0415

    rows = [line.split("|") for line in section(README, "### Parameters").splitlines() if line.startswith("| `")]
    for row in rows:
        for name in table_parameter_names(row[1]):
            when = row[3].strip()
            if name == "use_sim_time":
                continue
            expected = ("start-up" if parameter_descriptor(name).read_only
                        else "live" if name.startswith(LIVE_PREFIXES) or name == LIVE_OUTPUT else "configure")
            assert when == expected, f"{name}: README says {when!r}, the node: {expected!r}"

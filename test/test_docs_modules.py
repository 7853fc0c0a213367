"""docs/architecture.md "Module map" names every module of ``utptrack_ros`` once, and nothing else:
a module added, renamed or removed without its line in the map fails here."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "utptrack_ros"


def mapped_modules() -> list[str]:
    """Module paths (relative to the package) listed in the map's code block, in order."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text[text.index("## Module map"):]
    block = section.split("```")[1]
    return [m.group(1) for line in block.splitlines() if (m := re.match(r"\s+(\S+\.py)\s+\S", line))]


def test_the_module_map_names_every_module_once() -> None:
    mapped = mapped_modules()
    tree = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
    assert len(tree) > 50  # the package, not an empty folder
    duplicates = sorted({m for m in mapped if mapped.count(m) > 1})
    assert not duplicates, f"named more than once in docs/architecture.md: {duplicates}"
    missing = sorted(set(tree) - set(mapped))
    assert not missing, f"modules missing from the module map in docs/architecture.md: {missing}"
    unknown = sorted(set(mapped) - set(tree))
    assert not unknown, f"the module map names modules that do not exist: {unknown}"

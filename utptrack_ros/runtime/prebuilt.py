"""onnxruntime graphs built at install time, found read-only before the user's export cache.

A first start of a shipped CPU preset would otherwise export its graphs (20-110 s on a 2-core
CPU) before the node can track. ``make setup`` and ``colcon build`` (CMakeLists.txt) run
``python -m utptrack_ros.ros.prebuild``, which calls :func:`prebuild_graphs` for every distinct
(variant, keep ratios) the presets run on onnxruntime, into ``<prefix>/share/utptrack_ros/onnx/``:

* one folder per export, named like the cache's (``<variant>-<fingerprint>``: the fingerprint
  hashes the weights, the model config with its keep ratios, the opset and the torch / package
  versions, :func:`~utptrack_ros.runtime.graph_names.graphs_folder`), so graphs are only ever used
  for the weights, keep ratios and versions they were exported from;
* a ``manifest.json`` naming the folder and the SHA-256 of every graph file, checked before use
  (a damaged or renamed folder is skipped with a WARN, never modified: the runtime then exports
  into the user cache as before).

Where: every ``<prefix>/share/utptrack_ros/onnx`` whose ``<prefix>`` holds this package's Python
files (``<prefix>/lib/pythonX.Y/site-packages/utptrack_ros``: a workspace, a Debian install, and
this repo's ``install/`` through ``utptrack_ros.pkg``) or is on ``AMENT_PREFIX_PATH``.
``UTPTRACK_PREBUILT_ONNX=0`` ignores them (benchmarks of the export).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

PREBUILT_ENV = "UTPTRACK_PREBUILT_ONNX"
MANIFEST = "manifest.json"
SHARE_SUBDIR = ("share", "utptrack_ros", "onnx")


def prebuilt_roots() -> list[Path]:
    """Existing ``share/utptrack_ros/onnx`` folders of the prefixes this package is installed in."""
    if os.environ.get(PREBUILT_ENV, "1") == "0":
        return []
    import utptrack_ros

    prefixes: list[Path] = []
    for entry in utptrack_ros.__path__:
        p = Path(entry).resolve()
        # <prefix>/lib/pythonX.Y/{site,dist}-packages/utptrack_ros
        if p.parent.name in ("site-packages", "dist-packages") and p.parents[1].name.startswith("python") \
                and p.parents[2].name == "lib":
            prefixes.append(p.parents[3])
    prefixes += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    roots: list[Path] = []
    for prefix in prefixes:
        root = prefix.joinpath(*SHARE_SUBDIR)
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path, folder: Optional[str] = None) -> Path:
    """``manifest.json`` in ``directory``: the folder's name (default: ``directory``'s; the final
    name when written in a staging folder) and the SHA-256 of each ``.onnx`` file in it."""
    files = {p.name: _sha256(p) for p in sorted(directory.glob("*.onnx"))}
    path = directory / MANIFEST
    path.write_text(json.dumps({"folder": folder or directory.name, "files": files}, indent=1, sort_keys=True))
    return path


def check_manifest(directory: Path) -> Optional[str]:
    """Why ``directory`` cannot be used (None = its files are the ones its manifest names)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        folder, files = manifest["folder"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable {MANIFEST}: {err}"
    if folder != directory.name:
        return f"{MANIFEST} names {folder!r}, not this folder (weights, keep ratios or versions differ)"
    present = {p.name for p in directory.glob("*.onnx")}
    if not files or present != set(files):
        return f"graph files {sorted(present)} differ from the manifest's {sorted(files)}"
    for name, digest in files.items():
        if _sha256(directory / name) != digest:
            return f"{name} does not match its SHA-256 in {MANIFEST} (damaged)"
    return None


def find_prebuilt(folder: str) -> Optional[Path]:
    """The installed, intact graphs folder named ``folder`` (``<variant>-<fingerprint>``), if any."""
    for root in prebuilt_roots():
        directory = root / folder
        if not (directory / MANIFEST).is_file():
            continue
        problem = check_manifest(directory)
        if problem is None:
            return directory
        log.warning("prebuilt onnxruntime graphs %s not used: %s", directory, problem)
    return None


def prebuild_graphs(out: Path, model: Any, opset: Optional[int] = None) -> Path:
    """Export the graphs the onnxruntime backend runs for ``model`` (with its keep ratios) into
    ``out/<variant>-<fingerprint>/`` with a manifest.

    ``model`` must be prepared exactly as :class:`~utptrack_ros.tracker.Tracker` prepares it for
    the runtime (pass ``Tracker.from_pretrained(name, prune=prune).model``), so the folder name is
    the one the runtime looks for. An intact folder of that name is kept as it is.
    """
    from .export import DEFAULT_OPSET, export_onnx
    from .graph_names import graphs_folder, weights_digest

    opset = DEFAULT_OPSET if opset is None else opset
    directory = Path(out) / graphs_folder(model.config, weights_digest(model), model.prune, opset)
    if (directory / MANIFEST).is_file() and check_manifest(directory) is None:
        log.info("prebuilt graphs %s up to date", directory)
        return directory
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_onnx(model, tmp, opset=opset)
        write_manifest(tmp, directory.name)
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory

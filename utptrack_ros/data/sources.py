"""Real image content for the generator: curated object cut-outs and backgrounds.

Reads ``utptrack_ros/data/sources/manifest.json`` (built by ``data.curate``; provenance and licences
in ``sources/README.md``) and, for backgrounds marked ``skimage:<name>``, ``skimage.data``. Images
are decoded on first use and cached per process. Nothing is downloaded.
"""
from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import skimage.data

from .errors import SourceLibraryError

SOURCES_DIR = Path(__file__).with_name("sources")
#: Files behind the ``skimage.data`` functions we use; read directly (importing skimage.io costs ~0.3 s).
SKIMAGE_FILES = {
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "astronaut": "astronaut.png",
    "chelsea": "chelsea.png", "coffee": "coffee.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "moon": "moon.png", "page": "page.png", "retina": "retina.jpg",
    "rocket": "rocket.jpg", "camera": "camera.png", "coins": "coins.png", "clock": "clock_motion.png",
    "motorcycle_left": "motorcycle_left.png", "text": "text.png",
}


def _skimage_data_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@dataclass(frozen=True)
class ObjectSource:
    """One object cut-out. ``fill == "texture"``: the RGB is meaningless, fill the mask with a texture."""

    name: str
    category: str
    path: Path
    fill: str
    holdout: bool

    def rgba(self) -> np.ndarray:
        """(h, w, 4) uint8 RGBA, alpha = object mask (cached)."""
        return _read_rgba(self.path)


@dataclass(frozen=True)
class BackgroundSource:
    name: str
    holdout: bool
    path: Optional[Path] = None
    skimage: Optional[str] = None

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB (cached)."""
        return _read_background(self.path, self.skimage)


@functools.lru_cache(maxsize=None)
def _read_rgba(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise SourceLibraryError(f"{path}: missing or not an RGBA PNG (rebuild with scripts/fetch_sources.sh)")
    rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    rgba.setflags(write=False)
    return rgba


@functools.lru_cache(maxsize=None)
def _read_background(path: Optional[Path], skimage_name: Optional[str]) -> np.ndarray:
    if path is not None:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceLibraryError(f"{path}: missing or unreadable background "
                                     "(rebuild with scripts/fetch_sources.sh)")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        data_dir = _skimage_data_dir()
        file = data_dir / SKIMAGE_FILES.get(str(skimage_name), "-") if data_dir else None
        if file is not None and file.is_file():
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is not None and image.ndim == 3:
                image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
        else:
            try:
                image = (skimage.data.stereo_motorcycle()[0] if skimage_name == "motorcycle_left"
                         else getattr(skimage.data, str(skimage_name))())
            except Exception as err:  # skimage raises ModuleNotFoundError/ValueError for non-bundled data
                raise SourceLibraryError(f"skimage.data.{skimage_name} is not available offline: {err}") from err
        if image is None:
            raise SourceLibraryError(f"{file}: unreadable scikit-image data file")
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.dtype.kind == "f" else image.astype(np.uint8)
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])
        h, w = rgb.shape[:2]
        if max(h, w) > 800:  # hubble / retina: keep decode-once memory small
            s = 800 / max(h, w)
            rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    rgb.setflags(write=False)
    return rgb


@dataclass(frozen=True)
class SourceLibrary:
    objects: tuple[ObjectSource, ...]
    backgrounds: tuple[BackgroundSource, ...]

    def select_objects(self, include_holdout: bool) -> tuple[ObjectSource, ...]:
        return tuple(o for o in self.objects if include_holdout or not o.holdout)

    def select_backgrounds(self, include_holdout: bool) -> tuple[BackgroundSource, ...]:
        return tuple(b for b in self.backgrounds if include_holdout or not b.holdout)


@functools.lru_cache(maxsize=4)
def load_library(root: Path = SOURCES_DIR) -> SourceLibrary:
    """The curated library under ``root`` (images load lazily)."""
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        objects = tuple(ObjectSource(o["name"], o["category"], root / o["file"], o.get("fill", "image"),
                                     bool(o.get("holdout", False))) for o in manifest["objects"])
        backgrounds = tuple(BackgroundSource(b["name"], bool(b.get("holdout", False)),
                                             path=root / b["file"] if "file" in b else None,
                                             skimage=None if "file" in b else b["source"].split(":", 1)[1])
                            for b in manifest["backgrounds"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SourceLibraryError(f"{manifest_path}: cannot read the source manifest ({err}); "
                                 "rebuild with scripts/fetch_sources.sh") from err
    if not objects or not backgrounds:
        raise SourceLibraryError(f"{manifest_path}: lists no objects or no backgrounds")
    return SourceLibrary(objects, backgrounds)


def random_patch(rng: np.random.Generator, library: SourceLibrary, width: int, height: int,
                 include_holdout: bool = True) -> np.ndarray:
    """(height, width, 3) uint8 crop of a random background at a random scale (a real texture)."""
    backgrounds = library.select_backgrounds(include_holdout)
    image = backgrounds[int(rng.integers(len(backgrounds)))].rgb()
    h, w = image.shape[:2]
    scale = rng.uniform(0.25, 1.0)
    cw, ch = max(8, int(w * scale)), max(8, int(h * scale))
    aspect = width / max(1, height)
    if cw / ch > aspect:
        cw = max(8, int(ch * aspect))
    else:
        ch = max(8, int(cw / aspect))
    cw, ch = min(cw, w), min(ch, h)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_AREA)

"""Maintainer tool: build the curated image sources shipped in ``utptrack_ros/data/sources/``.

Not imported at run time. ``scripts/fetch_sources.sh`` downloads the Debian ``opencv-doc``
package, unpacks it and runs::

    python -m utptrack_ros.data.curate --opencv-doc <unpacked>/usr/share/doc/opencv-doc/examples/data \
        --out utptrack_ros/data/sources

Objects are cut out of real photos (alpha channel, plain-background threshold, or GrabCut inside
a hand-picked rectangle) and saved as RGBA PNG crops; backgrounds are resized JPEGs. scikit-image
images serve as backgrounds at run time straight from ``skimage.data`` (no copy); object cut-outs
taken from them are shipped like the others. Every output is listed in ``manifest.json`` with its
source file and licence.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data

OPENCV_LICENCE = "Apache-2.0 (OpenCV sample data, Debian package opencv-doc 4.6.0+dfsg-12)"
SKIMAGE_LICENCE = "public domain / CC0 (scikit-image 0.26 skimage.data, see its docstrings)"
MAX_OBJECT_SIDE = 192
MAX_BACKGROUND_SIDE = 640


@dataclass(frozen=True)
class Cut:
    """One object to cut out.

    ``method``: ``alpha`` (image alpha channel), ``plain`` (differs from the border colour),
    ``grabcut`` (GrabCut initialised with ``rect``), ``mask`` (the image is a binary silhouette,
    filled with a real texture at run time), ``rect`` (the rectangle itself is the object).
    ``rect`` is (x0, y0, x1, y1) as fractions of the image size. ``component``: keep the n
    largest connected components as separate objects (0 = union of everything kept).
    """

    name: str
    source: str  # "opencv:<file>" or "skimage:<function>"
    category: str
    method: str
    rect: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    components: int = 1
    min_area: float = 0.002
    holdout: bool = False
    max_aspect: float = 0.0  # > 0: drop components whose bounding box is more elongated (merged blobs)
    close: int = 0  # morphological closing kernel (px) before hole filling
    categories: tuple[str, ...] = ()  # per-component categories (largest first), overrides category


CUTS: tuple[Cut, ...] = (
    Cut("opencv_logo", "opencv:opencv-logo.png", "ring", "alpha", (0.0, 0.0, 1.0, 0.72), components=3),
    Cut("smarties", "opencv:smarties.png", "candy", "plain", components=12, min_area=0.003,
        max_aspect=1.2),
    Cut("fish", "opencv:HappyFish.jpg", "fish", "plain", (0.25, 0.0, 1.0, 1.0), close=9),
    Cut("robot", "opencv:ml.png", "robot", "plain"),
    Cut("stuff", "opencv:stuff.jpg", "tool", "plain", (0.05, 0.0, 0.95, 0.98), components=3,
        min_area=0.001, close=7, categories=("pen", "lid", "ball")),
    Cut("apple", "opencv:apple.jpg", "apple", "grabcut", (0.05, 0.01, 0.94, 0.97)),
    Cut("orange", "opencv:orange.jpg", "orange", "grabcut", (0.05, 0.08, 0.92, 0.97), holdout=True),
    Cut("butterfly", "opencv:butterfly.jpg", "butterfly", "grabcut", (0.01, 0.12, 0.99, 0.9)),
    Cut("squirrel", "opencv:squirrel_cls.jpg", "squirrel", "grabcut", (0.3, 0.2, 0.68, 0.9)),
    Cut("football", "opencv:messi5.jpg", "ball", "grabcut", (0.59, 0.8, 0.72, 0.99)),
    Cut("book", "opencv:left.jpg", "book", "grabcut", (0.13, 0.26, 0.45, 0.86), holdout=True),
    Cut("toy_whale", "opencv:rubberwhale1.png", "toy", "grabcut", (0.35, 0.21, 0.57, 0.5)),
    Cut("lime", "opencv:fruits.jpg", "lime", "grabcut", (0.7, 0.12, 1.0, 0.56)),
    Cut("lemon", "opencv:fruits.jpg", "lemon", "grabcut", (0.6, 0.5, 1.0, 1.0), holdout=True),
    Cut("cereal_box", "opencv:box.png", "box", "rect", (0.02, 0.02, 0.98, 0.98)),
    Cut("cup", "skimage:coffee", "cup", "grabcut", (0.13, 0.04, 0.81, 0.99)),
    Cut("astronaut", "skimage:astronaut", "person", "grabcut", (0.06, 0.0, 0.7, 1.0)),
    Cut("shuttle", "skimage:astronaut", "rocket", "grabcut", (0.68, 0.01, 0.89, 0.58), holdout=True),
    Cut("rocket", "skimage:rocket", "rocket", "grabcut", (0.43, 0.2, 0.58, 0.93)),
    Cut("cameraman", "skimage:camera", "person", "grabcut", (0.0, 0.1, 0.73, 1.0), holdout=True),
    Cut("motorcycle", "skimage:motorcycle_left", "motorcycle", "grabcut", (0.03, 0.2, 0.93, 0.99)),
    Cut("horse", "skimage:horse", "horse", "mask"),
    Cut("coins", "skimage:coins", "coin", "otsu", components=6, min_area=0.004, max_aspect=1.25),
    Cut("skimage_logo", "skimage:logo", "logo", "alpha", holdout=True),
)

BACKGROUNDS: tuple[tuple[str, str, bool], ...] = (
    # (name, source, holdout)
    ("aerial", "opencv:aero1.jpg", False),
    ("aloe", "opencv:aloeL.jpg", False),
    ("baboon", "opencv:baboon.jpg", False),
    ("circuit_board", "opencv:board.jpg", False),
    ("building", "opencv:building.jpg", False),
    ("palace", "opencv:home.jpg", False),
    ("street", "opencv:leuvenA.jpg", True),
    ("graffiti", "opencv:graf1.png", False),
    ("starry_night", "opencv:starry_night.jpg", True),
    ("fruits", "opencv:fruits.jpg", False),
    ("toys", "opencv:rubberwhale1.png", False),
    ("office", "opencv:basketball1.png", False),
    ("clutter", "opencv:box_in_scene.png", False),
    ("notebook", "opencv:ela_original.jpg", False),
    ("car", "opencv:licenseplate_motion.jpg", False),
    ("stadium", "opencv:messi5.jpg", False),
    ("leaves", "opencv:squirrel_cls.jpg", True),
    ("sudoku", "opencv:sudoku.png", False),
    ("table", "opencv:stuff.jpg", False),
    ("books", "opencv:right.jpg", False),
    ("chessboard_room", "opencv:left01.jpg", False),
    ("butterfly_leaf", "opencv:butterfly.jpg", False),
    ("brick", "skimage:brick", False),
    ("grass", "skimage:grass", False),
    ("gravel", "skimage:gravel", True),
    ("astronaut", "skimage:astronaut", False),
    ("cat", "skimage:chelsea", False),
    ("coffee", "skimage:coffee", False),
    ("hubble", "skimage:hubble_deep_field", False),
    ("tissue", "skimage:immunohistochemistry", False),
    ("moon", "skimage:moon", False),
    ("page", "skimage:page", True),
    ("retina", "skimage:retina", False),
    ("launch_pad", "skimage:rocket", False),
    ("camera_man", "skimage:camera", False),
    ("coins", "skimage:coins", False),
    ("clock", "skimage:clock", False),
    ("garage", "skimage:motorcycle_left", False),
    ("text", "skimage:text", False),
)


def read_source(source: str, opencv_doc: Path) -> np.ndarray:
    """RGB(A) uint8 image (or bool mask) of one ``opencv:<file>`` / ``skimage:<name>`` source."""
    kind, name = source.split(":", 1)
    if kind == "opencv":
        image = cv2.imread(str(opencv_doc / name), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FileNotFoundError(opencv_doc / name)
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(image, code)
    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    else:
        image = getattr(skimage.data, name)()
    if image.dtype == bool:
        return image
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image


def _rect_px(rect: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    return int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)


def _foreground(cut: Cut, image: np.ndarray) -> np.ndarray:
    """Foreground mask (H, W) uint8 0/255 inside ``cut.rect``."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _rect_px(cut.rect, w, h)
    fg = np.zeros((h, w), np.uint8)
    if cut.method == "alpha":
        fg[y0:y1, x0:x1] = (image[y0:y1, x0:x1, 3] > 127) * 255
    elif cut.method == "mask":
        fg = (~image).astype(np.uint8) * 255  # skimage horse: False = the horse
    elif cut.method == "otsu":
        gray = cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
        _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        fg[y0:y1, x0:x1] = cv2.erode(mask, np.ones((3, 3), np.uint8))[y0:y1, x0:x1]
    elif cut.method == "rect":
        fg[y0:y1, x0:x1] = 255
    elif cut.method == "plain":
        rgb = image[..., :3].astype(np.float32)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        ref = np.median(border, axis=0)
        background = cv2.medianBlur(image[..., :3], 51).astype(np.float32)
        dist_flat = np.linalg.norm(rgb - ref, axis=2)
        dist_local = np.linalg.norm(rgb - background, axis=2)
        mask = ((dist_flat > 40) & (dist_local > 25)).astype(np.uint8) * 255
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    elif cut.method == "grabcut":
        bgr = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR)
        gc = np.zeros((h, w), np.uint8)
        model_bg = np.zeros((1, 65), np.float64)
        model_fg = np.zeros((1, 65), np.float64)
        rect = (x0, y0, max(2, x1 - x0), max(2, y1 - y0))
        cv2.grabCut(bgr, gc, rect, model_bg, model_fg, 6, cv2.GC_INIT_WITH_RECT)
        fg = np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    else:
        raise ValueError(f"unknown cut method {cut.method!r}")
    return fg


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def cut_objects(cut: Cut, image: np.ndarray) -> list[np.ndarray]:
    """RGBA crops (h, w, 4) uint8 of the object(s) described by ``cut``."""
    fg = _foreground(cut, image)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    h, w = fg.shape
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    def elongation(i: int) -> float:
        bw, bh = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
        return max(bw, bh) / max(1, min(bw, bh))

    keep = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= cut.min_area * h * w
            and (cut.max_aspect <= 0 or elongation(i) <= cut.max_aspect)][: cut.components]
    rgb = image[..., :3] if image.dtype != bool else np.full((h, w, 3), 128, np.uint8)
    crops = []
    for label in keep:
        mask = (labels == label).astype(np.uint8) * 255
        if cut.close:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((cut.close, cut.close), np.uint8))
        if cut.method != "alpha":
            mask = _fill_holes(mask)
        mask = cv2.GaussianBlur(mask, (3, 3), 0)  # soft 1-px edge
        x, y, bw, bh = cv2.boundingRect((mask > 127).astype(np.uint8))
        rgba = np.dstack([rgb[y:y + bh, x:x + bw], mask[y:y + bh, x:x + bw]])
        scale = min(1.0, MAX_OBJECT_SIDE / max(bw, bh))
        if scale < 1.0:
            rgba = cv2.resize(rgba, (max(1, round(bw * scale)), max(1, round(bh * scale))),
                              interpolation=cv2.INTER_AREA)
        crops.append(rgba)
    return crops


def curate(opencv_doc: Path, out: Path) -> dict:
    """Write objects/, backgrounds/ and manifest.json under ``out``; return the manifest."""
    (out / "objects").mkdir(parents=True, exist_ok=True)
    (out / "backgrounds").mkdir(parents=True, exist_ok=True)
    objects = []
    for cut in CUTS:
        image = read_source(cut.source, opencv_doc)
        crops = cut_objects(cut, image)
        if not crops:
            raise RuntimeError(f"no object found for {cut.name}")
        for k, rgba in enumerate(crops):
            name = cut.name if len(crops) == 1 else f"{cut.name}_{k}"
            cv2.imwrite(str(out / "objects" / f"{name}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA),
                        [cv2.IMWRITE_PNG_COMPRESSION, 9])
            objects.append({
                "name": name, "file": f"objects/{name}.png",
                "category": cut.categories[k] if k < len(cut.categories) else cut.category,
                "fill": "texture" if cut.method == "mask" else "image",
                "source": cut.source, "method": cut.method, "holdout": cut.holdout,
                "licence": OPENCV_LICENCE if cut.source.startswith("opencv") else SKIMAGE_LICENCE,
            })
    backgrounds = []
    for name, source, holdout in BACKGROUNDS:
        entry = {"name": name, "source": source, "holdout": holdout}
        if source.startswith("opencv:"):
            image = read_source(source, opencv_doc)[..., :3]
            h, w = image.shape[:2]
            scale = min(1.0, MAX_BACKGROUND_SIDE / max(h, w))
            if scale < 1.0:
                image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(out / "backgrounds" / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 88])
            entry.update(file=f"backgrounds/{name}.jpg", licence=OPENCV_LICENCE)
        else:
            entry.update(licence=SKIMAGE_LICENCE)
        backgrounds.append(entry)
    manifest = {"version": 1, "objects": objects, "backgrounds": backgrounds}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opencv-doc", type=Path, required=True,
                        help="unpacked opencv-doc examples/data folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    manifest = curate(args.opencv_doc, args.out)
    print(f"{len(manifest['objects'])} objects, {len(manifest['backgrounds'])} backgrounds -> {args.out}")


if __name__ == "__main__":
    main()

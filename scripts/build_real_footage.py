#!/usr/bin/env python3
"""Build the real-footage validation set (docs/eval.md, "Real footage") from Debian packages.

    .venv/bin/python scripts/build_real_footage.py [--out data/real] [--clips a,b] [--cache DIR]

Downloads the packages named in ``CLIPS`` (``apt-get download``, no root needed), unpacks them
(``dpkg -x``), checks each video's SHA-256, decodes the clip's frames with OpenCV and writes one
sequence folder per clip (``utptrack_ros.data.write_folder``: color/*.jpg, groundtruth.txt,
absence.label, nlp.txt, meta.json) under ``--out`` (git-ignored). The ground truth comes from the
committed annotation files ``data/real_footage/<clip>.json``; the videos and frames are never
committed. The set is for validation only: never train or tune on it.

Maintainer commands (how the committed annotations were made; see docs/eval.md):

    build_real_footage.py frame <clip> <index> [<index> ...]   # frames with a pixel grid, to draw boxes
    build_real_footage.py annotate <clip>    # keyframes -> per-frame boxes (CSRT forward + backward)
    build_real_footage.py sheet <clip> [--every N] [--start S] [--stop E]   # overlays to check by eye

Debian's ``opencv-doc`` videos are the product's held-out acceptance set: never add them here.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utptrack_ros.data import ArrayFrames, TrackingSequence, write_folder  # noqa: E402

ANNOTATIONS = ROOT / "data" / "real_footage"
DEFAULT_OUT = ROOT / "data" / "real"
ANNOTATION_FORMAT = "utptrack-real-footage-annotation/1"
RESERVED_PACKAGES = ("opencv-doc",)  # the held-out acceptance set: never validate on it
#: provenance codes of the per-frame boxes (annotation files, "provenance" string, one letter a frame)
PROVENANCE = {
    "K": "keyframe drawn by hand after viewing the frame",
    "F": "CSRT forward from the previous keyframe and backward from the next agree (IoU >= min_agreement); "
         "blend weighted by the distance to each keyframe",
    "U": "uncertain: forward and backward disagree; no box (absent flag set, excluded from the truth)",
    "A": "target not visible or not annotatable (marked by hand); no box",
    "S": "colour segmentation: the bounding box of the connected component of the target's colour range "
         "nearest the previous box (annotation 'segment' parameters)",
    "P": "CSRT proposal after the last keyframe, while annotating (never in a finished annotation)",
}


@dataclass(frozen=True)
class Clip:
    """One clip of the set: where its frames come from and what the target is."""

    name: str
    package: str
    version: str
    member: str  # path inside the package: a video file, or a glob of image files
    sha256: str  # of the video file (or of the sorted image files' contents, concatenated)
    first: int  # first decoded frame used
    count: int  # frames used (the test checks the annotation files against this)
    scale: float  # resize factor applied after decoding
    size: tuple[int, int]  # (width, height) of the written frames
    target: str  # the language prompt (nlp.txt)
    kind: str  # target kind, for the report
    licence: str
    fps: float

    @property
    def stride(self) -> int:
        return 1


CLIPS: tuple[Clip, ...] = (
    Clip("coin_pen", "node-opencv", "7.0.0+git20200316.f0a03a4b-1+b3",
         "usr/share/doc/node-opencv/examples/files/motion.mov",
         "56310ef94122124bd798f2fdbb4f3786ec399ca1793faaf6ebc099ed75212ca8", 0, 242, 1.0, (568, 320), "a coin pushed across a table by a pen", "hand-moved object",
         "Expat (node-opencv, 2018 Peter Braden)", 30.0),
    Clip("cube_desk", "visp-images-data", "3.5.0-1",
         "usr/share/visp-images-data/ViSP-images/mbt/cube/image*.pgm",
         "5a630f1f2a339fd5a8d9897f82b5d971625c6607fe02efccbd4f2c5f6bdd388e", 0, 218, 1.0, (640, 480), "a small printed cube on a desk", "object, moving camera, hand nearby",
         "GPL-2 (ViSP, 2005-2018 Inria)", 30.0),
    Clip("face_webcam", "forensics-samples-files", "1.1.4-5",
         "usr/share/forensics-samples/original-files/movie2/movie-hello.mp4",
         "68162af4e15b20fb61261e55de79e989f53d6295f6226b4bda1905b8c40e9676", 0, 249, 1.0, (1280, 720), "the face of the man in the webcam picture", "face (small)",
         "MIT (forensics-samples, 2019-2020 Joao Eriberto Mota Filho)", 30.0),
    Clip("face_close", "kphotoalbum", "5.9.1-1",
         "usr/share/kphotoalbum/demo/movie.avi",
         "4f5fb4ee2319d3bcb9f0fb46f73cb02e5b271e204e078302e50cb30b4e36960b", 0, 68, 1.0, (160, 120), "the face of a man with glasses", "face (close, low resolution)",
         "GPL-2+ (KPhotoAlbum demo)", 15.0),
    Clip("ball_thrown", "python3-mecavideo", "8.0~rc5-1",
         "usr/share/pymecavideo/data/video/balle-jbart.mp4",
         "85a4c1934e97e4175582c3f2e233982a4a98ad41ad3415d1f3aa5c0fda04e3dc", 0, 255, 1.0, (720, 576), "a yellow tennis ball thrown by hand", "small fast object, hand-held at start",
         "CC-BY-SA-3.0 (pymecavideo example videos)", 25.0),
    Clip("dog", "forensics-samples-files", "1.1.4-5",
         "usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4",
         "9b0710a436413f75cc3cd1c1048aa3c4d7c28f76f51ef6a25413d0018d22ec99", 0, 41, 0.5, (960, 540), "a white dog lying on the floor", "animal, hand-held phone camera",
         "MIT (forensics-samples, 2019-2020 Joao Eriberto Mota Filho)", 27.0),
    Clip("race_car_1906", "python-nbsphinx-doc", "0.8.11+ds-1",
         "usr/share/doc/python-nbsphinx/html/www/wikimediacommons/Shepard_Calais_1906_FrenchGP.ogv",
         "877b1e29fe0fc4b26308aef3ad8ce023123b69fe00ba1ea5327ba9647262fd0e", 162, 118, 1.0, (214, 160),
         "a racing car approaching through dust", "vehicle, old film, grows 4x",
         "public domain (Wikimedia Commons, 1906 film; Debian copyright file)", 15.0),
)
CLIPS_BY_NAME = {c.name: c for c in CLIPS}


# -- sources -------------------------------------------------------------------------------------
def run(cmd: list[str], cwd: Optional[Path] = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def unpacked_package(package: str, version: str, cache: Path) -> Path:
    """``cache/<package>/root``: the package unpacked (downloaded once; pinned version first)."""
    if package in RESERVED_PACKAGES:
        raise SystemExit(f"{package} is the held-out acceptance set: it must not be used for validation")
    root = cache / package / "root"
    if root.is_dir():
        return root
    (cache / package).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache / package) as tmp:
        try:
            run(["apt-get", "download", f"{package}={version}"], cwd=Path(tmp))
        except SystemExit as err:  # the pinned version left the archive: the SHA-256 check decides
            print(f"warning: {err}; trying the archive's current {package}", file=sys.stderr)
            run(["apt-get", "download", package], cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        run(["dpkg", "-x", str(debs[0]), str(Path(tmp) / "root")])
        shutil.move(str(Path(tmp) / "root"), root)
    return root


def member_files(clip: Clip, root: Path) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(root / clip.member)))
    if not files:
        raise SystemExit(f"{clip.name}: {clip.member} not found in {clip.package}")
    return files


def digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def decode(clip: Clip, files: list[Path]) -> list[np.ndarray]:
    """The clip's frames as RGB uint8, resized by ``clip.scale``."""
    frames: list[np.ndarray] = []
    if len(files) == 1 and files[0].suffix.lower() not in (".pgm", ".ppm", ".png", ".jpg"):
        cap = cv2.VideoCapture(str(files[0]))
        index = 0
        while len(frames) < clip.count:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= clip.first:
                frames.append(bgr)
            index += 1
        cap.release()
    else:
        frames = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files[clip.first:clip.first + clip.count]]
    if len(frames) != clip.count:
        raise SystemExit(f"{clip.name}: decoded {len(frames)} frames from frame {clip.first}, expected {clip.count}")
    out = []
    for bgr in frames:
        if clip.scale != 1.0:
            bgr = cv2.resize(bgr, clip.size, interpolation=cv2.INTER_AREA)
        if (bgr.shape[1], bgr.shape[0]) != clip.size:
            raise SystemExit(f"{clip.name}: frame size {bgr.shape[1]}x{bgr.shape[0]}, expected {clip.size}")
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def clip_frames(clip: Clip, cache: Path) -> list[np.ndarray]:
    files = member_files(clip, unpacked_package(clip.package, clip.version, cache))
    found = digest(files)
    if clip.sha256 and found != clip.sha256:
        raise SystemExit(f"{clip.name}: {clip.member} in {clip.package} has SHA-256 {found}, expected "
                         f"{clip.sha256} (the package changed: re-check the annotations before using it)")
    return decode(clip, files)


# -- annotations ---------------------------------------------------------------------------------
def annotation_path(name: str) -> Path:
    return ANNOTATIONS / f"{name}.json"


def load_annotation(name: str) -> dict:
    return json.loads(annotation_path(name).read_text())


def save_annotation(name: str, data: dict) -> None:
    ANNOTATIONS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1)
    # one box per line keeps the diff of a re-annotation readable
    annotation_path(name).write_text(text + "\n")


def ground_truth(ann: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes (NaN where none) and (N,) absent flags from an annotation dict."""
    boxes = np.array([[np.nan] * 4 if b is None else b for b in ann["boxes"]], dtype=np.float64)
    absent = np.array([p in "UA" for p in ann["provenance"]], dtype=bool)
    boxes[absent] = np.nan
    return boxes, absent


# -- build ---------------------------------------------------------------------------------------
def build(names: list[str], out: Path, cache: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        clip = CLIPS_BY_NAME[name]
        ann = load_annotation(name)
        frames = clip_frames(clip, cache)
        if "P" in ann["provenance"] or len(ann["provenance"]) != clip.count:
            raise SystemExit(f"{name}: the annotation is unfinished (proposals or a wrong frame count)")
        gt, absent = ground_truth(ann)
        if len(gt) != len(frames):
            raise SystemExit(f"{name}: {len(gt)} annotated frames, {len(frames)} decoded")
        attributes = {
            "split": "real_validation",
            "source": {"package": clip.package, "version": clip.version, "member": clip.member,
                       "sha256": clip.sha256, "first_frame": clip.first, "scale": clip.scale,
                       "licence": clip.licence},
            "target_kind": clip.kind,
            "ground_truth": "pseudo: " + ann["method"],
            "challenges": {},
        }
        stamps = (1_700_000_000_000_000_000 + np.round(np.arange(len(frames)) * 1e9 / clip.fps)).astype(np.int64)
        seq = TrackingSequence(name=name, frames=ArrayFrames(frames), gt=gt, absent=absent, prompt=clip.target,
                               attributes=attributes, stamps_ns=stamps,
                               frame_info={"provenance": np.array(list(ann["provenance"]))})
        path = write_folder(seq, out, overwrite=True)
        listed = out / "list.txt"  # eval-offline reads a folder of sequences through it
        names_listed = [n for n in (listed.read_text().split() if listed.is_file() else []) if n in CLIPS_BY_NAME]
        listed.write_text("".join(f"{n}\n" for n in sorted(set(names_listed) | {name})))
        print(f"{name}: {len(frames)} frames {clip.size[0]}x{clip.size[1]}, "
              f"{int((~absent).sum())} with a box -> {path}")


# -- maintainer tools ----------------------------------------------------------------------------
def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def csrt_run(frames: list[np.ndarray], start: int, box: list[float], indices: list[int]) -> list[Optional[np.ndarray]]:
    tracker = cv2.TrackerCSRT.create()
    bgr = [cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR) for i in [start] + indices]
    tracker.init(bgr[0], tuple(int(round(v)) for v in box))
    out: list[Optional[np.ndarray]] = []
    for image in bgr[1:]:
        ok, rect = tracker.update(image)
        out.append(np.array(rect, dtype=np.float64) if ok else None)
    return out


def annotate(name: str, cache: Path) -> None:
    """Per-frame boxes from the hand-drawn keyframes: CSRT forward from each keyframe to the next
    and backward from the next; agreeing frames get the distance-weighted blend, others are "U"."""
    clip = CLIPS_BY_NAME[name]
    ann = load_annotation(name)
    frames = clip_frames(clip, cache)
    n = len(frames)
    keys = {int(k): v for k, v in ann["keyframes"].items()}
    hidden = set()
    for a, b in ann.get("not_visible", []):
        hidden.update(range(a, b + 1))
    min_agreement = float(ann.get("min_agreement", 0.5))
    boxes: list[Optional[list[float]]] = [None] * n
    prov = ["U"] * n
    checks = []
    order = sorted(keys)
    for k in order:
        boxes[k], prov[k] = [float(v) for v in keys[k]], "K"
    seg = ann.get("segment")
    if seg is not None:
        segment_frames(frames, seg, keys, boxes, prov)
        order = []  # colour segmentation replaces CSRT for this clip
    for k0, k1 in zip(order, order[1:]):
        inner = [i for i in range(k0 + 1, k1)]
        if not inner and k1 == k0 + 1:
            continue
        fwd = csrt_run(frames, k0, keys[k0], inner + [k1])
        bwd = csrt_run(frames, k1, keys[k1], list(reversed([k0] + inner)))[::-1]
        checks.append({"from": k0, "to": k1,
                       "forward_iou_at_next_key": None if fwd[-1] is None else round(iou(fwd[-1], np.array(keys[k1])), 3),
                       "backward_iou_at_previous_key": None if bwd[0] is None else round(iou(bwd[0], np.array(keys[k0])), 3)})
        for j, i in enumerate(inner):
            f, b = fwd[j], bwd[j + 1]
            if i in hidden or f is None or b is None or iou(f, b) < min_agreement:
                continue
            w = (i - k0) / (k1 - k0)
            boxes[i] = [round(float(v), 1) for v in (1 - w) * f + w * b]
            prov[i] = "F"
    last = order[-1] if order else n - 1
    if last < n - 1:  # after the last keyframe: forward proposals to choose the next keyframes from
        for i, box in zip(range(last + 1, n), csrt_run(frames, last, keys[last], list(range(last + 1, n)))):
            if box is not None:
                boxes[i], prov[i] = [round(float(v), 1) for v in box], "P"
    for i in hidden:
        boxes[i], prov[i] = None, "A"
    ann.update(boxes=boxes, provenance="".join(prov), segment_checks=checks,
               counts={c: prov.count(c) for c in "KFSUAP"})
    save_annotation(name, ann)
    print(f"{name}: {ann['counts']}; uncertain frames: {[i for i, p in enumerate(prov) if p == 'U']}")
    for c in checks:
        print("  ", c)


def segment_frames(frames: list[np.ndarray], seg: dict, keys: dict, boxes: list, prov: list[str]) -> None:
    """Colour segmentation (provenance "S"): HSV range ``hsv_lo``..``hsv_hi`` (OpenCV units), a 3x3
    opening, connected components with ``min_area`` <= area <= ``max_area``; the one whose centre is
    nearest the previous box's centre, at most ``max_jump`` px away, gives the box, grown by ``pad``
    px on every side. Keyframes win."""
    lo, hi = np.array(seg["hsv_lo"], np.uint8), np.array(seg["hsv_hi"], np.uint8)
    first = min(keys)
    prev = np.array(keys[first][:2]) + np.array(keys[first][2:]) / 2
    kernel = np.ones((3, 3), np.uint8)
    for i in range(first + 1, len(frames)):
        if i in keys:
            prev = np.array(keys[i][:2]) + np.array(keys[i][2:]) / 2
            continue
        hsv = cv2.cvtColor(frames[i], cv2.COLOR_RGB2HSV)
        mask = cv2.morphologyEx(cv2.inRange(hsv, lo, hi), cv2.MORPH_OPEN, kernel)
        count, _, stats, centres = cv2.connectedComponentsWithStats(mask)
        best, best_d = None, float(seg["max_jump"])
        for c in range(1, count):
            area = stats[c, cv2.CC_STAT_AREA]
            if not seg["min_area"] <= area <= seg["max_area"]:
                continue
            d = float(np.hypot(*(centres[c] - prev)))
            if d <= best_d:
                best, best_d = c, d
        if best is None:
            continue
        x, y, w, h = (int(v) for v in stats[best, :4])
        pad = float(seg.get("pad", 0))  # the colour core misses a blurred or highlighted rim
        boxes[i], prov[i] = [x - pad, y - pad, w + 2 * pad, h + 2 * pad], "S"
        prev = centres[best]


def grid(image: np.ndarray, step: int, origin: tuple[int, int] = (0, 0), zoom: float = 1.0) -> np.ndarray:
    """``image`` with grid lines every ``step`` frame pixels, labelled in frame coordinates."""
    out = image.copy()
    h, w = out.shape[:2]
    x0, y0 = origin
    for fx in range(x0 - x0 % step + step, x0 + int(w / zoom) + 1, step):
        gx = int(round((fx - x0) * zoom))
        cv2.line(out, (gx, 0), (gx, h - 1), (0, 220, 220) if fx % (5 * step) == 0 else (0, 140, 140), 1)
        if fx % (2 * step) == 0:
            cv2.putText(out, str(fx), (gx + 1, 10), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 0), 1)
    for fy in range(y0 - y0 % step + step, y0 + int(h / zoom) + 1, step):
        gy = int(round((fy - y0) * zoom))
        cv2.line(out, (0, gy), (w - 1, gy), (0, 220, 220) if fy % (5 * step) == 0 else (0, 140, 140), 1)
        if fy % (2 * step) == 0:
            cv2.putText(out, str(fy), (1, gy - 2), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 0), 1)
    return out


def show_frames(name: str, indices: list[int], cache: Path, step: int, crop: Optional[list[int]], zoom: float) -> None:
    clip = CLIPS_BY_NAME[name]
    frames = clip_frames(clip, cache)
    ann = load_annotation(name) if annotation_path(name).is_file() else None
    for i in indices:
        image = frames[i].copy()
        if ann is not None and ann.get("boxes") and ann["boxes"][i] is not None:
            x, y, w, h = ann["boxes"][i]
            cv2.rectangle(image, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (255, 0, 0), 1)
        x0, y0 = 0, 0
        if crop:
            x0, y0, x1, y1 = crop
            image = image[y0:y1, x0:x1]
        if zoom != 1.0:
            image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        g = grid(image, step, (x0, y0), zoom)
        path = Path(tempfile.gettempdir()) / f"real_{name}_{i:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(g, cv2.COLOR_RGB2BGR))
        print(path)


def sheet(name: str, cache: Path, every: int, start: int, stop: Optional[int], cols: int, width: int) -> None:
    clip = CLIPS_BY_NAME[name]
    frames = clip_frames(clip, cache)
    ann = load_annotation(name)
    stop = len(frames) if stop is None else stop
    tiles = []
    for i in range(start, stop, every):
        image = frames[i].copy()
        box = ann["boxes"][i] if ann.get("boxes") else None
        p = ann["provenance"][i] if ann.get("provenance") else "?"
        if box is not None:
            x, y, w, h = box
            cv2.rectangle(image, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                          (0, 255, 0) if p == "K" else (255, 0, 0), max(1, image.shape[1] // 400))
        s = width / image.shape[1]
        tile = cv2.resize(image, (width, int(round(image.shape[0] * s))), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"{i}{p}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        tiles.append(tile)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    path = Path(tempfile.gettempdir()) / f"real_{name}_sheet_{start}_{stop}_{every}.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    print(path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_OUT / ".packages",
                        help="where downloaded packages are unpacked (default: data/real/.packages)")
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("build", help="download, decode and write the sequence folders (the default)")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT)
    b.add_argument("--clips", default=",".join(c.name for c in CLIPS))
    f = sub.add_parser("frame", help="frames with a pixel grid (maintainers)")
    f.add_argument("clip")
    f.add_argument("indices", type=int, nargs="+")
    f.add_argument("--step", type=int, default=20)
    f.add_argument("--crop", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"))
    f.add_argument("--zoom", type=float, default=1.0)
    a = sub.add_parser("annotate", help="keyframes -> per-frame boxes (maintainers)")
    a.add_argument("clip")
    s = sub.add_parser("sheet", help="overlay contact sheet (maintainers)")
    s.add_argument("clip")
    s.add_argument("--every", type=int, default=10)
    s.add_argument("--start", type=int, default=0)
    s.add_argument("--stop", type=int)
    s.add_argument("--cols", type=int, default=6)
    s.add_argument("--width", type=int, default=320)
    args = parser.parse_args(argv)
    cache = args.cache
    if args.command in (None, "build"):
        out = getattr(args, "out", DEFAULT_OUT)
        names = getattr(args, "clips", ",".join(c.name for c in CLIPS)).split(",")
        unknown = [n for n in names if n not in CLIPS_BY_NAME]
        if unknown:
            raise SystemExit(f"unknown clips {unknown}; known: {sorted(CLIPS_BY_NAME)}")
        build(names, out, cache)
    elif args.command == "frame":
        show_frames(args.clip, args.indices, cache, args.step, args.crop, args.zoom)
    elif args.command == "annotate":
        annotate(args.clip, cache)
    elif args.command == "sheet":
        sheet(args.clip, cache, args.every, args.start, args.stop, args.cols, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())

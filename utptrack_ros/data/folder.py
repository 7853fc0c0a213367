"""Folder layout of one sequence (docs/architecture.md, "Sequences"): read and write.

```
<seq>/color/000001.jpg ...   RGB (JPEG q95)        <seq>/groundtruth.txt  x,y,w,h per line, NaN x4 = absent
<seq>/depth/000001.png       uint16 mm, 0 invalid  <seq>/absence.label    0/1 per line
<seq>/thermal/000001.png     uint16 counts         <seq>/nlp.txt          one-line description
<seq>/event/000001.png       rendered event frame  <seq>/meta.json        seed, split, challenges, camera...
```
Reading is lazy: images are decoded on access, counts and text files are checked at load time.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from ..types import Modality
from .errors import FrameCountError, SequenceError, SequenceFormatError
from .sequence import AUX_MODALITIES, TrackingSequence

PathLike = Union[str, Path]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Sub-folder names read for each stream (first existing wins); the first name is the one written.
FOLDER_NAMES: dict[Optional[Modality], tuple[str, ...]] = {
    None: ("color", "img"),
    Modality.DEPTH: ("depth",),
    Modality.THERMAL: ("thermal", "infrared"),
    Modality.EVENT: ("event", "event_imgs"),
}
#: meta.json keys owned by the layout itself; every other key is a sequence attribute.
_META_KEYS = ("format", "format_version", "name", "length", "image_size", "modalities", "prompt",
              "stamps_ns", "frame_info")
FORMAT_NAME = "utptrack-sequence"
FORMAT_VERSION = 1


def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class FolderFrames:
    """Lazy frame source over the image folders of one sequence."""

    def __init__(self, color: list[Path], aux: dict[Modality, list[Path]]):
        self._color = color
        self._aux = aux

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(m for m in AUX_MODALITIES if m in self._aux)

    def __len__(self) -> int:
        return len(self._color)

    def rgb(self, index: int) -> np.ndarray:
        image = _imread(self._color[index])
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.dtype != np.uint8:
            raise SequenceFormatError(f"{self._color[index]}: RGB frames must be 8-bit, got {image.dtype}")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)

    def aux(self, modality: Modality, index: int) -> Optional[np.ndarray]:
        path = self._aux[modality][index]
        image = _imread(path)
        if modality is Modality.DEPTH:
            if image.ndim != 2 or image.dtype != np.uint16:
                raise SequenceFormatError(f"{path}: depth must be a 1-channel 16-bit PNG (mm), "
                                          f"got {image.dtype} with shape {image.shape}")
            return image
        if image.ndim == 3:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        if modality is Modality.EVENT:
            raise SequenceFormatError(f"{path}: event frames must be 3-channel images, got shape {image.shape}")
        return image


def _imread(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        what = "missing" if not path.exists() else "not a readable image (corrupt or truncated?)"
        raise SequenceFormatError(f"{path}: {what}")
    return image


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise SequenceFormatError(f"{path}: not a text file ({err})") from err
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_groundtruth(path: Path) -> np.ndarray:
    """(N, 4) float64 from a groundtruth.txt (comma, tab or space separated; NaN rows allowed)."""
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        parts = line.replace(",", " ").replace("\t", " ").split()
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise SequenceFormatError(f"{path}:{number}: expected 4 numbers x,y,w,h, got {line!r}") from None
        if len(values) != 4:
            raise SequenceFormatError(f"{path}:{number}: expected 4 numbers x,y,w,h, got {len(values)}")
        rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def read_absence(path: Path) -> np.ndarray:
    values = []
    for number, line in enumerate(_read_lines(path), start=1):
        if line not in ("0", "1"):
            raise SequenceFormatError(f"{path}:{number}: expected 0 or 1, got {line!r}")
        values.append(line == "1")
    return np.array(values, dtype=bool)


def load_folder(path: PathLike) -> TrackingSequence:
    """Load one sequence folder (lazy images).

    Raises:
        SequenceFormatError: missing color/ or groundtruth.txt, unparsable text files, bad meta.json.
        FrameCountError: a modality folder, groundtruth.txt or absence.label disagrees with color/.
    """
    root = Path(path)
    if not root.is_dir():
        raise SequenceFormatError(f"{root}: not a sequence folder (does not exist or is not a directory)")
    folders = {key: next((root / n for n in names if (root / n).is_dir()), None)
               for key, names in FOLDER_NAMES.items()}
    color_folder = folders[None]
    if color_folder is None:
        raise SequenceFormatError(f"{root}: no color/ folder with the RGB frames")
    color = _frame_files(color_folder)
    if not color:
        raise SequenceFormatError(f"{color_folder}: no frames ({'/'.join(IMAGE_SUFFIXES)})")
    aux = {}
    for modality in AUX_MODALITIES:
        folder = folders[modality]
        if folder is not None:
            files = _frame_files(folder)
            if len(files) != len(color):
                raise FrameCountError(f"{folder}: {len(files)} frames but color/ has {len(color)}")
            aux[modality] = files
    gt_path = root / "groundtruth.txt"
    if not gt_path.is_file():
        raise SequenceFormatError(f"{root}: groundtruth.txt is missing")
    gt = read_groundtruth(gt_path)
    if len(gt) != len(color):
        raise FrameCountError(f"{gt_path}: {len(gt)} boxes but color/ has {len(color)} frames")
    absent: Optional[np.ndarray] = None  # None: no frame flagged (TrackingSequence fills the array)
    if (root / "absence.label").is_file():
        absent = read_absence(root / "absence.label")
        if len(absent) != len(color):
            raise FrameCountError(f"{root / 'absence.label'}: {len(absent)} flags but color/ has {len(color)} frames")
    meta: dict[str, Any] = {}
    if (root / "meta.json").is_file():
        try:
            meta = json.loads((root / "meta.json").read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise SequenceFormatError(f"{root / 'meta.json'}: not valid JSON ({err})") from err
        if not isinstance(meta, dict):
            raise SequenceFormatError(f"{root / 'meta.json'}: expected a JSON object")
    prompt = None
    if (root / "nlp.txt").is_file():
        lines = _read_lines(root / "nlp.txt")
        prompt = lines[0] if lines else None
    stamps = meta.get("stamps_ns")
    frame_info = {k: np.asarray(v) for k, v in (meta.get("frame_info") or {}).items()}
    attributes = {k: v for k, v in meta.items() if k not in _META_KEYS}
    return TrackingSequence(name=str(meta.get("name", root.name)), frames=FolderFrames(color, aux), gt=gt,
                    absent=absent,  # type: ignore[arg-type]  # None is allowed (see the field)
                    prompt=prompt, attributes=attributes, frame_info=frame_info,
                    stamps_ns=None if stamps is None else np.asarray(stamps, dtype=np.int64))  # type: ignore[arg-type]


def _format_row(row: np.ndarray) -> str:
    return ",".join("NaN" if not math.isfinite(v) else repr(float(v)) for v in row)


def _imwrite(path: Path, image: np.ndarray, params: list[int]) -> None:
    if not cv2.imwrite(str(path), image, params):
        raise SequenceError(f"{path}: could not write image")


def write_folder(seq: TrackingSequence, root: PathLike, *, overwrite: bool = False, jpeg_quality: int = 95) -> Path:
    """Write ``seq`` to ``root / seq.name`` in the folder layout; return that folder.

    Raises:
        SequenceError: the folder already holds a sequence and ``overwrite`` is False.
    """
    out = Path(root) / seq.name
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SequenceError(f"{out} already exists and is not empty (pass overwrite=True to replace it)")
        shutil.rmtree(out)
    (out / "color").mkdir(parents=True)
    for modality in seq.modalities:
        (out / FOLDER_NAMES[modality][0]).mkdir()
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for frame in seq.iter_frames():
        stem = f"{frame.index + 1:06d}"
        _imwrite(out / "color" / f"{stem}.jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), jpeg)
        for modality, image in frame.aux.items():
            if image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            _imwrite(out / FOLDER_NAMES[modality][0] / f"{stem}.png", image, png)
        missing = set(seq.modalities) - set(frame.aux)
        if missing:
            raise SequenceError(f"{seq.name}: frame {frame.index} lacks {sorted(m.value for m in missing)}; "
                                "the folder layout needs every aux frame")
    (out / "groundtruth.txt").write_text("".join(_format_row(r) + "\n" for r in seq.gt))
    (out / "absence.label").write_text("".join(f"{int(a)}\n" for a in seq.absent))
    if seq.prompt:
        (out / "nlp.txt").write_text(seq.prompt.replace("\n", " ") + "\n")
    w, h = seq.image_size
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": seq.name, "length": seq.length,
            "image_size": [w, h], "modalities": [m.value for m in seq.modalities], **seq.attributes,
            "stamps_ns": [int(s) for s in seq.stamps_ns],
            "frame_info": {k: v.tolist() for k, v in seq.frame_info.items()}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=json_default) + "\n")
    return out


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays (sequence metadata)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

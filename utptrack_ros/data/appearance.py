"""Object appearance for generated sequences: synthetic shapes, textures, colour names, recolouring,
and hand-like occluders.

Shapes are filled with real image content (patches of the curated backgrounds) or with plain colour
(low-texture targets); every sprite is RGBA uint8 with alpha = object mask. Colour names are what the
language descriptions use, so they come from the pixels (``colour_name``), never from intent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .sources import SourceLibrary, random_patch

#: Hue centre (degrees) of each chromatic colour word, and the hue bins that name a pixel.
HUES = {"red": 0, "orange": 25, "yellow": 55, "green": 120, "cyan": 180, "blue": 225, "purple": 272, "pink": 318}
_HUE_BINS = ((12, "red"), (38, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"), (258, "blue"),
             (292, "purple"), (340, "pink"), (361, "red"))
CHROMATIC = tuple(HUES)
ACHROMATIC = ("white", "grey", "black")
COLOURS = CHROMATIC + ("brown",) + ACHROMATIC
MULTICOLOURED = "colorful"
PALETTE = {  # RGB of the plain fills
    "red": (205, 30, 35), "orange": (240, 130, 25), "yellow": (235, 210, 45), "green": (45, 165, 60),
    "cyan": (35, 185, 195), "blue": (40, 80, 205), "purple": (125, 55, 175), "pink": (238, 115, 175),
    "brown": (125, 72, 32), "white": (238, 238, 232), "grey": (128, 128, 128), "black": (28, 28, 30),
}
PATTERNS = ("plain", "striped", "checkered", "spotted", "textured")


def _pixel_names(rgb: np.ndarray) -> np.ndarray:
    """Colour word index (into ``COLOURS``) per pixel of an (N, 3) uint8 array."""
    hsv = cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(np.float32)
    h = hsv[:, 0] * (360.0 / 256.0)
    s, v = hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
    names = np.full(len(rgb), COLOURS.index("grey"))
    edges = np.array([e for e, _ in _HUE_BINS])
    bins = np.searchsorted(edges, h, side="right").clip(0, len(edges) - 1)
    chroma = np.array([COLOURS.index(n) for _, n in _HUE_BINS])[bins]
    chromatic = (s >= 0.28) & (v >= 0.22)
    names[chromatic] = chroma[chromatic]
    brown = chromatic & (h < 45) & (v < 0.6) & (s < 0.95)
    names[brown] = COLOURS.index("brown")
    names[~chromatic & (v > 0.72)] = COLOURS.index("white")
    names[~chromatic & (v < 0.22)] = COLOURS.index("black")
    return names


def colour_name(rgba: np.ndarray) -> str:
    """Dominant colour word of the opaque pixels, or ``"colorful"`` when no colour has >= 40%."""
    mask = rgba[..., 3] > 128
    pixels = rgba[..., :3][mask]
    if len(pixels) == 0:
        return "grey"
    if len(pixels) > 4000:
        pixels = pixels[:: len(pixels) // 4000]
    counts = np.bincount(_pixel_names(np.ascontiguousarray(pixels)), minlength=len(COLOURS))
    top = int(np.argmax(counts))
    return COLOURS[top] if counts[top] >= 0.4 * counts.sum() else MULTICOLOURED


def recolour(rgba: np.ndarray, target: str, rng: np.random.Generator) -> np.ndarray:
    """Copy of ``rgba`` whose dominant colour reads as ``target`` (hue rotation / tint / value change)."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    mask = rgba[..., 3] > 128
    jitter = rng.uniform(-8, 8)
    if target in HUES:
        if np.median(s[mask]) < 70 if mask.any() else True:  # achromatic source: tint it
            s[:] = np.maximum(s, 170)
            v[:] = np.clip(v * 0.8 + 60, 0, 255)
        names = _pixel_names(np.ascontiguousarray(rgb[mask]))
        chromatic = np.isin(names, [COLOURS.index(c) for c in CHROMATIC + ("brown",)])
        current = np.median(h[mask][chromatic]) if chromatic.any() else 0.0
        h[:] = (h + (HUES[target] + jitter) * 256 / 360 - current) % 256
        if target in ("yellow", "orange", "pink", "cyan"):
            v[:] = np.maximum(v, 150 * (s > 60))
    elif target == "brown":
        h[:] = (25 + jitter * 0.5) * 256 / 360
        s[:] = np.clip(np.maximum(s, 140), 0, 230)
        v[:] = np.clip(v * 0.45 + 25, 0, 140)
    elif target == "white":
        s[:] = s * 0.12
        v[:] = 200 + v * 0.2
    elif target == "grey":
        s[:] = s * 0.1
        v[:] = 85 + v * 0.35
    elif target == "black":
        s[:] = s * 0.3
        v[:] = v * 0.18
    else:
        raise ValueError(f"unknown colour {target!r}")
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    return np.dstack([out, rgba[..., 3]])


# -- shapes -----------------------------------------------------------------------------------
SHAPES = ("ellipse", "rectangle", "triangle", "star", "diamond", "hexagon", "cross", "ring", "crescent",
          "heart", "arrow", "blob")


def shape_category(shape: str, aspect: float) -> str:
    """Word for a shape at aspect ``w / h`` (a very tall rectangle is a "pole")."""
    if shape == "ellipse":
        return "circle" if 0.85 < aspect < 1.18 else "oval"
    if shape == "rectangle":
        if aspect < 0.33:
            return "pole"
        if aspect > 3.0:
            return "bar"
        return "square" if 0.85 < aspect < 1.18 else "rectangle"
    return shape


def shape_mask(shape: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width) uint8 anti-aliased mask of ``shape`` filling the box."""
    k = 2  # draw at 2x, then area-downsample for soft edges
    w, h = width * k, height * k
    m = np.zeros((h, w), np.uint8)
    cx, cy = w / 2, h / 2

    def poly(points: np.ndarray) -> None:
        cv2.fillPoly(m, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)

    def unit(points: list[tuple[float, float]]) -> np.ndarray:  # [-1, 1]^2 -> pixels
        p = np.array(points, np.float64)
        return np.stack([cx + p[:, 0] * (w / 2 - 1), cy + p[:, 1] * (h / 2 - 1)], axis=1)

    if shape == "ellipse":
        cv2.ellipse(m, (int(cx), int(cy)), (int(w / 2 - 1), int(h / 2 - 1)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    elif shape == "rectangle":
        r = int(min(w, h) * rng.uniform(0.0, 0.25))
        cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
        cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
        for x, y in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
            cv2.circle(m, (x, y), r, 255, -1, cv2.LINE_AA)
    elif shape == "triangle":
        poly(unit([(-1, 1), (1, 1), (rng.uniform(-0.4, 0.4), -1)]))
    elif shape == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.55))
        poly(unit(list(zip(radii * np.cos(t), radii * np.sin(t)))))
    elif shape == "diamond":
        poly(unit([(0, -1), (1, 0), (0, 1), (-1, 0)]))
    elif shape == "hexagon":
        t = np.arange(6) * math.pi / 3
        poly(unit(list(zip(np.cos(t), np.sin(t)))))
    elif shape == "cross":
        a = rng.uniform(0.25, 0.4)
        poly(unit([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a),
                   (-1, -a), (-a, -a)]))
    elif shape == "ring":
        cv2.ellipse(m, (int(cx), int(cy)), (int(w / 2 - 1), int(h / 2 - 1)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        f = rng.uniform(0.4, 0.65)
        cv2.ellipse(m, (int(cx), int(cy)), (int(w / 2 * f), int(h / 2 * f)), 0, 0, 360, 0, -1, cv2.LINE_AA)
    elif shape == "crescent":
        cv2.ellipse(m, (int(cx), int(cy)), (int(w / 2 - 1), int(h / 2 - 1)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.ellipse(m, (int(cx + w * rng.uniform(0.22, 0.35)), int(cy)), (int(w / 2), int(h / 2)), 0, 0, 360, 0, -1,
                    cv2.LINE_AA)
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 60)
        heart_x = 16 * np.sin(t) ** 3
        heart_y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        poly(unit(list(zip(heart_x / 16.5, (heart_y + 2.5) / 14.5))))
    elif shape == "arrow":
        a, b = rng.uniform(0.25, 0.45), rng.uniform(0.0, 0.4)
        poly(unit([(-1, -a), (b, -a), (b, -1), (1, 0), (b, 1), (b, a), (-1, a)]))
    elif shape == "blob":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        radii = np.ones_like(t)
        for harmonic in (2, 3, 5):
            radii += rng.uniform(0.04, 0.16) * np.cos(harmonic * t + rng.uniform(0, 2 * math.pi))
        radii /= radii.max()
        poly(unit(list(zip(radii * np.cos(t), radii * np.sin(t)))))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return cv2.resize(m, (width, height), interpolation=cv2.INTER_AREA)


# -- textures ---------------------------------------------------------------------------------
def _jitter_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    base = np.array(PALETTE[name], np.float32)
    return np.clip(base * rng.uniform(0.88, 1.08) + rng.uniform(-10, 10, 3), 0, 255)


def _second_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """A contrasting partner colour for stripes / checks / spots (white or black, or dark shade)."""
    partner = "black" if name in ("white", "yellow", "cyan", "pink") else "white"
    return _jitter_colour(partner, rng) if rng.random() < 0.7 else _jitter_colour(name, rng) * 0.35


def texture(pattern: str, colour: str, width: int, height: int, rng: np.random.Generator,
            library: SourceLibrary) -> np.ndarray:
    """(height, width, 3) uint8 fill of the given pattern, dominated by ``colour``, modulated by a real
    image patch (so even "plain" fills carry some real texture, at low contrast)."""
    patch = random_patch(rng, library, width, height).astype(np.float32)
    lum = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) / 255.0
    lum = (lum - lum.mean()) / (lum.std() + 1e-3)
    base = _jitter_colour(colour, rng)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == "textured":
        out = base * np.clip(0.85 + 0.28 * lum, 0.25, 1.6)[..., None]
        return np.clip(out, 0, 255).astype(np.uint8)
    gx, gy = rng.uniform(-1, 1, 2)
    shade = 1.0 + 0.12 * ((xx / max(1, width) - 0.5) * gx + (yy / max(1, height) - 0.5) * gy)
    if pattern == "plain":
        out = base * (shade + 0.03 * lum)[..., None]
        return np.clip(out, 0, 255).astype(np.uint8)
    second = _second_colour(colour, rng)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    period = max(4.0, min(width, height) * rng.uniform(0.12, 0.3))
    if pattern == "striped":
        sel = (np.mod(u, period) < period * rng.uniform(0.35, 0.55))
    elif pattern == "checkered":
        sel = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif pattern == "spotted":
        sel = np.zeros((height, width), bool)
        n = int(width * height / (period * period) * 0.8) + 2
        for x, y in zip(rng.uniform(0, width, n), rng.uniform(0, height, n)):
            sel |= (xx - x) ** 2 + (yy - y) ** 2 < (period * 0.3) ** 2
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    fill = np.where(sel[..., None], second, base)  # base colour on the larger share of the area
    if sel.mean() > 0.5:
        fill = np.where(sel[..., None], base, second)
    out = fill * (shade + 0.05 * lum)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Sprite:
    """An object's appearance: RGBA pixels plus the words that describe it."""

    rgba: np.ndarray  # (h, w, 4) uint8
    category: str
    colour: str
    pattern: Optional[str]  # None for real cut-outs (their texture is whatever the photo shows)
    source: str
    shape: Optional[str] = None  # synthetic shape name (None for cut-outs)

    @property
    def aspect(self) -> float:
        return self.rgba.shape[1] / self.rgba.shape[0]

    def with_rgba(self, rgba: np.ndarray, colour: Optional[str] = None) -> "Sprite":
        return Sprite(rgba, self.category, colour or colour_name(rgba), self.pattern, self.source, self.shape)


def shape_sprite(shape: str, pattern: str, colour: str, width: int, height: int, rng: np.random.Generator,
                 library: SourceLibrary) -> Sprite:
    mask = shape_mask(shape, width, height, rng)
    rgb = texture(pattern, colour, width, height, rng, library)
    rgba = np.dstack([rgb, mask])
    return Sprite(rgba, shape_category(shape, width / height), colour_name(rgba), pattern, f"shape:{shape}", shape)


SKIN = ((224, 172, 125), (198, 134, 96), (141, 90, 56), (250, 214, 180), (236, 188, 140), (110, 70, 45))


def hand_sprite(size: int, rng: np.random.Generator, library: SourceLibrary) -> np.ndarray:
    """(size, size, 4) uint8 hand-like occluder: palm + four fingers + thumb, skin coloured, real
    texture at low contrast."""
    k = 2
    s = size * k
    m = np.zeros((s, s), np.uint8)
    palm_c = (int(s * 0.5), int(s * 0.62))
    cv2.ellipse(m, palm_c, (int(s * 0.24), int(s * 0.22)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    spread = rng.uniform(0.05, 0.22)
    for j in range(4):
        a = math.radians(-90 + (j - 1.5) * math.degrees(spread))
        length = s * rng.uniform(0.26, 0.36) * (0.85 if j in (0, 3) else 1.0)
        x0, y0 = palm_c[0] + (j - 1.5) * s * 0.1, palm_c[1] - s * 0.15
        x1, y1 = x0 + length * math.cos(a), y0 + length * math.sin(a)
        cv2.line(m, (int(x0), int(y0)), (int(x1), int(y1)), 255, int(s * 0.085), cv2.LINE_AA)
    side = 1 if rng.random() < 0.5 else -1
    cv2.line(m, (int(palm_c[0] + side * s * 0.18), int(palm_c[1])),
             (int(palm_c[0] + side * s * 0.4), int(palm_c[1] - s * 0.15)), 255, int(s * 0.09), cv2.LINE_AA)
    cv2.rectangle(m, (int(s * 0.34), int(s * 0.7)), (int(s * 0.66), s - 1), 255, -1)  # wrist
    mask = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    skin = np.array(SKIN[int(rng.integers(len(SKIN)))], np.float32) * rng.uniform(0.9, 1.08)
    patch = random_patch(rng, library, size, size).astype(np.float32)
    lum = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) / 255.0
    yy = np.linspace(1.08, 0.9, size, dtype=np.float32)[:, None]
    rgb = skin * (yy + 0.08 * (lum - lum.mean()))[..., None]
    return np.dstack([np.clip(rgb, 0, 255).astype(np.uint8), mask])

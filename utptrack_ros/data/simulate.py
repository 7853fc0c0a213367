"""Sensor models of the generator: RGB camera, depth camera, thermal camera, event camera.

Inputs are the renderer's clean fields (linear radiance in [0, 1], depth in mm, temperature in
deg C); outputs are the native frame types of ``data.sequence``:

* RGB: shot + read noise, darkness (camera gain raised: dark and noisy), optional down/up-sampling.
* Depth: uint16 mm; noise sigma = 1 mm + k * d^2 (structured-light-like), zeros at depth edges,
  world-fixed holes, random speckle dropout and out-of-range pixels.
* Thermal: uint16 centi-kelvin ((T + 273.15) * 100); optics blur, vignetting, row/column fixed
  pattern noise, temporal noise (NETD).
* Events (ESIM-style): per-pixel log-intensity ``L = log(Y + eps)``; between two frames the
  renderer samples ``L`` at ``substeps`` instants; each time ``|L - L_ref|`` crosses the per-pixel
  threshold ``C`` an event of that polarity fires and ``L_ref`` moves by ``C``. ``L_ref`` restarts
  from the previous frame's ``L`` (no memory across frames, so any frame renders on its own).
  Background-activity noise and hot pixels are added. Rendered as an RGB frame: white background,
  red = net positive, blue = net negative polarity.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

KELVIN_OFFSET_C = 273.15
EVENT_BACKGROUND = (255, 255, 255)
EVENT_POSITIVE = (255, 0, 0)
EVENT_NEGATIVE = (0, 0, 255)


class NoiseBank:
    """Pre-drawn noise; each frame takes a randomly shifted (and sign-flipped) window.

    Drawing fresh normal noise for every pixel of every frame costs more than rendering; a shifted
    window of a larger field is statistically the same per frame and deterministic per seed.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...], kind: str = "normal", margin: int = 48):
        self.shape = shape
        self.margin = margin
        big = (shape[0] + margin, shape[1] + margin, *shape[2:])
        self.kind = kind
        self.field = (rng.standard_normal(big, dtype=np.float32) if kind == "normal"
                      else rng.random(big, dtype=np.float32))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        oy, ox = (int(v) for v in rng.integers(0, self.margin, 2))
        window = self.field[oy:oy + self.shape[0], ox:ox + self.shape[1]]
        if rng.random() < 0.5:
            return -window if self.kind == "normal" else 1.0 - window
        return window


@functools.lru_cache(maxsize=512)
def line_kernel(dx: float, dy: float) -> np.ndarray:
    """Normalised linear motion-blur kernel covering the displacement (dx, dy) in pixels."""
    length = math.hypot(dx, dy)
    size = int(math.ceil(length)) | 1
    size = max(size, 3)
    kernel = np.zeros((size, size), np.float32)
    c = size / 2 - 0.5
    steps = max(2, int(math.ceil(length * 2)))
    for f in np.linspace(-0.5, 0.5, steps):
        x, y = c + f * dx, c + f * dy
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for xi, yi, wgt in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)), (x0, y0 + 1, (1 - fx) * fy),
                            (x0 + 1, y0 + 1, fx * fy)):
            if 0 <= xi < size and 0 <= yi < size:
                kernel[yi, xi] += wgt
    return kernel / kernel.sum()


#: Above this kernel size a direct 2-D filter gets slow (OpenCV switches to a DFT); rotate instead.
_DIRECT_KERNEL_MAX = 11


def motion_blur(image: np.ndarray, dx: float, dy: float, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Blur along (dx, dy) pixels (no-op below one pixel).

    Short blurs use a line kernel; long ones rotate the image so the motion is horizontal, box-blur
    along x and rotate back (about 5x faster for 20+ px)."""
    length = math.hypot(dx, dy)
    if length < 1.0:
        return image
    if length < _DIRECT_KERNEL_MAX - 1:
        kernel = line_kernel(round(dx * 4) / 4, round(dy * 4) / 4)
        return cv2.filter2D(image, -1, kernel, borderType=border)
    h, w = image.shape[:2]
    angle = math.degrees(math.atan2(dy, dx))
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    rw, rh = int(math.ceil(w * c + h * s)) + 2, int(math.ceil(w * s + h * c)) + 2
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rot[0, 2] += rw / 2 - w / 2
    rot[1, 2] += rh / 2 - h / 2
    warp_border = cv2.BORDER_REPLICATE if border != cv2.BORDER_CONSTANT else cv2.BORDER_CONSTANT
    rotated = cv2.warpAffine(image, rot, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=warp_border)
    blurred = cv2.blur(rotated, (int(round(length)) | 1, 1), borderType=border)
    return cv2.warpAffine(blurred, rot, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def rgb_sensor(lit: np.ndarray, noise: np.ndarray, dark: bool, lowres_factor: float) -> np.ndarray:
    """(H, W, 3) float radiance -> uint8 RGB with sensor noise (darkness: more noise, gain x2.5).

    Noise sigma = read + shot * x (a linear stand-in for sqrt(read^2 + shot' * x))."""
    read, shot = (0.010, 0.05) if dark else (0.004, 0.012)
    x = lit + (read + shot * lit) * noise
    if lowres_factor > 1.0:
        h, w = x.shape[:2]
        small = cv2.resize(x, (max(4, round(w / lowres_factor)), max(4, round(h / lowres_factor))),
                           interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # clamp negatives first: convertScaleAbs would fold them back up
    return cv2.convertScaleAbs(cv2.max(x, 0.0), alpha=255.0 * (2.5 if dark else 1.0), beta=0.5)


def depth_sensor(depth_mm: np.ndarray, holes: np.ndarray, noise: np.ndarray, uniform: np.ndarray,
                 cfg: dict[str, Any]) -> np.ndarray:
    """(H, W) float mm -> uint16 mm with noise and invalid (0) pixels."""
    sigma = cfg["noise_floor_mm"] + cfg["noise_k"] * depth_mm * depth_mm
    d = depth_mm + sigma * noise
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(depth_mm, kernel) - cv2.erode(depth_mm, kernel)
    edge = spread > 0.04 * depth_mm
    lo, hi = cfg["range_mm"]
    invalid = (holes > 0.5) | (edge & (uniform < cfg["edge_drop"])) | (uniform > 1 - cfg["speckle"])
    invalid |= (d < lo) | (d > hi)
    d[invalid] = 0
    return np.round(d).astype(np.uint16)


def vignetting_map(width: int, height: int) -> np.ndarray:
    """(H, W) float32 r^2 from the image centre, 1 at the corners."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((u - width / 2) / (width / 2)) ** 2 + ((v - height / 2) / (height / 2)) ** 2
    return r2 / 2.0


def thermal_sensor(temp_c: np.ndarray, noise: np.ndarray, vignette: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(H, W) float deg C -> uint16 centi-kelvin with optics blur, vignetting and noise."""
    t = cv2.GaussianBlur(temp_c, (0, 0), cfg["blur_px"])
    t = t - cfg["vignetting_c"] * vignette + cfg["column_fpn"][None, :] + cfg["row_fpn"][:, None]
    t += cfg["netd_c"] * noise
    return np.clip(np.round((t + KELVIN_OFFSET_C) * 100.0), 0, 65535).astype(np.uint16)


def log_intensity(lit: np.ndarray, eps: float) -> np.ndarray:
    """(H, W) float32 ``log(Y + eps)`` of (H, W, 3) linear radiance (Rec.601 luma weights)."""
    y = cv2.cvtColor(lit, cv2.COLOR_RGB2GRAY)
    return cv2.log(np.maximum(y, 0) + eps)


def simulate_events(log_samples: list[np.ndarray], threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event counts between the first and last of ``log_samples`` ((H, W) log intensities in time
    order). Returns (positive, negative) counts, (H, W) float32."""
    ref = log_samples[0].copy()
    pos = np.zeros_like(ref)
    neg = np.zeros_like(ref)
    for sample in log_samples[1:]:
        crossings = np.trunc((sample - ref) / threshold)
        pos += np.maximum(crossings, 0)
        neg += np.maximum(-crossings, 0)
        ref += crossings * threshold
    return pos, neg


def render_events(pos: np.ndarray, neg: np.ndarray, uniform: np.ndarray, noise_rate: float,
                  hot_pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 event frame: white background, red = net positive, blue = net negative.

    Background activity: each pixel fires a random-polarity noise event with ``noise_rate``;
    hot pixels fire every frame (where no real event fired)."""
    net = pos - neg
    quiet = net == 0
    fire = quiet & ((uniform < noise_rate) | hot_pixels)
    noise_positive = uniform < noise_rate / 2
    positive = (net > 0) | (fire & noise_positive)
    negative = (net < 0) | (fire & ~noise_positive)
    frame = np.empty(net.shape + (3,), np.uint8)
    frame[:] = EVENT_BACKGROUND
    frame[..., 1][positive | negative] = 0  # red (255, 0, 0) and blue (0, 0, 255) both lack green
    frame[..., 2][positive] = 0
    frame[..., 0][negative] = 0
    return frame

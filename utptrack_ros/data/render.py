"""Rendering of a planned scene (``data.scene``): composite the layers at any (fractional) time,
run the sensor models (``data.simulate``), and derive the ground truth from the target's mask.

Any frame renders on its own (random access), so training can sample frames of a sequence without
rendering the rest; a small cache makes sequential access (and the event simulator's need for the
previous frame) cheap.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import cv2
import numpy as np

from ..types import Modality
from .scene import Layer, Scene
from .simulate import (
    NoiseBank,
    depth_sensor,
    log_intensity,
    motion_blur,
    render_events,
    rgb_sensor,
    simulate_events,
    thermal_sensor,
    vignetting_map,
)
from .spec import rng_for

#: A target is absent when less than this fraction of its pixels is visible (in view, unoccluded).
ABSENT_VISIBILITY = 0.1


def _lerp(values: np.ndarray, t: float) -> np.ndarray:
    n = len(values)
    t = min(max(t, 0.0), n - 1.0)
    i0 = int(math.floor(t))
    i1 = min(i0 + 1, n - 1)
    f = t - i0
    return values[i0] * (1 - f) + values[i1] * f if f else values[i0]


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def _rotate(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], np.float64)


def _central_relief(relief: np.ndarray, alpha: np.ndarray, mask: np.ndarray, x0: int, y0: int,
                    box_xywh: np.ndarray) -> float:
    """Median relief (mm, premultiplied ``relief`` / ``alpha``) of the target's pixels (``mask``, in
    a patch whose top-left pixel is image pixel ``(x0, y0)``) whose centres lie in the central half
    of its box (continuous coordinates); all of its pixels when none do (e.g. a ring)."""
    x, y, w, h = (float(v) for v in box_xywh)
    cols = x0 + np.arange(mask.shape[1]) + 0.5
    rows = y0 + np.arange(mask.shape[0]) + 0.5
    inside = (np.abs(rows - (y + h / 2))[:, None] < h / 4) & (np.abs(cols - (x + w / 2))[None, :] < w / 4)
    pick = mask & inside if (mask & inside).any() else mask
    return float(np.median(relief[pick] / alpha[pick]))


class Renderer:
    """Renders frames and ground truth of one ``Scene``."""

    def __init__(self, scene: Scene, cache_size: int = 3):
        self.scene = scene
        spec = scene.spec
        w, h = scene.width, scene.height
        rng = rng_for(spec.seed, "noise_banks")
        self._normal = NoiseBank(rng, (h, w, 3))
        self._uniform = NoiseBank(rng, (h, w, 2), kind="uniform")
        self._vignette = vignetting_map(w, h)
        self._grid: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._frames: OrderedDict[int, dict] = OrderedDict()
        self._logs: OrderedDict[float, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._spot_grid: Optional[np.ndarray] = None

    # -- geometry ---------------------------------------------------------------------------------
    def shake_matrix(self, t: float) -> np.ndarray:
        dx, dy, rot = _lerp(self.scene.shake, t)
        cx, cy = self.scene.width / 2, self.scene.height / 2
        return _translate(cx + dx, cy + dy) @ _rotate(rot) @ _translate(-cx, -cy)

    def background_matrix(self, t: float) -> np.ndarray:
        px, py = _lerp(self.scene.pan, t)
        m = self.scene.margin
        return self.shake_matrix(t) @ _translate(-m - px, -m - py)

    def layer_matrix(self, layer: Layer, t: float) -> np.ndarray:
        """3x3 homography from sprite pixels to image pixels at time ``t``."""
        hs, ws = layer.alpha.shape
        x, y, scale = _lerp(layer.x, t), _lerp(layer.y, t), _lerp(layer.scale, t)
        angle, tilt, stretch = _lerp(layer.angle, t), _lerp(layer.tilt, t), _lerp(layer.stretch, t)
        dist = 2.5 * max(hs, ws)
        phi = math.radians(tilt)
        persp = np.array([[math.cos(phi), 0, 0], [0, 1, 0], [math.sin(phi) / dist, 0, 1]], np.float64)
        size = np.diag([scale * stretch, scale / stretch, 1.0])
        return (self.shake_matrix(t) @ _translate(float(x), float(y)) @ _rotate(float(angle)) @ size @ persp
                @ _translate(-(ws - 1) / 2, -(hs - 1) / 2))

    def _deformed(self, layer: Layer, src: np.ndarray, t: float) -> np.ndarray:
        if layer.deform <= 0:
            return src
        hs, ws = layer.alpha.shape
        if id(layer) not in self._grid:
            yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
            self._grid[id(layer)] = (xx, yy)
        xx, yy = self._grid[id(layer)]
        ph = layer.deform_speed * t + layer.deform_phase
        amp = layer.deform * max(hs, ws)
        map_x = xx + amp * np.sin(2 * math.pi * yy / hs + ph).astype(np.float32)
        map_y = yy + 0.6 * amp * np.sin(2 * math.pi * xx / ws + 1.3 * ph).astype(np.float32)
        return cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    @staticmethod
    def _bounds(homography: np.ndarray, hs: int, ws: int, pad: int) -> tuple[int, int, int, int]:
        corners = np.array([[-0.5, -0.5, 1], [ws - 0.5, -0.5, 1], [-0.5, hs - 0.5, 1], [ws - 0.5, hs - 0.5, 1]]).T
        p = homography @ corners
        xs, ys = p[0] / p[2], p[1] / p[2]
        return (int(math.floor(xs.min())) - pad, int(math.floor(ys.min())) - pad,
                int(math.ceil(xs.max())) + pad + 1, int(math.ceil(ys.max())) + pad + 1)

    @staticmethod
    def _warp(src: np.ndarray, homography: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return cv2.warpPerspective(src, _translate(-x0, -y0) @ homography, (x1 - x0, y1 - y0),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _centre(self, layer: Layer, t: float) -> np.ndarray:
        hs, ws = layer.alpha.shape
        p = self.layer_matrix(layer, t) @ np.array([(ws - 1) / 2, (hs - 1) / 2, 1.0])
        return p[:2] / p[2]

    # -- compositing --------------------------------------------------------------------------------
    def composite(self, t: float, with_aux: bool) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray],
                                                          Optional[np.ndarray]]:
        """Clean fields at time ``t``: radiance (H, W, 3) in [0, 1], and with ``with_aux`` temperature
        (deg C), depth (mm) and the hole field, each (H, W) float32."""
        sc = self.scene
        w, h = sc.width, sc.height
        a_bg = self.background_matrix(t)
        rad = cv2.warpAffine(sc.background, a_bg[:2], (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE).astype(np.float32) * (1.0 / 255.0)
        centre = np.array([w / 2, h / 2, 1.0])
        bg_motion = (a_bg @ centre - self.background_matrix(t - 1) @ centre)[:2] * sc.exposure if t >= 1 else (0, 0)
        rad = motion_blur(rad, *bg_motion)
        temp: Optional[np.ndarray] = None
        depth: Optional[np.ndarray] = None
        holes: Optional[np.ndarray] = None
        if with_aux:
            aux = cv2.warpAffine(sc.background_aux, a_bg[:2], (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            temp, holes = np.ascontiguousarray(aux[..., 0]), np.ascontiguousarray(aux[..., 2])
            depth = sc.plane_mm + aux[..., 1]
        order = sorted(sc.layers, key=lambda layer: -float(_lerp(layer.depth, t)))
        for layer in order:
            hom = self.layer_matrix(layer, t)
            motion = (self._centre(layer, t) - self._centre(layer, t - 1)) * sc.exposure if t >= 1 else np.zeros(2)
            blur_dx, blur_dy = float(motion[0]), float(motion[1])
            pad = int(math.ceil(np.hypot(*motion) / 2)) + 2
            hs, ws = layer.alpha.shape
            x0, y0, x1, y1 = self._bounds(hom, hs, ws, pad)
            x0, y0, x1, y1 = max(x0, -pad), max(y0, -pad), min(x1, w + pad), min(y1, h + pad)
            if x1 <= max(x0, 0) or y1 <= max(y0, 0) or x0 >= w or y0 >= h:
                continue
            # RGBA and aux warp separately so the radiance is bit-identical with or without aux
            patch = self._warp(self._deformed(layer, layer.pixels, t), hom, x0, y0, x1, y1)
            patch = motion_blur(patch, blur_dx, blur_dy, border=cv2.BORDER_CONSTANT)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            patch = patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            a = patch[..., 3]
            region = rad[cy0:cy1, cx0:cx1]
            region *= (1.0 - a)[..., None]
            region += patch[..., :3]
            if with_aux:
                assert temp is not None and depth is not None and holes is not None  # made above when with_aux
                aux = self._warp(self._deformed(layer, layer.aux_pixels, t), hom, x0, y0, x1, y1)
                aux = motion_blur(aux, blur_dx, blur_dy, border=cv2.BORDER_CONSTANT)[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                t_region = temp[cy0:cy1, cx0:cx1]
                t_region *= 1.0 - a
                t_region += aux[..., 0]
                solid = a > 0.5
                d_region = depth[cy0:cy1, cx0:cx1]
                d_region[solid] = float(_lerp(layer.depth, t)) + aux[..., 1][solid] / a[solid]
                holes[cy0:cy1, cx0:cx1][solid] = 0.0
                if layer.depth_holes is not None:
                    lost = self._warp(self._deformed(layer, layer.depth_holes, t), hom, x0, y0, x1, y1)
                    lost = motion_blur(lost, blur_dx, blur_dy, border=cv2.BORDER_CONSTANT)[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                    holes[cy0:cy1, cx0:cx1][solid & (lost > 0.5)] = 1.0
        return rad, temp, depth, holes

    def illuminate(self, rad: np.ndarray, t: float) -> np.ndarray:
        """Radiance under the lighting at time ``t`` (global gain, colour cast, spotlight)."""
        sc = self.scene
        gain = (float(_lerp(sc.gain, t)) * _lerp(sc.cast, t)).astype(np.float32)
        sx, sy, strength = _lerp(sc.spot, t)
        if strength <= 0:
            return rad if np.all(gain == 1.0) else rad * gain
        if self._spot_grid is None:  # a Gaussian twice the frame size; each frame takes a shifted window
            w, h = sc.width, sc.height
            v, u = np.mgrid[0:2 * h, 0:2 * w].astype(np.float32)
            sigma = 0.35 * w
            self._spot_grid = np.exp(-((u - w) ** 2 + (v - h) ** 2) / (2 * sigma * sigma))
        ox = int(np.clip(round(sc.width - sx), 0, sc.width))
        oy = int(np.clip(round(sc.height - sy), 0, sc.height))
        window = self._spot_grid[oy:oy + sc.height, ox:ox + sc.width]
        spot = (1 - float(strength) / 2) + float(strength) * window
        out = rad * gain
        out *= spot[..., None]  # in place: ~5x faster than one broadcast expression on the window view
        return out

    def _log_intensity(self, t: float, lit: Optional[np.ndarray] = None) -> np.ndarray:
        key = round(t, 6)
        if key in self._logs:
            self._logs.move_to_end(key)
            return self._logs[key]
        if lit is None:
            rad, *_ = self.composite(t, with_aux=False)
            lit = self.illuminate(rad, t)
        value = log_intensity(lit, self.scene.events["eps"])
        self._logs[key] = value
        while len(self._logs) > 2 * (self.scene.spec.event_substeps + 1):
            self._logs.popitem(last=False)
        return value

    # -- frames -------------------------------------------------------------------------------------
    def frame(self, index: int) -> dict:
        """Frame ``index``: ``{"rgb": uint8 (H,W,3), Modality.DEPTH: uint16, ...}`` (cached)."""
        if index in self._frames:
            self._frames.move_to_end(index)
            return self._frames[index]
        sc = self.scene
        mods = sc.spec.modalities
        with_aux = Modality.DEPTH in mods or Modality.THERMAL in mods
        rad, temp, depth, holes = self.composite(float(index), with_aux)
        assert not with_aux or (temp is not None and depth is not None and holes is not None)
        lit = self.illuminate(rad, float(index))
        rng = rng_for(sc.spec.seed, "frame", index)
        normal = self._normal.sample(rng)
        uniform = self._uniform.sample(rng)
        dark = bool(sc.dark[index])
        out: dict = {"rgb": rgb_sensor(lit, normal, dark, sc.lowres_factor)}
        if Modality.DEPTH in mods and depth is not None and holes is not None:
            out[Modality.DEPTH] = depth_sensor(depth, holes, normal[..., 0], uniform[..., 0], sc.depth)
        if Modality.THERMAL in mods and temp is not None:
            out[Modality.THERMAL] = thermal_sensor(temp, normal[..., 1], self._vignette, sc.thermal)
        if Modality.EVENT in mods:
            out[Modality.EVENT] = self._event_frame(index, lit, uniform[..., 1], dark)
        self._frames[index] = out
        while len(self._frames) > self._cache_size:
            self._frames.popitem(last=False)
        return out

    def _event_frame(self, index: int, lit: np.ndarray, uniform: np.ndarray, dark: bool) -> np.ndarray:
        ev = self.scene.events
        rate = ev["dark_noise_rate"] if dark else ev["noise_rate"]
        current = self._log_intensity(float(index), lit)
        if index == 0:
            zero = np.zeros_like(current)
            return render_events(zero, zero, uniform, rate, ev["hot_pixels"])
        k = self.scene.spec.event_substeps
        samples = [self._log_intensity(index - 1 + j / k) for j in range(k)] + [current]
        pos, neg = simulate_events(samples, ev["threshold_map"])
        return render_events(pos, neg, uniform, rate, ev["hot_pixels"])

    # -- ground truth -------------------------------------------------------------------------------
    def groundtruth(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Target boxes (N, 4) xywh (NaN when absent), absent flags (N,), and per-frame info:
        ``visibility`` (visible fraction of the target's pixels), ``in_view`` (fraction inside the
        image), ``occluded`` (fraction of the in-view part hidden), ``illumination`` (global gain),
        ``dark``, ``speed_px`` (target centre motion), ``blur_px`` (motion blur length), ``angle_deg``
        (in-plane rotation), ``camera_motion_px`` (background motion from pan and shake) and
        ``target_position_m`` (:meth:`target_position` at the target's depth: the median noise-free
        depth of its surface in the central half of its box, occluded and depth-hole parts included;
        (N, 3), NaN rows where absent)."""
        sc = self.scene
        n, w, h = sc.length, sc.width, sc.height
        target = sc.target
        gt = np.full((n, 4), np.nan)
        absent = np.zeros(n, bool)
        info: dict[str, np.ndarray] = {k: np.zeros(n) for k in ("visibility", "in_view", "occluded", "speed_px", "blur_px")}
        position = np.full((n, 3), np.nan)
        hs, ws = target.alpha.shape
        for i in range(n):
            hom = self.layer_matrix(target, float(i))
            x0, y0, x1, y1 = self._bounds(hom, hs, ws, 1)
            alpha = self._warp(self._deformed(target, target.alpha, float(i)), hom, x0, y0, x1, y1)
            mask = alpha > 0.5
            total = int(mask.sum())
            if i > 0:
                speed = float(np.hypot(*(self._centre(target, i) - self._centre(target, i - 1))))
                info["speed_px"][i] = speed
                info["blur_px"][i] = speed * sc.exposure
            if total == 0:
                absent[i] = True
                continue
            yy, xx = np.nonzero(mask)
            bx0, by0 = x0 + xx.min(), y0 + yy.min()
            bx1, by1 = x0 + xx.max() + 1, y0 + yy.max() + 1
            inside = np.zeros_like(mask)
            ix0, iy0, ix1, iy1 = max(0, -x0), max(0, -y0), min(x1 - x0, w - x0), min(y1 - y0, h - y0)
            if ix1 > ix0 and iy1 > iy0:
                inside[iy0:iy1, ix0:ix1] = True
            in_view = mask & inside
            covered = np.zeros_like(mask)
            depth_t = float(target.depth[i])
            for layer in sc.layers[1:]:
                if float(layer.depth[i]) >= depth_t:
                    continue
                lh, lw = layer.alpha.shape
                lhom = self.layer_matrix(layer, float(i))
                lx0, ly0, lx1, ly1 = self._bounds(lhom, lh, lw, 1)
                if lx1 <= x0 or ly1 <= y0 or lx0 >= x1 or ly0 >= y1:
                    continue
                covered |= self._warp(self._deformed(layer, layer.alpha, float(i)), lhom, x0, y0, x1, y1) > 0.5
            visible = int((in_view & ~covered).sum())
            n_in = int(in_view.sum())
            info["visibility"][i] = visible / total
            info["in_view"][i] = n_in / total
            info["occluded"][i] = (n_in - visible) / n_in if n_in else 0.0
            cx0, cy0, cx1, cy1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
            if visible / total < ABSENT_VISIBILITY or cx1 - cx0 < 1 or cy1 - cy0 < 1:
                absent[i] = True
                continue
            gt[i] = (cx0, cy0, cx1 - cx0, cy1 - cy0)
            relief = self._warp(self._deformed(target, target.aux_pixels, float(i)), hom, x0, y0, x1, y1)[..., 1]
            position[i] = self.target_position(gt[i], float(target.depth[i]) + _central_relief(relief, alpha, mask, x0, y0,
                                                                                             gt[i]))
        info["illumination"] = sc.gain.astype(np.float64).copy()
        info["dark"] = sc.dark.copy()
        info["angle_deg"] = np.asarray(target.angle, np.float64).copy()
        centre = np.array([w / 2, h / 2, 1.0])
        bg = np.array([(self.background_matrix(float(i)) @ centre)[:2] for i in range(n)])
        info["camera_motion_px"] = np.r_[0.0, np.hypot(*np.diff(bg, axis=0).T)]
        info["target_position_m"] = position
        return gt, absent, info

    def target_position(self, box_xywh: np.ndarray, depth_mm: float) -> np.ndarray:
        """Ground-truth 3D position of the target, (3,) metres in the colour camera's optical frame
        (x right, y down, z forward): the ray through the centre of its box (clipped to the image)
        at depth ``depth_mm`` (z, millimetres).

        The camera is the pinhole of ``attributes["camera"]`` (fx, fy, cx, cy; pixel centres at
        integers, no distortion); the box is continuous (pixel i covers [i, i + 1)), so its centre
        is pixel ``x + w / 2 - 0.5``. Written out here, independent of ``utptrack_ros.spatial``, so
        tests of one check the other."""
        cam = self.scene.attributes["camera"]
        x, y, w, h = (float(v) for v in box_xywh)
        z = depth_mm / 1000.0
        u, v = x + w / 2.0 - 0.5, y + h / 2.0 - 0.5
        return np.array([(u - cam["cx"]) * z / cam["fx"], (v - cam["cy"]) * z / cam["fy"], z])

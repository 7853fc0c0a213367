"""Scene plan of one generated sequence: objects with per-frame poses, camera motion, lighting and
sensor parameters, all drawn from a ``SequenceSpec`` (``plan_scene``: one planner per part, each
with its own random stream). Rendering is ``data.render``.

Geometry: every object is a sprite (RGBA + temperature + relief) placed by a homography
``shake(t) . T(x, y) . R(angle) . S(scale * (sx, sy)) . P(tilt) . T(-sprite centre)`` in image pixels
(pixel centres at integers). The target's ``(x, y)`` is its image position with the camera following
it; distractors and occluders are positioned relative to it; the background is a canvas that moves
with camera pan and shake. Depth sets the order (far first) and the depth image; the target's scale
is ``scale0 * depth0 / depth(t)`` so scale change and depth agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import cv2
import numpy as np

from .appearance import (
    ACHROMATIC,
    CHROMATIC,
    COLOURS,
    SHAPES,
    Sprite,
    colour_name,
    hand_sprite,
    recolour,
    shape_category,
    shape_mask,
    shape_sprite,
    texture,
)
from .sources import SourceLibrary, random_patch
from .spec import Challenge, SequenceSpec, rng_for


@dataclass
class Layer:
    """One object: appearance and per-frame pose arrays (length N)."""

    role: str  # "target" | "distractor" | "occluder"
    sprite: Sprite
    temperature: np.ndarray  # (hs, ws) float32 deg C
    relief_mm: np.ndarray  # (hs, ws) float32, negative = nearer than ``depth``
    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray  # degrees, counter-clockwise on screen
    tilt: np.ndarray  # degrees, out-of-plane rotation about the sprite's vertical axis
    depth: np.ndarray  # mm
    stretch: np.ndarray  # (N,) horizontal stretch factor (vertical = 1 / stretch): "breathing"
    deform: float = 0.0  # non-rigid amplitude, fraction of the sprite size
    deform_speed: float = 0.0  # radians per frame
    deform_phase: float = 0.0
    kind: str = ""  # occluders: hand / object / board
    depth_holes: Optional[np.ndarray] = None  # (hs, ws) float32 1 = the depth camera gets no return there
    pixels: np.ndarray = field(init=False, repr=False)  # (hs, ws, 4) premultiplied r, g, b, alpha
    aux_pixels: np.ndarray = field(init=False, repr=False)  # (hs, ws, 2) premultiplied temperature, relief
    alpha: np.ndarray = field(init=False, repr=False)  # (hs, ws) float32

    def __post_init__(self) -> None:
        rgba = self.sprite.rgba.astype(np.float32) / 255.0
        a = rgba[..., 3]
        self.alpha = np.ascontiguousarray(a)
        self.pixels = np.ascontiguousarray(np.dstack([rgba[..., :3] * a[..., None], a]).astype(np.float32))
        self.aux_pixels = np.ascontiguousarray(np.dstack([self.temperature * a, self.relief_mm * a]).astype(np.float32))


@dataclass
class Scene:
    """Everything the renderer needs; ``attributes`` / ``frame_info`` describe it for users."""

    spec: SequenceSpec
    width: int
    height: int
    background: np.ndarray  # (Hc, Wc, 3) uint8 canvas
    background_aux: np.ndarray  # (Hc, Wc, 3) float32: temperature C, relief mm, hole field 0..1
    margin: int
    plane_mm: np.ndarray  # (H, W) float32 background depth plane
    pan: np.ndarray  # (N, 2) camera pan in px (background moves by -pan)
    shake: np.ndarray  # (N, 3) dx, dy px, rotation degrees
    layers: list[Layer]
    gain: np.ndarray  # (N,) global illumination gain
    dark: np.ndarray  # (N,) bool, darkness (camera raises its gain, noise grows)
    spot: np.ndarray  # (N, 3) spotlight x, y (px), strength (0 = none)
    cast: np.ndarray  # (N, 3) per-channel colour cast
    exposure: float  # fraction of the frame interval the shutter is open (motion blur length)
    lowres_factor: float  # RGB down/up-sampling factor (1 = off)
    ambient_c: float
    thermal: dict[str, Any]
    depth: dict[str, Any]
    events: dict[str, Any]
    attributes: dict[str, Any]

    @property
    def length(self) -> int:
        return self.spec.length

    @property
    def target(self) -> Layer:
        return self.layers[0]


# -- random curves ------------------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, n: int, cycles: tuple[float, float] = (0.3, 2.0), terms: int = 3
                 ) -> np.ndarray:
    """(n,) smooth random curve in [-1, 1]: a sum of sinusoids, ``cycles`` per sequence."""
    t = np.arange(n) / max(1, n - 1)
    out = np.zeros(n)
    for _ in range(terms):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * rng.uniform(*cycles) * t + rng.uniform(0, 2 * math.pi))
    return out / (np.abs(out).max() + 1e-9)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ar1(rng: np.random.Generator, n: int, sigma: float, rho: float) -> np.ndarray:
    e = rng.normal(0, sigma * math.sqrt(1 - rho * rho), n)
    out = np.zeros(n)
    out[0] = rng.normal(0, sigma)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + e[i]
    return out


# -- appearance choices -------------------------------------------------------------------------
def _colour_word(rng: np.random.Generator) -> str:
    return str(rng.choice(CHROMATIC)) if rng.random() < 0.75 else str(rng.choice(("brown",) + ACHROMATIC))


def _pattern(rng: np.random.Generator) -> str:
    return str(rng.choice(("plain", "textured", "striped", "checkered", "spotted"), p=(0.25, 0.3, 0.15, 0.15, 0.15)))


def _sprite_dims(aspect: float, max_side: int) -> tuple[int, int]:
    if aspect >= 1:
        return max_side, max(6, round(max_side / aspect))
    return max(6, round(max_side * aspect)), max_side


def _object_sprite(rng: np.random.Generator, library: SourceLibrary, objects: tuple, index: Optional[int] = None
                   ) -> Sprite:
    obj = objects[int(rng.integers(len(objects)))] if index is None else objects[index]
    rgba = obj.rgba().copy()
    if obj.fill == "texture":  # silhouette: fill with a real texture of a plausible colour
        h, w = rgba.shape[:2]
        colour = str(rng.choice(("brown", "black", "white", "grey")))
        rgba[..., :3] = texture("textured", colour, w, h, rng, library)
    stretch = math.exp(rng.uniform(-0.2, 0.2))
    h, w = rgba.shape[:2]
    rgba = cv2.resize(rgba, (max(4, round(w * stretch)), max(4, round(h / stretch))), interpolation=cv2.INTER_AREA)
    return Sprite(rgba, obj.category, colour_name(rgba), None, f"object:{obj.name}")


def _target_sprite(rng: np.random.Generator, library: SourceLibrary, include_holdout: bool, max_side: int
                   ) -> tuple[Sprite, str]:
    """The target's appearance and its aspect class (normal / tall / wide)."""
    u = rng.random()
    aspect_class = "normal"
    if u < 0.45:
        return _object_sprite(rng, library, library.select_objects(include_holdout)), aspect_class
    v = rng.random()
    if v < 0.15:
        aspect, aspect_class = math.exp(rng.uniform(math.log(1 / 7), math.log(1 / 2.8))), "tall"
    elif v < 0.3:
        aspect, aspect_class = math.exp(rng.uniform(math.log(2.8), math.log(7))), "wide"
    else:
        aspect = math.exp(rng.uniform(-0.9, 0.9))
    shape = str(rng.choice(SHAPES)) if aspect_class == "normal" else str(
        rng.choice(("rectangle", "ellipse", "rectangle", "arrow", "cross", "blob")))
    w, h = _sprite_dims(aspect, max_side)
    return shape_sprite(shape, _pattern(rng), _colour_word(rng), w, h, rng, library), aspect_class


def _distractor_sprite(rng: np.random.Generator, library: SourceLibrary, target: Sprite, objects: tuple
                       ) -> Sprite:
    """An object similar to the target that differs from it in colour, category or pattern (the
    words of the language description), so a prompt can always tell them apart."""

    def differs(sprite: Sprite) -> bool:
        return (sprite.category, sprite.colour, sprite.pattern) != (target.category, target.colour, target.pattern)

    siblings = tuple(o for o in objects if o.category == target.category and f"object:{o.name}" != target.source
                     and colour_name(o.rgba()) != target.colour)
    h, w = target.rgba.shape[:2]
    for _ in range(8):
        mode = rng.choice(("recolour", "other_category", "sibling", "pattern"), p=(0.45, 0.3, 0.15, 0.1))
        if mode == "sibling" and siblings:
            sprite = _object_sprite(rng, library, siblings)
        elif mode == "pattern" and target.shape is not None:
            patterns = [p for p in ("plain", "striped", "checkered", "spotted", "textured") if p != target.pattern]
            base = target.colour if target.colour in COLOURS else _colour_word(rng)
            sprite = shape_sprite(target.shape, str(rng.choice(patterns)), base, w, h, rng, library)
        elif mode == "other_category" and target.shape is not None:  # another shape, same fill
            base = target.colour if target.colour in COLOURS else _colour_word(rng)
            shape = str(rng.choice([s for s in SHAPES if s != target.shape]))
            sprite = shape_sprite(shape, target.pattern or "textured", base, w, h, rng, library)
        elif mode == "other_category":  # another real object, recoloured like the target
            sprite = _object_sprite(rng, library, tuple(o for o in objects if o.category != target.category))
            if target.colour in COLOURS and sprite.colour != target.colour:
                sprite = sprite.with_rgba(recolour(sprite.rgba, target.colour, rng))
        else:  # the same pixels under a different colour word
            sprite = target.with_rgba(recolour(target.rgba, str(rng.choice([c for c in COLOURS if c != target.colour])),
                                               rng))
        if differs(sprite):
            return sprite
    return _object_sprite(rng, library, tuple(o for o in objects if o.category != target.category))


def _core(alpha: np.ndarray) -> np.ndarray:
    """0 at the object's edge, 1 at its most interior point (distance transform)."""
    mask = (alpha > 0.5).astype(np.uint8)
    if not mask.any():
        return np.zeros_like(alpha, np.float32)
    dist = cv2.distanceTransform(np.pad(mask, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return (dist / (dist.max() + 1e-6)).astype(np.float32)


def _luminance(rgba: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _heat_and_relief(sprite: Sprite, t_base: float, t_core: float, relief_mm: float) -> tuple[np.ndarray, np.ndarray]:
    core = _core(sprite.rgba[..., 3].astype(np.float32) / 255.0)
    lum = _luminance(sprite.rgba)
    temperature = t_base + t_core * np.sqrt(core) + 0.8 * (lum - lum.mean())
    relief = -relief_mm * np.sqrt(core)
    return temperature.astype(np.float32), relief.astype(np.float32)


def _depth_hole_mask(alpha: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(hs, ws) float32: random elliptic patches covering about ``fraction`` of the opaque sprite
    (IR-absorbing or shiny parts of the target that give the depth camera no return)."""
    hs, ws = alpha.shape
    opaque = alpha > 0.5
    holes = np.zeros((hs, ws), np.uint8)
    total = max(int(opaque.sum()), 1)
    for _ in range(60):
        if (holes.astype(bool) & opaque).sum() >= fraction * total:
            break
        centre = (int(rng.uniform(0, ws)), int(rng.uniform(0, hs)))
        axes = (int(rng.uniform(0.08, 0.25) * ws) + 1, int(rng.uniform(0.08, 0.25) * hs) + 1)
        cv2.ellipse(holes, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    return holes.astype(np.float32)


# -- planning -----------------------------------------------------------------------------------
# One planner per part of the scene. Each part draws from its own named random stream
# (``spec.rng_for``) in a fixed order whatever the challenges, so toggling one challenge leaves
# the draws of every other part unchanged. Parts that depend on others run after them.
@dataclass
class _Camera:
    pan: np.ndarray  # (N, 2) px
    shake: np.ndarray  # (N, 3) dx, dy px, rotation degrees
    panning: bool
    margin: int  # canvas border (px) that pan and shake never uncover


@dataclass
class _Background:
    name: str
    canvas: np.ndarray  # (Hc, Wc, 3) uint8
    aux: np.ndarray  # (Hc, Wc, 3) float32: temperature C, relief mm, hole field 0..1
    plane_mm: np.ndarray  # (H, W) float32
    plane_kind: str  # wall / floor
    ambient_c: float


@dataclass
class _TargetLook:
    """The target's appearance (stream "target"; the camouflage planner continues that stream)."""

    sprite: Sprite
    aspect_class: str
    temperature: np.ndarray
    relief_mm: np.ndarray
    scale0: float  # on-screen scale at depth0
    depth0: float  # mm
    delta_t: float  # C above ambient
    relief_depth_mm: float
    camo_patch_xy: tuple[float, float]
    camo_shape: str
    rng: np.random.Generator

    @property
    def size(self) -> tuple[int, int]:
        """(hs, ws): sprite height and width in px."""
        hs, ws = self.sprite.rgba.shape[:2]
        return hs, ws


@dataclass
class _TargetPose:
    """Per-frame depth, scale, rotation, tilt and deformation of the target."""

    depth: np.ndarray  # (N,) mm
    scale: np.ndarray  # (N,)
    angle0: float
    angle: np.ndarray  # (N,) degrees
    tilt_amp: float
    tilt: np.ndarray  # (N,) degrees
    deform: float
    deform_speed: float
    deform_phase: float
    breathe: np.ndarray  # (N,) horizontal stretch


@dataclass
class _TargetPath:
    base_pos: np.ndarray  # (N, 2) image px of the free motion (distractors follow it)
    pos: np.ndarray  # (N, 2) image px, after leaving the view
    speed: float  # px per frame
    out_of_view: Optional[dict[str, Any]]


@dataclass
class _Lighting:
    gain: np.ndarray  # (N,)
    dark: np.ndarray  # (N,) bool
    spot: np.ndarray  # (N, 3)
    cast: np.ndarray  # (N, 3)


@dataclass
class _Sensors:
    exposure: float
    lowres_factor: float
    thermal: dict[str, Any]
    depth: dict[str, Any]
    events: dict[str, Any]


def _plan_camera(spec: SequenceSpec) -> _Camera:
    """Camera pan (40 % of sequences) and shake (``camera_shake``); stream "camera"."""
    n, (W, H) = spec.length, spec.size
    rc = rng_for(spec.seed, "camera")
    pan_on = rc.random() < 0.4
    pan_amp = rc.uniform(0.02, 0.08) * W
    pan = np.stack([smooth_noise(rc, n, (0.1, 0.8)), smooth_noise(rc, n, (0.1, 0.8)) * 0.5], 1) * pan_amp
    if not pan_on:
        pan[:] = 0.0
    shake = np.zeros((n, 3))
    k = spec.strength(Challenge.CAMERA_SHAKE)
    sigma_xy, sigma_rot = (0.006 + 0.025 * k) * W, 0.4 + 2.5 * k
    shake_draw = np.stack([_ar1(rc, n, sigma_xy, 0.35), _ar1(rc, n, sigma_xy, 0.35), _ar1(rc, n, sigma_rot, 0.35)], 1)
    if k > 0:
        shake = shake_draw
    max_rot = math.radians(float(np.abs(shake[:, 2]).max()))
    margin = int(math.ceil(np.abs(pan).max() + np.abs(shake[:, :2]).max() * 1.2 + (W + H) * math.sin(max_rot) + 6))
    return _Camera(pan, shake, bool(pan_on), margin)


def _background_canvas(rb: np.random.Generator, image: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """(ch, cw, 3) uint8: a random zoomed crop of ``image``, flipped half of the time."""
    ih, iw = image.shape[:2]
    zoom = max(cw / iw, ch / ih) * rb.uniform(1.0, 1.6)
    crop_w, crop_h = min(iw, int(math.ceil(cw / zoom))), min(ih, int(math.ceil(ch / zoom)))
    x0, y0 = int(rb.integers(0, iw - crop_w + 1)), int(rb.integers(0, ih - crop_h + 1))
    canvas = cv2.resize(image[y0:y0 + crop_h, x0:x0 + crop_w], (cw, ch), interpolation=cv2.INTER_AREA)
    if rb.random() < 0.5:
        canvas = canvas[:, ::-1]
    return np.ascontiguousarray(canvas)


def _background_fields(rb: np.random.Generator, canvas: np.ndarray, W: int) -> tuple[float, np.ndarray]:
    """Ambient temperature and the canvas's (temperature C, relief mm, hole field) stack."""
    ch, cw = canvas.shape[:2]
    lum = cv2.GaussianBlur(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, (0, 0), 2.0)
    ambient = rb.uniform(14.0, 26.0)
    bg_temp = ambient + (lum - lum.mean()) * rb.uniform(2.0, 6.0)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    for _ in range(int(rb.integers(0, 3))):  # a few warm background things (lamps, radiators)
        cx, cy, sg = rb.uniform(0, cw), rb.uniform(0, ch), rb.uniform(0.03, 0.08) * W
        bg_temp += rb.uniform(3.0, 8.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sg * sg))
    relief = (lum - 0.5) * rb.uniform(40.0, 120.0)
    holes = np.zeros((ch, cw), np.float32)
    for _ in range(int(rb.integers(1, 6))):
        cv2.ellipse(holes, (int(rb.uniform(0, cw)), int(rb.uniform(0, ch))),
                    (int(rb.uniform(0.01, 0.06) * W) + 1, int(rb.uniform(0.01, 0.05) * W) + 1),
                    rb.uniform(0, 180), 0, 360, 1.0, -1)
    if rb.random() < 0.5:  # IR-absorbing dark materials read as invalid
        holes[lum < 0.08] = 1.0
    return ambient, np.dstack([bg_temp, relief, holes]).astype(np.float32)


def _depth_plane(rb: np.random.Generator, W: int, H: int) -> tuple[np.ndarray, str]:
    """(H, W) background depth in mm: a slanted wall (60 %) or a floor receding to the top."""
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float32)
    if rb.random() < 0.6:  # wall
        dc = rb.uniform(3000.0, 6000.0)
        plane = dc * (1 + rb.uniform(-0.15, 0.15) * (uu / W - 0.5) + rb.uniform(-0.1, 0.1) * (vv / H - 0.5))
        return plane, "wall"
    near, far = rb.uniform(1500.0, 2500.0), rb.uniform(4000.0, 8000.0)
    return far + (near - far) * (vv / H), "floor"


def _plan_background(spec: SequenceSpec, library: SourceLibrary, margin: int) -> _Background:
    """Background canvas (frame + ``margin`` on each side), its aux fields and depth plane; stream "background"."""
    W, H = spec.size
    rb = rng_for(spec.seed, "background")
    backgrounds = library.select_backgrounds(spec.split != "train")
    source = backgrounds[int(rb.integers(len(backgrounds)))]
    canvas = _background_canvas(rb, source.rgb(), W + 2 * margin, H + 2 * margin)
    ambient, aux = _background_fields(rb, canvas, W)
    plane, plane_kind = _depth_plane(rb, W, H)
    return _Background(source.name, canvas, aux, plane.astype(np.float32), plane_kind, ambient)


def _plan_target_look(spec: SequenceSpec, library: SourceLibrary, ambient_c: float) -> _TargetLook:
    """Target sprite, size (``low_resolution`` shrinks it), depth, heat and relief; stream "target"."""
    W, H = spec.size
    rt = rng_for(spec.seed, "target")
    area_frac = math.exp(rt.uniform(math.log(0.008), math.log(0.07)))
    lowres_area = math.exp(rt.uniform(math.log(0.0012), math.log(0.0035)))
    k = spec.strength(Challenge.LOW_RESOLUTION)
    area_frac = area_frac ** (1 - k) * lowres_area ** k
    area_px = area_frac * W * H
    max_side = int(np.clip(math.sqrt(area_px) * 3.0, 48, 256))
    sprite, aspect_class = _target_sprite(rt, library, spec.split != "train", max_side)
    camo_patch_xy = (rt.uniform(0, 1), rt.uniform(0, 1))
    camo_shape = str(rt.choice(("ellipse", "rectangle", "blob", "hexagon")))
    hs, ws = sprite.rgba.shape[:2]
    scale0 = math.sqrt(area_px / (hs * ws))
    depth0 = rt.uniform(1200.0, 3500.0)
    delta_t = rt.uniform(6.0, 14.0)
    relief_mm = rt.uniform(20, 80)
    temperature, relief_t = _heat_and_relief(sprite, ambient_c + 0.6 * delta_t, 0.4 * delta_t, relief_mm)
    return _TargetLook(sprite, aspect_class, temperature, relief_t, scale0, depth0, delta_t, relief_mm, camo_patch_xy,
                       camo_shape, rt)


def _plan_depth_and_scale(spec: SequenceSpec, look: _TargetLook) -> tuple[np.ndarray, np.ndarray]:
    """(depth mm, scale) per frame: ``scale_change`` ramps the depth; stream "scale"."""
    n, (W, H) = spec.length, spec.size
    hs, ws = look.size
    rs = rng_for(spec.seed, "scale")
    k = spec.strength(Challenge.SCALE_CHANGE)
    ramp = np.linspace(-1, 1, n) * (1 if rs.random() < 0.5 else -1)
    wobble = smooth_noise(rs, n)
    if k > 0:
        amp = 0.35 + 0.5 * k
        log_depth = amp * np.clip(ramp * 0.8 + 0.35 * wobble, -1, 1)
    else:
        log_depth = 0.1 * wobble
    depth = np.clip(look.depth0 * np.exp(log_depth), 500.0, 7000.0)
    scale = look.scale0 * look.depth0 / depth
    fit = 0.85 * min(W, H) / (scale.max() * math.hypot(hs, ws) * 0.5 + 1e-6) / 2  # keep it within the frame
    if fit < 1.0:
        scale *= fit
    return depth, scale


def _plan_rotation(spec: SequenceSpec, pattern: Optional[str]) -> tuple[float, np.ndarray]:
    """(first angle, angle per frame) in degrees: ``rotation`` adds a spin; stream "rotation"."""
    n = spec.length
    rr = rng_for(spec.seed, "rotation")
    angle0 = rr.uniform(-20, 20) if pattern is None else rr.uniform(-45, 45)
    spin = rr.uniform(90, 360) * (1 if rr.random() < 0.5 else -1)
    wob = smooth_noise(rr, n)
    k = spec.strength(Challenge.ROTATION)
    angle = angle0 + (6 + 15 * k) * wob + (k * spin * np.linspace(0, 1, n) if k > 0 else 0.0)
    return angle0, angle


def _plan_perspective(spec: SequenceSpec) -> tuple[float, np.ndarray]:
    """(amplitude, tilt per frame) in degrees, half of the sequences; stream "perspective"."""
    rp = rng_for(spec.seed, "perspective")
    tilt_amp = rp.uniform(10, 45) if rp.random() < 0.5 else 0.0
    return tilt_amp, tilt_amp * smooth_noise(rp, spec.length)


def _plan_deformation(spec: SequenceSpec) -> tuple[float, float, float, np.ndarray]:
    """(amplitude, speed, phase, breathing per frame) of ``deformation``; stream "deformation"."""
    n = spec.length
    rd = rng_for(spec.seed, "deformation")
    k = spec.strength(Challenge.DEFORMATION)
    deform = (0.03 + 0.07 * k) if k > 0 else 0.0
    deform_speed, deform_phase = rd.uniform(0.1, 0.35), rd.uniform(0, 2 * math.pi)
    breathe = 1 + ((0.08 + 0.17 * k) * np.sin(rd.uniform(0.05, 0.2) * np.arange(n) + rd.uniform(0, 6.3))
                   if k > 0 else 0.0) * np.ones(n)
    return deform, deform_speed, deform_phase, breathe


def _plan_target_pose(spec: SequenceSpec, look: _TargetLook) -> _TargetPose:
    depth, scale = _plan_depth_and_scale(spec, look)
    angle0, angle = _plan_rotation(spec, look.sprite.pattern)
    tilt_amp, tilt = _plan_perspective(spec)
    deform, deform_speed, deform_phase, breathe = _plan_deformation(spec)
    return _TargetPose(depth, scale, angle0, angle, tilt_amp, tilt, deform, deform_speed, deform_phase, breathe)


def _plan_motion(spec: SequenceSpec, half_extent: np.ndarray) -> tuple[np.ndarray, float]:
    """((N, 2) image position, speed px/frame) of the target, bouncing off the frame border
    (camera following it); ``fast_motion`` speeds it up and kicks it, ``motion_blur`` sets a
    minimum speed; stream "motion"."""
    n, (W, H) = spec.length, spec.size
    diag = math.hypot(W, H)
    rm = rng_for(spec.seed, "motion")
    speed = math.exp(rm.uniform(math.log(0.002), math.log(0.012))) * diag
    k_fast = spec.strength(Challenge.FAST_MOTION)
    kicks = rm.random(n) < 0.05
    kick_vec = rm.normal(0, 0.06 * diag, (n, 2))
    speed_mod = 0.5 + 0.5 * (smooth_noise(rm, n, (0.5, 3.0)) + 1)
    turn = smooth_noise(rm, n, (0.5, 3.0)) * rm.uniform(0.02, 0.12)
    heading = rm.uniform(0, 2 * math.pi) + np.cumsum(turn)
    start = (rm.uniform(0.2, 0.8), rm.uniform(0.2, 0.8))
    if k_fast > 0:
        speed *= 3 + 6 * k_fast
    k_blur = spec.strength(Challenge.MOTION_BLUR)
    if k_blur > 0:
        speed = max(speed, (0.012 + 0.025 * k_blur) * diag)
    pos = np.zeros((n, 2))
    lo_x, hi_x = half_extent * 0.9 + 2, W - half_extent * 0.9 - 2
    lo_y, hi_y = half_extent * 0.9 + 2, H - half_extent * 0.9 - 2
    lo_x, hi_x = np.minimum(lo_x, W / 2), np.maximum(hi_x, W / 2)
    lo_y, hi_y = np.minimum(lo_y, H / 2), np.maximum(hi_y, H / 2)
    p = np.array([lo_x[0] + start[0] * (hi_x[0] - lo_x[0]), lo_y[0] + start[1] * (hi_y[0] - lo_y[0])])
    vel = speed * np.array([math.cos(heading[0]), math.sin(heading[0])])
    for i in range(n):
        if i > 0:
            vel = speed * speed_mod[i] * np.array([math.cos(heading[i]), math.sin(heading[i])])
            if k_fast > 0 and kicks[i]:
                vel = vel + kick_vec[i] * k_fast
            p = p + vel
            for axis, lo, hi in ((0, lo_x[i], hi_x[i]), (1, lo_y[i], hi_y[i])):
                if p[axis] < lo or p[axis] > hi:  # bounce off the frame border
                    p[axis] = np.clip(2 * (lo if p[axis] < lo else hi) - p[axis], lo, hi)
                    heading[i:] = (math.pi - heading[i:]) if axis == 0 else -heading[i:]
        pos[i] = p
    return pos, speed


def _plan_out_of_view(spec: SequenceSpec, pos: np.ndarray, half_extent: np.ndarray
                      ) -> tuple[np.ndarray, Optional[dict[str, Any]]]:
    """``out_of_view``: slide out across the nearest border, stay out, come back; stream "out_of_view"."""
    n, (W, H) = spec.length, spec.size
    ro = rng_for(spec.seed, "out_of_view")
    k = spec.strength(Challenge.OUT_OF_VIEW)
    t_out = int(ro.uniform(0.2, 0.5) * n)
    ramp_len = int(ro.integers(4, 12))
    out_len = int(round((5 + ro.integers(0, 10)) * (0.5 + k) + 2))
    if k <= 0:
        return pos, None
    t_out = min(t_out, max(1, n - 2 * ramp_len - out_len - 2))
    t_back = min(n - 1, t_out + 2 * ramp_len + out_len)
    px, py = pos[t_out]
    side = int(np.argmin([px, W - px, py, H - py]))
    far = half_extent.max() * 1.15 + 6
    target_pos = pos.copy()
    target_pos[:, 0] = {0: -far, 1: W + far}.get(side, pos[:, 0])
    target_pos[:, 1] = {2: -far, 3: H + far}.get(side, pos[:, 1])
    t = np.arange(n)
    w = _smoothstep((t - t_out) / ramp_len) * (1 - _smoothstep((t - (t_back - ramp_len)) / ramp_len))
    pos = pos * (1 - w[:, None]) + target_pos * w[:, None]
    return pos, {"leave": t_out, "return": t_back, "side": ("left", "right", "top", "bottom")[side]}


def _plan_target_path(spec: SequenceSpec, look: _TargetLook, pose: _TargetPose) -> _TargetPath:
    hs, ws = look.size
    half_extent = pose.scale * math.hypot(hs, ws) * 0.5
    base_pos, speed = _plan_motion(spec, half_extent)
    pos, out_info = _plan_out_of_view(spec, base_pos.copy(), half_extent)
    return _TargetPath(base_pos, pos, speed, out_info)


def _camouflage(spec: SequenceSpec, look: _TargetLook, path: _TargetPath, camera: _Camera,
                background: _Background) -> _TargetLook:
    """``camouflage``: the target wears the background texture found around its first position
    (the look's "target" stream continues)."""
    k = spec.strength(Challenge.CAMOUFLAGE)
    if k <= 0:
        return look
    canvas, margin, pan = background.canvas, camera.margin, camera.pan
    ch, cw = canvas.shape[:2]
    hs, ws = look.size
    cx0 = int(round(path.pos[0, 0] + margin + pan[0, 0])) - ws // 2
    cy0 = int(round(path.pos[0, 1] + margin + pan[0, 1])) - hs // 2
    cx0 = int(np.clip(cx0 + look.camo_patch_xy[0] * ws * 0.5, 0, cw - ws))
    cy0 = int(np.clip(cy0 + look.camo_patch_xy[1] * hs * 0.5, 0, ch - hs))
    patch = canvas[cy0:cy0 + hs, cx0:cx0 + ws].astype(np.float32)
    if patch.shape[:2] != (hs, ws):
        patch = cv2.resize(canvas, (ws, hs), interpolation=cv2.INTER_AREA).astype(np.float32)
    sprite = look.sprite
    rgba = sprite.rgba.copy()
    shape = sprite.shape
    if shape is not None:  # synthetic shape: a plain silhouette in the background's look
        shape = look.camo_shape
        rgba[..., 3] = shape_mask(shape, ws, hs, look.rng)
    blend = 0.6 + 0.4 * k
    rgba[..., :3] = np.clip((1 - blend) * rgba[..., :3] + blend * patch * 0.97, 0, 255).astype(np.uint8)
    sprite = Sprite(rgba, sprite.category if shape is None else shape_category(shape, ws / hs),
                    colour_name(rgba), "textured" if shape else None, sprite.source + "+camouflage", shape)
    temperature, relief_t = _heat_and_relief(sprite, background.ambient_c + 0.6 * look.delta_t, 0.4 * look.delta_t,
                                             look.relief_depth_mm)
    return replace(look, sprite=sprite, temperature=temperature, relief_mm=relief_t)


def _plan_distractors(spec: SequenceSpec, library: SourceLibrary, objects: tuple, look: _TargetLook,
                      pose: _TargetPose, path: _TargetPath, ambient_c: float) -> list[Layer]:
    """``distractors``: 1-4 look-alikes wandering near the target's path; stream "distractors"."""
    n = spec.length
    rdi = rng_for(spec.seed, "distractors")
    k = spec.strength(Challenge.DISTRACTORS)
    if k <= 0:
        return []
    hs, ws = look.size
    scale, pos = pose.scale, path.pos
    target_extent = scale * max(hs, ws)
    layers = []
    count = 1 + int(round(3 * k * rdi.uniform(0.5, 1.0)))
    for _ in range(count):
        d_sprite = _distractor_sprite(rdi, library, look.sprite, objects)
        dh, dw = d_sprite.rgba.shape[:2]
        size_factor = math.sqrt(hs * ws / (dh * dw)) * rdi.uniform(0.85, 1.15)
        ratio = rdi.uniform(0.7, 0.85) if rdi.random() < 0.5 else rdi.uniform(1.18, 1.4)
        lag = int(rdi.integers(-20, 21))
        src = np.clip(np.arange(n) + lag, 0, n - 1)
        wander = np.stack([smooth_noise(rdi, n), smooth_noise(rdi, n)], 1)
        offset = wander * target_extent[:, None] * rdi.uniform(1.5, 3.5)
        d_pos = path.base_pos[src] + offset
        sep = 0.6 * (target_extent[0] + scale[0] * size_factor * max(dh, dw)) + 4
        gap = d_pos[0] - pos[0]
        if np.hypot(*gap) < sep:  # clean first frame: distractor clear of the target box
            direction = gap / (np.hypot(*gap) + 1e-6) if np.hypot(*gap) > 1e-3 else np.array([1.0, 0.0])
            d_pos += direction * (sep - np.hypot(*gap))
        d_temp, d_relief = _heat_and_relief(d_sprite, ambient_c + look.delta_t * rdi.uniform(0.05, 0.35),
                                            look.delta_t * 0.2, rdi.uniform(20, 80))
        layers.append(Layer("distractor", d_sprite, d_temp, d_relief, d_pos[:, 0], d_pos[:, 1],
                            scale * size_factor, pose.angle0 + rdi.uniform(-30, 30) + 8 * smooth_noise(rdi, n)
                            + (pose.angle - pose.angle0) * (rdi.random() < 0.5), 0.5 * pose.tilt, pose.depth * ratio,
                            np.ones(n)))
    return layers


def _occluder_sprite(kind: str, side: int, rng: np.random.Generator, library: SourceLibrary, objects: tuple,
                     ambient_c: float) -> tuple[Sprite, float, float]:
    """(sprite, base temperature C, core temperature rise C) of a hand, a board or an object."""
    if kind == "hand":
        rgba = hand_sprite(side, rng, library)
        return Sprite(rgba, "hand", colour_name(rgba), None, "shape:hand", "hand"), rng.uniform(32.0, 34.0), 1.0
    if kind == "board":
        aspect = math.exp(rng.uniform(-0.2, 0.2))
        bw, bh = _sprite_dims(aspect, side)
        rgb = random_patch(rng, library, bw, bh)
        mask = np.full((bh, bw), 255, np.uint8)
        r = max(1, min(bw, bh) // 10)
        mask[:r, :r] = mask[:r, -r:] = mask[-r:, :r] = mask[-r:, -r:] = 0
        return (Sprite(np.dstack([rgb, mask]), "board", "", None, "shape:board", "board"),
                ambient_c + rng.uniform(-1.0, 1.5), 0.3)
    return _object_sprite(rng, library, objects), ambient_c + rng.uniform(-1.0, 2.0), 0.5


class _Occluders:
    """Occluder layers passing in front of the target, and their ``occluders`` attribute records."""

    def __init__(self, n: int, library: SourceLibrary, objects: tuple, ambient_c: float, target_pos: np.ndarray,
                 target_depth: np.ndarray) -> None:
        self.frame_count, self.library, self.objects, self.ambient_c = n, library, objects, ambient_c
        self.target_pos, self.target_depth = target_pos, target_depth
        self.layers: list[Layer] = []
        self.info: list[dict[str, Any]] = []

    def add(self, kind: str, size: float, lateral: float, rel_speed: float, t_c: int, rng: np.random.Generator,
            hold: float = 0.0, fast_speed: float = 0.0) -> None:
        """Occluder passing the target at frame ``t_c`` (``lateral`` px off its centre line); with
        ``hold`` it moves at ``rel_speed`` for ``hold`` frames around ``t_c`` and at ``fast_speed``
        before and after (comes in, covers, leaves)."""
        n = self.frame_count
        side = int(np.clip(round(size), 64, 256))  # sprite resolution; on-screen size comes from the scale
        o_sprite, t_base, t_core = _occluder_sprite(kind, side, rng, self.library, self.objects, self.ambient_c)
        oh, ow = o_sprite.rgba.shape[:2]
        o_scale = size / max(oh, ow)
        direction = rng.uniform(0, 2 * math.pi)
        u = np.array([math.cos(direction), math.sin(direction)])
        perp = np.array([-u[1], u[0]])
        t = np.arange(n) - t_c
        travel = rel_speed * t
        if hold > 0:
            outside = np.maximum(np.abs(t) - hold / 2, 0)
            travel = np.sign(t) * (rel_speed * np.minimum(np.abs(t), hold / 2) + max(fast_speed, rel_speed) * outside)
        o_pos = self.target_pos + perp * lateral + u * travel[:, None]
        o_temp, o_relief = _heat_and_relief(o_sprite, t_base, t_core, rng.uniform(10, 40))
        self.layers.append(Layer("occluder", o_sprite, o_temp, o_relief, o_pos[:, 0], o_pos[:, 1], np.full(n, o_scale),
                                 rng.uniform(-30, 30) + 5 * smooth_noise(rng, n), np.zeros(n),
                                 self.target_depth * rng.uniform(0.35, 0.7), np.ones(n), kind=kind))
        self.info.append({"kind": kind, "frame": int(t_c)})


def _plan_partial_occlusion(spec: SequenceSpec, occluders: _Occluders, target_extent: np.ndarray) -> None:
    """``partial_occlusion``: 1-2 hands, objects or boards covering part of the target; stream "occluders"."""
    n = spec.length
    roc = rng_for(spec.seed, "occluders")
    k = spec.strength(Challenge.PARTIAL_OCCLUSION)
    if k <= 0:
        return
    for _ in range(1 + int(k > 0.6)):
        t_c = int(roc.uniform(0.15, 0.85) * n)
        ext = float(target_extent[t_c])
        size = ext * roc.uniform(0.7, 1.1)
        cover = roc.uniform(0.3, 0.65)  # share of the target's extent the occluder's edge reaches past
        lateral = (size / 2 + ext / 2 - cover * ext) * (1 if roc.random() < 0.5 else -1)
        kind = str(roc.choice(("hand", "object", "board"), p=(0.5, 0.3, 0.2)))
        hold, fast = roc.uniform(4, 12), (ext + size) / roc.uniform(5, 12)
        t_c = min(max(t_c, int(hold / 2 + (ext + size) / fast) + 3), n - 1)  # clean first frame
        occluders.add(kind, size, lateral, ext * roc.uniform(0.02, 0.06), t_c, roc, hold=hold, fast_speed=fast)


def _plan_full_occlusion(spec: SequenceSpec, occluders: _Occluders, look: _TargetLook, pose: _TargetPose) -> None:
    """``full_occlusion``: a board larger than the target hides it for a while; stream "full_occlusion"."""
    n = spec.length
    rf = rng_for(spec.seed, "full_occlusion")
    k = spec.strength(Challenge.FULL_OCCLUSION)
    if k <= 0:
        return
    hs, ws = look.size
    scale, breathe = pose.scale, pose.breathe
    t_c = int(rf.uniform(0.25, 0.75) * n)
    window = slice(max(0, t_c - 30), min(n, t_c + 30))
    diag_t = float((scale[window] * math.hypot(hs, ws) * np.maximum(breathe[window], 1 / breathe[window])).max())
    size = diag_t * rf.uniform(1.35, 1.6) / 0.8  # the board's cut corners leave ~0.8 of its side
    hidden = 3 + 14 * k
    slow = max(0.05, (size * 0.8 - diag_t) / hidden)
    fast = (size + diag_t) / rf.uniform(4, 8)
    t_c = min(max(t_c, int(hidden / 2 + (size + diag_t) / fast) + 3), n - 1)  # clean first frame
    occluders.add("board", size, 0.0, slow, t_c, rf, hold=hidden, fast_speed=fast)


def _plan_illumination(spec: SequenceSpec, rl: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``illumination``: (gain (N,), spotlight (N, 3), colour cast (N, 3)); first part of stream "light"."""
    n, (W, H) = spec.length, spec.size
    gain = np.ones(n)
    spot = np.zeros((n, 3))
    cast = np.ones((n, 3))
    k = spec.strength(Challenge.ILLUMINATION)
    g_noise = smooth_noise(rl, n, (0.5, 2.5))
    spot_path = np.stack([smooth_noise(rl, n), smooth_noise(rl, n)], 1)
    cast_noise = np.stack([smooth_noise(rl, n) for _ in range(3)], 1)
    if k > 0:
        gain = np.clip(np.exp((0.4 + 0.6 * k) * g_noise), 0.25, 2.2)
        spot[:, 0] = W * (0.5 + 0.4 * spot_path[:, 0])
        spot[:, 1] = H * (0.5 + 0.4 * spot_path[:, 1])
        spot[:, 2] = 0.6 * k
        cast = np.exp(0.15 * k * cast_noise)
    return gain, spot, cast


def _plan_darkness(spec: SequenceSpec, rl: np.random.Generator, gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``darkness``: (gain (N,) dimmed on dark frames, dark (N,) bool); second part of stream "light"."""
    n = spec.length
    dark = np.zeros(n, bool)
    k = spec.strength(Challenge.DARKNESS)
    from_start = rl.random() < 0.5
    d_start, d_len = int(rl.uniform(0.2, 0.5) * n), int(rl.uniform(0.35, 0.7) * n)
    d_end_start = int(rl.uniform(0.6, 1.0) * n)
    dark_gain = rl.uniform(0.025, 0.05)
    if k > 0:
        if from_start:
            dark[:max(2, d_end_start)] = True
        else:
            dark[d_start:min(n, d_start + d_len)] = True
        level = dark_gain * (1.6 - k)
        gain = np.where(dark, gain * level, gain)
    return gain, dark


def _plan_lighting(spec: SequenceSpec) -> _Lighting:
    rl = rng_for(spec.seed, "light")
    gain, spot, cast = _plan_illumination(spec, rl)
    gain, dark = _plan_darkness(spec, rl, gain)
    return _Lighting(gain, dark, spot, cast)


def _plan_sensors(spec: SequenceSpec) -> _Sensors:
    """Exposure (``motion_blur``), RGB resolution (``low_resolution``), thermal, depth and event
    sensor parameters; stream "sensors"."""
    W, H = spec.size
    rse = rng_for(spec.seed, "sensors")
    exposure = rse.uniform(0.1, 0.3)
    k = spec.strength(Challenge.MOTION_BLUR)
    if k > 0:
        exposure = 0.7 + 0.3 * k
    k = spec.strength(Challenge.LOW_RESOLUTION)
    lowres = 2.0 + 3.0 * k if k > 0 else 1.0
    thermal = {"vignetting_c": rse.uniform(0.5, 1.5), "column_fpn": rse.normal(0, 0.06, W).astype(np.float32),
               "row_fpn": rse.normal(0, 0.03, H).astype(np.float32), "netd_c": 0.05,
               "blur_px": 0.8 * W / 320}
    depth_cfg = {"noise_k": 1.5e-6, "noise_floor_mm": 1.0, "range_mm": (250.0, 8000.0), "speckle": 0.004,
                 "edge_drop": 0.8}
    events = {"threshold": spec.event_threshold,
              "threshold_map": np.clip(spec.event_threshold * (1 + 0.08 * rse.standard_normal((H, W))),
                                       0.6 * spec.event_threshold, 1.4 * spec.event_threshold).astype(np.float32),
              "noise_rate": 0.0015, "dark_noise_rate": 0.006, "hot_pixels": rse.random((H, W)) < 1e-4,
              "eps": 0.01}
    return _Sensors(exposure, lowres, thermal, depth_cfg, events)


def _camera_attributes(spec: SequenceSpec, sensors: _Sensors) -> dict[str, Any]:
    W, H = spec.size
    fx = W / (2 * math.tan(math.radians(30)))
    return {"fx": fx, "fy": fx, "cx": W / 2, "cy": H / 2, "hfov_deg": 60.0, "depth_unit": "mm",
            "thermal_unit": "centikelvin", "exposure": sensors.exposure, "rgb_lowres_factor": sensors.lowres_factor,
            "event_threshold": spec.event_threshold, "event_substeps": spec.event_substeps,
            "event_render": "white background; red (255,0,0) = net positive, blue (0,0,255) = net negative"}


def _target_attributes(look: _TargetLook, pose: _TargetPose, ambient_c: float) -> dict[str, Any]:
    sprite = look.sprite
    hs, ws = look.size
    return {"category": sprite.category, "colour": sprite.colour, "pattern": sprite.pattern,
            "source": sprite.source, "aspect": round(ws / hs, 3), "aspect_class": look.aspect_class,
            "low_texture": sprite.pattern == "plain", "temperature_c": round(ambient_c + look.delta_t, 2),
            "depth0_mm": round(look.depth0, 1), "perspective_deg": round(pose.tilt_amp, 1),
            "deformation": round(pose.deform, 3)}


def _plan_depth_holes(spec: SequenceSpec, target: Layer, attrs: dict[str, Any]) -> None:
    """Opt-in challenge: holes in the target's depth, from a stream of its own drawn only when the
    challenge is on, so every other sequence stays as it was."""
    k = spec.strength(Challenge.DEPTH_HOLES)
    if k <= 0:
        return
    target.depth_holes = _depth_hole_mask(target.alpha, 0.25 + 0.45 * k, rng_for(spec.seed, "depth_holes"))
    opaque = target.alpha > 0.5
    attrs["depth_holes"] = {"target_fraction": round(float(target.depth_holes[opaque].mean()), 3)}


def plan_scene(spec: SequenceSpec, library: SourceLibrary) -> Scene:
    """Draw every random choice of a sequence from ``spec.seed`` (one named stream per part)."""
    n = spec.length
    objects = library.select_objects(spec.split != "train")
    camera = _plan_camera(spec)
    background = _plan_background(spec, library, camera.margin)
    ambient = background.ambient_c
    look = _plan_target_look(spec, library, ambient)
    pose = _plan_target_pose(spec, look)
    path = _plan_target_path(spec, look, pose)
    look = _camouflage(spec, look, path, camera, background)
    target = Layer("target", look.sprite, look.temperature, look.relief_mm, path.pos[:, 0], path.pos[:, 1], pose.scale,
                   pose.angle, pose.tilt, pose.depth, pose.breathe, pose.deform, pose.deform_speed, pose.deform_phase)
    distractors = _plan_distractors(spec, library, objects, look, pose, path, ambient)
    occluders = _Occluders(n, library, objects, ambient, path.pos, pose.depth)
    _plan_partial_occlusion(spec, occluders, pose.scale * max(look.size))
    _plan_full_occlusion(spec, occluders, look, pose)
    light = _plan_lighting(spec)
    sensors = _plan_sensors(spec)
    dark = light.dark
    attrs: dict[str, Any] = {
        "background": {"name": background.name, "depth_plane": background.plane_kind, "camera_pan": camera.panning},
        "out_of_view": path.out_of_view,
        "occluders": occluders.info,
        "darkness": {"from": int(np.argmax(dark)), "to": int(n - np.argmax(dark[::-1]))} if dark.any() else None,
        "camera": _camera_attributes(spec, sensors),
        "target": _target_attributes(look, pose, ambient),
        "distractors": [{"category": layer.sprite.category, "colour": layer.sprite.colour,
                         "pattern": layer.sprite.pattern, "source": layer.sprite.source} for layer in distractors],
        "ambient_c": round(ambient, 2),
        "speed_px_per_frame": round(path.speed, 2),
    }
    _plan_depth_holes(spec, target, attrs)
    W, H = spec.size
    return Scene(spec, W, H, background.canvas, background.aux, camera.margin, background.plane_mm, camera.pan,
                 camera.shake, [target, *distractors, *occluders.layers], light.gain, light.dark, light.spot,
                 light.cast, sensors.exposure, sensors.lowres_factor, ambient, sensors.thermal, sensors.depth,
                 sensors.events, attrs)

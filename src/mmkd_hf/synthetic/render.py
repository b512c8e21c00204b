"""RGB frames of a mini-kitchens clip: background, work surface, object (with its motion smear), lid, spoon,
arm and hand, occluder, then the camera (shake, motion blur, low light, sensor noise).

Objects and motions are large (an object spans ~30 % of the frame side, motions 15-20 %), so a tiny Video Swin
trained from scratch at 48 px learns a good part of verb and noun from RGB. Frames are drawn with OpenCV at
``render_scale`` times the output size (sub-pixel, anti-aliased) and area-downsampled.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .scene import LEFT, NOUNS, RIGHT, TRAIL, MiniKitchensConfig, Participant, Segment

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def _pts(points: np.ndarray, k: float) -> np.ndarray:
    return np.round(np.asarray(points) * k * _ONE).astype(np.int32)


def _shape_half_extent(shape: str, size: float) -> tuple[float, float]:
    return {
        "circle": (size, size),
        "square": (size * 0.9, size * 0.9),
        "tall": (size * 0.55, size * 1.15),
        "wide": (size * 1.25, size * 0.55),
        "triangle": (size * 1.1, size * 0.85),
    }[shape]


def _draw_shape(mask: np.ndarray, shape: str, cx: float, cy: float, hw: float, hh: float, k: float) -> None:
    if shape == "circle":
        cv2.ellipse(mask, (int(round(cx * k * _ONE)), int(round(cy * k * _ONE))),
                    (int(round(hw * k * _ONE)), int(round(hh * k * _ONE))), 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    elif shape == "triangle":
        pts = np.array([[cx - hw, cy + hh], [cx + hw, cy + hh], [cx, cy - hh]])
        cv2.fillPoly(mask, [_pts(pts, k)], 255, cv2.LINE_AA, _SHIFT)
    else:
        pts = np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
        cv2.fillPoly(mask, [_pts(pts, k)], 255, cv2.LINE_AA, _SHIFT)


def _blend(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray | float) -> None:
    """Alpha-blend ``colour`` (a constant or an image like ``canvas``) into ``canvas`` where ``mask`` is set."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    alpha = mask[y:y + h, x:x + w, None].astype(np.float32) * np.float32(1.0 / 255.0)
    roi = canvas[y:y + h, x:x + w]
    src = colour[y:y + h, x:x + w] if isinstance(colour, np.ndarray) and colour.ndim == 3 else colour
    roi += alpha * (src - roi)


def make_background(part: Participant, cfg: MiniKitchensConfig, rng: np.random.Generator) -> np.ndarray:
    k = cfg.render_scale
    H, W = cfg.height * k, cfg.width * k
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32) / k
    period = part.tile_period * cfg.height / 64.0
    grout = ((np.mod(xx, period) < 0.8) | (np.mod(yy, period) < 0.8)).astype(np.float32)
    base = part.background * rng.uniform(0.85, 1.15, 3)
    img = np.empty((H, W, 3), np.float32)
    img[:] = base.astype(np.float32)
    img = img * (1 - 0.25 * grout[..., None]) + 0.25 * grout[..., None] * part.tile_colour.astype(np.float32)
    # vertical lighting gradient
    img *= (0.85 + 0.3 * (yy / (H / k)))[..., None]
    # static clutter (distractor objects) near the borders
    for _ in range(part.clutter):
        mask = np.zeros((H, W), np.uint8)
        shape = ("circle", "wide", "tall")[int(rng.integers(3))]  # dots and bars, smaller than the objects
        sz = rng.uniform(1.5, 3.5) * cfg.height / 64.0
        edge = rng.integers(4)
        cx = rng.uniform(0, cfg.width) if edge < 2 else (rng.uniform(0, 10) if edge == 2 else rng.uniform(cfg.width - 10, cfg.width))
        cy = rng.uniform(0, 12) if edge == 0 else (rng.uniform(cfg.height - 12, cfg.height) if edge == 1 else rng.uniform(0, cfg.height))
        hw, hh = _shape_half_extent(shape, sz)
        _draw_shape(mask, shape, cx, cy, hw, hh, k)
        _blend(img, mask, rng.uniform(0.1, 0.9, 3).astype(np.float32))
    return np.clip(img, 0, 1)


def _motion_blur(img: np.ndarray, vx: float, vy: float) -> np.ndarray:
    length = math.hypot(vx, vy)
    if length < 1.5:
        return img
    n = int(min(9, round(length))) | 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    ang = math.atan2(vy, vx)
    for t in np.linspace(-c, c, 2 * n):
        kernel[int(round(c + t * math.sin(ang))), int(round(c + t * math.cos(ang)))] = 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def render_segment(
    seg: Segment, traj: dict[str, np.ndarray], background: np.ndarray, part: Participant,
    cfg: MiniKitchensConfig, rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[dict[str, Any]], list[np.ndarray]]:
    """Render the RGB frames (uint8 HxWx3, RGB order), the ground-truth geometry of one segment and the
    optical-flow source frames (the same frames before low-light gain, sensor noise and colour loss: the
    flow is computed on the camera's linear signal, so motion stays visible in low light)."""
    k = cfg.render_scale
    Hk, Wk = cfg.height * k, cfg.width * k
    u = cfg.height / 64.0
    p = seg.params
    T = seg.num_frames
    shape = NOUNS[seg.noun][1]
    colour = p["colour"].astype(np.float32)
    yy, xx = np.mgrid[0:Hk, 0:Wk].astype(np.float32) / k
    # camera shake: smooth random translation (sum of two sinusoids + a drift) per frame
    amp = part.shake_amplitude * u * p["shake_gain"]
    f = np.arange(T)
    shake = np.stack([
        amp * (np.sin(2 * np.pi * f / p["shake_periods"][0] + p["shake_phases"][0])
               + 0.5 * np.sin(2 * np.pi * f / p["shake_periods"][1] + p["shake_phases"][1])),
        amp * (np.sin(2 * np.pi * f / p["shake_periods"][2] + p["shake_phases"][2])
               + 0.5 * np.sin(2 * np.pi * f / p["shake_periods"][3] + p["shake_phases"][3])),
    ], axis=1) + np.outer(f / max(T - 1, 1), p["drift"] * u)
    frames: list[np.ndarray] = []
    flow_sources: list[np.ndarray] = []  # the frames before low-light gain, noise and colour loss
    geoms: list[dict[str, Any]] = []
    hw0, hh0 = _shape_half_extent(shape, p["size"])
    lid_h = 0.6 * hh0
    occ = p.get("occluder")
    scene = background.copy()  # the work surface under the object (static within the segment)
    smask = np.zeros((Hk, Wk), np.uint8)
    sw, sh = p["surface_half"]
    _draw_shape(smask, "square", p["cx"], p["cy"] + 0.3 * p["size"], sw, sh, k)
    _blend(scene, smask, p["surface"].astype(np.float32))
    for t in range(T):
        img = scene.copy()
        cx, cy, sc = float(traj["ox"][t]), float(traj["oy"][t]), float(traj["scale"][t])
        hw, hh = hw0 * sc, hh0 * sc
        # motion smear: the object's recent positions fade behind it (exposure persistence), so each frame
        # shows which way the object is moving (the direction of push/pull, take/put, lid off/on)
        mask = np.zeros((Hk, Wk), np.uint8)
        for back, alpha in TRAIL:
            tb = max(t - back, 0.0)
            px, py = np.interp(tb, f, traj["ox"]), np.interp(tb, f, traj["oy"])
            if abs(px - cx) + abs(py - cy) < 0.3 * u:
                continue
            psc = float(np.interp(tb, f, traj["scale"]))
            mask[:] = 0
            _draw_shape(mask, shape, float(px), float(py), hw0 * psc, hh0 * psc, k)
            _blend(img, (mask * alpha).astype(np.uint8), colour)
        if p["has_lid"]:
            for back, alpha in TRAIL:
                tb = max(t - back, 0.0)
                lxb = float(np.interp(tb, f, traj["ox"]) + np.interp(tb, f, traj["lid"][:, 0]))
                lyb = float(np.interp(tb, f, traj["oy"]) - hh0 * np.interp(tb, f, traj["scale"]) - lid_h * 0.5
                            + np.interp(tb, f, traj["lid"][:, 1]))
                mask[:] = 0
                _draw_shape(mask, "square", lxb, lyb, hw0 * 1.05, lid_h * 0.5, k)
                _blend(img, (mask * alpha).astype(np.uint8), p["lid_colour"].astype(np.float32))
        # object body: a dark rim (crisp silhouette) and the noun's colour
        mask[:] = 0
        _draw_shape(mask, shape, cx, cy, hw + 0.8 * u, hh + 0.8 * u, k)
        _blend(img, mask, colour * 0.25)
        mask[:] = 0
        _draw_shape(mask, shape, cx, cy, hw, hh, k)
        _blend(img, mask, colour)
        boxes = {"object": (cx - hw, cy - hh, cx + hw, cy + hh)}
        if p["has_lid"]:
            lx, ly = cx + traj["lid"][t, 0], cy - hh - lid_h * 0.5 + traj["lid"][t, 1]
            lmask = np.zeros((Hk, Wk), np.uint8)
            _draw_shape(lmask, "square", lx, ly, hw * 1.05, lid_h * 0.5, k)
            _blend(img, lmask, p["lid_colour"].astype(np.float32))
            boxes["lid"] = (lx - hw * 1.05, ly - lid_h * 0.5, lx + hw * 1.05, ly + lid_h * 0.5)
        hx, hy = float(traj["hx"][t]), float(traj["hy"][t])
        if traj["stick"][t]:
            # a pale spoon from above the hand into the object (stir's static cue)
            cv2.line(img, tuple(int(v) for v in _pts([hx, hy - 7 * u], k)), tuple(int(v) for v in _pts([cx, cy - 0.1 * hh], k)),
                     (0.95, 0.95, 0.88), max(1, int(3.0 * k * u)), cv2.LINE_AA, _SHIFT)
        # arm from the bottom edge, then the hand
        arm_x = cfg.width * (0.8 if p["side_sign"] > 0 else 0.2)
        arm = np.array([[hx - 3.5 * u, hy], [hx + 3.5 * u, hy], [arm_x + 5 * u, cfg.height + 6 * u], [arm_x - 5 * u, cfg.height + 6 * u]])
        amask = np.zeros((Hk, Wk), np.uint8)
        cv2.fillPoly(amask, [_pts(arm, k)], 255, cv2.LINE_AA, _SHIFT)
        _blend(img, amask, part.sleeve.astype(np.float32))
        hmask = np.zeros((Hk, Wk), np.uint8)
        hand_rx, hand_ry = 6.0 * u, 4.5 * u
        cv2.ellipse(hmask, tuple(int(v) for v in _pts([hx, hy], k)), tuple(int(v) for v in _pts([hand_rx, hand_ry], k)),
                    0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        _blend(img, hmask, part.skin.astype(np.float32))
        boxes["hand"] = (hx - hand_rx, hy - hand_ry, hx + hand_rx, hy + hand_ry)
        # foreground occluder (a distractor passing over part of the scene)
        if occ is not None and occ["t0"] <= t <= occ["t1"]:
            prog = (t - occ["t0"]) / max(occ["t1"] - occ["t0"], 1)
            ocx = occ["x0"] + (occ["x1"] - occ["x0"]) * prog
            omask = np.zeros((Hk, Wk), np.uint8)
            _draw_shape(omask, occ["shape"], ocx, occ["y"], occ["size"], occ["size"] * 0.8, k)
            _blend(img, omask, occ["colour"].astype(np.float32))
        # camera: translation (shake), motion blur from the shake velocity, lighting, sensor noise
        dx, dy = shake[t]
        M = np.array([[1, 0, dx * k], [0, 1, dy * k]], np.float32)
        img = cv2.warpAffine(img, M, (Wk, Hk), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if t > 0:
            v = (shake[t] - shake[t - 1]) * k * p["blur_gain"]
            img = _motion_blur(img, float(v[0]), float(v[1]))
        img = cv2.resize(img, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        flow_sources.append(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
        img = img * p["brightness"] * p["cast"] + p["noise_sigma"] * p["noise"][t]
        if p["desaturate"] > 0:  # low light: colours wash out towards grey
            grey = img.mean(axis=2, keepdims=True)
            img = img + p["desaturate"] * (grey - img)
        frames.append(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
        geoms.append({
            "boxes": {name: (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy) for name, b in boxes.items()},
            "contact": int(traj["contact"][t]),
            "side": RIGHT if p["side_sign"] > 0 else LEFT,
            "hand_centre": (hx + dx, hy + dy),
            "object_centre": (cx + dx, cy + dy),
        })
    return frames, geoms, flow_sources


def render_gap(background: np.ndarray, cfg: MiniKitchensConfig, part: Participant, num: int, rng: np.random.Generator) -> list[np.ndarray]:
    img = cv2.resize(background, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA) * rng.uniform(0.6, 1.0)
    out = []
    for _ in range(num):
        noisy = img + 0.01 * rng.standard_normal(img.shape).astype(np.float32)
        out.append(np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8))
    return out

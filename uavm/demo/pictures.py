"""The generated corpus's pictures: the sprites of its objects, drawn with a few numpy
primitives, and a clip's frames (a background, moving distractor shapes, the object at each
event, sensor noise), with where each event's picture is."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .events import FPS, SECONDS, SIZE


def _px(c, col):
    return (*col, 255)[: c.shape[2]]  # RGBA sprites and RGB frames alike


def _rect(c, y0, y1, x0, x1, col):
    h, w = c.shape[:2]
    c[max(int(y0), 0):min(int(y1), h), max(int(x0), 0):min(int(x1), w)] = _px(c, col)


def _box(c, y0, y1, x0, x1):
    h, w = c.shape[:2]
    return max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h), max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)


def _ellipse(c, cy, cx, ry, rx, col):
    y0, y1, x0, x1 = _box(c, cy - ry, cy + ry, cx - rx, cx + rx)
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    sub = c[y0:y1, x0:x1]
    sub[((yy - cy) / max(ry, 1)) ** 2 + ((xx - cx) / max(rx, 1)) ** 2 <= 1] = _px(c, col)


def _tri(c, pts, col):
    (x1, y1), (x2, y2), (x3, y3) = pts
    by0, by1, bx0, bx1 = _box(c, min(y1, y2, y3), max(y1, y2, y3), min(x1, x2, x3), max(x1, x2, x3))
    if by1 <= by0 or bx1 <= bx0:
        return
    yy, xx = np.mgrid[by0:by1, bx0:bx1]
    c = c[by0:by1, bx0:bx1]
    d = lambda ax, ay, bx, by: (xx - bx) * (ay - by) - (ax - bx) * (yy - by)
    s1, s2, s3 = d(x1, y1, x2, y2), d(x2, y2, x3, y3), d(x3, y3, x1, y1)
    inside = ~(((s1 < 0) | (s2 < 0) | (s3 < 0)) & ((s1 > 0) | (s2 > 0) | (s3 > 0)))
    c[inside] = _px(c, col)


def _vehicle(body, stripe, cab, lights_on, light_cols, long=False, ladder=False, cross=False):
    w = 130 if long else 110
    c = np.zeros((70, w, 4), np.uint8)
    _rect(c, 18, 55, 0, w - 30, body)
    _rect(c, 28, 55, w - 32, w, cab)
    _rect(c, 31, 41, w - 26, w - 6, (150, 200, 235))  # window
    _rect(c, 44, 49, 0, w, stripe)
    if cross:
        _rect(c, 25, 43, 30, 36, (220, 30, 30))
        _rect(c, 31, 37, 24, 42, (220, 30, 30))
    if ladder:
        for x in range(6, w - 40, 10):
            _rect(c, 12, 18, x, x + 3, (170, 170, 170))
        _rect(c, 12, 14, 4, w - 40, (170, 170, 170))
    for cx in (20, w - 22):
        _ellipse(c, 57, cx, 10, 10, (20, 20, 20))
        _ellipse(c, 57, cx, 4, 4, (160, 160, 160))
    a, b = light_cols
    _rect(c, 10 if not ladder else 6, 18 if not ladder else 12, w - 30, w - 20, a if lights_on else (90, 90, 90))
    _rect(c, 10 if not ladder else 6, 18 if not ladder else 12, w - 20, w - 10, b if not lights_on else (90, 90, 90))
    return c


def sprite(picture: str, phase: int) -> np.ndarray:
    """An RGBA sprite of ``picture`` in animation state ``phase`` (0 rest, 1/2 active)."""
    on = phase == 1
    if picture == "ambulance":
        return _vehicle((240, 240, 240), (220, 40, 40), (240, 240, 240), on, ((230, 30, 30), (40, 80, 240)), cross=True)
    if picture == "police_car":
        return _vehicle((30, 50, 140), (240, 240, 240), (30, 50, 140), on, ((230, 30, 30), (40, 120, 255)))
    if picture == "fire_truck":
        return _vehicle((200, 20, 20), (240, 230, 200), (200, 20, 20), on, ((255, 60, 60), (255, 200, 40)), long=True, ladder=True)
    if picture == "church":
        c = np.zeros((120, 80, 4), np.uint8)
        _tri(c, [(40, 0), (8, 34), (72, 34)], (120, 60, 40))
        _rect(c, 34, 120, 12, 68, (150, 150, 160))
        _rect(c, 42, 72, 26, 54, (40, 40, 50))
        dx = (-6, 0, 6)[phase % 3]
        _ellipse(c, 58, 40 + dx, 10, 9, (220, 180, 40))
        _rect(c, 92, 120, 32, 48, (90, 60, 40))
        return c
    if picture == "telephone":
        c = np.zeros((80, 100, 4), np.uint8)
        dy = (0, -3, 3)[phase % 3]
        _tri(c, [(50, 20), (8, 76), (92, 76)], (30, 140, 60))
        _rect(c, 40, 78, 14, 86, (30, 140, 60))
        _ellipse(c, 55, 50, 14, 14, (240, 240, 240))
        _ellipse(c, 55, 50, 5, 5, (30, 140, 60))
        _rect(c, 12 + dy, 24 + dy, 10, 90, (30, 30, 30))
        _ellipse(c, 22 + dy, 14, 9, 9, (30, 30, 30))
        _ellipse(c, 22 + dy, 86, 9, 9, (30, 30, 30))
        return c
    if picture == "alarm_clock":
        c = np.zeros((100, 100, 4), np.uint8)
        dx = (0, -4, 4)[phase % 3]
        _ellipse(c, 16, 24 + dx, 12, 14, (240, 120, 20))
        _ellipse(c, 16, 76 + dx, 12, 14, (240, 120, 20))
        _ellipse(c, 58, 50 + dx, 38, 38, (110, 40, 160))
        _ellipse(c, 58, 50 + dx, 28, 28, (250, 240, 170))
        _rect(c, 34, 60, 48 + dx, 52 + dx, (20, 20, 20))
        _rect(c, 56, 60, 50 + dx, 72 + dx, (20, 20, 20))
        _rect(c, 92, 100, 24 + dx, 32 + dx, (40, 40, 40))
        _rect(c, 92, 100, 68 + dx, 76 + dx, (40, 40, 40))
        return c
    if picture == "dog":
        c = np.zeros((90, 120, 4), np.uint8)
        brown, dark = (150, 95, 45), (90, 55, 25)
        _ellipse(c, 52, 55, 18, 36, brown)
        for x in (30, 45, 68, 80):
            _rect(c, 60, 88, x, x + 8, brown)
        _rect(c, 38, 44, 2, 24, brown)  # tail
        _ellipse(c, 30, 95, 17, 17, brown)
        _ellipse(c, 24, 82, 14, 6, dark)  # ear
        _ellipse(c, 26, 100, 3, 3, (10, 10, 10))
        _ellipse(c, 36, 110, 6, 9, brown)  # snout
        _ellipse(c, 33, 117, 3, 3, (10, 10, 10))
        if phase:
            _ellipse(c, 44, 108, 5, 8, (120, 20, 30))  # open mouth
        return c
    if picture == "keyboard":
        c = np.zeros((60, 150, 4), np.uint8)
        _rect(c, 0, 60, 0, 150, (50, 30, 20))
        for i in range(14):
            lit = phase and i == (phase * 5) % 14
            _rect(c, 8, 56, 4 + i * 10, 4 + i * 10 + 9, (255, 220, 120) if lit else (245, 245, 245))
        for i in (0, 1, 3, 4, 5, 7, 8, 10, 11, 12):
            _rect(c, 8, 36, 11 + i * 10, 11 + i * 10 + 6, (15, 15, 15))
        return c
    raise ValueError(picture)


_SPRITES = {}


def _sprite(picture, phase, scale):
    key = (picture, phase, round(scale, 2))
    if key not in _SPRITES:
        s = sprite(picture, phase)
        h, w = s.shape[:2]
        nh, nw = max(int(h * scale), 2), max(int(w * scale), 2)
        yi = (np.arange(nh) * h / nh).astype(int)
        xi = (np.arange(nw) * w / nw).astype(int)
        _SPRITES[key] = s[yi][:, xi]
    return _SPRITES[key]


def _paste(frame, spr, y, x):
    h, w = spr.shape[:2]
    H, W = frame.shape[:2]
    y0, x0 = int(y), int(x)
    ys, xs = slice(max(y0, 0), min(y0 + h, H)), slice(max(x0, 0), min(x0 + w, W))
    sub = spr[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
    if sub.size == 0:
        return
    m = sub[..., 3:4] > 0
    frame[ys, xs] = np.where(m, sub[..., :3], frame[ys, xs])


def frames(picture: str, events: list, rng, boxes: Optional[list] = None) -> np.ndarray:
    """The clip's frames; ``boxes``, when given, gets each event's box: where its picture is,
    [x0, y0, x1, y1] in fractions of the frame, over all the frames it is in."""
    n = int(SECONDS * FPS)
    seen = [None] * len(events)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    grad = np.linspace(0, 1, SIZE)[:, None, None]
    bg = (c1 * (1 - grad) + c2 * grad) * np.ones((1, SIZE, 1))
    bg = np.clip(bg + rng.normal(0, rng.uniform(0, 12), (SIZE, SIZE, 3)), 0, 255)
    shapes = []
    for _ in range(int(rng.integers(0, 5))):
        shapes.append(dict(kind=rng.choice(["circle", "square", "tri"]), col=tuple(int(v) for v in rng.integers(0, 256, 3)),
                           r=rng.uniform(8, 26), pos=rng.uniform(20, SIZE - 20, 2), vel=rng.uniform(-40, 40, 2)))
    noise = rng.uniform(0, 8)
    grain = rng.normal(0, noise, (6, SIZE, SIZE, 3)).astype(np.float32)
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    moving = picture in ("ambulance", "police_car", "fire_truck")
    direction = rng.choice([-1, 1])
    for i in range(n):
        t = i / FPS
        f = bg.copy()
        for s in shapes:
            p = s["pos"] + s["vel"] * t
            p = np.abs((p - 10) % (2 * (SIZE - 20)) - (SIZE - 20)) + 10  # bounce
            layer = f
            if s["kind"] == "circle":
                _ellipse(layer, p[1], p[0], s["r"], s["r"], s["col"])
            elif s["kind"] == "square":
                _rect(layer, p[1] - s["r"], p[1] + s["r"], p[0] - s["r"], p[0] + s["r"], s["col"])
            else:
                _tri(layer, [(p[0], p[1] - s["r"]), (p[0] - s["r"], p[1] + s["r"]), (p[0] + s["r"], p[1] + s["r"])], s["col"])
        for e, ev in enumerate(events):
            if not ev.start <= t < ev.end:
                continue
            since = t - ev.onsets[ev.onsets <= t].max()
            if moving or picture in ("church", "telephone", "alarm_clock"):
                phase = 1 + int(t * 8) % 2  # lights flash, bells shake, all the while
            elif picture == "keyboard":  # a key lights up at each note
                phase = 1 + int(np.searchsorted(ev.onsets, t, "right")) % 2 if since < 0.25 else 0
            else:  # the dog opens its mouth at each beat
                phase = 1 if since < 0.15 else 0
            spr = _sprite(picture, phase, ev.scale)
            free_h, free_w = SIZE - spr.shape[0], SIZE - spr.shape[1]  # the object stays in view
            frac = (t - ev.start) / (ev.end - ev.start)
            x = ev.x0 + (direction * (frac - 0.5) * 0.8 if moving else 0)
            y, x = ev.y0 * free_h, np.clip(x, 0, 1) * free_w
            _paste(f, spr, y, x)
            box = (int(x), int(y), int(x) + spr.shape[1], int(y) + spr.shape[0])
            seen[e] = box if seen[e] is None else (min(seen[e][0], box[0]), min(seen[e][1], box[1]),
                                                   max(seen[e][2], box[2]), max(seen[e][3], box[3]))
        if noise:  # sensor noise, drawn from a small bank (drawing it fresh per frame is the slow part)
            f = f + grain[rng.integers(0, len(grain))]
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    if boxes is not None:
        boxes += [None if b is None else [round(min(max(v / SIZE, 0.0), 1.0), 4) for v in b] for b in seen]
    return out

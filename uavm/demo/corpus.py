"""A generated audio-visual event corpus for the embedded demo model.

Twelve classes, each named after a VGGSound class, in four groups of three:

* sirens: ambulance / police car / fire truck. One siren sound, three vehicles.
* ringing: church bell / telephone bell / alarm clock. One ringing sound, three pictures.
* dogs: barking / howling / growling. One dog picture, three sounds.
* keyboards: piano / electronic organ / harpsichord. One keyboard picture, three sounds.

So audio alone cannot tell apart the classes within a siren or ringing group, video
alone cannot within a dog or keyboard group, and the two together resolve all twelve:
the situation the paper's fusion is about. In every clip the object appears and
sounds at the same random moments (1-3 events), over a varying background with
moving distractor shapes, distractor sounds, noise and random loudness. Everything is
procedural numpy; clips are MP4 (H.264 + AAC), 224x224, 15 fps, 16 kHz mono, 10 s.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..media import write_media

SR, FPS, SIZE, SECONDS = 16000, 15, 224, 10.0

# (display name, VGGSound mid, picture, sound)
CLASSES = [
    ("ambulance siren", "vgg_0", "ambulance", "siren"),
    ("police car (siren)", "vgg_37", "police_car", "siren"),
    ("fire truck siren", "vgg_79", "fire_truck", "siren"),
    ("church bell ringing", "vgg_119", "church", "ring"),
    ("telephone bell ringing", "vgg_301", "telephone", "ring"),
    ("alarm clock ringing", "vgg_239", "alarm_clock", "ring"),
    ("dog barking", "vgg_125", "dog", "bark"),
    ("dog howling", "vgg_83", "dog", "howl"),
    ("dog growling", "vgg_112", "dog", "growl"),
    ("playing piano", "vgg_33", "keyboard", "piano"),
    ("playing electronic organ", "vgg_110", "keyboard", "organ"),
    ("playing harpsichord", "vgg_52", "keyboard", "harpsichord"),
]
PICTURES = sorted({c[2] for c in CLASSES})  # the video extractor learns these (plus "none")
SOUNDS = sorted({c[3] for c in CLASSES})  # and the audio extractor these


def clip_seed(seed: int, split: str, cls: int, i: int) -> int:
    h = hashlib.sha256(f"{seed}/{split}/{cls}/{i}".encode()).digest()
    return int.from_bytes(h[:8], "little")


# -- events -------------------------------------------------------------------------------
@dataclass
class Event:
    start: float
    end: float
    onsets: np.ndarray  # times (s) of the sound's beats: notes, barks, strikes; drives the picture too
    x0: float  # where the object sits (fraction of the free width / height)
    y0: float
    scale: float
    gain: float  # linear amplitude


def draw_events(rng) -> list:
    n = int(rng.integers(1, 4))
    events, t = [], 0.3
    slots = np.sort(rng.uniform(0, 1, n))
    for k in range(n):
        dur = float(rng.uniform(1.2, 2.6))
        lo = max(t, slots[k] * (SECONDS - dur * (n - k)))
        start = float(min(max(lo, t), SECONDS - dur - 0.2))
        if start < t:
            break
        end = start + dur
        rate = rng.uniform(2.5, 5.0)
        onsets = start + np.cumsum(rng.uniform(0.6, 1.4, 64) / rate)
        onsets = np.concatenate([[start], onsets[onsets < end - 0.1]])
        events.append(Event(start, end, onsets, float(rng.uniform(0, 1)), float(rng.uniform(0.1, 0.9)),
                            float(rng.uniform(0.8, 1.15)), float(10 ** (rng.uniform(-12, 0) / 20))))
        t = end + 0.4
    return events


# -- sounds -------------------------------------------------------------------------------
def _env(n, attack, release):
    """Linear attack and release ramps over n samples."""
    t = np.arange(n) / SR
    return np.clip(np.minimum(t / max(attack, 1e-4), (n / SR - t) / max(release, 1e-4)), 0, 1)


def _harmonic(f, t, amps):
    ph = 2 * np.pi * np.cumsum(np.broadcast_to(f, t.shape)) / SR
    return sum(a * np.sin((k + 1) * ph) for k, a in enumerate(amps))


def _note(f0, dur, amps, tau, rng, attack=0.004, detune=0.0):
    t = np.arange(int(dur * SR)) / SR
    amps = np.asarray(amps)
    out = np.zeros_like(t)
    for k, a in enumerate(amps):
        decay = np.exp(-t / (tau / (1 + 0.3 * k))) if tau else 1.0
        out += a * decay * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi))
        if detune:
            out += 0.5 * a * decay * np.sin(2 * np.pi * f0 * (1 + detune) * (k + 1) * t)
    return out * _env(len(t), attack, 0.02)


def _noise(n, rng, cutoff_hz):
    """Low-passed white noise (first-order roll-off above cutoff_hz), peak 1."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    y = np.fft.irfft(spec / np.sqrt(1 + (f / cutoff_hz) ** 2), n)
    return y / (np.abs(y).max() + 1e-9)


KEY_NOTES = 220 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21, 24]) / 12)  # pentatonic, 220-880 Hz


def sound(kind: str, ev: Event, rng) -> np.ndarray:
    n = int((ev.end - ev.start) * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    rel = ev.onsets - ev.start
    if kind == "siren":
        f0, df, rate = rng.uniform(600, 800), rng.uniform(200, 350), rng.choice([rng.uniform(0.4, 0.9), rng.uniform(3, 4)])
        out = _harmonic(f0 + df * np.sin(2 * np.pi * rate * t), t, [1, 0.5, 0.33, 0.2]) * _env(n, 0.05, 0.1)
    elif kind == "ring":
        f0 = rng.uniform(900, 1400)
        step = rng.uniform(0.05, 0.09)
        for s in np.arange(0, ev.end - ev.start - 0.05, step):
            k = int(s * SR)
            m = min(int(0.4 * SR), n - k)
            tt = np.arange(m) / SR
            strike = sum(a * np.sin(2 * np.pi * f0 * r * tt) for a, r in ((1, 1), (0.5, 2.76), (0.25, 5.4)))
            out[k:k + m] += 0.4 * strike * np.exp(-tt / 0.08)
    elif kind == "bark":
        for s in rel:
            k = int(s * SR)
            d = rng.uniform(0.1, 0.18)
            m = min(int(d * SR), n - k)
            tt = np.arange(m) / SR
            f = rng.uniform(450, 700) * (1 - 0.3 * tt / d)
            burst = _harmonic(f, tt, [1, 0.7, 0.5, 0.3]) + 0.4 * rng.standard_normal(m)
            out[k:k + m] += burst * np.sin(np.pi * np.arange(m) / m) ** 0.5
    elif kind == "howl":
        f0 = rng.uniform(300, 380)
        shape = np.sin(np.pi * t / t[-1]) if n > 1 else t
        f = f0 * (1 + 0.6 * shape) * (1 + 0.015 * np.sin(2 * np.pi * 5 * t))
        out = _harmonic(f, t, [1, 0.35, 0.15]) * _env(n, 0.2, 0.3)
    elif kind == "growl":
        f0 = rng.uniform(80, 130)
        buzz = _harmonic(f0 * (1 + 0.05 * rng.standard_normal() + 0.03 * np.sin(2 * np.pi * 3 * t)), t, [1, 0.8, 0.6, 0.5, 0.4, 0.3])
        am = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(22, 34) * t)
        out = (buzz + 0.8 * _noise(n, rng, 300)) * am * _env(n, 0.1, 0.2) * 0.6
    else:  # keyboard instruments: a note at every onset, same melody model for all three
        for i, s in enumerate(rel):
            k = int(s * SR)
            nxt = rel[i + 1] if i + 1 < len(rel) else ev.end - ev.start
            f0 = rng.choice(KEY_NOTES)
            if kind == "piano":
                note = _note(f0, min(1.2, ev.end - ev.start - s), [1, 0.5, 0.3, 0.2, 0.12, 0.08], 0.45, rng)
            elif kind == "organ":
                d = max(nxt - s - 0.01, 0.05)
                note = _note(f0, d, [1, 0.8, 0.0, 0.6, 0.0, 0.4, 0, 0.3], 0, rng, attack=0.02)
                note *= 1 + 0.15 * np.sin(2 * np.pi * 6 * np.arange(len(note)) / SR)
            else:  # harpsichord
                note = _note(f0, min(0.8, ev.end - ev.start - s), 1 / np.arange(1, 16) ** 0.6, 0.16, rng,
                             attack=0.001, detune=0.003)
            m = min(len(note), n - k)
            out[k:k + m] += 0.5 * note[:m]
    return ev.gain * out / (np.abs(out).max() + 1e-9)


def solo(kind: str, seed: int = 0) -> np.ndarray:
    """One 2 s event of ``kind`` alone, from 0.5 s of a silent 10 s track: where its energy
    lies is what an explanation of which frequencies should find."""
    rng = np.random.default_rng(seed)
    onsets = 0.5 + np.cumsum(rng.uniform(0.6, 1.4, 64) / 4.0)
    ev = Event(0.5, 2.5, np.concatenate([[0.5], onsets[onsets < 2.4]]), 0.5, 0.5, 1.0, 1.0)
    wav = np.zeros(int(SECONDS * SR), np.float32)
    s = sound(kind, ev, rng)
    wav[int(0.5 * SR):int(0.5 * SR) + len(s)] = 0.8 * s
    return wav


def soundtrack(kind: str, events: list, rng) -> np.ndarray:
    n = int(SECONDS * SR)
    wav = np.zeros(n)
    for ev in events:
        s = sound(kind, ev, rng)
        k = int(ev.start * SR)
        wav[k:k + len(s)] += s[: n - k]
    # distractors: clicks, noise bursts, mains hum; and background noise
    for _ in range(int(rng.integers(0, 6))):
        k = int(rng.uniform(0, SECONDS - 0.6) * SR)
        m = int(rng.uniform(0.02, 0.5) * SR)
        wav[k:k + m] += 10 ** (rng.uniform(-30, -14) / 20) * _noise(m, rng, rng.uniform(200, 6000))
    if rng.random() < 0.4:
        tt = np.arange(n) / SR
        wav += 10 ** (rng.uniform(-36, -24) / 20) * _harmonic(np.full(n, rng.choice([50.0, 60.0])), tt, [1, 0.5, 0.3])
    wav += 10 ** (rng.uniform(-50, -26) / 20) * rng.standard_normal(n)
    return (0.8 * wav / max(np.abs(wav).max(), 1.0)).astype(np.float32)


# -- pictures -----------------------------------------------------------------------------
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


# -- the corpus ---------------------------------------------------------------------------
def make_clip(path, cls: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    name, mid, picture, snd = CLASSES[cls]
    events = draw_events(rng)
    wav = soundtrack(snd, events, rng)
    boxes = []
    vid = frames(picture, events, rng, boxes)
    write_media(path, vid, FPS, wav, SR, options={"crf": "26", "preset": "veryfast"})
    # each event: [start, end, box], the box where its picture is (fractions of the frame)
    return {"label": mid, "name": name,
            "events": [[round(e.start, 3), round(e.end, 3), b] for e, b in zip(events, boxes)],
            "picture": picture, "sound": snd}


def _job(args):
    path, cls, seed = args
    return make_clip(path, cls, seed)


def generate(out, clips_per_class: int, seed: int, split: str = "train", workers: int = 0, progress=None) -> Path:
    """Write ``out/clips/*.mp4``, ``out/clips.json``, ``out/labels.csv`` and
    ``out/vggsounder.csv`` (``vggsounder_rows``); deterministic in (seed, split)."""
    from ..bundle import write_labels
    from ..files import write_json

    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    jobs = [(out / "clips" / f"{split}_{c:02d}_{i:04d}.mp4", c, clip_seed(seed, split, c, i))
            for i in range(clips_per_class) for c in range(len(CLASSES))]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            metas = list(progress(ex.map(_job, jobs, chunksize=4), total=len(jobs)) if progress else ex.map(_job, jobs, chunksize=4))
    else:
        metas = [_job(j) for j in (progress(jobs) if progress else jobs)]
    data = [{"video": str(p.relative_to(out)), "labels": m["label"], **{k: m[k] for k in ("name", "events", "picture", "sound")}}
            for (p, _, _), m in zip(jobs, metas)]
    write_json(out / "clips.json", {"seed": seed, "split": split, "data": data})
    write_labels(out / "labels.csv", labels())
    write_vggsounder(out / "vggsounder.csv", [(p.stem, c) for p, c, _ in jobs])
    return out


def vggsounder_rows(video_id: str, cls: int) -> list:
    """A clip of class ``cls`` annotated as VGGSounder annotates (``uavm.analysis.vggsounder``),
    from the corpus's design: its own class is "AV" (its sound is heard and its picture seen);
    every other class with the same sound is "A" (the clip sounds exactly like it); every other
    class with the same picture is "V" (it looks exactly like it); no meta flag is set."""
    _, _, picture, snd = CLASSES[cls]
    rows = []
    for j, (name, _, pic, s) in enumerate(CLASSES):
        tag = "AV" if j == cls else "A" if s == snd else "V" if pic == picture else None
        if tag:
            rows.append({"video_id": video_id, "label": name, "modality": tag, "background_music": "False",
                         "static_image": "False", "voice_over": "False"})
    return rows


def write_vggsounder(path, clips) -> Path:
    """``clips``: (video id = the clip file's stem, class) pairs -> a VGGSounder annotation CSV."""
    import csv

    from ..files import atomic

    with atomic(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["video_id", "label", "modality", "background_music", "static_image",
                                          "voice_over"])
        w.writeheader()
        for video_id, c in clips:
            w.writerows(vggsounder_rows(video_id, c))
    return Path(path)


def cycled(folder, n: int, seed: int, split: str) -> list:
    """n clips in ``folder`` cycling through the classes, each seeded from (seed, split,
    class, i) as ``generate`` seeds its own -> [(path, its clips.json entry)]."""
    out = []
    for i in range(n):
        c = i % len(CLASSES)
        path = Path(folder) / f"{i:04d}.mp4"
        out.append((path, make_clip(path, c, clip_seed(seed, split, c, i))))
    return out


def labels() -> list:
    from ..bundle import Label

    return [Label(i, mid, name) for i, (name, mid, _, _) in enumerate(CLASSES)]


def example_name(c: int) -> str:
    """The file stem of class ``c``'s example clip."""
    return CLASSES[c][0].replace(" ", "_").replace("(", "").replace(")", "")


def example_caption(c: int) -> dict:
    """What class ``c``'s example clip is and what to try with it (the explorer's captions)."""
    name, _, picture, sound = CLASSES[c]
    same_sound = [o[0] for o in CLASSES if o[3] == sound and o[0] != name]
    same_picture = [o[0] for o in CLASSES if o[2] == picture and o[0] != name]
    if same_sound:
        tip = f"sounds like {' and '.join(same_sound)}: turn the video off and the answer can only guess among them"
    elif same_picture:
        tip = f"looks like {' and '.join(same_picture)}: turn the audio off and the answer can only guess among them"
    else:
        tip = "try muting the audio or blanking the video where the event happens"
    return {"label": name, "tip": tip}

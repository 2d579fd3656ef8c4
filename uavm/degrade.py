"""A modality not gone but worse: noise over the sound, a blurred, low-resolution or choppy
picture. Applied to a decoded window before the feature extractors, as a degraded file
would be decoded (the sound clipped to [-1, 1], the frames rounded to 8 bits), over the
whole window or a span of the clip, seeded: the same request gives the same media.

* ``audio_snr`` (dB): white Gaussian noise at that signal-to-noise ratio, the signal's
  power measured over the degraded samples of the window (digital silence stays silent:
  it has no power to be noisy against).
* ``video_blur`` (sigma, pixels of the model's frames): a Gaussian blur.
* ``video_size`` (pixels): the shorter side down to that many (area) and back (bilinear).
* ``video_fps`` (frames per second): each frame held until the next one of a stream at that
  rate (a frozen or choppy stream; at or above the model's rate nothing changes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, number
from .window import Decoded, check_span, span_mask, window_span

# each degradation: its unit, range, and how it reads
KINDS = {
    "audio_snr": ("dB", -60.0, 100.0, "audio at {:g} dB SNR (white noise)"),
    "video_blur": ("px", 0.0, 50.0, "video blurred (sigma {:g} px)"),
    "video_size": ("px", 1.0, 4096.0, "video at {:g} px (shorter side) and back"),
    "video_fps": ("fps", 0.05, 1000.0, "video held at {:g} fps"),
}


@dataclass(frozen=True)
class Degrade:
    audio_snr: Optional[float] = None
    video_blur: Optional[float] = None
    video_size: Optional[float] = None
    video_fps: Optional[float] = None
    span: Optional[tuple] = None  # (from, to) clip seconds; None: the whole window
    seed: int = 0

    @classmethod
    def checked(cls, span=None, seed=0, **levels) -> Optional[Degrade]:
        """Every value checked where a request enters (CLI, API, page); None when nothing is
        degraded, so that a plain request stays exactly a plain one."""
        out = {}
        for k, v in levels.items():
            if k not in KINDS:
                raise InputError(f"unknown degradation {k!r} (known: {', '.join(KINDS)})")
            if v is None or v == "":
                continue
            unit, lo, hi, _ = KINDS[k]
            out[k] = number(k.replace("_", " "), v, lo=lo, hi=hi, integer=k == "video_size")
        if not out:
            return None
        return cls(**out, span=check_span("degrade", span), seed=number("seed", seed, lo=0, hi=2**32 - 1,
                                                                      integer=True))

    def levels(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in KINDS and getattr(self, f.name) is not None}

    def with_level(self, kind: str, level) -> Degrade:
        return replace(self, **{kind: level})

    def describe(self) -> str:
        text = ", ".join(KINDS[k][3].format(v) for k, v in self.levels().items())
        return text + (f" from {self.span[0]:g} to {self.span[1]:g} s" if self.span else "")

    def to_dict(self) -> dict:
        return {**self.levels(), **({"span": list(self.span)} if self.span else {}), "seed": self.seed}

    def part(self, modality: str, start: float, seconds: float) -> Optional[tuple]:
        """What this degradation does to one modality of the window at ``start`` (a cache key:
        its levels, its span in the window, the seed), or None when it leaves it alone."""
        levels = tuple((k, v) for k, v in self.levels().items() if k.startswith(modality))
        span = window_span(self.span, start, seconds) if self.span else (0.0, seconds)
        if not levels or span is None:
            return None
        return levels + (span, self.seed if modality == "audio" else 0)

    def apply(self, d: Decoded, pre, start: float) -> Decoded:
        """The window as a degraded file would give it (``pre``: the model's preprocessing)."""
        span = window_span(self.span, start, pre.clip_seconds) if self.span else (0.0, math.inf)
        if span is None:  # the span is outside this window
            return d
        wav, frames = d.wav, d.frames
        if wav is not None and self.audio_snr is not None:
            # the seed and the window's start: the same request, the same noise
            rng = np.random.default_rng([self.seed, int(round(start * 1000))])
            wav = noisy(wav, span_mask(len(wav), pre.audio.sample_rate, span), self.audio_snr, rng)
        if frames is not None and len(frames) and any(
                getattr(self, k) is not None for k in ("video_blur", "video_size", "video_fps")):
            mask = span_mask(len(frames), pre.video.fps, span)
            out = frames
            if self.video_fps is not None:
                out = held(out, pre.video.fps, self.video_fps)
            if self.video_size is not None:
                out = resized(out, int(self.video_size))
            if self.video_blur is not None:
                out = blurred(out, self.video_blur)
            frames = np.where(mask[:, None, None, None], out, frames).astype(np.uint8)
        return replace(d, wav=wav, frames=frames)


def noisy(wav: np.ndarray, mask: np.ndarray, snr_db: float, rng) -> np.ndarray:
    if not mask.any():
        return wav
    power = float(np.mean(np.square(wav[mask], dtype=np.float64)))
    noise = rng.standard_normal(len(wav)) * math.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(np.where(mask, wav + noise, wav), -1.0, 1.0).astype(wav.dtype)


def held_index(n: int, fps: float, rate: float) -> np.ndarray:
    """For each of n frames (frame i at i / fps): the frame a ``rate`` fps stream shows then,
    the newest of its frames at or before it."""
    if rate >= fps:
        return np.arange(n)
    t = np.arange(n) / fps
    return np.clip(np.floor(np.floor(t * rate + 1e-9) / rate * fps + 1e-9).astype(int), 0, max(n - 1, 0))


def held(frames: np.ndarray, fps: float, rate: float) -> np.ndarray:
    return frames if rate >= fps else frames[held_index(len(frames), fps, rate)]


def _float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def _uint8(x: torch.Tensor) -> np.ndarray:
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def resized(frames: np.ndarray, short: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if short >= min(h, w):
        return frames
    s = short / min(h, w)
    small = F.interpolate(_float(frames), size=(max(round(h * s), 1), max(round(w * s), 1)), mode="area")
    return _uint8(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))


def blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return frames
    h, w = frames.shape[1:3]
    r = min(int(math.ceil(3 * sigma)), h - 1, w - 1)
    if r < 1:
        return frames
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(_float(frames), (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)  # along the width
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)  # along the height
    return _uint8(x)

"""Generated media: a small clip with something to see and hear (``demo_clip``), written
with ``uavm.media.write_media``."""
from __future__ import annotations

import numpy as np

from ..media import write_media


def demo_clip(path, seconds: float = 10.0, fps: float = 30.0, size=(224, 224), sample_rate: int = 16000,
              audio: bool = True, video: bool = True, seed: int = 0, **kw) -> str:
    """A small clip with something to see and hear: a moving square and a tone burst
    every couple of seconds."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = wav = None
    if video:
        n = int(round(seconds * fps))
        frames = np.empty((n, h, w, 3), np.uint8)
        frames[:] = rng.integers(0, 80, 3, dtype=np.uint8)
        s = max(h, w) // 6
        for i in range(n):
            x = int((w - s) * (0.5 + 0.5 * np.sin(i / fps)))
            y = int((h - s) * (0.5 + 0.5 * np.cos(i / fps)))
            frames[i, y:y + s, x:x + s] = (230, 200, 40)
    if audio:
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        gate = (np.floor(t / 0.5) % 4 == 0).astype(np.float32)
        wav = (0.3 * np.sin(2 * np.pi * 660 * t) * gate + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    return write_media(path, frames, fps, wav, sample_rate, **kw)

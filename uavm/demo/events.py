"""When things happen in a generated clip: its format, and its events (when the object
appears and sounds, where it sits, how loud it is), which the sounds and pictures both follow."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SR, FPS, SIZE, SECONDS = 16000, 15, 224, 10.0


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

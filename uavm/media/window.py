"""One analysis window of a file, decoded in this process: its facts, waveform and frames."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .audio import load_audio
from .gate import Limits, MediaError, MediaInfo, check, probe
from .video import load_frames


@dataclass
class Window:
    info: MediaInfo
    wav: Optional[np.ndarray]
    frames: Optional[np.ndarray]


def read_window(path, start: float, seconds: float, sample_rate: int, fps: float, short_side: int,
                audio: bool = True, video: bool = True, limits: Optional[Limits] = None) -> Window:
    """Probe, check the limits (by default those of the environment), and decode the window's
    audio and frames (in this process)."""
    limits = Limits.from_env() if limits is None else limits
    info = probe(path)
    check(info, limits, short_side)
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{path}: has neither an audio nor a video stream")
    wav = load_audio(path, sample_rate, start, seconds) if audio and info.has_audio else None
    frames = load_frames(path, fps, short_side, start, seconds) if video and info.has_video else None
    return Window(info, wav, frames)

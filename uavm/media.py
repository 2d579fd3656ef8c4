"""Media file -> mono waveform and 3 fps frames for one analysis window.

Audio is decoded and resampled with PyAV (libswresample, as ffmpeg's ``-ar 16000
-ac 1`` does). Video frames are decoded with decord, whose resize is FFmpeg's
bicubic scaler, the one the released video features were made with; frames are
picked as ffmpeg's ``fps`` filter picks them (see ``sample_times``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np


class MediaError(ValueError):
    """The file cannot be used; the message says why, in one line."""


@dataclass
class MediaInfo:
    path: str
    duration: Optional[float]  # seconds, None when the container does not say
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0


def _open(path):
    import av

    p = Path(path)
    if not p.exists():
        raise MediaError(f"{path}: no such file")
    if not p.is_file():
        raise MediaError(f"{path}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty")
    try:
        return av.open(str(p))
    except Exception as e:  # PyAV raises many kinds: all mean "not a media file we can read"
        raise MediaError(f"{path}: not a readable audio or video file ({type(e).__name__})") from None


def probe(path) -> MediaInfo:
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        dur = None
        if c.duration is not None:
            dur = c.duration / 1_000_000
        elif v is not None and v.duration is not None and v.time_base is not None:
            dur = float(v.duration * v.time_base)
        return MediaInfo(str(path), dur, bool(c.streams.audio), v is not None,
                         v.codec_context.width if v is not None else 0,
                         v.codec_context.height if v is not None else 0)


def load_audio(path, sample_rate: int = 16000, start: float = 0.0, seconds: float = 10.0) -> Optional[np.ndarray]:
    """Mono float32 waveform of [start, start + seconds), or None if the file has no audio.

    Time is counted from the audio stream's first sample, as for a wav that ffmpeg
    extracted from the file.
    """
    import av

    with _open(path) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        first = int(round(start * sample_rate))
        want = int(round(seconds * sample_rate))
        origin = None  # time of the first decoded sample
        chunks, have = [], 0
        if start > 1.0:  # skip ahead; decode from a little before the window
            c.seek(int((start - 1.0) / s.time_base) + (s.start_time or 0), stream=s, backward=True)
        try:
            for frame in c.decode(s):
                if origin is None:
                    t = frame.time if frame.time is not None else 0.0
                    base = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
                    origin = int(round((t - base) * sample_rate)) if start > 1.0 else 0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    have += chunks[-1].size
                if origin + have >= first + want:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as e:
            if not chunks:
                raise MediaError(f"{path}: the audio stream cannot be decoded ({e.__class__.__name__})") from None
            # a damaged tail: keep what decoded, as ffmpeg would
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        lo = max(first - (origin or 0), 0)
        return np.ascontiguousarray(wav[lo: lo + want], dtype=np.float32)


def sample_times(timestamps: np.ndarray, end: float, fps: float, start: float, seconds: float) -> np.ndarray:
    """Indices of the frames ffmpeg's ``fps`` filter would output for [start, start + seconds).

    Output k (time k / fps) is the last input frame whose timestamp is below
    (k + 0.5) / fps; outputs stop at the end of the stream. ``timestamps`` are the
    frames' presentation times in seconds from the stream's first frame, ``end``
    the time the last frame stops showing.
    """
    if len(timestamps) == 0:
        return np.zeros(0, np.int64)
    k0 = int(round(start * fps))
    n = int(math.ceil(seconds * fps - 1e-9))
    ks = np.arange(k0, k0 + n)
    ks = ks[ks / fps < end - 1e-9]
    idx = np.searchsorted(timestamps, (ks + 0.5) / fps - 1e-6, side="left") - 1
    return np.clip(idx, 0, len(timestamps) - 1)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Shorter side to ``short_side``, aspect kept, the longer side truncated (no crop)."""
    if width <= height:
        return short_side, int(height * short_side / width)
    return int(width * short_side / height), short_side


def load_frames(path, fps: float = 3.0, short_side: int = 224, start: float = 0.0,
                seconds: float = 10.0) -> Optional[np.ndarray]:
    """(K, H, W, 3) uint8 RGB frames sampled at ``fps`` over the window, or None if no video."""
    info = probe(path)
    if not info.has_video:
        return None
    if info.width <= 0 or info.height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size")
    import decord

    w, h = scaled_size(info.width, info.height, short_side)
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=w, height=h, num_threads=1)
        n = len(vr)
        if n == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        ts = vr.get_frame_timestamp(np.arange(n))
        t0 = ts[0, 0]
        idx = sample_times(ts[:, 0] - t0, ts[-1, 1] - t0, fps, start, seconds)
        if len(idx) == 0:
            return np.zeros((0, h, w, 3), np.uint8)
        frames = vr.get_batch(list(idx)).asnumpy()
    except decord.DECORDError as e:
        raise MediaError(f"{path}: the video stream cannot be decoded ({str(e).splitlines()[0][:120]})") from None
    return frames

"""A file's audio stream -> a mono waveform at a sample rate: one window of it, or the whole
stream as (position, samples) pieces with its gaps kept (see ``_audio_segments``).

Audio is decoded and resampled with PyAV (libswresample, as ffmpeg's ``-ar 16000 -ac 1``
does).
"""
from __future__ import annotations

import math
from contextlib import closing
from typing import Optional

import numpy as np

from .gate import MediaError, open_media


def load_audio(path, sample_rate: int = 16000, start: float = 0.0, seconds: float = 10.0) -> Optional[np.ndarray]:
    """Mono float32 waveform of [start, start + seconds), or None if the file has no audio.

    Time is counted from the audio stream's first sample, as for a wav that ffmpeg
    extracted from the file; ``window_of`` says what a gap in the stream gives.
    """
    with open_media(path) as c:
        if not c.streams.audio:
            return None
    first, want = int(round(start * sample_rate)), int(round(seconds * sample_rate))
    with closing(_audio_segments(path, sample_rate, start)) as pieces:
        return window_of(pieces, first, want)


GAP_S = 0.1  # a forward jump this long in an audio stream's timestamps is a gap (jitter is far below it)


def window_of(pieces, first: int, want: int) -> np.ndarray:
    """Samples [first, first + want) of a stream given as (position, samples) pieces in order:
    zeros where the stream has a gap, cut after its last sample there, empty when it has no
    sample in the window. Reads no further than the window."""
    parts, end = [], first
    for pos, a in pieces:
        lo, hi = max(pos, first), min(pos + len(a), first + want)
        if hi > lo:
            parts.append((lo - first, a[lo - pos: hi - pos]))
            end = max(end, hi)
        if pos + len(a) >= first + want:
            break
    wav = np.zeros(end - first, np.float32)
    for at, a in parts:
        wav[at: at + len(a)] = a
    return wav


def _audio_segments(path, sample_rate: int, start: float = 0.0):
    """The audio stream as (position, samples) pieces: mono float32 at ``sample_rate``,
    positions in samples from the stream's first sample, ascending.

    Samples are counted as they decode. Where the timestamps jump ahead by more than GAP_S
    the stream has a gap: no samples there, and counting resumes at the timestamp. With
    ``start`` > 1 s it seeks to a little before ``start`` and places the first frame by its
    timestamp, on the grid of a decode from the beginning: input samples are dropped until
    one falls on a whole output sample, so the resampler's phase is the same. Exact where
    timestamps count samples (MP4, MP3, WAV, Ogg); within their rounding where they do not
    (Matroska and WebM: 1 ms).
    """
    import av

    seek = start > 1.0
    while True:
        with open_media(path) as c:
            s = c.streams.audio[0]
            tb = s.time_base
            base = float(s.start_time * tb) if s.start_time is not None and tb is not None else 0.0
            if seek and tb is not None:
                c.seek(int((start - 1.0) / tb) + (s.start_time or 0), stream=s, backward=True)
            resampler, key = None, None
            nxt = None  # seconds from the stream's start where the next input sample belongs
            out = trim = 0  # where the next output sample goes; input samples still to drop
            sent = False
            try:
                for frame in c.decode(s):
                    t = None if frame.time is None else frame.time - base
                    rate = frame.sample_rate
                    if nxt is None and seek and t is None:
                        break  # a frame that cannot be placed: decode from the beginning instead
                    place = (nxt is None and seek) or (nxt is not None and t is not None and t - nxt > GAP_S)
                    if place or (frame.format.name, frame.layout.name, rate) != key:
                        for a in _drain(resampler):
                            yield out, a
                            out += len(a)
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                        key = (frame.format.name, frame.layout.name, rate)
                    if place:
                        at = int(round(t * rate))  # input samples from the stream's start
                        step = rate // math.gcd(rate, sample_rate)
                        aligned = max(-(-at // step) * step, 0)
                        trim, out = aligned - at, max(out, aligned * sample_rate // rate)
                        nxt = t
                    elif nxt is None:
                        nxt = t or 0.0
                    nxt += frame.samples / rate
                    if trim >= frame.samples:
                        trim -= frame.samples
                        continue
                    if trim:
                        frame, trim = _drop(frame, trim), 0
                    for o in resampler.resample(frame):
                        a = o.to_ndarray().reshape(-1)
                        yield out, a
                        out += len(a)
                        sent = True
                else:
                    for a in _drain(resampler):
                        yield out, a
                        out += len(a)
                    return
            except av.error.FFmpegError as e:
                if not sent:
                    raise MediaError(f"{path}: the audio stream cannot be decoded ({e.__class__.__name__})") from None
                return  # a damaged tail: keep what decoded, as ffmpeg would
        seek = False


def _drain(resampler) -> list:
    """What a resampler still holds (its filter's delay), as arrays."""
    return [] if resampler is None else [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]


def _drop(frame, n: int):
    """The frame without its first ``n`` samples."""
    import av

    a = frame.to_ndarray()
    a = a[:, n:] if frame.format.is_planar else a[:, n * len(frame.layout.channels):]
    f = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format=frame.format.name, layout=frame.layout.name)
    f.sample_rate = frame.sample_rate
    return f

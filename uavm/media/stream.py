"""A whole clip decoded once, in order, as a stream of chunks (a timeline of a long clip),
in this process: one chunk held at a time, however long the clip."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..files import memory_mb
from .audio import _audio_segments
from .gate import Limits, MediaError, check, probe
from .video import _grid_frames


@dataclass
class Chunk:
    """The next stretch of a clip decoded as a stream (``stream_clip``)."""

    until: float  # seconds: both streams are decoded up to here (no later piece starts before it)
    audio: list  # (position, samples) pieces of the waveform, as ``_audio_segments`` gives them
    ks: Optional[np.ndarray]  # the fps filter's output numbers of the frames, ascending (gaps left out)
    frames: Optional[np.ndarray]  # those outputs, (K, H, W, 3) uint8, or None
    last: bool = False
    ends: Optional[dict] = None  # on the last chunk: where each stream ended, in seconds
    decoder_mb: Optional[dict] = None  # on the last chunk: the decoding process's memory (VmHWM, ...)


def stream_clip(path, sample_rate: int, fps: float, short_side: int, chunk_seconds: float = 5.0,
                audio: bool = True, video: bool = True, limits: Optional[Limits] = None):
    """Probe, check the limits, and decode the whole clip once, in order: yields the MediaInfo,
    then a Chunk for every ``chunk_seconds`` of media that holds something, the last one marked.
    The frames are exactly those ``read_window`` gives for any window that holds them, and so
    are the samples where timestamps count samples (see ``_audio_segments``). One chunk is
    held at a time, however long the clip: the child waits until the parent takes it. How long
    the clip is comes from what decodes, never from its header: a stretch where no stream has
    anything is skipped at once, and media past ``limits.max_seconds`` is refused (the limits:
    by default those of the environment)."""
    limits = Limits.from_env() if limits is None else limits
    info = probe(path)
    check(info, limits, short_side)
    if not (info.has_audio or info.has_video):
        raise MediaError(f"{path}: has neither an audio nor a video stream")
    too_long = f"{path}: holds media past {limits.max_seconds:g} s, the limit of a clip decoded whole"
    yield info
    ends: dict = {}
    streams = {}
    if audio and info.has_audio:
        streams["audio"] = _audio_segments(path, sample_rate)
    if video and info.has_video:
        streams["video"] = _grid_frames(path, info, fps, short_side, ends)
    held: dict = {}  # the first item of the next chunk, per stream
    until, audio_end = 0.0, 0
    try:
        while streams:
            until += chunk_seconds
            if streams and all(m in held for m in streams):
                # every stream's next piece lies ahead: jump to the chunk that holds the first of them
                nxt = min(held["audio"][0] / sample_rate if "audio" in held else math.inf,
                          held["video"][0] / fps if "video" in held else math.inf)
                until = max(until, chunk_seconds * (math.floor(nxt / chunk_seconds) + 1))
            if until - chunk_seconds > limits.max_seconds:
                raise MediaError(too_long)
            got = {"audio": [], "video": []}
            for m, limit in (("audio", until * sample_rate), ("video", until * fps - 1e-9)):
                while m in streams:
                    item = held.pop(m, None) or next(streams[m], None)
                    if item is None:
                        streams.pop(m).close()
                    elif item[0] >= limit:
                        held[m] = item
                    else:
                        got[m].append(item)
                        continue
                    break
            if got["audio"]:
                audio_end = got["audio"][-1][0] + len(got["audio"][-1][1])
            last = not streams
            if not (got["audio"] or got["video"] or last):
                continue  # a gap in every stream: nothing to send
            frames = np.stack([f for _, f in got["video"]]) if got["video"] else None
            ks = np.array([k for k, _ in got["video"]], np.int64) if got["video"] else None
            chunk = Chunk(until, got["audio"], ks, frames, last)
            if last:
                chunk.ends = {"audio": audio_end / sample_rate if audio and info.has_audio else None,
                              "video": ends.get("video", 0.0) if video and info.has_video else None}
                chunk.decoder_mb = memory_mb()
            yield chunk
    finally:
        for s in streams.values():
            s.close()

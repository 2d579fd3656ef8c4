"""A live window: the last ``clip_seconds`` of a camera's frames and a microphone's sound as
they arrive, answered as a clip's window is (one pass per modality, the fused answer, each
pass's familiarity).

Media come with their capture times (seconds on the sender's clock, from its start): the
sound is laid on a timeline (a gap is silence, an overlap dropped), frames are kept at the
model's frame rate (one per 1/fps, the newest of each slot), and the window is the last
``clip_seconds`` before the newest sample. The video extractor sees each frame on its own,
so each frame's feature is computed once, when it arrives; the sound's features are the
whole window's (its ConvNeXt sees the spectrogram at once). The networks run under the
explorer's locks, never while media are awaited.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import work
from .errors import InputError, number
from .window import nothing_left

MAX_FRAME_SIDE = 4096  # a frame from a camera, not a poster
MAX_CHUNK_SECONDS = 12.0  # of sound in one push
MAX_CLOCK = 7 * 86400.0  # a sender's clock: seconds since its start


@dataclass
class LiveAnswer:
    prediction: object  # uavm.window.Prediction, or None with ``error``
    error: Optional[str]
    seconds: dict  # modality -> seconds of it in the window
    newest: float  # the sender's time of the newest sample or frame answered
    compute_ms: float


@dataclass
class Live:
    """One sender's rolling window for one explorer (``uavm.explore.Explorer``)."""

    explorer: object
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    audio_end: Optional[float] = None  # the sender's time at the end of ``audio``
    frames: deque = field(default_factory=deque)  # (slot, time, frame, feature or None)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)

    @property
    def pre(self):
        return self.explorer.pipe.pre

    def memory_bytes(self) -> int:
        return int(self.audio.nbytes) + sum(f[2].nbytes + (0 if f[3] is None else f[3].nbytes) for f in self.frames)

    # -- media in ----------------------------------------------------------------------
    def add_audio(self, t0, samples: np.ndarray) -> None:
        """``samples`` (float32 in [-1, 1], at the model's rate) captured from sender time ``t0``."""
        t0 = number("the sound's time", t0, lo=0, hi=MAX_CLOCK)
        rate = self.pre.audio.sample_rate
        x = np.clip(np.asarray(samples, np.float32).reshape(-1), -1, 1)
        if len(x) > MAX_CHUNK_SECONDS * rate:
            raise InputError(f"a sound chunk is at most {MAX_CHUNK_SECONDS:g} s")
        keep = int(self.pre.clip_seconds * rate)
        with self.lock:
            gap = None if self.audio_end is None else int(round((t0 - self.audio_end) * rate))
            if gap is None or gap >= keep:  # the first sound, or after a silence longer than the window
                self.audio = x[-keep:]
                self.audio_end = t0 + len(x) / rate
                return
            if gap > 0:  # nothing arrived in between: silence, never a shift of what follows
                x = np.concatenate([np.zeros(gap, np.float32), x])
            elif gap < 0:
                x = x[-gap:]  # what overlaps was heard already
            self.audio = np.concatenate([self.audio, x])[-keep:]
            self.audio_end += len(x) / rate

    def add_frame(self, t, frame: np.ndarray) -> None:
        """An RGB uint8 frame captured at sender time ``t``, scaled as a decoded clip's are."""
        t = number("the frame's time", t, lo=0, hi=MAX_CLOCK)
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or max(frame.shape[:2]) > MAX_FRAME_SIDE \
                or min(frame.shape[:2]) < 2:
            raise InputError("a frame must be an RGB image of at most 4096 pixels a side")
        frame = _scaled(frame, self.pre.video.short_side)
        slot = int(np.floor(t * self.pre.video.fps))
        with self.lock:
            if self.frames and slot <= self.frames[-1][0]:
                if slot < self.frames[-1][0]:
                    return  # older than what is there: late
                self.frames.pop()  # the newest of its slot
            if self.frames and self.frames[-1][2].shape != frame.shape:
                self.frames.clear()  # the camera changed its size: a new picture
            self.frames.append((slot, t, frame, None))
            n = int(round(self.pre.clip_seconds * self.pre.video.fps))
            while len(self.frames) > n or (self.frames and self.frames[0][0] <= slot - n):
                self.frames.popleft()

    # -- an answer ---------------------------------------------------------------------
    def answer(self, audio: bool = True, video: bool = True, audio_weight: float = 0.5) -> LiveAnswer:
        """The window now: each pass's answer (the model lock only around the networks)."""
        t0 = time.perf_counter()
        ex, pipe = self.explorer, self.explorer.pipe
        with self.lock:
            wav = self.audio.copy() if audio and len(self.audio) else None
            frames = list(self.frames) if video else []
            newest = max([self.audio_end or 0.0] + [f[1] for f in frames])
        missing = {}
        if wav is None:
            missing["audio"] = "turned off" if not audio else "no sound has arrived"
        if not frames:
            missing["video"] = "turned off" if not video else "no picture has arrived"
        feats = {}
        if wav is not None and "audio" in pipe.extractors:
            with work.holding(ex.model_lock):
                feats["audio"] = pipe.audio_features(wav)
        if frames and "video" in pipe.extractors:
            todo = [i for i, f in enumerate(frames) if f[3] is None]
            if todo:
                with work.holding(ex.model_lock):
                    new = pipe.video_features(np.stack([frames[i][2] for i in todo]))
                with self.lock:  # kept with its frame, if the frame is still there
                    kept = {f[0]: j for j, f in enumerate(self.frames)}
                    for i, feat in zip(todo, new):
                        s, t, fr, _ = frames[i]
                        frames[i] = (s, t, fr, feat)
                        j = kept.get(s)
                        if j is not None and self.frames[j][2] is fr:
                            self.frames[j] = frames[i]
            feats["video"] = np.stack([f[3] for f in frames])
        seconds = {"audio": 0.0 if wav is None else len(wav) / self.pre.audio.sample_rate,
                   "video": len(frames) / self.pre.video.fps}
        if not feats:
            return LiveAnswer(None, nothing_left(missing), seconds, newest, (time.perf_counter() - t0) * 1000)
        try:
            with work.holding(ex.shared.head_lock):
                pred = pipe.predict_features(feats.get("audio"), feats.get("video"), missing, audio_weight)
            err = None
        except InputError as e:  # e.g. the cross-modal model with one modality off
            pred, err = None, str(e)
        return LiveAnswer(pred, err, seconds, newest, (time.perf_counter() - t0) * 1000)


def _scaled(frame: np.ndarray, short: int) -> np.ndarray:
    """The shorter side to ``short`` pixels (area averaging down, bilinear up), as decoding does."""
    import torch
    import torch.nn.functional as F

    h, w = frame.shape[:2]
    s = short / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if size == (h, w):
        return frame
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode="area" if s < 1 else "bilinear", align_corners=None if s < 1 else False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

"""A clip decoded once, kept for any of its windows (what ``uavm.timeline`` builds as it
streams, and the explorer keeps per clip): the waveform and small display frames in spooled
temporary files (in memory while small, then an unnamed file on disk that vanishes with
them), the video features of every 3 fps grid frame, and the audio features of the windows
asked for. Memory stays bounded however long the clip; no window needs a decode again.
"""
from __future__ import annotations

import math
import tempfile
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from contextlib import contextmanager
from typing import Optional

import numpy as np

from . import media
from .errors import UAVMError, number
from .window import Features, Prepared

THUMB = 64  # display frames' height: what the explorer's frame strip draws
SPOOL_MB = 16  # per store: the waveform, the display frames; beyond it they go to disk
RECENT = 64  # audio features of windows off the timeline, kept for the explorer


_THREADS = {"users": 0, "saved": 0}
_THREADS_LOCK = threading.Lock()


@contextmanager
def one_core_free():
    """A timeline is a long job: its networks leave one core free, to its decoder process
    while the stream decodes, and to whatever else the machine serves. With one busy thread
    more than there are cores, every pass waits at its threads' barriers for the one that
    lost its core: on the 2-core machine, passes of the demo model ran 10 to 50x slower."""
    import torch

    with _THREADS_LOCK:
        if _THREADS["users"] == 0:
            _THREADS["saved"] = torch.get_num_threads()
            torch.set_num_threads(max(_THREADS["saved"] - 1, 1))
        _THREADS["users"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS["users"] -= 1
            if _THREADS["users"] == 0:
                torch.set_num_threads(_THREADS["saved"])


class _Spool:
    """Bytes appended and read back by offset: in memory up to ``memory_mb``, then in an
    unnamed temporary file (gone when closed, or when the process ends)."""

    def __init__(self, memory_mb: float):
        self.file = tempfile.SpooledTemporaryFile(max_size=int(memory_mb * 2**20))
        self.size = 0
        self.lock = threading.Lock()  # one file position, many readers

    def append(self, data: bytes) -> int:
        with self.lock:
            self.file.seek(self.size)
            self.file.write(data)
            at, self.size = self.size, self.size + len(data)
            return at

    def read(self, at: int, n: int) -> bytes:
        with self.lock:
            self.file.seek(at)
            return self.file.read(n)

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self.file, "_rolled", False))

    def close(self) -> None:
        self.file.close()


class _Waveform:
    """A stream's samples as runs of consecutive samples: [position, length, byte offset]."""

    def __init__(self, memory_mb: float):
        self.spool = _Spool(memory_mb)
        self.runs: list = []
        self.starts: list = []  # the runs' positions, for bisect

    @property
    def end(self) -> int:
        return self.runs[-1][0] + self.runs[-1][1] if self.runs else 0

    def add(self, pos: int, samples: np.ndarray) -> None:
        a = np.ascontiguousarray(samples, np.float32)
        if pos < self.end:  # positions ascend; never store a sample twice
            a, pos = a[self.end - pos:], self.end
        if not len(a):
            return
        at = self.spool.append(a.tobytes())
        if self.runs and self.end == pos:
            self.runs[-1][1] += len(a)
        else:
            self.runs.append([pos, len(a), at])
            self.starts.append(pos)

    def pieces(self, first: int, last: int):
        """(position, samples) of what lies in [first, last), in order."""
        for pos, n, at in self.runs[max(bisect_right(self.starts, first) - 1, 0):]:
            if pos >= last:
                break
            lo, hi = max(pos, first), min(pos + n, last)
            if hi > lo:
                yield lo, np.frombuffer(self.spool.read(at + 4 * (lo - pos), 4 * (hi - lo)), np.float32)

    def window(self, first: int, want: int) -> np.ndarray:
        return media.window_of(self.pieces(first, first + want), first, want)

    def gaps(self, until: int) -> list:
        """(from, to) sample spans in [0, until) with no sample."""
        out, at = [], 0
        for pos, n, _ in self.runs:
            if pos > at:
                out.append((at, min(pos, until)))
            at = pos + n
        if at < until:
            out.append((at, until))
        return [(a, b) for a, b in out if b > a]


def thumbnails(frames: np.ndarray, height: int = THUMB) -> np.ndarray:
    """(N, H, W, 3) frames scaled to ``height`` pixels (nearest), their aspect ratio kept: the
    display frames of a timeline and of every figure (``uavm.figures.thumbnail``)."""
    h, w = frames.shape[1:3]
    nw = max(int(round(w * height / h)), 1)
    yi, xi = (np.arange(height) * h / height).astype(int), (np.arange(nw) * w / nw).astype(int)
    return np.ascontiguousarray(frames[:, yi][:, :, xi])


class ClipFeatures:
    """One clip decoded once (by ``timeline``): any window's Features, waveform and display
    frames, without decoding again. Safe to read from several threads; ``audio`` and
    ``window`` may run the audio network for a window off the timeline (hold the model lock)."""

    def __init__(self, path, info: media.MediaInfo, extractor, spool_mb: float = SPOOL_MB):
        pre = extractor.pre
        self.path, self.info, self.extractor = str(path), info, extractor
        self.sample_rate, self.fps, self.seconds = pre.audio.sample_rate, pre.video.fps, pre.clip_seconds
        # features leave the extractors rounded through feature_dtype: kept in float16 when that loses nothing
        self._dtype = np.float16 if pre.feature_dtype == "float16" else np.float32
        self._wave = _Waveform(spool_mb) if info.has_audio else None
        self._thumbs = _Spool(spool_mb) if info.has_video else None
        self.thumb_shape: Optional[tuple] = None
        self.frame_shape: Optional[tuple] = None  # (H, W, 3) of the frames the model sees
        self.video_features: Optional[np.ndarray] = None  # (frames kept, D): one row per entry of ks
        self.ks = np.zeros(0, np.int64)  # their output numbers on the 3 fps grid (a gap leaves some out)
        self._video_parts: list = []
        self._ks_parts: list = []
        self._last_k = -1
        self._video_s = 0.0  # spent in the video network
        self.ends: dict = {"audio": None, "video": None}  # where each stream ended, seconds
        self.duration = 0.0
        self.decoder_mb: Optional[dict] = None  # the decoding process's memory
        self._audio: dict = {}  # (first sample, samples) -> features, every timeline window
        self._recent: OrderedDict = OrderedDict()  # the same, other windows, the latest RECENT
        self._lock = threading.Lock()

    # -- building (``timeline``) --------------------------------------------------------------
    def _take(self, chunk: media.Chunk, lock) -> None:
        for pos, a in chunk.audio:
            if self._wave is not None:
                self._wave.add(pos, a)
        if chunk.frames is not None and len(chunk.frames) and self._thumbs is not None:
            ks = np.asarray(chunk.ks, np.int64)
            if len(ks) != len(chunk.frames) or ks[0] <= self._last_k or (np.diff(ks) <= 0).any():
                raise UAVMError(f"{self.path}: the decoder sent frames out of order (output {int(ks[0])})")
            self._last_k = int(ks[-1])
            self._ks_parts.append(ks)
            self.frame_shape = tuple(chunk.frames.shape[1:])
            t = thumbnails(chunk.frames)
            self.thumb_shape = tuple(t.shape[1:])
            self._thumbs.append(t.tobytes())
            t = time.perf_counter()
            with lock:
                f = self.extractor.features_many([Prepared(None, chunk.frames)])[0].video
            self._video_s += time.perf_counter() - t
            self._video_parts.append(f.astype(self._dtype))
        if chunk.last:
            self._finish(chunk)

    def _finish(self, chunk: media.Chunk) -> None:
        if self._video_parts:
            self.video_features = np.concatenate(self._video_parts)
            self.ks = np.concatenate(self._ks_parts)
            self._video_parts, self._ks_parts = [], []
        self.ends = dict(chunk.ends or {})
        # how long the clip is: what decoded, not what its header says; a header within a second
        # of it is trusted over an encoder's padding (which runs a few milliseconds past the end)
        self.duration = decoded = max([x for x in self.ends.values() if x] or [0.0])
        if self.info.duration and abs(decoded - self.info.duration) < 1.0:
            self.duration = min(decoded, self.info.duration)
        self.decoder_mb = chunk.decoder_mb

    def _keep(self, first: int, want: int, f: np.ndarray) -> None:
        with self._lock:
            self._audio[(first, want)] = f.astype(self._dtype)

    # -- reading ------------------------------------------------------------------------------
    @property
    def frames_on_grid(self) -> int:
        return len(self.ks)

    def _span(self, start, seconds):
        """The checked (start, seconds) of a window, and its first sample and sample count."""
        start = number("start", start, lo=0)
        seconds = self.seconds if seconds is None else number("seconds", seconds, lo=0, hi=self.seconds)
        if start >= self.duration and start > 0:
            raise media.MediaError(f"{self.path}: start offset {start:g} s is past the end of the clip "
                                   f"({self.duration:.2f} s)")
        return start, seconds, int(round(start * self.sample_rate)), int(round(seconds * self.sample_rate))

    def _grid(self, start: float, seconds: float) -> tuple:
        """(first, end) rows of the kept frames in the window (as uavm.media.sample_grid)."""
        k0 = int(round(start * self.fps))
        k1 = k0 + int(math.ceil(seconds * self.fps - 1e-9))
        return int(np.searchsorted(self.ks, k0)), int(np.searchsorted(self.ks, k1))

    def waveform(self, start: float = 0.0, seconds: Optional[float] = None) -> Optional[np.ndarray]:
        """The window's waveform as ``uavm predict --start`` hears it; None where there is no sample."""
        start, seconds, first, want = self._span(start, seconds)
        if self._wave is None:
            return None
        wav = self._wave.window(first, want)
        return wav if len(wav) else None

    def video(self, start: float = 0.0, seconds: Optional[float] = None) -> Optional[np.ndarray]:
        """(K, D) raw features of the window's frames on the grid; None where there is no frame."""
        start, seconds, _, _ = self._span(start, seconds)
        k0, k1 = self._grid(start, seconds)
        return None if k1 <= k0 else self.video_features[k0:k1].astype(np.float32)

    def frames(self, start: float = 0.0, seconds: Optional[float] = None) -> Optional[np.ndarray]:
        """The window's grid frames THUMB pixels high, for display; None where there is no frame."""
        start, seconds, _, _ = self._span(start, seconds)
        k0, k1 = self._grid(start, seconds)
        if k1 <= k0:
            return None
        n = int(np.prod(self.thumb_shape))
        data = self._thumbs.read(k0 * n, (k1 - k0) * n)
        return np.frombuffer(data, np.uint8).reshape(k1 - k0, *self.thumb_shape).copy()

    def audio(self, start: float = 0.0, seconds: Optional[float] = None) -> Optional[np.ndarray]:
        """(T, D) raw audio features of the window: kept for the timeline's windows (and the
        latest others), else made from the kept waveform (the audio network runs)."""
        start, seconds, first, want = self._span(start, seconds)
        key = (first, want)
        with self._lock:
            f = self._audio.get(key)
            if f is None and key in self._recent:
                self._recent.move_to_end(key)
                f = self._recent[key]
        if f is not None:
            return f.astype(np.float32)
        wav = self.waveform(start, seconds)
        if wav is None:
            return None
        with one_core_free():
            f = self.extractor.audio_features(wav)
        with self._lock:
            self._recent[key] = f.astype(self._dtype)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        return f

    def missing(self, start: float = 0.0, seconds: Optional[float] = None) -> dict:
        """modality -> why it is missing in the window (the messages of ``uavm predict``)."""
        start, seconds, first, want = self._span(start, seconds)
        out = {}
        if self._wave is None:
            out["audio"] = "the file has no audio stream"
        elif not any(True for _ in self._wave.pieces(first, first + want)):
            out["audio"] = "the audio stream has no samples in this window"
        k0, k1 = self._grid(start, seconds)
        if self._thumbs is None:
            out["video"] = "the file has no video stream"
        elif k1 <= k0:
            out["video"] = "the video stream has no frames in this window"
        return out

    def window(self, start: float = 0.0, seconds: Optional[float] = None) -> Features:
        """The window's raw Features, as ``Pipeline.features(path, start)`` gives them."""
        missing = self.missing(start, seconds)
        return Features(None if "audio" in missing else self.audio(start, seconds),
                        None if "video" in missing else self.video(start, seconds), missing)

    def gaps(self) -> dict:
        """modality -> [[from, to], ...] seconds of the clip where that stream has nothing."""
        d, out = self.duration, {}
        if self._wave is None:
            out["audio"] = [[0.0, round(d, 3)]] if d else []
        else:
            r = self.sample_rate
            out["audio"] = [[round(a / r, 3), round(b / r, 3)] for a, b in self._wave.gaps(int(round(d * r)))]
        if self._thumbs is None:
            out["video"] = [[0.0, round(d, 3)]] if d else []
        else:
            end, f, ks = self.ends.get("video") or 0.0, self.fps, self.ks
            spans = [] if not len(ks) or ks[0] == 0 else [(0.0, ks[0] / f)]
            spans += [((a + 1) / f, b / f) for a, b in zip(ks[:-1], ks[1:]) if b > a + 1]
            spans += [(max(end, (ks[-1] + 1) / f if len(ks) else 0.0), d)]
            out["video"] = [[round(a, 3), round(min(b, d), 3)] for a, b in spans if min(b, d) > a + 1e-6]
        return out

    def close(self) -> None:
        """Drop the kept waveform and display frames (their temporary files)."""
        for s in (self._wave.spool if self._wave else None, self._thumbs):
            if s is not None:
                s.close()

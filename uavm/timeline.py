"""A long clip at a glance: what each modality hears and sees, window by window, from one decode.

``timeline(pipe, path, stride, window)`` decodes the file once, in one streaming pass inside
the isolated decoder (``uavm.media.decode_stream``): audio and 3 fps frames arrive in chunks
as they decode and become features at once; raw frames are never kept.

* Video frames are taken once, on the 3 fps grid of the whole clip (output k at k / fps,
  chosen as ffmpeg's fps filter chooses). A window starting at S uses grid frames
  round(S * fps) ... + ceil(window * fps): the very frames ``uavm predict --start S`` decodes,
  so windows whose starts are multiples of 1 / fps share frames and features exactly.
* Audio features are made per window from that window's waveform (its fbank, as ``uavm
  predict --start S`` makes it), several windows per backbone pass.
* The waveform and small display frames stay in spooled temporary files (in memory while
  small, then an unnamed file on disk that vanishes with them), so memory stays bounded
  however long the clip. ``ClipFeatures`` then serves any window (features, waveform,
  display frames) without decoding again: what the explorer keeps per clip.

Missing, per window: a modality is missing where its stream has nothing: no audio sample in
the window (the stream has ended, or has a gap: its timestamps jump ahead by more than
``uavm.media.GAP_S``), no video frame (the stream has ended). Digital silence in a continuing
stream is audio, not missing. A gap inside a window is silence there; a stream that stops
inside a window is cut there and padded as the model pads a short clip.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import media, work
from .errors import InputError, UAVMError, number
from .inference import Features, check_top_k

THUMB = 64  # display frames' height: what the explorer's frame strip draws
MAX_WINDOWS = 50_000  # windows in one timeline (their features are kept)
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


def check_timeline(stride, window, clip_seconds: float) -> tuple:
    """-> (stride, window) checked: stride > 0; 0 < window <= the model's window (a shorter
    window is analysed as a clip of that length, padded as the model pads; a longer one would
    be cut by the model)."""
    stride = number("stride", stride)
    if not stride > 0:
        raise InputError(f"stride must be a finite number > 0, got {stride:g}")
    window = clip_seconds if window is None else number("window", window)
    if not 0 < window <= clip_seconds:
        raise InputError(f"window must be > 0 and at most the model's {clip_seconds:g} s, got {window:g}")
    return stride, window


def reported(start: float, duration: float, stride: float, window: float) -> bool:
    """Is the window at ``start`` one of the timeline's answers? The first always is; each
    later one while the window before it ends before the clip does, so that every second
    of the clip is in some window and no window holds only what an earlier one covered
    (or only padding). JSON, CSV, the figure and the page all list exactly these."""
    eps = 1e-6
    return start == 0 or (start < duration - eps and start - stride + window < duration - eps)


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


def _thumbnails(frames: np.ndarray, height: int = THUMB) -> np.ndarray:
    """Frames scaled to ``height`` (nearest), as ``uavm.figures.frame_strip`` scales them."""
    h, w = frames.shape[1:3]
    nw = max(int(w * height / h), 1)
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
            t = _thumbnails(chunk.frames)
            self.thumb_shape = tuple(t.shape[1:])
            self._thumbs.append(t.tobytes())
            t = time.perf_counter()
            with lock:
                f = self.extractor.features_many([(None, chunk.frames, {})])[0].video
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


@dataclass
class Timeline:
    """Every window's answer over a clip (``timeline``)."""

    clip: str
    duration: float  # seconds: where the longer stream ends, as decoded (at most what the container says)
    stride: float
    window: float
    top_k: int
    windows: list  # one dict per window (see ``to_dict``)
    predictions: list  # per window: a Prediction (without attention), or None
    gaps: dict  # modality -> [[from, to], ...] seconds where that stream has nothing
    features: ClipFeatures = field(repr=False)
    stats: dict = field(default_factory=dict)  # where the time went, the decoder's memory

    def to_dict(self) -> dict:
        """``clip``, ``duration``, ``stride``, ``window``, ``windows``: per window ``start`` and
        ``audio`` / ``video`` / ``fused`` in the ``uavm predict --json`` form without attention,
        ``agree`` (audio and video top-1 equal; null unless both exist), ``missing`` where a
        modality is missing (why), ``error`` where the model failed; and ``gaps``."""
        return {"clip": self.clip, "duration": round(self.duration, 3), "stride": self.stride,
                "window": self.window, "windows": self.windows, "gaps": self.gaps}

    def rows(self) -> list:
        """One flat row per window: start, each prediction's top-1 label and score, agree, missing."""
        out = []
        for w in self.windows:
            row = {"start": w["start"]}
            for m in ("audio", "video", "fused"):
                top = w[m]["top"][0] if w[m] else None
                row[f"{m}_label"], row[f"{m}_score"] = (top["label"], round(top["score"], 4)) if top else ("", "")
            row["agree"] = "" if w["agree"] is None else int(w["agree"])
            row["missing"] = ";".join(sorted(w.get("missing", {})))
            out.append(row)
        return out


def timeline(pipe, path, stride: float = 5.0, window: Optional[float] = None, top_k: int = 3, progress=None,
             lock=None, batch: int = 8, spool_mb: float = SPOOL_MB, max_windows: int = MAX_WINDOWS) -> Timeline:
    """Windows start at 0, stride, 2 * stride, ... (those ``reported`` says: up to the one that
    reaches the clip's end); each gets
    the audio-only, video-only and fused prediction of ``pipe`` (a ``uavm.Pipeline``).

    ``window``: seconds (default the model's window); windows where neither stream has anything
    are left out (a gap of the whole clip is in ``gaps``). ``progress(done_s, total_s)`` hears how
    far the decode has come (total_s None when the container does not say). ``lock``: held
    around every network pass (a server's model lock), never while decoding. ``batch``:
    windows per audio backbone pass; ``max_windows``: refused beyond. The file is decoded in the
    isolated decoder within ``pipe.limits`` (see ``uavm.media.decode_stream``)."""
    pre = pipe.pre
    stride, window = check_timeline(stride, window, pre.clip_seconds)
    top_k = check_top_k(top_k, len(pipe.bundle.labels))
    lock = lock or nullcontext()
    sr, fps = pre.audio.sample_rate, pre.video.fps
    want = int(round(window * sr))
    t_start = time.perf_counter()
    stats = {"decode_wait_s": 0.0, "audio_s": 0.0}
    clip, n, ready = None, 0, []  # ready: (first sample, prepared fbank) awaiting a backbone pass

    def start_of(i: int) -> float:
        return round(i * stride, 6)

    def audio_pass():
        if ready:
            t = time.perf_counter()
            with lock:
                feats = pipe.features_many([p for _, p in ready])
            for (first, _), f in zip(ready, feats):
                clip._keep(first, want, f.audio)
            ready.clear()
            stats["audio_s"] += time.perf_counter() - t

    stream = media.decode_stream(path, sr, fps, pre.video.short_side, pre.clip_seconds, limits=pipe.limits)
    try:
        with closing(stream), one_core_free():
            while True:
                work.checkpoint()  # a client that has gone stops its timeline (and its decoder) here
                t = time.perf_counter()
                item = next(stream, None)
                stats["decode_wait_s"] += time.perf_counter() - t
                if item is None:
                    break
                if isinstance(item, media.MediaInfo):
                    clip = ClipFeatures(path, item, pipe, spool_mb)
                    # refused at once when the header is plausible; a header may lie, so the count
                    # is checked again as the windows come
                    if item.duration and item.duration <= pipe.limits.max_seconds and \
                            math.ceil(item.duration / stride) > max_windows:
                        raise InputError(f"a stride of {stride:g} s gives {math.ceil(item.duration / stride)} windows "
                                         f"over {item.duration:.0f} s, over the limit of {max_windows}")
                    continue
                clip._take(item, lock)
                # every window whose audio is complete: the stream is decoded up to item.until
                while True:
                    s = start_of(n)
                    first = int(round(s * sr))
                    if item.last:
                        if not reported(s, clip.duration, stride, window):
                            break
                    elif first + want > int(round(item.until * sr)) or s >= (clip.info.duration or math.inf):
                        break
                    if n >= max_windows:
                        raise InputError(f"a stride of {stride:g} s gives over {max_windows} windows, the limit")
                    wav = clip._wave.window(first, want) if clip._wave is not None else None
                    if wav is not None and len(wav):
                        ready.append((first, pipe.prepare((wav, None, {}))))
                    if len(ready) >= batch:
                        audio_pass()
                    n += 1
                if item.last:
                    audio_pass()
                if progress is not None:
                    progress(min(item.until, clip.duration) if item.last else item.until, clip.info.duration)
    except BaseException:
        if clip is not None:
            clip.close()
        raise
    if clip is None or clip.duration <= 0:
        if clip is not None:
            clip.close()
        raise media.MediaError(f"{path}: no audio sample and no video frame decodes from this file")

    t = time.perf_counter()
    with one_core_free():
        windows, preds = _answers(pipe, clip, [start_of(i) for i in range(n)], stride, window, top_k, lock)
    stats["model_s"] = time.perf_counter() - t
    stats["total_s"] = time.perf_counter() - t_start
    stats["video_s"] = clip._video_s
    stats["decoder_mb"] = clip.decoder_mb
    return Timeline(str(path), clip.duration, stride, window, top_k, windows, preds, clip.gaps(), clip, stats)


def _answers(pipe, clip: ClipFeatures, starts: list, stride: float, window: float, top_k: int, lock) -> tuple:
    """Each window's answer (a dict of the ``to_dict`` form) and Prediction (or None)."""
    windows, preds = [], []
    for s in [s for s in starts if reported(s, clip.duration, stride, window)]:
        f = clip.window(s, window)
        w, pred = {"start": s, "audio": None, "video": None, "fused": None, "agree": None}, None
        if f.audio is None and f.video is None:
            continue  # nothing in either stream: a gap of the whole clip (in ``gaps``), not an answer
        try:
            with lock:
                pred = pipe.predict_features(f.audio, f.video, f.missing)
        except UAVMError as e:  # e.g. a cross-modal model with a modality missing: this window only
            w["missing"], w["error"] = f.missing, str(e)
        else:
            pred = dataclasses.replace(pred, attention={})
            d = pred.to_dict(top_k, attention=False)
            w.update({m: d[m] for m in ("audio", "video", "fused")})
            a, v = pred.top("audio", 1), pred.top("video", 1)
            w["agree"] = None if a is None or v is None else a[0]["index"] == v[0]["index"]
            if pred.missing:
                w["missing"] = dict(pred.missing)
        if "missing" in w and not w["missing"]:
            del w["missing"]
        windows.append(w)
        preds.append(pred)
    return windows, preds

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
* The waveform and small display frames stay in spooled temporary files, so memory stays
  bounded however long the clip: ``uavm.clip.ClipFeatures`` then serves any window
  (features, waveform, display frames) without decoding again.

Missing, per window: a modality is missing where its stream has nothing: no audio sample in
the window (the stream has ended, or has a gap: its timestamps jump ahead by more than
``uavm.media.GAP_S``), no video frame (the stream has ended). Digital silence in a continuing
stream is audio, not missing. A gap inside a window is silence there; a stream that stops
inside a window is cut there and padded as the model pads a short clip.
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from typing import Optional

from . import media, work
from .clip import SPOOL_MB, ClipFeatures, one_core_free
from .errors import InputError, UAVMError, number
from .window import Decoded, check_top_k

MAX_WINDOWS = 50_000  # windows in one timeline (their features are kept)


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
                        ready.append((first, pipe.prepare(Decoded(wav, None))))
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

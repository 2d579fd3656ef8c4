"""The missing-modality explorer's logic (the app only draws it).

One clip window is decoded once and its features extracted once; what the user
changes afterwards reuses them, keyed by content:

* turning a modality off or on, or picking another layer: no decoding, no extraction,
  only the Transformer runs;
* muting an audio span: the audio features of that waveform are computed (and kept);
* blanking a video span: frames are independent, so only the black frame's feature
  is ever computed, once per frame size, and spliced in;
* moving the window start of a clip whose timeline was built (``timeline``): the clip was
  decoded once, whole, and any window on its 3 fps grid is served from it.

Shared by every session of a server (``Shared``: one byte budget for every cache, one
decode per window for every model with the same preprocessing, the locks and slots), it is
safe to call from many threads: decoding (file I/O, in isolated processes) happens outside
the network locks, bounded by its own slots, so slow uploads queue behind each other and
never in front of another user's cached work; a timeline decodes in a lane of its own; the
backbones' passes are serialised by ``model_lock``, the Transformer's by ``head_lock``, so
an answer from cached features never waits for another clip's feature extraction. A refusal
is cached like an answer (a hostile file costs its work once); cancelled work is not.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import work
from .cache import Budget, Store
from .errors import UAVMError
from .files import sha256
from .media import regular_file
from .window import (
    Decoded,
    Features,
    Prediction,
    apply_spans,
    check_top_k,
    check_weight,
    check_window,
    nothing_left,
    span_mask,
    window_span,
)


def file_digest(path) -> str:
    """The content key of a clip."""
    regular_file(path)  # never a FIFO or a device: hashing one would block or never end
    return sha256(path)


LRU = Store  # (the name the explorer's caches had)
Span = Optional[tuple]  # (start, end) in seconds of the clip, or None


@dataclass
class Shared:
    """What the explorers of one server share: the byte budget of every cache, the decoded
    windows (one decode per window for all models with the same preprocessing), the network
    locks and the decode slots (windows; timelines in a lane of their own)."""

    budget: Budget = field(default_factory=lambda: Budget(1 << 30))
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    head_lock: threading.Lock = field(default_factory=threading.Lock)
    decode_slots: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    long_slots: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(1))
    decoded: Optional[Store] = None
    running: dict = field(default_factory=dict)  # (id(store), key) -> Event while its work runs

    def __post_init__(self):
        if self.decoded is None:
            self.decoded = Store(64, budget=self.budget)


class _Failed:
    """A refusal kept in a cache: the same request fails again at once, without the work. The
    file's path is not kept in it: the same bytes may come back under another name."""

    MARK = "\x00clip\x00"

    def __init__(self, error: UAVMError, path=None):
        self.kind, self.text = type(error), str(error)
        if path is not None:
            self.text = self.text.replace(str(path), self.MARK)

    def error(self, path=None) -> UAVMError:
        return self.kind(self.text.replace(self.MARK, str(path) if path is not None else "the clip"))

    def memory_bytes(self) -> int:
        return 256 + len(self.text)


@dataclass
class Analysis:
    prediction: Optional[Prediction]
    start: float
    seconds: float
    waveform: Optional[np.ndarray]  # the window as the model heard it (muted span silenced)
    frames: Optional[np.ndarray]  # the 3 fps frames as the model saw them (blanked span black), for display
    missing: dict
    timings_ms: dict = field(default_factory=dict)
    reused: list = field(default_factory=list)  # which cached stages were reused
    error: Optional[str] = None


@dataclass
class Window(Decoded):
    """A decoded window (display frames when served from a timeline's clip) and the
    timeline's clip it came from, or None (the clip is counted where it is kept,
    ``Explorer.clips``)."""

    clip: object = None


class Explorer:
    def __init__(self, pipeline, cache_size: int = 16, shared: Optional[Shared] = None):
        self.pipe = pipeline
        self.shared = shared or Shared()
        b = self.shared.budget
        pre = pipeline.pre
        self._decode_key = (pre.audio.sample_rate, pre.video.fps, pre.video.short_side, pre.clip_seconds)
        self.audio_feats = Store(cache_size * 4, budget=b)
        self.video_feats = Store(cache_size, budget=b)
        self.explained = Store(cache_size, budget=b)
        self.swept = Store(cache_size, budget=b)
        self.degraded_windows = Store(cache_size, budget=b)  # (window, degradation) -> the degraded Window
        self.timelines = Store(8, budget=b)
        self.clips = Store(4, evict=lambda clip: clip.close(), budget=b)  # digest -> ClipFeatures of a timeline
        self.black = {}
        self._cache_lock = b.lock  # held for dict operations only, never for work

    @property
    def model_lock(self):
        return self.shared.model_lock

    def _once(self, store: Store, key, make, path=None):
        """``store[key]``, made by ``make()`` once even when several threads ask at the same
        time (they wait for the first and share its result); -> (value, reused?). A refusal
        (UAVMError) is kept too and raised again (naming ``path``); a cancelled make keeps nothing."""
        running = self.shared.running
        while True:
            with self._cache_lock:
                if key in store:
                    value = store.get_or(key, None)[0]
                    if isinstance(value, _Failed):
                        raise value.error(path)
                    return value, True
                event = running.get((id(store), key))
                if event is None:
                    event = running[(id(store), key)] = threading.Event()
                    break
            work.wait(event.wait, float("inf"))
        try:
            try:
                value = make()
            except work.Cancelled:
                raise
            except UAVMError as e:
                store.put(key, _Failed(e, path))
                raise
            store.put(key, value)
            return value, False
        finally:
            with self._cache_lock:
                running.pop((id(store), key)).set()

    def _clip(self, digest: str, start: float):
        """The ClipFeatures of this clip when a timeline decoded it and ``start`` is on its grid."""
        with self._cache_lock:
            clip = self.clips.get(digest)
        fps = self.pipe.pre.video.fps
        return clip if clip is not None and abs(start * fps - round(start * fps)) < 1e-6 else None

    def decode(self, path, start: float, digest: str, say=lambda f, msg: None, raw: bool = False):
        """The decoded window (every stream the file has), from the cache or decoded once,
        outside the network locks; -> (Window, reused?). A clip whose timeline was built gives
        its window without a decode (its frames are display thumbnails: never for a network),
        unless ``raw``: the media themselves are wanted (to degrade or to swap them)."""
        clip = None if raw else self._clip(digest, start)
        if clip is not None:
            return Window(clip.waveform(start), clip.frames(start), clip.missing(start), clip), True

        def make():
            say(0.05, "decoding the clip")
            with work.lane("decode"), work.holding(self.shared.decode_slots):
                d = self.pipe.decode(path, start)
            return Window(d.wav, d.frames, d.missing)
        return self._once(self.shared.decoded, (self._decode_key, digest, round(float(start), 3)), make, path)

    def window(self, path, start: float, digest: str, say=lambda f, msg: None, raw: bool = False,
               audio_from=None, audio_digest: Optional[str] = None):
        """The window to analyse -> (Window, reused?): the clip's, its audio from ``audio_from``
        when given (each pass then answers as on its own source: ``Pipeline.decode_sources``)."""
        if audio_from is None:
            return self.decode(path, start, digest, say, raw)
        wv, hit_v = self.decode(path, start, digest, say, raw=True)
        wa, hit_a = self.decode(audio_from, start, audio_digest or file_digest(audio_from), say, raw=True)
        missing = {**{k: v for k, v in wa.missing.items() if k == "audio"},
                   **{k: v for k, v in wv.missing.items() if k == "video"}}
        return Window(wa.wav, wv.frames, missing), hit_v and hit_a

    def timeline(self, path, digest: Optional[str] = None, stride: float = 5.0, window=None, top_k: int = 3,
                 progress=None, max_windows: Optional[int] = None):
        """The clip's timeline (``uavm.timeline``), built once per clip and parameters; the
        decoded clip is kept, so that any window on its 3 fps grid needs no decode after it.
        It decodes in the long lane (``Shared.long_slots``), never in a window's decode slot."""
        from .timeline import MAX_WINDOWS, check_timeline

        stride, window = check_timeline(stride, window, self.pipe.pre.clip_seconds)
        top_k = check_top_k(top_k, len(self.pipe.bundle.labels))
        digest = digest or file_digest(path)

        def make():
            # one long slot for the whole stream (its decoder lives that long); the model lock
            # only around the network passes, so other users' work goes on meanwhile
            with work.lane("timeline"), work.holding(self.shared.long_slots):
                tl = self.pipe.timeline(path, stride, window, top_k, progress=progress, lock=self.model_lock,
                                        max_windows=max_windows or MAX_WINDOWS)
            with self._cache_lock:  # one decoded clip kept per content (another timeline's is the same)
                kept, hit = self.clips.get_or(digest, lambda: tl.features)
            if hit and kept is not tl.features:
                tl.features.close()
                tl.features = kept
            return tl
        return self._once(self.timelines, (digest, stride, window, top_k, max_windows), make, path)[0]

    # -- one window -> features: the one path for the answers and the explanation ---------------------
    def features(self, key: tuple, w: Window, start: float, mute_w, blank_w, audio: bool, video: bool,
                 say=lambda f, msg: None, reused: Optional[list] = None, timings: Optional[dict] = None,
                 parts: tuple = (None, None), akey: Optional[tuple] = None) -> Features:
        """The raw features of a decoded window as the model sees it (degraded, then a muted
        span silenced, a blanked one's frames the black frame's feature), from the caches or
        made once under the model lock. A timeline's clip gives its own features, never from
        its thumbnails. ``parts``: what a degradation did to its audio and its video
        (``Degrade.part``; the window is ``degraded`` already), part of the cache keys;
        ``akey``: the audio's cache key when it comes from another clip."""
        pre, feats, reused, timings = self.pipe.pre, {}, reused if reused is not None else [], timings or {}
        w = w.switched(audio, video)
        a_deg, v_deg = parts
        if w.wav is not None:
            t = time.perf_counter()
            if w.clip is not None and not mute_w and a_deg is None:
                feats["audio"] = w.clip.audio(start)  # its own lock inside when it must compute
                reused.append("audio features")
            else:
                def make():
                    wav = apply_spans(w.wav, None, pre, start, (start + mute_w[0], start + mute_w[1]) if mute_w else None)[0]
                    say(0.3, "audio features (fbank + ConvNeXt)")
                    with work.holding(self.model_lock):
                        return self.pipe.audio_features(wav)
                feats["audio"], hit = self._once(self.audio_feats, (akey or key) + (mute_w, a_deg), make)
                if hit:
                    reused.append("audio features")
            timings["audio features"] = (time.perf_counter() - t) * 1000
        if (w.clip is not None and "video" not in w.missing) or w.frames is not None:
            t = time.perf_counter()
            if w.clip is not None and v_deg is None:
                base, shape = w.clip.video(start), w.clip.frame_shape
                reused.append("video features")
            else:
                def make():
                    say(0.6, "video features (ConvNeXt on each frame)")
                    with work.holding(self.model_lock):
                        return self.pipe.video_features(w.frames)
                base, hit = self._once(self.video_feats, key + ((v_deg,) if v_deg else ()), make)
                shape = w.frames.shape[1:]
                if hit:
                    reused.append("video features")
            if blank_w is not None and base is not None and len(base):
                # frames are independent: splice in the black frame's feature (of the size the model saw)
                base = base.copy()
                base[span_mask(len(base), pre.video.fps, blank_w)] = self._black_feature(shape)
            feats["video"] = base
            timings["video features"] = (time.perf_counter() - t) * 1000
        return Features(feats.get("audio"), feats.get("video"), w.missing)

    def degraded(self, w: Window, degrade, key: tuple, akey: Optional[tuple], start: float) -> tuple:
        """-> (the window as ``degrade`` leaves it, what it did to each modality): made once per
        window and degradation (a blur of a paper-size window costs up to a second), outside
        the network locks; the window itself when nothing is degraded."""
        if degrade is None:
            return w, (None, None)
        pre = self.pipe.pre
        parts = (degrade.part("audio", start, pre.clip_seconds), degrade.part("video", start, pre.clip_seconds))
        if parts == (None, None):
            return w, parts
        made, _ = self._once(self.degraded_windows, (key, akey, parts), lambda: degrade.apply(w, pre, start))
        return made, parts

    def _black_feature(self, shape) -> np.ndarray:
        shape = tuple(shape)
        if shape not in self.black:
            with work.holding(self.model_lock):
                self.black[shape] = self.pipe.video_features(np.zeros((1, *shape), np.uint8))[0]
        return self.black[shape]

    def run(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
            mute: Span = None, blank: Span = None, digest: Optional[str] = None, progress=None,
            degrade=None, audio_from=None, audio_digest: Optional[str] = None, audio_weight: float = 0.5) -> Analysis:
        """``progress(fraction, message)`` hears about the slow stages when they run;
        ``degrade``, ``audio_from``, ``audio_weight``: as ``Pipeline.predict``."""
        t0 = time.perf_counter()
        start, mute, blank = check_window(start, mute, blank)
        say = progress or (lambda f, msg: None)
        pre = self.pipe.pre
        timings, reused = {}, []
        key = (digest or file_digest(path), round(float(start), 3))
        akey = None
        if audio_from is not None:
            audio_digest = audio_digest or file_digest(audio_from)
            akey = (audio_digest, key[1])
        # decode every stream the file has, once; on/off switches only choose among them
        w, hit = self.window(path, start, key[0], say, degrade is not None, audio_from, audio_digest)
        if hit:
            reused.append("decode")
        w, parts = self.degraded(w, degrade, key, akey, start)
        timings["decode"] = (time.perf_counter() - t0) * 1000
        mute_w, blank_w = window_span(mute, start, pre.clip_seconds), window_span(blank, start, pre.clip_seconds)
        f = self.features(key, w, start, mute_w, blank_w, audio, video, say, reused, timings, parts, akey)
        t = time.perf_counter()
        pred, err = None, None
        if f.audio is None and f.video is None:
            err = nothing_left(f.missing)
        else:
            try:
                with work.holding(self.shared.head_lock):  # the Transformer alone: never behind a backbone
                    pred = self.pipe.predict_features(f.audio, f.video, f.missing, audio_weight)
                if degrade is not None:
                    pred.asked["degraded"] = degrade.to_dict()
            except work.Cancelled:
                raise
            except UAVMError as e:  # e.g. the cross-modal model with one modality off
                err = str(e)
        timings["model"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        wav, frames = apply_spans(w.wav, w.frames, pre, start, mute, blank)
        return Analysis(pred, float(start), pre.clip_seconds, wav, frames, dict(pred.missing) if pred else f.missing,
                        timings, reused, err)

    def explain(self, path, start: float = 0.0, target: str = "fused", window: float = 1.0, stride: float = 0.5,
                audio: bool = True, video: bool = True, mute: Span = None, blank: Span = None,
                digest: Optional[str] = None, progress=None, cached_only: bool = False, degrade=None,
                audio_from=None, audio_digest: Optional[str] = None):
        """``uavm.explain`` of the clip the explorer shows -> an Explanation (raises UAVMError on
        bad input). Reuses the cached decode and features (the same path as ``run``); its
        network passes take the model lock one at a time, so other users' work goes on between
        them; the answer is cached by content and parameters like the features.
        ``cached_only``: the explanation if it was made already, else None (nothing computed)."""
        from .explain import check_occlusion, check_target, explain_features, label_index

        start, mute, blank = check_window(start, mute, blank)
        pre = self.pipe.pre
        window, stride = check_occlusion(window, stride, pre.clip_seconds)
        target = check_target(target)
        label_index(target, self.pipe.bundle.labels)  # an unknown label fails before the decode
        say = progress or (lambda f, msg: None)
        key = (digest or file_digest(path), round(float(start), 3))
        mute_w, blank_w = window_span(mute, start, pre.clip_seconds), window_span(blank, start, pre.clip_seconds)
        akey = None
        if audio_from is not None:
            audio_digest = audio_digest or file_digest(audio_from)
            akey = (audio_digest, key[1])
        variant = (akey, tuple(sorted((degrade.to_dict() if degrade else {}).items(), key=str)).__repr__())
        ekey = key + (audio, video, mute_w, blank_w, target, window, stride, variant)
        with self._cache_lock:
            if ekey in self.explained:
                value = self.explained.get_or(ekey, None)[0]
                if not isinstance(value, _Failed):
                    return value
        if cached_only:
            return None

        def make():
            w, _ = self.window(path, start, key[0], say, degrade is not None, audio_from, audio_digest)
            w, parts = self.degraded(w, degrade, key, akey, start)
            f = self.features(key, w, start, mute_w, blank_w, audio, video, say, parts=parts, akey=akey)
            heard = apply_spans(w.wav, None, pre, start, mute)[0] if f.audio is not None else None
            return explain_features(self.pipe, heard, f, start, target, window, stride, clip=str(path),
                                    black=self._black_feature(self._frame_shape(w)) if f.video is not None else None,
                                    lock=self.model_lock, progress=say)
        return self._once(self.explained, ekey, make, path)[0]

    def sweep(self, path, kind: str, levels, start: float = 0.0, audio: bool = True, video: bool = True,
              mute: Span = None, blank: Span = None, span: Span = None, seed: int = 0, target=None,
              audio_weight: float = 0.5, digest: Optional[str] = None, audio_from=None,
              audio_digest: Optional[str] = None, progress=None):
        """``uavm.sweep`` of the window the explorer shows -> a Sweep, made once per clip and
        parameters: the media decoded in a decode slot (cached with the explorer's other
        windows), every level's networks under the model lock at once."""
        from .sweep import check_sweep, sweep

        start, mute, blank, levels, _, _ = check_sweep(self.pipe, kind, levels, start, mute, blank, span, seed, target)
        check_weight(audio_weight)
        say = progress or (lambda f, msg: None)
        key = (digest or file_digest(path), round(float(start), 3))
        if audio_from is not None:
            audio_digest = audio_digest or file_digest(audio_from)
        skey = key + (audio, video, mute, blank, kind, tuple(levels), span, seed, target, audio_weight, audio_digest)

        def make():
            w, _ = self.window(path, start, key[0], say, True, audio_from, audio_digest)
            say(0.4, f"{len(levels)} levels through the networks")
            sw = sweep(self.pipe, path, kind, levels, start, audio, video, mute, blank, span, seed, target,
                       audio_weight, decoded=w, lock=self.model_lock)
            sw.predictions = []  # the rows say it all; the predictions' attention is not kept
            return sw
        return self._once(self.swept, skey, make, path)[0]

    def _frame_shape(self, w: Window) -> tuple:
        return tuple(w.clip.frame_shape) if w.clip is not None else tuple(w.frames.shape[1:])

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

Shared by every session of a server, it is safe to call from many threads: decoding
(file I/O, in isolated processes) happens outside the model lock, bounded by its own
slots, so slow uploads queue behind each other and never in front of another user's
cached work; only the networks' passes are serialised by ``model_lock``.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import UAVMError
from .files import sha256
from .inference import (
    Pipeline,
    Prediction,
    apply_spans,
    check_top_k,
    check_window,
    nothing_left,
    span_mask,
    window_span,
)
from .media import regular_file


def file_digest(path) -> str:
    """The content key of a clip."""
    regular_file(path)  # never a FIFO or a device: hashing one would block or never end
    return sha256(path)


class LRU(OrderedDict):
    def __init__(self, size: int, evict=None):
        super().__init__()
        self.size, self.evict = size, evict

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key], True
        value = make()
        self[key] = value
        while len(self) > self.size:
            _, old = self.popitem(last=False)
            if self.evict is not None:
                self.evict(old)
        return value, False


Span = Optional[tuple]  # (start, end) in seconds of the clip, or None


@dataclass
class Analysis:
    prediction: Optional[Prediction]
    start: float
    seconds: float
    waveform: Optional[np.ndarray]  # the window as the model heard it (muted span silenced)
    frames: Optional[np.ndarray]  # the 3 fps frames as the model saw them (blanked span black)
    missing: dict
    timings_ms: dict = field(default_factory=dict)
    reused: list = field(default_factory=list)  # which cached stages were reused
    error: Optional[str] = None


class Explorer:
    def __init__(self, pipeline: Pipeline, cache_size: int = 16, model_lock=None, decode_slots=None):
        self.pipe = pipeline
        self.decoded = LRU(cache_size)
        self.audio_feats = LRU(cache_size * 4)
        self.video_feats = LRU(cache_size)
        self.black = {}
        # a server shares one model lock and one set of decode slots among all its models
        self.model_lock = model_lock or threading.Lock()
        self.decode_slots = decode_slots or threading.BoundedSemaphore(2)
        self.timelines = LRU(8)
        self.clips = LRU(4, evict=lambda clip: clip.close())  # digest -> ClipFeatures of a timeline
        self._running: dict = {}  # key -> Event while its work runs (one at a time per key)
        self._cache_lock = threading.Lock()  # held for dict operations only, never for work

    def _once(self, store: LRU, key, make):
        """``store[key]``, made by ``make()`` once even when several threads ask at the same
        time (they wait for the first and share its result); -> (value, reused?)."""
        while True:
            with self._cache_lock:
                if key in store:
                    return store.get_or(key, None)[0], True
                running = self._running.get((id(store), key))
                if running is None:
                    running = self._running[(id(store), key)] = threading.Event()
                    break
            running.wait()
        try:
            value = make()
            with self._cache_lock:
                store.get_or(key, lambda: value)
            return value, False
        finally:
            with self._cache_lock:
                self._running.pop((id(store), key)).set()

    def _clip(self, digest: str, start: float):
        """The ClipFeatures of this clip when a timeline decoded it and ``start`` is on its grid."""
        with self._cache_lock:
            clip = self.clips.get(digest)
        fps = self.pipe.pre.video.fps
        return clip if clip is not None and abs(start * fps - round(start * fps)) < 1e-6 else None

    def decode(self, path, start: float, digest: str, say=lambda f, msg: None):
        """The decoded window (every stream the file has), from the cache or decoded once,
        outside the model lock; -> ((wav, frames, missing), reused?). A clip whose timeline
        was built gives its window without a decode (frames as display thumbnails)."""
        clip = self._clip(digest, start)

        def make():
            if clip is not None:
                return clip.waveform(start), clip.frames(start), clip.missing(start)
            say(0.05, "decoding the clip")
            with self.decode_slots:
                return self.pipe.decode(path, start)
        return self._once(self.decoded, (digest, round(float(start), 3)), make)

    def timeline(self, path, digest: Optional[str] = None, stride: float = 5.0, window=None, top_k: int = 3,
                 progress=None):
        """The clip's timeline (``uavm.timeline``), built once per clip and parameters; the
        decoded clip is kept, so that any window on its 3 fps grid needs no decode after it."""
        from .timeline import check_timeline

        stride, window = check_timeline(stride, window, self.pipe.pre.clip_seconds)
        top_k = check_top_k(top_k, len(self.pipe.bundle.labels))
        digest = digest or file_digest(path)

        def make():
            # one decode slot for the whole stream (its decoder lives that long); the model
            # lock only around the network passes, so other users' work goes on meanwhile
            with self.decode_slots:
                tl = self.pipe.timeline(path, stride, window, top_k, progress=progress, lock=self.model_lock)
            with self._cache_lock:  # one decoded clip kept per content (another timeline's is the same)
                kept, hit = self.clips.get_or(digest, lambda: tl.features)
            if hit and kept is not tl.features:
                tl.features.close()
            return tl
        return self._once(self.timelines, (digest, stride, window, top_k), make)[0]

    def run(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
            mute: Span = None, blank: Span = None, digest: Optional[str] = None, progress=None) -> Analysis:
        """``progress(fraction, message)`` hears about the slow stages when they run."""
        t0 = time.perf_counter()
        start, mute, blank = check_window(start, mute, blank)
        say = progress or (lambda f, msg: None)
        timings, reused = {}, []
        key = (digest or file_digest(path), round(float(start), 3))
        # decode every stream the file has, once; on/off switches only choose among them
        (wav, frames, missing), hit = self.decode(path, start, key[0], say)
        if hit:
            reused.append("decode")
        timings["decode"] = (time.perf_counter() - t0) * 1000
        with self.model_lock:  # the networks' passes, one at a time
            return self._analyse(key, wav, frames, missing, start, audio, video, mute, blank, say, t0,
                                 timings, reused)

    def _analyse(self, key, wav, frames, missing, start, audio, video, mute, blank, say, t0, timings,
                 reused) -> Analysis:
        pre = self.pipe.pre
        secs = pre.clip_seconds
        missing = {m: why for m, why in missing.items()}
        mute_w, blank_w = window_span(mute, start, secs), window_span(blank, start, secs)

        feats = {}
        clip = self._clip(key[0], start)  # a timeline's clip: its features are there already
        if wav is not None:
            t = time.perf_counter()
            wav = apply_spans(wav, None, pre, start, mute)[0]
            if audio:
                if key + (mute_w,) not in self.audio_feats:
                    say(0.3, "audio features (fbank + ConvNeXt)")
                make = (lambda: clip.audio(start)) if clip is not None and not mute_w else \
                    (lambda: self.pipe.audio_features(wav))
                feats["audio"], hit = self.audio_feats.get_or(key + (mute_w,), make)
                if hit or clip is not None:
                    reused.append("audio features")
            timings["audio features"] = (time.perf_counter() - t) * 1000
        if frames is not None:
            t = time.perf_counter()
            if key not in self.video_feats:
                say(0.6, "video features (ConvNeXt on each frame)")
            make = (lambda: clip.video(start)) if clip is not None else (lambda: self.pipe.video_features(frames))
            base, hit = self.video_feats.get_or(key, make)
            if hit or clip is not None:
                reused.append("video features")
            if blank_w and len(frames):
                # frames are independent: splice in the black frame's feature (of the size the model saw)
                sel = span_mask(len(frames), pre.video.fps, blank_w)
                frames = apply_spans(None, frames, pre, start, None, blank)[1]
                base = base.copy()
                base[sel] = self._black_feature(clip.frame_shape if clip is not None else frames.shape[1:])
            if video:
                feats["video"] = base
            timings["video features"] = (time.perf_counter() - t) * 1000
        if not audio and "audio" not in missing:
            missing["audio"] = "turned off"
        if not video and "video" not in missing:
            missing["video"] = "turned off"

        t = time.perf_counter()
        pred, err = None, None
        if not feats:
            err = nothing_left(missing)
        else:
            try:
                pred = self.pipe.predict_features(feats.get("audio"), feats.get("video"), missing)
            except UAVMError as e:  # e.g. the cross-modal model with one modality off
                err = str(e)
        timings["model"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Analysis(pred, float(start), secs, wav, frames, missing, timings, reused, err)

    def _black_feature(self, shape) -> np.ndarray:
        if shape not in self.black:
            self.black[shape] = self.pipe.video_features(np.zeros((1, *shape), np.uint8))[0]
        return self.black[shape]

    def explain(self, path, start: float = 0.0, target: str = "fused", window: float = 1.0, stride: float = 0.5,
                audio: bool = True, video: bool = True, mute: Span = None, blank: Span = None,
                digest: Optional[str] = None, progress=None, cached_only: bool = False):
        """``uavm.explain`` of the clip the explorer shows -> an Explanation (raises UAVMError on
        bad input). Reuses the cached decode (outside ``model_lock``) and features (the network
        passes inside it); the answer is cached by content and parameters like the features.
        ``cached_only``: the explanation if it was made already, else None (nothing computed)."""
        from .explain import check_occlusion, check_target, explain_window, label_index

        start, mute, blank = check_window(start, mute, blank)
        pre = self.pipe.pre
        window, stride = check_occlusion(window, stride, pre.clip_seconds)
        target = check_target(target)
        label_index(target, self.pipe.bundle.labels)  # an unknown label fails before the decode
        say = progress or (lambda f, msg: None)
        key = (digest or file_digest(path), round(float(start), 3))
        mute_w, blank_w = window_span(mute, start, pre.clip_seconds), window_span(blank, start, pre.clip_seconds)
        ekey = key + (audio, video, mute_w, blank_w, target, window, stride)
        with self._cache_lock:
            # created on first use: the explanations live beside the other caches, sized like the decodes
            cache = self.__dict__.setdefault("explained", LRU(self.decoded.size))
            if ekey in cache:
                return cache.get_or(ekey, None)[0]
        if cached_only:
            return None
        (wav, frames, missing), _ = self.decode(path, start, key[0], say)
        with self.model_lock:  # the networks' passes, one at a time
            base = {}
            if wav is not None and audio is True:
                muted = apply_spans(wav, None, pre, start, mute)[0]
                base["audio"] = self.audio_feats.get_or(key + (mute_w,), lambda: self.pipe.audio_features(muted))[0]
            if frames is not None and len(frames) and video is True:
                f = self.video_feats.get_or(key, lambda: self.pipe.video_features(frames))[0]
                if blank_w:  # frames are independent: the black frame's feature spliced in, as `run` does
                    f = f.copy()
                    f[span_mask(len(frames), pre.video.fps, blank_w)] = self._black_feature(frames.shape[1:])
                base["video"] = f
            result = explain_window(self.pipe, (wav, frames, missing), start, target, window, stride, audio, video,
                                    mute, blank, clip=str(path), base=base, black=self._black_feature, progress=say)
        with self._cache_lock:
            cache.get_or(ekey, lambda: result)
        return result

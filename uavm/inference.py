"""Algorithm 1 inference from a clip or from features: one pass per present
modality, fused = mean of the two logit vectors, either modality may be missing."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import media
from .bundle import Bundle
from .errors import InputError, UAVMError
from .explain import explain_clip
from .features import audio_features_many, fbank, to_model_input, video_features
from .timeline import timeline as stream_timeline
from .window import (  # noqa: F401 (the request checks and types, under their old names too)
    SPANS,
    Decoded,
    Features,
    Prediction,
    Prepared,
    apply_spans,
    check_span,
    check_top_k,
    check_window,
    nothing_left,
    span_mask,
    window_span,
)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UAVMError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


class FeatureExtractor:
    """Extractors + their preprocessing on a device: clip -> raw (T, D) features."""

    def __init__(self, extractors: dict, preprocessing, device="auto", name: str = "bundle",
                 precision: str = "auto", compile: bool = False):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.precision = precision  # see uavm.features._fast
        # torch.compile'd backbones: each new input shape costs a compile (~30 s on the CPU), then
        # paper-size passes run ~1.4x faster; it pays over folders, not for one clip
        self.compile = compile
        self._compiled: dict = {}
        self.extractors = {m: e.to(self.device).eval() for m, e in extractors.items()}
        self.pre = preprocessing
        self.name = name
        self.limits = media.Limits.from_env()

    def decode(self, path, start: float = 0.0, audio: bool = True, video: bool = True) -> Decoded:
        """The window at ``start``, decoded in a child process within ``self.limits`` (see
        ``uavm.media.Limits``); a modality switched off is not decoded."""
        start = check_window(start)[0]
        pre = self.pre
        w = media.decode_window(path, start, pre.clip_seconds, pre.audio.sample_rate, pre.video.fps,
                                pre.video.short_side, audio, video, self.limits)
        info = w.info
        if info.duration is not None and start >= info.duration and start > 0:
            raise media.MediaError(f"{path}: start offset {start:g} s is past the end of the clip "
                                   f"({info.duration:.2f} s)")
        missing = {}
        wav, frames = w.wav, w.frames
        for m, has in (("audio", info.has_audio), ("video", info.has_video)):
            if not has:
                missing[m] = f"the file has no {m} stream"
        # a stream that decodes to nothing in this window is missing, not silence or black
        if wav is not None and len(wav) == 0:
            wav, missing["audio"] = None, "the audio stream has no samples in this window"
        if frames is not None and len(frames) == 0:
            frames, missing["video"] = None, "the video stream has no frames in this window"
        return Decoded(wav, frames, missing).switched(audio, video)

    def _extractor(self, m: str):
        e = self.extractors.get(m)
        if e is None:
            raise UAVMError(f"{self.name} has no {m} feature extractor "
                               f"(import one with --{m}-extractor, or predict from features)")
        if self.compile:
            if m not in self._compiled:
                self._compiled[m] = torch.compile(e)
            return self._compiled[m]
        return e

    def audio_features(self, wav: np.ndarray) -> np.ndarray:
        return self.features_many([self.prepare(Decoded(wav, None))])[0].audio

    def video_features(self, frames: np.ndarray) -> np.ndarray:
        return self.features_many([self.prepare(Decoded(None, frames))])[0].video

    def features(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
                 mute=None, blank=None) -> Features:
        """``mute`` / ``blank``: (from, to) seconds of the clip to silence / turn black."""
        start, mute, blank = check_window(start, mute, blank)
        return self.features_of(self.decode(path, start, audio, video), start, mute, blank)

    def features_of(self, decoded: Decoded, start: float = 0.0, mute=None, blank=None) -> Features:
        return self.features_many([self.prepare(decoded, start, mute, blank)])[0]

    def prepare(self, decoded: Decoded, start: float = 0.0, mute=None, blank=None) -> Prepared:
        """A decoded window with the spans applied, its fbank computed: the CPU work before the
        backbones, which may run in another thread."""
        wav, frames = apply_spans(decoded.wav, decoded.frames, self.pre, start, mute, blank)
        fb = fbank(torch.as_tensor(wav), self.pre.audio) if wav is not None else None
        return Prepared(fb, frames, dict(decoded.missing))

    def features_many(self, prepared: list) -> list:
        """Prepared clips -> their Features, with one backbone pass per modality for all
        of them (frames concatenated, fbanks stacked): on a GPU this is what fills it."""
        a = [None] * len(prepared)
        have = [i for i, p in enumerate(prepared) if p.fbank is not None]
        if have:
            fbs = [prepared[i].fbank for i in have]
            for i, f in zip(have, audio_features_many(self._extractor("audio"), fbs, self.pre, self.device,
                                                      self.precision)):
                a[i] = f
        v = [None] * len(prepared)
        groups: dict = {}  # frames of one size share a pass (the size follows the aspect ratio)
        for i, p in enumerate(prepared):
            if p.frames is not None:
                groups.setdefault(p.frames.shape[1:], []).append(i)
        for have in groups.values():
            frames = [prepared[i].frames for i in have]
            f = video_features(self._extractor("video"), np.concatenate(frames) if len(frames) > 1 else frames[0],
                               self.pre, self.device, precision=self.precision)
            for i, part in zip(have, np.split(f, np.cumsum([len(x) for x in frames])[:-1])):
                v[i] = part
        return [Features(a[i], v[i], dict(p.missing)) for i, p in enumerate(prepared)]


class Pipeline(FeatureExtractor):
    """A loaded bundle on a device, from a clip (or features) to a Prediction."""

    def __init__(self, bundle: Bundle, device: str = "auto", precision: str = "auto", compile: bool = False):
        super().__init__(bundle.extractors, bundle.preprocessing, device, f"bundle {bundle.name}", precision, compile)
        self.bundle = bundle.to(self.device)

    # -- features -> prediction -------------------------------------------------------
    @torch.no_grad()
    def predict_features(self, audio: Optional[np.ndarray] = None, video: Optional[np.ndarray] = None,
                         missing: Optional[dict] = None) -> Prediction:
        cfg = self.bundle.model.cfg
        inputs, missing = {}, dict(missing or {})
        for m, f in (("audio", audio), ("video", video)):
            if f is None:
                continue
            f = np.asarray(f)
            if f.ndim == 2 and f.shape[0] == 0:  # how a clip without this stream is stored
                missing.setdefault(m, f"the {m} features are empty (the clip has no {m})")
                continue
            want = getattr(cfg, f"{m}_dim")
            if f.ndim != 2 or f.shape[1] != want or not np.issubdtype(f.dtype, np.number):
                raise InputError(f"{m} features must have shape (T, {want}), got {tuple(f.shape)}")
            if not np.isfinite(f).all():
                raise InputError(f"{m} features contain NaN or infinite values")
            inputs[m] = to_model_input(f, cfg.seq_len).to(self.device)
        if not inputs:
            raise UAVMError(nothing_left(missing))
        out = self.bundle.model(inputs.get("audio"), inputs.get("video"))
        logits = {"fused": out.fused[0].float().cpu().numpy()}
        attention = {}
        for m in ("audio", "video"):
            p = getattr(out, m)
            logits[m] = p.logits[0].float().cpu().numpy() if p is not None and p.logits is not None else None
            if p is not None and p.attention:
                attention[m] = torch.stack([a[0] for a in p.attention]).float().cpu().numpy()
        if out.joint is not None:
            attention["joint"] = torch.stack([a[0] for a in out.joint.attention]).float().cpu().numpy()
        bad = [m for m, z in logits.items() if z is not None and not np.isfinite(z).all()]
        if bad:  # never a NaN in an answer: this clip fails, with the likely reason
            raise UAVMError(f"the model gave non-finite {bad[0]} scores (NaN or infinity) for this input: "
                            f"its weights may be damaged")
        return Prediction(self.bundle.labels, self.bundle.multilabel, logits, attention, missing)

    def predict(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
                mute=None, blank=None) -> Prediction:
        return self._predict(path, self.features(path, start, audio, video, mute, blank))

    def timeline(self, path, stride: float = 5.0, window: Optional[float] = None, top_k: int = 3, progress=None,
                 lock=None, **kw):
        """Every window of a long clip (starts 0, stride, 2 * stride, ...): audio-only, video-only
        and fused answers from one streaming decode (``uavm.timeline``) -> a Timeline;
        ``.features`` serves any window afterwards without decoding."""
        return stream_timeline(self, path, stride, window, top_k, progress=progress, lock=lock, **kw)

    def explain(self, path, start: float = 0.0, target: str = "fused", window: float = 1.0, stride: float = 0.5,
                audio: bool = True, video: bool = True, mute=None, blank=None, progress=None):
        """What mattered, when, in which modality: occlusion, contribution, rollout
        (``uavm.explain``) -> an Explanation (``.to_dict()`` is `uavm explain --json`'s object)."""
        return explain_clip(self, path, start, target, window, stride, audio, video, mute, blank, progress)

    def predict_many(self, paths, start: float = 0.0, audio: bool = True, video: bool = True,
                     mute=None, blank=None, workers: int = 2, batch: int = 0):
        """Yield (path, Prediction or the exception) in order. Files are decoded ahead (each in
        its own isolated process) and their fbanks computed by ``workers`` threads, while this
        one runs the backbones on ``batch`` clips at a time (default 8 on a GPU, 1 on the CPU)."""
        from concurrent.futures import ThreadPoolExecutor

        paths = list(paths)
        start, mute, blank = check_window(start, mute, blank)
        batch = max(batch or (8 if self.device.type == "cuda" else 1), 1)
        ahead = max(workers, 1) * 2 + batch

        def prepared(path):
            return self.prepare(self.decode(path, start, audio, video), start, mute, blank)

        with ThreadPoolExecutor(max(workers, 1)) as ex:
            pending = {i: ex.submit(prepared, paths[i]) for i in range(min(ahead, len(paths)))}
            for b in range(0, len(paths), batch):
                group, done = [], {}
                for i in range(b, min(b + batch, len(paths))):
                    if i + ahead < len(paths):
                        pending[i + ahead] = ex.submit(prepared, paths[i + ahead])
                    try:
                        group.append((i, pending.pop(i).result()))
                    except UAVMError as e:  # this file's problem: reported for it alone
                        done[i] = e
                try:
                    feats = self.features_many([p for _, p in group])
                except UAVMError as e:  # e.g. the bundle lacks an extractor
                    feats = [e] * len(group)
                for (i, _), f in zip(group, feats):
                    try:
                        done[i] = f if isinstance(f, Exception) else self._predict(paths[i], f)
                    except UAVMError as e:
                        done[i] = e
                for i in sorted(done):
                    yield paths[i], done[i]

    def _predict(self, path, f: Features) -> Prediction:
        if f.audio is None and f.video is None:
            raise UAVMError(f"{path}: {nothing_left(f.missing)}")
        return self.predict_features(f.audio, f.video, f.missing)

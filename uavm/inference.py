"""Algorithm 1 inference from a clip or from features: one pass per present
modality, fused = mean of the two logit vectors, either modality may be missing."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import media, ood
from .bundle import Bundle
from .errors import InputError, UAVMError
from .explain import explain_clip
from .features import audio_features_many, fbank, to_model_input, video_features
from .sweep import sweep as degrade_sweep
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
    check_weight,
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

    def decode_sources(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
                       audio_from=None, video_from=None) -> Decoded:
        """The window with its audio from ``audio_from`` and its video from ``video_from``
        (default: ``path``): UAVM's passes are one per modality, so each pass then answers
        exactly as it does on its own source clip."""
        a_src, v_src = audio_from or path, video_from or path
        if str(a_src) == str(v_src):
            return self.decode(a_src, start, audio, video)
        da = self.decode(a_src, start, audio, False)
        dv = self.decode(v_src, start, False, video)
        missing = {m: why for d, m in ((da, "audio"), (dv, "video")) for k, why in d.missing.items() if k == m}
        return Decoded(da.wav, dv.frames, missing)

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
                 mute=None, blank=None, degrade=None, audio_from=None, video_from=None) -> Features:
        """``mute`` / ``blank``: (from, to) seconds of the clip to silence / turn black;
        ``degrade``: a ``uavm.degrade.Degrade``; ``audio_from`` / ``video_from``: another
        clip for that modality (``decode_sources``)."""
        start, mute, blank = check_window(start, mute, blank)
        decoded = self.decode_sources(path, start, audio, video, audio_from, video_from)
        return self.features_of(decoded, start, mute, blank, degrade)

    def features_of(self, decoded: Decoded, start: float = 0.0, mute=None, blank=None, degrade=None) -> Features:
        return self.features_many([self.prepare(decoded, start, mute, blank, degrade)])[0]

    def prepare(self, decoded: Decoded, start: float = 0.0, mute=None, blank=None, degrade=None) -> Prepared:
        """A decoded window degraded (``uavm.degrade``), then with the spans applied (a muted
        span is silent, a blanked one black, however degraded), its fbank computed: the CPU
        work before the backbones, which may run in another thread."""
        if degrade is not None:
            decoded = degrade.apply(decoded, self.pre, start)
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
                         missing: Optional[dict] = None, audio_weight: float = 0.5) -> Prediction:
        """``audio_weight`` w: fused = w * z_audio + (1 - w) * z_video (0.5: Algorithm 1's mean,
        the model's own output); a cross-modal model's fused answer is its joint pass: there
        is no pair of logit vectors to weigh."""
        cfg = self.bundle.model.cfg
        w = check_weight(audio_weight)
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
        fused = out.fused[0]
        if w != 0.5:
            if out.joint is not None:
                raise InputError("the audio weight does not apply to a cross-modal model: its fused answer is one "
                                 "joint pass over both modalities, not the mean of two")
            if out.audio is not None and out.video is not None:
                fused = w * out.audio.logits[0].float() + (1 - w) * out.video.logits[0].float()
        logits = {"fused": fused.float().cpu().numpy()}
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
        asked = {"audio_weight": w} if w != 0.5 else {}
        return Prediction(self.bundle.labels, self.bundle.multilabel, logits, attention, missing, asked,
                          ood.judge(self.bundle.ood, out, w))

    def predict(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
                mute=None, blank=None, degrade=None, audio_from=None, video_from=None,
                audio_weight: float = 0.5) -> Prediction:
        f = self.features(path, start, audio, video, mute, blank, degrade, audio_from, video_from)
        return self._predict(path, f, audio_weight, self._asked(path, degrade, audio_from, video_from))

    @staticmethod
    def _asked(path, degrade, audio_from, video_from) -> dict:
        asked = {}
        if audio_from or video_from:
            asked["sources"] = {"audio": str(audio_from or path), "video": str(video_from or path)}
        if degrade is not None:
            asked["degraded"] = degrade.to_dict()
        return asked

    def timeline(self, path, stride: float = 5.0, window: Optional[float] = None, top_k: int = 3, progress=None,
                 lock=None, **kw):
        """Every window of a long clip (starts 0, stride, 2 * stride, ...): audio-only, video-only
        and fused answers from one streaming decode (``uavm.timeline``) -> a Timeline;
        ``.features`` serves any window afterwards without decoding."""
        return stream_timeline(self, path, stride, window, top_k, progress=progress, lock=lock, **kw)

    def explain(self, path, start: float = 0.0, target: str = "fused", window: float = 1.0, stride: float = 0.5,
                audio: bool = True, video: bool = True, mute=None, blank=None, progress=None, degrade=None,
                audio_from=None, video_from=None, where: bool = False, faithfulness: bool = False, seed: int = 0):
        """What mattered, when, in which modality: occlusion, contribution, rollout
        (``uavm.explain``) -> an Explanation (``.to_dict()`` is `uavm explain --json`'s object)."""
        return explain_clip(self, path, start, target, window, stride, audio, video, mute, blank, progress,
                            degrade, audio_from, video_from, where, faithfulness, seed)

    def sweep(self, path, kind: str, levels, start: float = 0.0, audio: bool = True, video: bool = True,
              mute=None, blank=None, span=None, seed: int = 0, target: Optional[str] = None,
              audio_weight: float = 0.5):
        """One degradation (``uavm.degrade.KINDS``) over ``levels`` on one window, batched
        through the backbones -> a ``uavm.sweep.Sweep`` (the plain window first)."""
        return degrade_sweep(self, path, kind, levels, start, audio, video, mute, blank, span, seed, target,
                             audio_weight)

    def predict_many(self, paths, start: float = 0.0, audio: bool = True, video: bool = True,
                     mute=None, blank=None, workers: int = 2, batch: int = 0, degrade=None, audio_from=None,
                     video_from=None, audio_weight: float = 0.5):
        """Yield (path, Prediction or the exception) in order. Files are decoded ahead (each in
        its own isolated process) and their fbanks computed by ``workers`` threads, while this
        one runs the backbones on ``batch`` clips at a time (default 8 on a GPU, 1 on the CPU)."""
        from concurrent.futures import ThreadPoolExecutor

        paths = list(paths)
        start, mute, blank = check_window(start, mute, blank)
        batch = max(batch or (8 if self.device.type == "cuda" else 1), 1)
        ahead = max(workers, 1) * 2 + batch

        check_weight(audio_weight)

        def prepared(path):
            return self.prepare(self.decode_sources(path, start, audio, video, audio_from, video_from), start, mute,
                                blank, degrade)

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
                        done[i] = f if isinstance(f, Exception) else self._predict(
                            paths[i], f, audio_weight, self._asked(paths[i], degrade, audio_from, video_from))
                    except UAVMError as e:
                        done[i] = e
                for i in sorted(done):
                    yield paths[i], done[i]

    def _predict(self, path, f: Features, audio_weight: float = 0.5, asked: Optional[dict] = None) -> Prediction:
        if f.audio is None and f.video is None:
            raise UAVMError(f"{path}: {nothing_left(f.missing)}")
        p = self.predict_features(f.audio, f.video, f.missing, audio_weight)
        p.asked.update(asked or {})
        return p

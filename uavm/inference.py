"""Algorithm 1 inference from a clip or from features: one pass per present
modality, fused = mean of the two logit vectors, either modality may be missing."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from . import media
from .bundle import Bundle
from .errors import InputError, UAVMError, number
from .features import audio_features_many, fbank, to_model_input, video_features


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UAVMError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(device)


@dataclass
class Features:
    """Raw (T, D) features of one analysis window (before padding and L2 normalisation)."""

    audio: Optional[np.ndarray]
    video: Optional[np.ndarray]
    missing: dict = field(default_factory=dict)  # modality -> why it is absent


@dataclass
class Prediction:
    labels: list
    multilabel: bool
    logits: dict  # "audio" / "video" / "fused" -> (classes,) np.ndarray or None
    attention: dict  # "audio" / "video" (/ "joint") -> (layers, heads, T, T) np.ndarray
    missing: dict = field(default_factory=dict)

    def scores(self, which: str) -> Optional[np.ndarray]:
        z = self.logits.get(which)
        if z is None:
            return None
        z = torch.as_tensor(z)
        return (torch.sigmoid(z) if self.multilabel else torch.softmax(z, -1)).numpy()

    def top(self, which: str, k: int = 5) -> Optional[list]:
        s = self.scores(which)
        if s is None:
            return None
        k = check_top_k(k, len(s))
        order = np.argsort(-s, kind="stable")[:k]
        return [{"label": self.labels[i].name, "index": int(i), "score": float(s[i])} for i in order]

    def to_dict(self, top_k: int = 5, attention: bool = False) -> dict:
        """`uavm predict --json`'s object (and the API's): the attention maps only when asked."""
        d = {}
        for m in ("audio", "video", "fused"):
            z = self.logits.get(m)
            d[m] = None if z is None else {"logits": [float(x) for x in z], "top": self.top(m, top_k)}
        if attention:
            d["attention"] = {m: a.tolist() for m, a in self.attention.items()}
        if self.missing:
            d["missing"] = dict(self.missing)
        return d


# -- what a request may ask: one set of checks for the CLI, the app and its API ------------
SPANS = {"mute": "the muted span", "blank": "the blanked span"}


def check_span(which: str, span):
    """None, or (from, to): finite clip seconds, 0 <= from < to."""
    if span is None:
        return None
    name = SPANS[which]
    if not isinstance(span, (tuple, list)) or len(span) != 2:
        raise InputError(f"{name} must be two times in seconds, FROM and TO")
    a = number(f"{name}'s FROM", span[0], lo=0)
    b = number(f"{name}'s TO", span[1], lo=0)
    if not a < b:
        raise InputError(f"{name} must start before it ends, got FROM {a:g} s and TO {b:g} s")
    return a, b


def check_window(start=0.0, mute=None, blank=None):
    """-> (start, mute, blank) checked: start finite and >= 0, spans as ``check_span``."""
    return number("start", start, lo=0), check_span("mute", mute), check_span("blank", blank)


def nothing_left(missing: dict) -> str:
    """The message when neither modality is left, with the reasons."""
    return "nothing left to predict from (" + "; ".join(f"{m}: {why}" for m, why in missing.items()) + ")"


def check_top_k(k, classes: int) -> int:
    return number("top k", k, lo=1, hi=classes, integer=True)


def window_span(span, start: float, seconds: float):
    """(from, to) in clip seconds -> the same span relative to the window, clipped; None if empty."""
    if not span:
        return None
    a, b = (float(x) for x in span)
    a, b = max(a - start, 0.0), min(b - start, seconds)
    return (a, b) if b > a else None


def span_mask(n: int, rate: float, span) -> np.ndarray:
    """Which of n samples (at ``rate`` per second from the window start) fall in the span."""
    t = np.arange(n) / rate
    return (t >= span[0]) & (t < span[1]) if span else np.zeros(n, bool)


def apply_spans(wav, frames, pre, start: float, mute=None, blank=None):
    """Silence the muted span of the waveform and black out the frames in the blanked span."""
    mute, blank = window_span(mute, start, pre.clip_seconds), window_span(blank, start, pre.clip_seconds)
    if wav is not None and mute:
        wav = np.where(span_mask(len(wav), pre.audio.sample_rate, mute), 0, wav).astype(wav.dtype)
    if frames is not None and blank and len(frames):
        frames = frames.copy()
        frames[span_mask(len(frames), pre.video.fps, blank)] = 0
    return wav, frames


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

    def decode(self, path, start: float = 0.0, audio: bool = True, video: bool = True):
        """-> (waveform or None, frames or None, missing). The file is decoded in a child
        process within ``self.limits`` (see ``uavm.media.Limits``)."""
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
        for m, wanted, has in (("audio", audio, info.has_audio), ("video", video, info.has_video)):
            if not wanted:
                missing[m] = "turned off"
            elif not has:
                missing[m] = f"the file has no {m} stream"
        # a stream that decodes to nothing in this window is missing, not silence or black
        if wav is not None and len(wav) == 0:
            wav, missing["audio"] = None, "the audio stream has no samples in this window"
        if frames is not None and len(frames) == 0:
            frames, missing["video"] = None, "the video stream has no frames in this window"
        return wav, frames, missing

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
        return self.features_many([self.prepare((wav, None, {}))])[0].audio

    def video_features(self, frames: np.ndarray) -> np.ndarray:
        return self.features_many([self.prepare((None, frames, {}))])[0].video

    def features(self, path, start: float = 0.0, audio: bool = True, video: bool = True,
                 mute=None, blank=None) -> Features:
        """``mute`` / ``blank``: (from, to) seconds of the clip to silence / turn black."""
        start, mute, blank = check_window(start, mute, blank)
        return self.features_of(self.decode(path, start, audio, video), start, mute, blank)

    def features_of(self, decoded, start: float = 0.0, mute=None, blank=None) -> Features:
        return self.features_many([self.prepare(decoded, start, mute, blank)])[0]

    def prepare(self, decoded, start: float = 0.0, mute=None, blank=None):
        """Decoded window -> (fbank or None, frames or None, missing) with the spans applied:
        the CPU work before the backbones, which may run in another thread."""
        wav, frames, missing = decoded
        wav, frames = apply_spans(wav, frames, self.pre, start, mute, blank)
        fb = fbank(torch.as_tensor(wav), self.pre.audio) if wav is not None else None
        return fb, frames, missing

    def features_many(self, prepared: list) -> list:
        """Prepared clips -> their Features, with one backbone pass per modality for all
        of them (frames concatenated, fbanks stacked): on a GPU this is what fills it."""
        a = [None] * len(prepared)
        have = [i for i, p in enumerate(prepared) if p[0] is not None]
        if have:
            fbs = [prepared[i][0] for i in have]
            for i, f in zip(have, audio_features_many(self._extractor("audio"), fbs, self.pre, self.device,
                                                      self.precision)):
                a[i] = f
        v = [None] * len(prepared)
        groups: dict = {}  # frames of one size share a pass (the size follows the aspect ratio)
        for i, p in enumerate(prepared):
            if p[1] is not None:
                groups.setdefault(p[1].shape[1:], []).append(i)
        for have in groups.values():
            frames = [prepared[i][1] for i in have]
            f = video_features(self._extractor("video"), np.concatenate(frames) if len(frames) > 1 else frames[0],
                               self.pre, self.device, precision=self.precision)
            for i, part in zip(have, np.split(f, np.cumsum([len(x) for x in frames])[:-1])):
                v[i] = part
        return [Features(a[i], v[i], dict(p[2])) for i, p in enumerate(prepared)]


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
        from .timeline import timeline  # deferred: uavm.timeline builds on this module

        return timeline(self, path, stride, window, top_k, progress=progress, lock=lock, **kw)

    def explain(self, path, start: float = 0.0, target: str = "fused", window: float = 1.0, stride: float = 0.5,
                audio: bool = True, video: bool = True, mute=None, blank=None, progress=None):
        """What mattered, when, in which modality: occlusion, contribution, rollout
        (``uavm.explain``) -> an Explanation (``.to_dict()`` is `uavm explain --json`'s object)."""
        from .explain import explain_clip  # deferred: uavm.explain builds on this module

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

"""What a window is, on its way from a file to an answer, and what a request for one may
ask: the named types every stage passes on (a decoded window, a prepared one, its features,
the prediction) and the one set of checks for the CLI, the app and its API. Below the
pipeline and its analyses (``uavm.inference``, ``uavm.explain``, ``uavm.timeline``), which
all build on it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from .errors import InputError, number


@dataclass
class Decoded:
    """A decoded window: its waveform (float32 at the preprocessing's rate) and RGB frames
    (uint8, at its fps), either None when missing, and why each missing one is."""

    wav: Optional[np.ndarray]
    frames: Optional[np.ndarray]
    missing: dict = field(default_factory=dict)

    def switched(self, audio: bool = True, video: bool = True) -> Decoded:
        """The window with the modalities switched off gone: the one "turned off" rule. What
        the file says (no stream, nothing in this window) stays the reason when it has one."""
        missing, wav, frames = dict(self.missing), self.wav, self.frames
        for m, on in (("audio", audio), ("video", video)):
            if not on:
                missing.setdefault(m, "turned off")
        wav = wav if "audio" not in missing else None
        frames = frames if "video" not in missing and frames is not None and len(frames) else None
        return replace(self, wav=wav, frames=frames, missing=missing)

    def memory_bytes(self) -> int:
        return sum(int(x.nbytes) for x in (self.wav, self.frames) if x is not None) + 256


@dataclass
class Prepared:
    """A window ready for the backbones: the waveform's fbank (spans applied) and frames."""

    fbank: Optional[torch.Tensor]
    frames: Optional[np.ndarray]
    missing: dict = field(default_factory=dict)


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
    # what the request changed, when it did: "sources" (modality -> the clip it came from),
    # "audio_weight" (not 0.5), "degraded" (uavm.degrade.Degrade.to_dict())
    asked: dict = field(default_factory=dict)
    # pass -> {"score", "flag", "threshold"} (uavm.ood), or None: the bundle has no statistics
    ood: dict = field(default_factory=dict)

    def unfamiliar(self, which: str) -> bool:
        o = self.ood.get(which)
        return bool(o and o["flag"])

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
            d[m] = None if z is None else {"logits": [float(x) for x in z], "top": self.top(m, top_k),
                                           "ood": self.ood.get(m)}
        if attention:
            d["attention"] = {m: a.tolist() for m, a in self.attention.items()}
        if self.missing:
            d["missing"] = dict(self.missing)
        d.update(self.asked)
        return d


# -- what a request may ask: one set of checks for the CLI, the app and its API ------------
SPANS = {"mute": "the muted span", "blank": "the blanked span", "degrade": "the degraded span"}


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


def check_weight(w) -> float:
    """The audio pass's weight in the fused answer: 0 (the video pass) .. 1 (the audio pass);
    0.5 is Algorithm 1's mean."""
    return number("audio weight", 0.5 if w is None else w, lo=0, hi=1)


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

"""One degradation swept over levels on one window: at which level does each pass break?

The window is decoded once; the first row is the plain window (no degradation), each
further row one level (``uavm.degrade``). All levels go through the backbones together
(``features_many``: one pass per modality for every level), and a degradation of one
modality leaves the other's features as they are: the row of an audio level reuses the
plain window's video features, and the other way round. A held frame rate needs no pass
at all: the video extractor sees each frame on its own (as the explorer's blanking relies
on), so a held frame's feature is its source frame's.

For each row and pass: the score of the target class (default: the plain window's fused
top-1), the pass's top-1, and whether its input is unfamiliar (``uavm.ood``; None when the
bundle has no statistics). A pass ``breaks`` at the first level, in the order given,
whose top-1 is not its plain top-1, and turns ``unfamiliar`` at the first level whose input
it flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .degrade import KINDS, Degrade, held_index
from .errors import InputError
from .explain import check_target, label_index
from .window import check_window, span_mask, window_span

MAX_LEVELS = 64
PASSES = ("audio", "video", "fused")


@dataclass
class Sweep:
    clip: str
    kind: str  # a uavm.degrade.KINDS key
    unit: str
    target: str  # the class whose scores are followed (a label's display name)
    rows: list  # per level (None first: the plain window): level, per pass score and top-1
    breaks: dict  # pass -> the first level whose top-1 differs from the plain one (None: never)
    # pass -> the first level whose input is unfamiliar (None: never); empty without statistics
    unfamiliar: dict = field(default_factory=dict)
    predictions: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"clip": self.clip, "degradation": self.kind, "unit": self.unit, "target": self.target,
                "levels": self.rows, "breaks": self.breaks, "unfamiliar_from": self.unfamiliar}

    def csv_rows(self) -> list:
        out = []
        for r in self.rows:
            row = {"level": "" if r["level"] is None else r["level"]}
            for m in PASSES:
                p = r[m]
                row[f"{m}_score"] = "" if p is None else round(p["score"], 6)
                row[f"{m}_top1"] = "" if p is None else p["top1"]
                row[f"{m}_unfamiliar"] = "" if p is None or p["unfamiliar"] is None else int(p["unfamiliar"])
            out.append(row)
        return out


def check_levels(kind: str, levels) -> list:
    if kind not in KINDS:
        raise InputError(f"unknown degradation {kind!r} (known: {', '.join(KINDS)})")
    levels = list(levels or [])
    if not 1 <= len(levels) <= MAX_LEVELS:
        raise InputError(f"a sweep takes 1 to {MAX_LEVELS} levels, got {len(levels)}")
    return [Degrade.checked(**{kind: v}).levels()[kind] for v in levels]


def check_sweep(pipe, kind: str, levels, start: float = 0.0, mute=None, blank=None, span=None, seed: int = 0,
                target: Optional[str] = None) -> tuple:
    """-> (start, mute, blank, levels, the first level's Degrade, the target's index or None)."""
    start, mute, blank = check_window(start, mute, blank)
    levels = check_levels(kind, levels)
    base = Degrade.checked(span=span, seed=seed, **{kind: levels[0]})
    want = label_index(check_target(target), pipe.bundle.labels) if target else None
    return start, mute, blank, levels, base, want


def sweep(pipe, path, kind: str, levels, start: float = 0.0, audio: bool = True, video: bool = True,
          mute=None, blank=None, span=None, seed: int = 0, target: Optional[str] = None,
          audio_weight: float = 0.5, decoded=None, lock=None) -> Sweep:
    """``pipe``: a ``uavm.inference.Pipeline``. Every value is checked before the decode.
    ``decoded``: the window, decoded already (``uavm.window.Decoded``, every stream); ``lock``:
    held around the network passes only (the explorer's model lock)."""
    from contextlib import nullcontext

    start, mute, blank, levels, base, want = check_sweep(pipe, kind, levels, start, mute, blank, span, seed, target)
    decoded = pipe.decode(path, start, audio, video) if decoded is None else decoded.switched(audio, video)
    plain = pipe.prepare(decoded, start, mute, blank)
    audio_kind = kind.startswith("audio")
    prepared = [plain]
    for v in levels:
        p = pipe.prepare(decoded, start, mute, blank, base.with_level(kind, v))
        # the modality not degraded is the plain one's: its features are not computed again
        prepared.append(replace(p, frames=None) if audio_kind else replace(p, fbank=None))
    reuse_frames = kind == "video_fps" and blank is None  # (a blanked span is black after holding)
    if reuse_frames:
        prepared = [prepared[0]] + [replace(p, frames=None) for p in prepared[1:]]
    with lock or nullcontext():
        feats = pipe.features_many(prepared)
    for v, f in zip(levels, feats[1:]):
        if audio_kind:
            f.video = feats[0].video
        else:
            f.audio = feats[0].audio
        if reuse_frames and feats[0].video is not None:
            n = len(feats[0].video)
            w = window_span(base.span, start, pipe.pre.clip_seconds) if base.span else (0.0, np.inf)
            idx = np.arange(n) if w is None else np.where(span_mask(n, pipe.pre.video.fps, w),
                                                          held_index(n, pipe.pre.video.fps, v), np.arange(n))
            f.video = feats[0].video[idx]
    with lock or nullcontext():
        preds = [pipe._predict(path, f, audio_weight) for f in feats]
    ref = preds[0]
    if want is None:
        want = int(ref.scores("fused").argmax())
    rows = []
    for level, p in zip([None, *levels], preds):
        row = {"level": level}
        for m in PASSES:
            s = p.scores(m)
            o = p.ood.get(m)
            row[m] = None if s is None else {"score": float(s[want]), "top1": p.labels[int(s.argmax())].name,
                                             "unfamiliar": None if o is None else o["flag"]}
        rows.append(row)
    breaks = {}
    for m in PASSES:
        if rows[0][m] is None:
            continue
        breaks[m] = next((r["level"] for r in rows[1:] if r[m]["top1"] != rows[0][m]["top1"]), None)
    unfamiliar = {m: next((r["level"] for r in rows[1:] if r[m]["unfamiliar"]), None)
                  for m in breaks if rows[0][m]["unfamiliar"] is not None}
    return Sweep(str(path), kind, KINDS[kind][0], pipe.bundle.labels[want].name, rows, breaks, unfamiliar, preds)

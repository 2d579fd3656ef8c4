"""The conditions of a robustness run over a set, and their features: computed once per
level, kept on disk, shared by every model with the same extractors.

A condition is what is done to every clip of the set, one curve per kind, each starting
from the plain set (nothing done, x = 0):

* ``audio_missing`` / ``video_missing``: that share of the clips (0..1) has the modality
  missing; which clips is seeded, and the clips of a smaller share are among those of a
  larger one. No features: the passes answer without that input (``uavm.analysis.robustness``).
* ``audio_mute`` / ``video_blank``: a span of that many seconds is silent / black, placed
  in each clip at a seeded position (the same for every length of one clip).
* ``audio_snr``, ``video_blur``, ``video_size``, ``video_fps``: the degradations of
  ``uavm.degrade`` at each level, over the whole window.

x, the position on the curve (0..1): the share for a missing modality, the span over the
clip's length, and for a degradation its place in the list of levels (the plain set 0, the
last level 1), since dB, sigma and pixels have no common scale.

Each clip is decoded once for all its conditions, and only the degraded modality goes
through a backbone again (the plain set's other modality is reused); a held frame rate and a
blanked span need no pass at all, since the video extractor sees each frame on its own (a
held frame's feature is its source frame's, a black frame's is computed once). The plain
features are computed alone, exactly as ``uavm features`` computes them, and every feature
is rounded to the bundle's feature dtype as it stores them. A clip's features are one
``.npz`` beside the others (written atomically, so a rerun resumes where it stopped); under
torchrun each rank computes its shard of the clips (``uavm.train.distributed``).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..degrade import Degrade, held_index
from ..errors import InputError, UAVMError, number, one_line
from ..files import atomic, progress
from ..train import distributed
from ..train.data import DataError, read_datafile, resolve, stem_collisions
from ..window import Features, span_mask
from .levels import DEFAULTS, DEGRADE, KINDS, MISSING, SPANS, UNITS  # noqa: F401 (the names' home)

MAX_LEVELS = 32


@dataclass(frozen=True)
class Condition:
    kind: str  # "plain" or one of KINDS
    level: Optional[float]  # None for the plain set
    x: float  # position on its curve, 0..1

    @property
    def modality(self) -> Optional[str]:
        return None if self.kind == "plain" else self.kind.split("_")[0]

    @property
    def stored(self) -> bool:
        """Whether this condition has features of its own (a missing modality has none)."""
        return self.kind not in MISSING

    def key(self, seed: int) -> str:
        """Its features' name in a clip's file: what it did, and the seed where one is drawn."""
        if self.kind == "plain":
            return "plain"
        drawn = self.kind in SPANS or self.kind == "audio_snr"
        return f"{self.kind}={self.level:g}" + (f",seed={seed}" if drawn else "")


def plan(levels: dict, clip_seconds: float) -> dict:
    """kind -> its conditions, the plain set first. ``levels``: kind -> levels (a missing
    modality's as shares 0..1, a span's in seconds), each checked; empty -> not run."""
    out = {}
    for kind, vals in levels.items():
        if kind not in KINDS:
            raise InputError(f"unknown condition {kind!r} (known: {', '.join(KINDS)})")
        vals = [float(v) for v in (vals or [])]
        if not vals:
            continue
        if len(vals) > MAX_LEVELS:
            raise InputError(f"{kind}: at most {MAX_LEVELS} levels, got {len(vals)}")
        if kind in MISSING:
            vals = [number(f"{kind} share", v, lo=0.0, hi=1.0) for v in vals]
        elif kind in SPANS:
            vals = [number(f"{kind} seconds", v, lo=0.0, hi=clip_seconds) for v in vals]
        else:
            vals = [Degrade.checked(**{kind: v}).levels()[kind] for v in vals]
        vals = [v for v in dict.fromkeys(vals) if not (kind in MISSING + SPANS and v == 0)]  # 0 is the plain set
        if not vals:
            continue
        if kind in MISSING + SPANS:
            if vals != sorted(vals):
                raise InputError(f"{kind}: give the levels in increasing order")
            top = 1.0 if kind in MISSING else clip_seconds
            xs = [v / top for v in vals]
        else:
            xs = [(i + 1) / len(vals) for i in range(len(vals))]
        out[kind] = [Condition("plain", None, 0.0)] + [Condition(kind, v, x) for v, x in zip(vals, xs)]
    if not out:
        raise InputError("nothing to run: every condition has no levels")
    return out


def missing_rows(n: int, share: float, seed: int, modality: str) -> np.ndarray:
    """The clips (a boolean mask of n) with ``modality`` missing at ``share``: the first
    round(share * n) of one seeded order, so a smaller share's clips are among a larger's."""
    order = np.random.default_rng([seed, 0 if modality == "audio" else 1]).permutation(n)
    mask = np.zeros(n, bool)
    mask[order[:int(round(share * n))]] = True
    return mask


def span_of(seed: int, clip: int, length: float, seconds: float) -> tuple:
    """The muted or blanked span of one clip: ``length`` seconds at a seeded place."""
    u = float(np.random.default_rng([seed, clip, 7]).uniform())
    start = u * (seconds - length)
    return (start, start + length)


def extractor_key(fx) -> str:
    """What the features depend on: the extractors' specs and weights and the preprocessing
    (not seq_len: it only cuts the model's input). Models with the same key share features."""
    import torch

    h = hashlib.sha256()
    pre = fx.pre.to_dict()
    pre.pop("seq_len", None)
    h.update(json.dumps(pre, sort_keys=True).encode())
    for m in sorted(fx.extractors):
        e = fx.extractors[m]
        h.update(m.encode() + json.dumps(getattr(e, "spec", {}), sort_keys=True, default=str).encode())
        for name, t in sorted(e.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Store:
    """A set's features under every condition: ``folder/<stem>.npz`` per clip."""

    def __init__(self, folder, data, seed: int = 0):
        self.folder = Path(folder)
        self.entries, self.root = read_datafile(data)
        self.clips = [d.get("clip") or d.get("video") or d.get("wav") for d in self.entries]
        clashes = stem_collisions([c for c in self.clips if c])
        if clashes:
            raise DataError(f"{data}: {len(clashes)} pair(s) of clips share a file name stem: {clashes[0]}; "
                            "rename one of each pair")
        self.seed = seed
        # a feature data file: its features are the plain set's (as `uavm evaluate` reads them)
        self.files = all("afeat" in d and "vfeat" in d for d in self.entries)
        self._black: dict = {}

    def path(self, i: int) -> Path:
        name = self.clips[i] or self.entries[i].get("afeat") or f"clip{i}"
        return self.folder / f"{Path(str(name)).stem.split('.')[0]}.npz"

    def keys_of(self, i: int) -> set:
        try:
            with zipfile.ZipFile(self.path(i)) as z:
                return {n[:-4] for n in z.namelist()}
        except (OSError, zipfile.BadZipFile):
            return set()

    def load(self, i: int, key: str, modality: str) -> np.ndarray:
        if key == "plain" and self.files:
            f = resolve(self.root, self.entries[i]["afeat" if modality == "audio" else "vfeat"])
            try:
                return np.load(f, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DataError(f"{f}: cannot read features ({type(e).__name__})") from None
        with np.load(self.path(i), allow_pickle=False) as z:
            return z[f"{key}.{modality}"]

    def load_many(self, rows: list, wanted: list) -> dict:
        """(key, modality) -> [its array for each clip of ``rows``]: each clip's file opened once."""
        out = {k: [] for k in wanted}
        stored = [k for k in wanted if not (k[0] == "plain" and self.files)]
        for k in wanted:
            if k not in stored:
                out[k] = [self.load(i, *k) for i in rows]
        for i in rows if stored else []:
            with np.load(self.path(i), allow_pickle=False) as z:
                for k in stored:
                    out[k].append(z[f"{k[0]}.{k[1]}"])
        return out

    def compute(self, fx, conditions: list, show_progress: Optional[bool] = None, log=print) -> dict:
        """Every stored condition's features of this rank's clips, resumed from what is on
        disk; -> {clip index: why it failed} over all ranks (a failed clip is left out)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conds = [c for c in conditions if c.stored and not (c.kind == "plain" and self.files)]
        want = {f"{c.key(self.seed)}.{m}" for c in conds for m in
                (("audio", "video") if c.kind == "plain" else (c.modality,))}
        if not want:  # a feature data file and no degradation: nothing to compute
            return {}
        mine = [i for i in distributed.shard(len(self.entries)) if not want <= self.keys_of(i)]
        failed = {}
        show = progress(len(mine), f"features under {len(conds)} conditions", show_progress, " clips")
        dtype = np.float16 if fx.pre.feature_dtype == "float16" else np.float32

        def decoded(i):
            if not self.clips[i]:
                raise DataError(f"entry {i} names no clip ('clip', 'video' or 'wav'): degraded features need the media")
            return fx.decode(resolve(self.root, self.clips[i]), 0.0)

        with ThreadPoolExecutor(2) as ex:  # the next clips decode (in their child processes) meanwhile
            ahead = {i: ex.submit(decoded, i) for i in mine[:3]}
            for n, i in enumerate(mine):
                if n + 3 < len(mine):
                    ahead[mine[n + 3]] = ex.submit(decoded, mine[n + 3])
                try:
                    feats = self._clip(fx, i, ahead.pop(i).result(), conds)
                    with atomic(self.path(i)) as tmp, open(tmp, "wb") as f:
                        np.savez(f, **{k: v.astype(dtype) for k, v in feats.items()})
                except UAVMError as e:
                    failed[i] = f"{self.clips[i]}: {one_line(e)}"
                show(n + 1)
        return {i: m for part in distributed.all_gather(failed) for i, m in part.items()}

    def _clip(self, fx, i: int, d, conds: list) -> dict:
        pre = fx.pre
        if self.files:  # the plain set is the feature files'; a stream stored empty is missing
            a0, v0 = self.load(i, "plain", "audio"), self.load(i, "plain", "video")
            plain = Features(a0 if len(a0) else None, v0 if len(v0) else None, {})
            out = {}
        else:
            plain = fx.features_many([fx.prepare(d)])[0]  # alone, as `uavm features` computes it
            a0 = plain.audio if plain.audio is not None else np.zeros((0, fx.extractors["audio"].dim), np.float32)
            v0 = plain.video if plain.video is not None else np.zeros((0, fx.extractors["video"].dim), np.float32)
            out = {"plain.audio": a0, "plain.video": v0}
        passes, keys = [], []
        for c in conds:
            if c.kind == "plain":
                continue
            k = f"{c.key(self.seed)}.{c.modality}"
            have = plain.audio if c.modality == "audio" else plain.video
            if have is None:  # nothing to degrade: the stream is missing under every condition
                out[k] = a0 if c.modality == "audio" else v0
            elif c.kind == "video_fps":
                out[k] = v0[held_index(len(v0), pre.video.fps, c.level)]
            elif c.kind == "video_blank":
                span = span_of(self.seed, i, c.level, pre.clip_seconds)
                out[k] = np.where(span_mask(len(v0), pre.video.fps, span)[:, None], self._black_frame(fx, d.frames), v0)
            else:
                mute = span_of(self.seed, i, c.level, pre.clip_seconds) if c.kind == "audio_mute" else None
                deg = None if mute else Degrade.checked(seed=self.seed, **{c.kind: c.level})
                p = fx.prepare(d, 0.0, mute=mute, degrade=deg)
                # only the degraded modality goes through its backbone again
                passes.append(type(p)(p.fbank if c.modality == "audio" else None,
                                      p.frames if c.modality == "video" else None, p.missing))
                keys.append(k)
        for k, f in zip(keys, fx.features_many(passes) if passes else []):
            out[k] = f.audio if k.endswith(".audio") else f.video
        return out

    def _black_frame(self, fx, frames: np.ndarray) -> np.ndarray:
        shape = frames.shape[1:]
        if shape not in self._black:
            self._black[shape] = fx.video_features(np.zeros((1, *shape), np.uint8))[0]
        return self._black[shape]

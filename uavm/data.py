"""Labelled data: the authors' feature data files, clip lists, and the metrics.

A feature data file is JSON ``{"data": [{"labels": "vgg_12,vgg_3", "afeat": "x.npy",
"vfeat": "y.npy"}, ...]}`` (labels are comma-separated mids; relative paths are taken
from the JSON file's folder). A clip list is the same with ``"video"`` (or ``"wav"``)
naming a media file instead of features.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import distributed
from .features import to_model_input


class DataError(ValueError):
    pass


def read_datafile(path) -> tuple[list, Path]:
    """-> (entries, folder their relative paths start from)."""
    p = Path(path)
    if p.is_dir():
        for name in ("features.json", "clips.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise DataError(f"{path}: a folder needs features.json or clips.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise DataError(f"{p}: not a data file (JSON with a 'data' list)") from None
    if not isinstance(data, list) or not data:
        raise DataError(f"{p}: the 'data' list is empty")
    for i, d in enumerate(data):
        if not isinstance(d, dict) or "labels" not in d:
            raise DataError(f"{p}: entry {i} has no 'labels'")
    return data, p.parent


def resolve(root: Path, name: str) -> Path:
    q = Path(name)
    return q if q.is_absolute() else root / q


def targets(entries: list, labels: list) -> np.ndarray:
    """(N, classes) multi-hot matrix from the entries' mids."""
    index = {l.mid: l.index for l in labels}
    y = np.zeros((len(entries), len(labels)), np.float32)
    for i, d in enumerate(entries):
        for mid in str(d["labels"]).split(","):
            mid = mid.strip()
            if mid not in index:
                raise DataError(f"entry {i}: label {mid!r} is not in the label list")
            y[i, index[mid]] = 1
    return y


class FeatureSet:
    """Model-ready (seq_len, D) inputs for every entry of a feature data file.

    Small sets are held in memory once (padded, cut, L2-normalised); large ones are
    read per batch."""

    def __init__(self, path, labels: list, seq_len: int = 30, in_memory: Optional[bool] = None):
        self.entries, self.root = read_datafile(path)
        for i, d in enumerate(self.entries):
            if "afeat" not in d or "vfeat" not in d:
                raise DataError(f"{path}: entry {i} needs both 'afeat' and 'vfeat' (a feature data file)")
        self.y = targets(self.entries, labels)
        self.seq_len = seq_len
        self._cache = {}
        if in_memory is None:
            in_memory = len(self.entries) <= 20000
        if in_memory:
            for m in ("audio", "video"):
                self._cache[m] = torch.stack([self._load(i, m) for i in range(len(self))])

    def __len__(self):
        return len(self.entries)

    def _load(self, i: int, m: str) -> torch.Tensor:
        f = resolve(self.root, self.entries[i]["afeat" if m == "audio" else "vfeat"])
        try:
            x = np.load(f, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{f}: cannot read features ({type(e).__name__})") from None
        return to_model_input(x, self.seq_len)[0]

    def get(self, idx, m: str) -> torch.Tensor:
        if m in self._cache:
            return self._cache[m][torch.as_tensor(idx)]
        return torch.stack([self._load(int(i), m) for i in idx])

    def dim(self, m: str) -> int:
        return int(self.get([0], m).shape[-1])


# -- metrics ------------------------------------------------------------------------------
def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve, as sklearn's average_precision_score."""
    order = np.argsort(-scores, kind="stable")
    t = truth[order] > 0
    if not t.any():
        return float("nan")
    hits = np.cumsum(t)
    precision = hits / np.arange(1, len(t) + 1)
    # ties share a threshold: evaluate precision at the last index of each distinct score
    s = scores[order]
    last = np.r_[s[1:] != s[:-1], True]
    recall_step = np.diff(np.r_[0, hits[last]]) / t.sum()
    return float(np.sum(recall_step * precision[last]))


def metrics(scores: np.ndarray, y: np.ndarray) -> dict:
    """Top-1 accuracy (argmax against the first positive label, as the authors') and
    mAP over the classes that have positives."""
    acc = float(np.mean(np.argmax(scores, 1) == np.argmax(y, 1)))
    aps = [average_precision(scores[:, c], y[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    return {"acc": acc, "mAP": float(np.mean(aps)) if aps else float("nan")}


def write_json_atomic(path, obj) -> None:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, p)


def feature_names(clip, out: Path) -> dict:
    """Where a clip's features go: ``out/<stem>.audio.npy`` and ``out/<stem>.video.npy``."""
    stem = Path(clip).stem
    return {m: out / f"{stem}.{m}.npy" for m in ("audio", "video")}


def stem_collisions(clips) -> list:
    """Pairs of clips whose features would land in the same files (the same stem in two
    folders, or x.mp4 and x.wav); case-folded, for case-insensitive file systems."""
    seen, clashes = {}, []
    for c in map(str, clips):
        key = Path(c).stem.casefold()
        if key in seen:
            clashes.append(f"{seen[key]} and {c}")
        else:
            seen[key] = c
    return clashes


def write_clip_features(fx, clip: Path, out: Path, start: float = 0.0) -> bool:
    """Extract one clip into ``feature_names(clip, out)``; -> False if both files were
    already there. Each file is written under a temporary name and renamed, so a file that
    exists is complete and a killed run never leaves half a feature file behind."""
    names = feature_names(clip, out)
    if all(p.exists() for p in names.values()):
        return False
    f = fx.features(clip, start)
    dtype = np.float16 if fx.pre.feature_dtype == "float16" else np.float32
    for m, x in (("audio", f.audio), ("video", f.video)):
        if x is None:  # a missing stream: zero features, as a padded clip
            x = np.zeros((0, fx.extractors[m].dim), np.float32)
        tmp = out / f".{names[m].stem}.tmp.npy"
        np.save(tmp, x.astype(dtype))
        os.replace(tmp, names[m])
    return True


def feature_entry(d: dict, clip: str, root: Path, out: Path) -> dict:
    """A clip list entry -> its feature data file entry (labels and any other keys kept)."""
    names = feature_names(clip, out)
    return {**{k: v for k, v in d.items() if k not in ("video", "wav")},
            "afeat": names["audio"].name, "vfeat": names["video"].name, "clip": str(resolve(root, clip))}


def extract_features(fx, src, out, progress=None, log=print, start: float = 0.0) -> Path:
    """Clip list -> ``out/<stem>.audio.npy``, ``out/<stem>.video.npy`` and ``out/features.json``
    (a feature data file the trainer reads). Finished files are kept, so a rerun resumes;
    a clip that fails is reported and left out, never silently.

    Under torchrun each rank extracts its shard (entry i on rank i % world), and rank 0
    alone writes features.json, in list order, once every rank is done: the same file one
    process writes."""
    entries, root = read_datafile(src)
    clips = [d.get("video") or d.get("wav") for d in entries]
    if None in clips:
        raise DataError(f"{src}: entries need 'video' or 'wav' (a clip list)")
    clashes = stem_collisions(clips)
    if clashes:
        raise DataError(f"{src}: {len(clashes)} pair(s) of clips share a file name stem, so their features "
                        f"would overwrite each other in {out}: {clashes[0]}; rename one of each pair")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mine = distributed.shard(len(entries))
    failed, fresh = {}, 0
    for i in (progress(mine) if progress else mine):
        try:
            fresh += write_clip_features(fx, resolve(root, clips[i]), out, start)
        except (ValueError, RuntimeError, OSError) as e:
            failed[i] = f"{clips[i]}: {(str(e).splitlines() or [type(e).__name__])[0]}"
    if distributed.world() > 1:  # each rank's share, so a user sees the work spread and resumed
        log(f"rank {distributed.rank()} of {distributed.world()}: {fresh} clips extracted, "
            f"{len(mine) - fresh - len(failed)} already done, {len(failed)} failed")
    failed = {i: msg for part in distributed.all_gather(failed) for i, msg in part.items()}
    path = out / "features.json"
    if distributed.is_main():
        data = [feature_entry(d, clips[i], root, out) for i, d in enumerate(entries) if i not in failed]
        write_json_atomic(path, {"data": data, "failed": [failed[i] for i in sorted(failed)]})
        for i in sorted(failed):
            log(f"failed: {failed[i]}")
    distributed.barrier()  # no rank returns before features.json is written
    return path


def feature_data(fx, src, workdir, log=print):
    """A feature data file as given; a clip list (entries with 'video' or 'wav') is first
    extracted with ``fx`` (a FeatureExtractor) into ``workdir``, resumably."""
    entries, _ = read_datafile(src)
    if "afeat" in entries[0]:
        return src
    return extract_features(fx, src, workdir, log=log)

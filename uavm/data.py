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


def extract_features(fx, src, out, progress=None, log=print) -> Path:
    """Clip list -> ``out/<stem>.audio.npy``, ``out/<stem>.video.npy`` and ``out/features.json``
    (a feature data file the trainer reads). Finished files are kept, so a rerun resumes;
    a clip that fails is reported and left out, never silently."""
    entries, root = read_datafile(src)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, failed = [], []
    dtype = np.float16 if fx.pre.feature_dtype == "float16" else np.float32
    for d in (progress(entries) if progress else entries):
        media_path = d.get("video") or d.get("wav")
        if media_path is None:
            raise DataError(f"{src}: entries need 'video' or 'wav' (a clip list)")
        stem = Path(media_path).stem
        names = {m: out / f"{stem}.{m}.npy" for m in ("audio", "video")}
        if not all(p.exists() for p in names.values()):
            try:
                f = fx.features(resolve(root, media_path))
            except (ValueError, RuntimeError, OSError) as e:
                failed.append(f"{media_path}: {str(e).splitlines()[0]}")
                continue
            for m, x in (("audio", f.audio), ("video", f.video)):
                if x is None:  # a missing stream: zero features, as a padded clip
                    x = np.zeros((0, fx.extractors[m].dim), np.float32)
                tmp = out / f".{stem}.{m}.tmp.npy"
                np.save(tmp, x.astype(dtype))
                os.replace(tmp, names[m])
        data.append({**{k: v for k, v in d.items() if k not in ("video", "wav")},
                     "afeat": names["audio"].name, "vfeat": names["video"].name, "clip": str(resolve(root, media_path))})
    write_json_atomic(out / "features.json", {"data": data, "failed": failed})
    for f in failed:
        log(f"failed: {f}")
    return out / "features.json"

"""Labelled data: the authors' feature data files, clip lists, and the metrics.

A feature data file is JSON ``{"data": [{"labels": "vgg_12,vgg_3", "afeat": "x.npy",
"vfeat": "y.npy"}, ...]}`` (labels are comma-separated mids; relative paths are taken
from the JSON file's folder). A clip list is the same with ``"video"`` (or ``"wav"``)
naming a media file instead of features.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import UAVMError, one_line
from ..features import to_model_input
from ..files import atomic, write_json
from . import distributed


class DataError(UAVMError):
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

    @property
    def in_memory(self) -> bool:
        return bool(self._cache)

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


def write_clip_features(fx, clip: Path, out: Path, start: float = 0.0, redo: bool = False):
    """Extract one clip into ``feature_names(clip, out)``; -> its Features, or None if both
    files were already there (and not ``redo``). A missing stream is written as a (0, D)
    array: the model input of a clip without it (all padding), and read back as missing
    by ``uavm predict``. Each file is written atomically: a file that exists is complete."""
    names = feature_names(clip, out)
    if not redo and all(p.exists() for p in names.values()):
        return None
    f = fx.features(clip, start)
    dtype = np.float16 if fx.pre.feature_dtype == "float16" else np.float32
    for m, x in (("audio", f.audio), ("video", f.video)):
        if x is None:
            x = np.zeros((0, fx.extractors[m].dim), np.float32)
        with atomic(names[m]) as tmp:
            np.save(tmp, x.astype(dtype))
    return f


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
            fresh += write_clip_features(fx, resolve(root, clips[i]), out, start) is not None
        except UAVMError as e:
            failed[i] = f"{clips[i]}: {one_line(e)}"
    if distributed.world() > 1:  # each rank's share, so a user sees the work spread and resumed
        log(f"rank {distributed.rank()} of {distributed.world()}: {fresh} clips extracted, "
            f"{len(mine) - fresh - len(failed)} already done, {len(failed)} failed")
    failed = {i: msg for part in distributed.all_gather(failed) for i, msg in part.items()}
    path = out / "features.json"
    if distributed.is_main():
        data = [feature_entry(d, clips[i], root, out) for i, d in enumerate(entries) if i not in failed]
        write_json(path, {"data": data, "failed": [failed[i] for i in sorted(failed)]})
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

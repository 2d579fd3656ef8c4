"""The familiarity statistics of a model (``uavm.ood``) from feature sets: its training
clips' embeddings for the class means and covariance, held-out clips' for the thresholds."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ood import FALSE_ALARM, Familiarity, embed_inputs, fit
from .data import FeatureSet

MAX_CLIPS = 50_000  # a seeded sample of a larger set: the statistics settle long before


def _sample(data: FeatureSet, limit: int, seed: int) -> np.ndarray:
    idx = np.arange(len(data))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    return idx


def fit_familiarity(model, train: FeatureSet, held: FeatureSet, false_alarm: float = FALSE_ALARM, device="cpu",
             source: str = "", limit: int = MAX_CLIPS, seed: int = 0, train_rows: Optional[np.ndarray] = None,
             held_rows: Optional[np.ndarray] = None) -> Familiarity:
    """``train_rows`` / ``held_rows``: the entries to use (default: all, or a seeded sample
    of ``limit``); the two may be one set split in two."""
    model = model.to(device)
    t_idx = _sample(train, limit, seed) if train_rows is None else np.asarray(train_rows)
    h_idx = _sample(held, limit, seed + 1) if held_rows is None else np.asarray(held_rows)
    tr = embed_inputs(model, train.get(t_idx, "audio"), train.get(t_idx, "video"))
    he = embed_inputs(model, held.get(h_idx, "audio"), held.get(h_idx, "video"))
    y = train.y[t_idx]
    return fit({m: (e, y[rows]) for m, (rows, e) in tr.items()}, {m: e for m, (_, e) in he.items()}, false_alarm,
               fitted={"method": "class means and covariance of the training clips' embeddings; thresholds at "
                                 f"{100 * (1 - false_alarm):g}% of held-out clips",
                       "clips": int(len(t_idx)), "held_out": int(len(h_idx)), "source": source})


def split_rows(n: int, held_share: float = 0.2, seed: int = 0) -> tuple:
    """One set split in two, seeded: (fit rows, held-out rows)."""
    idx = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * held_share)))
    if n < 2:
        raise ValueError("a set of one clip cannot be split")
    return np.sort(idx[k:]), np.sort(idx[:k])

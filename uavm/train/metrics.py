"""The paper's metrics: top-1 accuracy and mean average precision."""
from __future__ import annotations

import numpy as np


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

"""Missing-modality robustness over a set: each pass's accuracy, mAP and calibration under
every condition of ``uavm.analysis.conditions``, and each curve's summary.

* **No answer.** A pass whose input is missing gives none: the clip counts as wrong for
  accuracy, its scores rank below every answered clip's for mAP (all 0, tied), and it is left
  out of the calibration. The fused answer without one modality is the other modality's pass
  (Algorithm 1: the mean of the logits that are there), so at 100 % audio missing the fused
  figures are the video pass's. A cross-modal model has no pass of its own per modality: its
  fused answer without one is its joint pass with that input all padding (the model input of
  a clip without the stream, as ``uavm evaluate`` feeds it).
* **Accuracy and mAP** as ``uavm evaluate`` computes them (``uavm.train``): top-1 against the
  first label, sigmoid scores for mAP; on the plain set they are ``uavm evaluate``'s figures.
* **Expected calibration error** (Guo et al., ICML 2017): 15 equal-width bins of the top-1
  probability (softmax for a single-label model, sigmoid for a multi-label one), the
  clip-weighted mean of |accuracy - confidence| per bin; a clip is right when its top-1 is
  among its labels.
* **Relative robustness** (after MultiBench, Liang et al., NeurIPS 2021 Datasets and
  Benchmarks): the area under the metric's curve over x in 0..1 (trapezoid), divided by the
  metric on the plain set, so a flat curve scores 1 and a curve that halves at once 0.5.
  ``area`` is the area itself over the span of x: MultiBench's relative robustness before
  its min-max normalisation across the methods compared.
* **Effective robustness** (MultiBench): the area of f - beta_f, beta_f = the baseline's curve
  moved to f's starting point (b - b(0) + f(0)); the baseline is the modality-independent
  model (late fusion, the paper's Table I baseline) when it is among the models compared.
  MultiBench sums the difference over equally spaced levels; here it is the trapezoid area
  over x, like relative robustness, so curves with other level spacings compare.
"""
from __future__ import annotations

import numpy as np
import torch

from ..features import to_model_input
from ..train.metrics import metrics
from ..train.trainer import predict_set
from .conditions import MISSING, Condition, Store, missing_rows

PASSES = ("audio", "video", "fused")
BINS = 15


class Inputs:
    """Model inputs in the shape ``predict_set`` reads (``len``, ``get(idx, modality)``)."""

    def __init__(self, audio: torch.Tensor, video: torch.Tensor):
        self.x = {"audio": audio, "video": video}

    def __len__(self):
        return len(self.x["audio"])

    def get(self, idx, m: str) -> torch.Tensor:
        return self.x[m][torch.as_tensor(idx)]


class Loader:
    """Model inputs of a Store's clips, read once for every model that takes them. A clip's
    file is opened once for as many of the conditions (in the order they are asked for) as fit
    in ``budget`` bytes, not once per condition: opening it is most of the cost."""

    def __init__(self, store: Store, rows: list, order: list, budget: float = 2e9):
        self.store, self.rows, self.budget = store, rows, budget
        self.order = list(dict.fromkeys(order))  # (key, modality) pairs, plain first
        self._raw: dict = {}  # (key, modality) -> the clips' stored arrays
        self._kept: dict = {}  # (key, modality, seq_len) -> model inputs

    def _read(self, first: tuple) -> None:
        at = self.order.index(first) if first in self.order else 0
        want = [first] + [k for k in self.order[at:] if k != first]
        size = {k: self.store.load(self.rows[0], *k).nbytes * len(self.rows) for k in want}
        group, total = [], 0
        for k in want:  # at least the one asked for
            if group and total + size[k] > self.budget:
                break
            group.append(k)
            total += size[k]
        self._raw = {k: v for k, v in self._raw.items() if k[0] == "plain"}
        got = self.store.load_many(self.rows, group)
        self._raw.update(got)

    def __call__(self, key: str, modality: str, seq_len: int) -> torch.Tensor:
        k = (key, modality, seq_len)
        if k not in self._kept:
            if (key, modality) not in self._raw:
                self._read((key, modality))
            if key != "plain":
                self._kept = {q: v for q, v in self._kept.items() if q[0] == "plain"}
            self._kept[k] = torch.cat([to_model_input(x, seq_len) for x in self._raw[(key, modality)]])
        return self._kept[k]


@torch.no_grad()
def one_pass(model, x: torch.Tensor, m: str, device, batch_size: int = 256) -> np.ndarray:
    """One modality's own logits (unified or independent model), batched as ``predict_set``
    batches them, so that they are its figures exactly."""
    model.eval()
    out = [model(**{m: x[i:i + batch_size].to(device)}).fused for i in range(0, len(x), batch_size)]
    return torch.cat(out).float().cpu().numpy()


def ece(probs: np.ndarray, right: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of top-1 confidences ``probs`` (N,) against ``right`` (N,)."""
    if not len(probs):
        return float("nan")
    which = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(right[m].mean() - probs[m].mean())
    return float(total / len(probs))


def pass_metrics(logits: np.ndarray, answered: np.ndarray, y: np.ndarray, multilabel: bool) -> dict:
    """accuracy, mAP, ECE and the share answered, for one pass under one condition."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    s = torch.sigmoid(z).numpy()
    s[~answered] = 0.0  # below every answered clip, for every class
    m = metrics(s, y)
    acc = float(np.mean(answered & (np.argmax(s, 1) == np.argmax(y, 1))))
    p = (torch.sigmoid(z) if multilabel else torch.softmax(z, -1)).numpy()[answered]
    top = p.argmax(1)
    right = y[answered][np.arange(len(top)), top] > 0
    return {"accuracy": acc, "mAP": m["mAP"], "ece": ece(p.max(1), right), "answered": float(answered.mean())}


class Curves:
    """One model's figures under every condition of a plan, from a Store of its features."""

    def __init__(self, bundle, loader: Loader, y: np.ndarray, device="cpu"):
        self.b, self.load, self.y, self.device = bundle, loader, y, device
        self.store, self.rows = loader.store, loader.rows
        self.model = bundle.model.to(device).eval()
        self.seq = bundle.model.cfg.seq_len
        self.cross = bundle.model.cfg.kind == "cross_modal"
        self._plain = None
        self._alone = {}

    def inputs(self, key: str, m: str) -> torch.Tensor:
        return self.load(key, m, self.seq)

    def plain(self) -> tuple:
        if self._plain is None:
            a, v = self.inputs("plain", "audio"), self.inputs("plain", "video")
            self._plain = (a, v, predict_set(self.model, Inputs(a, v), self.device))
        return self._plain

    def without(self, m: str) -> np.ndarray:
        """The fused logits of every clip with modality ``m`` missing."""
        if m not in self._alone:
            a, v, z = self.plain()
            if self.cross:  # its joint pass with that input all padding
                a, v = (torch.zeros_like(a), v) if m == "audio" else (a, torch.zeros_like(v))
                self._alone[m] = predict_set(self.model, Inputs(a, v), self.device)["fused"]
            else:
                self._alone[m] = z["video" if m == "audio" else "audio"]
        return self._alone[m]

    def logits(self, c: Condition) -> tuple:
        """-> (pass -> logits or None, pass -> answered mask)."""
        a, v, z = self.plain()
        n = len(self.rows)
        every = np.ones(n, bool)
        if c.kind == "plain":
            return z, {p: every for p in PASSES}
        m = c.modality
        if c.kind in MISSING:
            gone = missing_rows(n, c.level, self.store.seed, m)
            out = dict(z)
            out["fused"] = np.where(gone[:, None], self.without(m), z["fused"])
            answered = {p: every for p in PASSES}
            answered[m] = ~gone
            return out, answered
        x = self.inputs(c.key(self.store.seed), m)
        if self.cross:  # one joint pass over both
            return predict_set(self.model, Inputs(x, v) if m == "audio" else Inputs(a, x), self.device), \
                {p: every for p in PASSES}
        out = dict(z)  # the other modality's pass is the plain one: only this one runs again
        out[m] = one_pass(self.model, x, m, self.device)
        out["fused"] = ((torch.as_tensor(out["audio"]) + torch.as_tensor(out["video"])) / 2).numpy()
        return out, {p: every for p in PASSES}

    def rows_of(self, conditions: list) -> list:
        out = []
        for c in conditions:
            z, answered = self.logits(c)
            for p in PASSES:
                if z[p] is None:
                    continue
                r = pass_metrics(z[p], answered[p], self.y, self.b.multilabel)
                out.append({"model": self.b.name, "model_kind": self.b.model.cfg.kind, "pass": p,
                            "condition": c.kind, "level": "" if c.level is None else c.level, "x": round(c.x, 6),
                            **{k: "" if v != v else v for k, v in r.items()}})  # NaN: undefined
        return out


def trapezoid(y, x) -> float:
    y, x = np.asarray(y, float), np.asarray(x, float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def relative_robustness(x, y) -> tuple:
    """-> (area over the span of x, that area over the plain set's y(0)): 1 for a flat curve."""
    span = float(x[-1] - x[0])
    area = trapezoid(y, x) / span
    return area, (area / y[0] if y[0] else float("nan"))


def effective_robustness(x, y, base) -> float:
    """The area of y - (base - base(0) + y(0)) over the span of x: the gain over the baseline
    moved to y's starting point (0 for the baseline itself)."""
    y, base = np.asarray(y, float), np.asarray(base, float)
    return trapezoid((y - base) - (y[0] - base[0]), x) / float(x[-1] - x[0])  # exactly 0 for the baseline


def summarize(rows: list, baseline=None) -> list:
    """Per model, pass, condition and metric: the plain figure, the worst, the area, relative
    and effective robustness (against the model named ``baseline``, the same pass and levels)."""
    curves: dict = {}
    for r in rows:
        curves.setdefault((r["model"], r["pass"], r["condition"]), []).append(r)
    plain = {(r["model"], r["pass"]): r for r in rows if r["condition"] == "plain"}
    out = []
    for (model, p, kind), rs in curves.items():
        if kind == "plain":
            continue
        rs = [plain[(model, p)]] + rs
        x = [r["x"] for r in rs]
        base = curves.get((baseline, p, kind)) if baseline else None
        for metric in ("accuracy", "mAP"):
            y = [r[metric] for r in rs]
            area, rel = relative_robustness(x, y)
            eff = ""
            if base is not None and [r["x"] for r in base] == x[1:]:
                eff = round(effective_robustness(x, y, [plain[(baseline, p)][metric]] + [r[metric] for r in base]), 6)
            out.append({"model": model, "pass": p, "condition": kind, "metric": metric, "plain": y[0],
                        "worst": min(y), "area": round(area, 6), "relative_robustness": round(rel, 6),
                        "effective_robustness": eff, "baseline": baseline or ""})
    return out

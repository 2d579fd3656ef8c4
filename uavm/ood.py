"""Can this answer be trusted? Each pass's familiarity: how far its input lies from what
the model was trained on, and a flag where it lies further than almost all held-out data.

The score is the Mahalanobis distance (Lee et al., NeurIPS 2018) of a pass's embedding,
the mean over time that its classifier reads, to the nearest class mean of the training
embeddings under one covariance shared by all classes:

    score(e) = min_c sqrt((e - mu_c)^T S^-1 (e - mu_c))

The audio and the video pass each have their own statistics. The fused answer's score is
that of the two embeddings side by side, [e_audio, e_video] (so a sound and a picture that
each look familiar but never came together in training score high too), and it is flagged
when that score is over its threshold OR a pass it weighs is flagged: an answer built on an
unfamiliar input is not trusted either. With one modality present the fused answer is that
pass. A cross-modal model has one pass, its joint one: its statistics are the fused answer's.

A threshold is the (1 - false_alarm) quantile of the scores of held-out in-distribution
data (never the test set): ``flag`` is ``score > threshold``. Why this score and not the
maximum logit, the energy or a k-NN distance: docs/missing.md ("Unfamiliar input").

The statistics travel with a bundle as data: ``ood.safetensors`` (per pass the whitened
class means and the whitening matrix W, S^-1 = W W^T) and the config's ``"ood"`` object
(method, thresholds, how they were fitted). ``uavm ood fit`` makes them for a bundle that
lacks them; the trainer makes them from its training and validation features.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import UAVMError

METHOD = "mahalanobis"
FILE = "ood.safetensors"
PASSES = ("audio", "video", "fused")
FALSE_ALARM = 0.05
SHRINK = 1e-4  # of the mean variance, added to the covariance's diagonal: a few clips still give a usable inverse


class FamiliarityError(UAVMError):
    """Statistics that cannot be fitted or read; the message says why."""


@dataclass
class PassStats:
    """One pass's statistics: whitened class means (C, D), whitening W (D, D), threshold."""

    means: torch.Tensor
    whiten: torch.Tensor
    threshold: float

    @property
    def dim(self) -> int:
        return int(self.whiten.shape[0])

    def score(self, e: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings -> (B,) distances to the nearest class mean."""
        z = e.float().to(self.whiten.device) @ self.whiten
        return torch.cdist(z, self.means).min(dim=1).values


@dataclass
class Familiarity:
    passes: dict  # "audio" / "video" / "fused" -> PassStats
    false_alarm: float = FALSE_ALARM
    fitted: dict = field(default_factory=dict)  # how: clips, held-out clips, source

    def to(self, device):
        for p in self.passes.values():
            p.means, p.whiten = p.means.to(device), p.whiten.to(device)
        return self

    def judge(self, embeddings: dict) -> dict:
        """pass -> its (1, D) embedding (None when absent) -> pass -> {"score", "flag", "threshold"}
        for batch item 0, or None where this bundle has no statistics for that pass."""
        out = {}
        for m, e in embeddings.items():
            st = self.passes.get(m)
            if e is None or st is None or e.shape[-1] != st.dim:
                out[m] = None
                continue
            s = float(st.score(e[:1])[0])
            out[m] = {"score": round(s, 4), "flag": bool(s > st.threshold), "threshold": round(st.threshold, 4)}
        return out

    def config(self) -> dict:
        return {"method": METHOD, "weights": FILE, "false_alarm": self.false_alarm,
                "thresholds": {m: p.threshold for m, p in self.passes.items()}, "fitted": self.fitted}

    def tensors(self) -> dict:
        t = {}
        for m, p in self.passes.items():
            t[f"{m}.means"] = p.means.detach().float().cpu().contiguous()
            t[f"{m}.whiten"] = p.whiten.detach().float().cpu().contiguous()
        return t


def embeddings(out) -> dict:
    """A ``uavm.model.Output`` -> pass -> (B, D) embedding or None: the audio and video
    passes' own, and the fused answer's (see the module's docstring)."""
    if out.joint is not None:
        return {"audio": None, "video": None, "fused": out.joint.embedding}
    a = out.audio.embedding if out.audio is not None else None
    v = out.video.embedding if out.video is not None else None
    fused = torch.cat([a, v], dim=1) if a is not None and v is not None else None
    return {"audio": a, "video": v, "fused": fused}


def judge(familiarity: Optional[Familiarity], out, audio_weight: float = 0.5) -> dict:
    """The familiarity of each pass of one answer (batch item 0). The fused answer is flagged
    when the pair is unfamiliar or when a pass it weighs (weight > 0) is: its ``"passes"``
    names those passes. With one modality present the fused answer is that pass."""
    if familiarity is None:
        return {}
    e = embeddings(out)
    j = familiarity.judge(e)
    if out.joint is not None:
        return j
    weighs = [m for m, w in (("audio", audio_weight), ("video", 1 - audio_weight)) if w > 0 and j.get(m)]
    own = j.get("fused")
    if own is None and len(weighs) == 1:  # one modality present (or weighed): the fused answer is that pass
        own = dict(j[weighs[0]])
    elif own is not None:  # both: the pair's own score, and the passes that make it unfamiliar
        flagged = [m for m in weighs if j[m]["flag"]]
        own["flag"] = bool(own["flag"] or flagged)
        own["passes"] = flagged
    j["fused"] = own
    return j


# -- fitting ---------------------------------------------------------------------------------
def fit_pass(train: np.ndarray, y: np.ndarray, held: np.ndarray, false_alarm: float) -> PassStats:
    """``train``: (N, D) embeddings with (N, C) multi-hot targets ``y``; ``held``: (M, D)
    held-out embeddings of the same distribution, for the threshold."""
    train, held = np.asarray(train, np.float64), np.asarray(held, np.float64)
    y = np.asarray(y) > 0
    classes = [c for c in range(y.shape[1]) if y[:, c].any()]
    if not classes or len(held) < 1:
        raise FamiliarityError("fitting needs labelled training clips and at least one held-out clip")
    means = np.stack([train[y[:, c]].mean(0) for c in classes])
    # the shared covariance: every (clip, positive label) pair's residual from its class mean
    rows, cols = np.nonzero(y[:, classes])
    resid = train[rows] - means[cols]
    d = train.shape[1]
    cov = resid.T @ resid / max(len(resid), 1)
    cov += np.eye(d) * (SHRINK * max(np.trace(cov) / d, 1e-12))
    vals, vecs = np.linalg.eigh(cov)
    whiten = vecs / np.sqrt(np.clip(vals, vals.max() * 1e-12, None))  # S^-1 = W W^T
    st = PassStats(torch.as_tensor(means @ whiten, dtype=torch.float32),
                   torch.as_tensor(whiten, dtype=torch.float32), 0.0)
    scores = st.score(torch.as_tensor(held, dtype=torch.float32)).numpy()
    st.threshold = float(np.quantile(scores, 1 - false_alarm))
    return st


def fit(train: dict, held: dict, false_alarm: float = FALSE_ALARM, fitted: Optional[dict] = None) -> Familiarity:
    """pass -> (training embeddings (N, D), their (N, C) multi-hot targets), and pass ->
    held-out embeddings (M, D) -> the statistics of every pass that has both."""
    if not 0 < false_alarm < 1:
        raise FamiliarityError(f"the false-alarm rate must lie between 0 and 1, got {false_alarm:g}")
    passes = {m: fit_pass(e, y, held[m], false_alarm) for m, (e, y) in train.items()
              if len(e) and held.get(m) is not None and len(held[m])}
    if not passes:
        raise FamiliarityError("no pass had both training and held-out clips to fit its statistics on")
    return Familiarity(passes, false_alarm, dict(fitted or {}))


@torch.no_grad()
def embed_inputs(model, audio: torch.Tensor, video: torch.Tensor, batch: int = 256) -> dict:
    """Model-ready (N, T, D) inputs -> pass -> (row indices, (n, D) numpy embeddings), each
    pass run as inference runs it (Algorithm 1: one pass per modality). A clip whose input
    for a modality is all padding (no such stream) is left out of that pass and the fused one."""
    model.eval()
    dev = next(model.parameters()).device
    has = {m: (x.abs().flatten(1).sum(1) > 0).numpy() for m, x in (("audio", audio), ("video", video))}
    rows = {"fused": np.nonzero(has["audio"] & has["video"])[0]}
    if model.cfg.kind != "cross_modal":
        rows = {"audio": np.nonzero(has["audio"])[0], "video": np.nonzero(has["video"])[0], **rows}
    out = {}
    for m, idx in rows.items():
        parts = []
        for i in range(0, len(idx), batch):
            j = torch.as_tensor(idx[i:i + batch])
            a = audio[j].to(dev) if m != "video" else None
            v = video[j].to(dev) if m != "audio" else None
            parts.append(embeddings(model(a, v))[m].float().cpu().numpy())
        out[m] = (idx, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))
    return out


# -- on disk ---------------------------------------------------------------------------------
def read(root: Path, cfg, model_cfg) -> Optional[Familiarity]:
    """A bundle's statistics (None when its config has no "ood"), every field checked: the
    config is data from anywhere."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if cfg is None:
        return None
    where = f"{root / 'config.json'}: ood"
    if not isinstance(cfg, dict) or cfg.get("method") != METHOD:
        raise FamiliarityError(f"{where}: method must be {METHOD!r}")
    fa, th, name = cfg.get("false_alarm", FALSE_ALARM), cfg.get("thresholds"), cfg.get("weights", FILE)
    if not isinstance(fa, (int, float)) or isinstance(fa, bool) or not 0 < fa < 1:
        raise FamiliarityError(f"{where}: false_alarm must be a number between 0 and 1")
    if not isinstance(th, dict) or not th or not set(th) <= set(PASSES):
        raise FamiliarityError(f"{where}: thresholds must map some of {', '.join(PASSES)} to numbers")
    for m, t in th.items():
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise FamiliarityError(f"{where}: the {m} threshold must be a finite number >= 0")
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith(".") or not name:
        raise FamiliarityError(f"{where}: weights must name a file inside the bundle folder")
    path = (root / name).resolve()  # a link out of the bundle is refused like a path out of it
    if not path.is_relative_to(root.resolve()):
        raise FamiliarityError(f"{where}: weights must name a file inside the bundle folder")
    if not path.is_file():
        raise FamiliarityError(f"{root}: missing familiarity file {name}")
    width = model_cfg.shared_dim if model_cfg.n_shared else model_cfg.embed_dim
    if model_cfg.kind == "cross_modal":
        widths = {"fused": width}  # one joint pass
    else:
        widths = {"audio": width, "video": width, "fused": 2 * width}
    if not set(th) <= set(widths):
        raise FamiliarityError(f"{where}: this model's statistics are for {', '.join(widths)} only")
    want = {f"{m}.{part}" for m in th for part in ("means", "whiten")}
    try:  # shapes from the header before anything is read
        with safe_open(str(path), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise FamiliarityError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    if set(shapes) != set(want):
        raise FamiliarityError(f"{path}: holds {sorted(shapes)[:4]}, the config needs {sorted(want)}")
    for k, shape in shapes.items():
        m, part = k.split(".")
        d = widths[m]
        if part == "whiten" and shape != (d, d):
            raise FamiliarityError(f"{path}: {k} has shape {shape}, the model needs {(d, d)}")
        if part == "means" and not (len(shape) == 2 and shape[1] == d and 1 <= shape[0] <= model_cfg.num_classes):
            raise FamiliarityError(f"{path}: {k} has shape {shape}, the model needs (at most "
                                   f"{model_cfg.num_classes} classes, {d})")
    t = load_file(str(path))
    for k, v in t.items():
        if not v.is_floating_point() or not torch.isfinite(v).all():
            raise FamiliarityError(f"{path}: {k} must hold finite floating-point numbers")
    passes = {m: PassStats(t[f"{m}.means"].float(), t[f"{m}.whiten"].float(), float(th[m])) for m in th}
    fitted = cfg.get("fitted") if isinstance(cfg.get("fitted"), dict) else {}
    return Familiarity(passes, float(fa), fitted)


def write(root, familiarity: Familiarity) -> Path:
    """Store the statistics in a bundle folder: ``ood.safetensors`` and the config's "ood"."""
    import json

    from safetensors.torch import save_file

    from .files import atomic, write_text

    root = Path(root)
    cfg_path = root / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    with atomic(root / FILE) as tmp:
        save_file(familiarity.tensors(), str(tmp))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # as any file this user writes: safetensors makes it private
    cfg["ood"] = familiarity.config()
    write_text(cfg_path, json.dumps(cfg, indent=2, allow_nan=False) + "\n")
    return root / FILE

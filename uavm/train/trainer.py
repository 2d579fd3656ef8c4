"""Algorithm 1 training with the authors' released recipe (official-release.md):
one modality per step (audio with probability lambda_MT), mixup, label smoothing,
random time shift, balanced sampling, Adam (0.95, 0.999), weight decay 5e-7, the
learning rate halved every epoch after the first; CE (single-label) or BCE
(multi-label). The cross-modal baseline sees both modalities every step.

All randomness comes from one seeded generator in the main process, so a run is
reproducible on the CPU and resumes exactly from its last checkpoint.

Under torchrun (DistributedDataParallel) every rank draws the same numbers from that
generator, so all ranks train the same modality on the same global batch, and each
computes its slice of it; rank 0 alone evaluates, logs and writes checkpoints.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UAVMError
from ..files import atomic, progress
from ..model import UAVM
from . import distributed
from .data import FeatureSet
from .metrics import metrics
from .recipe import Recipe


@dataclass
class History:
    epochs: list = field(default_factory=list)  # one dict per epoch: lr, loss, audio/video/fused metrics


def smooth_targets(y: np.ndarray, eps: float, partner: Optional[np.ndarray] = None, lam=None) -> np.ndarray:
    """eps / classes everywhere; positives set to 1 - eps, or with mixup lam * (1 - eps)
    and (1 - lam) * (1 - eps) added for the two samples' positives."""
    t = np.full(y.shape, eps / y.shape[1], np.float32)
    if partner is None:
        return np.where(y > 0, 1 - eps, t).astype(np.float32)
    lam = lam[:, None]
    return (t + lam * (1 - eps) * (y > 0) + (1 - lam) * (1 - eps) * (partner > 0)).astype(np.float32)


def sample_weights(y: np.ndarray) -> np.ndarray:
    """Balanced sampling: a sample's weight is the sum over its labels of 1000 / (count + 0.01)."""
    w = (y > 0) @ (1000.0 / (y.sum(0) + 0.01))
    return w / w.sum()


@dataclass
class Draws:
    """One step's random draws, for this rank's slice of the global batch."""

    mods: tuple  # the modalities the step trains ("audio",), ("video",) or both (cross-modal)
    idx: np.ndarray
    mix: np.ndarray  # which samples are mixed with a partner
    partner: np.ndarray
    lam: np.ndarray  # their mixup weights
    shift: np.ndarray  # the time roll of each sample
    share: float


def batch_inputs(train: FeatureSet, label_smoothing: float, d: Draws):
    """A step's data: -> (inputs per modality, soft targets, share). Pure given the draws, so
    loader workers can make it ahead of the step."""
    y = train.y[d.idx]
    t = np.where(d.mix[:, None], smooth_targets(y, label_smoothing, train.y[d.partner], d.lam),
                 smooth_targets(y, label_smoothing))
    xs = {}
    for m in d.mods:
        x = train.get(d.idx, m)
        if d.mix.any():
            l = torch.as_tensor(d.lam)[:, None, None]
            x = torch.where(torch.as_tensor(d.mix)[:, None, None], l * x + (1 - l) * train.get(d.partner, m), x)
        xs[m] = torch.stack([torch.roll(x[i], int(d.shift[i]), 0) for i in range(len(d.idx))])
    return xs, torch.as_tensor(t), d.share


class Steps(torch.utils.data.Dataset):
    """The epoch's steps, each already drawn, for a DataLoader: item s is step s's data."""

    def __init__(self, train: FeatureSet, label_smoothing: float, draws: list):
        self.train, self.label_smoothing, self.draws = train, label_smoothing, draws

    def __len__(self):
        return len(self.draws)

    def __getitem__(self, s):
        return batch_inputs(self.train, self.label_smoothing, self.draws[s])


class Trainer:
    def __init__(self, model: UAVM, train: FeatureSet, recipe: Recipe, val: Optional[FeatureSet] = None,
                 out: Optional[Path] = None, device="cpu", progress: bool = False, log=print,
                 workers: Optional[int] = None):
        self.model, self.train, self.val, self.r = model.to(device), train, val, recipe
        self.out, self.device, self.progress, self.log = Path(out) if out else None, device, progress, log
        self.opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=tuple(recipe.betas),
                                    weight_decay=recipe.weight_decay)
        self.rng = np.random.default_rng(recipe.seed)
        self.epoch, self.history = 0, History()
        self.p = sample_weights(train.y) if recipe.balanced else None
        self.net = None  # what the steps run while fit runs: the model, in DDP under torchrun
        self.workers = workers  # loader processes (None: up to 4 on a GPU for a set on disk, else none)

    # -- one step of Algorithm 1 -----------------------------------------------------------
    def _draw(self, idx: np.ndarray) -> Draws:
        """The step's draws for the whole global batch ``idx`` (the same on every rank, and the
        same as one process draws), then this rank's slice of them; share = the slice's size
        relative to an equal split (see ``_epoch``)."""
        r, rng, n = self.r, self.rng, len(self.train)
        if self.model.cfg.kind == "cross_modal":
            mods = ("audio", "video")
        else:
            mods = ("audio",) if rng.random() < r.audio_weight else ("video",)
        mix = rng.random(len(idx)) < r.mixup
        partner = rng.integers(0, n, len(idx))
        lam = np.where(mix, rng.beta(r.mixup_alpha, r.mixup_alpha, len(idx)), 1.0).astype(np.float32)
        shift = rng.integers(-r.time_shift, r.time_shift, len(idx)) if r.time_shift else np.zeros(len(idx), int)
        mine = np.array_split(np.arange(len(idx)), distributed.world())[distributed.rank()]
        share = len(mine) * distributed.world() / len(idx)
        return Draws(mods, idx[mine], mix[mine], partner[mine], lam[mine], shift[mine], share)

    def _batch(self, idx: np.ndarray):
        """-> (inputs, targets, share) of one step: its draws, then its data."""
        return batch_inputs(self.train, self.r.label_smoothing, self._draw(idx))

    def _loss(self, logits, t):
        if self.r.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, t)
        return torch.sum(-t * F.log_softmax(logits, -1), -1).mean()

    def fit(self) -> History:
        n, world = len(self.train), distributed.world()
        if min(self.r.batch_size, n) < world:
            raise UAVMError(f"a global batch of {min(self.r.batch_size, n)} cannot give each of "
                             f"{world} processes a sample; raise --batch-size")
        self.net = _data_parallel(self.model, torch.device(self.device))
        try:
            while self.epoch < self.r.epochs:
                self.epoch += 1
                rec = self._epoch()
                # rank 0 alone evaluates, logs and saves; the others go on to the next step and wait there
                main = distributed.is_main()
                if main and self.val is not None:
                    rec.update(evaluate(self.model, self.val, self.device))
                self.history.epochs.append(rec)
                if main:
                    self.log(format_epoch(rec))
                if main and self.out is not None:
                    self.save_checkpoint()
        finally:
            # DDP holds the process group: had it the last reference, freeing it after the group is
            # destroyed would deadlock gloo (its threads wait for the GIL its destructor holds)
            self.net = None
        return self.history

    def _epoch(self) -> dict:
        r, n = self.r, len(self.train)
        steps = max(n // r.batch_size, 1)
        lr = r.lr_at(self.epoch)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.model.train()
        order = self.rng.choice(n, n, replace=True, p=self.p) if self.p is not None else self.rng.permutation(n)
        # every step's draws first (the generator is used in the same order as step by step,
        # so runs and resumes repeat exactly); the data then comes from loader workers, ahead
        draws = [self._draw(order[s * r.batch_size:(s + 1) * r.batch_size]) for s in range(steps)]
        bar = progress(steps, f"epoch {self.epoch}/{r.epochs}", self.progress and distributed.is_main(), " steps")
        losses, t0 = [], time.time()
        for s, (xs, t, share) in enumerate(self._batches(draws)):
            out = self.net(**{m: x.to(self.device) for m, x in xs.items()})
            # DDP averages the ranks' gradients: weighting each slice's mean loss by its share
            # makes that average the gradient of the global batch's mean loss (share = 1 when
            # the batch divides evenly, and in one process)
            loss = self._loss(out.fused, t.to(self.device)) * share
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
            bar(s + 1, f"loss {np.mean(losses):.4f}")
        loss = distributed.mean(float(np.mean(losses)), self.device)  # the global batches' mean
        return {"epoch": self.epoch, "lr": lr, "loss": loss, "seconds": round(time.time() - t0, 2)}

    def _batches(self, draws: list):
        """The steps' (inputs, targets, share): made here, or read from the set's files by
        ``workers`` processes ahead of the steps (pinned memory on a GPU)."""
        workers = self.workers
        if workers is None:  # measured: on a CPU the step needs every core; on a GPU the files are the wait
            on_gpu = torch.device(self.device).type == "cuda"
            workers = min(4, os.cpu_count() or 1) if on_gpu and not self.train.in_memory else 0
        if workers == 0:
            return (batch_inputs(self.train, self.r.label_smoothing, d) for d in draws)
        return torch.utils.data.DataLoader(Steps(self.train, self.r.label_smoothing, draws), batch_size=None,
                                           shuffle=False, num_workers=workers, prefetch_factor=4,
                                           pin_memory=torch.device(self.device).type == "cuda")

    # -- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "epoch": self.epoch,
                "rng": json.dumps(self.rng.bit_generator.state), "history": json.dumps(self.history.epochs),
                "recipe": json.dumps(asdict(self.r)), "config": json.dumps(self.model.cfg.to_dict())}

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoint.pt"
        with atomic(path) as tmp:  # a crash mid-write never leaves a half checkpoint
            torch.save(self.state(), tmp)
        return path

    def resume(self, path) -> None:
        s = torch.load(path, map_location="cpu", weights_only=True)
        if json.loads(s["config"]) != self.model.cfg.to_dict():
            raise UAVMError(f"{path}: the checkpoint is of another architecture; remove it or change --out")
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.epoch = int(s["epoch"])
        self.rng.bit_generator.state = json.loads(s["rng"])
        self.history.epochs = json.loads(s["history"])


def _data_parallel(model: UAVM, device: torch.device):
    """The model wrapped in DistributedDataParallel under torchrun, else the model itself."""
    if distributed.world() == 1:
        return model
    # one modality per step leaves the other's layers without gradients, on every rank alike
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=model.cfg.kind != "cross_modal")


@torch.no_grad()
def predict_set(model: UAVM, data: FeatureSet, device="cpu", batch_size: int = 256) -> dict:
    """Logits for every entry: audio-only, video-only (None for cross-modal) and fused."""
    model.eval()
    outs = {"audio": [], "video": [], "fused": []}
    for i in range(0, len(data), batch_size):
        idx = np.arange(i, min(i + batch_size, len(data)))
        a, v = data.get(idx, "audio").to(device), data.get(idx, "video").to(device)
        if model.cfg.kind == "cross_modal":
            outs["fused"].append(model(a, v).fused)
            continue
        la, lv = model(audio=a).fused, model(video=v).fused
        outs["audio"].append(la)
        outs["video"].append(lv)
        outs["fused"].append((la + lv) / 2)
    return {k: torch.cat(v).float().cpu().numpy() if v else None for k, v in outs.items()}


def evaluate(model: UAVM, data: FeatureSet, device="cpu") -> dict:
    """{"audio": {"acc", "mAP"}, "video": ..., "fused": ...}; scores are sigmoids, as the authors'."""
    logits = predict_set(model, data, device)
    return {k: (metrics(torch.sigmoid(torch.as_tensor(z)).numpy(), data.y) if z is not None else None)
            for k, z in logits.items()}


def format_epoch(rec: dict) -> str:
    parts = [f"epoch {rec['epoch']}", f"lr {rec['lr']:.2e}", f"loss {rec['loss']:.4f}"]
    for m in ("audio", "video", "fused"):
        if rec.get(m):
            parts.append(f"{m} acc {100 * rec[m]['acc']:.1f} mAP {100 * rec[m]['mAP']:.1f}")
    return " | ".join(parts)

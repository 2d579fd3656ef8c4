"""The training recipe as data (no torch: the command line makes its options from these fields)."""
from __future__ import annotations

from dataclasses import dataclass, field


def _opt(default, help: str, **kw):
    """A recipe field and its command-line help (the options are made from the fields)."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Recipe:
    """The released VGGSound recipe by default (AudioSet: lr 1e-5, loss bce)."""

    epochs: int = _opt(10, "epochs")
    batch_size: int = _opt(144, "global batch size (split among torchrun ranks)")
    lr: float = _opt(5e-5, "learning rate")
    lr_decay: float = _opt(0.5, "learning-rate factor per epoch after --lr-decay-start")
    lr_decay_start: int = _opt(1, "epochs at the full rate before the decay begins")
    betas: tuple = _opt((0.95, 0.999), "Adam betas")
    weight_decay: float = _opt(5e-7, "Adam weight decay")
    audio_weight: float = _opt(0.5, "lambda_MT: the chance that a step trains on audio")
    mixup: float = _opt(0.5, "the chance that a sample is mixed with another")
    mixup_alpha: float = _opt(10.0, "mixup's Beta(alpha, alpha)")
    label_smoothing: float = _opt(0.1, "label smoothing")
    time_shift: int = _opt(15, "roll both modalities by the same integer in [-shift, shift)")
    balanced: bool = _opt(True, "balanced sampling (the inverse of each label's frequency)")
    loss: str = _opt("ce", "ce (single-label, softmax) or bce (multi-label)", choices=("ce", "bce"))
    seed: int = _opt(0, "seed of every random draw")

    def lr_at(self, epoch: int) -> float:  # epoch counts from 1
        return self.lr * self.lr_decay ** max(0, epoch - self.lr_decay_start)

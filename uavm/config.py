"""The architecture of a UAVM-family model as checked data (no torch: the command line
builds its options from these fields without loading the networks)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import UAVMError, number

KINDS = ("unified", "independent", "cross_modal")


class ConfigError(UAVMError):
    """An architecture that cannot be built; the message names the field."""


@dataclass
class ModelConfig:
    """Architecture of a UAVM-family model.

    n_specific: N, modality-specific layers (width ``embed_dim``).
    n_shared:   Ns, layers after the modality-specific ones, width ``shared_dim``.
    shared_dim: S_dim.
    """

    kind: str = field(default="unified", metadata={"help": "unified (UAVM), independent or cross_modal",
                                                   "choices": KINDS})
    num_classes: int = 309
    n_specific: int = field(default=3, metadata={"help": "N: modality-specific layers"})
    n_shared: int = field(default=3, metadata={"help": "Ns: shared (unified) or upper (independent) layers"})
    embed_dim: int = field(default=1024, metadata={"help": "width of the modality-specific layers"})
    shared_dim: int = field(default=1024, metadata={"help": "S_dim: width of the shared layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads"})
    seq_len: int = 30
    audio_dim: int = 1024
    video_dim: int = 1024
    mlp_ratio: float = 4.0

    # every field's range: a config is data read from a file, checked before anything is built
    LIMITS = {"num_classes": (1, 100_000), "n_specific": (0, 64), "n_shared": (0, 64), "embed_dim": (1, 16384),
              "shared_dim": (1, 16384), "num_heads": (1, 256), "seq_len": (1, 4096), "audio_dim": (1, 16384),
              "video_dim": (1, 16384)}

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name, (lo, hi) in self.LIMITS.items():
            setattr(self, name, number(f"model {name}", getattr(self, name), lo, hi, integer=True, error=ConfigError))
        self.mlp_ratio = number("model mlp_ratio", self.mlp_ratio, 0.01, 64, error=ConfigError)
        if self.kind == "cross_modal" and self.n_shared == 0:
            raise ConfigError("the cross-modal model needs n_shared >= 1 (its shared layers do the fusion)")
        for name, dim in (("embed_dim", self.embed_dim), ("shared_dim", self.shared_dim)):
            if dim % self.num_heads:
                raise ConfigError(f"model {name}={dim} is not divisible by num_heads={self.num_heads}")

    @property
    def n_layers(self) -> int:
        return self.n_specific + self.n_shared

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a model config is a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(map(str, unknown))}")
        return cls(**d)

"""The UAVM Transformer family (Gong et al., IEEE SPL 2022, Sec. II and Table I).

One file, read top to bottom: attention -> block -> stack -> the three models.

* ``unified``      UAVM. N modality-specific layers per modality, then Ns shared
                   layers of width S_dim and one shared classifier. Each present
                   modality gets its own pass (Algorithm 1); fused = mean of logits.
* ``independent``  The modality-independent baseline: same shape, but the upper
                   Ns layers and the classifier are separate per modality
                   (Ns = 0 gives the released "di6-ds0" model).
* ``cross_modal``  The cross-modal-attention baseline: audio and video tokens are
                   concatenated (audio first) into the shared layers; needs both.

Every forward returns the attention weights of every layer and head from the very
softmax that produced the outputs, and each layer's hidden sequence (for the
paper's probing analyses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from .config import KINDS, ConfigError, ModelConfig  # noqa: F401  (re-exported: uavm.model.ModelConfig)
from .errors import UAVMError


class ModelInputError(UAVMError):
    """Inputs the model cannot take (e.g. one modality for the cross-modal model)."""


class Attention(nn.Module):
    """Multi-head self-attention that hands back its softmax weights."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(x), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block (LayerNorm eps 1e-5, as released)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        y, attn = self.attn(self.norm1(x))
        x = x + y
        return x + self.mlp(self.norm2(x)), attn


class Stack(nn.Module):
    """A Transformer stack: input LayerNorm, projection (only when the widths differ),
    learned positions, blocks. ``head`` is built only where the stack ends the model."""

    def __init__(self, in_dim, dim, depth, num_heads, seq_len, mlp_ratio, num_classes=None):
        super().__init__()
        self.in_norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.in_proj = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.pos_embed = nn.Parameter(torch.zeros(1, seq_len, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.head = Classifier(dim, num_classes) if num_classes else None

    def forward(self, x, hidden: list, attn: list):
        x = self.in_proj(self.in_norm(x)) + self.pos_embed
        for blk in self.blocks:
            x, a = blk(x)
            hidden.append(x)
            attn.append(a)
        return x


class Classifier(nn.Sequential):
    """Mean over time is done by the caller; this is LayerNorm (eps 1e-6) + Linear."""

    def __init__(self, dim, num_classes):
        super().__init__(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, num_classes))


@dataclass
class Pass:
    """One modality's (or, cross-modal, the joint) pass through the model."""

    logits: Optional[torch.Tensor]  # (B, classes); None for a cross-modal model's modality passes
    attention: list = field(default_factory=list)  # per layer (B, heads, T, T)
    hidden: list = field(default_factory=list)  # per layer (B, T, dim)
    embedding: Optional[torch.Tensor] = None  # (B, dim): the mean over time the classifier reads


@dataclass
class Output:
    audio: Optional[Pass]  # None when audio was missing
    video: Optional[Pass]
    fused: Optional[torch.Tensor]  # (B, classes)
    joint: Optional[Pass] = None  # cross-modal only: the shared layers over 2T tokens


class UAVM(nn.Module):
    """All three model kinds behind one forward(audio, video)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = c = cfg
        self.specific = nn.ModuleDict()
        for m, in_dim in (("audio", c.audio_dim), ("video", c.video_dim)):
            if c.n_specific:
                self.specific[m] = Stack(in_dim, c.embed_dim, c.n_specific, c.num_heads, c.seq_len, c.mlp_ratio)
            else:  # no specific layer: only a projection into the shared width's input
                self.specific[m] = nn.Sequential(nn.LayerNorm(in_dim, eps=1e-6), nn.Linear(in_dim, c.embed_dim))
        mk = lambda seq: Stack(c.embed_dim, c.shared_dim, c.n_shared, c.num_heads, seq, c.mlp_ratio, c.num_classes)
        self.shared = self.upper = self.heads = None
        if c.n_shared == 0:  # fully modality-independent, separate classifiers
            self.heads = nn.ModuleDict({m: Classifier(c.embed_dim, c.num_classes) for m in ("audio", "video")})
        elif c.kind == "unified":
            self.shared = mk(c.seq_len)
        elif c.kind == "independent":
            self.upper = nn.ModuleDict({m: mk(c.seq_len) for m in ("audio", "video")})
        else:  # cross_modal
            self.shared = mk(2 * c.seq_len)

    def _specific(self, m, x, p: Pass):
        mod = self.specific[m]
        return mod(x, p.hidden, p.attention) if isinstance(mod, Stack) else mod(x)

    def _single(self, m: str, x: torch.Tensor) -> Pass:
        p = Pass(logits=None)
        x = self._specific(m, x, p)
        if self.heads is not None:
            p.embedding = x.mean(dim=1)
            p.logits = self.heads[m](p.embedding)
            return p
        top = self.shared if self.shared is not None else self.upper[m]
        x = top(x, p.hidden, p.attention)
        p.embedding = x.mean(dim=1)
        p.logits = top.head(p.embedding)
        return p

    def forward(self, audio: Optional[torch.Tensor] = None, video: Optional[torch.Tensor] = None) -> Output:
        """audio, video: (B, T, D) L2-normalised features, either may be None."""
        if audio is None and video is None:
            raise ModelInputError("nothing left to predict from: both audio and video are missing")
        if self.cfg.kind == "cross_modal":
            return self._cross(audio, video)
        a = self._single("audio", audio) if audio is not None else None
        v = self._single("video", video) if video is not None else None
        if a is not None and v is not None:
            fused = (a.logits + v.logits) / 2
        else:
            fused = (a or v).logits
        return Output(audio=a, video=v, fused=fused)

    def _cross(self, audio, video) -> Output:
        if audio is None or video is None:
            missing = "audio" if audio is None else "video"
            raise ModelInputError(f"the cross-modal attention model needs both modalities; {missing} is missing")
        a, v, j = Pass(None), Pass(None), Pass(None)
        xa = self._specific("audio", audio, a)
        xv = self._specific("video", video, v)
        x = self.shared(torch.cat([xa, xv], dim=1), j.hidden, j.attention)
        j.embedding = x.mean(dim=1)
        j.logits = self.shared.head(j.embedding)
        # a and v keep the modality-specific layers' attention; they have no logits of their own
        return Output(audio=a, video=v, fused=j.logits, joint=j)


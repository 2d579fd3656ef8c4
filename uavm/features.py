"""Waveform and frames -> (T, D) feature sequences, with the preprocessing the
released weights expect (see ``Preprocessing`` for every constant).

Audio: mono 16 kHz -> mean removed -> Kaldi fbank (128 mel) -> pad/cut ->
(x - mean) / std -> ConvNeXt -> mean over the frequency rows -> (T, D).
Video: frames at 3 fps, shorter side 224 (decoded by ``uavm.media``) -> [0, 1] ->
ImageNet normalisation -> ConvNeXt -> mean over height and width -> (T, D).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AudioPre:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 990  # fbank frames: 990 VGGSound, 1000 AudioSet
    mean: float = -5.081  # VGGSound; AudioSet -4.2677
    std: float = 4.4849  # VGGSound; AudioSet 4.5690
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0


@dataclass
class VideoPre:
    fps: float = 3.0
    short_side: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD


@dataclass
class Preprocessing:
    audio: AudioPre = field(default_factory=AudioPre)
    video: VideoPre = field(default_factory=VideoPre)
    clip_seconds: float = 10.0  # the model's window; longer clips are analysed from a start offset
    seq_len: int = 30  # time steps the Transformer sees (pad with zeros / cut)
    feature_dtype: str = "float16"  # the released features were stored as float16; we round the same way

    def to_dict(self) -> dict:
        d = asdict(self)
        d["video"]["mean"], d["video"]["std"] = list(self.video.mean), list(self.video.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        d = dict(d)
        a, v = AudioPre(**d.pop("audio", {})), d.pop("video", {})
        v = VideoPre(**{**v, **{k: tuple(v[k]) for k in ("mean", "std") if k in v}})
        return cls(audio=a, video=v, **d)

    @classmethod
    def for_dataset(cls, dataset: str) -> "Preprocessing":
        if dataset == "audioset":
            return cls(audio=AudioPre(target_length=1000, mean=-4.2677, std=4.5690))
        if dataset == "vggsound":
            return cls()
        raise ValueError(f"unknown dataset {dataset!r} (vggsound or audioset)")


def fbank(waveform: torch.Tensor, pre: AudioPre) -> torch.Tensor:
    """(samples,) mono float waveform at pre.sample_rate -> normalised (target_length, mel) fbank."""
    w = waveform.reshape(1, -1).float()
    w = w - w.mean() if w.numel() else w
    win = int(pre.sample_rate * pre.frame_length_ms / 1000)
    if w.shape[1] >= win:
        fb = kaldi.fbank(w, htk_compat=True, sample_frequency=pre.sample_rate, use_energy=False,
                         window_type="hanning", num_mel_bins=pre.num_mel_bins, dither=0.0,
                         frame_shift=pre.frame_shift_ms, frame_length=pre.frame_length_ms)
    else:  # shorter than one window: no frame at all, all padding
        fb = w.new_zeros(0, pre.num_mel_bins)
    n = fb.shape[0]
    # zero padding happens before normalisation, exactly as the released loader does
    fb = F.pad(fb, (0, 0, 0, pre.target_length - n)) if n < pre.target_length else fb[: pre.target_length]
    return (fb - pre.mean) / pre.std


def normalize_frames(frames: np.ndarray | torch.Tensor, pre: VideoPre) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, H, W) float, ImageNet-normalised."""
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class Extractor(nn.Module):
    """A frozen timm ConvNeXt used as a feature extractor.

    spec: {"arch": timm model name, "kwargs": {...}} (kwargs override the named
    architecture, e.g. depths/dims for a size timm has no name for), "modality".
    Audio pools the last stage over frequency (one vector per time column);
    video pools each frame over height and width (one vector per frame).
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = dict(spec)
        self.modality = spec["modality"]
        if self.modality not in ("audio", "video"):
            raise ValueError(f"extractor modality must be audio or video, got {self.modality!r}")
        self.net = timm.create_model(spec["arch"], pretrained=False, **spec.get("kwargs", {}))
        self.dim = self.net.num_features
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.forward_features(x)  # (B, C, H, W); no head norm
        if self.modality == "audio":  # x: (B, 1, mel, frames) -> (B, T, C)
            return f.mean(dim=2).transpose(1, 2)
        return f.mean(dim=(2, 3))  # x: (B, 3, H, W) -> (B, C)


def round_features(x: torch.Tensor, dtype: str) -> np.ndarray:
    """Features leave the extractor as float32 numpy, rounded through ``dtype``."""
    return x.detach().to(getattr(torch, dtype)).float().cpu().numpy()


PRECISIONS = ("auto", "fp32", "bf16")


def _fast(device, precision: str = "auto"):
    """-> (autocast context, memory format) for the backbones. ``auto``: bfloat16 autocast,
    channels-last on a GPU; float32 on the CPU (where bf16 matmuls are slower on most chips)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16), torch.channels_last
    return torch.autocast(device.type, enabled=False), torch.contiguous_format


@torch.no_grad()
def audio_features_many(extractor: Extractor, fbanks: list, pre: Preprocessing, device="cpu",
                        precision: str = "auto") -> list:
    """(frames, mel) fbanks of several clips -> their (T, D) features; fbanks of one length
    share a forward pass (after pad/cut that is every clip of the usual length)."""
    ctx, fmt = _fast(device, precision)
    out = [None] * len(fbanks)
    groups: dict = {}
    for i, fb in enumerate(fbanks):
        groups.setdefault(tuple(fb.shape), []).append(i)
    for idx in groups.values():
        x = torch.stack([fbanks[i].t() for i in idx]).unsqueeze(1).to(device)  # (B, 1, mel, frames)
        with ctx:
            f = extractor(x.contiguous(memory_format=fmt)).float()
        for i, fi in zip(idx, f):
            out[i] = round_features(fi, pre.feature_dtype)
    return out


@torch.no_grad()
def video_features(extractor: Extractor, frames: np.ndarray, pre: Preprocessing, device="cpu",
                   batch_size: int = 0, precision: str = "auto") -> np.ndarray:
    """(K, H, W, 3) uint8 frames at pre.video.fps -> (K, D) features (not L2-normalised).
    Frames are independent, so several clips' frames may go through in one call."""
    if len(frames) == 0:
        return np.zeros((0, extractor.dim), np.float32)
    ctx, fmt = _fast(device, precision)
    batch_size = batch_size or (256 if torch.device(device).type == "cuda" else 16)
    out = []
    for i in range(0, len(frames), batch_size):
        # uint8 goes to the device, the normalisation runs there (4x fewer bytes copied)
        x = normalize_frames(torch.as_tensor(frames[i:i + batch_size]).to(device), pre.video)
        with ctx:
            out.append(extractor(x.contiguous(memory_format=fmt)).float())
    return round_features(torch.cat(out), pre.feature_dtype)


def to_model_input(feat: np.ndarray, seq_len: int) -> torch.Tensor:
    """(T, D) raw features -> (1, seq_len, D): zero-pad or cut, then L2-normalise each step."""
    x = torch.as_tensor(np.asarray(feat, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"features must have shape (T, D), got {tuple(x.shape)}")
    x = F.pad(x, (0, 0, 0, seq_len - x.shape[0])) if x.shape[0] < seq_len else x[:seq_len]
    return F.normalize(x, dim=-1).unsqueeze(0)

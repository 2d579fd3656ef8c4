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

from .errors import UAVMError, number

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PreprocessingError(UAVMError):
    """Preprocessing or extractor settings that cannot be used; the message names the field."""


def _check_fields(obj, limits: dict, where: str) -> None:
    for name, (lo, hi, integer) in limits.items():
        setattr(obj, name, number(f"{where} {name}", getattr(obj, name), lo, hi, integer, error=PreprocessingError))


@dataclass
class AudioPre:
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 990  # fbank frames: 990 VGGSound, 1000 AudioSet
    mean: float = -5.081  # VGGSound; AudioSet -4.2677
    std: float = 4.4849  # VGGSound; AudioSet 4.5690
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0

    def __post_init__(self):
        _check_fields(self, {"sample_rate": (1000, 384000, True), "num_mel_bins": (1, 512, True),
                             "target_length": (1, 100_000, True), "mean": (-1e6, 1e6, False),
                             "std": (1e-6, 1e6, False), "frame_shift_ms": (0.1, 1000, False),
                             "frame_length_ms": (0.1, 1000, False)}, "audio preprocessing")


@dataclass
class VideoPre:
    fps: float = 3.0
    short_side: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        _check_fields(self, {"fps": (0.1, 60, False), "short_side": (16, 4096, True)}, "video preprocessing")
        for name, lo in (("mean", -1e6), ("std", 1e-6)):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or len(v) != 3:
                raise PreprocessingError(f"video preprocessing {name} must be three numbers (R, G, B), got {v!r}")
            setattr(self, name, tuple(number(f"video preprocessing {name}", x, lo, 1e6, error=PreprocessingError)
                                      for x in v))


@dataclass
class Preprocessing:
    audio: AudioPre = field(default_factory=AudioPre)
    video: VideoPre = field(default_factory=VideoPre)
    clip_seconds: float = 10.0  # the model's window; longer clips are analysed from a start offset
    seq_len: int = 30  # time steps the Transformer sees (pad with zeros / cut)
    feature_dtype: str = "float16"  # the released features were stored as float16; we round the same way

    def __post_init__(self):
        _check_fields(self, {"clip_seconds": (0.1, 3600, False), "seq_len": (1, 4096, True)}, "preprocessing")
        if self.feature_dtype not in ("float16", "bfloat16", "float32"):
            raise PreprocessingError(f"preprocessing feature_dtype must be float16, bfloat16 or float32, "
                                     f"got {self.feature_dtype!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["video"]["mean"], d["video"]["std"] = list(self.video.mean), list(self.video.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        def obj(x, what):
            if not isinstance(x, dict):
                raise PreprocessingError(f"{what} is a JSON object, got {type(x).__name__}")
            return dict(x)

        try:
            d = obj(d, "preprocessing")
            a, v = AudioPre(**obj(d.pop("audio", {}), "audio preprocessing")), obj(d.pop("video", {}), "video preprocessing")
            return cls(audio=a, video=VideoPre(**v), **d)
        except TypeError as e:  # an unknown or missing field
            raise PreprocessingError(f"preprocessing: {e}") from None

    @classmethod
    def for_dataset(cls, dataset: str) -> Preprocessing:
        if dataset == "audioset":
            return cls(audio=AudioPre(target_length=1000, mean=-4.2677, std=4.5690))
        if dataset == "vggsound":
            return cls()
        raise PreprocessingError(f"unknown dataset {dataset!r} (vggsound or audioset)")


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


# What an extractor spec (data in a bundle's config.json) may say: a timm ConvNeXt and the
# options that shape its architecture. Anything else (checkpoint_path, pretrained_cfg_overlay,
# ...) would make timm read files or fetch weights, and is refused.
_ARCH_KWARGS = {
    "in_chans": lambda v: number("in_chans", v, 1, 4, True, PreprocessingError),
    "num_classes": lambda v: number("num_classes", v, 0, 100_000, True, PreprocessingError),
    "depths": lambda v: _ints("depths", v, 0, 64),
    "dims": lambda v: _ints("dims", v, 1, 4096),
    "kernel_sizes": lambda v: _ints("kernel_sizes", v, 1, 31) if isinstance(v, (list, tuple))
    else number("kernel_sizes", v, 1, 31, True, PreprocessingError),
    "ls_init_value": lambda v: None if v is None else number("ls_init_value", v, 0, 10, False, PreprocessingError),
    "conv_mlp": lambda v: _bool("conv_mlp", v),
    "conv_bias": lambda v: _bool("conv_bias", v),
    "use_grn": lambda v: _bool("use_grn", v),
    "head_norm_first": lambda v: _bool("head_norm_first", v),
}


def _ints(name, v, lo, hi):
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise PreprocessingError(f"extractor {name} must be a list of 4 whole numbers, got {v!r}")
    return [number(f"extractor {name}", x, lo, hi, True, PreprocessingError) for x in v]


def _bool(name, v):
    if not isinstance(v, bool):
        raise PreprocessingError(f"extractor {name} must be true or false, got {v!r}")
    return v


def check_extractor_spec(spec) -> dict:
    """The spec with its arch and kwargs checked, or a one-line PreprocessingError."""
    if not isinstance(spec, dict):
        raise PreprocessingError(f"an extractor spec is a JSON object, got {type(spec).__name__}")
    unknown = set(spec) - {"arch", "kwargs", "modality", "weights"}
    if unknown:
        raise PreprocessingError(f"extractor spec: unknown keys {sorted(map(str, unknown))}")
    arch = spec.get("arch")
    if not (isinstance(arch, str) and arch.startswith("convnext") and timm.is_model(arch)):
        raise PreprocessingError(f"extractor arch must be one of timm's ConvNeXt models, got {arch!r}")
    if spec.get("modality") not in ("audio", "video"):
        raise PreprocessingError(f"extractor modality must be audio or video, got {spec.get('modality')!r}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise PreprocessingError(f"extractor kwargs is a JSON object, got {type(kwargs).__name__}")
    bad = sorted(map(str, set(kwargs) - set(_ARCH_KWARGS)))
    if bad:
        raise PreprocessingError(f"extractor kwargs may only shape the architecture ({', '.join(sorted(_ARCH_KWARGS))}); "
                                 f"refused: {', '.join(bad)}")
    return {**spec, "kwargs": {k: _ARCH_KWARGS[k](v) for k, v in kwargs.items()}}


class Extractor(nn.Module):
    """A frozen timm ConvNeXt used as a feature extractor.

    spec: {"arch": timm model name, "kwargs": {...}} (kwargs override the named
    architecture, e.g. depths/dims for a size timm has no name for), "modality".
    Audio pools the last stage over frequency (one vector per time column);
    video pools each frame over height and width (one vector per frame).
    """

    def __init__(self, spec: dict):
        super().__init__()
        spec = check_extractor_spec(spec)
        self.spec = dict(spec)
        self.modality = spec["modality"]
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


def cpu_bf16() -> str:
    """Which native bfloat16 units this CPU has, by PyTorch's own query ("" if none):
    AMX-BF16 tiles or AVX512-BF16 instructions. Without them bf16 is emulated, and slower."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # an older torch: its private per-feature queries
        caps = {"amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)(),
                "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()}
    return " and ".join(n for k, n in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if caps.get(k))


def choose_precision(device, precision: str = "auto") -> tuple:
    """-> ("fp32" or "bf16", why). ``auto``: bf16 (autocast, channels-last) on a GPU and on a
    CPU with native bf16 units; fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise PreprocessingError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision, "asked for"
    if torch.device(device).type == "cuda":
        return "bf16", "auto: a GPU"
    units = cpu_bf16()
    return ("bf16", f"auto: the CPU has {units}") if units else ("fp32", "auto: the CPU has no native bf16 units")


def _fast(device, precision: str = "auto"):
    """-> (autocast context, memory format) for the backbones (see ``choose_precision``)."""
    device = torch.device(device)
    if choose_precision(device, precision)[0] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), torch.channels_last
    if device.type == "cuda":  # fp32 means fp32: PyTorch lets cuDNN run fp32 convolutions in TF32
        return _cudnn_without_tf32(), torch.contiguous_format
    return torch.autocast(device.type, enabled=False), torch.contiguous_format


class _cudnn_without_tf32:
    """fp32 convolutions in IEEE fp32 while entered (the flag restored after); reusable, like
    the autocast context it stands in for."""

    def __enter__(self):
        self._was = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32 = self._was


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
        raise PreprocessingError(f"features must have shape (T, D), got {tuple(x.shape)}")
    x = F.pad(x, (0, 0, 0, seq_len - x.shape[0])) if x.shape[0] < seq_len else x[:seq_len]
    return F.normalize(x, dim=-1).unsqueeze(0)

"""The authors' released files (github.com/YuanGongND/uavm): where they live, which of
them each released model needs, and their conversion into bundles. Nothing else in uavm
knows their key names. (Fetching them, by name, is ``uavm.hub``.)

Loads are strict: every key of a checkpoint is either used or known to be unused
by the released code (and listed), every shape is checked, and nothing pickled is
ever executed (``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Optional

import torch

from .bundle import Label, read_labels, save_bundle
from .errors import UAVMError
from .features import Extractor, Preprocessing
from .files import sha256
from .model import UAVM, ModelConfig

_DBX = "https://www.dropbox.com/s/"
_GH = "https://raw.githubusercontent.com/YuanGongND/uavm/b3120c7482260ac3c4700ab88c8b85627b077ec2/egs/"
_RUN = "-lr{lr}-bs-144-balbal-mix0.5-ls1-ld0.5-lst1-lda{lda}-e1024-se1024-h4-di{di}-ds{ds}-asl30-vsl30-normTrue-feat2-a0.5-noiseTrue"

# name -> (url, file name). Names are what `uavm download NAME` takes.
RELEASE = {
    "vggsound-audio-extractor": (_DBX + "aduqm8m4gpjaygh/vgg_audio_feat.pth?dl=1", "vgg_audio_feat.pth"),
    "audioset-audio-extractor": (_DBX + "ld2q0bsyiwzia86/as_audio_feat.pth?dl=1", "as_audio_feat.pth"),
    "vggsound-uavm": (_DBX + "llvbyfokp4gxxwd/testfm66-vgg-unified_trans" + _RUN.format(lr="5e-5", lda="False", di=3, ds=3) + "-r1.pth?dl=1", "vggsound-uavm.pth"),
    "vggsound-independent": (_DBX + "exde913yrqovesp/testfm66-vgg-unified_trans" + _RUN.format(lr="5e-5", lda="False", di=6, ds=0) + "-r1.pth?dl=1", "vggsound-independent.pth"),
    "vggsound-cross-modal": (_DBX + "twafscfsk3789gj/testfm75-vgg-full_att_trans" + _RUN.format(lr="5e-5", lda="True", di=3, ds=3) + "-r1.pth?dl=1", "vggsound-cross-modal.pth"),
    "audioset-uavm": (_DBX + "1gni463q67yx47z/testfm74-full-unified_trans" + _RUN.format(lr="1e-5", lda="False", di=3, ds=3) + "-r1.pth?dl=1", "audioset-uavm.pth"),
    "audioset-independent": (_DBX + "f690u566mgo8k2r/testfm74-full-unified_trans" + _RUN.format(lr="1e-5", lda="False", di=6, ds=0) + "-r1.pth?dl=1", "audioset-independent.pth"),
    "audioset-cross-modal": (_DBX + "wlhul07vvcmu1y3/testfm74-full-full_att_trans" + _RUN.format(lr="1e-5", lda="False", di=3, ds=3) + ".pth?dl=1", "audioset-cross-modal.pth"),
    "vggsound-labels": (_GH + "vggsound/datafile/class_labels_indices_vgg.csv", "class_labels_indices_vgg.csv"),
    "audioset-labels": (_GH + "audioset/datafile/class_labels_indices.csv", "class_labels_indices.csv"),
    "video-extractor": ("https://download.pytorch.org/models/convnext_base-6075fbad.pth", "convnext_base-6075fbad.pth"),
}

# The release publishes no checksums. torchvision names its files NAME-<the first hex digits
# of the file's SHA-256>.pth, so that prefix is known in advance: file name -> pinned prefix.
PINNED_SHA256 = {"convnext_base-6075fbad.pth": "6075fbad"}

# model name -> (dataset, kind as read off the file, what it is: the paper's Table I)
MODELS = {
    "vggsound-uavm": ("vggsound", "unified", "VGGSound UAVM (N=3, Ns=3, S_dim=1024), 309 classes"),
    "vggsound-independent": ("vggsound", "independent", "VGGSound modality-independent (N=6, Ns=0), 309 classes"),
    "vggsound-cross-modal": ("vggsound", "cross_modal", "VGGSound cross-modal attention (N=3, Ns=3), 309 classes"),
    "audioset-uavm": ("audioset", "unified", "AudioSet UAVM (N=3, Ns=3, S_dim=1024), 527 classes"),
    "audioset-independent": ("audioset", "independent", "AudioSet modality-independent (N=6, Ns=0), 527 classes"),
    "audioset-cross-modal": ("audioset", "cross_modal", "AudioSet cross-modal attention (N=3, Ns=3), 527 classes"),
}


def files_for(model: str) -> dict:
    """The release files a model needs, by role: its checkpoint, its dataset's audio
    extractor, the video extractor (shared by all) and its label list."""
    if model not in MODELS:
        raise UAVMError(f"unknown released model {model!r}; one of: {', '.join(MODELS)}")
    dataset = MODELS[model][0]
    return {"model": model, "audio": f"{dataset}-audio-extractor", "video": "video-extractor",
            "labels": f"{dataset}-labels"}


class CheckpointError(UAVMError):
    """A .pth file that is not a released checkpoint of the expected kind."""


# -- reading ----------------------------------------------------------------------------
def read_state_dict(path) -> dict:
    """A plain tensor state dict from a .pth file, without running any pickled code."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: refused: the file holds pickled objects other than tensors, "
                              f"which are never executed ({first[:160]})") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(sd).__name__}")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:3]}")
    return sd


def _strip(sd: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _count(sd: dict, prefix: str) -> int:
    ids = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    if ids and ids != set(range(len(ids))):
        raise CheckpointError(f"layers under {prefix} are not numbered 0..n-1: {sorted(ids)}")
    return len(ids)


def _shape(sd, key, path):
    if key not in sd:
        raise CheckpointError(f"{path}: missing key {key}")
    return tuple(sd[key].shape)


def _fill(module: torch.nn.Module, mapped: dict, source: dict, path, what: str, reshape=None) -> None:
    """Load ``mapped`` (own name -> official name) into ``module``: every own key must be
    mapped, every shape must agree. ``reshape`` may adapt a tensor that the two layouts
    store in different shapes (same numbers)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise CheckpointError(f"{path}: not a {what} checkpoint: no weights for {missing[:3]}")
    new = {}
    for k, src in mapped.items():
        if k not in own:
            raise CheckpointError(f"{path}: {src} has no place in the {what} ({k})")
        t = source[src]
        if reshape is not None:
            t = reshape(k, t, own[k])
        if tuple(t.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{path}: {src} has shape {tuple(source[src].shape)}, "
                                  f"expected {tuple(own[k].shape)}")
        new[k] = t.float()
    module.load_state_dict(new, strict=True)


# -- the Transformer ---------------------------------------------------------------------
_STACKS = {"a_trans": "specific.audio", "v_trans": "specific.video", "s_trans": "shared",
           "a_s_trans": "upper.audio", "v_s_trans": "upper.video"}
_SEQS = {"a_in_proj": "specific.audio", "v_in_proj": "specific.video", "a_mlp": "heads.audio", "v_mlp": "heads.video"}


def infer_model_config(sd: dict, path="checkpoint", num_heads: int = 4) -> ModelConfig:
    """The architecture (kind, N, Ns, S_dim, widths, classes) read off a released state dict."""
    sd = _strip(sd, "module.") or sd
    has = lambda p: any(k.startswith(p + ".") or k == p for k in sd)
    if not (has("a_trans") or has("a_in_proj")) or not (has("v_trans") or has("v_in_proj")):
        raise CheckpointError(f"{path}: not a UAVM-family checkpoint (no a_trans/a_in_proj and v_trans/v_in_proj); "
                              f"first keys: {list(sd)[:3]}")
    n = _count(sd, "a_trans.blocks.")
    if n != _count(sd, "v_trans.blocks."):
        raise CheckpointError(f"{path}: audio and video have different numbers of modality-specific layers")
    if n:
        _, seq_len, embed = _shape(sd, "a_trans.pos_embed", path)
        audio_dim = _shape(sd, "a_trans.in_layernorm.weight", path)[0]
        video_dim = _shape(sd, "v_trans.in_layernorm.weight", path)[0]
    else:
        seq_len = 30
        embed, audio_dim = _shape(sd, "a_in_proj.1.weight", path)
        video_dim = _shape(sd, "v_in_proj.1.weight", path)[1]
    if has("s_trans"):
        ns = _count(sd, "s_trans.blocks.")
        _, s_seq, shared = _shape(sd, "s_trans.pos_embed", path)
        classes = _shape(sd, "s_trans.mlp_head.1.weight", path)[0]
        if not n:
            seq_len = s_seq if s_seq != 60 else 30
        kind = "cross_modal" if s_seq == 2 * seq_len else "unified"
        if kind == "unified" and s_seq != seq_len:
            raise CheckpointError(f"{path}: shared positions ({s_seq}) fit neither {seq_len} nor {2 * seq_len} tokens")
    elif has("a_s_trans"):
        kind, ns = "independent", _count(sd, "a_s_trans.blocks.")
        shared = _shape(sd, "a_s_trans.pos_embed", path)[2]
        classes = _shape(sd, "a_s_trans.mlp_head.1.weight", path)[0]
    else:
        kind, ns, shared = "independent", 0, embed
        classes = _shape(sd, "a_mlp.1.weight", path)[0]
    blocks = [k for k in sd if re.match(r"\w+\.blocks\.0\.mlp\.fc1\.weight$", k)]
    ratio = sd[blocks[0]].shape[0] / sd[blocks[0]].shape[1] if blocks else 4.0
    try:
        return ModelConfig(kind=kind, num_classes=classes, n_specific=n, n_shared=ns, embed_dim=embed,
                           shared_dim=shared, num_heads=num_heads, seq_len=seq_len, audio_dim=audio_dim,
                           video_dim=video_dim, mlp_ratio=ratio)
    except UAVMError as e:
        raise CheckpointError(f"{path}: {e}") from None


def convert_model(sd: dict, path="checkpoint", num_heads: int = 4) -> tuple[UAVM, list]:
    """-> (the model with the released weights, the released keys it does not use).

    The unused keys are exactly those the released code builds but never applies:
    the modality-specific stacks' classification heads, and each stack's input
    projection where its input and embedding widths are equal."""
    cfg = infer_model_config(sd, path, num_heads)
    prefix = "module." if any(k.startswith("module.") for k in sd) else ""
    sd = _strip(sd, prefix) if prefix else sd
    model = UAVM(cfg)
    mapped, unused = {}, []
    top_stacks = {"s_trans", "a_s_trans", "v_s_trans"}
    for k in sd:
        head, _, rest = k.partition(".")
        if head in _STACKS:
            in_dim = _shape(sd, f"{head}.in_layernorm.weight", path)[0]
            dim = _shape(sd, f"{head}.pos_embed", path)[2]
            if rest.startswith("mlp_head.") and head not in top_stacks:
                unused.append(prefix + k)
                continue
            if rest.startswith("in_proj.") and in_dim == dim:
                unused.append(prefix + k)
                continue
            rest = rest.replace("in_layernorm.", "in_norm.", 1).replace("mlp_head.", "head.", 1)
            mapped[f"{_STACKS[head]}.{rest}"] = k
        elif head in _SEQS:
            mapped[f"{_SEQS[head]}.{rest}"] = k
        else:
            raise CheckpointError(f"{path}: unexpected key {prefix}{k}")
    _fill(model, mapped, sd, path, f"{cfg.kind} model")
    return model.eval(), unused


# -- ConvNeXt extractors ----------------------------------------------------------------
def _convnext_map(sd: dict, path) -> tuple[dict, dict]:
    """torchvision ConvNeXt names (``features.*``, ``classifier.*``) -> timm names; and the
    architecture read off the shapes."""
    mapped, dims, depths = {}, [], []
    for k in sd:
        m = re.match(r"features\.(\d+)\.(.+)$", k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            if i == 0:
                new = "stem." + rest
            elif i % 2 == 0:
                new = f"stages.{i // 2}.downsample.{rest}"
            else:
                b = re.match(r"(\d+)\.(block\.(\d+)\.(weight|bias)|layer_scale)$", rest)
                if not b:
                    raise CheckpointError(f"{path}: unexpected ConvNeXt key {k}")
                if b.group(2) == "layer_scale":
                    part = "gamma"
                else:
                    part = {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}.get(b.group(3))
                    if part is None:
                        raise CheckpointError(f"{path}: unexpected ConvNeXt key {k}")
                    part += "." + b.group(4)
                new = f"stages.{i // 2}.blocks.{b.group(1)}.{part}"
        elif k.startswith("classifier.0."):
            new = "head.norm." + k[len("classifier.0."):]
        elif k.startswith("classifier.2."):
            new = "head.fc." + k[len("classifier.2."):]
        else:
            raise CheckpointError(f"{path}: unexpected key {k} for a torchvision ConvNeXt")
        mapped[new] = k
    if "features.0.0.weight" not in sd or "classifier.2.weight" not in sd:
        raise CheckpointError(f"{path}: not a torchvision ConvNeXt (no features.0.0 stem or classifier.2)")
    stem = sd["features.0.0.weight"]
    dims.append(stem.shape[0])
    for s in range(4):
        depths.append(_count(sd, f"features.{2 * s + 1}."))
        if s:
            dims.append(_shape(sd, f"features.{2 * s}.1.weight", path)[0])
    if min(depths) == 0:
        raise CheckpointError(f"{path}: a ConvNeXt stage has no blocks (depths {depths})")
    arch = {"arch": "convnext_base", "kwargs": {"in_chans": int(stem.shape[1]), "num_classes": int(sd["classifier.2.weight"].shape[0]),
                                                 "depths": depths, "dims": dims}}
    return mapped, arch


def convert_extractor(sd: dict, modality: str, path="checkpoint") -> Extractor:
    """A released audio extractor (``module.model.0`` = torchvision features, ``module.model.2``
    = classifier, 1-channel stem) or torchvision's ImageNet ConvNeXt -> a timm Extractor."""
    if any(k.startswith("module.model.") for k in sd):
        inner = _strip(sd, "module.model.")
        tv = {}
        for k, v in inner.items():
            idx, _, rest = k.partition(".")
            if idx not in ("0", "2"):
                raise CheckpointError(f"{path}: unexpected key module.model.{k}")
            tv[("features." if idx == "0" else "classifier.") + rest] = v
        sd = tv
    else:
        sd = _strip(sd, "module.") or sd
    mapped, spec = _convnext_map(sd, path)
    chans = spec["kwargs"]["in_chans"]
    if (modality == "audio") != (chans == 1):
        raise CheckpointError(f"{path}: a {modality} extractor needs a {1 if modality == 'audio' else 3}-channel "
                              f"stem, this one has {chans}")
    e = Extractor({**spec, "modality": modality})
    # torchvision keeps layer_scale as (C, 1, 1), timm its gamma as (C,)
    flat = lambda k, t, want: t.reshape(-1) if k.endswith(".gamma") and t.dim() == 3 and t.shape[1:] == (1, 1) else t
    _fill(e.net, mapped, sd, path, f"{modality} ConvNeXt", reshape=flat)
    return e.eval()


# -- labels -----------------------------------------------------------------------------
def official_labels(path, dataset: str) -> list:
    """The authors' label CSV. VGGSound writes commas in names as '_'; we show them as commas."""
    labels = read_labels(path)
    if dataset == "vggsound":
        labels = [Label(l.index, l.mid, l.name.replace("_", ",")) for l in labels]
    return labels


def import_official(model_path, out, *, audio_extractor=None, video_extractor=None, labels=None,
                    dataset: Optional[str] = None, num_heads: int = 4, extractor_files: Optional[dict] = None,
                    log=print) -> Path:
    """Convert released files into a bundle at ``out``. ``extractor_files`` (modality -> a
    path relative to ``out``, see ``save_bundle``) makes the bundle refer to extractor weights
    already written in a shared extractor set instead of holding its own copy."""
    sd = read_state_dict(model_path)
    model, unused = convert_model(sd, model_path, num_heads)
    classes = model.cfg.num_classes
    dataset = dataset or {309: "vggsound", 527: "audioset"}.get(classes)
    if dataset is None:
        raise CheckpointError(f"{model_path}: {classes} classes; say --dataset vggsound or audioset")
    pre = Preprocessing.for_dataset(dataset)
    if labels:
        label_list = official_labels(labels, dataset)
        if len(label_list) != classes:
            raise CheckpointError(f"{labels}: {len(label_list)} labels, the model has {classes} classes")
    else:
        label_list = [Label(i, f"class_{i}", f"class {i}") for i in range(classes)]
    extractors, files = {}, {}
    for m, p in (("audio", audio_extractor), ("video", video_extractor)):
        if p:
            extractors[m] = convert_extractor(read_state_dict(p), m, p)
            files[m] = sha256(p)
    prov = {"source": "official release, github.com/YuanGongND/uavm",
            "model_file": Path(model_path).name, "model_sha256": sha256(model_path),
            "extractor_sha256": files, "labels": Path(labels).name if labels else None,
            "unused_released_keys": unused}
    out = save_bundle(out, model, pre, label_list, extractors=extractors, extractor_files=extractor_files,
                      task={"loss": "bce" if dataset == "audioset" else "ce", "dataset": dataset},
                      provenance=prov, name=f"official {dataset} {model.cfg.kind}")
    c = model.cfg
    log(f"imported {c.kind} model: N={c.n_specific} Ns={c.n_shared} S_dim={c.shared_dim} classes={classes} "
        f"({len(unused)} released keys unused by the released code) -> {out}")
    return out

"""The one on-disk model format: a folder holding

    config.json          architecture, preprocessing, task, provenance, file names
    model.safetensors    the Transformer (UAVM or a baseline)
    labels.csv           index,mid,display_name (the authors' label-list format)
    *.safetensors        the audio / video ConvNeXt extractors (optional; a
                         relative path may point to a file shared by several bundles)
    ood.safetensors      the familiarity statistics (optional; ``uavm.ood``)

The demo model, converted official checkpoints and models trained here all load
through ``load_bundle``. Weights are only ever read as safetensors.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import UAVMError
from .features import Extractor, Preprocessing
from .files import atomic, write_text
from .model import UAVM, ModelConfig
from .ood import Familiarity, FamiliarityError
from .ood import read as read_familiarity
from .ood import write as write_familiarity

FORMAT, EXTRACTORS_FORMAT, VERSION = "uavm-bundle", "uavm-extractors", 1
MODALITIES = ("audio", "video")


class BundleError(UAVMError):
    """A bundle folder that cannot be loaded; the message says why."""


@dataclass
class Label:
    index: int
    mid: str
    name: str


@dataclass
class Bundle:
    path: Optional[Path]
    config: dict
    model: UAVM
    extractors: dict  # modality -> Extractor (absent when the bundle has none for it)
    preprocessing: Preprocessing
    labels: list
    ood: Optional[Familiarity] = None  # the familiarity statistics, when the bundle has them

    @property
    def name(self) -> str:
        return self.config.get("name") or (self.path.name if self.path else "unnamed")

    @property
    def multilabel(self) -> bool:
        """AudioSet-style (sigmoid scores, mAP) rather than single-label (softmax, accuracy)."""
        return self.config.get("task", {}).get("loss") == "bce"

    def to(self, device):
        self.model.to(device)
        for e in self.extractors.values():
            e.to(device)
        if self.ood is not None:
            self.ood.to(device)
        return self


def read_labels(path) -> list:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BundleError(f"{path}: not a readable label list ({type(e).__name__})") from None
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise BundleError(f"{path}: a label list needs the columns index,mid,display_name")
    try:
        labels = [Label(int(r["index"]), str(r["mid"]), str(r["display_name"])) for r in rows]
    except (TypeError, ValueError):
        raise BundleError(f"{path}: label indices must be whole numbers") from None
    if [l.index for l in labels] != list(range(len(labels))):
        raise BundleError(f"{path}: label indices must run 0..{len(labels) - 1} in order")
    return labels


def write_labels(path, labels) -> None:
    with atomic(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for l in labels:
            w.writerow([l.index, l.mid, l.name])


def _save_tensors(module_or_sd, path: Path) -> None:
    sd = module_or_sd.state_dict() if hasattr(module_or_sd, "state_dict") else module_or_sd
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}
    with atomic(path) as tmp:
        save_file(sd, str(tmp))


def save_bundle(out, model: UAVM, preprocessing: Preprocessing, labels: list, *,
                extractors: Optional[dict] = None, extractor_files: Optional[dict] = None,
                task: Optional[dict] = None, provenance: Optional[dict] = None, name: str = "",
                share_extractors: bool = False, ood: Optional[Familiarity] = None) -> Path:
    """Write a bundle folder. ``extractors`` are saved into it, unless ``extractor_files``
    names an existing file (relative to ``out``) to share, e.g. ``../extractors/audio.safetensors``,
    or ``share_extractors`` refers to the files the extractors were loaded from."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if len(labels) != model.cfg.num_classes:
        raise BundleError(f"{len(labels)} labels for a model with {model.cfg.num_classes} classes")
    cfg = {"format": FORMAT, "version": VERSION, "name": name or out.name,
           "task": task or {"loss": "ce"}, "model": model.cfg.to_dict(), "weights": "model.safetensors",
           "preprocessing": preprocessing.to_dict(), "labels": "labels.csv",
           "provenance": provenance or {}}
    _save_tensors(model, out / "model.safetensors")
    write_labels(out / "labels.csv", labels)
    extractors, extractor_files = extractors or {}, dict(extractor_files or {})
    for m in MODALITIES:
        if m not in extractors:
            cfg[f"{m}_extractor"] = None
            continue
        e = extractors[m]
        if m not in extractor_files and getattr(e, "weights_path", None) is not None and share_extractors:
            rel = os.path.relpath(e.weights_path, out.resolve())
            if _shareable(out, rel):  # else the bundle gets its own copy: it may only point beside itself
                extractor_files[m] = rel
        fname = extractor_files.get(m, f"{m}_extractor.safetensors")
        if m not in extractor_files:
            _save_tensors(e.net, out / fname)
        spec = {k: v for k, v in e.spec.items() if k != "weights"}
        cfg[f"{m}_extractor"] = {**spec, "weights": fname}
    write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    if ood is not None:
        write_familiarity(out, ood)
    return out


def _is_extractor_set(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("format") == EXTRACTORS_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _inside(root: Path, name, shared: bool = False) -> Optional[Path]:
    """Where a file a bundle names lies, if it is allowed to: inside the bundle folder, or
    (``shared``: extractor weights) directly inside an extractor set beside it, such as
    ``../extractors/audio.safetensors``. Symbolic links are followed before the check."""
    if not isinstance(name, str) or not name or "\0" in name or Path(name).is_absolute():
        return None
    home = root.resolve()
    p = (home / name).resolve()
    if p.is_relative_to(home):
        return p
    if shared and p.is_relative_to(home.parent):
        rel = p.relative_to(home.parent).parts
        if len(rel) == 2 and _is_extractor_set(home.parent / rel[0]):
            return p
    return None


def _shareable(out: Path, rel: str) -> bool:
    return _inside(out, rel, shared=True) is not None


def _resolve(root: Path, name, what: str = "weight", shared: bool = False) -> Path:
    p = _inside(root, name, shared)
    if p is None:
        where = "inside the bundle folder" + (" or an extractor set beside it" if shared else "")
        raise BundleError(f"{root}: {what} file names must be relative paths {where}, got {name!r}")
    if not p.is_file():
        raise BundleError(f"{root}: missing {what} file {name}")
    return p


def _load_strict(build, path: Path, what: str):
    """``build()`` a module and load ``path`` into it, strictly. Names and shapes are checked
    against the file's header on a skeleton without memory first, so a config that asks for
    an enormous model is refused before anything is allocated."""
    try:
        with safe_open(str(path), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise BundleError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    part = lambda mod: mod.net if isinstance(mod, Extractor) else mod  # an extractor's file holds its network
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in part(build()).state_dict().items()}
    missing, unexpected = sorted(set(own) - set(shapes)), sorted(set(shapes) - set(own))
    if missing or unexpected:
        raise BundleError(f"{path}: {what} weights do not match the config "
                          f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                          f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    for k, shape in shapes.items():
        if shape != own[k]:
            raise BundleError(f"{path}: {what} weight {k} has shape {shape}, the config needs {own[k]}")
    module = build()
    try:
        sd = load_file(str(path))
    except Exception as e:
        raise BundleError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    part(module).load_state_dict(sd, strict=True)
    return module


def _read_config(root: Path, formats) -> dict:
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise BundleError(f"{root}: not a uavm bundle (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSON and Unicode errors
        raise BundleError(f"{cfg_path}: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(cfg, dict) or cfg.get("format") not in formats:
        raise BundleError(f"{cfg_path}: not a uavm bundle config (format must be {' or '.join(map(repr, formats))})")
    return cfg


def _extractors(root: Path, cfg: dict) -> dict:
    extractors = {}
    for m in MODALITIES:
        spec = cfg.get(f"{m}_extractor")
        if not spec:
            continue
        if not isinstance(spec, dict):
            raise BundleError(f"{root / 'config.json'}: {m}_extractor must be an object or null")
        spec = {**spec, "modality": m}
        try:
            with torch.device("meta"):
                Extractor(spec)  # the spec is checked (and the shapes known) before any weight is read
        except UAVMError as err:
            raise BundleError(f"{root / 'config.json'}: {m} extractor: {err}") from None
        path = _resolve(root, spec.get("weights", ""), shared=True)
        e = _load_strict(lambda spec=spec: Extractor(spec), path, f"{m} extractor")
        e.weights_path = path
        extractors[m] = e.eval()
    return extractors


def load_extractors(path, device="cpu") -> tuple[dict, Preprocessing]:
    """The extractors and preprocessing of a bundle or of an extractor set
    (a folder whose config.json has format "uavm-extractors")."""
    root = Path(path)
    cfg = _read_config(root, (FORMAT, EXTRACTORS_FORMAT))
    try:
        pre = Preprocessing.from_dict(cfg["preprocessing"])
    except KeyError:
        raise BundleError(f"{root / 'config.json'}: no preprocessing") from None
    except UAVMError as e:
        raise BundleError(f"{root / 'config.json'}: {e}") from None
    return {m: e.to(device) for m, e in _extractors(root, cfg).items()}, pre


def save_extractors(out, extractors: dict, preprocessing: Preprocessing, provenance: Optional[dict] = None) -> Path:
    """An extractor set: the frozen extractors and their preprocessing, shared by bundles."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"format": EXTRACTORS_FORMAT, "version": VERSION, "preprocessing": preprocessing.to_dict(),
           "provenance": provenance or {}}
    for m in MODALITIES:
        cfg[f"{m}_extractor"] = None
        if m in extractors:
            _save_tensors(extractors[m].net, out / f"{m}.safetensors")
            cfg[f"{m}_extractor"] = {**{k: v for k, v in extractors[m].spec.items() if k != "weights"},
                                     "weights": f"{m}.safetensors"}
    write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    return out


def load_bundle(path, device="cpu") -> Bundle:
    root = Path(path)
    cfg_path = root / "config.json"
    cfg = _read_config(root, (FORMAT,))
    if cfg.get("version") != VERSION:
        raise BundleError(f"{cfg_path}: bundle version {cfg.get('version')!r}, this uavm reads version {VERSION}")
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        pre = Preprocessing.from_dict(cfg["preprocessing"])
    except KeyError as e:
        raise BundleError(f"{cfg_path}: no {e.args[0]} config") from None
    except TypeError as e:  # a missing or unknown field
        raise BundleError(f"{cfg_path}: bad model config ({e})") from None
    except UAVMError as e:
        raise BundleError(f"{cfg_path}: {e}") from None
    if mcfg.seq_len != pre.seq_len:
        raise BundleError(f"{cfg_path}: model seq_len {mcfg.seq_len} != preprocessing seq_len {pre.seq_len}")
    if not isinstance(cfg.get("task", {}), dict):
        raise BundleError(f"{cfg_path}: task must be an object")
    model = _load_strict(lambda: UAVM(mcfg), _resolve(root, cfg.get("weights", "model.safetensors")), "model")
    labels = read_labels(_resolve(root, cfg.get("labels", "labels.csv"), "label"))
    if len(labels) != mcfg.num_classes:
        raise BundleError(f"{root}: {len(labels)} labels for a model with {mcfg.num_classes} classes")
    extractors = _extractors(root, cfg)
    for m, e in extractors.items():
        if e.dim != getattr(mcfg, f"{m}_dim"):
            raise BundleError(f"{cfg_path}: the {m} extractor gives {e.dim}-d features, the model takes "
                              f"{getattr(mcfg, f'{m}_dim')}")
    try:
        ood = read_familiarity(root, cfg.get("ood"), mcfg)
    except FamiliarityError as e:
        raise BundleError(str(e)) from None
    model.eval()
    return Bundle(root, cfg, model, extractors, pre, labels, ood).to(device)


SIZES = {
    # tiny: for tests; paper: the paper's base configuration (ConvNeXt-Base x 2, N = Ns = 3, 1024 wide)
    "tiny": dict(model=dict(num_classes=5, n_specific=1, n_shared=1, embed_dim=64, shared_dim=32,
                            audio_dim=64, video_dim=64),
                 convnext=dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64])),
    "paper": dict(model=dict(num_classes=309), convnext=dict(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024])),
}


def random_bundle(out, size: str = "tiny", seed: int = 0, kind: str = "unified", **model_overrides) -> Path:
    """A randomly initialised bundle with extractors: for tests and benchmarks, never for answers."""
    torch.manual_seed(seed)
    s = SIZES[size]
    model = UAVM(ModelConfig(kind=kind, **{**s["model"], **model_overrides}))
    extractors = {m: Extractor({"arch": "convnext_base", "modality": m,
                                "kwargs": {"in_chans": 1 if m == "audio" else 3, "num_classes": 0, **s["convnext"]}})
                  for m in MODALITIES}
    labels = [Label(i, f"class_{i}", f"class {i}") for i in range(model.cfg.num_classes)]
    return save_bundle(out, model, Preprocessing(), labels, extractors=extractors,
                       provenance={"source": f"random initialisation, seed {seed}"}, name=f"random {size} {kind}")

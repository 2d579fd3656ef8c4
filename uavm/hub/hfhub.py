"""The Hugging Face Hub: ``hf-hub:ORG/NAME[@REVISION]`` pulled through huggingface_hub and
its cache into ``CACHE/hf-hub``, and a bundle pushed to a Hub repository."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from .. import __version__
from ..bundle import FORMAT, MODALITIES, load_bundle
from ..errors import UAVMError, one_line
from ..files import write_json, write_text
from .integrity import (
    IntegrityError,
    _digest,
    _locked,
    _plain_relative,
    _say,
    _staging,
    _sweep,
    _write_sums,
    cache_dir,
    check_folder,
)

HF = "hf-hub:"
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_REV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,254}")


def _hf_spec(spec: str, revision: bool = True) -> tuple:
    body = spec[len(HF):] if spec.startswith(HF) else spec
    repo, at, rev = body.partition("@")
    ok = _REPO.fullmatch(repo) and ".." not in repo and (not at or (revision and _REV.fullmatch(rev) and ".." not in rev))
    if not ok:
        raise UAVMError(f"{spec!r}: a Hub model is hf-hub:ORG/NAME" + (" or hf-hub:ORG/NAME@REVISION" if revision else ""))
    return repo, rev or None


def _hf():
    try:
        import huggingface_hub
    except ImportError:
        raise UAVMError("hf-hub: models need huggingface_hub (pip install huggingface_hub)") from None
    return huggingface_hub


def _hf_file(hf, repo: str, fname: str, rev) -> Path:
    from huggingface_hub import constants
    from huggingface_hub import errors as err

    try:
        return Path(hf.hf_hub_download(repo, fname, revision=rev, library_name="uavm", library_version=__version__))
    except err.LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise UAVMError(f"hf-hub:{repo}: {fname} is not in the Hugging Face cache and {why}") from None
    except err.EntryNotFoundError:
        raise UAVMError(f"hf-hub:{repo}: the repository has no {fname}") from None
    except (OSError, ValueError, getattr(err, "XetDownloadError", OSError)) as e:  # HTTP errors are OSErrors
        raise UAVMError(f"hf-hub:{repo}: {fname}: {one_line(e)[:200]}") from None


def _bundle_files(cfg: dict, spec: str) -> list:
    """The files a bundle config names, each a plain path inside the bundle (else refused)."""
    weights = [cfg.get("weights", "model.safetensors")]
    for m in MODALITIES:
        e = cfg.get(f"{m}_extractor")
        if e is not None:
            weights.append(e.get("weights") if isinstance(e, dict) else None)
    for n in weights + [cfg.get("labels", "labels.csv")]:
        if not _plain_relative(n):
            raise UAVMError(f"{spec}: refused: the bundle names a file outside itself ({str(n)[:80]!r}); a Hub "
                            f"bundle must hold every file it uses (uavm push makes such a copy)")
    bad = [w for w in weights if not w.endswith(".safetensors")]
    if bad:
        raise UAVMError(f"{spec}: refused: weights must be safetensors files, not {bad[0]!r}")
    return list(dict.fromkeys(weights + [cfg.get("labels", "labels.csv")]))


def _check_blob(path: Path) -> None:
    """The Hugging Face cache names a blob by its content: LFS files by their SHA-256,
    other files by their git blob SHA-1. A blob that does not match was damaged."""
    name = path.name
    if re.fullmatch(r"[0-9a-f]{64}", name):
        ok = _digest(path) == name
    elif re.fullmatch(r"[0-9a-f]{40}", name):
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
        ok = h.hexdigest() == name
    else:
        return
    if not ok:
        raise IntegrityError(f"{path}: its content does not match its name in the Hugging Face cache; delete the "
                             f"repository from that cache (`hf cache delete`) and fetch it again")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(src, dst)


def from_hf_hub(spec: str, cache=None, log=_say) -> Path:
    """A uavm bundle from a Hub repository (through huggingface_hub, its cache and
    HF_HUB_OFFLINE): only the files its config names are fetched, after the config shows
    it is a uavm bundle; they are copied out of the Hub cache (whose files are links to
    blobs elsewhere) into CACHE/hf-hub/ORG--NAME/COMMIT, checked on every use."""
    repo, rev = _hf_spec(spec)
    hf = _hf()
    cfg_path = _hf_file(hf, repo, "config.json", rev)
    commit = cfg_path.parent.name
    if not re.fullmatch(r"[0-9a-f]{40}", commit) or cfg_path.parent.parent.name != "snapshots":
        raise UAVMError(f"{spec}: unexpected Hugging Face cache layout at {cfg_path}")
    dest = cache_dir(cache) / "hf-hub" / repo.replace("/", "--") / commit
    redo = "delete it and it is copied again from the Hugging Face cache"
    if dest.exists():
        check_folder(dest, redo)
        return dest
    if cfg_path.stat().st_size > 1 << 20:
        raise UAVMError(f"{spec}: refused: config.json is larger than any bundle config")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):  # JSON and Unicode errors
        cfg = None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise UAVMError(f"{spec}: not a uavm bundle (its config.json has no \"format\": \"{FORMAT}\")")
    files = {f: _hf_file(hf, repo, f, commit) for f in _bundle_files(cfg, spec)}  # the config's own commit
    log(f"copying {spec} ({commit[:12]}) out of the Hugging Face cache")
    cache = cache_dir(cache)
    with _locked(cache, log):
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            _sweep(dest.parent)
            with _staging(dest) as tmp:
                for rel, p in [("config.json", cfg_path), *files.items()]:
                    real = p.resolve()
                    _check_blob(real)
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(real, tmp / rel)
                _write_sums(tmp)
    check_folder(dest, redo)
    return dest


def _model_card(cfg: dict, repo: str) -> str:
    m, prov = cfg.get("model", {}), cfg.get("provenance") or {}
    source = str(prov.get("source", "not recorded"))
    terms = ("\nThe weights are the authors' (github.com/YuanGongND/uavm): their terms apply.\n"
             if source.startswith("official release") else "")
    return (f"---\nlibrary_name: uavm\ntags:\n- audio-visual\n- audio-classification\n- video-classification\n"
            f"- uavm\n---\n\n# {cfg.get('name', repo)}\n\nA uavm bundle (config.json, safetensors weights, labels.csv): "
            f"a {m.get('kind')} model (N={m.get('n_specific')}, Ns={m.get('n_shared')}, S_dim={m.get('shared_dim')}), "
            f"{m.get('num_classes')} classes. Source: {source}.\n{terms}\n```bash\n"
            f"uavm predict clip.mp4 --model hf-hub:{repo}\n```\n")


def self_contained(bundle, out) -> Path:
    """A copy of a bundle that holds every file it uses (shared extractor weights copied in,
    their paths rewritten), as a Hub repository must; checked by loading it."""
    root, out = Path(bundle), Path(out)
    b = load_bundle(root)  # every rule of uavm.bundle, and the weights' shapes, checked first
    cfg = json.loads(json.dumps(b.config))
    out.mkdir(parents=True, exist_ok=True)
    _link_or_copy((root / cfg.get("weights", "model.safetensors")).resolve(), out / "model.safetensors")
    _link_or_copy((root / cfg.get("labels", "labels.csv")).resolve(), out / "labels.csv")
    cfg["weights"], cfg["labels"] = "model.safetensors", "labels.csv"
    for m, e in b.extractors.items():
        _link_or_copy(Path(e.weights_path), out / f"{m}_extractor.safetensors")
        cfg[f"{m}_extractor"]["weights"] = f"{m}_extractor.safetensors"
    write_json(out / "config.json", cfg, indent=2)
    load_bundle(out)
    return out


def push(bundle, repo: str, private: bool = False, message: Optional[str] = None, cache=None, log=_say) -> str:
    """Upload a self-contained copy of a bundle (and a model card) to a Hub repository,
    created if need be; the token is huggingface_hub's (HF_TOKEN or `hf auth login`)."""
    repo, _ = _hf_spec(repo, revision=False)
    hf = _hf()
    cache = cache_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".push-", dir=cache) as tmp:  # beside the cache: room, and hard links
        stage = self_contained(bundle, Path(tmp) / "bundle")
        cfg = json.loads((stage / "config.json").read_text(encoding="utf-8"))
        write_text(stage / "README.md", _model_card(cfg, repo))
        log(f"uploading {sorted(p.name for p in stage.iterdir())} to {repo}")
        api = hf.HfApi(library_name="uavm", library_version=__version__)
        try:
            api.create_repo(repo, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo, folder_path=str(stage),
                                     commit_message=message or f"uavm bundle: {cfg.get('name', repo)}")
        except (OSError, ValueError) as e:  # the Hub's HTTP errors are OSErrors; a missing token, a bad name
            raise UAVMError(f"push to {repo} failed: {one_line(e)[:200]}") from None
    return str(getattr(info, "commit_url", None) or info)

"""A released model's first use: its four files fetched (checkpoint, its dataset's audio
extractor, the video extractor, its label list) and converted into ``CACHE/bundles/NAME``,
which refers to one extractor set per dataset (``CACHE/bundles/extractors-DATASET``);
checked on every use. Later uses are offline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..bundle import MODALITIES, save_extractors
from ..errors import UAVMError
from ..features import Preprocessing
from ..official import MODELS, CheckpointError, convert_extractor, files_for, import_official, read_state_dict
from .fetch import _fetch
from .integrity import _locked, _recorded, _say, _staging, _sweep, _write_sums, cache_dir, check_folder
from .transfer import _mirror


# -- released models: fetch, convert, check ------------------------------------------------
def _extractor_set(dataset: str, paths: dict, bundles: Path, log) -> Path:
    folder = bundles / f"extractors-{dataset}"
    if folder.exists():
        check_folder(folder)
        return folder
    log(f"converting the {dataset} extractors")
    with _staging(folder) as tmp:
        ex = {m: convert_extractor(read_state_dict(paths[m]), m, paths[m]) for m in MODALITIES}
        save_extractors(tmp, ex, Preprocessing.for_dataset(dataset),
                        provenance={"source": "official release, github.com/YuanGongND/uavm",
                                    "files": {m: paths[m].name for m in MODALITIES},
                                    "sha256": {m: _recorded(paths[m]) for m in MODALITIES}})
        _write_sums(tmp)
    return folder


def _convert(name: str, cache: Path, mirror, log) -> None:
    dataset, kind, _ = MODELS[name]
    paths = {role: _fetch(r, cache, mirror, log) for role, r in files_for(name).items()}
    bundles = cache / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    _sweep(bundles)
    xset = _extractor_set(dataset, paths, bundles, log)
    log(f"converting {name}")
    with _staging(bundles / name) as tmp:
        import_official(paths["model"], tmp, audio_extractor=paths["audio"], video_extractor=paths["video"],
                        labels=paths["labels"], dataset=dataset, log=lambda m: log(m.replace(str(tmp), str(tmp.parent / name))),
                        extractor_files={m: f"../{xset.name}/{m}.safetensors" for m in MODALITIES})
        got = json.loads((tmp / "config.json").read_text(encoding="utf-8"))["model"]["kind"]
        if got != kind:
            raise CheckpointError(f"{paths['model']}: holds a {got} model, {name} is {kind}: the source serves "
                                  f"another file under this name (delete it and its .sha256, and fix the source)")
        _write_sums(tmp)


def _check_converted(folder: Path) -> None:
    check_folder(folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for m in MODALITIES:
        w = (cfg.get(f"{m}_extractor") or {}).get("weights", "")
        if isinstance(w, str) and w.startswith("../"):
            check_folder(folder.parent / w.split("/")[1])


def ensure(name: str, cache=None, mirror: Optional[str] = None, log=_say) -> Path:
    """A released model's bundle folder: fetched and converted on first use, checked on every use."""
    if name not in MODELS:
        raise UAVMError(f"unknown released model {name!r}; one of: {', '.join(MODELS)}")
    cache = cache_dir(cache)
    folder = cache / "bundles" / name
    if not folder.exists():
        with _locked(cache, log):
            if not folder.exists():  # another process may have converted it while we waited
                _convert(name, cache, _mirror(mirror), log)
    _check_converted(folder)
    return folder

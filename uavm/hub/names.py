"""Models by name: the embedded demo models (``uavm.assets``), the authors' released models
(``uavm.official.MODELS``) and ``hf-hub:ORG/NAME[@REVISION]``; ``resolve`` turns a name into
a bundle folder, ``load`` into a Bundle, ``catalog`` lists them for ``uavm models``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..assets import default_bundle, demo_bundles
from ..bundle import Bundle, load_bundle
from ..errors import UAVMError
from ..official import MODELS, RELEASE, files_for
from ..settings import settings
from .convert import ensure
from .hfhub import HF, from_hf_hub
from .integrity import _say, cache_dir


def _demo_line(folder: Path) -> str:
    try:
        m = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model", {})
        return (f"embedded demo, {m['kind']} (N={m['n_specific']}, Ns={m['n_shared']}), "
                f"{m['num_classes']} generated classes")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "embedded demo model"


def names() -> dict:
    """name -> one line saying what it is (the demo models, then the released ones)."""
    out = {n: _demo_line(p) for n, p in demo_bundles().items()}
    out.update({n: m[2] for n, m in MODELS.items()})
    return out


def is_name(s) -> bool:
    return isinstance(s, str) and (s in MODELS or s.startswith(HF) or s in demo_bundles())


def resolve(model: Optional[str] = None, bundle=None, mirror: Optional[str] = None, log=_say) -> Path:
    """The bundle folder for ``--model NAME`` or ``--bundle DIR`` (at most one), else
    ``$UAVM_BUNDLE`` (a folder or a name), else the embedded demo UAVM. A released model is
    fetched and converted on first use; ``mirror`` overrides ``$UAVM_MIRROR``."""
    if model and bundle:
        raise UAVMError("give --model NAME or --bundle DIR, not both")
    if bundle:
        return Path(bundle)
    if not model:
        model = settings().bundle
        if not is_name(model):
            return default_bundle()
    demos = demo_bundles()
    if model in demos:
        return demos[model]
    if model in MODELS:
        return ensure(model, mirror=mirror, log=log)
    if model.startswith(HF):
        return from_hf_hub(model, log=log)
    raise UAVMError(f"unknown model {model!r}; one of: {', '.join(names())}, or hf-hub:ORG/NAME "
                    f"(a bundle folder is --bundle DIR)")


def load(name_or_path, device="cpu", mirror: Optional[str] = None) -> Bundle:
    """A Bundle by name (``names()``, ``hf-hub:ORG/NAME``) or by folder. A string that is a
    model name means the name; a ``Path`` always means a folder."""
    if isinstance(name_or_path, str) and is_name(name_or_path):
        return load_bundle(resolve(name_or_path, mirror=mirror), device)
    if isinstance(name_or_path, str) and not Path(name_or_path).exists():
        raise UAVMError(f"{name_or_path!r} is neither a model name ({', '.join(names())}, hf-hub:ORG/NAME) "
                        f"nor a bundle folder")
    return load_bundle(name_or_path, device)


def converted(cache=None) -> list:
    """The released models already converted in the cache (not checked: ``resolve`` checks)."""
    root = cache_dir(cache) / "bundles"
    return [n for n in MODELS if (root / n / "config.json").is_file()]


def available(extra=(), models=(), mirror: Optional[str] = None, log=_say) -> dict:
    """name -> bundle folder of every model one may serve: the demo models shipped with uavm,
    the released models already converted in the cache (each checked; a damaged one is left
    out, said through ``log``), then the ``extra`` folders and the ``models`` names (fetched
    and converted first if need be): what `uavm app` lists."""
    found = demo_bundles()
    for name in converted():
        try:
            found[name] = resolve(name, log=log)
        except UAVMError as e:
            log(f"{name} left out: {e}")
    for b in extra:
        found[Path(b).resolve().name] = Path(b)
    for m in models:
        found[m] = resolve(m, mirror=mirror, log=log)
    return found


# -- what `uavm models` shows -------------------------------------------------------------
def _human(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _folder_bytes(*folders) -> int:
    return sum(p.stat().st_size for d in folders for p in d.rglob("*") if p.is_file())


def catalog(cache=None) -> list:
    """One row per name: name, what, status, bytes of its downloads (None until all are
    cached: the release publishes no sizes), bytes converted, and size (a phrase)."""
    cache = cache_dir(cache)
    rows = []
    for n, p in demo_bundles().items():
        b = _folder_bytes(p)
        rows.append({"name": n, "what": _demo_line(p), "status": "embedded", "download_bytes": 0,
                     "converted_bytes": b, "size": _human(b)})
    for n, (dataset, _, what) in MODELS.items():
        files = [cache / RELEASE[r][1] for r in files_for(n).values()]
        have = [f for f in files if f.is_file()]
        got = sum(f.stat().st_size for f in have)
        folder, xset = cache / "bundles" / n, cache / "bundles" / f"extractors-{dataset}"
        conv = _folder_bytes(folder, xset) if (folder / "config.json").is_file() else None
        status = ("converted" if conv is not None else "downloaded" if len(have) == len(files) else
                  f"{len(have)} of {len(files)} files downloaded" if have else "not downloaded")
        if len(have) == len(files):
            size = _human(got)
        elif conv is not None:
            size = f"{_human(conv)} converted"
        elif have:
            size = f"{_human(got)} so far, the rest unknown"
        else:
            size = "unknown until downloaded"
        rows.append({"name": n, "what": what, "status": status,
                     "download_bytes": got if len(have) == len(files) else None, "converted_bytes": conv,
                     "size": size, "files": [f.name for f in files]})
    return rows

"""What ships with uavm: the embedded demo models and example clips.

They live in ``weights/`` of a source checkout, and in ``uavm/weights`` of an installed
wheel (package data); whichever holds the demo is used.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .errors import UAVMError
from .settings import settings

_HERE = Path(__file__).resolve().parent
DEMO = "demo-uavm"


def weights_dir() -> Optional[Path]:
    for d in (_HERE / "weights", _HERE.parent / "weights"):  # a wheel's package data; a checkout
        if (d / DEMO / "config.json").is_file():
            return d
    return None


def demo_bundles() -> dict:
    """name -> folder of every bundle shipped in weights/, the demo UAVM first."""
    d = weights_dir()
    found = {}
    for p in sorted(d.glob("*/config.json")) if d else []:
        try:
            if json.loads(p.read_text(encoding="utf-8")).get("format") == "uavm-bundle":
                found[p.parent.name] = p.parent
        except (OSError, ValueError):
            continue
    return dict(sorted(found.items(), key=lambda kv: kv[0] != DEMO))


def default_bundle() -> Path:
    """$UAVM_BUNDLE, else the embedded demo UAVM."""
    s = settings()
    if s.bundle:
        return Path(s.bundle)
    d = weights_dir()
    if d is None:
        raise UAVMError("no default bundle: pass --bundle DIR (see `uavm init` or `uavm import-official`)")
    return d / DEMO


CAPTIONS = "captions.json"  # beside the example clips: {"clips": {file name: {"label", "tip"}}}


def examples() -> list:
    d = weights_dir()
    return sorted((d / "examples").glob("*.mp4")) if d else []


def example_captions(paths) -> list:
    """(label, tip) for each example clip, from the captions file beside them (data: strings
    only, cut to a line); a clip it does not describe gets its file stem as its label."""
    by_name: dict = {}
    for folder in {Path(p).parent for p in paths}:
        try:
            clips = json.loads((folder / CAPTIONS).read_text(encoding="utf-8")).get("clips", {})
        except (OSError, ValueError, AttributeError):
            continue
        for name, c in (clips.items() if isinstance(clips, dict) else ()):
            if isinstance(c, dict) and all(isinstance(c.get(k, ""), str) for k in ("label", "tip")):
                by_name[folder / str(name)] = (c.get("label", "")[:80], c.get("tip", "")[:300])
    out = []
    for p in paths:
        label, tip = by_name.get(Path(p), ("", ""))
        out.append((label or Path(p).stem.replace("_", " "), tip))
    return out


def install_hint(extra: str) -> str:
    """The command that adds ``extra`` (app, analyze, test) to this installation: from the
    checkout or file uavm was installed from (it is not on a package index), else the extra's
    own requirements by name, which work however uavm was installed."""
    import urllib.parse
    from importlib import metadata

    where, editable = None, False
    try:
        for dist in metadata.distributions(name="uavm"):
            url = json.loads(dist.read_text("direct_url.json") or "null")
            if isinstance(url, dict) and str(url.get("url", "")).startswith("file://"):
                where = Path(urllib.parse.unquote(urllib.parse.urlparse(url["url"]).path))
                editable = bool((url.get("dir_info") or {}).get("editable"))
                break
    except (OSError, ValueError):
        pass
    if where is None and (_HERE.parent / "pyproject.toml").is_file():  # run from a checkout
        where, editable = _HERE.parent, True
    if where is not None and where.exists():
        return f"pip install {'-e ' if editable else ''}'{where}[{extra}]'"
    try:
        reqs = [r.split(";")[0].strip() for r in metadata.requires("uavm") or []
                if f'extra == "{extra}"' in r.replace("'", '"')]
    except metadata.PackageNotFoundError:
        reqs = []
    return "pip install " + " ".join(f"'{r}'" for r in reqs) if reqs else f"pip install 'uavm[{extra}]'"

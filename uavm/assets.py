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


def examples() -> list:
    d = weights_dir()
    return sorted((d / "examples").glob("*.mp4")) if d else []

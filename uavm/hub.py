"""Models by name: where a name's bundle comes from.

Today: the bundles shipped with uavm (the demo names) and bundle folders. The authors'
models by name (download, mirrors, integrity, conversion into the cache) and Hugging Face
Hub bundles extend ``resolve``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .assets import default_bundle, demo_bundles
from .errors import UAVMError


def names() -> dict:
    """name -> one line saying what it is."""
    return {n: "embedded demo model (generated data, 12 classes)" for n in demo_bundles()}


def resolve(model: Optional[str] = None, bundle=None, mirror: Optional[str] = None) -> Path:
    """The bundle folder for ``--model NAME`` or ``--bundle DIR`` (at most one), else the default."""
    if model and bundle:
        raise UAVMError("give --model NAME or --bundle DIR, not both")
    if bundle:
        return Path(bundle)
    if model:
        demos = demo_bundles()
        if model in demos:
            return demos[model]
        raise UAVMError(f"unknown model {model!r}; one of: {', '.join(names())}")
    return default_bundle()

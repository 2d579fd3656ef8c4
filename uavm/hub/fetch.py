"""Release files in the cache: fetched if absent and checked either way (``uavm download``),
and every cached file and folder checked against its record (``uavm download --verify``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..assets import demo_bundles
from ..errors import UAVMError
from ..files import sha256
from ..official import MODELS, RELEASE, files_for
from .integrity import (
    _BY_FILE,
    IntegrityError,
    _compare,
    _locked,
    _record,
    _recorded,
    _say,
    cache_dir,
    check_file,
    check_folder,
)
from .transfer import _mirror, _source, _transfer


def _fetch(name: str, cache: Path, mirror, log) -> Path:
    """One release file in the cache (the lock held): fetched if absent, checked either way."""
    fname = RELEASE[name][1]
    dest = cache / fname
    if dest.exists():
        check_file(dest, log)
        return dest
    src, part = _source(name, mirror), cache / (fname + ".part")
    log(f"fetching {fname} from {src}" + (f", resuming at {part.stat().st_size} bytes" if part.exists() else ""))
    _transfer(src, part, fname, log)
    digest = sha256(part)
    try:
        _compare(dest, digest, fresh=True)
    except IntegrityError:
        part.unlink(missing_ok=True)  # complete and wrong: resuming it could never help
        raise
    if _recorded(dest) is None:
        _record(dest, digest)
    os.replace(part, dest)
    return dest


def _release_names(what: str) -> list:
    if what == "all":
        return list(RELEASE)
    if what in MODELS:
        return list(files_for(what).values())
    if what in RELEASE:
        return [what]
    if what in demo_bundles():
        raise UAVMError(f"{what} is embedded in uavm: nothing to download")
    raise UAVMError(f"unknown model or release file {what!r}; one of: all, {', '.join(MODELS)}, "
                    f"{', '.join(n for n in RELEASE if n not in MODELS)}")


def download(what: str, cache=None, mirror: Optional[str] = None, log=print, say=_say) -> list:
    """``uavm download``: the files of a model, one release file, or all; each fetched if
    absent, checked either way; ``log`` gets "SHA256  PATH" per file."""
    names_ = _release_names(what)
    cache = cache_dir(cache)
    paths = []
    with _locked(cache, say):
        src = _mirror(mirror)
        for n in names_:
            p = _fetch(n, cache, src, say)
            log(f"{_recorded(p)}  {p}")
            paths.append(p)
    return paths


def verify(cache=None, what: Optional[str] = None, log=print) -> int:
    """``uavm download --verify``: every download in the cache against its record and pin,
    every converted or copied folder against its SHA256SUMS; one line each. -> files checked."""
    cache = cache_dir(cache)
    wanted = {RELEASE[n][1] for n in _release_names(what)} if what else None
    files = sorted({p.with_name(p.name[:-len(".sha256")]) for p in cache.glob("*.sha256")}
                   | {cache / f for f in _BY_FILE if (cache / f).is_file()})
    folders = []
    if what is None:
        folders = sorted(p for p in (cache / "bundles").glob("*") if p.is_dir() and not p.name.startswith("."))
        folders += sorted(p for p in (cache / "hf-hub").glob("*/*") if p.is_dir() and not p.name.startswith("."))
    elif what in MODELS and (cache / "bundles" / what).is_dir():
        folders = [cache / "bundles" / what, cache / "bundles" / f"extractors-{MODELS[what][0]}"]
    bad, checked = [], 0
    for p in files:
        if wanted is not None and p.name not in wanted:
            continue
        if not p.exists():
            log(f"absent    {p} (its record stays: a new download is checked against it)")
            continue
        checked += 1
        try:
            had = _recorded(p) is not None
            check_file(p, log=lambda m: None)
            log(f"OK        {p}" if had else f"recorded  {p} (it had no record: not downloaded by this uavm)")
        except IntegrityError as e:
            bad.append(str(e))
            log(f"FAILED    {e}")
    for d in folders:
        checked += 1
        try:
            check_folder(d, "delete it and it is made again on next use")
            log(f"OK        {d}/")
        except IntegrityError as e:
            bad.append(str(e))
            log(f"FAILED    {e}")
    if len(bad) == 1:
        raise IntegrityError(bad[0])
    if bad:
        raise IntegrityError(f"{len(bad)} of {checked} cached files or folders fail their check (listed above)")
    return checked

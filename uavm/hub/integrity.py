"""The cache's integrity and its writers: where the cache is, hash records, SHA256SUMS, the lock.

A downloaded file's SHA-256 is recorded beside it (``FILE.sha256``, in ``sha256sum``
format) and checked on every later use and against every re-download; where a file's
release name pins a hash prefix (torchvision's), that is checked too. A converted or
copied folder records its files' SHA-256 in ``SHA256SUMS``, checked each time a name
resolves to it. A mismatch is an ``IntegrityError`` naming the file and what to do.

One process at a time fetches and converts into a cache; each folder is written under a
temporary name and renamed into place, so a half-written one is never seen.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ..errors import UAVMError
from ..files import sha256, write_text
from ..official import PINNED_SHA256, RELEASE
from ..settings import settings

try:
    import fcntl
except ImportError:  # not POSIX: no lock between processes sharing a cache
    fcntl = None

SUMS = "SHA256SUMS"
_BY_FILE = {fname: name for name, (_, fname) in RELEASE.items()}


class IntegrityError(UAVMError):
    """A cached file whose SHA-256 is not the one recorded (or pinned) for it."""



def _say(msg: str) -> None:
    print(f"uavm: {msg}", file=sys.stderr, flush=True)


def cache_dir(cache=None) -> Path:
    return Path(cache) if cache else settings().cache_dir


# -- hashes: recorded beside downloads, listed in converted folders ------------------------
_digests: dict = {}


def _digest(path: Path) -> str:
    """SHA-256, remembered for this process while the file's identity and times are unchanged."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _digests:
        if len(_digests) > 4096:
            _digests.clear()
        _digests[key] = sha256(path)
    return _digests[key]


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _recorded(dest: Path) -> Optional[str]:
    rec = _record_path(dest)
    if not rec.exists():
        return None
    with open(rec, "rb") as f:
        head = f.read(256).decode("ascii", "replace").split()
    if not head or not re.fullmatch(r"[0-9a-f]{64}", head[0]):
        raise IntegrityError(f"{rec}: not a SHA-256 record; delete it (the file's hash is then recorded anew)")
    return head[0]


def _record(dest: Path, digest: str) -> None:
    write_text(_record_path(dest), f"{digest}  {dest.name}\n")


def _compare(dest: Path, digest: str, fresh: bool) -> None:
    """``digest`` (of ``dest``, or of a fresh download of it) against the pinned prefix and the record."""
    name = _BY_FILE.get(dest.name, dest.name)
    pin = PINNED_SHA256.get(dest.name)
    if pin and not digest.startswith(pin):
        raise IntegrityError(
            f"{dest.name if fresh else dest}: SHA-256 {digest[:16]}... does not start with {pin}, the prefix its "
            f"file name pins: "
            + ("the source serves another file under this name" if fresh else
               f"the cached file is damaged; delete {dest} and run `uavm download {name}` again"))
    rec = _recorded(dest)
    if rec is not None and rec != digest:
        if fresh:
            raise IntegrityError(
                f"{dest.name}: the new download's SHA-256 {digest[:16]}... differs from {rec[:16]}..., recorded "
                f"at its first download: the source serves another file (delete {_record_path(dest)} to accept it)")
        raise IntegrityError(f"{dest}: SHA-256 {digest[:16]}... differs from {rec[:16]}..., recorded when it was "
                             f"downloaded: the file is damaged; delete it and run `uavm download {name}` again")


def check_file(dest: Path, log=_say) -> str:
    """A cached download against its record (recorded now if it has none) and its pin."""
    digest = _digest(dest)
    _compare(dest, digest, fresh=False)
    if _recorded(dest) is None:
        _record(dest, digest)
        log(f"recorded the SHA-256 of {dest} (it had no record: it was not downloaded by this uavm)")
    return digest


def _write_sums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS)
    write_text(folder / SUMS, "".join(f"{_digest(p)}  {p.relative_to(folder).as_posix()}\n" for p in files))


def reseal(folder: Path, changed=("config.json", "ood.safetensors")) -> bool:
    """A folder uavm changed on purpose (``uavm ood fit`` adds statistics to a converted model):
    every other file it lists checked, then SHA256SUMS written anew, if it has one. -> whether it had."""
    folder = Path(folder)
    sums = folder / SUMS
    if not sums.is_file():
        return False
    kept = [line for line in sums.read_text(encoding="utf-8", errors="replace").splitlines()
            if line[66:] not in changed]
    write_text(sums, "".join(f"{line}\n" for line in kept))
    check_folder(folder)  # nothing else changed since it was written
    _write_sums(folder)
    return True


def check_folder(folder: Path, redo: str = "delete it and it is converted again from the downloaded files") -> None:
    """Every file a converted (or copied) folder lists in SHA256SUMS is there, unchanged."""
    sums = folder / SUMS
    if not sums.is_file():
        raise IntegrityError(f"{folder}: no {SUMS} (not written by uavm, or cut off); {redo}")
    with open(sums, "rb") as f:
        text = f.read(1 << 20).decode("utf-8", "replace")
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})  (.+)", line)
        if not m or not _plain_relative(m.group(2)):
            raise IntegrityError(f"{sums}: not a SHA-256 list ({line[:60]!r}); {redo}")
        p = folder / m.group(2)
        if not p.is_file():
            raise IntegrityError(f"{p}: missing; {redo}")
        if _digest(p) != m.group(1):
            raise IntegrityError(f"{p}: SHA-256 differs from the one recorded when it was written; {redo}")


def _plain_relative(name) -> bool:
    """A relative path inside a folder: no absolute path, no '..', no backslash, no NUL."""
    if not isinstance(name, str) or not 0 < len(name) <= 255 or "\\" in name or "\0" in name:
        return False
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in name.split("/"))


# -- locks and staging ------------------------------------------------------------------
@contextmanager
def _locked(cache: Path, log=_say):
    """One process at a time fetches and converts into a cache (the app and a CLI run may
    share one); readers need no lock, as every folder appears whole by a rename."""
    cache.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(cache / ".lock", "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another uavm process working in {cache}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _staging(final: Path):
    """A temporary folder beside ``final``, renamed to it when the block succeeds, removed when it fails."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sweep(folder: Path) -> None:
    """Temporaries of runs that were killed (called with the cache lock held, so none is in use)."""
    if fcntl is not None and folder.is_dir():
        for p in folder.glob(".*.tmp"):
            shutil.rmtree(p, ignore_errors=True)

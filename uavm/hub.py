"""Models by name: where a name's bundle comes from.

A name is an embedded demo model (``uavm.assets``), one of the authors' released models
(``uavm.official.MODELS``: vggsound-uavm, ...), or ``hf-hub:ORG/NAME[@REVISION]``, a uavm
bundle in a Hugging Face Hub repository. ``resolve`` turns a name into a bundle folder,
``load`` into a Bundle.

A released model's first use fetches the four files it needs (checkpoint, its dataset's
audio extractor, the video extractor, its label list) into the cache (``$UAVM_CACHE``)
under their release file names: from the mirror when one is given (``--mirror`` /
``$UAVM_MIRROR``: http(s)://BASE/, file:///DIR or a folder) and from nowhere else, else
from the release's URLs. Transfers resume (``FILE.part``, HTTP Range) and retry a cut
connection. ``import_official`` then converts them into ``CACHE/bundles/NAME``, which
refers to one extractor set per dataset (``CACHE/bundles/extractors-DATASET``); each
folder is written under a temporary name and renamed into place, so a half-converted
bundle is never seen. Later uses are offline.

Integrity: a downloaded file's SHA-256 is recorded beside it (``FILE.sha256``, in
``sha256sum`` format) and checked on every later use and against every re-download; where
a file's release name pins a hash prefix (torchvision's), that is checked too. A converted
or copied folder records its files' SHA-256 in ``SHA256SUMS``, checked each time a name
resolves to it. A mismatch is an ``IntegrityError`` naming the file and what to do.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from . import __version__
from .assets import default_bundle, demo_bundles
from .bundle import FORMAT, MODALITIES, Bundle, load_bundle, save_extractors
from .errors import UAVMError, one_line
from .features import Preprocessing
from .files import progress, sha256, write_json, write_text
from .official import (
    MODELS,
    PINNED_SHA256,
    RELEASE,
    CheckpointError,
    convert_extractor,
    files_for,
    import_official,
    read_state_dict,
)
from .settings import settings

try:
    import fcntl
except ImportError:  # not POSIX: no lock between processes sharing a cache
    fcntl = None

HF = "hf-hub:"
SUMS = "SHA256SUMS"
MAX_BYTES = 16 << 30  # far above any release file: a source that sends more is cut off, not left to fill the disk
TRIES = 4  # transfers of one file (each resuming where the last stopped)
TIMEOUT = 60.0  # seconds without a byte before a connection counts as lost
_BY_FILE = {fname: name for name, (_, fname) in RELEASE.items()}


class IntegrityError(UAVMError):
    """A cached file whose SHA-256 is not the one recorded (or pinned) for it."""


class DownloadError(UAVMError):
    """A file that could not be fetched from its source."""


def _say(msg: str) -> None:
    print(f"uavm: {msg}", file=sys.stderr, flush=True)


def cache_dir(cache=None) -> Path:
    return Path(cache) if cache else settings().cache_dir


# -- names ------------------------------------------------------------------------------
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


# -- sources ----------------------------------------------------------------------------
def _mirror(mirror: Optional[str]):
    """``--mirror`` (or ``$UAVM_MIRROR`` when None) -> None, ("http", base URL) or ("folder", Path)."""
    m = settings().mirror if mirror is None else mirror
    if not m:
        return None
    u = urllib.parse.urlsplit(m)
    scheme = u.scheme.lower()
    if scheme in ("http", "https"):
        if not u.hostname:
            raise UAVMError(f"mirror {m!r}: no host")
        return "http", (m if m.endswith("/") else m + "/")
    if scheme == "file":
        if u.netloc not in ("", "localhost"):
            raise UAVMError(f"mirror {m!r}: a file:// mirror is a folder on this machine (file:///DIR)")
        return "folder", Path(urllib.request.url2pathname(u.path))
    if len(scheme) > 1:  # one letter is a Windows drive
        raise UAVMError(f"mirror {m!r}: give http(s)://BASE/, file:///DIR or a folder")
    return "folder", Path(m).expanduser()


def _source(name: str, mirror):
    url, fname = RELEASE[name]
    if mirror is None:
        return url
    kind, base = mirror
    return base + urllib.parse.quote(fname) if kind == "http" else base / fname


class _Redirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"{req.full_url}: redirected to a {newurl.split(':')[0]}: URL, which is not fetched")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Cut(Exception):
    """A transfer that stopped early: retried from where it stopped."""


def _range_start(content_range) -> Optional[int]:
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (content_range or "").strip())
    return int(m.group(1)) if m else None


def _copy_http(url: str, part: Path, fname: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"uavm/{__version__}", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        r = urllib.request.build_opener(_Redirects).open(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is not a prefix of this source's file
            part.unlink()
            raise _Cut("the partial file does not fit the source; starting again") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # refused, unreachable, timed out
        raise DownloadError(f"{url}: {one_line(getattr(e, 'reason', e))}"
                            + ("; run the command again to resume" if have else "")) from None
    with r:
        if r.status == 206 and not (have and _range_start(r.headers.get("Content-Range")) == have):
            part.unlink(missing_ok=True)  # a range we did not ask for: ask for the whole file
            raise _Cut("the server sent another range; starting again")
        if r.status != 206:
            have = 0  # the whole file (a server may ignore the range)
        length = r.headers.get("Content-Length", "")
        total = have + int(length) if length.isdigit() else None
        if total is not None and total > MAX_BYTES:
            raise DownloadError(f"{url}: {total} bytes, more than any release file ({MAX_BYTES})")
        show = progress(total // 1_000_000 if total else None, fname, unit=" MB")
        got = have
        with open(part, "ab" if have else "wb") as f:
            while True:
                try:
                    chunk = r.read(1 << 20)
                except (OSError, http.client.HTTPException) as e:
                    raise _Cut(f"connection lost after {got} bytes ({type(e).__name__})") from None
                if not chunk:
                    break
                got += len(chunk)
                if got > MAX_BYTES:
                    raise DownloadError(f"{url}: more than {MAX_BYTES} bytes, more than any release file")
                f.write(chunk)
                show(got // 1_000_000)
    if total is not None and got < total:
        raise _Cut(f"cut short at {got} of {total} bytes")


def _copy_file(src: Path, part: Path, fname: str) -> None:
    if not src.is_file():
        raise DownloadError(f"{src}: not on the mirror")
    size = src.stat().st_size
    if size > MAX_BYTES:
        raise DownloadError(f"{src}: {size} bytes, more than any release file ({MAX_BYTES})")
    have = part.stat().st_size if part.exists() else 0
    have = have if have <= size else 0
    show = progress(size // 1_000_000, fname, unit=" MB")
    with open(src, "rb") as s, open(part, "ab" if have else "wb") as f:
        s.seek(have)
        while chunk := s.read(1 << 20):
            f.write(chunk)
            have += len(chunk)
            show(have // 1_000_000)


def _transfer(src, part: Path, fname: str, log) -> None:
    last = None
    for attempt in range(TRIES):
        try:
            (_copy_http if isinstance(src, str) else _copy_file)(src, part, fname)
            return
        except _Cut as e:
            last = e
            if attempt + 1 < TRIES:
                log(f"{fname}: {e}; resuming")
    raise DownloadError(f"{fname}: the transfer kept stopping ({last}); run the command again to resume")


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


# -- the Hugging Face Hub ---------------------------------------------------------------
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

"""Moving one release file into the cache: its source (the release URL, or the mirror's
http(s)://BASE/, file:///DIR or folder) and the transfer, which resumes (``FILE.part``,
HTTP Range) and retries a cut connection."""
from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from .. import __version__
from ..errors import UAVMError, one_line
from ..files import progress
from ..official import RELEASE
from ..settings import settings

MAX_BYTES = 16 << 30  # far above any release file: a source that sends more is cut off, not left to fill the disk
TRIES = 4  # transfers of one file (each resuming where the last stopped)
TIMEOUT = 60.0  # seconds without a byte before a connection counts as lost


class DownloadError(UAVMError):
    """A file that could not be fetched from its source."""



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

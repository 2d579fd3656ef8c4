"""What makes the app safe to share: the one door for uploads, requests checked once
(``Query``), handlers whose failures are one line, the models behind one lock with bounded
decoding, idle API sessions dropped, logins. The page (``page.py``, ``layout.py``) draws."""
from __future__ import annotations

import functools
import ipaddress
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr

from uavm import load_bundle
from uavm.errors import InputError, UAVMError, flag, one_line
from uavm.explore import Explorer, file_digest
from uavm.inference import Pipeline, check_top_k, check_window
from uavm.media import Limits, probe_isolated
from uavm.settings import settings


class Uploads:
    """The one door for media from clients (the page and the API alike): a path is used only
    if it names a regular file that Gradio placed in its upload folder. Checked before
    anything stats, opens, hashes or probes it, so a client can neither name a file of
    the server's nor learn whether one exists."""

    REFUSED = "media must be a file uploaded to this server"

    def __init__(self, root: str | None = None):
        from gradio.utils import get_upload_folder

        self.root = os.path.realpath(root or get_upload_folder())

    def from_api(self, value) -> str:
        """An API argument: only Gradio's FileData (which Gradio itself checked and placed)."""
        if hasattr(value, "model_dump"):  # a gr.FileData object
            value = value.model_dump()
        meta = value.get("meta") if isinstance(value, dict) else None
        if not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData":
            raise InputError(f"{self.REFUSED} (send it with gradio_client's handle_file)")
        return self.check(value.get("path"))

    def check(self, path) -> str:
        if not isinstance(path, str) or not path or "\0" in path:
            raise InputError(self.REFUSED)
        lexical = os.path.abspath(path)  # no file system access yet
        if not lexical.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        real = os.path.realpath(lexical)
        if not real.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        try:
            st = os.lstat(real)
        except OSError:
            raise InputError("the uploaded file is gone (uploads are kept for an hour): upload it again") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(self.REFUSED)
        return real

    def trim(self, max_bytes: int, keep_s: float = 120.0) -> int:
        """Delete the oldest uploads until they take at most ``max_bytes`` (Gradio removes
        them by age; this bounds them by size too). Files younger than ``keep_s`` stay.
        -> bytes freed."""
        files = []
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                p = os.path.join(dirpath, n)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files.append((st.st_mtime, st.st_size, p))
        total, freed, now = sum(f[1] for f in files), 0, time.time()
        for mtime, size, p in sorted(files):
            if total - freed <= max_bytes:
                break
            if now - mtime < keep_s:
                continue
            try:
                os.unlink(p)
                freed += size
                os.rmdir(os.path.dirname(p))  # Gradio keeps each upload in a folder of its own
            except OSError:
                pass
        return freed


def guarded(fn):
    """A handler whose failures reach the client as one line: bad input says what is wrong;
    anything else is a bug, logged here with its traceback and reported as such."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UAVMError as e:
            raise gr.Error(one_line(e)) from None
        except Exception:
            logging.getLogger("uavm.app").exception("internal error in %s", fn.__name__)
            raise gr.Error("internal error (a bug): the server's log has the details") from None
    return inner


def public_message(e: BaseException, path: str | None = None) -> str:
    """One line for a client: the server's paths replaced by the file's own name."""
    msg = one_line(e)
    if path:
        msg = msg.replace(path, Path(path).name)
    return msg


class Models:
    """One Pipeline + Explorer per bundle, loaded on first use and shared by every session.
    All of them share one model lock (the networks' passes run one at a time) and one set
    of decode slots (slow uploads queue behind each other, not in front of cached work)."""

    def __init__(self, bundles: dict, device: str = "auto", decode_slots: int = 2):
        self.paths, self.device = bundles, device
        self._loaded, self._lock = {}, threading.Lock()
        self.model_lock = threading.Lock()
        self.decode_slots = threading.BoundedSemaphore(max(int(decode_slots), 1))
        self._digests = {}
        self.limits = Limits.from_env()

    def name(self, model) -> str:
        if not isinstance(model, str) or model not in self.paths:
            raise InputError(f"unknown model {model!r}; one of: {', '.join(self.paths)}")
        return model

    def get(self, name: str) -> Explorer:
        name = self.name(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Explorer(Pipeline(load_bundle(self.paths[name]), self.device),
                                              model_lock=self.model_lock, decode_slots=self.decode_slots)
            return self._loaded[name]

    def digest(self, path: str) -> str:
        """The upload's content hash, outside every lock (uploads are capped in size)."""
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            if len(self._digests) > 4096:
                self._digests.clear()
            self._digests[key] = file_digest(path)
        return self._digests[key]

    def duration(self, path: str) -> float:
        """Through the isolated decoder, in a decode slot, like every other look at an upload;
        kept by content, as the decoded windows are."""
        key = ("duration", self.digest(path))
        if key not in self._digests:
            with self.decode_slots:
                self._digests[key] = probe_isolated(path, self.limits).duration or 0.0
        return self._digests[key]


@dataclass(frozen=True)
class Query:
    """One analysis request of a client (the page or the API), checked once: the upload is a
    file of the upload folder, the numbers are in range, the model is one of the server's."""

    path: str
    start: float
    audio: bool
    video: bool
    mute: Optional[tuple]
    blank: Optional[tuple]
    model: str
    top_k: int


class Server:
    """What every handler of one app shares: the models (one lock, bounded decodes), the door
    for uploads, the API sessions, the order of each page's requests."""

    def __init__(self, bundles: dict, device: str = "auto"):
        if not bundles:
            raise UAVMError("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
        self.names, self.device = list(bundles), device
        self.models = Models(bundles, device, decode_slots=settings().decode_slots)
        self.uploads = Uploads()
        self.sessions = ApiSessions()
        self.in_order = InOrder()

    def query(self, media, start=0.0, audio=True, video=True, mute=None, blank=None, model=None, top_k=5,
              api=False) -> Query:
        """A client's values -> a Query (InputError, one line, for anything wrong)."""
        audio, video = flag("audio_on", audio), flag("video_on", video)
        start, mute, blank = check_window(start, mute, blank)
        ex = self.models.get(self.names[0] if model is None else model)
        top_k = check_top_k(top_k, len(ex.pipe.bundle.labels))
        path = self.uploads.from_api(media) if api else self.uploads.check(media)
        return Query(path, start, audio, video, mute, blank, model or self.names[0], top_k)

    def analyze(self, q: Query, progress=None):
        """-> (Analysis, Explorer) of the query; the server's paths never in a message."""
        try:
            ex = self.models.get(q.model)
            an = ex.run(q.path, q.start, q.audio, q.video, q.mute, q.blank, digest=self.models.digest(q.path),
                        progress=progress)
        except UAVMError as e:
            raise InputError(public_message(e, q.path)) from None
        return an, ex


class ApiSessions:
    """Gradio keeps a session for every client (a copy of the page's config and its last
    answer, ~100 KB) for up to 10,000 sessions. A page's session is the user's work and is
    left alone; a session that only ever called the API holds nothing anyone needs once
    its answer is sent, so it is dropped after ``idle_s`` without a call. A long run of
    one-shot API clients then leaves the server's memory flat."""

    def __init__(self, idle_s: float = 30.0):
        self.idle_s, self.last, self._lock = idle_s, {}, threading.Lock()

    def used(self, request) -> None:
        h = getattr(request, "session_hash", None)
        if h:
            with self._lock:
                self.last[h] = time.time()

    def page(self, request) -> None:
        """This session has a page: never drop it."""
        h = getattr(request, "session_hash", None)
        with self._lock:
            self.last.pop(h, None)

    def sweep(self, holder) -> int:
        now, dropped = time.time(), 0
        with self._lock:
            idle = [h for h, t in self.last.items() if now - t > self.idle_s]
            for h in idle:
                del self.last[h]
        data, lock = getattr(holder, "session_data", None), getattr(holder, "lock", None)
        if data is None or lock is None:  # another Gradio: nothing to do
            return 0
        with lock:
            for h in idle:
                if data.pop(h, None) is not None:
                    dropped += 1
                getattr(holder, "time_last_used", {}).pop(h, None)
        return dropped



LOOPBACK = ("127.0.0.1", "localhost", "::1")


def credentials(value: str | None):
    """--auth USER:PASS or $UAVM_AUTH; several as USER:PASS,USER2:PASS2."""
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise InputError("--auth takes USER:PASS (several: USER:PASS,USER2:PASS2)")
        pairs.append((user, password))
    return pairs


def loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_of(request, kind: str):
    """The key of a page session's requests of one kind, or None without a session (then
    requests are not ordered: never one key shared by every client)."""
    h = getattr(request, "session_hash", None)
    return (kind, h) if h else None


class InOrder:
    """One session's requests of one kind answered in the order the page sent them: a page's
    events travel as separate HTTP requests and run concurrently, so they can reach the
    server out of order, and an answer to an older setting must never land after a newer
    one. The page stamps each request (``STAMP`` in the UI); a request overtaken by a newer
    one of its session is told so, and skips its work (the newer answer follows)."""

    REMEMBER = 4096  # sessions whose last answer is remembered (a forgotten one only loses the guard)

    def __init__(self):
        import collections

        self._cond = threading.Condition()
        self._sessions: collections.OrderedDict = collections.OrderedDict()

    @staticmethod
    def stamp(value):
        """The page's stamp, checked: an integer in [1, 2**53], or None (then arrival order)."""
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return int(v) if v.is_integer() and 1 <= v <= 2 ** 53 else None

    def turn(self, session, stamp=None):
        """A context manager; inside it, ``superseded()`` says whether a newer request of the
        session has arrived or already been answered (then this one must not answer)."""
        import contextlib

        @contextlib.contextmanager
        def ticket():
            if session is None:
                yield lambda: False
                return
            with self._cond:
                s = self._sessions.pop(session, None) or {"seen": 0, "answered": 0, "busy": False, "waiting": []}
                self._sessions[session] = s  # most recent last; the oldest idle ones are forgotten
                while len(self._sessions) > self.REMEMBER:
                    old = next(iter(self._sessions))
                    if self._sessions[old]["busy"] or self._sessions[old]["waiting"]:
                        break
                    self._sessions.popitem(last=False)
                mine = self.stamp(stamp) or s["seen"] + 1
                s["seen"] = max(s["seen"], mine)
                s["waiting"].append(mine)  # a list: a hostile page may repeat a stamp
                self._cond.notify_all()  # the session's older waiting requests are stale now

                def stale():
                    return mine < s["seen"] or mine <= s["answered"]
                # a stale request leaves at once, without its turn: a session holds at most two
                # of the server's handler threads (the running request and the newest waiting)
                while (s["busy"] or mine != min(s["waiting"])) and not stale():
                    self._cond.wait()
                s["waiting"].remove(mine)
                turn = not stale()
                if turn:
                    s["busy"] = True
                else:
                    self._cond.notify_all()
            if not turn:
                yield lambda: True
                return
            asked = []

            def superseded() -> bool:
                with self._cond:
                    out = stale()
                asked.append(out)
                return out
            try:
                yield superseded
            finally:
                with self._cond:
                    if not (asked and asked[0]):  # it answered
                        s["answered"] = max(s["answered"], mine)
                    s["busy"] = False
                    self._cond.notify_all()
        return ticket()

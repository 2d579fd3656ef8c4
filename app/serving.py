"""What makes the app safe to share: the one door for uploads, requests checked once
(``Query``), handlers whose failures are one line, the models with bounded decoding and
caches (``Models``), the server's shared state (``Server``), logins. The guard in front of
every route is ``guard.py``, sessions ``sessions.py``, the cleaning ``janitor.py``; the page
(``page.py``, ``layout.py``) draws."""
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

from uavm import load_bundle, work
from uavm.cache import Budget, Store
from uavm.degrade import Degrade
from uavm.errors import InputError, UAVMError, flag, one_line, shorten
from uavm.explore import Explorer, Shared, file_digest
from uavm.inference import Pipeline, check_top_k, check_weight, check_window
from uavm.media import Limits, probe_isolated
from uavm.settings import settings


class Uploads:
    """The one door for media from clients (the page and the API alike): a path is used only
    if it names a regular file that Gradio placed in its upload folder, or is one of the
    example clips shipped with uavm (served from the package, so no eviction can break them).
    Checked before anything stats, opens, hashes or probes it, so a client can neither name
    a file of the server's nor learn whether one exists. A use marks the file as used (its
    modification time): the janitor removes uploads an hour after their last use."""

    REFUSED = "media must be a file uploaded to this server"

    def __init__(self, root: str | None = None, examples=()):
        from gradio.utils import get_upload_folder

        self.root = os.path.realpath(root or get_upload_folder())
        self.examples = {os.path.realpath(str(p)) for p in examples}

    def from_api(self, value) -> str:
        """An API argument: only Gradio's FileData (which Gradio itself checked and placed)."""
        if hasattr(value, "model_dump"):  # a gr.FileData object
            value = value.model_dump()
        meta = value.get("meta") if isinstance(value, dict) else None
        if not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData":
            raise InputError(f"{self.REFUSED} (send it with gradio_client's handle_file)")
        return self.check(value.get("path"))

    def check(self, path) -> str:
        if not isinstance(path, str) or not path or "\0" in path or len(path) > 4096:
            raise InputError(self.REFUSED)
        if os.path.realpath(path) in self.examples and os.path.abspath(path) in self.examples:
            return os.path.realpath(path)
        lexical = os.path.abspath(path)  # no file system access yet
        if not lexical.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        real = os.path.realpath(lexical)
        if not real.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        try:
            st = os.lstat(real)
        except OSError:
            raise InputError("the uploaded file is gone (uploads are kept for an hour after their last use): "
                             "upload it again") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(self.REFUSED)
        if time.time() - st.st_mtime > 60:
            try:  # used now: kept another hour (mtime moves; the content key is by content)
                os.utime(real, None)
            except OSError:
                pass
        return real


INTERNAL = "internal error (a bug): the server's log has the details"


def failure(e: BaseException, where: str, path: str | None = None) -> str | None:
    """The app's one rule for a failure: -> the line its client sees, or None when nobody
    waits for it (its client left: logged as such). Bad input says what is wrong, without a
    traceback in the log; anything else is a bug, logged with its traceback, said as such."""
    log = logging.getLogger("uavm.app")
    if isinstance(e, work.Cancelled):
        log.info("%s: its client left, its work stopped", where)
        return None
    if isinstance(e, UAVMError):
        return public_message(e, path)
    log.error("internal error in %s", where, exc_info=e)
    return INTERNAL


def guarded(fn):
    """An API function whose failures reach the client as one line (``failure``)."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise gr.Error(failure(e, fn.__name__) or one_line(e), print_exception=False) from None
    return inner


def public_message(e: BaseException, path: str | None = None, *more: str | None) -> str:
    """One line for a client: the server's paths replaced by the files' own names, and no
    memory address of the server's objects."""
    import re

    msg = one_line(e)
    for p in (path, *more):
        if p:
            msg = msg.replace(p, Path(p).name)
    return re.sub(r"0x[0-9a-fA-F]{6,}", "0x…", msg)


class Models:
    """One Pipeline + Explorer per bundle, loaded on first use and shared by every session.
    They share one ``uavm.explore.Shared``: one byte budget for every cache, one decode per
    window for every model with the same preprocessing, the network locks, the decode slots
    for windows and the long lane for timelines."""

    def __init__(self, bundles: dict, device: str = "auto", decode_slots: int = 2, long_slots: int = 1,
                 cache_mb: float = 1024.0):
        self.paths, self.device = bundles, device
        self._loaded, self._lock = {}, threading.Lock()
        self.shared = Shared(budget=Budget(cache_mb * 2**20),
                             decode_slots=threading.BoundedSemaphore(max(int(decode_slots), 1)),
                             long_slots=threading.BoundedSemaphore(max(int(long_slots), 1)))
        self.model_lock = self.shared.model_lock
        self.decode_slots = self.shared.decode_slots
        self._digests = Store(4096, budget=Budget(float("inf")))  # (path, size, mtime) -> digest; durations
        self.limits = Limits.from_env()

    def name(self, model) -> str:
        if not isinstance(model, str) or model not in self.paths:
            raise InputError(f"unknown model {shorten(model)}; one of: {', '.join(self.paths)}")
        return model

    def get(self, name: str) -> Explorer:
        name = self.name(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Explorer(Pipeline(load_bundle(self.paths[name]), self.device),
                                              shared=self.shared)
            return self._loaded[name]

    def digest(self, path: str) -> str:
        """The upload's content hash, outside every lock (uploads are capped in size)."""
        st = os.stat(path)
        return self._digests.get_or((path, st.st_size, st.st_mtime_ns), lambda: file_digest(path))[0]

    def duration(self, path: str) -> float:
        """Through the isolated decoder, in a decode slot, like every other look at an upload;
        kept by content, as the decoded windows are (a refusal too)."""
        key = ("duration", self.digest(path))
        hit = self._digests.get(key)
        if isinstance(hit, tuple):  # a refusal, kept without the path (the same bytes may come back renamed)
            raise hit[0](hit[1].replace("\x00clip\x00", path))
        if hit is None:
            try:
                with work.holding(self.decode_slots):
                    hit = probe_isolated(path, self.limits).duration or 0.0
            except work.Cancelled:
                raise
            except UAVMError as e:
                self._digests.put(key, (type(e), str(e).replace(path, "\x00clip\x00")))
                raise
            self._digests.put(key, hit)
        return hit


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
    audio_from: Optional[str] = None  # the audio from this upload instead (uavm.explore.Explorer.window)
    degrade: Optional[object] = None  # a uavm.degrade.Degrade
    audio_weight: float = 0.5

    def variant(self, server) -> dict:
        """The keyword arguments of a swap, a degradation, a weight (for Explorer.run/explain)."""
        kw = {}
        if self.audio_from:
            kw.update(audio_from=self.audio_from, audio_digest=server.models.digest(self.audio_from))
        if self.degrade is not None:
            kw["degrade"] = self.degrade
        return kw


class Server:
    """What every handler of one app shares: the models (bounded decodes and caches), the door
    for uploads, the sessions, the order of each page's requests, the folder of the files the
    app writes, and (once it runs) Gradio's Blocks, to know when a client has gone."""

    def __init__(self, bundles: dict, device: str = "auto", examples=()):
        import tempfile

        from .sessions import InOrder, Sessions

        if not bundles:
            raise UAVMError("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
        self.names, self.device = list(bundles), device
        s = settings()
        self.models = Models(bundles, device, decode_slots=s.decode_slots, long_slots=s.long_slots,
                             cache_mb=s.cache_mb)
        self.uploads = Uploads(examples=examples)
        self.examples = {}  # content digest -> the example clip in the package
        for e in examples:
            try:
                self.examples[file_digest(e)] = os.path.realpath(str(e))
            except UAVMError:
                pass
        self.sessions = Sessions(page_idle_s=s.session_idle)
        self.in_order = InOrder()
        self.blocks = None
        # every file the app writes (exports, the "heard and seen" clips) lives here; removed on
        # a schedule and at exit (janitor.py)
        self.workdir = tempfile.mkdtemp(prefix="uavm-app-")
        self.max_windows = s.app_max_windows
        from .sessions import LiveSessions

        self.live = LiveSessions(s.live_sessions, s.live_minutes)

    def query(self, media, start=0.0, audio=True, video=True, mute=None, blank=None, model=None, top_k=5,
              api=False, audio_from=None, degrade: Optional[dict] = None, audio_weight=0.5) -> Query:
        """A client's values -> a Query (InputError, one line, for anything wrong).
        ``degrade``: the client's degradation values by name (``uavm.degrade.Degrade.checked``)."""
        audio, video = flag("audio_on", audio), flag("video_on", video)
        start, mute, blank = check_window(start, mute, blank)
        ex = self.models.get(self.names[0] if model is None else model)
        top_k = check_top_k(top_k, len(ex.pipe.bundle.labels))
        deg = Degrade.checked(**(degrade or {}))
        w = check_weight(audio_weight)  # (a cross-modal model refuses a weight itself, saying why)
        take = self.uploads.from_api if api else self.uploads.check
        path = take(media)
        other = take(audio_from) if audio_from else None
        return Query(path, start, audio, video, mute, blank, model or self.names[0], top_k, other, deg, w)

    def analyze(self, q: Query, progress=None):
        """-> (Analysis, Explorer) of the query; the server's paths never in a message."""
        try:
            ex = self.models.get(q.model)
            an = ex.run(q.path, q.start, q.audio, q.video, q.mute, q.blank, digest=self.models.digest(q.path),
                        progress=progress, audio_weight=q.audio_weight, **q.variant(self))
        except work.Cancelled:
            raise
        except UAVMError as e:
            raise InputError(public_message(e, q.path, q.audio_from)) from None
        return an, ex

    def example_of(self, path):
        """The packaged example clip whose bytes an upload holds, or None."""
        try:
            real = self.uploads.check(path)
            return self.examples.get(self.models.digest(real)) if self.examples else None
        except (UAVMError, OSError):
            return None

    def gone(self, request) -> bool:
        """Has this request's client gone (Gradio marks its events dead when its stream closes)?"""
        h = getattr(request, "session_hash", None)
        q = getattr(self.blocks, "_queue", None)
        if not h or q is None:
            return False
        try:
            return any(e.session_hash == h and not e.alive for job in list(q.active_jobs) if job for e in job)
        except (AttributeError, RuntimeError):
            return False

    def serving(self, request):
        """The context a client's request runs in: its lanes, and a stop when it leaves."""
        import contextlib

        stack = contextlib.ExitStack()
        stack.enter_context(work.as_client(getattr(request, "session_hash", None)))
        stack.enter_context(work.stop_when(lambda: self.gone(request)))
        return stack


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



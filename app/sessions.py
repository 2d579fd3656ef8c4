"""Sessions: which clients are still here, and each page's requests in order.

``Sessions`` drops a client's session (Gradio keeps its state, ~0.3 MB, for up to 10,000
of them) once it has been idle too long, whatever protocol it speaks: an API-only session
after ``api_idle_s`` without a call, a page's after ``page_idle_s``. ``InOrder`` answers a
page's requests in the order the page sent them. ``LiveSessions`` holds the Live tab's
windows, bounded in number and time, freed when idle.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from uavm.errors import InputError
from uavm.live import Live


class Sessions:
    """When each session was last used; ``sweep`` drops the idle ones from Gradio's state."""

    def __init__(self, api_idle_s: float = 30.0, page_idle_s: float = 3600.0):
        self.api_idle_s, self.page_idle_s = api_idle_s, page_idle_s
        self.last, self._lock = {}, threading.Lock()  # session -> (time, is a page)
        self._seen: dict = {}  # session -> the (model, content, window) keys it asked for, the latest 64

    def used(self, request, page: bool = False) -> None:
        h = getattr(request, "session_hash", None)
        if h:
            with self._lock:
                was = self.last.get(h)
                self.last[h] = (time.time(), page or bool(was and was[1]))

    def page(self, request) -> None:
        """This session has a page (it is kept for ``page_idle_s`` after its last use)."""
        self.used(request, page=True)

    def seen(self, request, key) -> bool:
        """Has this session asked for ``key`` before (then it may be told what it reused)?"""
        h = getattr(request, "session_hash", None)
        if not h:
            return False
        with self._lock:
            mine = self._seen.setdefault(h, [])
            if key in mine:
                return True
            mine.append(key)
            del mine[:-64]
            if len(self._seen) > 20_000:
                self._seen = {k: v for k, v in list(self._seen.items())[-10_000:]}
        return False

    def sweep(self, holder, queue=None) -> int:
        """Drop the idle sessions' state (``holder``: Gradio's StateHolder) -> how many."""
        now, dropped = time.time(), 0
        with self._lock:
            idle = [h for h, (t, page) in self.last.items() if now - t > (self.page_idle_s if page else self.api_idle_s)]
            for h in idle:
                del self.last[h]
                self._seen.pop(h, None)
        data, lock = getattr(holder, "session_data", None), getattr(holder, "lock", None)
        if data is None or lock is None:  # another Gradio: nothing to do
            return 0
        with lock:
            for h in idle:
                if data.pop(h, None) is not None:
                    dropped += 1
                getattr(holder, "time_last_used", {}).pop(h, None)
        pending = getattr(queue, "pending_messages_per_session", None)
        for h in idle:
            try:
                if pending is not None and h in pending and not getattr(queue, "pending_event_ids_session", {}).get(h):
                    pending.pop(h, None)
            except (KeyError, RuntimeError):
                pass
        return dropped


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


# -- live sessions (the Live tab, live.py) ----------------------------------------------------------
IDLE_S = 15.0  # a live window without a push for this long is freed (its page has gone)
STRIP = 60  # answers kept for the strip: the last minute at one a second


@dataclass
class Session:
    model: str
    live: Live
    started: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    history: deque = field(default_factory=lambda: deque(maxlen=STRIP))  # (newest time, top-1 per pass)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one push of a session at a time


class LiveSessions:
    def __init__(self, max_sessions: int = 4, max_minutes: float = 30.0):
        self.max_sessions, self.max_seconds = int(max_sessions), float(max_minutes) * 60
        self.sessions: dict = {}
        self._lock = threading.Lock()

    def get(self, key: str, model: str, explorer) -> Session:
        """This page's live session for ``model`` (a new one when it has none or another model's)."""
        self.sweep()
        with self._lock:
            s = self.sessions.get(key)
            if s is not None and s.model != model:
                s = None
            if s is None:
                if len([k for k in self.sessions if k != key]) >= self.max_sessions:
                    raise InputError(f"the server runs {self.max_sessions} live sessions already: try again later")
                s = self.sessions[key] = Session(model, Live(explorer))
            if time.monotonic() - s.started > self.max_seconds:
                del self.sessions[key]
                raise InputError(f"a live session lasts at most {self.max_seconds / 60:g} minutes: press Start again")
            s.used = time.monotonic()
            return s

    def drop(self, key) -> bool:
        with self._lock:
            return self.sessions.pop(key, None) is not None

    def sweep(self, gone=lambda key: False) -> int:
        """Free the sessions idle for ``IDLE_S`` or whose page has gone -> how many."""
        now = time.monotonic()
        with self._lock:
            old = [k for k, s in self.sessions.items() if now - s.used > IDLE_S or gone(k)]
            for k in old:
                del self.sessions[k]
        return len(old)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(s.live.memory_bytes() for s in self.sessions.values())

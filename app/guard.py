"""The door in front of every route (an ASGI middleware inside Gradio's app): what no
handler can see, bounded before Gradio does any work.

* uploads: the bytes of one request (every file of it, counted as they arrive, whatever the
  Content-Length says) and the upload folder as a whole; a new upload that would pass a cap
  is refused, nothing else is evicted for it;
* the queue: how many events one session, and one client address, may have waiting; the
  size of an event's request;
* logins (with --auth): failed logins per address and overall per minute; every route
  behind the login but the login page and what it needs; logins that expire;
* the origin: a request a browser sends from another site's page is refused (Gradio would
  answer any page on localhost, with the user's cookies);
* plotly.js: served from the plotly package under a fixed path, so no server path appears
  in the page or its config.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from urllib.parse import urlsplit

PLOTLY_URL = "/uavm/plotly.min.js"
# what the login page itself needs before anyone is logged in
OPEN = ("/login", "/login/", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json")
OPEN_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/theme.css", "/gradio_api/app_id",
                 "/gradio_api/startup-events")  # (the last: Gradio calls it itself, at launch)


class TooLarge(Exception):
    pass


def _send_text(send, status: int, text: str, headers=()):
    async def go():
        body = text.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})
    return go()


class Limits:
    """The guard's numbers (the app's settings, see ``uavm.settings``)."""

    def __init__(self, upload_request_mb=200.0, upload_total_mb=2048.0, session_events=16, client_events=128,
                 event_kb=512, logins_per_client=10, logins_total=100, login_hours=12.0):
        self.upload_request = int(upload_request_mb * 2**20)
        self.upload_total = int(upload_total_mb * 2**20)
        self.session_events, self.client_events = int(session_events), int(client_events)
        self.event_bytes = int(event_kb * 1024)
        self.logins_per_client, self.logins_total = int(logins_per_client), int(logins_total)
        self.login_seconds = float(login_hours) * 3600


class Guard:
    """The middleware. ``state`` is the app's shared state (``Guard.State``), filled in by the
    server once Gradio has started (its Blocks, the upload folder, the share link)."""

    class State:
        def __init__(self, limits: Limits, upload_dir: str, auth: bool, plotly_file: str):
            self.limits, self.upload_dir, self.auth, self.plotly_file = limits, upload_dir, auth, plotly_file
            self.blocks = None
            self.origins: set = set()  # more origins of this app's own page (its share link)
            self.failed: dict = {}  # client -> deque of failed login times
            self.failed_all: deque = deque()
            self.lock = threading.Lock()
            self._used = (0.0, 0)  # (when measured, bytes in the upload folder)
            self.refusals = Refusals()

        def upload_bytes(self) -> int:
            """Bytes in the upload folder, measured at most every two seconds."""
            when, used = self._used
            if time.monotonic() - when > 2:
                used = folder_bytes(self.upload_dir)
                self._used = (time.monotonic(), used)
            return used

        def add_upload(self, n: int) -> None:
            when, used = self._used
            self._used = (when, used + n)

    def __init__(self, app, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("?", 0))[0]
        st = self.state
        if not self._same_origin(headers):
            st.refusals.note(client, "a request from another site's page")
            return await _send_text(send, 403, "requests from another site's page are refused")
        if st.auth and not self._open(path) and not self._logged_in(scope, headers):
            return await _send_text(send, 401, "log in first")
        if path == PLOTLY_URL:
            return await self._plotly(send)
        if st.auth and path.rstrip("/") == "/login" and method == "POST":
            return await self._login(scope, receive, send, client)
        if method == "POST" and path.endswith("/gradio_api/upload"):
            return await self._upload(scope, receive, send, headers, client)
        if method == "POST" and (path.endswith("/gradio_api/queue/join") or "/gradio_api/call/" in path):
            return await self._join(scope, receive, send, headers, client, path)
        return await self.app(scope, receive, send)

    # -- who may ask ---------------------------------------------------------------------------
    def _same_origin(self, headers: dict) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not a browser's cross-site request (a page's own GETs, API clients)
            return True
        host = urlsplit(origin).netloc.lower()
        mine = {h.strip().lower() for h in (headers.get("host", ""), headers.get("x-forwarded-host", "")) if h}
        return host in mine or origin.rstrip("/").lower() in self.state.origins

    def _open(self, path: str) -> bool:
        return path in ("/", "") or path in OPEN or path.startswith(OPEN_PREFIXES)

    def _logged_in(self, scope, headers) -> bool:
        app = scope.get("app")
        tokens = getattr(app, "tokens", None)
        if tokens is None:
            return False
        if not isinstance(tokens, ExpiringTokens):  # the first request: logins expire from now on
            app.tokens = tokens = ExpiringTokens(tokens, self.state.limits.login_seconds)
        cookie = headers.get("cookie", "")
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name.startswith("access-token") and tokens.get(value) is not None:
                return True
        return False

    async def _login(self, scope, receive, send, client):
        st, now = self.state, time.monotonic()
        with st.lock:
            mine = st.failed.setdefault(client, deque())
            for q in (mine, st.failed_all):
                while q and now - q[0] > 60:
                    q.popleft()
            if len(mine) >= st.limits.logins_per_client or len(st.failed_all) >= st.limits.logins_total:
                st.refusals.note(client, "too many failed logins")
                return await _send_text(send, 429, "too many failed logins: wait a minute",
                                        [(b"retry-after", b"60")])
            if len(st.failed) > 10_000:  # forget the quiet addresses
                for k in [k for k, q in st.failed.items() if not q][:5000]:
                    del st.failed[k]
        status = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        await self.app(scope, receive, watch)
        if status.get("code", 200) >= 400:
            with st.lock:
                st.failed.setdefault(client, deque()).append(time.monotonic())
                st.failed_all.append(time.monotonic())

    # -- how much they may send --------------------------------------------------------------------
    async def _upload(self, scope, receive, send, headers, client):
        st, lim = self.state, self.state.limits
        declared = int(headers.get("content-length") or 0) if (headers.get("content-length") or "").isdigit() else 0
        if declared > lim.upload_request:
            st.refusals.note(client, "an upload over the cap")
            await _drain(receive, declared)
            return await _send_text(send, 413, f"an upload may be at most {lim.upload_request / 2**20:.0f} MiB")
        if st.upload_bytes() + max(declared, 0) > lim.upload_total:
            st.refusals.note(client, "the upload space is full")
            await _drain(receive, declared or DRAIN)
            return await _send_text(send, 413, "the server's upload space is full: try again later")
        got, started, more = 0, {"yes": False}, True

        async def counted():
            nonlocal got, more
            message = await receive()
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                more = message.get("more_body", False)
                if got > lim.upload_request or st.upload_bytes() + got > lim.upload_total:
                    raise TooLarge()
            return message

        async def tracked(message):
            if message["type"] == "http.response.start":
                started["yes"] = True
            await send(message)
        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            st.refusals.note(client, "an upload over the cap")
            if not started["yes"]:
                if more:
                    await _drain(receive, declared - got if declared else DRAIN)
                await _send_text(send, 413, f"an upload may be at most {lim.upload_request / 2**20:.0f} MiB, and the "
                                            "server's upload space is bounded")
        finally:
            st.add_upload(got)

    async def _join(self, scope, receive, send, headers, client, path):
        st, lim = self.state, self.state.limits
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > lim.event_bytes:
                st.refusals.note(client, "an event request too large")
                length = headers.get("content-length") or ""
                if more:
                    await _drain(receive, int(length) - len(body) if length.isdigit() else DRAIN)
                return await _send_text(send, 413, f"an event's request may be at most {lim.event_bytes // 1024} KiB")
        session, data = None, None
        try:
            data = json.loads(body or b"{}")
            session = data.get("session_hash") if isinstance(data, dict) else None
        except ValueError:
            pass
        want = self._inputs(path, data) if isinstance(data, dict) else None
        values = data.get("data") if isinstance(data, dict) else None
        if want is not None and isinstance(values, list) and len(values) != want:
            # Gradio would answer with, and log, a traceback holding every value sent
            st.refusals.note(client, "an event with the wrong number of values")
            return await _send_text(send, 422, f"this request takes {want} values, got {len(values)} "
                                               "(gradio_client fills in the defaults)")
        waiting = self._waiting()
        if isinstance(session, str) and waiting.get(("session", session), 0) >= lim.session_events:
            st.refusals.note(client, "too many events queued by one session")
            return await _send_text(send, 429, f"this page already has {lim.session_events} requests waiting: "
                                               "wait for their answers")
        if waiting.get(("client", client), 0) >= lim.client_events:
            st.refusals.note(client, "too many events queued by one client")
            return await _send_text(send, 429, f"this address already has {lim.client_events} requests waiting: "
                                               "wait for their answers")
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.app(scope, replay, send)

    def _inputs(self, path: str, data: dict):
        """How many values the event this request asks for takes (None: not known here)."""
        fns = getattr(self.state.blocks, "fns", None)
        if not isinstance(fns, dict):
            return None
        if "/gradio_api/call/" in path:
            name = path.rsplit("/gradio_api/call/", 1)[1].strip("/")
            fn = next((f for f in fns.values() if getattr(f, "api_name", None) == name), None)
        else:
            index = data.get("fn_index")
            fn = fns.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
        inputs = getattr(fn, "inputs", None)
        return len(inputs) if isinstance(inputs, list) else None

    def _waiting(self) -> dict:
        """("session", hash) and ("client", address) -> events queued or running."""
        q = getattr(self.state.blocks, "_queue", None)
        out: dict = {}
        if q is None:
            return out
        try:
            events = [e for eq in list(q.event_queue_per_concurrency_id.values()) for e in list(eq.queue)]
            events += [e for job in list(q.active_jobs) if job for e in job]
        except (AttributeError, RuntimeError):
            return out
        for e in events:
            for key in (("session", getattr(e, "session_hash", None)), ("client", _client_of(e))):
                if key[1] is not None:
                    out[key] = out.get(key, 0) + 1
        return out

    async def _plotly(self, send):
        try:
            with open(self.state.plotly_file, "rb") as f:
                body = f.read()
        except OSError:
            return await _send_text(send, 404, "not here")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/javascript; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"public, max-age=86400")]})
        await send({"type": "http.response.body", "body": body})


DRAIN = 16 << 20  # bytes of a refused upload read and dropped, so that its client sees the 413


async def _drain(receive, declared: int) -> None:
    """Read and drop what is left of a refused request's body (``declared`` bytes, at most
    ``DRAIN``; call it only while the body has more to come), BEFORE the refusal is sent (the
    server closes the connection once an answer is complete): a client that sends all of its
    body before it reads the answer then gets the 413 rather than a broken connection.
    Nothing is kept; a bigger body is cut off."""
    left = min(declared, DRAIN)
    while left > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        left -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _client_of(event):
    req = getattr(event, "request", None)
    client = getattr(req, "client", None)
    return getattr(client, "host", None)


def folder_bytes(root: str) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


class ExpiringTokens(dict):
    """Gradio's login tokens, each valid for ``seconds`` after the login that made it."""

    def __init__(self, tokens: dict, seconds: float):
        super().__init__(tokens)
        self.seconds = seconds
        self.made = {t: time.monotonic() for t in tokens}

    def __setitem__(self, token, user):
        self.made[token] = time.monotonic()
        super().__setitem__(token, user)

    def get(self, token, default=None):
        made = self.made.get(token)
        if made is not None and time.monotonic() - made > self.seconds:
            self.pop(token, None)
            self.made.pop(token, None)
            return default
        return super().get(token, default)

    def sweep(self) -> int:
        old = [t for t, m in list(self.made.items()) if time.monotonic() - m > self.seconds]
        for t in old:
            self.pop(t, None)
            self.made.pop(t, None)
        return len(old)


class Refusals:
    """Refusals logged once per client and kind per minute (a flood costs the log one line a minute)."""

    def __init__(self, every: float = 60.0):
        self.every, self.last, self.lock = every, {}, threading.Lock()

    def note(self, client, what: str, log=None) -> bool:
        import logging

        key, now = (client, what), time.monotonic()
        with self.lock:
            if now - self.last.get(key, -1e9) < self.every:
                return False
            self.last[key] = now
            if len(self.last) > 10_000:
                self.last = {k: v for k, v in self.last.items() if now - v < self.every}
        (log or logging.getLogger("uavm.app").warning)("refused %s: %s", str(client)[:60], what[:300])
        return True

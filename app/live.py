"""The Live tab: a camera's frames and a microphone's sound, sent by the page's script about
once a second (one push: the frames and sound captured since the last, with their capture
times), answered from each session's rolling window (``uavm.live``).

The page sends a push only when the last one was answered, so a slow model skips refreshes
instead of queueing them. A push is checked like an upload: its size (the guard caps every
event), each frame a JPEG of bounded size, the sound 16-bit PCM at the model's rate, times
finite and in order. The server holds at most ``UAVM_LIVE_SESSIONS`` live sessions, each for
at most ``UAVM_LIVE_MINUTES``; a session's window is freed on Stop, when its page leaves, or
after ``IDLE_S`` without a push.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from uavm.errors import InputError, number
from uavm.live import Live

IDLE_S = 15.0
MAX_FRAMES = 12  # in one push (3 fps for 4 s)
MAX_JPEG = 512 * 1024  # bytes of one frame
MAX_PIXELS = 2_000_000
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


def parse_push(text, rate: int) -> dict:
    """The page's push (JSON) -> {"seq", "frames": [(t, RGB)], "audio": (t, float32) or None,
    "errors": {modality: why}}; anything else is one line."""
    from PIL import Image

    if not isinstance(text, str) or not text.strip():
        raise InputError("a live push must be the page's JSON")
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError("a live push must be the page's JSON") from None
    if not isinstance(d, dict):
        raise InputError("a live push must be the page's JSON object")
    seq = number("the push's number", d.get("seq"), lo=0, hi=2**53, integer=True)
    frames, audio = [], None
    raw_frames = d.get("frames") or []
    if not isinstance(raw_frames, list) or len(raw_frames) > MAX_FRAMES:
        raise InputError(f"a live push holds at most {MAX_FRAMES} frames")
    for f in raw_frames:
        if not isinstance(f, dict) or not isinstance(f.get("jpeg"), str) or len(f["jpeg"]) > MAX_JPEG * 4 // 3 + 4:
            raise InputError("a frame must be a JPEG of at most 512 KB")
        try:
            data = base64.b64decode(f["jpeg"].split(",", 1)[-1], validate=True)
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "JPEG" or im.width * im.height > MAX_PIXELS:
                    raise InputError("a frame must be a JPEG of at most 2 megapixels")
                rgb = np.asarray(im.convert("RGB"))
        except InputError:
            raise
        except Exception:
            raise InputError("a frame is not a readable JPEG") from None
        frames.append((number("the frame's time", f.get("t"), lo=0), rgb))
    a = d.get("audio")
    if a is not None:
        if not isinstance(a, dict) or not isinstance(a.get("pcm"), str):
            raise InputError("the sound must be 16-bit PCM")
        if number("the sound's rate", a.get("rate"), integer=True) != rate:
            raise InputError(f"the sound must come at {rate} Hz, the model's rate")
        if len(a["pcm"]) > (12 * rate * 2) * 4 // 3 + 4:
            raise InputError("a live push holds at most 12 s of sound")
        try:
            pcm = np.frombuffer(base64.b64decode(a["pcm"], validate=True), "<i2")
        except (ValueError, TypeError):
            raise InputError("the sound is not base64 16-bit PCM") from None
        audio = (number("the sound's time", a.get("t"), lo=0), pcm.astype(np.float32) / 32768)
    errors = {}
    for m in ("audio", "video"):
        e = (d.get("errors") or {}).get(m) if isinstance(d.get("errors"), dict) else None
        if e:
            errors[m] = "".join(ch for ch in str(e)[:80] if ch.isprintable())
    return {"seq": seq, "frames": frames, "audio": audio, "errors": errors}


def strip_html(history, labels) -> str:
    """The last minute's top-1 of each pass, oldest left: a cell per answer, coloured by class."""
    from html import escape

    from uavm.figures import class_palette

    palette = class_palette()
    index = {lab.name: i for i, lab in enumerate(labels)}
    rows = []
    for m, title in (("audio", "audio"), ("video", "video"), ("fused", "fused")):
        cells = []
        for t, tops in history:
            name = tops.get(m)
            color = "#eeeeee" if name is None else palette[index.get(name, 0) % len(palette)]
            tip = escape(f"{t:.0f} s: {name or 'none'}")
            cells.append(f"<span class='live-cell' title='{tip}' style='background:{color}'></span>")
        rows.append(f"<div class='live-row'><span class='live-pass'>{title}</span>{''.join(cells)}</div>")
    return ("<div id='live-strip-rows'><div class='live-caption'>each pass's top-1, one cell per answer, the newest "
            "on the right (hover a cell for its class)</div>" + "".join(rows) + "</div>")

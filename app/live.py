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

import gradio as gr
import numpy as np

from uavm import figures
from uavm.errors import InputError, flag, number
from uavm.window import check_weight

from .page import TITLES, Settings, boundary, layer_of, ood_note
from .serving import Server
from .sessions import session_of

MAX_FRAMES = 12  # in one push (3 fps for 4 s)
MAX_JPEG = 512 * 1024  # bytes of one frame
MAX_PIXELS = 2_000_000


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

    from uavm.series import class_palette

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


# -- the Live tab --------------------------------------------------------------------------------
LIVE_OUT = ("live_audio_label", "live_video_label", "live_fused", "live_note", "live_strip", "live_attention",
            "live_status", "live_ack")


def cleared_live() -> dict:
    return {**{f"live_{m}_label": gr.Label(value=None, label=t) for m, t in TITLES if m != "fused"},
            "live_fused": gr.Label(value=None, label="Fused"), "live_note": "", "live_attention": ""}


def _live_key(request) -> str:
    key = session_of(request, "live")
    if key is None:
        raise InputError("the Live tab needs the page (a session)")
    return key[1]


@boundary(cleared_live, status="live_status")
def live_push(server: Server, s: Settings, request=None, progress=None) -> dict:
    """One push of the page's camera and microphone: into this session's window, answered."""
    name = s.model or server.names[0]
    ex = server.models.get(name)
    pre, cfg = ex.pipe.pre, ex.pipe.bundle.model.cfg
    push = parse_push(s.live_push, pre.audio.sample_rate)
    flag("live audio", s.live_audio)
    flag("live video", s.live_video)
    sess = server.live.get(_live_key(request), name, ex)
    if not sess.lock.acquire(blocking=False):  # the page sends one push at a time: a second is dropped
        return {"live_ack": push["seq"]}
    try:
        for t, frame in push["frames"]:
            sess.live.add_frame(t, frame)
        if push["audio"] is not None:
            sess.live.add_audio(*push["audio"])
        ans = sess.live.answer(flag("live audio", s.live_audio), flag("live video", s.live_video),
                               check_weight(s.audio_weight))
        pred = ans.prediction
        tops = {m: (pred.top(m, 1) or [{}])[0].get("label") if pred is not None else None
                for m in ("audio", "video", "fused")}
        sess.history.append((ans.newest, tops))
        strip = strip_html(sess.history, ex.pipe.bundle.labels)
    finally:
        sess.lock.release()
    k = min(number("top k", s.top_k, integer=True, lo=1), len(ex.pipe.bundle.labels))
    out = {"live_ack": push["seq"], "live_strip": strip}
    missing = dict(pred.missing) if pred is not None else {}
    for m, why in push["errors"].items():  # the page could not open that device: its own words
        missing[m] = f"the {'microphone' if m == 'audio' else 'camera'} is not available ({why})"
    for m, title in TITLES:
        top = pred.top(m, k) if pred is not None else None
        why = missing.get(m) if m != "fused" else None
        if top is None and why is None and m != "fused" and pred is not None:
            why = "no single-modality answer: the cross-modal model answers with both together"
        if pred is not None and pred.unfamiliar(m):
            why = "⚠️ unfamiliar input" + (f" · {why}" if why else "")
        box = "live_fused" if m == "fused" else f"live_{m}_label"
        out[box] = gr.Label(value={t["label"]: t["score"] for t in top} if top else None,
                            label=title + (f" — {why}" if why else ""))
    layer = layer_of(s, cfg)
    out["live_attention"] = figures.live_attention(pred, layer, cfg, pre.video.fps).to_json() if pred else ""
    out["live_note"] = ood_note(pred, ex.pipe.bundle) if pred is not None else ""
    secs = ans.seconds
    out["live_status"] = (f"**{name}** · the last {secs['audio']:.0f} s of sound and {secs['video']:.0f} s of frames"
                          f" · answered in {ans.compute_ms:.0f} ms" + (f" · ⚠️ {ans.error}" if ans.error else ""))
    return out


def live_stop(server: Server, s: Settings, request=None, progress=None) -> dict:
    """Stop: this session's window is freed."""
    key = session_of(request, "live")
    dropped = server.live.drop(key[1]) if key else False
    return {**cleared_live(), "live_strip": "", "live_status": "Stopped." if dropped else "Not running."}

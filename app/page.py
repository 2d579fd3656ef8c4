"""The page's handlers: what each event of the page does, as plain functions of the server's
shared state and the page's settings, returning ``{output name: value}`` (``layout.py``
wires them to components by those names). No handler raises: a problem is one line in the
status line and the results it concerns cleared, never a wall of error badges.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Optional

import gradio as gr
import numpy as np

from uavm import figures, series
from uavm.errors import InputError, UAVMError, number, shorten

from .serving import Server, failure, public_message
from .sessions import InOrder, session_of

log = logging.getLogger("uavm.app")
STRIDE = 5.0  # seconds between the timeline's windows
SENTINEL = "uavm-stamp"  # the stamp box's value: the page's JS puts each request's number in its place
TITLES = (("audio", "Audio only"), ("video", "Video only"), ("fused", "Fused"))
SPAN_NAMES = {"mute": "muted", "blank": "blanked", "degrade": "degraded"}


@dataclass(frozen=True)
class Settings:
    """Every control of the page, as a client sent it (checked by ``query``, not here)."""

    media: Optional[str] = None
    start: float = 0.0
    audio_on: bool = True
    video_on: bool = True
    mute_on: bool = False
    mute_from: Optional[float] = 2.0
    mute_to: Optional[float] = 5.0
    blank_on: bool = False
    blank_from: Optional[float] = 2.0
    blank_to: Optional[float] = 5.0
    audio_from: Optional[str] = None  # another upload whose audio goes with this clip's video
    audio_snr: str = ""  # the degradations' levels as typed (uavm.degrade): empty is none
    video_blur: str = ""
    video_size: str = ""
    video_fps: str = ""
    degrade_on: bool = False  # the degradations over this span only (else the whole window)
    degrade_from: Optional[float] = 2.0
    degrade_to: Optional[float] = 5.0
    audio_weight: float = 0.5
    sweep_kind: str = "audio_snr"  # the Sweep tab: one degradation over levels
    sweep_levels: str = ""
    live_push: str = ""  # the Live tab: the page's script's latest push of camera and microphone media
    live_audio: bool = True
    live_video: bool = True
    model: Optional[str] = None
    top_k: int = 5
    layer: Optional[int] = None
    target: str = "fused"
    full_open: bool = False
    diff_open: bool = False
    explain_open: bool = False
    stamp: Optional[str] = None  # the page's number for this request (serving.InOrder)
    painted: str = ""  # the key of the settings the page's results were made from
    pick: str = ""  # the window clicked in the timeline strip: "START NONCE"

    @classmethod
    def of(cls, values: dict) -> Settings:
        """From ``{field name: value}``; missing fields keep their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def key(self) -> str:
        """A short fingerprint of what the answer depends on (the page keeps the painted one)."""
        keep = [repr(getattr(self, f.name)) for f in fields(self)
                if f.name not in ("stamp", "painted", "pick", "full_open", "diff_open", "sweep_kind", "sweep_levels")
                and not f.name.startswith("live_")]
        return hashlib.sha256(json.dumps(keep).encode()).hexdigest()[:32]

    def span(self, which: str):
        """"mute", "blank" or "degrade": (from, to) when its box is ticked, else None."""
        on, a, b = (getattr(self, f"{which}_{k}") for k in ("on", "from", "to"))
        if not on:
            return None
        if a is None or b is None:
            raise InputError(f"give both times of the {SPAN_NAMES[which]} span")
        return a, b

    def query(self, server: Server, **changes):
        """The checked request these settings make (InputError for a bad value)."""
        s = replace(self, **changes)
        if not s.media:
            raise InputError("upload or record a clip first (or pick an example)")
        k = number("top k", s.top_k, integer=True)
        degrade = {k: level(k, getattr(s, k)) for k in ("audio_snr", "video_blur", "video_size", "video_fps")}
        degrade["span"] = s.span("degrade")
        return server.query(s.media, s.start, s.audio_on, s.video_on, s.span("mute"), s.span("blank"),
                            s.model, k, audio_from=s.audio_from or None, degrade=degrade, audio_weight=s.audio_weight)

    @property
    def number(self) -> Optional[int]:
        return InOrder.stamp(self.stamp)


def layer_of(s: Settings, cfg) -> int:
    """The layer the page asks for (1..layers; none: the last), checked as a number."""
    return min(max(number("layer", s.layer or cfg.n_layers, integer=True), 1), cfg.n_layers)


def level(name: str, text) -> Optional[float]:
    """A degradation's box: empty is none, else a number (its range is uavm.degrade's)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    text = str(text).strip()
    if len(text) > 40:  # never cut: a cut number is another number
        raise InputError(f"{name.replace('_', ' ')} must be a number or empty, got {shorten(text)}")
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{name.replace('_', ' ')} must be a number or empty, got {shorten(str(text))}") from None


def boundary(cleared, status: str = "status"):
    """A handler's failures as its cleared outputs and one line in its ``status`` box
    (``serving.failure``); nothing when its client has left."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                msg = failure(e, fn.__name__)
                return {} if msg is None else {**cleared(), status: f"⚠️ {msg}"}
        return inner
    return wrap


# -- the answers -------------------------------------------------------------------------------
def cleared_answers() -> dict:
    return {**{f"label_{m}": gr.Label(value=None, label=t) for m, t in TITLES}, "answers": gr.Row(visible="hidden"),
            "answer_note": "", "ood_note": "", "temporal": "", "full": None, "diff": None, "window_at": ""}


def cleared_explanation() -> dict:
    return {"explain_text": "", "explain_plot": gr.Plot(value=None, visible=False)}


def answer_note(bundle) -> str:
    """What the scores are, and are not, for this model: never more than it knows."""
    n = len(bundle.labels)
    if bundle.multilabel:
        text = (f"Each score is that class's own probability (a sigmoid) among this model's {n} classes: several "
                "may be high, or none.")
    else:
        text = (f"The scores share 100 % among this model's {n} classes (a softmax): it always names one of them, "
                "even for a clip of something else.")
    if is_demo(bundle.config):
        text += " **The demo model knows only 12 generated classes: on a real recording its answers mean nothing.**"
    return text


def ood_note(pred, bundle) -> str:
    """The warning beside the answers when a pass's input is unfamiliar (``uavm.ood``), and
    what the flag means; a word when the bundle cannot tell."""
    if bundle.ood is None:
        return ("*This model has no familiarity statistics: it cannot tell when an input is unlike its training "
                "data (`uavm ood fit` makes them).*")
    flagged = [(m, pred.ood[m]) for m, _ in TITLES if pred.unfamiliar(m)]
    if not flagged:
        return ""
    names = dict(TITLES)
    share = f"{100 * (1 - bundle.ood.false_alarm):g} %"
    lines = []
    for m, o in flagged:
        if m == "fused" and o.get("passes") and o["score"] <= o["threshold"]:
            why = f"it is built on the {' and the '.join(p for p in o['passes'])} pass's unfamiliar input"
        else:
            why = (f"its input lies farther from the training data than {share} of held-out clips "
                   f"(score {o['score']:.1f} > {o['threshold']:.1f})")
        lines.append(f"- **{names[m]}**: {why}")
    return ("⚠️ **Unfamiliar input: do not trust these answers.** The model names one of its classes whatever "
            "it is shown.\n" + "\n".join(lines))


def is_demo(config) -> bool:
    return isinstance(config, dict) and (config.get("task") or {}).get("dataset") == "uavm-synth"


@boundary(cleared_answers)
def answers(server: Server, s: Settings, request=None, progress=None) -> dict:
    """The three passes' top-k and the attention of the chosen layer; the closed accordions'
    figures are not made nor sent (they are when opened)."""
    t0 = time.perf_counter()
    server.sessions.page(request)
    if not s.media:
        return {**cleared_answers(), "status": "Upload or record a clip, or pick an example."}
    q = s.query(server)
    an, ex = server.analyze(q, progress=lambda f, msg: progress(f, desc=msg) if progress else None)
    pred = an.prediction
    if pred is None:  # nothing left, or the cross-modal model without a modality: the library's words
        return {**cleared_answers(), "status": f"⚠️ {an.error}"}
    cfg = ex.pipe.bundle.model.cfg
    out = {}
    source = {"audio": Path(q.audio_from).name if q.audio_from else None}
    for m, title in TITLES:
        top = pred.top(m, q.top_k)
        why = an.missing.get(m) if m != "fused" else None
        if top is None and why is None and m != "fused":
            why = "no single-modality answer: the cross-modal model answers with both together"
        if why is None and source.get(m):
            why = f"the sound of {source[m]}"
        if pred.unfamiliar(m):
            why = "⚠️ unfamiliar input" + (f" · {why}" if why else "")
        out[f"label_{m}"] = gr.Label(value={t["label"]: t["score"] for t in top} if top else None,
                                     label=title + (f" — {why}" if why else ""))
    layer = layer_of(s, cfg)
    out.update({"_ok": True, "answers": gr.Row(visible=True), "answer_note": answer_note(ex.pipe.bundle),
                "ood_note": ood_note(pred, ex.pipe.bundle),
                "temporal": figures.temporal(an, layer, ex.pipe.pre, cfg).to_json(),
                "full": figures.full_maps(an, layer, cfg) if s.full_open else gr.skip(),
                "diff": figures.av_difference(an, cfg) if s.diff_open else gr.skip(),
                "window_at": f"{an.start:g} {an.seconds:g}"})
    server_ms = (time.perf_counter() - t0) * 1000
    # what THIS page reused: another user's work on the same bytes is nobody's business here
    mine = server.sessions.seen(request, (q.model, server.models.digest(q.path), an.start))
    out["status"] = (f"**{q.model}** on `{ex.pipe.device}` · window {an.start:g}–{an.start + an.seconds:g} s · "
                     f"server time {server_ms:.0f} ms (features and model {an.timings_ms.get('total', 0):.0f} ms, "
                     f"figures {server_ms - an.timings_ms.get('total', 0):.0f} ms)"
                     + (" · decoded and extracted" if not an.reused else
                        f" · reused: {', '.join(an.reused)}" if mine else "") + variant_note(q, pred))
    return out


def variant_note(q, pred) -> str:
    """What this answer's media and fusion were, when not the clip's own (the status line)."""
    parts = []
    if q.audio_from:
        parts.append(f"the audio from {Path(q.audio_from).name}, the video from {Path(q.path).name}")
    if q.degrade is not None:
        parts.append(f"degraded: {q.degrade.describe()}")
    if "audio_weight" in pred.asked:
        w = pred.asked["audio_weight"]
        parts.append(f"fused = {w:g} × audio + {1 - w:g} × video")
    return "".join(f" · {p}" for p in parts)


def explore(server: Server, s: Settings, request=None, progress=None) -> dict:
    """Every change of clip or settings: the answers (and the explanation while its tab is
    open), one request of a session at a time and in order; a request overtaken by a newer
    one skips its work (the newer answer follows). ``painted``: the key of the settings the
    results were made from; ``answered``: this request's number when it painted (the page
    then asks ``reconcile``), ``checked`` when it was skipped: the page has settled once the
    newest number it sent comes back as ``checked``, never in between."""
    done = {"answered": s.number} if s.number is not None else {}
    with server.in_order.turn(session_of(request, "explore"), s.stamp) as superseded:
        if superseded():
            return {"checked": s.number} if s.number is not None else {}
        out = answers(server, s, request=request, progress=progress)
        if s.explain_open:  # a problem the status line reports is not said again in the panel
            out.update(explanation(server, s, progress) if out.pop("_ok", False) else cleared_explanation())
        out.pop("_ok", None)
        return {**out, "painted": s.key(), **done}


def reconcile(server: Server, s: Settings, request=None, progress=None) -> dict:
    """After every paint: are the results on the page made from the settings the page shows
    now? The page gathers an event's settings before it stamps it, so two events a moment
    apart can reach the server stamped in the other order, and the older settings' answer
    then lands last. This sees the mismatch and answers for the page's current settings
    (which asks again); a match is ``checked``: the page has settled."""
    if s.key() == s.painted:
        return {"checked": s.number} if s.number is not None else {}
    return explore(server, s, request=request, progress=progress)


# -- the explanation -----------------------------------------------------------------------------
def explanation(server: Server, s: Settings, progress=None) -> dict:
    """What mattered, when, in which modality (uavm.explain), computed once per clip, settings
    and target, then kept like the features. A problem the status line already reports (the
    clip, the settings) clears the panel; the explanation's own ones are said in it."""
    try:
        q = s.query(server)
        an, ex = server.analyze(q)
        if an.prediction is None:
            return cleared_explanation()
    except Exception as err:  # the status line says it; a bug is logged
        failure(err, "the explanation")
        return cleared_explanation()
    try:
        e = ex.explain(q.path, q.start, s.target or "fused", audio=q.audio, video=q.video, mute=q.mute,
                       blank=q.blank, digest=server.models.digest(q.path), **q.variant(server),
                       progress=(lambda f, msg: progress(f, desc=msg)) if progress else None)
    except Exception as err:
        msg = failure(err, "the explanation", q.path)
        return {} if msg is None else {**cleared_explanation(), "explain_text": f"⚠️ {msg}"}
    lines = e.summary()
    return {"explain_text": "\n\n".join([f"**{lines[0]}**", *lines[1:]]),
            "explain_plot": gr.Plot(value=figures.explanation(e), visible=True)}


def explain_tab(server: Server, s: Settings, request=None, progress=None) -> dict:
    return explanation(server, s, progress)


# -- the clip and the model ----------------------------------------------------------------------
def clip_chosen(server: Server, value):
    """A new clip in a player -> the page's media. An example clip (a copy Gradio made to show
    it) is served from the package, so that no cleaning of the upload folder can break it."""
    return server.example_of(value) or value


def duration_changed(server: Server, s: Settings, request=None, progress=None) -> dict:
    if not s.media:
        return {"start": gr.Slider(visible=False, value=0)}
    try:
        d = server.models.duration(server.uploads.check(s.media))
    except UAVMError:  # the answers say what is wrong with the file, in the status line
        return {"start": gr.Slider(visible=False, value=0)}
    # whole seconds: starts on the 3 fps grid, which a clip's timeline has already decoded
    return {"start": gr.Slider(visible=d > 10.5, maximum=max(float(np.floor(d - 0.5)), 1.0), value=0, step=1)}


def timeline_strip(server: Server, s: Settings, request=None, progress=None) -> dict:
    """A long clip's timeline: every window's audio, video and fused top-1, from one decode of
    the whole clip, kept so that moving the window start decodes nothing. A file the answers
    already refuse shows no strip (one message per problem)."""
    hidden = {"strip": gr.Column(visible="hidden"), "strip_json": "", "strip_note": ""}
    if not s.media:
        return hidden
    try:
        path = server.uploads.check(s.media)
        ex = server.models.get(s.model or server.names[0])
        if server.models.duration(path) <= ex.pipe.pre.clip_seconds + 0.5:
            return hidden
    except UAVMError:
        return hidden
    try:
        tl = ex.timeline(path, digest=server.models.digest(path), stride=STRIDE, top_k=3, max_windows=server.max_windows,
                         progress=(lambda done, total: progress((done / total) if total else None,
                                                                desc=f"timeline: {done:.0f} s decoded"))
                         if progress else None)
    except UAVMError as e:
        return {"strip": gr.Column(visible=True), "strip_json": "",
                "strip_note": f"⚠️ timeline: {public_message(e, path)}"}
    note = (f"**Timeline** of the whole clip ({tl.duration:.0f} s): the top-1 answer of every {tl.window:g} s "
            f"window, one every {tl.stride:g} s (overlapping windows take turns in each row; the outlined one is "
            "the window shown below). Click a window to explore it.")
    return {"strip": gr.Column(visible=True), "strip_json": series.timeline(tl).to_json(), "strip_note": note}


def pick_window(server: Server, s: Settings, request=None, progress=None) -> dict:
    """The start of the window clicked in the strip (checked: it comes from the page)."""
    try:
        return {"start": gr.Slider(value=number("start", float(str(s.pick).split()[0]), lo=0))}
    except (UAVMError, ValueError, IndexError):
        return {"start": gr.skip()}


def model_switched(server: Server, s: Settings, request=None, progress=None) -> dict:
    """A model's own targets for the explanation, its own layers on the slider, its notice."""
    try:
        bundle = server.models.get(s.model).pipe.bundle
    except UAVMError:
        return {"target": gr.skip(), "layer": gr.skip(), "notice": ""}
    return {"target": gr.Dropdown(choices=["fused", "audio", "video"] + [lab.name for lab in bundle.labels],
                                  value="fused"),
            "layer": layer_slider(bundle.model.cfg), "notice": demo_notice(bundle.config)}


def layer_slider(cfg, **kw) -> gr.Slider:
    return gr.Slider(minimum=1, maximum=max(cfg.n_layers, 2), value=cfg.n_layers, step=1, visible=cfg.n_layers > 1,
                     label=f"Layer ({figures.layer_label(cfg)})", **kw)


def demo_notice(bundle_config: dict) -> str:
    if is_demo(bundle_config):
        return ("ℹ️ This is the **demo model**: trained on generated clips of 12 classes (sirens, bells, dogs, "
                "keyboards), it names every clip one of those, real or not. For the authors' VGGSound model: "
                "`uavm app --model vggsound-uavm` (see the README).")
    return ""


def warm_up(server: Server, clips) -> None:
    """The default model run on clips before users come: the first click answers like the others."""
    try:
        ex = server.models.get(server.names[0])
        for p in clips:
            server.models.duration(p)
            an = ex.run(p, digest=server.models.digest(p))
            cfg = ex.pipe.bundle.model.cfg
            figures.temporal(an, cfg.n_layers, ex.pipe.pre, cfg), figures.full_maps(an, cfg.n_layers, cfg)
    except Exception as e:  # a failed warm-up only costs the first click its speed
        log.warning("warm-up failed: %s", failure(e, "the warm-up"))

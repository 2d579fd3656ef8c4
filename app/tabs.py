"""The results tabs beyond the answers and the explanation: Sweep (one degradation over
levels), the accordions' figures, Compare models, Heard and seen, Export. Handlers as in
``page.py``: Settings in, outputs by name out, a problem one line in the status line."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from uavm import figures, series
from uavm.errors import InputError, UAVMError, one_line, shorten

from .page import Settings, answer_note, boundary, layer_of
from .serving import Server, public_message

# -- the sweep ---------------------------------------------------------------------------------
SWEEP_LEVELS = {"audio_snr": "30, 20, 10, 0, -10, -20", "video_blur": "1, 2, 4, 8, 16, 32",
                "video_size": "64, 32, 16, 8, 4, 2", "video_fps": "2, 1, 0.5, 0.25, 0.1"}
SWEEP_NAMES = {"audio_snr": "Noise: SNR (dB)", "video_blur": "Blur: sigma (px)", "video_size": "Resolution (px)",
               "video_fps": "Frame rate (fps)"}


def sweep_levels(kind, text) -> list:
    """The levels box: numbers separated by commas or spaces; empty: the usual ones for the kind."""
    if not isinstance(kind, str) or kind not in SWEEP_LEVELS:
        raise InputError(f"unknown degradation {shorten(str(kind))!r} (known: {', '.join(SWEEP_LEVELS)})")
    if text is not None and not isinstance(text, (str, int, float)):
        raise InputError("the levels must be numbers separated by commas")
    text = str(text if text is not None else "").strip() or SWEEP_LEVELS[kind]
    if len(text) > 400:
        raise InputError("the levels must be at most 64 numbers")
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"the levels must be numbers separated by commas, got {shorten(text)}") from None


def cleared_sweep() -> dict:
    return {"sweep_text": "", "sweep_plot": gr.Plot(value=None, visible=False)}


@boundary(cleared_sweep)
def sweep_tab(server: Server, s: Settings, request=None, progress=None) -> dict:
    """The Sweep tab: one degradation over levels on the window as set (``uavm.sweep``)."""
    from uavm.degrade import KINDS

    q = s.query(server)
    levels = sweep_levels(s.sweep_kind, s.sweep_levels)
    ex = server.models.get(q.model)
    try:
        sw = ex.sweep(q.path, s.sweep_kind, levels, q.start, q.audio, q.video, q.mute, q.blank,
                      span=s.span("degrade"), audio_weight=q.audio_weight, digest=server.models.digest(q.path),
                      audio_from=q.audio_from, audio_digest=server.models.digest(q.audio_from) if q.audio_from else None,
                      progress=(lambda f, msg: progress(f, desc=msg)) if progress else None)
    except UAVMError as e:
        raise InputError(public_message(e, q.path, q.audio_from)) from None
    unit = KINDS[sw.kind][0]
    said = lambda v: "never" if v is None else f"at {v:g} {unit}"
    plain = sw.rows[0]
    odd = lambda m, v: "already without it" if plain[m]["unfamiliar"] else said(v)
    text = (f"The score of **{sw.target}** at each level of {SWEEP_NAMES[sw.kind].lower()}. Top-1 changes: "
            + ", ".join(f"{m} {said(v)}" for m, v in sw.breaks.items())
            + (". Input unfamiliar: " + ", ".join(f"{m} {odd(m, v)}" for m, v in sw.unfamiliar.items())
               if sw.unfamiliar else "") + ".")
    return {"sweep_text": text, "sweep_plot": gr.Plot(series.sweep(sw), visible=True), "status": gr.skip()}


# -- the other tabs ------------------------------------------------------------------------------
def one_figure(which: str):
    """The figure of an accordion, made when it is opened."""
    def make(server: Server, s: Settings, request=None, progress=None) -> dict:
        try:
            an, ex = server.analyze(s.query(server))
        except UAVMError:
            return {which: None}
        cfg = ex.pipe.bundle.model.cfg
        layer = layer_of(s, cfg)
        return {which: figures.full_maps(an, layer, cfg) if which == "full" else figures.av_difference(an, cfg)}
    return make


def _cell(pred, an, m, kind) -> str:
    """One model's top-1 of one pass, or why there is none."""
    top = pred.top(m, 1) if pred is not None else None
    if top:
        return "{label} ({score:.0%})".format(**top[0]) + (" ⚠️ unfamiliar input" if pred.unfamiliar(m) else "")
    if m in an.missing:
        return f"— {an.missing[m]}"
    if kind == "cross_modal" and m != "fused":
        return "— none: the cross-modal model answers only with both"
    return f"— {an.error or 'no answer'}"


def table_html(headers: list, rows: list) -> str:
    """An HTML table that fits its column: cells wrap; on a phone each row is a card whose
    cells are labelled by their column (CSS in page.css)."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td data-label="{escape(h)}">{escape(str(c))}</td>' for h, c in zip(headers, r))
                   + "</tr>" for r in rows)
    return f'<table class="uavm-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


COMPARE = ["model", "kind", "audio only", "video only", "fused"]


@boundary(lambda: {"compare_table": ""})
def compare(server: Server, s: Settings, request=None, progress=None) -> dict:
    """Every model on the same clip and settings: their top-1 answers side by side."""
    s.query(server)  # the clip and the settings are checked once, for every model
    rows = []
    for name in server.names:
        try:
            an, ex = server.analyze(s.query(server, model=name, top_k=1))
        except UAVMError as e:
            rows.append([name, "", f"— {one_line(e)}", "", ""])
            continue
        c = ex.pipe.bundle.model.cfg
        pred = an.prediction
        rows.append([name, f"{c.kind} (N={c.n_specific}, Ns={c.n_shared})",
                     *(_cell(pred, an, m, c.kind) for m in ("audio", "video", "fused"))])
    return {"compare_table": table_html(COMPARE, rows), "status": f"compared {len(rows)} models on this clip"}


@boundary(lambda: {"player": None})
def heard_and_seen(server: Server, s: Settings, request=None, progress=None) -> dict:
    """The 10 s window as the model got it: its 3 fps frames (blanked ones black) with the
    waveform it heard (muted span silent), as a video the browser plays."""
    from uavm.media import write_media

    q = s.query(server)
    an, ex = server.analyze(q)
    pre = ex.pipe.pre
    frames = an.frames if an.frames is not None and len(an.frames) and q.video else None
    wav = an.waveform if an.waveform is not None and len(an.waveform) and q.audio else None
    if frames is None and wav is None:
        raise InputError("neither modality is on: nothing to play")
    if frames is None:  # audio only: a still, so that it plays as a video
        frames = np.zeros((max(int(round(pre.clip_seconds * pre.video.fps)), 1), 64, 64, 3), np.uint8)
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))  # the encoder wants even sides
    out = Path(tempfile.mkdtemp(prefix="window-", dir=server.workdir)) / "window.mp4"
    write_media(out, frames, pre.video.fps, wav, pre.audio.sample_rate, options={"preset": "veryfast"})
    what = ", ".join(x for x in ("frames" if q.video and an.frames is not None else "",
                                 "sound" if wav is not None else "") if x)
    return {"player": str(out), "status": f"the window from {an.start:g} s as the model got it ({what})"}


@boundary(lambda: {"export_files": None})
def export(server: Server, s: Settings, request=None, progress=None) -> dict:
    """The current analysis as files: a report that stands alone (HTML: the clip, the model,
    every setting, the three passes' answers, the figures, the explanation when it was made)
    and the `uavm predict --json` answer with attention."""
    from uavm import report

    q = s.query(server)
    an, ex = server.analyze(q)
    if an.prediction is None:
        raise InputError(an.error)
    cfg, bundle = ex.pipe.bundle.model.cfg, ex.pipe.bundle
    layer = layer_of(s, cfg)
    name = Path(str(s.media)).name
    settings_ = {"audio_on": q.audio, "video_on": q.video, "mute": q.mute, "blank": q.blank, "top_k": q.top_k,
                 "layer": layer}
    if q.audio_from:  # a swap, a degradation, a weight: the report says what the answer was made from
        settings_["audio_from"] = Path(str(s.audio_from)).name
    if q.degrade is not None:
        settings_["degraded"] = q.degrade.describe()
    if q.audio_weight != 0.5:
        settings_["audio_weight"] = q.audio_weight
    answer = {"clip": name, "model": q.model, "start": an.start, "settings": settings_,
              **an.prediction.to_dict(q.top_k, attention=True)}
    e = ex.explain(q.path, q.start, s.target or "fused", audio=q.audio, video=q.video, mute=q.mute, blank=q.blank,
                   digest=server.models.digest(q.path), cached_only=True, **q.variant(server))
    page = report.clip_report(name, q.model, bundle, an, settings_, q.top_k, layer, ex.pipe.pre, explanation=e,
                              note=answer_note(bundle).replace("**", ""))
    out = Path(tempfile.mkdtemp(prefix="export-", dir=server.workdir))
    stem = Path(name).stem[:60] or "clip"
    (out / f"{stem}.uavm.json").write_text(json.dumps(answer, allow_nan=False))
    (out / f"{stem}.uavm.html").write_text(page, encoding="utf-8")
    return {"export_files": [str(out / f"{stem}.uavm.html"), str(out / f"{stem}.uavm.json")],
            "status": "the report and the answer are ready to download"}

"""The page: layout and handlers. It draws what uavm.explore computes.

Every handler of the page returns its outputs: a message goes to the one status line and
the outputs are cleared, never a wall of error badges. The HTTP API (`/predict`) raises
one-line errors instead, as an API should.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np

from uavm import figures
from uavm.assets import examples as example_clips
from uavm.errors import InputError, UAVMError, flag, number, one_line
from uavm.inference import check_top_k, check_window
from uavm.settings import settings

from .serving import ApiSessions, InOrder, Models, Uploads, guarded, public_message, session_of

# Enter in a number box (the start slider's, the spans') commits it, as leaving the box does
# A click on a window of the timeline strip (a plotly band whose customdata starts with the
# window's start) is passed to the server through a hidden text box.
JS = """() => {
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.key === 'Enter' && t && t.matches && t.matches('input[type=number]')) { t.blur(); }
  }, true);
  const hook = () => {
    const plot = document.querySelector('#timeline-plot .js-plotly-plot');
    if (!plot || plot.__uavm || !plot.on) return;
    plot.__uavm = true;
    plot.on('plotly_click', (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (!p || p.customdata === undefined) return;
      const start = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
      const box = document.querySelector('#timeline-pick textarea, #timeline-pick input');
      if (!box) return;
      box.value = String(start) + ' ' + Date.now();  // a new value even for the same window again
      box.dispatchEvent(new Event('input', {bubbles: true}));
    });
  };
  new MutationObserver(hook).observe(document.body, {childList: true, subtree: true});
}"""
# The attention figure arrives as plotly JSON and is drawn with Plotly.react into the same
# div: a toggle changes the heatmap's numbers and rows, and react updates only those.
# The page numbers its analysis requests as it sends them (the last input): they may reach
# the server out of order, and the server answers only the newest (serving.InOrder).
STAMP = """(...args) => {
  window.uavmStamp = (window.uavmStamp || 0) + 1;
  const inputs = args.slice(0, %d);
  inputs[inputs.length - 1] = window.uavmStamp;
  return inputs;
}"""
DRAW_TEMPORAL = """(json) => {
  const div = document.getElementById('temporal-plot');
  if (!div || !window.Plotly) return [];
  if (!json) { window.Plotly.purge(div); div.innerHTML = ''; return []; }
  const fig = JSON.parse(json);
  window.Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
  return [];
}"""


def plotly_head() -> tuple:
    """(the <script> that loads plotly.js from the plotly package, the folder to allow):
    served by this server, never fetched from the internet."""
    import os

    import plotly

    folder = os.path.join(os.path.dirname(plotly.__file__), "package_data")
    return f'<script src="/gradio_api/file={folder}/plotly.min.js"></script>', folder


# a new clip: the results come into view (on a phone they sit below the inputs)
SHOW_RESULTS = """(v) => {
  const el = document.querySelector('#status');
  if (v && el && el.getBoundingClientRect().top > window.innerHeight * 0.6) {
    el.scrollIntoView({behavior: 'smooth', block: 'start'});
  }
  return v;
}"""
CSS = """
#status { min-height: 1.6em; }
.span-row { flex-wrap: nowrap !important; align-items: end; gap: 6px !important; }
.span-row > * { min-width: 0 !important; }
#notice { font-size: 0.92em; opacity: 0.9; }
#timeline-pick, .uavm-data { display: none !important; }
#temporal-plot { min-height: 60px; }
@media (max-width: 700px) {
  #video-in video, #video-in .upload-container { max-height: 200px; }
  .example-captions { display: none; }
}
"""


def example_captions(paths) -> list:
    """(label, caption) for each example clip: what it is and what to try with it."""
    from uavm.demo import corpus

    by_name = {c[0].replace(" ", "_").replace("(", "").replace(")", ""): c for c in corpus.CLASSES}
    out = []
    for p in paths:
        c = by_name.get(Path(p).stem)
        if c is None:
            out.append((Path(p).stem.replace("_", " "), ""))
            continue
        name, _, picture, sound = c
        same_sound = [o[0] for o in corpus.CLASSES if o[3] == sound and o[0] != name]
        same_picture = [o[0] for o in corpus.CLASSES if o[2] == picture and o[0] != name]
        if same_sound:
            tip = f"sounds like {' and '.join(same_sound)}: turn the video off and the answer can only guess among them"
        elif same_picture:
            tip = f"looks like {' and '.join(same_picture)}: turn the audio off and the answer can only guess among them"
        else:
            tip = "try muting the audio or blanking the video where the event happens"
        out.append((name, tip))
    return out


def demo_notice(bundle_config: dict) -> str:
    task = bundle_config.get("task", {}) if isinstance(bundle_config, dict) else {}
    if task.get("dataset") == "uavm-synth":
        return ("ℹ️ This is the **demo model**: trained on generated clips of 12 classes (sirens, bells, dogs, "
                "keyboards), it names every clip one of those, real or not. For the authors' VGGSound model: "
                "`uavm app --model vggsound-uavm` (see the README).")
    return ""


def _span(on, a, b, which):
    """A span from the page: off, or (a, b) checked as the CLI checks it."""
    if not on:
        return None
    if a is None or b is None:
        raise InputError(f"give both times of the {'muted' if which == 'mute' else 'blanked'} span")
    return a, b


def _label_value(pred, which, k):
    top = pred.top(which, k) if pred is not None else None
    return {t["label"]: t["score"] for t in top} if top else None


def _top1(pred, which) -> str:
    top = pred.top(which, 1)
    return "—" if top is None else "{label} ({score:.0%})".format(**top[0])


TITLES = (("audio", "Audio only"), ("video", "Video only"), ("fused", "Fused"))


def settings_key(*values) -> str:
    """A short fingerprint of the settings an answer was made from (the page keeps it)."""
    import hashlib

    return hashlib.sha256(json.dumps([repr(v) for v in values]).encode()).hexdigest()[:32]


def layer_slider(cfg, **kw) -> gr.Slider:
    return gr.Slider(minimum=1, maximum=max(cfg.n_layers, 2), value=cfg.n_layers, step=1, visible=cfg.n_layers > 1,
                     label=f"Layer ({figures.layer_label(cfg)})", **kw)
STRIDE = 5.0  # seconds between the timeline's windows


def build_app(bundles: dict, device: str = "auto", warm: bool = True) -> gr.Blocks:
    models = Models(bundles, device, decode_slots=settings().decode_slots)
    uploads = Uploads()
    sessions = ApiSessions()
    in_order = InOrder()
    names = list(bundles)
    if not names:
        raise UAVMError("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
    examples = [str(p) for p in example_clips()]
    captions = example_captions(examples)

    def analyze(path, start, audio_on, video_on, mute, blank, model, k, progress=None):
        """Every client's request ends here: the values checked (as the CLI checks them), the
        upload checked, then the analysis. Bad input -> UAVMError, the server's paths hidden."""
        try:
            flag("audio_on", audio_on)
            flag("video_on", video_on)
            start, mute, blank = check_window(start, mute, blank)
            ex = models.get(model)
            check_top_k(k, len(ex.pipe.bundle.labels))
            path = uploads.check(path)
            an = ex.run(path, start, audio_on, video_on, mute, blank, digest=models.digest(path), progress=progress)
        except UAVMError as e:
            raise InputError(public_message(e, path if isinstance(path, str) else None)) from None
        return an, ex

    def settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k):
        """The page's controls -> analyze()'s arguments (checked there)."""
        if not media:
            raise InputError("upload or record a clip first (or pick an example)")
        k = number("top k", k, integer=True)
        spans = _span(mute_on, mute_a, mute_b, "mute"), _span(blank_on, blank_a, blank_b, "blank")
        return media, start, bool(audio_on), bool(video_on), *spans, model, k

    def page_handler(empty):
        """Wrap a page handler: its failures become (cleared outputs..., status message)."""
        def wrap(fn):
            import functools
            import logging

            @functools.wraps(fn)
            def inner(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                except UAVMError as e:
                    return (*empty(), f"⚠️ {one_line(e)}")
                except Exception:
                    logging.getLogger("uavm.app").exception("internal error in %s", fn.__name__)
                    return (*empty(), "⚠️ internal error (a bug): the server's log has the details")
            return inner
        return wrap

    def cleared():
        return (*(gr.Label(value=None, label=t) for _, t in TITLES), "", None, None, gr.skip())

    def explore(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                layer, full_open, diff_open, explain_is_open, target_value, stamp, request: gr.Request = None,
                progress=gr.Progress()):
        """The answers and the attention (and the explanation while its tab is open), one request
        of a session at a time and in order; a request overtaken by a newer one skips its work
        (the newer answer follows). One round trip: a switch's answer is drawn at once. The last
        output is the key of the settings the page's results were made from (``reconcile``).
        (Named parameters, not *args: Gradio passes the request and progress only to those.)"""
        settings_ = (media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k)
        with in_order.turn(session_of(request, "explore"), stamp) as superseded:
            if superseded():
                return tuple(gr.skip() for _ in range(11))
            out = explore_now(*settings_, layer, full_open, diff_open, request=request, progress=progress)
            more = (explain_panel(*settings_, target_value, progress=progress) if explain_is_open
                    else (gr.skip(), gr.skip()))
            return (*out, *more, settings_key(*settings_, layer, explain_is_open, target_value))

    def reconcile(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                  layer, full_open, diff_open, explain_is_open, target_value, painted_key, stamp,
                  request: gr.Request = None, progress=gr.Progress()):
        """After every paint: are the results on the page made from the settings the page shows
        now? The page gathers an event's settings before it stamps it, so two events a moment
        apart can reach the server stamped in the other order, and the older settings' answer
        then lands last. This sees the mismatch and answers for the page's current settings."""
        settings_ = (media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k)
        if settings_key(*settings_, layer, explain_is_open, target_value) == painted_key:
            return tuple(gr.skip() for _ in range(11))
        return explore(*settings_, layer, full_open, diff_open, explain_is_open, target_value, stamp,
                       request=request, progress=progress)

    @page_handler(cleared)
    def explore_now(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                    layer, full_open=False, diff_open=False, request: gr.Request = None, progress=None):
        """The answers and the attention; the closed accordions' figures are not made nor sent
        (they are when opened), and the layer slider changes only with the model."""
        t0 = time.perf_counter()
        sessions.page(request)
        if not media:
            return (*cleared(), "Upload or record a clip, or pick an example.")
        args = settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b,
                           model, k)
        an, ex = analyze(*args, progress=lambda f, msg: progress(f, desc=msg) if progress else None)
        pred, k = an.prediction, args[-1]
        if pred is None:  # nothing left, or the cross-modal model without a modality: the library's words
            return (*cleared(), f"⚠️ {an.error}")
        cfg = ex.pipe.bundle.model.cfg
        outs = []
        for m, title in TITLES:
            val = _label_value(pred, m, k)
            why = an.missing.get(m) if m != "fused" else None
            if val is None and why is None and m != "fused":
                why = "this model has no single-modality prediction"
            outs.append(gr.Label(value=val, label=f"{title}" + (f" — {why}" if why else "")))
        layer = min(max(int(layer or cfg.n_layers), 1), cfg.n_layers)
        figs = (figures.temporal(an, layer, ex.pipe.pre, cfg).to_json(),
                figures.full_maps(an, layer, cfg) if full_open else gr.skip(),
                figures.av_difference(an, cfg) if diff_open else gr.skip())
        server_ms = (time.perf_counter() - t0) * 1000
        status = (f"**{model}** on `{ex.pipe.device}` · window {an.start:g}–{an.start + an.seconds:g} s · "
                  f"server time {server_ms:.0f} ms "
                  f"(features and model {an.timings_ms.get('total', 0):.0f} ms, figures "
                  f"{server_ms - an.timings_ms.get('total', 0):.0f} ms)"
                  + (f" · reused: {', '.join(an.reused)}" if an.reused else " · decoded and extracted"))
        return (*outs, *figs, gr.skip(), status)

    def explain_summary(e) -> str:
        d, c = e.to_dict(), e.contribution
        t = d["target"]
        lines = [f"**Explaining {t['label']}** ({t['from']}; P = {t['score']['fused']:.0%} fused)."]
        if c.get("audio") is not None or c.get("video") is not None:
            parts = [f"{m} {c[m]:.2f}" for m in ("audio", "video") if c.get(m) is not None]
            sc = c["score"]
            lines.append(f"Its fused logit {c['fused_logit']:.2f} = {' + '.join(parts)}; its probability with "
                         f"both {sc['fused']:.0%}" + "".join(f", {m} only {sc[f'{m}_only']:.0%}"
                                                           for m in ("audio", "video") if sc.get(f"{m}_only") is not None)
                         + ".")
        if c.get("agree") is False:
            top1 = c["top1"]
            lines.append(f"⚠️ **The modalities disagree**: audio says *{top1['audio']['label']}*, video says "
                         f"*{top1['video']['label']}*; fused: *{top1['fused']['label']}* "
                         f"(decided by {c['decided_by']}).")
        peaks = [f"{m} at {o['peak']:g} s" for m, o in d["occlusion"].items() if o]
        if peaks:
            lines.append("Occlusion hurts most: " + ", ".join(peaks) + ".")
        lines += [f"*{why}*" for why in d.get("notes", {}).values()]
        lines += [f"*{m}: {why}*" for m, why in d.get("missing", {}).items()]
        return "\n\n".join(lines)

    def explain_panel(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                      target, progress=gr.Progress()):
        """What mattered, when, in which modality (uavm.explain): computed once per clip,
        settings and target, then kept like the features."""
        try:
            path, start, audio_on, video_on, mute, blank, model, k = settings_of(
                media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k)
            flag("audio_on", audio_on)
            flag("video_on", video_on)
            ex = models.get(model)
            path = uploads.check(path)
            e = ex.explain(path, start, target or "fused", audio=audio_on, video=video_on, mute=mute, blank=blank,
                           digest=models.digest(path), progress=lambda f, msg: progress(f, desc=msg))
        except UAVMError as err:
            return f"⚠️ {public_message(err, media if isinstance(media, str) else None)}", None
        except Exception:
            import logging

            logging.getLogger("uavm.app").exception("internal error in explain")
            return "⚠️ internal error (a bug): the server's log has the details", None
        return explain_summary(e), figures.explanation(e)

    def model_switched(model):
        """A model's own targets for the explanation and its own layers on the slider."""
        try:
            bundle = models.get(model).pipe.bundle
        except UAVMError:
            return gr.skip(), gr.skip()
        cfg = bundle.model.cfg
        return (gr.Dropdown(choices=["fused", "audio", "video"] + [lab.name for lab in bundle.labels], value="fused"),
                layer_slider(cfg))

    def one_figure(which):
        """The figure of an accordion, made when it is opened."""
        def make(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                 layer):
            try:
                an, ex = analyze(*settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on,
                                              blank_a, blank_b, model, k))
            except UAVMError:
                return None
            cfg = ex.pipe.bundle.model.cfg
            layer = min(max(int(layer or cfg.n_layers), 1), cfg.n_layers)
            return figures.full_maps(an, layer, cfg) if which == "full" else figures.av_difference(an, cfg)
        return make

    @page_handler(lambda: (None,))
    def compare(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k):
        """Every model on the same clip and settings: their top-1 answers side by side."""
        args = list(settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a,
                                blank_b, model, 1))
        rows = []
        for name in names:
            args[-2] = name
            try:
                an, ex = analyze(*args)
            except UAVMError as e:
                rows.append([name, "", one_line(e), "", ""])
                continue
            c = ex.pipe.bundle.model.cfg
            kind = f"{c.kind} (N={c.n_specific}, Ns={c.n_shared})"
            if an.prediction is None:
                rows.append([name, kind, "—", "—", an.error])
            else:
                rows.append([name, kind, *(_top1(an.prediction, m) for m in ("audio", "video", "fused"))])
        return gr.Dataframe(value=rows), f"compared {len(rows)} models on this clip"

    @page_handler(lambda: (None,))
    def heard_and_seen(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model,
                       k):
        """The 10 s window as the model got it: its 3 fps frames (blanked ones black) with
        the waveform it heard (muted span silent), as a video the browser plays."""
        from uavm.demo.synth import write_media

        an, ex = analyze(*settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a,
                                      blank_b, model, k))
        pre = ex.pipe.pre
        frames = an.frames if an.frames is not None and len(an.frames) and video_on else None
        wav = an.waveform if an.waveform is not None and len(an.waveform) and audio_on else None
        if frames is None and wav is None:
            raise InputError("neither modality is on: nothing to play")
        if frames is None:  # audio only: a still, so that it plays as a video
            frames = np.zeros((max(int(round(pre.clip_seconds * pre.video.fps)), 1), 64, 64, 3), np.uint8)
        h, w = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))  # the encoder wants even sides
        out = Path(tempfile.mkdtemp(prefix="uavm-window-")) / "window.mp4"
        write_media(out, frames, pre.video.fps, wav, pre.audio.sample_rate, options={"preset": "veryfast"})
        what = ", ".join(x for x in ("frames" if video_on and an.frames is not None else "",
                                     "sound" if wav is not None else "") if x)
        return str(out), f"the window from {an.start:g} s as the model got it ({what})"

    @page_handler(lambda: (None,))
    def export(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
               layer):
        """The current analysis as files: the `uavm predict --json` answer and the figures."""
        args = settings_of(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b,
                           model, k)
        an, ex = analyze(*args)
        if an.prediction is None:
            raise InputError(an.error)
        cfg, layer = ex.pipe.bundle.model.cfg, int(layer or 1)
        out = Path(tempfile.mkdtemp(prefix="uavm-export-"))
        stem = Path(str(media)).stem[:60] or "clip"
        answer = {"clip": Path(str(media)).name, "model": model, "start": an.start,
                  "settings": {"audio_on": bool(audio_on), "video_on": bool(video_on), "mute": args[4],
                               "blank": args[5], "top_k": args[-1]},
                  **an.prediction.to_dict(args[-1], attention=True)}
        (out / f"{stem}.uavm.json").write_text(json.dumps(answer, allow_nan=False))
        (out / f"{stem}.uavm.html").write_text(figures.html(
            figures.temporal(an, layer, ex.pipe.pre, cfg), figures.full_maps(an, layer, cfg),
            figures.av_difference(an, cfg)), encoding="utf-8")
        return [str(out / f"{stem}.uavm.json"), str(out / f"{stem}.uavm.html")], "the analysis is ready to download"

    @guarded
    def predict_json(media: gr.FileData, start: float = 0.0, audio_on: bool = True, video_on: bool = True,
                     mute_from: float | None = None, mute_to: float | None = None,
                     blank_from: float | None = None, blank_to: float | None = None,
                     model: str = names[0], top_k: int = 5, include_attention: bool = False,
                     request: gr.Request = None) -> dict:
        """The answer of `uavm predict --json` for this clip and these settings (the attention
        maps, about 0.9 MB, only with include_attention=True)."""
        sessions.used(request)
        path = uploads.from_api(media)
        flag("include_attention", include_attention)
        spans = [None if a is None and b is None else (a, b) for a, b in ((mute_from, mute_to), (blank_from, blank_to))]
        an, _ = analyze(path, start, audio_on, video_on, *spans, model, top_k)
        if an.prediction is None:  # nothing left, or a model that needs both: the library's own words
            raise InputError(an.error)
        return {"start": an.start, **an.prediction.to_dict(int(top_k), attention=include_attention)}

    def duration_changed(media):
        if not media:
            return gr.Slider(visible=False, value=0)
        try:
            d = models.duration(uploads.check(media))
        except UAVMError:  # explore() says what is wrong with the file, in the status line
            return gr.Slider(visible=False, value=0)
        # whole seconds: starts on the 3 fps grid, which a clip's timeline has already decoded
        return gr.Slider(visible=d > 10.5, maximum=max(float(np.floor(d - 0.5)), 1.0), value=0, step=1)

    def timeline_strip(media, model, progress=gr.Progress()):
        """A long clip's timeline: every window's audio, video and fused top-1, from one decode
        of the whole clip, kept so that moving the window start decodes nothing."""
        hidden = (gr.Column(visible=False), None, "")
        if not media:
            return hidden
        try:
            path = uploads.check(media)
            ex = models.get(model)
            if models.duration(path) <= ex.pipe.pre.clip_seconds + 0.5:
                return hidden
            tl = ex.timeline(path, digest=models.digest(path), stride=STRIDE, top_k=3,
                             progress=lambda done, total: progress((done / total) if total else None,
                                                                   desc=f"timeline: {done:.0f} s decoded"))
        except UAVMError as e:
            return gr.Column(visible=True), None, f"⚠️ timeline: {public_message(e, media)}"
        note = (f"**Timeline** of the whole clip ({tl.duration:.0f} s): the top-1 answer of every {tl.window:g} s "
                f"window, one every {tl.stride:g} s. Click a window to explore it.")
        return gr.Column(visible=True), figures.timeline(tl), note

    def pick_window(value):
        """The start of the window clicked in the strip (checked: it comes from the page)."""
        try:
            return gr.Slider(value=number("start", float(str(value).split()[0]), lo=0))
        except (UAVMError, ValueError, IndexError):
            return gr.skip()

    @guarded
    def timeline_json(media: gr.FileData, stride: float = STRIDE, window: float | None = None,
                      model: str = names[0], top_k: int = 3, request: gr.Request = None) -> dict:
        """The answer of `uavm timeline --json` for this clip: every window's audio-only,
        video-only and fused top-k, and where a modality is missing."""
        sessions.used(request)
        path = uploads.from_api(media)
        ex = models.get(model)
        return ex.timeline(path, digest=models.digest(path), stride=stride, window=window, top_k=top_k).to_dict()

    def model_changed(model):
        try:
            return demo_notice(models.get(model).pipe.bundle.config)
        except UAVMError:
            return ""

    def warm_up(clips):
        try:
            ex = models.get(names[0])
            for p in clips:
                models.duration(p)
                an = ex.run(p, digest=models.digest(p))
                cfg = ex.pipe.bundle.model.cfg
                figures.temporal(an, cfg.n_layers, ex.pipe.pre, cfg), figures.full_maps(an, cfg.n_layers, cfg)
        except Exception:  # a failed warm-up only costs the first click its speed
            import logging

            logging.getLogger("uavm.app").exception("warm-up failed")

    if warm:  # the default model loaded and run before the page opens: the first click answers like the others
        warm_up(examples[:1])
        threading.Thread(target=warm_up, args=(examples[1:],), daemon=True, name="uavm-warm-up").start()

    first_bundle = models.get(names[0]).pipe.bundle
    first, first_labels = first_bundle.config, first_bundle.labels
    # uploads older than an hour are removed every 10 minutes
    with gr.Blocks(title="UAVM explorer", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# UAVM: what does each modality say?\n"
                    "The Unified Audio-Visual Model (Gong et al., 2022) runs one pass per modality through shared "
                    "layers; the fused prediction is the mean of the two. Mute the audio or blank the video — "
                    "whole or a time span — and watch the predictions and every head's attention change.")
        notice = gr.Markdown(demo_notice(first), elem_id="notice")
        media = gr.State(None)
        with gr.Column(visible=False, elem_id="timeline") as strip:
            strip_note = gr.Markdown(elem_id="timeline-note")
            strip_plot = gr.Plot(show_label=False, elem_id="timeline-plot")
            pick = gr.Textbox(elem_id="timeline-pick", show_label=False, container=False)
        with gr.Row(elem_id="main-row"):
            with gr.Column(scale=2, min_width=300, elem_id="inputs"):
                with gr.Tabs():
                    with gr.Tab("Video"):
                        video_in = gr.Video(label="Upload or record a clip", sources=["upload", "webcam"],
                                            elem_id="video-in")
                        if examples:
                            gr.Examples(examples, inputs=video_in, example_labels=[c[0] for c in captions],
                                        label="Examples: generated clips of the demo's classes", elem_id="examples")
                            gr.Markdown("\n".join(f"- **{n}**: {tip}" for n, tip in captions if tip),
                                        elem_classes=["example-captions"])
                    with gr.Tab("Audio only"):
                        audio_in = gr.Audio(label="Upload or record audio", sources=["upload", "microphone"],
                                            type="filepath", elem_id="audio-in")
                start = gr.Slider(0, 1, value=0, step=0.5, label="Start of the 10 s window (s)", visible=False,
                                  elem_id="start")
                with gr.Row():
                    audio_on = gr.Checkbox(True, label="Audio on", elem_id="audio-on")
                    video_on = gr.Checkbox(True, label="Video on", elem_id="video-on")
                with gr.Row(elem_classes=["span-row"]):
                    mute_on = gr.Checkbox(False, label="Mute audio", elem_id="mute-on", min_width=90)
                    mute_a = gr.Number(2.0, label="from (s)", elem_id="mute-from", min_width=60)
                    mute_b = gr.Number(5.0, label="to (s)", elem_id="mute-to", min_width=60)
                with gr.Row(elem_classes=["span-row"]):
                    blank_on = gr.Checkbox(False, label="Blank video", elem_id="blank-on", min_width=90)
                    blank_a = gr.Number(2.0, label="from (s)", elem_id="blank-from", min_width=60)
                    blank_b = gr.Number(5.0, label="to (s)", elem_id="blank-to", min_width=60)
                with gr.Row():
                    model = gr.Dropdown(names, value=names[0], label="Model", elem_id="model")
                    top_k = gr.Slider(1, 10, value=5, step=1, label="Top k")
                gr.Markdown(f"Device: **{_device_name(device)}**")
            with gr.Column(scale=3, min_width=300, elem_id="results"):
                status = gr.Markdown("Upload or record a clip, or pick an example.", elem_id="status")
                with gr.Row():
                    lab_a = gr.Label(label="Audio only", elem_id="label-audio")
                    lab_v = gr.Label(label="Video only", elem_id="label-video")
                    lab_f = gr.Label(label="Fused", elem_id="label-fused")
                with gr.Tabs():
                    with gr.Tab("Attention", elem_id="tab-attention") as attention_tab:
                        layer = layer_slider(first_bundle.model.cfg, elem_id="layer")
                        # drawn in place by the page (Plotly.react): a toggle updates the heatmap, it does
                        # not rebuild the plot
                        gr.HTML('<div id="temporal-plot"></div>', elem_id="plot-temporal")
                        temporal = gr.Textbox(elem_id="temporal-json", elem_classes=["uavm-data"],
                                              show_label=False, container=False)
                        with gr.Accordion("Full T x T attention maps of this layer", open=False) as full_acc:
                            full = gr.Plot(elem_id="plot-full")
                        with gr.Accordion("Audio vs video attention difference per layer (paper Fig. 5)",
                                          open=False) as diff_acc:
                            diff = gr.Plot(elem_id="plot-diff")
                    with gr.Tab("Explain", elem_id="tab-explain") as explain_tab:
                        gr.Markdown("What mattered, when, in which modality: how much the score drops when a span "
                                    "of one modality is silenced or blacked out (measured), beside what attention "
                                    "suggests; and each modality's share of the fused answer.")
                        with gr.Row():
                            target = gr.Dropdown(["fused", "audio", "video"] + [lab.name for lab in first_labels],
                                                 value="fused", label="Explain the score of (a pass's top-1, or a "
                                                 "class)", elem_id="explain-target", scale=3)
                            explain_btn = gr.Button("Explain", elem_id="explain", scale=1)
                        explain_text = gr.Markdown(elem_id="explain-summary")
                        explain_plot = gr.Plot(elem_id="plot-explain", show_label=False)
                    with gr.Tab("Heard and seen", elem_id="tab-player") as player_tab:
                        gr.Markdown("The 10 s window as the model got it: its frames at 3 fps (a blanked span "
                                    "black) and the sound it heard (a muted span silent).")
                        play = gr.Button("Make the clip", elem_id="make-player")
                        player = gr.Video(label="What the model got", elem_id="player", interactive=False)
                    with gr.Tab("Compare models", elem_id="tab-compare") as compare_tab:
                        gr.Markdown("Every loaded model on this clip with these settings.")
                        run_all = gr.Button("Compare every model", elem_id="compare")
                        table = gr.Dataframe(headers=["model", "kind", "audio only", "video only", "fused"],
                                             interactive=False, elem_id="compare-table", wrap=True)
                    with gr.Tab("Export", elem_id="tab-export") as export_tab:
                        gr.Markdown("The `uavm predict --json` answer (with attention) and the figures as one "
                                    "HTML page that opens offline.")
                        make_export = gr.Button("Prepare the download", elem_id="export")
                        files = gr.File(label="Download", file_count="multiple", elem_id="export-files",
                                        interactive=False)

        controls = [media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model,
                    top_k]
        explain_open = gr.State(False)
        stamp = gr.Number(elem_id="stamp", elem_classes=["uavm-data"], show_label=False, container=False)
        painted = gr.Textbox(elem_id="painted", elem_classes=["uavm-data"], show_label=False, container=False)
        full_open, diff_open = gr.State(False), gr.State(False)
        explain_outputs = [explain_text, explain_plot]
        outputs = [lab_a, lab_v, lab_f, temporal, full, diff, layer, status]

        def set_media(path):
            return path

        def analysis(event, **kw):
            """explore() (and the explanation when its tab is open): every change of clip or settings."""
            inputs = controls + [layer, full_open, diff_open, explain_open, target, stamp]
            return event(explore, inputs, outputs + explain_outputs + [painted], api_visibility="private",
                         js=STAMP % len(inputs), **kw)

        for src in (video_in, audio_in):
            analysis(src.change(set_media, src, media, api_visibility="private", js=SHOW_RESULTS).then(
                duration_changed, media, start, api_visibility="private").then).then(
                timeline_strip, [media, model], [strip, strip_plot, strip_note], api_visibility="private")
        analysis(pick.change(pick_window, pick, start, api_visibility="private").then)
        # switches answer in tens of milliseconds: no loading overlay over every output
        for c in (audio_on, video_on, mute_on, blank_on, top_k):
            analysis(c.change, trigger_mode="always_last", show_progress="hidden")
        analysis(layer.release, trigger_mode="always_last", show_progress="hidden")  # the user's move only
        for acc, box, out, which in ((full_acc, full_open, full, "full"), (diff_acc, diff_open, diff, "diff")):
            acc.expand(lambda: True, None, box, api_visibility="private").then(
                one_figure(which), controls + [layer], out, api_visibility="private")
            acc.collapse(lambda: False, None, box, api_visibility="private")
        analysis(model.change(model_switched, model, [target, layer], api_visibility="private").then).then(
            model_changed, model, notice, api_visibility="private").then(
            timeline_strip, [media, model], [strip, strip_plot, strip_note], api_visibility="private")
        analysis(start.release, trigger_mode="always_last")
        for c in (mute_a, mute_b, blank_a, blank_b):  # Enter blurs the box too (the page's keydown handler)
            analysis(c.blur, trigger_mode="always_last")
        temporal.change(None, temporal, None, js=DRAW_TEMPORAL)  # drawn as soon as it arrives
        checked = controls + [layer, full_open, diff_open, explain_open, target, painted, stamp]
        painted.change(reconcile, checked, outputs + explain_outputs + [painted], api_visibility="private",
                       js=STAMP % len(checked), trigger_mode="always_last", show_progress="hidden")
        play.click(heard_and_seen, controls, [player, status], api_visibility="private")
        # the explanation: on request, and kept up to date while its tab is open
        explain_btn.click(explain_panel, controls + [target], explain_outputs, api_visibility="private")
        target.input(explain_panel, controls + [target], explain_outputs, api_visibility="private",
                     trigger_mode="always_last")
        explain_tab.select(lambda: True, None, explain_open, api_visibility="private").then(
            explain_panel, controls + [target], explain_outputs, api_visibility="private")
        for tab in (attention_tab, player_tab, compare_tab, export_tab):
            tab.select(lambda: False, None, explain_open, api_visibility="private")
        run_all.click(compare, controls, [table, status], api_visibility="private")
        make_export.click(export, controls + [layer], [files, status], api_visibility="private")
        gr.api(predict_json, api_name="predict")
        gr.api(timeline_json, api_name="timeline")
    demo.uavm_sessions = sessions
    head, folder = plotly_head()
    demo.uavm_launch = dict(css=CSS, js=JS, head=head, allowed_paths=[folder])
    return demo


def _device_name(device: str) -> str:
    from uavm.inference import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(d)})"
    return "CPU"

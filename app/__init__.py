"""The UAVM missing-modality explorer: a Gradio app over ``uavm.explore``.

``app/`` draws; ``uavm/`` thinks. Every request goes through one shared Explorer per
model (content-keyed caches), so toggling a modality or changing the layer reuses the
decoded clip and its features. Installed as ``uavm.app``; ``uavm app`` launches it.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import gradio as gr

from uavm import figures
from uavm.assets import demo_bundles
from uavm.assets import examples as example_clips
from uavm.errors import InputError, UAVMError, flag, number
from uavm.inference import check_top_k, check_window
from uavm.settings import settings

from .serving import ApiSessions, Models, Uploads, credentials, guarded, loopback, public_message


def find_bundles(extra=()) -> dict:
    """name -> bundle folder: the demo models shipped with uavm, then any given on the command line."""
    found = demo_bundles()
    for b in extra:
        found[Path(b).resolve().name] = Path(b)
    return found


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


def build_app(bundles: dict, device: str = "auto") -> gr.Blocks:
    models = Models(bundles, device, decode_slots=settings().decode_slots)
    uploads = Uploads()
    sessions = ApiSessions()
    names = list(bundles)
    if not names:
        raise SystemExit("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
    examples = [str(p) for p in example_clips()]

    def analyze(path, start, audio_on, video_on, mute, blank, model, k, progress=None):
        """Every client's request ends here: the values checked (as the CLI checks them), the
        upload checked, then the analysis. Bad input -> one line, the server's paths hidden."""
        try:
            flag("audio_on", audio_on)
            flag("video_on", video_on)
            start, mute, blank = check_window(start, mute, blank)
            ex = models.get(model)
            check_top_k(k, len(ex.pipe.bundle.labels))
            path = uploads.check(path)
            an = ex.run(path, start, audio_on, video_on, mute, blank, digest=models.digest(path), progress=progress)
        except UAVMError as e:  # a one-line message; the session stays usable
            raise gr.Error(public_message(e, path if isinstance(path, str) else None)) from None
        return an, ex

    @guarded
    def explore(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                layer, request: gr.Request = None, progress=gr.Progress()):
        t0 = time.perf_counter()
        sessions.page(request)
        if not media:
            raise gr.Error("upload or record a clip first (or pick an example)")
        try:
            k = number("top k", k, integer=True)
            spans = _span(mute_on, mute_a, mute_b, "mute"), _span(blank_on, blank_a, blank_b, "blank")
        except UAVMError as e:
            raise gr.Error(str(e)) from None
        an, ex = analyze(media, start, bool(audio_on), bool(video_on), *spans, model, k,
                         progress=lambda f, msg: progress(f, desc=msg))
        pred = an.prediction
        outs = []
        for m, title in (("audio", "Audio only"), ("video", "Video only"), ("fused", "Fused")):
            val = _label_value(pred, m, k)
            why = an.missing.get(m) if m != "fused" else None
            if val is None and why is None and m != "fused" and pred is not None:
                why = "this model has no single-modality prediction"
            outs.append(gr.Label(value=val, label=f"{title}" + (f" — {why}" if why else "")))
        n_layers = max([a.shape[0] for a in pred.attention.values()], default=1) if pred else 1
        layer = min(int(layer or n_layers), n_layers)
        figs = figures.temporal(an, layer, ex.pipe.pre), figures.full_maps(an, layer), figures.av_difference(an)
        server_ms = (time.perf_counter() - t0) * 1000
        status = (f"**{model}** on `{ex.pipe.device}` · server time {server_ms:.0f} ms "
                  f"(features and model {an.timings_ms.get('total', 0):.0f} ms, figures "
                  f"{server_ms - an.timings_ms.get('total', 0):.0f} ms)"
                  + (f" · reused: {', '.join(an.reused)}" if an.reused else " · decoded and extracted")
                  + (f"\n\n⚠️ {an.error}" if an.error else ""))
        return (*outs, *figs, gr.Slider(maximum=n_layers, value=layer), status)

    @guarded
    def predict_json(media: gr.FileData, start: float = 0.0, audio_on: bool = True, video_on: bool = True,
                     mute_from: float | None = None, mute_to: float | None = None,
                     blank_from: float | None = None, blank_to: float | None = None,
                     model: str = names[0], top_k: int = 5, include_attention: bool = False,
                     request: gr.Request = None) -> dict:
        """The answer of `uavm predict --json` for this clip and these settings (the attention
        maps, about 0.9 MB, only with include_attention=True)."""
        sessions.used(request)
        try:
            path = uploads.from_api(media)
            flag("include_attention", include_attention)
            spans = [None if a is None and b is None else (a, b)
                     for a, b in ((mute_from, mute_to), (blank_from, blank_to))]
        except UAVMError as e:
            raise gr.Error(str(e)) from None
        an, _ = analyze(path, start, audio_on, video_on, *spans, model, top_k)
        if an.prediction is None:  # nothing left, or a model that needs both: the library's own words
            raise gr.Error(an.error)
        return {"start": an.start, **an.prediction.to_dict(int(top_k), attention=include_attention)}

    @guarded
    def duration_changed(media):
        if not media:
            return gr.Slider(visible=False, value=0)
        try:
            d = models.duration(uploads.check(media))
        except UAVMError as e:
            raise gr.Error(public_message(e, media)) from None
        return gr.Slider(visible=d > 10.5, maximum=max(d - 1, 0), value=0)

    # uploads older than an hour are removed every 10 minutes
    with gr.Blocks(title="UAVM explorer", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# UAVM: what does each modality say?\n"
                    "The Unified Audio-Visual Model (Gong et al., 2022) runs one pass per modality through shared "
                    "layers; the fused prediction is the mean of the two. Mute the audio or blank the video — "
                    "whole or a time span — and watch the predictions and every head's attention change.")
        media = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Video"):
                        video_in = gr.Video(label="Upload or record a clip", sources=["upload", "webcam"], elem_id="video-in")
                        if examples:
                            gr.Examples(examples, inputs=video_in, label="Examples (generated by uavm synth)")
                    with gr.Tab("Audio only"):
                        audio_in = gr.Audio(label="Upload or record audio", sources=["upload", "microphone"],
                                            type="filepath", elem_id="audio-in")
                start = gr.Slider(0, 1, value=0, step=0.5, label="Start of the 10 s window (s)", visible=False)
                with gr.Row():
                    audio_on = gr.Checkbox(True, label="Audio on", elem_id="audio-on")
                    video_on = gr.Checkbox(True, label="Video on", elem_id="video-on")
                with gr.Row():
                    mute_on = gr.Checkbox(False, label="Mute audio from")
                    mute_a = gr.Number(2.0, label="from (s)", minimum=0)
                    mute_b = gr.Number(5.0, label="to (s)", minimum=0)
                with gr.Row():
                    blank_on = gr.Checkbox(False, label="Blank video from")
                    blank_a = gr.Number(2.0, label="from (s)", minimum=0)
                    blank_b = gr.Number(5.0, label="to (s)", minimum=0)
                with gr.Row():
                    model = gr.Dropdown(names, value=names[0], label="Model")
                    top_k = gr.Slider(1, 10, value=5, step=1, label="Top k")
                gr.Markdown(f"Device: **{_device_name(device)}**")
            with gr.Column(scale=3):
                with gr.Row():
                    lab_a = gr.Label(label="Audio only", elem_id="label-audio")
                    lab_v = gr.Label(label="Video only", elem_id="label-video")
                    lab_f = gr.Label(label="Fused", elem_id="label-fused")
                status = gr.Markdown("", elem_id="status")
                layer = gr.Slider(1, 6, value=6, step=1, label="Layer")
                temporal = gr.Plot(label="Temporal attention per head", elem_id="plot-temporal")
                with gr.Accordion("Full T x T attention maps of this layer", open=False):
                    full = gr.Plot()
                with gr.Accordion("Audio vs video attention difference per layer (paper Fig. 5)", open=False):
                    diff = gr.Plot()

        controls = [media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model,
                    top_k, layer]
        outputs = [lab_a, lab_v, lab_f, temporal, full, diff, layer, status]

        def set_media(path):
            return path

        for src in (video_in, audio_in):
            src.change(set_media, src, media, api_visibility="private").then(
                duration_changed, media, start, api_visibility="private").then(
                explore, controls, outputs, api_visibility="private")
        for c in (audio_on, video_on, mute_on, blank_on, model, top_k, layer):
            c.change(explore, controls, outputs, api_visibility="private", trigger_mode="always_last")
        start.release(explore, controls, outputs, api_visibility="private", trigger_mode="always_last")
        for c in (mute_a, mute_b, blank_a, blank_b):
            for ev in (c.submit, c.blur):
                ev(explore, controls, outputs, api_visibility="private", trigger_mode="always_last")
        gr.api(predict_json, api_name="predict")
    demo.uavm_sessions = sessions
    return demo


def _device_name(device: str) -> str:
    from uavm.inference import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(d)})"
    return "CPU"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="uavm app", description="the UAVM missing-modality explorer")
    p.add_argument("--bundle", action="append", default=[], help="extra model bundle (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    p.add_argument("--auth", metavar="USER:PASS", help="require a login (or set $UAVM_AUTH)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    s = settings()
    auth = credentials(a.auth or s.auth)
    if (a.share or not loopback(a.host)) and not auth:
        where = "a public gradio.live link" if a.share else f"every network {a.host} is on"
        print(f"uavm app: WARNING: serving on {where} without a login: anyone who can reach it can upload "
              f"clips and use this machine's CPU/GPU. Add --auth USER:PASS (or $UAVM_AUTH).",
              file=sys.stderr, flush=True)
    demo = build_app(find_bundles(a.bundle), a.device)
    cap = int(s.upload_cache_mb * 2**20)
    uploads = Uploads()

    def janitor():  # the upload folder is bounded by size as well as by age; API sessions are dropped
        while True:
            time.sleep(15)
            try:
                dropped = demo.uavm_sessions.sweep(getattr(demo, "state_holder", None))
                freed = uploads.trim(cap)
                if dropped or freed:
                    print(f"uavm app: dropped {dropped} idle API sessions, freed {freed / 2**20:.0f} MiB of uploads",
                          file=sys.stderr, flush=True)
            except OSError:
                pass

    threading.Thread(target=janitor, daemon=True, name="uavm-janitor").start()
    # many handlers may wait at once (a cached answer must not queue behind slow decodes);
    # the heavy work is bounded inside by the decode slots and the model lock
    demo.queue(default_concurrency_limit=16, max_size=256).launch(
        server_name=a.host, server_port=a.port, share=a.share, auth=auth, max_file_size="200mb", show_error=True,
        allowed_paths=[str(Path(p).parent) for p in example_clips()[:1]])

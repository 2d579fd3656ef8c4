"""The UAVM missing-modality explorer: a Gradio app over ``uavm.explore``.

``app/`` draws; ``uavm/`` thinks. Every request goes through one shared Explorer per
model (content-keyed caches), so toggling a modality or changing the layer reuses the
decoded clip and its features.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import gradio as gr

from uavm import load_bundle
from uavm.explore import Explorer, file_digest
from uavm.inference import Pipeline

from . import figures

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def find_bundles(extra=()) -> dict:
    """name -> bundle folder: the demo models in weights/, then any given on the command line."""
    found = {}
    for p in sorted(WEIGHTS.glob("*/config.json")):
        cfg = json.loads(p.read_text())
        if cfg.get("format") == "uavm-bundle":
            found[p.parent.name] = p.parent
    for b in extra:
        found[Path(b).resolve().name] = Path(b)
    # the demo UAVM is the default: list it first
    return dict(sorted(found.items(), key=lambda kv: kv[0] != "demo-uavm"))


class Models:
    """One Pipeline + Explorer per bundle, loaded on first use and shared by every session."""

    def __init__(self, bundles: dict, device: str = "auto"):
        self.paths, self.device = bundles, device
        self._loaded, self._lock = {}, threading.Lock()
        self._digests = {}

    def get(self, name: str) -> Explorer:
        with self._lock:
            if name not in self._loaded:
                if name not in self.paths:
                    raise gr.Error(f"unknown model {name!r}")
                self._loaded[name] = Explorer(Pipeline(load_bundle(self.paths[name]), self.device))
            return self._loaded[name]

    def digest(self, path: str) -> str:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]


def _span(on, a, b):
    if not on or a is None or b is None or float(b) <= float(a):
        return None
    return float(a), float(b)


def _label_value(pred, which, k):
    top = pred.top(which, k) if pred is not None else None
    return {t["label"]: t["score"] for t in top} if top else None


def build_app(bundles: dict, device: str = "auto") -> gr.Blocks:
    models = Models(bundles, device)
    names = list(bundles)
    if not names:
        raise SystemExit("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
    examples = sorted(str(p) for p in (WEIGHTS / "examples").glob("*.mp4"))
    lock = threading.Lock()

    def analyze(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                progress=None):
        if not media:
            raise gr.Error("upload or record a clip first (or pick an example)")
        ex = models.get(model)
        try:
            with lock:  # one model pass at a time; the caches are shared by every session
                an = ex.run(media, float(start or 0), bool(audio_on), bool(video_on),
                            _span(mute_on, mute_a, mute_b), _span(blank_on, blank_a, blank_b),
                            digest=models.digest(media), progress=progress)
        except (ValueError, RuntimeError, OSError) as e:  # a one-line message; the session stays usable
            raise gr.Error(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return an, ex

    def explore(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b, model, k,
                layer, progress=gr.Progress()):
        t0 = time.perf_counter()
        an, ex = analyze(media, start, audio_on, video_on, mute_on, mute_a, mute_b, blank_on, blank_a, blank_b,
                         model, int(k), progress=lambda f, msg: progress(f, desc=msg))
        pred = an.prediction
        k = int(k)
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

    def predict_json(media: gr.FileData, start: float = 0.0, audio_on: bool = True, video_on: bool = True,
                     mute_from: float | None = None, mute_to: float | None = None,
                     blank_from: float | None = None, blank_to: float | None = None,
                     model: str = names[0], top_k: int = 5) -> dict:
        """The same answer as `uavm predict --json` for this clip and these settings."""
        media = media["path"] if isinstance(media, dict) else getattr(media, "path", media)
        an, _ = analyze(media, start, audio_on, video_on, mute_from is not None, mute_from, mute_to,
                        blank_from is not None, blank_from, blank_to, model, int(top_k))
        if an.prediction is None:
            return {"error": an.error}
        return {"start": an.start, **an.prediction.to_dict(int(top_k))}

    def duration_changed(media):
        from uavm import media as M

        if not media:
            return gr.Slider(visible=False, value=0)
        try:
            d = M.probe(media).duration or 0
        except M.MediaError as e:
            raise gr.Error(str(e))
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
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    demo = build_app(find_bundles(a.bundle), a.device)
    demo.queue(default_concurrency_limit=4).launch(server_name=a.host, server_port=a.port, share=a.share,
                                                   max_file_size="200mb", allowed_paths=[str(WEIGHTS / "examples")])

"""The page's layout, and its wiring: components by name, events to the handlers of
``page.py`` (which take the page's settings and return outputs by name). Adding a control
is a field of ``page.Settings``, a component here under that name, and its one use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import gradio as gr

from uavm.assets import example_captions
from uavm.assets import examples as example_clips

from . import live, page, tabs
from .api import functions as api_functions
from .guard import PLOTLY_URL
from .page import SENTINEL, Settings
from .serving import Server
from .sessions import Sessions

HERE = Path(__file__).resolve().parent
SETTINGS = [f.name for f in fields(Settings)]
EXPLORE = ("label_audio", "label_video", "label_fused", "answers", "ood_note", "answer_note", "temporal", "full", "diff", "layer",
           "status", "window_at", "explain_text", "explain_plot", "painted", "answered",
           "checked")
STRIP = ("strip", "strip_json", "strip_note")
EXPLAIN = ("explain_text", "explain_plot")
SWEEP = ("sweep_plot", "sweep_text", "status")


def js(name: str) -> str:
    """A call into the page's script (page.js) as an event's js."""
    return f"(...args) => window.uavm.{name}(...args)"


class Page:
    """The page's components by name."""

    def __init__(self):
        self.c: dict = {}

    def __call__(self, name: str, component):
        self.c[name] = component
        return component

    def __getitem__(self, name: str):
        return self.c[name]

    def of(self, names) -> list:
        return [self.c[n] for n in names]


@dataclass
class App:
    """What ``build_app`` gives: the Blocks, the server state, and what launch() needs."""

    blocks: gr.Blocks
    server: Server
    launch: dict = field(default_factory=dict)

    @property
    def sessions(self) -> Sessions:
        return self.server.sessions


def plotly_file() -> str:
    """plotly.js from the plotly package: served by this server (the guard, at PLOTLY_URL),
    never fetched from the internet, and no server path in the page."""
    import plotly

    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def _device_name(device: str) -> str:
    from uavm.inference import pick_device

    d = pick_device(device)
    if d.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(d)})"
    return "CPU"


# -- layout --------------------------------------------------------------------------------------
def _inputs(P: Page, examples: list, device: str, names: list) -> None:
    captions = example_captions(examples)
    with gr.Tabs():
        with gr.Tab("Video"):
            P("video_in", gr.Video(label="Upload or record a clip", sources=["upload", "webcam"], elem_id="video-in"))
            if examples:
                # buttons of our own, not gr.Examples: the page's config then names no server path
                with gr.Column(elem_id="examples"):
                    gr.Markdown("Examples: generated clips of the demo's classes", elem_classes=["examples-title"])
                    with gr.Row(elem_classes=["example-buttons"]):
                        for i, (name, _) in enumerate(captions):
                            P(f"example_{i}", gr.Button(name, size="sm", variant="secondary", scale=0, min_width=0))
                gr.Markdown("\n".join(f"- **{n}**: {tip}" for n, tip in captions if tip),
                            elem_classes=["example-captions"])
        with gr.Tab("Audio only"):
            P("audio_in", gr.Audio(label="Upload or record audio", sources=["upload", "microphone"], type="filepath",
                                   elem_id="audio-in"))
    P("start", gr.Slider(0, 1, value=0, step=0.5, label="Start of the 10 s window (s)", visible=False,
                         elem_id="start"))
    with gr.Row():
        P("audio_on", gr.Checkbox(True, label="Audio on", elem_id="audio-on"))
        P("video_on", gr.Checkbox(True, label="Video on", elem_id="video-on"))
    for which, label in (("mute", "Mute audio"), ("blank", "Blank video")):
        with gr.Row(elem_classes=["span-row"]):
            P(f"{which}_on", gr.Checkbox(False, label=label, elem_id=f"{which}-on", min_width=90))
            P(f"{which}_from", gr.Number(2.0, label="from (s)", elem_id=f"{which}-from", min_width=60))
            P(f"{which}_to", gr.Number(5.0, label="to (s)", elem_id=f"{which}-to", min_width=60))
    with gr.Accordion("Swap, degrade, weigh", open=False, elem_id="variant"):
        gr.Markdown("The sound of another clip with this picture; noise, blur, low resolution or a held frame "
                    "rate (an empty box is none); how much the audio pass weighs in the fused answer.")
        P("audio_from", gr.File(label="Audio from another clip", type="filepath", elem_id="audio-from",
                                file_types=["audio", "video"], height=90))
        with gr.Row():
            # text boxes: Gradio's number box sends 0 for an empty one once it is drawn (0 dB is a
            # level); empty is none here, and the page reads the text at its one boundary
            P("audio_snr", _level("Noise: SNR (dB)", "audio-snr"))
            P("video_blur", _level("Blur: sigma (px)", "video-blur"))
        with gr.Row():
            P("video_size", _level("Resolution (px)", "video-size"))
            P("video_fps", _level("Frame rate (fps)", "video-fps"))
        with gr.Row(elem_classes=["span-row"]):
            P("degrade_on", gr.Checkbox(False, label="Degrade a span only", elem_id="degrade-on", min_width=90))
            P("degrade_from", gr.Number(2.0, label="from (s)", elem_id="degrade-from", min_width=60))
            P("degrade_to", gr.Number(5.0, label="to (s)", elem_id="degrade-to", min_width=60))
        P("audio_weight", gr.Slider(0, 1, value=0.5, step=0.05, label="Audio weight in the fused answer "
                                    "(0.5: the paper's mean)", elem_id="audio-weight"))
    with gr.Row():
        P("model", gr.Dropdown(names, value=names[0], label="Model", elem_id="model"))
        P("top_k", gr.Slider(1, 10, value=5, step=1, label="Top k", elem_id="top-k"))
    gr.Markdown(f"Device: **{_device_name(device)}**")


def _level(label: str, elem_id: str):
    """A degradation's level: a number, or empty for none (Enter commits it, as in a number box)."""
    return gr.Textbox("", label=label, placeholder="none", elem_id=elem_id, elem_classes=["uavm-level"],
                      max_lines=1, min_width=80)


def _results(P: Page, bundle) -> dict:
    """The results column; -> its tabs by name (their select events)."""
    tab_of = {}
    P("status", gr.Markdown("Upload or record a clip, or pick an example.", elem_id="status"))
    with P("answers", gr.Row(visible="hidden", elem_id="answers")):
        for m, title in page.TITLES:
            P(f"label_{m}", gr.Label(label=title, elem_id=f"label-{m}"))
    P("ood_note", gr.Markdown(elem_id="ood-note"))
    P("answer_note", gr.Markdown(elem_id="answer-note"))
    with gr.Tabs():
        with gr.Tab("Attention", elem_id="tab-attention") as tab_of["attention"]:
            P("layer", page.layer_slider(bundle.model.cfg, elem_id="layer"))
            # drawn in place by the page (Plotly.react): a toggle updates the heatmap, it does not rebuild the plot
            gr.HTML('<div id="temporal-plot"></div>', elem_id="plot-temporal")
            P("temporal", gr.Textbox(elem_id="temporal-json", elem_classes=["uavm-data"], show_label=False,
                                     container=False))
            with gr.Accordion("Full T x T attention maps of this layer", open=False) as P.c["full_acc"]:
                P("full", gr.Plot(elem_id="plot-full"))
            with gr.Accordion("Audio vs video attention difference per layer (paper Fig. 5)",
                              open=False) as P.c["diff_acc"]:
                P("diff", gr.Plot(elem_id="plot-diff"))
        with gr.Tab("Explain", elem_id="tab-explain") as tab_of["explain"]:
            gr.Markdown("What mattered, when, in which modality: how much the score drops when a span of one "
                        "modality is silenced or blacked out (measured), beside what attention suggests; and each "
                        "modality's share of the fused answer.")
            with gr.Row():
                P("target", gr.Dropdown(["fused", "audio", "video"] + [lab.name for lab in bundle.labels],
                                        value="fused", label="Explain the score of (a pass's top-1, or a class)",
                                        elem_id="explain-target", scale=3))
                P("explain_btn", gr.Button("Explain", elem_id="explain", scale=1))
            P("explain_text", gr.Markdown(elem_id="explain-summary"))
            P("explain_plot", gr.Plot(elem_id="plot-explain", show_label=False, visible=False))
            gr.Markdown("*Occlusion*: the drop of the target's probability when a span of one modality is silenced "
                        "or blacked out (fused: the fused score; dotted: that modality's own pass). *Rollout*: how "
                        "much each step feeds the output through every layer (Abnar & Zuidema), beside the last "
                        "layer's attention. *Share*: each pass's half of the fused logit.", elem_id="explain-key")
        with gr.Tab("Sweep", elem_id="tab-sweep") as tab_of["sweep"]:
            gr.Markdown("One degradation over levels on this window (with the swap, the spans and the weight set "
                        "beside): each pass's score of the fused answer's class, where its top-1 changes, and where "
                        "its input turns unfamiliar.")
            with gr.Row():
                P("sweep_kind", gr.Dropdown([(tabs.SWEEP_NAMES[k], k) for k in tabs.SWEEP_LEVELS],
                                            value="audio_snr", label="Degradation", elem_id="sweep-kind", scale=2))
                P("sweep_levels", gr.Textbox("", label="Levels (empty: the usual ones)", max_lines=1,
                                             placeholder=tabs.SWEEP_LEVELS["audio_snr"], elem_id="sweep-levels",
                                             scale=3))
                P("sweep_btn", gr.Button("Sweep", elem_id="sweep", scale=1))
            P("sweep_text", gr.Markdown(elem_id="sweep-summary"))
            P("sweep_plot", gr.Plot(elem_id="plot-sweep", show_label=False, visible=False))
        with gr.Tab("Live", elem_id="tab-live") as tab_of["live"]:
            pre = bundle.preprocessing
            gr.Markdown("Your camera and microphone: the last 10 s answered about once a second by each pass and "
                        "fused, with the attention of the layer chosen in the Attention tab. Either device may be "
                        "missing or refused: the other pass still answers. Nothing is recorded or kept.")
            with gr.Row():
                P("live_start", gr.Button("Start", elem_id="live-start", variant="primary", scale=0, min_width=90))
                P("live_stop", gr.Button("Stop", elem_id="live-stop", scale=0, min_width=90))
                P("live_audio", gr.Checkbox(True, label="Audio on", elem_id="live-audio", min_width=90))
                P("live_video", gr.Checkbox(True, label="Video on", elem_id="live-video", min_width=90))
            gr.HTML(f'<div id="live-box" data-rate="{pre.audio.sample_rate}" data-fps="{pre.video.fps:g}" '
                    f'data-side="{pre.video.short_side}"><video id="live-preview" muted playsinline autoplay>'
                    '</video><div id="live-lag"></div></div>', elem_id="live-media")
            P("live_status", gr.Markdown("Press Start to use your camera and microphone.", elem_id="live-status"))
            with gr.Row():
                P("live_audio_label", gr.Label(label="Audio only", elem_id="live-audio-label"))
                P("live_video_label", gr.Label(label="Video only", elem_id="live-video-label"))
                P("live_fused", gr.Label(label="Fused", elem_id="live-fused"))
            P("live_note", gr.Markdown(elem_id="live-note"))
            P("live_strip", gr.HTML(elem_id="live-strip"))
            gr.HTML('<div id="live-attention-plot"></div>', elem_id="live-attention")
            P("live_attention", gr.Textbox(elem_id="live-attention-json", elem_classes=["uavm-data"],
                                           show_label=False, container=False))
        with gr.Tab("Heard and seen", elem_id="tab-player") as tab_of["player"]:
            gr.Markdown("The 10 s window as the model got it: its frames at 3 fps (a blanked span black) and the "
                        "sound it heard (a muted span silent).")
            P("play", gr.Button("Make the clip", elem_id="make-player"))
            P("player", gr.Video(label="What the model got", elem_id="player", interactive=False))
        with gr.Tab("Compare models", elem_id="tab-compare") as tab_of["compare"]:
            gr.Markdown("Every loaded model on this clip with these settings.")
            P("run_all", gr.Button("Compare every model", elem_id="compare"))
            P("compare_table", gr.HTML(elem_id="compare-table"))
        with gr.Tab("Export", elem_id="tab-export") as tab_of["export"]:
            gr.Markdown("A report of this analysis that opens offline (the clip, the model, every setting, the "
                        "answers, the figures, and the explanation when you made one), and the `uavm predict "
                        "--json` answer with attention.")
            P("export", gr.Button("Prepare the download", elem_id="export"))
            P("export_files", gr.File(label="Download", file_count="multiple", elem_id="export-files",
                                      interactive=False))
    return tab_of


def _hidden(P: Page) -> None:
    """State and the boxes through which the page's script talks to the server."""
    P("media", gr.State(None))
    for name in ("full_open", "diff_open", "explain_open"):
        P(name, gr.State(False))
    data = dict(elem_classes=["uavm-data"], show_label=False, container=False)
    P("stamp", gr.Textbox(SENTINEL, elem_id="stamp", **data))
    P("painted", gr.Textbox(elem_id="painted", **data))
    P("answered", gr.Number(elem_id="answered", **data))  # painted: reconcile asks whether it is current
    P("checked", gr.Number(elem_id="checked", **data))  # skipped, or current: the page counts it
    P("window_at", gr.Textbox(elem_id="window-at", **data))
    P("live_push", gr.Textbox(elem_id="live-push", **data))  # the page's script writes each push here
    P("live_ack", gr.Number(elem_id="live-ack", **data))  # the push answered: the script may send the next


# -- wiring --------------------------------------------------------------------------------------
def _handler(server: Server, P: Page, fn, outputs: tuple):
    """A handler of page.py as Gradio calls it: the page's values -> Settings; its outputs by
    name -> components. (Named parameters: Gradio passes the request and progress only to those.)"""
    names = {id(c): n for n, c in P.c.items()}
    wanted = set(outputs)

    def run(values: dict, request: gr.Request = None, progress=gr.Progress()):
        s = Settings.of({names[id(c)]: v for c, v in values.items()})
        server.sessions.page(request)
        with server.serving(request):  # this client's lanes; its work stops if it leaves
            out = fn(server, s, request=request, progress=progress)
        return {P[n]: v for n, v in out.items() if n in wanted}
    run.__name__ = run.__qualname__ = fn.__name__
    return run


def _wire(P: Page, server: Server, tab_of: dict, examples: list) -> None:
    inputs = {P[n] for n in SETTINGS}
    priv = dict(api_visibility="private")

    def call(fn, outputs, **kw):
        return dict(fn=_handler(server, P, fn, outputs), inputs=inputs, outputs=P.of(outputs), **priv, **kw)

    analysis = call(page.explore, EXPLORE, js=js("stamp"))
    strip = call(page.timeline_strip, STRIP)
    for i, path in enumerate(examples):
        P[f"example_{i}"].click(lambda p=path: p, None, P["video_in"], **priv)
    for src in (P["video_in"], P["audio_in"]):  # a new clip: its window's answers, then its timeline
        src.change(lambda v: page.clip_chosen(server, v), src, P["media"], js=js("showResults"), **priv).then(
            **call(page.duration_changed, ("start",))).then(**analysis).then(**strip)
    P["pick"].change(**call(page.pick_window, ("start",))).then(**analysis)
    # One event per control, not one gr.on for all: two controls changed a moment apart then
    # send at once, and the server answers the newest (one shared event would hold the second
    # until the first is answered). Switches answer in tens of milliseconds: no loading overlay.
    for trigger in [P[n].change for n in ("audio_on", "video_on", "mute_on", "blank_on", "degrade_on", "top_k",
                                          "audio_from")] + \
            [P["layer"].release, P["audio_weight"].release]:
        trigger(trigger_mode="always_last", show_progress="hidden", **analysis)
    for trigger in [P["start"].release] + [P[n].blur for n in ("mute_from", "mute_to", "blank_from", "blank_to",
                                                               "audio_snr", "video_blur", "video_size", "video_fps",
                                                               "degrade_from", "degrade_to")]:
        trigger(trigger_mode="always_last", **analysis)
    P["model"].change(**call(page.model_switched, ("target", "layer", "notice"))).then(**analysis).then(**strip)
    for which in ("full", "diff"):
        acc, box = P[f"{which}_acc"], P[f"{which}_open"]
        acc.expand(lambda: True, None, box, **priv).then(**call(tabs.one_figure(which), (which,)))
        acc.collapse(lambda: False, None, box, **priv)
    for box, draw in (("temporal", "drawTemporal"), ("strip_json", "drawTimeline"), ("window_at", "markWindow"),
                      ("checked", "answered")):
        P[box].change(None, P[box], None, js=js(draw))  # the page draws as soon as it arrives
    P["answered"].change(**call(page.reconcile, EXPLORE, js=js("stamp"), trigger_mode="always_last",
                               show_progress="hidden"))
    P["play"].click(**call(tabs.heard_and_seen, ("player", "status")))
    # the explanation: on request, and kept up to date while its tab is open
    P["explain_btn"].click(**call(page.explain_tab, EXPLAIN))
    P["target"].input(**call(page.explain_tab, EXPLAIN, trigger_mode="always_last"))
    tab_of["explain"].select(lambda: True, None, P["explain_open"], **priv).then(**call(page.explain_tab, EXPLAIN))
    P["live_push"].change(**call(live.live_push, live.LIVE_OUT, trigger_mode="always_last", show_progress="hidden"))
    P["live_start"].click(None, None, None, js=js("liveStart"))
    P["live_stop"].click(**call(live.live_stop, live.LIVE_OUT, js=js("liveStop")))
    for box, draw in (("live_ack", "liveAck"), ("live_attention", "drawLiveAttention")):
        P[box].change(None, P[box], None, js=js(draw))
    for name in ("attention", "sweep", "live", "player", "compare", "export"):
        tab_of[name].select(lambda: False, None, P["explain_open"], **priv)
    # one event for the button and Enter: a later request is never overtaken by an earlier one
    gr.on([P["sweep_btn"].click, P["sweep_levels"].submit], **call(tabs.sweep_tab, SWEEP, trigger_mode="always_last"))
    P["sweep_kind"].input(lambda k: gr.Textbox(placeholder=tabs.SWEEP_LEVELS.get(k, "")), P["sweep_kind"],
                          P["sweep_levels"], **priv)
    P["run_all"].click(**call(tabs.compare, ("compare_table", "status")))
    P["export"].click(**call(tabs.export, ("export_files", "status")))
    for name, fn in api_functions(server).items():
        gr.api(fn, api_name=name)


def build_app(bundles: dict, device: str = "auto", warm: bool = True) -> App:
    examples = [str(p) for p in example_clips()]
    server = Server(bundles, device, examples=examples)
    if warm:  # the default model loaded and run before the page opens: the first click answers like the others
        import threading

        page.warm_up(server, examples[:1])
        threading.Thread(target=page.warm_up, args=(server, examples[1:]), daemon=True, name="uavm-warm-up").start()
    bundle = server.models.get(server.names[0]).pipe.bundle
    P = Page()
    # uploads are removed an hour after their last use, by the janitor (janitor.py)
    with gr.Blocks(title="UAVM explorer") as blocks:
        gr.Markdown("# UAVM: what does each modality say?\n"
                    "The Unified Audio-Visual Model (Gong et al., 2022) runs one pass per modality through shared "
                    "layers; the fused prediction is the mean of the two. Mute the audio or blank the video — "
                    "whole or a time span — and watch the predictions and every head's attention change.")
        P("notice", gr.Markdown(page.demo_notice(bundle.config), elem_id="notice"))
        with P("strip", gr.Column(visible="hidden", elem_id="timeline")):
            P("strip_note", gr.Markdown(elem_id="timeline-note"))
            gr.HTML('<div id="timeline-div"></div>', elem_id="timeline-plot")
            P("strip_json", gr.Textbox(elem_id="timeline-json", elem_classes=["uavm-data"], show_label=False,
                                       container=False))
            P("pick", gr.Textbox(elem_id="timeline-pick", show_label=False, container=False))
        with gr.Row(elem_id="main-row"):
            with gr.Column(scale=2, min_width=300, elem_id="inputs"):
                _inputs(P, examples, device, server.names)
            with gr.Column(scale=3, min_width=300, elem_id="results"):
                tab_of = _results(P, bundle)
        _hidden(P)
        _wire(P, server, tab_of, examples)
    server.blocks = blocks
    examples_folder = [str(Path(examples[0]).parent)] if examples else []
    return App(blocks, server, dict(css=(HERE / "page.css").read_text(encoding="utf-8"),
                                    js=(HERE / "page.js").read_text(encoding="utf-8"),
                                    head=f'<script src="{PLOTLY_URL}"></script>', allowed_paths=examples_folder))


"""The UAVM missing-modality explorer: a Gradio app over ``uavm.explore``.

``app/`` draws; ``uavm/`` thinks. Every request goes through one shared Explorer per
model (content-keyed caches), so toggling a modality or changing the layer reuses the
decoded clip and its features.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import gradio as gr

from uavm import load_bundle
from uavm.errors import InputError, UAVMError, flag, number, one_line
from uavm.explore import Explorer, file_digest
from uavm.inference import Pipeline, check_top_k, check_window
from uavm.media import Limits, probe_isolated

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


class Uploads:
    """The one door for media from clients (the page and the API alike): a path is used only
    if it names a regular file that Gradio placed in its upload folder. Checked before
    anything stats, opens, hashes or probes it, so a client can neither name a file of
    the server's nor learn whether one exists."""

    REFUSED = "media must be a file uploaded to this server"

    def __init__(self, root: str | None = None):
        from gradio.utils import get_upload_folder

        self.root = os.path.realpath(root or get_upload_folder())

    def from_api(self, value) -> str:
        """An API argument: only Gradio's FileData (which Gradio itself checked and placed)."""
        if hasattr(value, "model_dump"):  # a gr.FileData object
            value = value.model_dump()
        meta = value.get("meta") if isinstance(value, dict) else None
        if not isinstance(meta, dict) or meta.get("_type") != "gradio.FileData":
            raise InputError(f"{self.REFUSED} (send it with gradio_client's handle_file)")
        return self.check(value.get("path"))

    def check(self, path) -> str:
        if not isinstance(path, str) or not path or "\0" in path:
            raise InputError(self.REFUSED)
        lexical = os.path.abspath(path)  # no file system access yet
        if not lexical.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        real = os.path.realpath(lexical)
        if not real.startswith(self.root + os.sep):
            raise InputError(self.REFUSED)
        try:
            st = os.lstat(real)
        except OSError:
            raise InputError("the uploaded file is gone (uploads are kept for an hour): upload it again") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(self.REFUSED)
        return real

    def trim(self, max_bytes: int, keep_s: float = 120.0) -> int:
        """Delete the oldest uploads until they take at most ``max_bytes`` (Gradio removes
        them by age; this bounds them by size too). Files younger than ``keep_s`` stay.
        -> bytes freed."""
        files = []
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                p = os.path.join(dirpath, n)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    files.append((st.st_mtime, st.st_size, p))
        total, freed, now = sum(f[1] for f in files), 0, time.time()
        for mtime, size, p in sorted(files):
            if total - freed <= max_bytes:
                break
            if now - mtime < keep_s:
                continue
            try:
                os.unlink(p)
                freed += size
                os.rmdir(os.path.dirname(p))  # Gradio keeps each upload in a folder of its own
            except OSError:
                pass
        return freed


def guarded(fn):
    """A handler whose failures reach the client as one line: bad input says what is wrong;
    anything else is a bug, logged here with its traceback and reported as such."""
    import functools
    import logging

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UAVMError as e:
            raise gr.Error(one_line(e)) from None
        except Exception:
            logging.getLogger("uavm.app").exception("internal error in %s", fn.__name__)
            raise gr.Error("internal error (a bug): the server's log has the details") from None
    return inner


def public_message(e: BaseException, path: str | None = None) -> str:
    """One line for a client: the server's paths replaced by the file's own name."""
    msg = one_line(e)
    if path:
        msg = msg.replace(path, Path(path).name)
    return msg


class Models:
    """One Pipeline + Explorer per bundle, loaded on first use and shared by every session.
    All of them share one model lock (the networks' passes run one at a time) and one set
    of decode slots (slow uploads queue behind each other, not in front of cached work)."""

    def __init__(self, bundles: dict, device: str = "auto", decode_slots: int = 2):
        self.paths, self.device = bundles, device
        self._loaded, self._lock = {}, threading.Lock()
        self.model_lock = threading.Lock()
        self.decode_slots = threading.BoundedSemaphore(max(int(decode_slots), 1))
        self._digests = {}
        self.limits = Limits.from_env()

    def name(self, model) -> str:
        if not isinstance(model, str) or model not in self.paths:
            raise InputError(f"unknown model {model!r}; one of: {', '.join(self.paths)}")
        return model

    def get(self, name: str) -> Explorer:
        name = self.name(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Explorer(Pipeline(load_bundle(self.paths[name]), self.device),
                                              model_lock=self.model_lock, decode_slots=self.decode_slots)
            return self._loaded[name]

    def digest(self, path: str) -> str:
        """The upload's content hash, outside every lock (uploads are capped in size)."""
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            if len(self._digests) > 4096:
                self._digests.clear()
            self._digests[key] = file_digest(path)
        return self._digests[key]

    def duration(self, path: str) -> float:
        """Through the isolated decoder, in a decode slot, like every other look at an upload."""
        with self.decode_slots:
            return probe_isolated(path, self.limits).duration or 0.0


class ApiSessions:
    """Gradio keeps a session for every client (a copy of the page's config and its last
    answer, ~100 KB) for up to 10,000 sessions. A page's session is the user's work and is
    left alone; a session that only ever called the API holds nothing anyone needs once
    its answer is sent, so it is dropped after ``idle_s`` without a call. A long run of
    one-shot API clients then leaves the server's memory flat."""

    def __init__(self, idle_s: float = 30.0):
        self.idle_s, self.last, self._lock = idle_s, {}, threading.Lock()

    def used(self, request) -> None:
        h = getattr(request, "session_hash", None)
        if h:
            with self._lock:
                self.last[h] = time.time()

    def page(self, request) -> None:
        """This session has a page: never drop it."""
        h = getattr(request, "session_hash", None)
        with self._lock:
            self.last.pop(h, None)

    def sweep(self, holder) -> int:
        now, dropped = time.time(), 0
        with self._lock:
            idle = [h for h, t in self.last.items() if now - t > self.idle_s]
            for h in idle:
                del self.last[h]
        data, lock = getattr(holder, "session_data", None), getattr(holder, "lock", None)
        if data is None or lock is None:  # another Gradio: nothing to do
            return 0
        with lock:
            for h in idle:
                if data.pop(h, None) is not None:
                    dropped += 1
                getattr(holder, "time_last_used", {}).pop(h, None)
        return dropped


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
    models = Models(bundles, device, decode_slots=int(os.environ.get("UAVM_DECODE_SLOTS", "2")))
    uploads = Uploads()
    sessions = ApiSessions()
    names = list(bundles)
    if not names:
        raise SystemExit("no model bundles found: build the demo (uavm build-demo) or pass --bundle DIR")
    examples = sorted(str(p) for p in (WEIGHTS / "examples").glob("*.mp4"))

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


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _credentials(value: str | None):
    """--auth USER:PASS or $UAVM_AUTH; several as USER:PASS,USER2:PASS2."""
    value = value or os.environ.get("UAVM_AUTH")
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise SystemExit("uavm app: --auth takes USER:PASS (several: USER:PASS,USER2:PASS2)")
        pairs.append((user, password))
    return pairs


def _loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="uavm app", description="the UAVM missing-modality explorer")
    p.add_argument("--bundle", action="append", default=[], help="extra model bundle (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    p.add_argument("--auth", metavar="USER:PASS", help="require a login (or set $UAVM_AUTH)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    auth = _credentials(a.auth)
    if (a.share or not _loopback(a.host)) and not auth:
        where = "a public gradio.live link" if a.share else f"every network {a.host} is on"
        print(f"uavm app: WARNING: serving on {where} without a login: anyone who can reach it can upload "
              f"clips and use this machine's CPU/GPU. Add --auth USER:PASS (or $UAVM_AUTH).",
              file=sys.stderr, flush=True)
    demo = build_app(find_bundles(a.bundle), a.device)
    cap = int(float(os.environ.get("UAVM_UPLOAD_CACHE_MB", "2048")) * 2**20)
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
        allowed_paths=[str(WEIGHTS / "examples")])

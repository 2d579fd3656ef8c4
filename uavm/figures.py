"""Plotly figures of one window: what the library shows. The app arranges them; the analyses
write them. A series of windows or levels (the timeline, a sweep): ``uavm.series``.

* one clip's Analysis (``uavm.explore``): temporal attention per head with the spectrogram
  and the frames aligned under it, full T x T maps, the audio-video attention difference;
* the paper's analyses (``uavm.analysis``): probe, retrieval, attention, sweep;
* ``html``: figures as one self-contained page (plotly.js inlined: opens offline).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .clip import thumbnails
from .features import AudioPre, fbank

COLORS = "Viridis"


def empty_figure(msg: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=msg, showarrow=False, font=dict(size=14), x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def spectrogram(wav: np.ndarray, pre: AudioPre, bins: int = 400) -> np.ndarray:
    """(mel, frames) log-mel of the window, averaged down to at most ``bins`` columns for display."""
    fb = fbank(torch.as_tensor(wav), pre).numpy().T  # (mel, target_length), normalised
    n = fb.shape[1] // bins + 1
    cols = fb.shape[1] // n
    return fb[:, : cols * n].reshape(fb.shape[0], cols, n).mean(-1)


def colormap(values: np.ndarray, scale: str = "Magma") -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through a plotly colour scale, min to max."""
    from plotly.colors import hex_to_rgb, sequential

    stops = np.array([hex_to_rgb(c) if c.startswith("#") else [int(v) for v in c[4:-1].split(",")]
                      for c in getattr(sequential, scale)], np.float64)
    lo, hi = float(values.min()), float(values.max())
    t = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    pos = t * (len(stops) - 1)
    i = np.clip(pos.astype(int), 0, len(stops) - 2)
    f = (pos - i)[..., None]
    return np.round(stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def thumbnail(frame: np.ndarray, height: int = 64) -> np.ndarray:
    """A frame scaled to ``height`` pixels (nearest), its aspect ratio kept."""
    return thumbnails(frame[None], height)[0]


_IMAGES: OrderedDict[tuple, str] = OrderedDict()  # content -> data URL: toggles redraw the same pictures
_IMAGES_LOCK = threading.Lock()


def _image(what: str, array: np.ndarray, make) -> str:
    """``make()``'s data URL, kept by the content of ``array`` (a few hundred, a few KB each)."""
    key = (what, array.shape, str(array.dtype), hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest())
    with _IMAGES_LOCK:
        if key in _IMAGES:
            _IMAGES.move_to_end(key)
            return _IMAGES[key]
    url = make()
    with _IMAGES_LOCK:
        _IMAGES[key] = url
        while len(_IMAGES) > 256:
            _IMAGES.popitem(last=False)
    return url


def _png(img: np.ndarray) -> str:
    """An image as a data URL (JPEG: a tenth of a PNG's bytes for frames and spectrograms)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


# -- one clip's attention ---------------------------------------------------------------------
PARTS = {"unified": "shared", "independent": "upper, one per modality", "cross_modal": "joint: audio and video together"}


def layer_parts(cfg) -> list:
    """The part of the model each layer belongs to, layer 1 first."""
    return ["modality-specific"] * cfg.n_specific + [PARTS[cfg.kind]] * cfg.n_shared


def layer_label(cfg) -> str:
    """'layers 1-3 modality-specific, 4-6 shared': what the layer slider says."""
    parts, runs, start = layer_parts(cfg), [], 1
    for i in range(1, len(parts) + 1):
        if i == len(parts) or parts[i] != parts[i - 1]:
            runs.append(f"{start}-{i} {parts[i - 1]}" if i > start else f"{i} {parts[i - 1]}")
            start = i + 1
    return "layers " + ", ".join(runs)


def passes_at(pred, layer: int, cfg) -> list:
    """(name, (heads, T', T') attention) of every pass that has ``layer`` (1-based): the
    modality passes, or the cross-modal model's joint pass (2T tokens, audio first)."""
    if cfg.kind == "cross_modal" and layer > cfg.n_specific:
        j, li = pred.attention.get("joint"), layer - cfg.n_specific - 1
        return [("joint", j[li])] if j is not None and 0 <= li < len(j) else []
    return [(m, pred.attention[m][layer - 1]) for m in ("audio", "video")
            if m in pred.attention and 0 < layer <= len(pred.attention[m])]


def _colorbar(fig, top: float, title: str = "attention") -> None:
    """One colour scale for every attention map of the figure, from 0, with its bar."""
    fig.update_layout(coloraxis=dict(colorscale=COLORS, cmin=0, cmax=max(top, 1e-6),
                                     colorbar=dict(title=dict(text=title, side="right"), thickness=12, len=0.6)))


def temporal(an, layer: int, pre, cfg) -> go.Figure:
    """Attention each time step receives (mean over queries), one row per head, for the
    chosen layer of each pass, on one colour scale; the spectrogram and the frames the
    model saw share the time axis (seconds of the clip)."""
    pred = an.prediction
    if pred is None:
        return empty_figure(an.error or "no prediction")
    parts = layer_parts(cfg)
    layer = min(max(int(layer), 1), len(parts))
    part = parts[layer - 1]
    rows = []  # (kind, title, heads x T received attention or None)
    for name, att in passes_at(pred, layer, cfg):
        recv = att.mean(axis=1)  # (heads, T'): mean over the queries
        if name == "joint":
            T = recv.shape[1] // 2
            rows += [("attn", "joint pass, audio tokens", recv[:, :T]), ("attn", "joint pass, video tokens", recv[:, T:])]
        else:
            rows.append(("attn", f"{name} pass", recv))
    if an.waveform is not None and "audio" not in an.missing:
        rows.append(("spec", "what the model heard (log-mel)", None))
    every = 1
    if an.frames is not None and len(an.frames) and "video" not in an.missing:
        # thumbnails ~60 px tall at their aspect ratio, in a plot ~800 px wide: every Nth frame fits
        aspect = an.frames.shape[2] / an.frames.shape[1]
        every = max(1, int(np.ceil(60 * aspect / (800 / (an.seconds * pre.video.fps)))))
        rows.append(("frames", f"frames the model saw ({pre.video.fps:g} fps" +
                     (f") · one in {every} shown, at its time" if every > 1 else ")"), None))
    if not rows:
        return empty_figure("no attention at this layer")
    heights = {"attn": 1.0, "spec": 0.8, "frames": 0.55}
    # Built as plotly's JSON and wrapped unvalidated (ten times faster than make_subplots and
    # its checks), on ONE pair of axes: the attention rows are categories of one y axis, the
    # spectrogram and the frames pictures placed on the same time axis below them. A browser
    # redraws one subplot several times faster than a stack of them, and a toggle redraws it.
    domains = _stacked([heights[k] for k, _, _ in rows], gap=0.07)
    secs, top = an.seconds, 0.0
    attn = [r for r in rows if r[0] == "attn"]
    lo = domains[len(attn) - 1][0] if attn else 1.0
    data, images, notes = [], [], []
    layout = {"height": 130 + 130 * len(rows), "margin": {"l": 90, "r": 20, "t": 40, "b": 40}, "showlegend": False,
              "images": images, "annotations": notes,
              "xaxis": {"range": [an.start, an.start + secs], "anchor": "free", "position": 0, "domain": [0, 1],
                        "title": {"text": "seconds of the clip"}},
              "yaxis": {"domain": [lo, 1.0], "type": "category", "autorange": "reversed"}}
    # every pass's rows in ONE heatmap (plotly.js cannot put two heatmaps with their own
    # categories on one axis), an empty row between two passes
    zs, ys, groups = [], [], []  # groups: (pass, first row, last row) of the heatmap
    for r, (kind, title, z) in enumerate(rows):
        bottom, up = domains[r]
        if kind != "attn" or r == 0:
            # " · " is where a narrow page breaks the line (the page's drawing code)
            text = title if kind != "attn" else (f"layer {layer}/{len(parts)} ({part}) · attention each step "
                                                 f"receives · {', '.join(t for _, t, _ in attn)}")
            notes.append({"text": text, "x": 0.5, "y": up, "xref": "paper", "yref": "paper", "xanchor": "center",
                          "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})
        if kind == "attn":
            z = np.round(z, 4)  # four decimals are all a colour shows; fewer bytes to send
            top = max(top, float(z.max()))
            who = title.replace(" pass", "").replace("joint pass, ", "joint ").replace(" tokens", "")
            if zs:
                zs.append([None] * z.shape[1])
                ys.append(" " * r)
            groups.append((who, len(zs), len(zs) + z.shape[0] - 1))
            zs += z.tolist()
            ys += [f"{who} · head {h + 1}" for h in range(z.shape[0])]
            if r == len(attn) - 1:
                T = z.shape[1]
                data.append({"type": "heatmap", "z": zs, "y": ys, "coloraxis": "coloraxis", "hoverongaps": False,
                             "x": np.round(an.start + (np.arange(T) + 0.5) * secs / T, 3).tolist(),
                             "hovertemplate": "t=%{x:.2f} s, %{y}: %{z:.3f}<extra></extra>"})
            continue
        if kind == "spec":  # an image, not a 128 x 400 heatmap: a few KB to send instead of ~300
            span = pre.audio.target_length * pre.audio.frame_shift_ms / 1000
            url = _image(f"spectrogram {pre.audio}", an.waveform,
                         lambda: _png(colormap(spectrogram(an.waveform, pre.audio)[::-1])))
            images.append({"source": url, "xref": "x", "yref": "paper", "x": an.start, "y": up, "sizex": span,
                           "sizey": up - bottom, "sizing": "stretch", "layer": "below", "xanchor": "left",
                           "yanchor": "top"})
        else:  # each shown frame at its own time, its aspect ratio kept
            fps = pre.video.fps
            for i in range(0, len(an.frames), every):
                url = _image("frame", an.frames[i], lambda i=i: _png(thumbnail(an.frames[i], 64)))
                images.append({"source": url, "xref": "x", "yref": "paper", "x": an.start + i / fps, "y": up,
                               "sizex": every / fps, "sizey": up - bottom, "sizing": "contain", "layer": "above",
                               "xanchor": "left", "yanchor": "top"})
    _padding(layout, an, pre, secs, groups, {k: domains[r] for r, (k, _, _) in enumerate(rows) if k != "attn"})
    layout["coloraxis"] = {"colorscale": COLORS, "cmin": 0, "cmax": max(top, 1e-6),
                           "colorbar": {"title": {"text": "attention received", "side": "right"}, "thickness": 12,
                                        "len": 0.5, "y": (lo + 1) / 2}}
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def media_ends(an, pre) -> dict:
    """modality -> the clip second where its media ends inside the window, for each present
    modality that ends before the window does (the model sees padding after it)."""
    out, stop = {}, an.start + an.seconds - 1e-3
    if an.waveform is not None and "audio" not in an.missing:
        out["audio"] = an.start + len(an.waveform) / pre.audio.sample_rate
    if an.frames is not None and len(an.frames) and "video" not in an.missing:
        out["video"] = an.start + len(an.frames) / pre.video.fps
    return {m: round(t, 3) for m, t in out.items() if t < stop}


PADDING = "rgba(255, 255, 255, 0.6)"  # a veil over what the model saw as padding


def _padding(layout: dict, an, pre, secs: float, groups: list, domains: dict) -> None:
    """Veil and label the padded end of each modality's rows (a clip shorter than the window
    is padded as the authors pad it: its fbank and frame features after the end are filler)."""
    end_of_window = an.start + secs
    for m, t in media_ends(an, pre).items():
        bands = [("y", a - 0.5, b + 0.5) for who, a, b in groups if who.endswith(m)]
        row = "spec" if m == "audio" else "frames"
        if row in domains:
            bands.append(("paper", *domains[row]))
        for yref, y0, y1 in bands:
            layout.setdefault("shapes", []).append(
                {"type": "rect", "xref": "x", "yref": yref, "x0": t, "x1": end_of_window, "y0": y0, "y1": y1,
                 "fillcolor": PADDING, "line": {"width": 0}, "layer": "above"})
        for i, (yref, y0, y1) in enumerate(bands):
            wide = end_of_window - t >= 3 and i == 0
            layout["annotations"].append(
                {"text": f"padding: the {m} ends at {t - an.start:.1f} s" if wide else "padding", "xref": "x",
                 "yref": yref, "x": (t + end_of_window) / 2, "y": (y0 + y1) / 2, "yanchor": "middle", "showarrow": False,
                 "font": {"size": 11, "color": "#222"}, "bgcolor": "rgba(255,255,255,0.85)"})


def _stacked(heights: list, gap: float) -> list:
    """(bottom, top) paper domains of rows stacked top down, in proportion to ``heights``."""
    free = 1 - gap * (len(heights) - 1)
    total, out, top = sum(heights), [], 1.0
    for h in heights:
        size = free * h / total
        out.append((max(top - size, 0.0), top))
        top -= size + gap
    return out


def full_maps(an, layer: int, cfg) -> go.Figure:
    """Every head's T x T attention at the chosen layer (query on y, key on x, seconds),
    one colour scale; the joint map of the cross-modal model marks its audio and video halves."""
    pred = an.prediction
    if pred is None:
        return empty_figure(an.error or "no prediction")
    parts = layer_parts(cfg)
    layer = min(max(int(layer), 1), len(parts))
    passes = passes_at(pred, layer, cfg)
    if not passes:
        return empty_figure("no attention at this layer")
    heads = passes[0][1].shape[0]
    fig = make_subplots(rows=len(passes), cols=heads, horizontal_spacing=0.03, vertical_spacing=0.12,
                        subplot_titles=[f"{name} · head {h + 1}" for name, _ in passes for h in range(heads)])
    secs, top = an.seconds, 0.0
    for r, (name, att) in enumerate(passes, start=1):
        n = att.shape[-1]
        if name == "joint":  # audio tokens then video tokens: a 2 x 10 s axis, the halves marked
            T = n // 2
            t = np.r_[(np.arange(T) + 0.5) * secs / T, secs + (np.arange(T) + 0.5) * secs / T]
            ticks = dict(tickvals=[0, secs / 2, secs, 1.5 * secs, 2 * secs],
                         ticktext=["A 0", f"A {secs / 2:g}", "V 0", f"V {secs / 2:g}", f"V {secs:g} s"])
        else:
            t, ticks = an.start + (np.arange(n) + 0.5) * secs / n, {}
        for h in range(heads):
            top = max(top, float(att[h].max()))
            fig.add_trace(go.Heatmap(z=att[h], x=t, y=t, coloraxis="coloraxis",
                                     hovertemplate="query %{y:.2f} s, key %{x:.2f} s: %{z:.3f}<extra></extra>"),
                          row=r, col=h + 1)
            fig.update_xaxes(title_text="key (s)" if r == len(passes) else None, **ticks, row=r, col=h + 1)
            fig.update_yaxes(autorange="reversed", showticklabels=h == 0, title_text="query (s)" if h == 0 else None,
                             **ticks, row=r, col=h + 1)
            if name == "joint":
                for k, v in (("x", secs), ("y", secs)):
                    fig.add_shape(type="line", xref=f"x{'' if (r - 1) * heads + h == 0 else (r - 1) * heads + h + 1}",
                                  yref=f"y{'' if (r - 1) * heads + h == 0 else (r - 1) * heads + h + 1}",
                                  x0=v if k == "x" else 0, x1=v if k == "x" else 2 * secs,
                                  y0=v if k == "y" else 0, y1=v if k == "y" else 2 * secs,
                                  line=dict(color="white", width=1))
    _colorbar(fig, top)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=80 + 260 * len(passes), margin=dict(l=50, r=20, t=40, b=40),
                      title=dict(text=f"layer {layer}/{len(parts)} ({parts[layer - 1]})", font_size=13))
    return fig


def av_difference(an, cfg=None) -> go.Figure:
    """Mean absolute difference of the paired audio and video attention maps, per layer
    (the paper's Fig. 5, left) for this clip."""
    pred = an.prediction
    if pred is None or "audio" not in pred.attention or "video" not in pred.attention:
        return empty_figure("needs both the audio and the video pass")
    a, v = pred.attention["audio"], pred.attention["video"]
    n = min(a.shape[0], v.shape[0])
    diff = np.abs(a[:n] - v[:n]).mean(axis=(1, 2, 3))
    parts = layer_parts(cfg) if cfg is not None else [""] * n
    fig = go.Figure(go.Bar(x=[f"layer {i + 1}" + (f"<br>{parts[i]}" if parts[i] else "") for i in range(n)], y=diff,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(height=260, yaxis_title="mean |A_audio - A_video|", margin=dict(l=60, r=20, t=20, b=50))
    return fig


# -- one clip's explanation -------------------------------------------------------------------
MODALITY_COLORS = {"audio": "#d62728", "video": "#1f77b4"}


def explanation(e) -> go.Figure:
    """An Explanation (``uavm.explain``; or its ``to_dict()``) on the time axis of the
    attention heatmaps: how much the target's score drops when each span of a modality is
    silenced or blacked out, the attention rollout and the last layer's attention per step,
    and each modality's share of the fused logit."""
    d = e.to_dict() if hasattr(e, "to_dict") else e
    start, secs = float(d["start"]), float(d["seconds"])
    c = d["contribution"]
    label = d["target"]["label"]
    label = label if len(label) <= 30 else label[:29] + "…"
    # titles short enough for a phone's width; what they mean is said beside the figure
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.13, row_heights=[1.0, 0.8, 0.35], subplot_titles=[
        f"occlusion ({d['window']:g} s spans): drop of P({label})",
        "rollout (solid), last layer's attention (dotted)",
        f"each modality's share of the fused logit ({c['fused_logit']:.2f})"])
    for m, color in MODALITY_COLORS.items():
        occ = d["occlusion"].get(m)
        if occ:
            fig.add_trace(go.Scatter(x=occ["times"], y=occ["drop"], name=f"{m}: fused score", mode="lines+markers",
                                     line=dict(color=color), legendgroup=m,
                                     hovertemplate=f"{m} span at %{{x:.2f}} s: fused drops %{{y:.3f}}<extra></extra>"),
                          row=1, col=1)
            if occ.get("drop_own") is not None:
                fig.add_trace(go.Scatter(x=occ["times"], y=occ["drop_own"], name=f"{m}: its own pass", mode="lines",
                                         line=dict(color=color, dash="dot"), legendgroup=m,
                                         hovertemplate=f"{m} span at %{{x:.2f}} s: its pass drops %{{y:.3f}}"
                                                       "<extra></extra>"), row=1, col=1)
        for key, dash, what in (("rollout", "solid", "rollout"), ("attention_last", "dot", "last layer")):
            curve = d[key].get(m) if d.get(key) else None
            if curve:
                fig.add_trace(go.Scatter(x=d["step_times"], y=curve, name=f"{m}: {what}", mode="lines",
                                         line=dict(color=color, dash=dash), legendgroup=m, showlegend=False,
                                         hovertemplate=f"{m} {what} at %{{x:.2f}} s: %{{y:.3f}}<extra></extra>"),
                              row=2, col=1)
    if c.get("audio") is not None or c.get("video") is not None:
        for m, color in MODALITY_COLORS.items():
            if c.get(m) is not None:
                fig.add_trace(go.Bar(x=[c[m]], y=["logit"], orientation="h", name=f"{m} z/2", marker_color=color,
                                     text=[f"{m} {c[m]:.2f}"], textposition="inside", showlegend=False,
                                     hovertemplate=f"{m}: %{{x:.3f}} of the fused logit<extra></extra>"), row=3, col=1)
        fig.update_layout(barmode="relative")
    else:
        fig.add_annotation(text=c.get("undefined") or "not defined for this model", showarrow=False, xref="x3 domain",
                           yref="y3 domain", x=0.5, y=0.5, font=dict(size=11))
    for r in (1, 2):  # seconds of the clip on both time axes (a title there would sit on the next plot's)
        fig.update_xaxes(range=[start, start + secs], ticksuffix=" s", row=r, col=1)
    fig.update_yaxes(title_text="score drop", row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=3, col=1)
    fig.update_annotations(font_size=12)
    for m, t in (d.get("ends") or {}).items():  # the model saw padding there: occluding it changes nothing
        for ref in ("", "2"):
            fig.add_shape(type="rect", xref=f"x{ref}", yref=f"y{ref} domain", x0=t, x1=start + secs, y0=0, y1=1,
                          fillcolor="rgba(128, 128, 128, 0.15)", line_width=0, layer="below")
        fig.add_annotation(text=f"padding after {t - start:.1f} s ({m})", xref="x", yref="y domain",
                           x=(t + start + secs) / 2, y=0.98, yanchor="top", showarrow=False, font=dict(size=11))
    # the legend under the last plot, never over a title (it wraps on a narrow page)
    fig.update_layout(height=620, margin=dict(l=60, r=20, t=40, b=110),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"))
    return fig


def live_attention(pred, layer: int, cfg, fps: float) -> go.Figure:
    """The Live tab's attention: per pass, how much each time step of the window receives
    (mean over queries) from each head of ``layer``; seconds from the window's start."""
    rows = []
    for name, att in passes_at(pred, layer, cfg) if pred is not None else []:
        received = np.asarray(att).mean(axis=1)  # (heads, T'): the attention each step receives
        if name == "joint":  # 2T tokens, audio first: each half on its own time axis
            half = received.shape[1] // 2
            rows += [("joint pass: audio steps", received[:, :half]), ("joint pass: video steps", received[:, half:])]
        else:
            rows.append((f"{name} pass", received))
    if not rows:
        return empty_figure("no attention at this layer")
    fig = make_subplots(rows=len(rows), cols=1, vertical_spacing=0.18,
                        subplot_titles=[f"{name}, layer {layer}" for name, _ in rows])
    top = 0.0
    for r, (_, received) in enumerate(rows, start=1):
        top = max(top, float(received.max()))
        t = np.arange(received.shape[1]) / fps
        fig.add_trace(go.Heatmap(z=received, x=t, y=[f"head {h + 1}" for h in range(received.shape[0])],
                                 coloraxis="coloraxis", hovertemplate="%{y} at %{x:.1f} s: %{z:.3f}<extra></extra>"),
                      row=r, col=1)
        fig.update_xaxes(ticksuffix=" s", row=r, col=1)
    _colorbar(fig, top)
    fig.update_layout(height=140 + 110 * len(rows), margin=dict(l=60, r=20, t=30, b=30))
    return fig


def html(*figs) -> str:
    """One self-contained page (plotly.js inlined once, so it opens offline)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    return "<!doctype html><html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>"

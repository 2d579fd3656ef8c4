"""Plotly figures: what the library shows. The app arranges them; the analyses write them.

* one clip's Analysis (``uavm.explore``): temporal attention per head with the spectrogram
  and the frames aligned under it, full T x T maps, the audio-video attention difference;
* the paper's analyses (``uavm.analysis``): probe, retrieval, attention, sweep;
* ``html``: figures as one self-contained page (plotly.js inlined: opens offline).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .features import AudioPre, fbank

COLORS = "Viridis"


def _empty(msg: str) -> go.Figure:
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


def frame_strip(frames: np.ndarray, height: int = 48) -> np.ndarray:
    """The 3 fps frames side by side, each scaled to ``height`` pixels (nearest)."""
    h, w = frames.shape[1:3]
    nw = max(int(w * height / h), 1)
    yi, xi = (np.arange(height) * h / height).astype(int), (np.arange(nw) * w / nw).astype(int)
    return np.concatenate([f[yi][:, xi] for f in frames], axis=1)


def _png(img: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def temporal(an, layer: int, pre) -> go.Figure:
    """Attention each time step receives (mean over queries), one row per head, for the
    chosen layer of each modality pass; the spectrogram and frames share the time axis."""
    pred = an.prediction
    if pred is None:
        return _empty(an.error or "no prediction")
    rows = []
    for m in ("audio", "video"):
        if m in pred.attention:
            rows.append(("attn", m))
        if m in pred.attention and m == "audio" and an.waveform is not None:
            rows.append(("spec", m))
        if m in pred.attention and m == "video" and an.frames is not None and len(an.frames):
            rows.append(("frames", m))
    heights = {"attn": 1.0, "spec": 0.8, "frames": 0.45}
    titles = []
    for kind, m in rows:
        if kind == "attn":
            n = pred.attention[m].shape[0]
            titles.append(f"{m} pass, layer {min(layer, n)} of {n}: attention received by each time step")
        else:
            titles.append({"spec": "audio the model heard (log-mel)", "frames": "frames the model saw (3 fps)"}[kind])
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=titles,
                        row_heights=[heights[k] for k, _ in rows])
    secs = an.seconds
    for r, (kind, m) in enumerate(rows, start=1):
        if kind == "attn":
            att = pred.attention[m]
            li = min(max(layer, 1), att.shape[0]) - 1
            recv = att[li].mean(axis=1)  # (heads, T): mean over queries
            T = recv.shape[1]
            x = an.start + (np.arange(T) + 0.5) * secs / T
            fig.add_trace(go.Heatmap(z=recv, x=x, y=[f"head {h + 1}" for h in range(recv.shape[0])],
                                     colorscale=COLORS, showscale=False,
                                     hovertemplate="t=%{x:.2f}s %{y}: %{z:.3f}<extra></extra>"), row=r, col=1)
        elif kind == "spec":
            S = spectrogram(an.waveform, pre.audio)
            x = an.start + (np.arange(S.shape[1]) + 0.5) * (pre.audio.target_length * pre.audio.frame_shift_ms / 1000) / S.shape[1]
            fig.add_trace(go.Heatmap(z=S, x=x, colorscale="Magma", showscale=False, hoverinfo="skip"), row=r, col=1)
            fig.update_yaxes(title_text="mel", showticklabels=False, row=r, col=1)
        else:  # a layout image stretched over the frames' time span (an Image trace would pin the aspect ratio)
            ax = "" if r == 1 else str(r)
            every = max(int(round(pre.video.fps)), 1)  # one thumbnail a second keeps them legible
            fig.add_layout_image(source=_png(frame_strip(an.frames[::every], 64)), xref=f"x{ax}", yref=f"y{ax} domain",
                                 x=an.start, y=1, sizex=len(an.frames[::every]) * every / pre.video.fps, sizey=1,
                                 sizing="stretch", layer="above", xanchor="left", yanchor="top")
            fig.add_trace(go.Scatter(x=[an.start, an.start + secs], y=[0, 1], mode="markers", opacity=0,
                                     hoverinfo="skip", showlegend=False), row=r, col=1)
            fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=r, col=1)
    fig.update_xaxes(range=[an.start, an.start + secs], title_text="seconds", row=len(rows), col=1)
    fig.update_layout(height=150 + 130 * len(rows), margin=dict(l=60, r=20, t=40, b=40))
    return fig


def full_maps(an, layer: int) -> go.Figure:
    """The T x T attention of every head at the chosen layer (query on y, key on x)."""
    pred = an.prediction
    if pred is None:
        return _empty(an.error or "no prediction")
    mods = [m for m in ("audio", "video", "joint") if m in pred.attention]
    heads = pred.attention[mods[0]].shape[1]
    fig = make_subplots(rows=len(mods), cols=heads, horizontal_spacing=0.02, vertical_spacing=0.08,
                        subplot_titles=[f"{m} h{h + 1}" for m in mods for h in range(heads)])
    for r, m in enumerate(mods, start=1):
        att = pred.attention[m]
        li = min(max(layer, 1), att.shape[0]) - 1
        for h in range(heads):
            fig.add_trace(go.Heatmap(z=att[li, h], colorscale=COLORS, showscale=False,
                                     hovertemplate="query %{y}, key %{x}: %{z:.3f}<extra></extra>"), row=r, col=h + 1)
            fig.update_yaxes(autorange="reversed", showticklabels=h == 0, row=r, col=h + 1)
    fig.update_layout(height=60 + 230 * len(mods), margin=dict(l=40, r=10, t=40, b=20))
    return fig


def av_difference(an) -> go.Figure:
    """Mean absolute difference of the paired audio and video attention maps, per layer
    (the paper's Fig. 5, left) for this clip."""
    pred = an.prediction
    if pred is None or "audio" not in pred.attention or "video" not in pred.attention:
        return _empty("needs both the audio and the video pass")
    a, v = pred.attention["audio"], pred.attention["video"]
    n = min(a.shape[0], v.shape[0])
    diff = np.abs(a[:n] - v[:n]).mean(axis=(1, 2, 3))
    fig = go.Figure(go.Bar(x=[f"layer {i + 1}" for i in range(n)], y=diff,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(height=260, yaxis_title="mean |A_audio - A_video|", margin=dict(l=60, r=20, t=20, b=40))
    return fig


# -- the paper's analyses ---------------------------------------------------------------------
def probe_figures(rows, coef, tsne, title: str):
    top = make_subplots(rows=1, cols=2, subplot_titles=["modality probe accuracy (held-out half)",
                                                        "last Transformer layer's probe coefficients, sorted"])
    top.add_trace(go.Bar(x=[r["layer"] for r in rows], y=[r["modality_accuracy"] for r in rows], name="accuracy",
                         text=[r["part"] for r in rows]), 1, 1)
    top.add_trace(go.Scatter(x=[c["rank"] for c in coef], y=[c["coefficient"] for c in coef], mode="lines",
                             name="coefficient", text=[f"dim {c['dimension']}" for c in coef]), 1, 2)
    top.update_yaxes(range=[0, 1.02], row=1, col=1)
    top.update_layout(title=title, showlegend=False)
    figs = [top]
    layers = list(dict.fromkeys(r["layer"] for r in tsne))
    if layers:
        fig = make_subplots(rows=1, cols=len(layers), subplot_titles=layers)
        for j, layer in enumerate(layers):
            for m, color in (("audio", "#d62728"), ("video", "#1f77b4")):
                pts = [r for r in tsne if r["layer"] == layer and r["modality"] == m]
                fig.add_trace(go.Scattergl(x=[p["x"] for p in pts], y=[p["y"] for p in pts], mode="markers",
                                           marker=dict(size=3, color=color), name=m, legendgroup=m,
                                           showlegend=j == 0, text=[f"clip {p['clip']}" for p in pts]), 1, j + 1)
        fig.update_layout(title="t-SNE of each layer's representations (audio red, video blue)",
                          height=360, width=max(900, 260 * len(layers)))
        figs.append(fig)
    return figs


def retrieval_figure(rows, ks, title: str):
    fig = go.Figure()
    for k in ks:
        fig.add_trace(go.Scatter(x=[r["layer"] for r in rows], y=[r[f"a2v_recall@{k}"] for r in rows],
                                 mode="lines+markers", name=f"A->V recall@{k}"))
    fig.update_layout(title=title, yaxis=dict(title="recall", range=[0, 1.02]), xaxis_title="representation")
    return fig


def attention_figure(diff, temporal, title: str):
    fig = make_subplots(rows=1, cols=3, subplot_titles=["mean |A_audio - A_video| per layer",
                                                        "audio: attention received per head",
                                                        "video: attention received per head"])
    fig.add_trace(go.Bar(x=[r["layer"] for r in diff], y=[r["mean_abs_difference"] for r in diff],
                         name="difference"), 1, 1)
    for c, m in ((2, "audio"), (3, "video")):
        rs = [r for r in temporal if r["modality"] == m]
        heads = sorted({r["head"] for r in rs})
        steps = sorted({r["step"] for r in rs})
        z = [[next(r["attention"] for r in rs if r["head"] == h and r["step"] == t) for t in steps] for h in heads]
        secs = [next(r["seconds"] for r in rs if r["step"] == t) for t in steps]
        fig.add_trace(go.Heatmap(z=z, x=secs, y=[f"head {h}" for h in heads], coloraxis="coloraxis"), 1, c)
        fig.update_xaxes(title_text="seconds", row=1, col=c)
    fig.update_layout(title=title, coloraxis=dict(colorscale="Viridis"))
    return fig


def sweep_figure(summary, title: str):
    factors = list(dict.fromkeys(s["factor"] for s in summary))
    fig = make_subplots(rows=len(factors), cols=1, subplot_titles=factors)
    dash = {"audio": "dot", "video": "dash", "fused": "solid"}
    for i, f in enumerate(factors):
        for kind in dict.fromkeys(s["kind"] for s in summary if s["factor"] == f):
            ss = [s for s in summary if s["factor"] == f and s["kind"] == kind]
            for m in ("audio", "video", "fused"):
                if any(s[f"{m}_acc_mean"] == "" for s in ss):
                    continue
                fig.add_trace(go.Scatter(x=[str(s["value"]) for s in ss], y=[s[f"{m}_acc_mean"] for s in ss],
                                         error_y=dict(type="data", array=[s[f"{m}_acc_std"] for s in ss]),
                                         mode="lines+markers", line=dict(dash=dash[m]), name=f"{kind} {m}",
                                         legendgroup=f"{kind} {m}", showlegend=i == 0), i + 1, 1)
        fig.update_yaxes(title_text="accuracy", row=i + 1, col=1)
    fig.update_layout(title=title, height=220 + 320 * len(factors))
    return fig


def html(*figs) -> str:
    """One self-contained page (plotly.js inlined once, so it opens offline)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    return "<!doctype html><html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>"

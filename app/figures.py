"""Plotly figures of one Analysis: temporal attention per head with the spectrogram and
the frames aligned under it, full T x T maps, and the audio-video attention difference."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from uavm.features import AudioPre, fbank

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

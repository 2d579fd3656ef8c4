"""The paper's analyses as figures (``uavm analyze``'s page): the modality probe and t-SNE,
retrieval, attention differences, and the sweeps. One clip's figures are in ``uavm.figures``."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .levels import UNITS


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


def robustness_figures(rows, summary, title: str):
    """One panel per condition: each model's and pass's accuracy against the level; then the
    relative robustness of every curve."""
    kinds = [k for k in dict.fromkeys(r["condition"] for r in rows) if k != "plain"]
    plain = {(r["model"], r["pass"]): r for r in rows if r["condition"] == "plain"}
    cols = 2
    fig = make_subplots(rows=(len(kinds) + 1) // cols, cols=cols, subplot_titles=kinds)
    dash = {"audio": "dot", "video": "dash", "fused": "solid"}
    models = list(dict.fromkeys(r["model"] for r in rows))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, k in enumerate(kinds):
        for j, model in enumerate(models):
            for p in ("audio", "video", "fused"):
                rs = [r for r in rows if r["model"] == model and r["pass"] == p and r["condition"] == k]
                if not rs:
                    continue
                rs = [plain[(model, p)]] + rs
                fig.add_trace(go.Scatter(
                    x=[r["x"] for r in rs], y=[r["accuracy"] for r in rs], mode="lines+markers",
                    line=dict(dash=dash[p], color=palette[j % len(palette)]), name=f"{model} {p}",
                    legendgroup=f"{model} {p}", showlegend=i == 0,
                    text=["plain" if r["level"] == "" else f"{k} {r['level']}" for r in rs],
                    hovertemplate="%{text}: accuracy %{y:.3f}<extra>" + f"{model} {p}</extra>"),
                    i // cols + 1, i % cols + 1)
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=i // cols + 1, col=i % cols + 1)
        marks = {r["x"]: r["level"] for r in rows if r["condition"] == k}  # each level where it sits
        unit = UNITS.get(k, "")
        fig.update_xaxes(title_text=f"{k} ({unit})", tickvals=[0, *marks], row=i // cols + 1, col=i % cols + 1,
                         ticktext=["plain", *(f"{100 * float(v):g}%" if unit == "share" else f"{float(v):g}"
                                              for v in marks.values())])
    fig.update_layout(title=title, height=180 + 300 * ((len(kinds) + 1) // cols))
    rel = go.Figure()
    for model in models:
        for p in ("audio", "video", "fused"):
            ss = [s for s in summary if s["model"] == model and s["pass"] == p and s["metric"] == "accuracy"]
            if ss:
                rel.add_trace(go.Bar(x=[s["condition"] for s in ss], y=[s["relative_robustness"] for s in ss],
                                     name=f"{model} {p}"))
    rel.update_layout(title="relative robustness of accuracy (area under the curve over the plain figure; 1: flat)",
                      barmode="group", yaxis_title="relative robustness")
    return [fig, rel]

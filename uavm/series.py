"""Figures of a series: a clip window by window (``uavm.timeline``'s strip, with one colour
per class) and one window degraded level by level (``uavm.sweep``'s curves). One window's
own figures (attention, explanation) are ``uavm.figures``."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .figures import MODALITY_COLORS, empty_figure

AGREE = {True: ("#f2f2f2", "same", "#444"), False: ("#3a3a3a", "differ", "#fff"), None: ("#ffffff", "", "#444")}
CURRENT = "#000000"  # the outline of the window the explorer shows


def class_palette() -> list:
    """Colours for classes: plotly's qualitative sets without their greys, so that no class
    looks like "missing" (grey, hatched) or like the agreement row (greys)."""
    import colorsys

    from plotly.colors import hex_to_rgb, qualitative

    out = []
    for c in qualitative.Dark24 + qualitative.Light24:
        r, g, b = (v / 255 for v in hex_to_rgb(c))
        if colorsys.rgb_to_hsv(r, g, b)[1] >= 0.3 and c not in out:
            out.append(c)
    return out


def current_window(start: float, seconds: float) -> dict:
    """The outline drawn around the window the explorer shows (the page moves it)."""
    return {"type": "rect", "name": "current", "xref": "x", "yref": "paper", "x0": start, "x1": start + seconds,
            "y0": 0, "y1": 1, "line": {"color": CURRENT, "width": 3}, "fillcolor": "rgba(0,0,0,0)", "layer": "above"}


def timeline(tl, title: str = "", current: float | None = None) -> go.Figure:
    """A clip's timeline (``uavm.timeline``; the Timeline or its ``to_dict()``): the audio, video
    and fused top-1 of every window as bands as wide as the window, coloured by class and
    labelled (windows that overlap take turns in lanes of the row), whether audio and video
    give the same top-1 (greys: never a class colour), and where a modality is missing
    (hatched grey; black stripes: its stream has nothing there). ``current``: the start of
    the window the explorer shows, outlined. Each band's ``customdata`` starts with its
    window's start (for clicks)."""
    d = tl.to_dict() if hasattr(tl, "to_dict") else tl
    wins, dur = d["windows"], float(d["duration"])
    if not wins:
        return empty_figure("no windows")
    palette = class_palette()
    window, stride = float(d["window"]), float(d["stride"])
    lanes = max(1, min(int(np.ceil(window / stride - 1e-9)), 4))  # overlapping windows take turns
    rows = ["audio", "video", "fused", "agree"]
    fig = go.Figure()

    def bands(sel, y, colors, texts, hover, pattern="", font=None):
        for lane in range(lanes):
            mine = [i for i in sel if i % lanes == lane]
            if not mine:
                continue
            s = [wins[i]["start"] for i in mine]
            fig.add_trace(go.Bar(
                orientation="h", y=[y] * len(mine), base=s, x=[max(min(a + window, dur) - a, 1e-3) for a in s],
                width=0.8 / lanes, offset=0.4 - (lane + 1) * 0.8 / lanes,  # lane 0 on top
                marker=dict(color=[colors[sel.index(i)] for i in mine], line=dict(width=0.5, color="white"),
                            pattern=dict(shape=pattern)),
                text=[texts[sel.index(i)] for i in mine], textposition="inside", insidetextanchor="middle",
                textfont=dict(color=[font[sel.index(i)] for i in mine]) if font else None,
                customdata=[[a, hover[sel.index(i)]] for a, i in zip(s, mine)],
                hovertemplate="%{customdata[1]}<extra></extra>", showlegend=False))

    for m in ("audio", "video", "fused"):
        have = [i for i, w in enumerate(wins) if w.get(m)]
        tops = [wins[i][m]["top"][0] for i in have]
        bands(have, m, [palette[t["index"] % len(palette)] for t in tops], [t["label"] for t in tops],
              [f"{wins[i]['start']:g}-{wins[i]['start'] + window:g} s, {m}: {t['label']} {t['score']:.2f}"
               for i, t in zip(have, tops)])
        gone = [i for i, w in enumerate(wins) if not w.get(m)]
        why = [(wins[i].get("missing") or {}).get(m) or wins[i].get("error") or "no prediction of its own" for i in gone]
        bands(gone, m, ["#d0d0d0"] * len(gone), ["missing" if "missing" in wins[i] else "" for i in gone],
              [f"{wins[i]['start']:g} s, {m}: {w}" for i, w in zip(gone, why)], pattern="/")
    every = list(range(len(wins)))
    bands(every, "agree", [AGREE[w["agree"]][0] for w in wins], [AGREE[w["agree"]][1] for w in wins],
          [f"{w['start']:g} s: audio and video top-1 {AGREE[w['agree']][1] or 'not both there'}" for w in wins],
          font=[AGREE[w["agree"]][2] for w in wins])
    for m, spans in (d.get("gaps") or {}).items():
        spans = [(a, b) for a, b in spans if b > a]
        if spans and m in rows:
            fig.add_trace(go.Bar(orientation="h", y=[m] * len(spans), base=[a for a, _ in spans],
                                 x=[b - a for a, b in spans], width=0.1, offset=-0.45, marker=dict(color="black"),
                                 customdata=[[a, f"{a:g}-{b:g} s: the {m} stream has nothing here"] for a, b in spans],
                                 hovertemplate="%{customdata[1]}<extra></extra>", showlegend=False))
    name = str(d.get("clip", "")).replace("\\", "/").rsplit("/", 1)[-1]
    fig.update_layout(
        barmode="overlay", height=260, margin=dict(l=60, r=20, t=40, b=40), uniformtext=dict(minsize=8, mode="hide"),
        title=title or f"{name} · top-1 of each {window:g} s window, every {stride:g} s",
        xaxis=dict(range=[0, dur], title="seconds"), shapes=[] if current is None else [current_window(current, window)],
        yaxis=dict(categoryorder="array", categoryarray=rows[::-1], ticktext=["same top-1?", "fused", "video", "audio"],
                   tickvals=rows[::-1]))
    return fig


PASS_COLORS = {"audio": None, "video": None, "fused": "#444444"}  # audio and video: MODALITY_COLORS


def sweep(sw) -> go.Figure:
    """A Sweep (``uavm.sweep``; or its ``to_dict()``): each pass's score of the target class
    against the level, the plain window's as a dotted line, a level where the pass's top-1 is
    no longer its plain one hollow, one where its input is unfamiliar crossed."""
    d = sw.to_dict() if hasattr(sw, "to_dict") else sw
    rows = d["levels"]
    plain, levels = rows[0], rows[1:]
    x = [r["level"] for r in levels]
    fig = go.Figure()
    for m in ("audio", "video", "fused"):
        if plain[m] is None:
            continue
        color = PASS_COLORS[m] or MODALITY_COLORS[m]
        symbols = [("x" if r[m]["unfamiliar"] else "circle-open" if r[m]["top1"] != plain[m]["top1"] else "circle")
                   for r in levels]
        notes = [f"top-1 {r[m]['top1']}" + (" (changed)" if r[m]["top1"] != plain[m]["top1"] else "")
                 + (", unfamiliar input" if r[m]["unfamiliar"] else "") for r in levels]
        fig.add_trace(go.Scatter(x=x, y=[r[m]["score"] for r in levels], name=m, mode="lines+markers",
                                 line=dict(color=color, width=3 if m == "fused" else 2),
                                 marker=dict(symbol=symbols, size=10, line=dict(width=2, color=color)),
                                 customdata=notes, legendgroup=m,
                                 hovertemplate=f"{m} at %{{x:g}} {d['unit']}: %{{y:.3f}}, %{{customdata}}"
                                               "<extra></extra>"))
        fig.add_hline(y=plain[m]["score"], line=dict(color=color, dash="dot", width=1))
    label = d["target"] if len(d["target"]) <= 30 else d["target"][:29] + "…"
    clean_left = d["degradation"] in ("audio_snr", "video_size", "video_fps")  # larger is cleaner
    fig.update_xaxes(title_text=f"{d['degradation'].replace('_', ' ')} ({d['unit']})",
                     autorange="reversed" if clean_left else True)
    fig.update_yaxes(title_text=f"P({label})", range=[0, 1.02])
    fig.update_layout(height=360, margin=dict(l=60, r=20, t=30, b=100),
                      title=dict(text="dotted: the plain window · hollow: top-1 changed · x: unfamiliar input",
                                 font=dict(size=12)),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.25, yanchor="top"))
    return fig

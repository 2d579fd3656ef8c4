"""One clip's analysis as a report that stands alone: a single HTML file (plotly.js inlined,
so it opens offline) with the clip, the model, every setting, the three passes' answers,
the figures the explorer shows, and the explanation when one was made."""
from __future__ import annotations

import datetime
from html import escape
from typing import Optional

from . import figures

CSS = """body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.4em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } .answers { display: flex; flex-wrap: wrap; gap: 2em; }
.note { font-size: 0.9em; color: #555; } .why { color: #666; font-style: italic; }"""


def _table(rows, head=None) -> str:
    h = "<tr>" + "".join(f"<th>{escape(str(x))}</th>" for x in head) + "</tr>" if head else ""
    return "<table>" + h + "".join("<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in r) + "</tr>"
                                   for r in rows) + "</table>"


def _span(span) -> str:
    return "none" if not span else f"{float(span[0]):g}–{float(span[1]):g} s of the clip"


def clip_report(clip: str, model: str, bundle, an, settings: dict, top_k: int, layer: int, pre,
                explanation=None, note: str = "", when: Optional[datetime.datetime] = None) -> str:
    """The report of one analysis (``uavm.explore.Analysis``) of ``clip`` (its name) by ``model``
    (its name; ``bundle`` the Bundle) with the explorer's ``settings`` (audio_on, video_on,
    mute, blank); ``explanation``: an Explanation of the same window, or None."""
    from . import __version__

    cfg = bundle.model.cfg
    pred = an.prediction
    when = when or datetime.datetime.now().astimezone()
    title = f"UAVM · {clip} · {model}"
    facts = [("clip", clip), ("model", f"{model}: {cfg.kind} (N={cfg.n_specific} modality-specific, "
                                        f"Ns={cfg.n_shared} {figures.PARTS[cfg.kind]} layers), "
                                        f"{len(bundle.labels)} classes"),
             ("window", f"{an.start:g}–{an.start + an.seconds:g} s of the clip"),
             ("audio", "on" if settings.get("audio_on", True) else "turned off"),
             ("video", "on" if settings.get("video_on", True) else "turned off"),
             ("muted audio", _span(settings.get("mute"))), ("blanked video", _span(settings.get("blank"))),
             ("top k", top_k), ("attention layer shown", f"{layer} of {cfg.n_layers} ({figures.layer_label(cfg)})"),
             ("made", f"{when:%Y-%m-%d %H:%M %Z} with uavm {__version__}")]
    for key, what in (("audio_from", "the audio from"), ("degraded", "degraded"), ("audio_weight", "audio weight")):
        if settings.get(key) is not None:  # what the answer was made from, when not the clip as it is
            facts.insert(-1, (what, settings[key]))
    for m, why in an.missing.items():
        facts.append((f"{m} missing", why))
    parts = [f"<h1>{escape(clip)}</h1>",
             f"<p>The audio-only, video-only and fused answers of <b>{escape(model)}</b> on this clip, and what "
             "the model attended to. UAVM (Gong et al., IEEE SPL 2022) runs one pass per modality through "
             "shared layers; the fused answer is the mean of the two passes' logits.</p>",
             "<h2>Settings</h2>", _table(facts), "<h2>Answers</h2><div class='answers'>"]
    for m, name in (("audio", "Audio only"), ("video", "Video only"), ("fused", "Fused")):
        top = pred.top(m, top_k) if pred is not None else None
        parts.append(f"<div><h3>{name}</h3>")
        o = pred.ood.get(m) if pred is not None else None
        if o and o["flag"]:
            parts.append(f"<p class='why'>⚠️ unfamiliar input (score {o['score']:.1f} &gt; {o['threshold']:.1f}): "
                         "do not trust this answer</p>")
        if top:
            parts.append(_table([(i + 1, t["label"], f"{t['score']:.1%}") for i, t in enumerate(top)],
                                head=("", "class", "score")))
        else:
            why = an.missing.get(m) or ("no single-modality answer: the cross-modal model answers with both"
                                        if cfg.kind == "cross_modal" else an.error or "no answer")
            parts.append(f"<p class='why'>— {escape(why)}</p>")
        parts.append("</div>")
    parts.append("</div>")
    if note:
        parts.append(f"<p class='note'>{escape(note)}</p>")
    figs = [("Attention each time step receives, layer "
             f"{layer}", figures.temporal(an, layer, pre, cfg)),
            (f"Full T x T attention maps, layer {layer}", figures.full_maps(an, layer, cfg)),
            ("Audio vs video attention difference per layer (the paper's Fig. 5)", figures.av_difference(an, cfg))]
    if explanation is not None:
        figs.append(("Explanation: what mattered, when, in which modality", figures.explanation(explanation)))
    for i, (heading, fig) in enumerate(figs):
        parts.append(f"<h2>{escape(heading)}</h2>")
        if i == len(figs) - 1 and explanation is not None:
            parts += [f"<p>{escape(line)}</p>" for line in explanation.summary()]
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>")

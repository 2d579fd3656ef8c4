"""Explain one decision: which moments of which modality drive a prediction, and what
changes when one goes missing. Measurements faithful by construction, beside what
attention suggests:

* occlusion over time, per modality: slide a window over the analysis window; audio:
  silence that span of the waveform (as the explorer's mute does) and recompute the
  fbank and the audio features, every span in one backbone pass; video: black out the
  frames in the span (the black frame's feature, computed once, spliced in, as the
  explorer's blank does). Per span, the drop of the target's score (softmax or sigmoid,
  as the bundle says) for the fused output and for that modality's own pass.
  ``occlusion_tokens`` is the cheaper variant that zeroes the Transformer's input steps
  in the span (what padding looks like) and runs no backbone;
* modality contribution: for UAVM and the independent model the fused logit is the mean
  of the two passes' logits, so z_fused = z_audio / 2 + z_video / 2 exactly (in the
  model's own float32 arithmetic); the counterfactual scores (fused, audio only, video
  only) and whether the two passes' top-1 agree. The cross-modal model fuses inside its
  joint layers: it has no per-modality logits, and none are invented;
* attention rollout (Abnar & Zuidema 2020) per modality pass: heads averaged, the
  identity added for the residual path, rows renormalised, multiplied through the
  layers; the curve is how much each input step feeds the mean-pooled output that the
  classifier reads. The cross-modal model: one rollout through the specific layers and
  the joint layers, its audio and video halves told apart;
* the last layer's attention received by each step (mean over heads and queries): what
  the explorer's heatmaps show, for comparison.

Times are clip seconds: occluded spans by their centres, Transformer steps by theirs
(``start + (t + 0.5) * seconds / T``, the explorer's time axis).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from . import work
from .errors import InputError, UAVMError, flag, number, shorten
from .features import to_model_input
from .where import check_where, extend
from .where import target_scores as _passes
from .window import Decoded, Prediction, apply_spans, check_window, nothing_left, span_mask

MODALITIES = ("audio", "video")
TARGETS = ("fused", "audio", "video")
MAX_SPANS = 256  # a hostile stride must not queue millions of backbone passes
AUDIO_BATCH = 32  # occluded waveforms per audio-backbone pass (the default 19 spans: one pass)

CROSS_CONTRIBUTION = ("the cross-modal model fuses inside its joint layers: it has no per-modality logits, "
                      "and it cannot run on one modality, so neither share nor counterfactual is defined")
CROSS_OWN = "the cross-modal model has no per-modality pass with logits of its own: only the fused drop is defined"


# -- the parameters ---------------------------------------------------------------------------
def check_occlusion(window, stride, seconds: float):
    """-> (window, stride): 0 < window <= the analysis window, stride > 0, and not so many
    spans that they could not be computed."""
    w = number("the occlusion window", window, lo=0, hi=seconds)
    if w <= 0:
        raise InputError(f"the occlusion window must be longer than 0 s, got {w:g}")
    s = number("the occlusion stride", stride, lo=0)
    if s <= 0:
        raise InputError(f"the occlusion stride must be longer than 0 s, got {s:g}")
    n = math.floor((seconds - w) / s + 1e-9) + 2  # an upper bound: the regular spans and the tail
    if n > MAX_SPANS:
        raise InputError(f"an occlusion window of {w:g} s with a stride of {s:g} s gives about {n} spans; "
                         f"at most {MAX_SPANS} (use a larger stride)")
    return w, s


def spans(seconds: float, window: float, stride: float) -> list:
    """(from, to) window seconds of each occluded span: every ``stride`` from 0, and one more
    flush with the end when the regular ones stop short of it, so the whole window is covered."""
    starts = [k * stride for k in range(math.floor((seconds - window) / stride + 1e-9) + 1)]
    if starts[-1] + window < seconds - 1e-6:
        starts.append(seconds - window)
    return [(a, a + window) for a in starts]


def check_target(target) -> str:
    if not isinstance(target, str) or not target.strip():
        raise InputError(f"the target must be fused, audio, video or a label, got {shorten(repr(target))}")
    return target.strip()


def label_index(target: str, labels: list) -> Optional[int]:
    """A label by display name or mid (exactly, else ignoring case); None for fused/audio/video."""
    if target in TARGETS:
        return None
    for exact in (True, False):
        for lab in labels:
            if any((x == target) if exact else (x.casefold() == target.casefold()) for x in (lab.name, lab.mid)):
                return lab.index
    raise InputError(f"unknown target {shorten(repr(target))}: give fused, audio, video, or one of the bundle's "
                     f"{len(labels)} labels (display name or mid)")


def resolve_target(target: str, pred: Prediction, kind: str) -> tuple:
    """-> (class index, what chose it: "fused", "audio", "video" or "label")."""
    i = label_index(target, pred.labels)
    if i is not None:
        return i, "label"
    z = pred.logits.get(target)
    if z is None:
        if kind == "cross_modal" and target != "fused":
            raise InputError(f"the cross-modal model has no {target} prediction of its own: "
                             f"target fused or a label")
        raise InputError(f"target {target}: that modality is missing ({pred.missing.get(target, 'not present')})")
    return int(np.argmax(z)), target


# -- attention ----------------------------------------------------------------------------------
def rollout(layers, steps: Optional[int] = None) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): each layer's (heads, T, T) or (T, T)
    attention, heads averaged, plus the identity (the residual path), rows renormalised,
    multiplied from the first layer up. -> (T, T): row i = how output step i mixes the
    input steps. No layer at all is the identity (``steps`` says T then)."""
    r = None
    for a in layers:
        a = np.asarray(a, np.float64)
        a = a.mean(axis=0) if a.ndim == 3 else a
        a = a + np.eye(a.shape[-1])
        a = a / a.sum(axis=-1, keepdims=True)
        r = a if r is None else a @ r
    if r is None:
        if steps is None:
            raise ValueError("rollout of no layers needs the number of steps")
        return np.eye(steps)
    return r


def rollout_curve(r: np.ndarray) -> np.ndarray:
    """What each input step feeds the classifier, which reads the mean over the output
    steps: the mean of the rollout's rows (sums to 1)."""
    return r.mean(axis=0)


def attention_received(att: np.ndarray) -> np.ndarray:
    """(heads, T, T) attention of one layer -> (T,): the mean over heads and queries."""
    return np.asarray(att, np.float64).mean(axis=(0, 1))


def _block_diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0]:, a.shape[1]:] = b
    return out


def attention_curves(pred: Prediction, kind: str, steps: int, present) -> tuple:
    """-> (rollout, last-layer attention received): modality -> (T,) array or None."""
    att = pred.attention
    roll = {m: None for m in MODALITIES}
    last = {m: None for m in MODALITIES}
    if kind == "cross_modal":
        # the joint layers see the audio steps then the video steps: roll out through the
        # specific layers of each (block-diagonal) and then through the joint layers
        spec = _block_diag(rollout(att.get("audio", []), steps), rollout(att.get("video", []), steps))
        curve = rollout_curve(rollout(att["joint"], 2 * steps) @ spec)
        got = attention_received(att["joint"][-1])
        for k, m in enumerate(MODALITIES):
            roll[m], last[m] = curve[k * steps:(k + 1) * steps], got[k * steps:(k + 1) * steps]
        return roll, last
    for m in present:
        layers = att.get(m, [])
        roll[m] = rollout_curve(rollout(layers, steps))
        last[m] = attention_received(layers[-1]) if len(layers) else None
    return roll, last


# -- contribution -------------------------------------------------------------------------------
def _label(pred: Prediction, i: int) -> dict:
    return {"label": pred.labels[i].name, "index": int(i)}


def contribution(pred: Prediction, index: int, kind: str) -> dict:
    """How much of the target's fused logit each modality contributed, the counterfactual
    scores, and whether the passes agree; for the cross-modal model, what is undefined."""
    z = pred.logits
    fused = np.float32(z["fused"][index])
    top = int(np.argmax(z["fused"]))
    s_fused = float(pred.scores("fused")[index])
    if kind == "cross_modal":
        return {"audio": None, "video": None, "fused_logit": float(fused), "agree": None, "decided_by": None,
                "score": {"fused": s_fused, "audio_only": None, "video_only": None}, "undefined": CROSS_CONTRIBUTION}
    present = [m for m in MODALITIES if z.get(m) is not None]
    # fused = (z_a + z_v) / 2 in float32; halving is exact, so the halves sum to it exactly
    share = {m: (np.float32(z[m][index]) / np.float32(len(present)) if m in present else None) for m in MODALITIES}
    tops = {m: int(np.argmax(z[m])) for m in present}
    out = {m: (None if share[m] is None else float(share[m])) for m in MODALITIES}
    out["fused_logit"] = float(fused)
    out["agree"] = (tops["audio"] == tops["video"]) if len(present) == 2 else None
    own = [m for m in present if tops[m] == top]
    out["decided_by"] = "both" if len(own) == 2 else (own[0] if own else "neither")
    out["top1"] = {**{m: (_label(pred, tops[m]) if m in tops else None) for m in MODALITIES},
                   "fused": _label(pred, top)}
    out["score"] = {"fused": s_fused, **{f"{m}_only": (float(pred.scores(m)[index]) if m in present else None)
                                        for m in MODALITIES}}
    # the same split of the margin over the runner-up: unlike a logit, it does not move when
    # a pass adds a constant to all of its logits (which a softmax ignores)
    order = np.argsort(-np.asarray(z["fused"], np.float64), kind="stable")
    rival = int(order[1] if order[0] == index else order[0]) if len(order) > 1 else None
    if rival is not None:
        n = len(present)
        out["margin"] = {"versus": _label(pred, rival),
                         "fused": float(np.float64(z["fused"][index]) - np.float64(z["fused"][rival])),
                         **{m: (float((np.float64(z[m][index]) - np.float64(z[m][rival])) / n) if m in present
                                else None) for m in MODALITIES}}
    return out


# -- the explanation ----------------------------------------------------------------------------
@dataclass
class Explanation:
    clip: str
    start: float
    seconds: float
    model: dict  # {"name", "kind"}
    window: float
    stride: float
    target: dict  # {"label", "index", "mid", "from", "score": {"fused", "audio", "video"}}
    occlusion: dict  # modality -> {"times", "drop", "drop_own", "score", "peak"} or None
    occlusion_tokens: dict  # the same, zeroing the Transformer's input steps
    contribution: dict
    rollout: dict  # modality -> [T] or None
    attention_last: dict  # modality -> [T] or None
    step_times: list  # clip seconds of the Transformer steps' centres
    missing: dict
    notes: dict = field(default_factory=dict)  # what is not defined for this model, and why
    ends: dict = field(default_factory=dict)  # modality -> clip second its media ends at, when before the window's end
    where: Optional[dict] = None  # uavm.where: where in the frames, which mel bands (when asked)
    faithfulness: Optional[dict] = None  # uavm.where: deletion / insertion areas, Shapley values (when asked)
    prediction: Optional[Prediction] = None  # the unoccluded prediction (not in to_dict)
    timings_ms: dict = field(default_factory=dict)  # not in to_dict: the answer does not depend on them

    def summary(self) -> list:
        """The explanation in sentences (the page's and the report's summary), the target first."""
        d, c = self.to_dict(), self.contribution
        t = d["target"]
        out = [f"Explaining {t['label']} ({t['from']}; P = {t['score']['fused']:.0%} fused)."]
        if c.get("audio") is not None or c.get("video") is not None:
            parts = [f"{m} {c[m]:.2f}" for m in MODALITIES if c.get(m) is not None]
            sc = c["score"]
            out.append(f"Its fused logit {c['fused_logit']:.2f} = {' + '.join(parts)}; its probability with both "
                       f"{sc['fused']:.0%}" + "".join(f", {m} only {sc[f'{m}_only']:.0%}" for m in MODALITIES
                                                      if sc.get(f"{m}_only") is not None) + ".")
        if c.get("agree") is False:
            top1 = c["top1"]
            out.append(f"⚠️ The modalities disagree: audio says {top1['audio']['label']}, video says "
                       f"{top1['video']['label']}; fused: {top1['fused']['label']} (decided by {c['decided_by']}).")
        peaks = [f"{m} at {o['peak']:g} s" for m, o in d["occlusion"].items() if o]
        if peaks:
            out.append("Occlusion hurts most: " + ", ".join(peaks) + ".")
        out += [f"The {m} ends at {t:g} s: the model saw padding after it." for m, t in d["ends"].items()]
        out += list(d.get("notes", {}).values())
        out += [f"{m}: {why}" for m, why in d.get("missing", {}).items()]
        return out

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("clip", "start", "seconds", "model", "window", "stride", "target",
                                           "occlusion", "occlusion_tokens", "contribution", "rollout",
                                           "attention_last", "step_times", "missing", "notes", "ends")}
        for k in ("where", "faithfulness"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return _plain(d)


def _plain(x):
    """Arrays and numpy scalars -> JSON types; a non-finite number is a bug here, not an answer."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return x


def _curve(times, base: dict, occluded: dict, m: str, cross: bool) -> dict:
    drop = base["fused"] - occluded["fused"]
    own = None if cross else base[m] - occluded[m]
    return {"times": times, "drop": drop, "drop_own": own, "score": occluded["fused"],
            "peak": float(times[int(np.argmax(drop))])}


def explain_window(pipe, decoded: Decoded, start: float = 0.0, target: str = "fused", window: float = 1.0,
                   stride: float = 0.5, audio: bool = True, video: bool = True, mute=None, blank=None,
                   clip: str = "", progress=None, where: bool = False, faithfulness: bool = False,
                   seed: int = 0) -> Explanation:
    """Explain the prediction on one decoded window (``uavm.window.Decoded``); ``pipe``: a
    ``uavm.inference.Pipeline``.

    ``mute`` / ``blank`` (clip seconds) are applied first: the explanation is of the clip as
    the model then sees it. ``progress(fraction, message)`` hears about the stages.
    """
    start, mute, blank = check_window(start, mute, blank)
    audio, video = flag("audio", audio), flag("video", video)
    pre = pipe.pre
    check_occlusion(window, stride, pre.clip_seconds)
    label_index(check_target(target), pipe.bundle.labels)  # an unknown label fails before any work
    decoded = decoded.switched(audio, video)
    wav, frames = decoded.wav, decoded.frames
    (progress or (lambda f, msg: None))(0.05, "features of the window")
    f = pipe.features_many([pipe.prepare(decoded, start, mute, blank)])[0]
    black = pipe.video_features(np.zeros((1, *frames.shape[1:]), np.uint8))[0] if frames is not None else None
    heard = apply_spans(wav, None, pre, start, mute)[0] if wav is not None else None
    e = explain_features(pipe, heard, f, start, target, window, stride, clip=clip, black=black, progress=progress)
    if where or faithfulness:  # where in the frames, which bands, how faithful (uavm.where)
        seen = apply_spans(None, frames, pre, start, None, blank)[1] if frames is not None else None
        extend(pipe, e, heard, seen, f, black, start, where, faithfulness, seed=seed)
    return e


def explain_features(pipe, wav, feats, start: float, target: str = "fused", window: float = 1.0,
                     stride: float = 0.5, clip: str = "", black=None, lock=None, progress=None) -> Explanation:
    """Explain the prediction on a window's raw features (``uavm.window.Features``, spans
    already applied, ``missing`` saying what is absent and why), the one path shared by the
    library and the explorer. ``wav``: the window's waveform with the muted span silenced (the
    audio occlusion recomputes its features); ``black``: the black frame's feature (the video
    occlusion splices it in). ``lock``: held around each network pass, never for longer, so that
    other work runs between them (a server's model lock)."""
    t0 = time.perf_counter()
    say = progress or (lambda f, msg: None)
    lock = lock or contextlib.nullcontext()
    pre, cfg = pipe.pre, pipe.bundle.model.cfg
    secs, steps, kind = pre.clip_seconds, cfg.seq_len, cfg.kind
    window, stride = check_occlusion(window, stride, secs)
    target = check_target(target)
    label_index(target, pipe.bundle.labels)  # an unknown label fails before any work
    cross = kind == "cross_modal"
    missing = dict(feats.missing)
    timings = {}

    def net(fn, *args):
        work.checkpoint()
        with lock:
            return fn(*args)

    t = time.perf_counter()
    present_feats = {m: getattr(feats, m) for m in MODALITIES
                     if getattr(feats, m) is not None and len(getattr(feats, m)) and m not in missing}
    pred = net(pipe.predict_features, present_feats.get("audio"), present_feats.get("video"), missing)
    missing = dict(pred.missing)
    present = [m for m in MODALITIES if m in present_feats and m not in missing]
    index, chosen = resolve_target(target, pred, kind)
    timings["prediction"] = (time.perf_counter() - t) * 1000

    x = {m: to_model_input(present_feats[m], steps) for m in present}
    base_scores = net(_passes, pipe, x.get("audio"), x.get("video"), index)
    sp = spans(secs, window, stride)
    times = np.array([start + (a + b) / 2 for a, b in sp])
    occ = {m: None for m in MODALITIES}
    tok = {m: None for m in MODALITIES}

    def run(m: str, rows: torch.Tensor) -> dict:
        """The occluded rows of modality m, the other modality as it is."""
        n = len(rows)
        other = {o: x[o].expand(n, -1, -1) for o in present if o != m}
        return net(_passes, pipe, rows if m == "audio" else other.get("audio"),
                   rows if m == "video" else other.get("video"), index)

    if "audio" in present:
        t = time.perf_counter()
        say(0.2, f"audio occlusion: {len(sp)} silenced spans through the audio backbone")
        rows = [None] * len(sp)
        todo = []
        for k, (a, b) in enumerate(sp):
            if wav is not None and span_mask(len(wav), pre.audio.sample_rate, (a, b)).any():
                todo.append(k)
            else:  # nothing to silence (past the audio's end): the features are the window's own
                rows[k] = present_feats["audio"]
        for c in range(0, len(todo), AUDIO_BATCH):
            chunk = todo[c:c + AUDIO_BATCH]
            prepared = [pipe.prepare(Decoded(wav, None), start, mute=(start + sp[k][0], start + sp[k][1]))
                        for k in chunk]
            for k, f in zip(chunk, net(pipe.features_many, prepared)):
                rows[k] = f.audio
        occ["audio"] = _curve(times, base_scores, run("audio", torch.cat([to_model_input(r, steps) for r in rows])),
                              "audio", cross)
        timings["audio occlusion"] = (time.perf_counter() - t) * 1000
    if "video" in present:
        t = time.perf_counter()
        say(0.6, f"video occlusion: {len(sp)} blacked-out spans")
        if black is None:
            raise UAVMError("the video occlusion needs the black frame's feature")
        rows = []
        for a, b in sp:
            f = present_feats["video"].copy()
            f[span_mask(len(f), pre.video.fps, (a, b))] = black
            rows.append(to_model_input(f, steps))
        occ["video"] = _curve(times, base_scores, run("video", torch.cat(rows)), "video", cross)
        timings["video occlusion"] = (time.perf_counter() - t) * 1000

    t = time.perf_counter()
    say(0.85, "token occlusion, contribution, rollout")
    for m in present:  # the cheap variant: the Transformer's input steps in the span set to zero
        rows = x[m].repeat(len(sp), 1, 1)
        for k, (a, b) in enumerate(sp):
            rows[k, torch.as_tensor(span_mask(steps, steps / secs, (a, b)))] = 0
        tok[m] = _curve(times, base_scores, run(m, rows), m, cross)
    roll, last = attention_curves(pred, kind, steps, present)
    notes = {}
    if cross:
        notes = {"drop_own": CROSS_OWN, "contribution": CROSS_CONTRIBUTION,
                 "rollout": "one rollout through both modalities' specific layers and the joint layers: "
                            "the audio and video curves together sum to 1"}
    timings["rest"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    lab = pipe.bundle.labels[index]
    ends = {}
    for m, n, rate in (("audio", None if wav is None or "audio" not in present else len(wav), pre.audio.sample_rate),
                       ("video", None if "video" not in present else len(present_feats["video"]), pre.video.fps)):
        if n is not None and n / rate < secs - 1e-3:
            ends[m] = round(start + n / rate, 3)
    return Explanation(
        clip=str(clip), start=float(start), seconds=float(secs), model={"name": pipe.bundle.name, "kind": kind},
        window=window, stride=stride,
        target={"label": lab.name, "index": int(index), "mid": lab.mid, "from": chosen,
                "score": {m: (float(base_scores[m][0]) if m in base_scores else None) for m in ("fused", *MODALITIES)}},
        occlusion=occ, occlusion_tokens=tok, contribution=contribution(pred, index, kind),
        rollout=roll, attention_last=last, step_times=[start + (k + 0.5) * secs / steps for k in range(steps)],
        missing=missing, notes=notes, prediction=pred, timings_ms=timings, ends=ends)


def explain_clip(pipe, path, start: float = 0.0, target: str = "fused", window: float = 1.0,
                 stride: float = 0.5, audio: bool = True, video: bool = True, mute=None, blank=None,
                 progress=None, degrade=None, audio_from=None, video_from=None, where: bool = False,
                 faithfulness: bool = False, seed: int = 0) -> Explanation:
    """``explain_window`` on a file (its audio or video from another clip, degraded: as
    ``Pipeline.predict``): the parameters are checked before it is decoded."""
    start, mute, blank = check_window(start, mute, blank)
    check_occlusion(window, stride, pipe.pre.clip_seconds)
    if where or faithfulness:
        seed = check_where(seed=seed)[-1]
    label_index(check_target(target), pipe.bundle.labels)
    audio, video = flag("audio", audio), flag("video", video)
    t = time.perf_counter()
    decoded = pipe.decode_sources(path, start, audio, video, audio_from, video_from)
    if degrade is not None:  # the explanation is of the window as the model then sees it
        decoded = degrade.apply(decoded, pipe.pre, start)
    if decoded.wav is None and decoded.frames is None:
        raise UAVMError(f"{path}: {nothing_left(decoded.missing)}")
    decode_ms = (time.perf_counter() - t) * 1000
    e = explain_window(pipe, decoded, start, target, window, stride, audio, video, mute, blank, clip=str(path),
                       progress=progress, where=where, faithfulness=faithfulness, seed=seed)
    e.timings_ms = {"decode": decode_ms, **e.timings_ms, "total": e.timings_ms["total"] + decode_ms}
    if audio_from or video_from:
        e.notes["sources"] = f"the audio from {audio_from or path}, the video from {video_from or path}"
    if degrade is not None:
        e.notes["degraded"] = degrade.describe()
    return e

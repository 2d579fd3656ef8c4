"""Where in the picture and at which frequencies a decision came from, and how faithful the
explanations of *when* are (``uavm explain --where --faithfulness``).

* **Where (video).** Occlusion of patches: each model frame's grid cells, one at a time,
  turned black (as a blanked frame is black), each occluded frame through the video backbone
  (all of them batched) and spliced into the window's features; the map is the drop of the
  target's score. Beside it, Grad-CAM (Selvaraju et al., ICCV 2017) on the video ConvNeXt's
  last stage: the target logit's gradient averaged over each channel weighs that channel's
  activation, rectified; a gradient's view, at the stage's own resolution.
* **Which frequencies (audio).** Occlusion of mel bands: the band's fbank bins set to what a
  silent window gives them, over the whole window (``drop`` per band) and over each time
  span x band cell (``grid``); ``bands_hz`` are the bands' edges (the fbank's mel scale).
* **Faithfulness over time** (deletion and insertion, Petsiuk et al., BMVC 2018): the window
  cut into segments; each explanation ranks them (occlusion: its drop; rollout and the last
  layer's attention: their mass; random: seeded orders, averaged); deletion removes a
  modality's segments most important first (audio: their fbank frames set to what silence
  gives; video: the black frame's feature spliced in) and follows the target's fused score, insertion restores them into a window with that modality
  all muted / black. The areas under the two curves (steps normalised to 0..1): a faithful
  ranking deletes to a low area and inserts to a high one.
* **Shapley values.** Over the two modalities, exactly: v(S) is the target's fused score with
  the modalities in S present (absent: missing, as Algorithm 1 answers; none: both inputs
  all padding), phi_audio = (v(a) - v(0) + v(av) - v(v)) / 2, and phi_audio + phi_video =
  v(av) - v(0). Over time segments (each modality's segments are players; an absent segment's
  Transformer input steps are padding), by permutation sampling (Castro et al. 2009): each
  value the mean marginal over the permutations, with its standard error; each
  permutation's values sum to v(all) - v(none) exactly, so a modality share is defined for the
  cross-modal model too.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UAVMError, number
from .features import normalize_frames, to_model_input
from .window import Decoded, Prediction, Prepared, span_mask

MODALITIES = ("audio", "video")
GRID = 5  # cells per side of a model frame
BANDS = 16  # mel bands
GRID_BANDS, GRID_SPANS = 8, 5  # the time x band grid: coarser, each cell one more backbone pass
SEGMENTS = 10  # time segments of the window, for faithfulness
PERMUTATIONS = 32  # of the segment Shapley values
RANDOM_ORDERS = 5
BATCH = 256  # model inputs per pass


def check_where(grid=GRID, bands=BANDS, segments=SEGMENTS, permutations=PERMUTATIONS, seed=0) -> tuple:
    return (number("grid", grid, lo=1, hi=16, integer=True), number("bands", bands, lo=1, hi=64, integer=True),
            number("segments", segments, lo=2, hi=40, integer=True),
            number("permutations", permutations, lo=1, hi=512, integer=True),
            number("seed", seed, lo=0, hi=2**32 - 1, integer=True))


@torch.no_grad()
def target_scores(pipe, audio, video, index: int) -> dict:
    """(S, T, D) model inputs (either None) -> the target's score per row: "fused" and each
    present pass that has logits of its own (``uavm.explain``'s occlusions and these maps)."""
    model = pipe.bundle.model
    out = model(None if audio is None else audio.to(pipe.device), None if video is None else video.to(pipe.device))
    got = {"fused": out.fused}
    for m in MODALITIES:
        p = getattr(out, m)
        if p is not None and p.logits is not None:
            got[m] = p.logits
    res = {}
    for m, z in got.items():
        if not torch.isfinite(z).all():
            raise UAVMError(f"the model gave non-finite {m} scores (NaN or infinity) for an occluded input: "
                            f"its weights may be damaged")
        # the one place that turns logits into scores (softmax or sigmoid, as the bundle says)
        rows = Prediction(pipe.bundle.labels, pipe.bundle.multilabel, {m: z.float().cpu().numpy()}, {})
        res[m] = rows.scores(m)[:, index]
    return res



def scores(pipe, audio: Optional[torch.Tensor], video: Optional[torch.Tensor], index: int, n: int) -> dict:
    """The target's scores ("fused" and each pass with logits) of n rows of model inputs, in
    batches (a (1, T, D) input is shared by every row)."""
    out: dict = {}
    for i in range(0, n, BATCH):
        j = min(i + BATCH, n)
        part = [None if x is None else (x.expand(j - i, -1, -1) if len(x) == 1 else x[i:j]) for x in (audio, video)]
        for k, v in target_scores(pipe, part[0], part[1], index).items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def varying(pipe, m: str, rows: torch.Tensor, x: dict, index: int) -> dict:
    """The target's scores of rows where only modality ``m`` changes (the other as in ``x``):
    for UAVM and the independent model only that pass runs, and the fused logits are its mean
    with the other pass's (Algorithm 1); the cross-modal model runs whole."""
    other = "video" if m == "audio" else "audio"
    model = pipe.bundle.model
    if model.cfg.kind == "cross_modal" or other not in x:
        return scores(pipe, rows if m == "audio" else x.get("audio"), rows if m == "video" else x.get("video"),
                      index, len(rows))
    zo = model(**{other: x[other].to(pipe.device)}).fused.float()
    zs = torch.cat([model(**{m: rows[i:i + BATCH].to(pipe.device)}).fused.float() for i in range(0, len(rows), BATCH)])
    got = {m: zs, "fused": (zs + zo) / 2}
    out = {}
    for k, z in got.items():
        p = Prediction(pipe.bundle.labels, pipe.bundle.multilabel, {k: z.cpu().numpy()}, {})
        out[k] = p.scores(k)[:, index]
    return out


# -- where in the picture ------------------------------------------------------------------------
def cells(h: int, w: int, grid: int) -> list:
    ys, xs = np.linspace(0, h, grid + 1).round().astype(int), np.linspace(0, w, grid + 1).round().astype(int)
    return [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(grid) for c in range(grid)]


def video_occlusion(pipe, frames: np.ndarray, base: np.ndarray, x: dict, index: int, grid: int, steps: int) -> dict:
    """frames: the window's model frames (K, H, W, 3); base: their (K, D) features; x: the
    window's model inputs."""
    k = min(len(frames), steps)
    boxes = cells(*frames.shape[1:3], grid)
    occluded = np.repeat(frames[:k, None], len(boxes), axis=1)  # (k, cells, H, W, 3)
    for c, (y0, y1, x0, x1) in enumerate(boxes):
        occluded[:, c, y0:y1, x0:x1] = 0
    feats = pipe.video_features(occluded.reshape(-1, *frames.shape[1:]))  # one batched backbone pass
    rows = []
    for f in range(k):
        for c in range(len(boxes)):
            v = base.copy()
            v[f] = feats[f * len(boxes) + c]
            rows.append(to_model_input(v, steps))
    s = varying(pipe, "video", torch.cat(rows), x, index)
    ref = varying(pipe, "video", x["video"], x, index)
    drop = (ref["fused"][0] - s["fused"]).reshape(k, grid, grid)
    own = (ref["video"][0] - s["video"]).reshape(k, grid, grid) if "video" in s else None
    return {"maps": drop, "maps_own": own}


def grad_cam(pipe, frames: np.ndarray, x: dict, index: int, steps: int, which: str = "fused") -> np.ndarray:
    """(k, h, w) Grad-CAM maps of the target's ``which`` logit over the video backbone's last stage."""
    ext, model = pipe.extractors["video"], pipe.bundle.model
    k = min(len(frames), steps)
    with torch.enable_grad():
        # the input asks for a gradient, so there is a graph even if the weights are frozen
        inp = normalize_frames(torch.as_tensor(frames[:k]).to(pipe.device), pipe.pre.video).requires_grad_(True)
        act = ext.net.forward_features(inp)  # (k, C, h, w)
        feat = act.mean(dim=(2, 3))
        v = F.normalize(F.pad(feat, (0, 0, 0, steps - k)), dim=-1).unsqueeze(0)
        a = x.get("audio")
        out = model(None if a is None else a.to(pipe.device), v)
        z = out.fused if which == "fused" or out.video is None or out.video.logits is None else out.video.logits
        grad, = torch.autograd.grad(z[0, index], act)  # no parameter keeps a gradient
    w = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((w * act).sum(dim=1)).detach().float().cpu().numpy()


# -- which frequencies ---------------------------------------------------------------------------
def mel_edges(pre, bands: int) -> list:
    """[lo, hi] Hz of each of ``bands`` groups of consecutive mel bins (Kaldi's mel scale,
    20 Hz to Nyquist, each bin spanning its two neighbours' centres)."""
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)
    hz = lambda m: 700.0 * (math.exp(m / 1127.0) - 1)
    n = pre.num_mel_bins
    lo, hi = mel(20.0), mel(pre.sample_rate / 2)
    pts = [lo + (hi - lo) * i / (n + 1) for i in range(n + 2)]
    groups = np.array_split(np.arange(n), bands)
    return [[round(hz(pts[g[0]]), 1), round(hz(pts[g[-1] + 2]), 1)] for g in groups]


def audio_bands(pipe, wav: np.ndarray, x: dict, index: int, start: float, bands: int = BANDS,
                grid_bands: int = GRID_BANDS, grid_spans: int = GRID_SPANS, steps: int = 30) -> dict:
    pre = pipe.pre
    fb = pipe.prepare(Decoded(wav, None), start).fbank
    quiet = pipe.prepare(Decoded(np.zeros_like(wav), None), start).fbank  # what silence gives each bin
    frames_per_s = 1000.0 / pre.audio.frame_shift_ms
    spans = [(i * pre.clip_seconds / grid_spans, (i + 1) * pre.clip_seconds / grid_spans) for i in range(grid_spans)]
    variants = []

    def occluded(g, span):
        f = fb.clone()
        t0, t1 = (0, len(f)) if span is None else (int(span[0] * frames_per_s), int(span[1] * frames_per_s))
        f[t0:t1, g[0]:g[-1] + 1] = quiet[t0:t1, g[0]:g[-1] + 1]
        variants.append(Prepared(f, None, {}))

    for g in np.array_split(np.arange(pre.audio.num_mel_bins), bands):  # each band over the whole window
        occluded(g, None)
    for span in spans:  # then each time x band cell
        for g in np.array_split(np.arange(pre.audio.num_mel_bins), grid_bands):
            occluded(g, span)
    feats = pipe.features_many(variants)
    rows = torch.cat([to_model_input(f.audio, steps) for f in feats])
    drop = varying(pipe, "audio", x["audio"], x, index)["fused"][0] - varying(pipe, "audio", rows, x, index)["fused"]
    return {"bands_hz": mel_edges(pre.audio, bands), "drop": drop[:bands],
            "grid_bands_hz": mel_edges(pre.audio, grid_bands), "grid": drop[bands:].reshape(grid_spans, grid_bands),
            "span_times": [start + (a + b) / 2 for a, b in spans]}


# -- faithfulness over time ----------------------------------------------------------------------
def segment_scores(curve_times, values, spans) -> np.ndarray:
    """A curve over time -> each segment's importance: the mean of its values there."""
    t, v = np.asarray(curve_times), np.asarray(values, np.float64)
    return np.array([v[(t >= a) & (t < b)].mean() if ((t >= a) & (t < b)).any() else
                     v[np.argmin(np.abs(t - (a + b) / 2))] for a, b in spans])


def area(curve) -> float:
    y = np.asarray(curve, np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2) / (len(y) - 1))


class Removal:
    """The window's model inputs with some segments of one modality removed (muted: its
    features recomputed; blanked: the black frame's feature spliced), cached by the set."""

    def __init__(self, pipe, wav, video_raw, black, spans, start: float, steps: int):
        self.pipe, self.wav, self.video, self.black = pipe, wav, video_raw, black
        self.spans, self.start, self.steps = spans, start, steps
        self._cache: dict = {}
        if wav is not None:
            self.fbank = pipe.prepare(Decoded(wav, None), start).fbank
            self.quiet = pipe.prepare(Decoded(np.zeros(len(wav), wav.dtype), None), start).fbank

    def inputs(self, m: str, removed: frozenset):
        key = (m, removed)
        if key not in self._cache:
            pre = self.pipe.pre
            if m == "audio":  # muted in the fbank: the span's frames as silence gives them
                f = self.fbank.clone()
                for s in removed:
                    f[torch.as_tensor(span_mask(len(f), 1000.0 / pre.audio.frame_shift_ms, self.spans[s]))] = \
                        self.quiet[0]
                self._cache[key] = Prepared(f, None, {})
            else:
                v = self.video.copy()
                for s in removed:
                    v[span_mask(len(v), pre.video.fps, self.spans[s])] = self.black
                self._cache[key] = v
        return self._cache[key]

    def model_inputs(self, m: str, sets: list) -> torch.Tensor:
        got = [self.inputs(m, s) for s in sets]
        if m == "audio":
            todo = [i for i, g in enumerate(got) if isinstance(g, Prepared)]
            for i, f in zip(todo, self.pipe.features_many([got[i] for i in todo])):
                self._cache[("audio", sets[i])] = got[i] = f.audio
        return torch.cat([to_model_input(g, self.steps) for g in got])


def deletion_insertion(removal: Removal, x: dict, index: int, order: list, m: str) -> dict:
    n = len(order)
    every = frozenset(range(n))
    deleted = [frozenset(order[:k]) for k in range(n + 1)]
    inserted = [every - frozenset(order[:k]) for k in range(n + 1)]
    s = varying(removal.pipe, m, removal.model_inputs(m, deleted + inserted), x, index)["fused"]
    return {"deletion": s[:n + 1], "insertion": s[n + 1:]}


def faithfulness(pipe, e, x: dict, removal: Removal, index: int, seed: int, spans: list) -> dict:
    """Deletion and insertion areas per explanation and modality (see the module docstring);
    ``spans``: the segments in clip seconds (the explanation's curves' time axis)."""
    rng = np.random.default_rng(seed)
    present = [m for m in MODALITIES if m in x]
    rankings = {}
    for m in present:
        steps_t = e.step_times
        rankings.setdefault("occlusion", {})[m] = segment_scores(e.occlusion[m]["times"], e.occlusion[m]["drop"], spans)
        for name, curves in (("rollout", e.rollout), ("attention", e.attention_last)):
            if curves.get(m) is not None:
                rankings.setdefault(name, {})[m] = segment_scores(steps_t, curves[m], spans)
    out = {}
    for name, per in rankings.items():
        res = {}
        for m, imp in per.items():
            c = deletion_insertion(removal, x, index, list(np.argsort(-imp, kind="stable")), m)
            res[m] = {"deletion": c["deletion"], "insertion": c["insertion"], "deletion_auc": area(c["deletion"]),
                      "insertion_auc": area(c["insertion"])}
        out[name] = res
    res = {}
    for m in present:
        runs = [deletion_insertion(removal, x, index, list(rng.permutation(len(spans))), m) for _ in range(RANDOM_ORDERS)]
        d, i = np.mean([r["deletion"] for r in runs], 0), np.mean([r["insertion"] for r in runs], 0)
        res[m] = {"deletion": d, "insertion": i, "deletion_auc": area(d), "insertion_auc": area(i),
                  "orders": RANDOM_ORDERS}
    out["random"] = res
    for per in out.values():  # the modalities' mean: the issue's one number per explanation
        ms = [v for k, v in per.items() if k in MODALITIES]
        per["deletion_auc"] = float(np.mean([v["deletion_auc"] for v in ms]))
        per["insertion_auc"] = float(np.mean([v["insertion_auc"] for v in ms]))
    return out


def shapley_modalities(pipe, x: dict, index: int) -> dict:
    """The two-player Shapley values of the target's fused score (exact)."""
    if len([m for m in MODALITIES if m in x]) < 2:
        return {"undefined": "one modality is missing: the other has it all"}
    a, v = x["audio"], x["video"]
    cross = pipe.bundle.model.cfg.kind == "cross_modal"
    none = scores(pipe, torch.zeros_like(a), torch.zeros_like(v), index, 1)["fused"][0]
    both = scores(pipe, a, v, index, 1)["fused"][0]
    if cross:  # it cannot run on one modality: the other is padding
        only_a = scores(pipe, a, torch.zeros_like(v), index, 1)["fused"][0]
        only_v = scores(pipe, torch.zeros_like(a), v, index, 1)["fused"][0]
    else:
        only_a = scores(pipe, a, None, index, 1)["fused"][0]
        only_v = scores(pipe, None, v, index, 1)["fused"][0]
    pa = (only_a - none + both - only_v) / 2
    pv = (only_v - none + both - only_a) / 2
    return {"audio": float(pa), "video": float(pv), "v_none": float(none), "v_audio": float(only_a),
            "v_video": float(only_v), "v_both": float(both),
            "absent": "padding in place of the other modality" if cross else "missing (Algorithm 1)"}


def shapley_segments(pipe, x: dict, index: int, steps: int, secs: float, segments: int, permutations: int,
                     seed: int = 0) -> dict:
    """Per-segment Shapley values of both modalities by permutation sampling; absent segments'
    input steps are padding."""
    present = [m for m in MODALITIES if m in x]
    players = [(m, s) for m in present for s in range(segments)]
    masks = {s: torch.as_tensor(span_mask(steps, steps / secs, (s * secs / segments, (s + 1) * secs / segments)))
             for s in range(segments)}
    rng = np.random.default_rng([seed, 11])
    orders = [rng.permutation(len(players)) for _ in range(permutations)]
    rows = {m: [] for m in present}
    for order in orders:
        on = set()
        for k in range(len(players) + 1):  # k players in, in this order
            for m in present:
                keep = torch.zeros(steps, dtype=torch.bool)
                for p in on:
                    if players[p][0] == m:
                        keep |= masks[players[p][1]]
                rows[m].append(x[m][0] * keep[:, None])
            if k < len(players):
                on.add(int(order[k]))
    n = len(rows[present[0]])
    s = scores(pipe, torch.stack(rows["audio"]) if "audio" in rows else None,
               torch.stack(rows["video"]) if "video" in rows else None, index, n)["fused"]
    s = s.reshape(permutations, len(players) + 1)
    marg = np.zeros((permutations, len(players)))
    for r, order in enumerate(orders):
        marg[r, order] = np.diff(s[r])
    phi, se = marg.mean(0), marg.std(0, ddof=1) / math.sqrt(permutations) if permutations > 1 else np.zeros(len(players))
    out = {"permutations": permutations, "v_none": float(s[0, 0]), "v_all": float(s[0, -1]), "values": {},
           "se": {}, "share": {}, "share_se": {}}
    for m in present:
        idx = [i for i, p in enumerate(players) if p[0] == m]
        out["values"][m], out["se"][m] = phi[idx], se[idx]
        tot = marg[:, idx].sum(1)
        out["share"][m] = float(tot.mean())
        out["share_se"][m] = float(tot.std(ddof=1) / math.sqrt(permutations)) if permutations > 1 else 0.0
    return out


def extend(pipe, e, wav, frames, feats, black, start: float, where: bool = True, faithful: bool = True,
           grid: int = GRID, bands: int = BANDS, segments: int = SEGMENTS, permutations: int = PERMUTATIONS,
           seed: int = 0) -> None:
    """Add ``e.where`` and / or ``e.faithfulness`` to an Explanation of one window: ``wav`` and
    ``frames`` as the model heard and saw them, ``feats`` their raw features, ``black`` the black
    frame's feature."""
    import time

    grid, bands, segments, permutations, seed = check_where(grid, bands, segments, permutations, seed)
    pre, cfg = pipe.pre, pipe.bundle.model.cfg
    steps, secs = cfg.seq_len, pre.clip_seconds
    present = [m for m in MODALITIES if e.occlusion[m] is not None]
    x = {m: to_model_input(getattr(feats, m), steps) for m in present}
    index = e.target["index"]
    t0 = time.perf_counter()
    if where:
        w = {}
        if "video" in present:
            occ = video_occlusion(pipe, frames, feats.video, x, index, grid, steps)
            cam = grad_cam(pipe, frames, x, index, steps)
            k = len(occ["maps"])
            w["video"] = {"times": [start + i / pre.video.fps for i in range(k)], "grid": [grid, grid],
                          "method": f"occlusion: each of {grid}x{grid} cells of a model frame black, the drop of the "
                                    "target's fused score", "maps": occ["maps"], "maps_own": occ["maps_own"],
                          "gradcam": {"method": "Grad-CAM of the target's fused logit on the video backbone's last "
                                                f"stage ({cam.shape[1]}x{cam.shape[2]})", "maps": cam}}
        if "audio" in present:
            w["audio"] = {"method": f"occlusion: each of {bands} mel bands set to silence's fbank, the drop of the "
                                    "target's fused score", **audio_bands(pipe, wav, x, index, start, bands,
                                                                          steps=steps)}
        e.where = w
        e.timings_ms["where"] = (time.perf_counter() - t0) * 1000
    if faithful:
        t0 = time.perf_counter()
        spans = [(i * secs / segments, (i + 1) * secs / segments) for i in range(segments)]
        removal = Removal(pipe, wav, feats.video, black, spans, start, steps)
        clip_spans = [(start + a, start + b) for a, b in spans]
        f = faithfulness(pipe, e, x, removal, index, seed, clip_spans)
        f["segments"] = [list(s) for s in clip_spans]
        f["shapley"] = {"modalities": shapley_modalities(pipe, x, index),
                        "segments": shapley_segments(pipe, x, index, steps, secs, segments, permutations, seed)}
        e.faithfulness = f
        e.timings_ms["faithfulness"] = (time.perf_counter() - t0) * 1000

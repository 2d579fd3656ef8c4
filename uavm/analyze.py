"""The paper's analyses (Sec. III-B to E) for any bundle and any labelled set.

* ``probe``      a logistic-regression modality classifier on each layer's mean-pooled
                 representation, half the clips to fit, half to test; the last layer's
                 sorted coefficients; a t-SNE of each layer by modality (Fig. 3).
* ``retrieval``  audio-to-video retrieval recall@k by cosine similarity at every
                 layer and the logits, on a class-balanced subset (Fig. 4).
* ``attention``  per-layer mean absolute difference between the attention maps of
                 paired audio and video inputs; per-head temporal attention of a clip (Fig. 5).
* ``sweep``      train and evaluate over S_dim, Ns (N + Ns fixed) and lambda_MT, one
                 factor at a time from a base model, several seeds (Fig. 2).

Each writes CSV files and an interactive plotly HTML figure. The numbers come from
functions that take arrays, so they can be checked against direct computations.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .data import FeatureSet
from .model import UAVM


# -- representations ----------------------------------------------------------------------
@dataclass
class Representations:
    """Per modality, per layer name ("layer 1" ... "logits"): (clips, dim) mean-pooled
    representations of the modality's own pass. ``parts`` says which part of the
    model each layer belongs to (specific / shared / upper)."""

    audio: dict = field(default_factory=dict)
    video: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)

    @property
    def layers(self) -> list:
        return [k for k in self.audio if k in self.video]


def _part(cfg, i: int) -> str:
    if cfg.n_specific and i < cfg.n_specific:
        return "specific"
    return "shared" if cfg.kind == "unified" else "upper"


@torch.no_grad()
def representations(model: UAVM, data: FeatureSet, device="cpu", batch_size: int = 128) -> Representations:
    """Each layer's output averaged over time, for every clip's audio-only and video-only
    pass (a cross-modal model has modality passes only through its specific layers)."""
    model = model.to(device).eval()
    cfg = model.cfg
    r = Representations()
    acc = {"audio": {}, "video": {}}
    for s in range(0, len(data), batch_size):
        idx = np.arange(s, min(s + batch_size, len(data)))
        for m in ("audio", "video"):
            if cfg.kind == "cross_modal":  # needs both; its modality passes end before the fusion
                p = getattr(model(data.get(idx, "audio").to(device), data.get(idx, "video").to(device)), m)
            else:
                p = getattr(model(**{m: data.get(idx, m).to(device)}), m)
            for i, h in enumerate(p.hidden):
                acc[m].setdefault(f"layer {i + 1}", []).append(h.mean(dim=1).float().cpu())
                r.parts[f"layer {i + 1}"] = _part(cfg, i)
            if p.logits is not None:
                acc[m].setdefault("logits", []).append(p.logits.float().cpu())
                r.parts["logits"] = "classifier"
    for m in acc:
        setattr(r, m, {k: torch.cat(v).numpy() for k, v in acc[m].items()})
    return r


# -- probe (Fig. 3) --------------------------------------------------------------------------
def halves(n: int, seed: int = 0):
    """A clip-level split: a clip's audio and video always fall in the same half."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def probe(audio: np.ndarray, video: np.ndarray, seed: int = 0):
    """Modality classification accuracy on the held-out half and the fitted classifier.
    audio, video: (clips, dim) representations of the same clips."""
    fit, test = halves(len(audio), seed)
    if len(fit) == 0 or len(test) == 0:
        raise ValueError("the probe needs at least 2 clips (half to fit, half to test)")
    xy = lambda idx: (np.concatenate([audio[idx], video[idx]]), np.r_[np.zeros(len(idx)), np.ones(len(idx))])
    clf = _classifier().fit(*xy(fit))
    return float(clf.score(*xy(test))), clf


def probe_rows(reps: Representations, seed: int = 0):
    """-> rows, and the classifier of the last Transformer layer (the representation the
    shared classifier reads: the paper's "penultimate layer")."""
    rows, last = [], None
    for layer in reps.layers:
        acc, clf = probe(reps.audio[layer], reps.video[layer], seed)
        rows.append({"layer": layer, "part": reps.parts[layer], "modality_accuracy": round(acc, 4)})
        if layer != "logits":
            last = clf
    return rows, last


def coefficient_rows(clf) -> list:
    """A probe's coefficients (on standardised inputs), largest first (Fig. 3C)."""
    coef = clf[-1].coef_[0]
    order = np.argsort(-coef, kind="stable")
    return [{"rank": r + 1, "dimension": int(d), "coefficient": round(float(coef[d]), 6)} for r, d in enumerate(order)]


def tsne_rows(reps: Representations, max_clips: int = 300, seed: int = 0) -> list:
    from sklearn.manifold import TSNE

    n = len(next(iter(reps.audio.values())))
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:max_clips])
    rows = []
    for layer in reps.layers:
        x = np.concatenate([reps.audio[layer][idx], reps.video[layer][idx]])
        perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
        y = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        for j, (a, b) in enumerate(y):
            rows.append({"layer": layer, "modality": "audio" if j < len(idx) else "video",
                         "clip": int(idx[j % len(idx)]), "x": round(float(a), 4), "y": round(float(b), 4)})
    return rows


# -- retrieval (Fig. 4) ----------------------------------------------------------------------
def balanced_subset(y: np.ndarray, per_class: int = 5, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` clips of each class (a multi-label clip counts for its lowest-index label)."""
    rng = np.random.default_rng(seed)
    first = y.argmax(1)
    pick = [rng.permutation(np.flatnonzero(first == c))[:per_class] for c in range(y.shape[1])]
    return np.sort(np.concatenate(pick)).astype(int)


def recall_at(queries: np.ndarray, gallery: np.ndarray, ks=(5, 10)) -> dict:
    """Query i's match is gallery i; cosine similarity; ties count against the match."""
    q = F.normalize(torch.as_tensor(queries, dtype=torch.float64), dim=1)
    g = F.normalize(torch.as_tensor(gallery, dtype=torch.float64), dim=1)
    s = q @ g.T
    diag = s.diagonal().unsqueeze(1)
    rank = (s >= diag).sum(1) - 1  # how many other items score at least as high as the match
    return {k: float((rank < k).double().mean()) for k in ks}


def retrieval_rows(reps: Representations, subset: np.ndarray, ks=(5, 10)) -> list:
    rows = []
    for layer in reps.layers:
        a2v = recall_at(reps.audio[layer][subset], reps.video[layer][subset], ks)
        v2a = recall_at(reps.video[layer][subset], reps.audio[layer][subset], ks)
        rows.append({"layer": layer, "part": reps.parts[layer], "clips": len(subset),
                     **{f"a2v_recall@{k}": round(a2v[k], 4) for k in ks},
                     **{f"v2a_recall@{k}": round(v2a[k], 4) for k in ks}})
    return rows


# -- attention (Fig. 5) ----------------------------------------------------------------------
@torch.no_grad()
def attention_maps(model: UAVM, data: FeatureSet, idx, device="cpu") -> dict:
    """modality -> per layer (clips, heads, T, T), from the passes that made the logits."""
    model = model.to(device).eval()
    out = model(data.get(idx, "audio").to(device), data.get(idx, "video").to(device))
    return {m: [a.float().cpu() for a in getattr(out, m).attention] for m in ("audio", "video")}


def attention_difference_rows(model: UAVM, data: FeatureSet, device="cpu", batch_size: int = 128) -> list:
    """Per layer: mean |A_audio - A_video| over clips, heads and the T x T entries."""
    total, n = None, 0
    for s in range(0, len(data), batch_size):
        idx = np.arange(s, min(s + batch_size, len(data)))
        maps = attention_maps(model, data, idx, device)
        d = [(a - v).abs().mean(dim=(1, 2, 3)).sum().item() for a, v in zip(maps["audio"], maps["video"])]
        total = d if total is None else [x + y for x, y in zip(total, d)]
        n += len(idx)
    cfg = model.cfg
    return [{"layer": f"layer {i + 1}", "part": _part(cfg, i), "mean_abs_difference": round(t / n, 6)}
            for i, t in enumerate(total or [])]


def temporal_rows(model: UAVM, data: FeatureSet, clip: int, layer: int, seconds: float, device="cpu") -> list:
    """Attention each time step receives, averaged over the queries, per head (Fig. 5 right)."""
    maps = attention_maps(model, data, [clip], device)
    rows = []
    for m in ("audio", "video"):
        a = maps[m][layer][0].mean(dim=1)  # (heads, T): mean over queries
        T = a.shape[1]
        for h in range(a.shape[0]):
            for t in range(T):
                rows.append({"modality": m, "head": h + 1, "step": t, "seconds": round((t + 0.5) * seconds / T, 3),
                             "attention": round(float(a[h, t]), 6)})
    return rows


# -- sweep (Fig. 2) --------------------------------------------------------------------------
FACTORS = {"shared_dim": "S_dim", "n_shared": "Ns", "audio_weight": "lambda_MT"}


def sweep_points(base: dict, grids: dict, kinds: list, seeds: list) -> list:
    """One factor at a time from ``base`` (N + Ns fixed when Ns varies): a list of
    (factor, value, kind, seed, model kwargs, audio_weight)."""
    total = base["n_specific"] + base["n_shared"]
    points = []
    for factor, values in grids.items():
        for v in values:
            for kind in kinds:
                arch = {k: base[k] for k in ("n_specific", "n_shared", "embed_dim", "shared_dim", "num_heads")}
                weight = base["audio_weight"]
                if factor == "audio_weight":
                    weight = float(v)
                elif factor == "n_shared":
                    if not 0 <= v <= total:
                        raise ValueError(f"Ns={v} is outside 0..{total} (N + Ns is fixed at {total})")
                    arch.update(n_shared=int(v), n_specific=total - int(v))
                else:
                    arch[factor] = int(v)
                if kind == "cross_modal" and (arch["n_shared"] == 0 or factor == "audio_weight"):
                    continue  # no fusion layers / one loss on both modalities: not a point of this curve
                for seed in seeds:
                    points.append((factor, v, kind, seed, arch, weight))
    return points


def run_sweep(train: FeatureSet, val: FeatureSet, num_classes: int, base: dict, grids: dict, kinds: list,
              seeds: list, recipe_kwargs: dict, device="cpu", save=None, log=print) -> list:
    """Train and evaluate every point; identical configurations are trained once."""
    from .train import Recipe, Trainer, evaluate

    done, rows = {}, []
    points = sweep_points(base, grids, kinds, seeds)
    for i, (factor, v, kind, seed, arch, weight) in enumerate(points):
        key = (kind, seed, weight, tuple(sorted(arch.items())))
        if key not in done:
            torch.manual_seed(seed)
            from .model import ModelConfig

            cfg = ModelConfig(kind=kind, num_classes=num_classes, seq_len=train.seq_len,
                              audio_dim=train.dim("audio"), video_dim=train.dim("video"), **arch)
            model = UAVM(cfg)
            Trainer(model, train, Recipe(**recipe_kwargs, audio_weight=weight, seed=seed), log=lambda m: None,
                    device=device).fit()
            res = evaluate(model, val, device)
            done[key] = {m: res.get(m) for m in ("audio", "video", "fused")}
            if save is not None:
                save(model, f"{kind}-N{arch['n_specific']}-Ns{arch['n_shared']}-S{arch['shared_dim']}"
                            f"-l{weight:g}-seed{seed}")
            log(f"[{i + 1}/{len(points)}] {kind} {FACTORS[factor]}={v} seed {seed}: " + ", ".join(
                f"{m} {100 * r['acc']:.1f}%" for m, r in done[key].items() if r))
        res = done[key]
        rows.append({"factor": FACTORS[factor], "value": v, "kind": kind, "seed": seed,
                     "n_specific": arch["n_specific"], "n_shared": arch["n_shared"], "shared_dim": arch["shared_dim"],
                     "audio_weight": weight,
                     **{f"{m}_{s}": (round(res[m][s], 4) if res[m] else "") for m in ("audio", "video", "fused")
                        for s in ("acc", "mAP")}})
    return rows


def summarize(rows: list) -> list:
    """Mean and (sample) standard deviation over seeds of each metric, per point."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["factor"], r["value"], r["kind"]), []).append(r)
    out = []
    for (factor, value, kind), rs in groups.items():
        s = {"factor": factor, "value": value, "kind": kind, "seeds": len(rs)}
        for m in ("audio_acc", "video_acc", "fused_acc", "audio_mAP", "video_mAP", "fused_mAP"):
            xs = [r[m] for r in rs if r[m] != ""]
            s[f"{m}_mean"] = round(statistics.fmean(xs), 4) if xs else ""
            s[f"{m}_std"] = round(statistics.stdev(xs), 4) if len(xs) > 1 else (0.0 if xs else "")
        out.append(s)
    return out


# -- output ---------------------------------------------------------------------------------
def write_csv(path, rows: list) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def write_html(path, *figs) -> Path:
    """One self-contained page (plotly.js inlined once, so it opens offline)."""
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    Path(path).write_text("<!doctype html><html><head><meta charset='utf-8'></head><body>"
                          + "\n".join(parts) + "</body></html>", encoding="utf-8")
    return Path(path)


def probe_figures(rows, coef, tsne, title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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
    import plotly.graph_objects as go

    fig = go.Figure()
    for k in ks:
        fig.add_trace(go.Scatter(x=[r["layer"] for r in rows], y=[r[f"a2v_recall@{k}"] for r in rows],
                                 mode="lines+markers", name=f"A->V recall@{k}"))
    fig.update_layout(title=title, yaxis=dict(title="recall", range=[0, 1.02]), xaxis_title="representation")
    return fig


def attention_figure(diff, temporal, title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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


# -- command line: uavm analyze ... ----------------------------------------------------------
def _nums(kind):
    return lambda s: [kind(x) for x in s.replace(",", " ").split()]


def _load(a):
    """(bundle, FeatureSet) from --bundle and --data (a clip list is extracted into OUT/features)."""
    from .bundle import load_bundle
    from .cli import default_bundle
    from .data import feature_data
    from .inference import FeatureExtractor

    b = load_bundle(a.bundle or default_bundle())
    fx = FeatureExtractor(b.extractors, b.preprocessing, a.device, f"bundle {b.name}")
    return b, FeatureSet(feature_data(fx, a.data, Path(a.out) / "features"), b.labels, b.preprocessing.seq_len)


def cmd_probe(a) -> list:
    b, data = _load(a)
    reps = representations(b.model, data, a.device)
    rows, clf = probe_rows(reps, a.seed)
    if clf is None:
        raise ValueError(f"{b.name} has no Transformer layer to probe")
    coef = coefficient_rows(clf)
    tsne = tsne_rows(reps, a.tsne_clips, a.seed) if a.tsne_clips else []
    out = Path(a.out)
    files = [write_csv(out / "probe.csv", rows), write_csv(out / "probe-coefficients.csv", coef)]
    if tsne:
        files.append(write_csv(out / "probe-tsne.csv", tsne))
    files.append(write_html(out / "probe.html", *probe_figures(
        rows, coef, tsne, f"{b.name}: modality probe on {len(data)} clips (fit on half, test on the other)")))
    for r in rows:
        print(f"{r['layer']:>9s} ({r['part']}): modality accuracy {r['modality_accuracy']:.3f}")
    return files


def cmd_retrieval(a) -> list:
    b, data = _load(a)
    subset = balanced_subset(data.y, a.per_class, a.seed)
    if len(subset) <= max(a.k):
        raise ValueError(f"the class-balanced subset has {len(subset)} clips: too few for recall@{max(a.k)}")
    rows = retrieval_rows(representations(b.model, data, a.device), subset, a.k)
    out = Path(a.out)
    files = [write_csv(out / "retrieval.csv", rows), write_html(out / "retrieval.html", retrieval_figure(
        rows, a.k, f"{b.name}: audio-to-video retrieval on {len(subset)} clips ({a.per_class} per class)"))]
    for r in rows:
        print(f"{r['layer']:>9s} ({r['part']}): " + ", ".join(f"A->V R@{k} {r[f'a2v_recall@{k}']:.3f}" for k in a.k))
    return files


def _clip_index(data: FeatureSet, clip: str) -> int:
    if clip.isdigit():
        i = int(clip)
        if i >= len(data):
            raise ValueError(f"--clip {i}: the set has {len(data)} clips")
        return i
    for i, d in enumerate(data.entries):
        if clip in (Path(str(d.get("clip", ""))).stem, Path(d["afeat"]).stem.split(".")[0], d.get("name")):
            return i
    raise ValueError(f"--clip {clip!r}: no clip of that name in the set")


def cmd_attention(a) -> list:
    b, data = _load(a)
    # a cross-modal model's audio and video passes are its specific layers (the shared ones see both)
    diff = attention_difference_rows(b.model, data, a.device)
    if not diff:
        raise ValueError(f"{b.name} has no Transformer layers to compare")
    layer = (a.layer or len(diff)) - 1
    if not 0 <= layer < len(diff):
        raise ValueError(f"--layer {a.layer}: the model has layers 1..{len(diff)}")
    clip = _clip_index(data, a.clip)
    temporal = temporal_rows(b.model, data, clip, layer, b.preprocessing.clip_seconds, a.device)
    out = Path(a.out)
    name = data.entries[clip].get("name") or data.entries[clip]["afeat"]
    files = [write_csv(out / "attention-difference.csv", diff), write_csv(out / "attention-temporal.csv", temporal),
             write_html(out / "attention.html", attention_figure(
                 diff, temporal, f"{b.name}: A-V attention difference on {len(data)} clips; layer {layer + 1} "
                                 f"temporal attention of clip {clip} ({name})"))]
    for r in diff:
        print(f"{r['layer']:>9s} ({r['part']}): mean |A_audio - A_video| {r['mean_abs_difference']:.5f}")
    return files


def cmd_sweep(a) -> list:
    from .bundle import load_bundle, read_labels, save_bundle
    from .cli import default_bundle
    from .features import Preprocessing

    # the bundle gives the labels, the preprocessing and the extractors of saved models
    b = load_bundle(a.bundle or default_bundle()) if a.bundle or not a.labels else None
    labels = read_labels(a.labels) if a.labels else b.labels
    pre = b.preprocessing if b else Preprocessing()
    grids = {k: v for k, v in (("shared_dim", a.shared_dim), ("n_shared", a.n_shared),
                               ("audio_weight", a.audio_weight)) if v}
    if not grids:
        raise ValueError("nothing to sweep: give --shared-dim, --n-shared and/or --audio-weight values")
    if not 0 <= a.base_n_shared <= a.layers:
        raise ValueError(f"--base-n-shared {a.base_n_shared} is outside 0..--layers {a.layers}")
    base = {"n_specific": a.layers - a.base_n_shared, "n_shared": a.base_n_shared, "embed_dim": a.embed_dim,
            "shared_dim": a.base_shared_dim, "num_heads": a.num_heads, "audio_weight": a.base_audio_weight}
    train, val = FeatureSet(a.train, labels, pre.seq_len), FeatureSet(a.val, labels, pre.seq_len)
    loss = a.loss or ("bce" if len(labels) == 527 else "ce")
    recipe = dict(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay,
                  lr_decay_start=a.lr_decay_start, mixup=a.mixup, label_smoothing=a.label_smoothing,
                  time_shift=a.time_shift, loss=loss)
    out = Path(a.out)
    save = None
    if a.save_models:
        def save(model, name):
            save_bundle(out / "models" / name, model, pre, labels, extractors=b.extractors if b else None,
                        share_extractors=bool(b and b.extractors), name=name,
                        task={"loss": loss, "dataset": "sweep"},
                        provenance={"trained_on": str(a.train), "built_with": "uavm analyze sweep",
                                    "recipe": recipe})
    rows = run_sweep(train, val, len(labels), base, grids, a.kinds, a.seeds, recipe, a.device, save,
                     log=lambda m: print(m, flush=True))
    summary = summarize(rows)
    files = [write_csv(out / "sweep.csv", rows), write_csv(out / "sweep-summary.csv", summary),
             write_html(out / "sweep.html", sweep_figure(
                 summary, f"accuracy on {a.val} ({len(val)} clips), mean ± std over seeds {a.seeds}"))]
    for s in summary:
        print(f"{s['factor']}={s['value']} {s['kind']}: " + ", ".join(
            f"{m} {100 * s[f'{m}_acc_mean']:.1f} ± {100 * s[f'{m}_acc_std']:.1f}"
            for m in ("audio", "video", "fused") if s[f"{m}_acc_mean"] != ""))
    return files


def build_parser():
    import argparse

    from .cli import recipe_arguments

    p = argparse.ArgumentParser(prog="uavm analyze", description="the paper's analyses (Sec. III); each "
                                "writes CSV files and an interactive HTML figure into --out")
    sub = p.add_subparsers(dest="what", required=True)

    def common(s, data=True):
        s.add_argument("--bundle", help="model bundle (default: the embedded demo UAVM)")
        if data:
            s.add_argument("--data", required=True, help="feature data file, a folder with features.json, or a "
                           "labelled clip list (extracted with the bundle's extractors into OUT/features)")
        s.add_argument("--out", required=True)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])

    s = sub.add_parser("probe", help="modality probe per layer, coefficients, t-SNE (Fig. 3)")
    common(s)
    s.add_argument("--tsne-clips", type=int, default=300, help="clips per modality in the t-SNE (0: none)")
    s.set_defaults(fn=cmd_probe)

    s = sub.add_parser("retrieval", help="audio-to-video retrieval recall@k per layer (Fig. 4)")
    common(s)
    s.add_argument("--per-class", type=int, default=5, help="clips per class in the subset (the paper: 5)")
    s.add_argument("--k", type=int, nargs="+", default=[5, 10])
    s.set_defaults(fn=cmd_retrieval)

    s = sub.add_parser("attention", help="A-V attention difference per layer, per-head temporal attention (Fig. 5)")
    common(s)
    s.add_argument("--clip", default="0", help="index or name of the clip for the temporal heatmap")
    s.add_argument("--layer", type=int, default=0, help="layer of the heatmap, from 1 (default: the last)")
    s.set_defaults(fn=cmd_attention)

    s = sub.add_parser("sweep", help="train and evaluate over S_dim, Ns, lambda_MT, several seeds (Fig. 2)")
    common(s, data=False)
    s.add_argument("--train", required=True, help="feature data file to train on")
    s.add_argument("--val", required=True, help="feature data file to evaluate on")
    s.add_argument("--labels", help="label CSV (default: the bundle's labels)")
    s.add_argument("--kinds", nargs="+", default=["unified", "independent"],
                   choices=["unified", "independent", "cross_modal"])
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--shared-dim", type=_nums(int), help="S_dim values, e.g. '16,64,256,1024'")
    s.add_argument("--n-shared", type=_nums(int), help="Ns values; N = --layers - Ns")
    s.add_argument("--audio-weight", type=_nums(float), help="lambda_MT values")
    s.add_argument("--layers", type=int, default=6, help="N + Ns, fixed")
    s.add_argument("--base-n-shared", type=int, default=3, help="Ns of the base model")
    s.add_argument("--base-shared-dim", type=int, default=1024, help="S_dim of the base model")
    s.add_argument("--base-audio-weight", type=float, default=0.5, help="lambda_MT of the base model")
    s.add_argument("--embed-dim", type=int, default=1024)
    s.add_argument("--num-heads", type=int, default=4)
    recipe_arguments(s)
    s.add_argument("--save-models", action="store_true", help="keep every trained model as a bundle in OUT/models")
    s.set_defaults(fn=cmd_sweep)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    import importlib.util

    lacking = [m for m, mod in (("scikit-learn", "sklearn"), ("plotly", "plotly")) if not importlib.util.find_spec(mod)]
    if lacking:
        raise RuntimeError(f"uavm analyze needs {' and '.join(lacking)}: pip install 'uavm[analyze]'")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for f in a.fn(a):
        print(f"wrote {f}")
    return 0

"""The analyses' numbers, as functions of models and arrays (so that tests can check them
against direct computations): per-layer representations, the modality probe, A-V
retrieval, attention differences, and the ablation sweep."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UAVMError
from ..model import UAVM, ModelConfig
from ..train import FeatureSet


class AnalysisError(UAVMError):
    pass


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
        raise AnalysisError("the probe needs at least 2 clips (half to fit, half to test)")
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
                        raise AnalysisError(f"Ns={v} is outside 0..{total} (N + Ns is fixed at {total})")
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
    from ..train import Recipe, Trainer, evaluate

    done, rows = {}, []
    points = sweep_points(base, grids, kinds, seeds)
    for i, (factor, v, kind, seed, arch, weight) in enumerate(points):
        key = (kind, seed, weight, tuple(sorted(arch.items())))
        if key not in done:
            torch.manual_seed(seed)
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

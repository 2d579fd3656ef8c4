"""The analyses end to end, as `uavm analyze` runs them: a bundle and a labelled set in,
CSV files and one self-contained HTML page out (figures from ``uavm.analysis.figures``)."""
from __future__ import annotations

import csv
from pathlib import Path

from .. import figures
from ..bundle import load_bundle, read_labels, save_bundle
from ..features import Preprocessing
from ..files import atomic, write_text
from ..inference import FeatureExtractor
from ..train import FeatureSet, feature_data
from . import figures as paper_figures
from .measures import (
    AnalysisError,
    attention_difference_rows,
    balanced_subset,
    coefficient_rows,
    probe_rows,
    representations,
    retrieval_rows,
    run_sweep,
    summarize,
    temporal_rows,
    tsne_rows,
)


def write_csv(path, rows: list) -> Path:
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return Path(path)


def write_html(path, *figs) -> Path:
    return write_text(path, figures.html(*figs))


def load(bundle, data, out, device="cpu"):
    """(bundle, FeatureSet): a clip list is extracted with the bundle's extractors into OUT/features."""
    b = load_bundle(bundle)
    fx = FeatureExtractor(b.extractors, b.preprocessing, device, f"bundle {b.name}")
    return b, FeatureSet(feature_data(fx, data, Path(out) / "features"), b.labels, b.preprocessing.seq_len)


def probe(bundle, data, out, device="cpu", seed: int = 0, tsne_clips: int = 300, log=print) -> list:
    b, data = load(bundle, data, out, device)
    reps = representations(b.model, data, device)
    rows, clf = probe_rows(reps, seed)
    if clf is None:
        raise AnalysisError(f"{b.name} has no Transformer layer to probe")
    coef = coefficient_rows(clf)
    tsne = tsne_rows(reps, tsne_clips, seed) if tsne_clips else []
    out = Path(out)
    files = [write_csv(out / "probe.csv", rows), write_csv(out / "probe-coefficients.csv", coef)]
    if tsne:
        files.append(write_csv(out / "probe-tsne.csv", tsne))
    files.append(write_html(out / "probe.html", *paper_figures.probe_figures(
        rows, coef, tsne, f"{b.name}: modality probe on {len(data)} clips (fit on half, test on the other)")))
    for r in rows:
        log(f"{r['layer']:>9s} ({r['part']}): modality accuracy {r['modality_accuracy']:.3f}")
    return files


def retrieval(bundle, data, out, device="cpu", seed: int = 0, per_class: int = 5, ks=(5, 10), log=print) -> list:
    b, data = load(bundle, data, out, device)
    subset = balanced_subset(data.y, per_class, seed)
    if len(subset) <= max(ks):
        raise AnalysisError(f"the class-balanced subset has {len(subset)} clips: too few for recall@{max(ks)}")
    rows = retrieval_rows(representations(b.model, data, device), subset, ks)
    out = Path(out)
    files = [write_csv(out / "retrieval.csv", rows), write_html(out / "retrieval.html", paper_figures.retrieval_figure(
        rows, ks, f"{b.name}: audio-to-video retrieval on {len(subset)} clips ({per_class} per class)"))]
    for r in rows:
        log(f"{r['layer']:>9s} ({r['part']}): " + ", ".join(f"A->V R@{k} {r[f'a2v_recall@{k}']:.3f}" for k in ks))
    return files


def clip_index(data: FeatureSet, clip: str) -> int:
    """A clip of the set by index or by name."""
    if clip.isdigit():
        i = int(clip)
        if i >= len(data):
            raise AnalysisError(f"--clip {i}: the set has {len(data)} clips")
        return i
    for i, d in enumerate(data.entries):
        if clip in (Path(str(d.get("clip", ""))).stem, Path(str(d.get("afeat", ""))).stem.split(".")[0], d.get("name")):
            return i
    raise AnalysisError(f"--clip {clip!r}: no clip of that name in the set")


def attention(bundle, data, out, device="cpu", clip: str = "0", layer: int = 0, log=print) -> list:
    b, data = load(bundle, data, out, device)
    # a cross-modal model's audio and video passes are its specific layers (the shared ones see both)
    diff = attention_difference_rows(b.model, data, device)
    if not diff:
        raise AnalysisError(f"{b.name} has no Transformer layers to compare")
    li = (layer or len(diff)) - 1
    if not 0 <= li < len(diff):
        raise AnalysisError(f"--layer {layer}: the model has layers 1..{len(diff)}")
    ci = clip_index(data, clip)
    temporal = temporal_rows(b.model, data, ci, li, b.preprocessing.clip_seconds, device)
    out = Path(out)
    name = data.entries[ci].get("name") or data.entries[ci].get("afeat")
    files = [write_csv(out / "attention-difference.csv", diff), write_csv(out / "attention-temporal.csv", temporal),
             write_html(out / "attention.html", paper_figures.attention_figure(
                 diff, temporal, f"{b.name}: A-V attention difference on {len(data)} clips; layer {li + 1} "
                                 f"temporal attention of clip {ci} ({name})"))]
    for r in diff:
        log(f"{r['layer']:>9s} ({r['part']}): mean |A_audio - A_video| {r['mean_abs_difference']:.5f}")
    return files


def sweep(train, val, out, grids: dict, base: dict, recipe: dict, kinds, seeds, bundle=None, labels=None,
          device="cpu", save_models: bool = False, log=print) -> list:
    """``grids``: factor -> values (shared_dim, n_shared, audio_weight); ``base``: the base
    model (n_specific, n_shared, embed_dim, shared_dim, num_heads, audio_weight); ``recipe``:
    Recipe fields. The bundle (if any) gives the labels, preprocessing and extractors."""
    b = load_bundle(bundle) if bundle else None
    if labels is None and b is None:
        raise AnalysisError("give a bundle or a label list")
    labels = read_labels(labels) if labels else b.labels
    pre = b.preprocessing if b else Preprocessing()
    if not grids:
        raise AnalysisError("nothing to sweep: give --shared-dim, --n-shared and/or --audio-weight values")
    train_set, val_set = FeatureSet(train, labels, pre.seq_len), FeatureSet(val, labels, pre.seq_len)
    recipe = {**recipe, "loss": recipe.get("loss") or ("bce" if len(labels) == 527 else "ce")}
    out = Path(out)
    save = None
    if save_models:
        def save(model, name):
            save_bundle(out / "models" / name, model, pre, labels, extractors=b.extractors if b else None,
                        share_extractors=bool(b and b.extractors), name=name,
                        task={"loss": recipe["loss"], "dataset": "sweep"},
                        provenance={"trained_on": str(train), "built_with": "uavm analyze sweep", "recipe": recipe})
    rows = run_sweep(train_set, val_set, len(labels), base, grids, kinds, seeds, recipe, device, save, log=log)
    summary = summarize(rows)
    files = [write_csv(out / "sweep.csv", rows), write_csv(out / "sweep-summary.csv", summary),
             write_html(out / "sweep.html", paper_figures.sweep_figure(
                 summary, f"accuracy on {val} ({len(val_set)} clips), mean ± std over seeds {list(seeds)}"))]
    for s in summary:
        log(f"{s['factor']}={s['value']} {s['kind']}: " + ", ".join(
            f"{m} {100 * s[f'{m}_acc_mean']:.1f} ± {100 * s[f'{m}_acc_std']:.1f}"
            for m in ("audio", "video", "fused") if s[f"{m}_acc_mean"] != ""))
    return files


def robustness(bundles, data, out, levels: dict, seed: int = 0, device="cpu", baseline=None, log=print,
               show_progress=None) -> list:
    """Every bundle's passes under every condition of ``levels`` (kind -> levels, see
    ``uavm.analysis.conditions.plan``) on one labelled set: robustness.csv (one row per
    model, pass, condition and level), robustness-summary.csv (each curve's relative and
    effective robustness), robustness.json (the run: clips, failures, timings) and
    robustness.html. Features are computed once per extractor set into OUT/features/<key>
    (resumed; sharded under torchrun: rank 0 alone evaluates and writes)."""
    import json
    import time

    from ..train import distributed
    from ..train.data import targets
    from .conditions import Store, extractor_key, plan
    from .robustness import Curves, Loader
    from .robustness import summarize as summarize_curves

    t0 = time.time()
    loaded = [load_bundle(b) for b in bundles]
    names = [b.name for b in loaded]
    if len(set(names)) < len(names):
        raise AnalysisError(f"two models share a name ({', '.join(names)}): rename one bundle's folder")
    if baseline is None:  # late fusion: the modality-independent model, when one is compared
        baseline = next((b.name for b in loaded if b.model.cfg.kind == "independent"), None)
    groups: dict = {}  # extractor key -> (extractor, bundles): one set of features each
    for b in loaded:
        fx = FeatureExtractor(b.extractors, b.preprocessing, device, f"bundle {b.name}")
        key = extractor_key(fx)
        groups.setdefault(key, (fx, []))[1].append(b)
    out = Path(out)
    timings, failed, stores = {}, {}, {}
    for key, (fx, members) in groups.items():
        t = time.time()
        conds = [c for cs in plan(levels, fx.pre.clip_seconds).values() for c in cs]
        stores[key] = store = Store(out / "features" / key, data, seed)
        failed.update(store.compute(fx, list(dict.fromkeys(conds)), show_progress, log))
        timings[f"features {key} ({', '.join(b.name for b in members)})"] = round(time.time() - t, 2)
    distributed.barrier()
    if not distributed.is_main():
        return []
    rows, keep = [], [i for i in range(len(next(iter(stores.values())).entries)) if i not in failed]
    if not keep:
        raise AnalysisError(f"every clip of {data} failed: {next(iter(failed.values()))}")
    for key, (fx, members) in groups.items():
        t = time.time()
        conds = list(dict.fromkeys(c for cs in plan(levels, fx.pre.clip_seconds).values() for c in cs))
        order = [("plain", "audio"), ("plain", "video")] + [(c.key(seed), c.modality) for c in conds
                                                              if c.stored and c.kind != "plain"]
        loader = Loader(stores[key], keep, order)  # each condition's inputs read once for all the models
        curves = [Curves(b, loader, targets([loader.store.entries[i] for i in keep], b.labels), device)
                  for b in members]
        got = {b.name: [] for b in members}
        for c in conds:
            for b, cv in zip(members, curves):
                got[b.name] += cv.rows_of([c])
        rows += [r for b in members for r in got[b.name]]
        timings[f"evaluate {', '.join(b.name for b in members)}"] = round(time.time() - t, 2)
    summary = summarize_curves(rows, baseline)
    timings["total"] = round(time.time() - t0, 2)
    run = {"data": str(data), "clips": len(keep), "failed": [failed[i] for i in sorted(failed)], "seed": seed,
           "levels": {k: v for k, v in levels.items() if v}, "models": names, "baseline": baseline,
           "features": {k: [b.name for b in m] for k, (_, m) in groups.items()}, "seconds": timings}
    for i in sorted(failed):
        log(f"failed: {failed[i]}")
    files = [write_csv(out / "robustness.csv", rows), write_csv(out / "robustness-summary.csv", summary),
             write_text(out / "robustness.json", json.dumps(run, indent=1)),
             write_html(out / "robustness.html", *paper_figures.robustness_figures(
                 rows, summary, f"missing-modality robustness on {data} ({len(keep)} clips)"))]
    for s in summary:
        if s["metric"] == "accuracy":
            log(f"{s['model']} {s['pass']:5s} {s['condition']:13s} accuracy {100 * s['plain']:.1f}% -> worst "
                f"{100 * s['worst']:.1f}%, relative robustness {s['relative_robustness']:.3f}"
                + (f", effective {s['effective_robustness']:+.3f} vs {baseline}"
                   if s["effective_robustness"] != "" and s["model"] != baseline else ""))
    return files

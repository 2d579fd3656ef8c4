"""VGGSounder's modality-aware evaluation (Zverev et al., ICCV 2025) of any bundle.

VGGSounder re-annotates the VGGSound test set: every label of every clip is tagged
audible "A", visible "V" or both "AV", and every clip carries three meta flags
(background_music, static_image, voice_over). Its benchmark (the ``vggsounder`` 1.0
package, ``benchmark.py``) scores a model's audio predictions on the audible labels, its
video predictions on the visible ones, its audio-visual predictions on the "AV" ones, and
the modality confusion mu: how often one modality alone is right where both together
are wrong.

This module re-implements those definitions in numpy (each in its docstring; checked
against the package in tests/test_vggsounder.py), adds what a model with three passes
allows (every pass on every subset, per meta flag, the fusion's gain and harm), and
writes a model's predictions as the pickle the package's ``compute_all_results`` reads,
so any figure can be recomputed by the package itself. ``evaluate`` runs it all for a
model and a FeatureSet; ``benchmark`` is the same on arrays of logits.
"""
from __future__ import annotations

import csv
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UAVMError, one_line, shorten
from ..files import atomic
from ..train.metrics import average_precision

# VGGSounder's label subsets: the tags each keeps (labels.py set_modality; benchmark.py MODALITIES);
# "all" is the one mu is measured on
SUBSETS = {"all": ("A", "V", "AV"), "a": ("A", "AV"), "v": ("V", "AV"), "av": ("AV",),
           "a only": ("A",), "v only": ("V",)}
PASSES = ("audio", "video", "fused")
# VGGSounder's own cells: which of a model's predictions ("a", "v", "av") it scores on which subset
CELLS = {"a": "audio", "a only": "audio", "v": "video", "v only": "video", "av": "fused"}
PICKLE_KEYS = {"audio": "a", "video": "v", "fused": "av"}
KS = (1, 3, 5, 10)
META = ("background_music", "static_image", "voice_over")
COLUMNS = ("video_id", "label", "modality") + META
TAGS = ("A", "V", "AV")
MAX_CSV_BYTES = 64 << 20  # the package's own CSV is 2.2 MB
MAX_LABELS = 2000  # distinct labels (VGGSounder has 309): each is a column of every clip's scores
CSV_NAME = "vggsounder+background-music.csv"  # the package's full annotation (data/)
CROSS_MODAL_NOTE = ("cross-modal model: it has no audio or video pass of its own; its audio answer is its joint "
                    "pass with the video input all padding (zeros, the input of a clip without video), its video "
                    "answer the same with the audio padded")


class VGGSounderError(UAVMError):
    pass


@dataclass
class Annotation:
    labels: dict  # label (VGGSound display name) -> its tag "A", "V" or "AV", in the file's order
    meta: dict  # META flag -> bool

    def subset(self, name: str) -> list:
        return [l for l, t in self.labels.items() if t in SUBSETS[name]]


def _package_data(name: str) -> Path:
    """A file of the installed vggsounder package's data/, found without importing it (heavy)."""
    spec = importlib.util.find_spec("vggsounder")
    if spec is None or not spec.submodule_search_locations:
        raise VGGSounderError("the VGGSounder annotations come with the vggsounder package: pip install vggsounder "
                              "(or give the CSV: --vggsounder FILE.csv)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise VGGSounderError(f"the installed vggsounder package has no {path}: pip install 'vggsounder>=1.0'")
    return path


def default_csv() -> Path:
    """The installed package's full annotation, ``data/vggsounder+background-music.csv``."""
    return _package_data(CSV_NAME)


def package_classes(csv_path=None) -> list:
    """VGGSounder's class order (display names): classes.csv (index,mid,display_name) beside
    the annotation CSV, else the installed package's ``data/classes.csv``."""
    from ..bundle import read_labels

    beside = Path(csv_path).parent / "classes.csv" if csv_path else None
    return [l.name for l in read_labels(beside if beside and beside.is_file() else _package_data("classes.csv"))]


def _flag(value, name: str, where: str) -> bool:
    v = str(value or "").strip().lower()
    if v not in ("true", "false"):
        raise VGGSounderError(f"{where}: {name} must be True or False, got {shorten(value)}")
    return v == "true"


def _add_row(out: dict, row: dict, where: str) -> None:
    vid, label, tag = (str(row.get(c) or "").strip() for c in COLUMNS[:3])
    if not vid or not label:
        raise VGGSounderError(f"{where}: empty {'video_id' if not vid else 'label'}")
    if tag.upper() not in TAGS:
        raise VGGSounderError(f"{where}: modality must be A, V or AV, got {shorten(tag)}")
    meta = {m: _flag(row.get(m), m, where) for m in META}
    a = out.setdefault(vid, Annotation({}, meta))
    if a.meta != meta:
        raise VGGSounderError(f"{where}: clip {shorten(vid)}'s meta flags differ from its first row's")
    if label in a.labels:
        raise VGGSounderError(f"{where}: clip {shorten(vid)} has label {shorten(label)} twice")
    a.labels[label] = tag.upper()


def read_annotations(path) -> dict:
    """A VGGSounder annotation CSV (columns video_id,label,modality,background_music,
    static_image,voice_over; one row per label of a clip) -> {video_id: Annotation}.

    It is user input: a missing file or column, an unknown tag, a flag other than
    True/False, a clip whose rows disagree on its flags, a label twice, more than
    MAX_CSV_BYTES or MAX_LABELS distinct labels, or no rows are one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise VGGSounderError(f"{path}: no such file")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise VGGSounderError(f"{path}: more than an annotation CSV's {MAX_CSV_BYTES >> 20} MiB at most")
    out, labels = {}, set()
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            rows = csv.DictReader(f)
            if rows.fieldnames is None:
                raise VGGSounderError(f"{path}: empty")
            missing = [c for c in COLUMNS if c not in rows.fieldnames]
            if missing:
                raise VGGSounderError(f"{path}: not a VGGSounder annotation CSV: no column {', '.join(missing)} "
                                      f"(it needs {','.join(COLUMNS)})")
            for row in rows:
                _add_row(out, row, f"{path}, line {rows.line_num}")
                labels.add(row["label"].strip())
                if len(labels) > MAX_LABELS:
                    raise VGGSounderError(f"{path}: more than {MAX_LABELS} distinct labels (VGGSounder has 309)")
    except UnicodeDecodeError:
        raise VGGSounderError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise VGGSounderError(f"{path}: not a CSV file ({one_line(e)})") from None
    if not out:
        raise VGGSounderError(f"{path}: no annotation rows")
    return out


def clip_id(entry: dict) -> str:
    """The VGGSound video id of a feature data file entry: the file stem of its clip ("clip",
    which uavm writes when it extracts a clip list; else "video" or "wav"), else of its audio
    features ("afeat", less the ".audio" of uavm's feature names)."""
    for k in ("clip", "video", "wav"):
        if entry.get(k):
            return Path(str(entry[k])).stem
    return Path(str(entry.get("afeat", ""))).name.removesuffix(".npy").removesuffix(".audio")


def clip_ids(entries: list) -> list:
    ids, first = [clip_id(d) for d in entries], {}
    for i, v in enumerate(ids):
        if first.setdefault(v, i) != i:
            raise VGGSounderError(f"entry {i}: video id {shorten(v)} is entry {first[v]}'s too; ids are file stems")
    return ids


def predict_passes(model, data, device="cpu", batch_size: int = 256) -> dict:
    """{"audio", "video", "fused"}: (N, classes) logits of every entry of a FeatureSet.
    Unified and modality-independent models: their own audio-only and video-only passes,
    fused = the mean of the two logit vectors (``uavm.train.predict_set``). A cross-modal
    model has no pass of its own per modality: its audio answer is its joint pass with the
    video input all padding (zeros: what ``uavm.features.to_model_input`` makes of a clip
    without video), its video answer the same with the audio padded (CROSS_MODAL_NOTE)."""
    import torch

    from ..train.trainer import predict_set

    if model.cfg.kind != "cross_modal":
        return predict_set(model, data, device, batch_size)
    model.eval()
    outs = {m: [] for m in PASSES}
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            idx = np.arange(i, min(i + batch_size, len(data)))
            a, v = data.get(idx, "audio").to(device), data.get(idx, "video").to(device)
            for m, (x, y) in (("audio", (a, torch.zeros_like(v))), ("video", (torch.zeros_like(a), v)),
                              ("fused", (a, v))):
                outs[m].append(model(x, y).fused.float().cpu())
    return {m: torch.cat(z).numpy() for m, z in outs.items()}


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative, ties counting one half (Mann-Whitney U / (n_pos n_neg); sklearn's roc_auc_score)."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    first = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(first)
    mean_rank = starts + (np.diff(np.r_[starts, len(s)]) + 1) / 2  # 1-based, the mean over each tie
    ranks = np.empty(len(s))
    ranks[order] = mean_rank[np.cumsum(first) - 1]
    pos = int(truth.sum())
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * (len(truth) - pos)))


def _ratio(a, b) -> float:
    return float(a / b) if b else 0.0


def subset_metrics(truth: np.ndarray, scores: np.ndarray, ks=KS) -> dict:
    """VGGSounder's metrics of one subset (benchmark.py ``compare_labels_logits``).

    truth (N, C) bool: each clip's labels of the subset; scores (N, C): its logits.
    P_k, a clip's top k: its k highest logits (numpy's argsort order among ties).

    * hit_rate@k: the share of clips with a label in P_k.
    * precision@k, recall@k, f1@k, jaccard@k: micro averages over all (clip, class) cells:
      TP/(TP+FP), TP/(TP+FN), 2TP/(2TP+FP+FN), TP/(TP+FP+FN) (0 where a denominator is 0).
    * f1_macro@k: the mean over the C columns of each class's 2TP/(2TP+FP+FN), 0 for a class
      neither true nor predicted. The package's mean runs over its 309 classes, this one over
      the columns here (the bundle's classes and any annotated label it lacks).
    * accuracy@k: exact match, the share of clips whose P_k is exactly their labels.
    * auc_roc, auc_pr: for each class with at least one positive and one negative clip, the
      ROC AUC and the average precision (sklearn's step-wise AP) of its logits; the mean over
      those classes, 0.0 when there is none (as the package).

    An empty subset is {"clips": 0} with every metric None."""
    n = len(truth)
    names = [f"{m}@{k}" for k in ks for m in ("hit_rate", "f1", "f1_macro", "accuracy", "jaccard", "precision",
                                              "recall")] + ["auc_roc", "auc_pr"]
    if n == 0:
        return {"clips": 0, **dict.fromkeys(names)}
    res = {"clips": n}
    order = np.argsort(scores, axis=1)
    for k in ks:
        pred = np.zeros(truth.shape, bool)
        np.put_along_axis(pred, order[:, -k:], True, axis=1)
        tp_c, fp_c, fn_c = (truth & pred).sum(0), (~truth & pred).sum(0), (truth & ~pred).sum(0)
        tp, fp, fn = tp_c.sum(), fp_c.sum(), fn_c.sum()
        f1_c = np.divide(2 * tp_c, 2 * tp_c + fp_c + fn_c, out=np.zeros(len(tp_c)), where=tp_c + fp_c + fn_c > 0)
        res.update({f"hit_rate@{k}": float((truth & pred).any(1).mean()), f"f1@{k}": _ratio(2 * tp, 2 * tp + fp + fn),
                    f"f1_macro@{k}": float(f1_c.mean()), f"accuracy@{k}": float((truth == pred).all(1).mean()),
                    f"jaccard@{k}": _ratio(tp, tp + fp + fn), f"precision@{k}": _ratio(tp, tp + fp),
                    f"recall@{k}": _ratio(tp, tp + fn)})
    pos = truth.sum(0)
    cols = np.flatnonzero((pos > 0) & (pos < n))
    res["auc_roc"] = float(np.mean([roc_auc(scores[:, c], truth[:, c]) for c in cols])) if len(cols) else 0.0
    res["auc_pr"] = float(np.mean([average_precision(scores[:, c], truth[:, c]) for c in cols])) if len(cols) else 0.0
    return res


def _hits1(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per clip: whether its top-1 class (the last of numpy's argsort, as the package) is a label."""
    return truth[np.arange(len(truth)), np.argsort(scores, axis=1)[:, -1]]


def modality_confusion(truth: np.ndarray, audio, video, fused) -> dict:
    """VGGSounder's modality confusion mu (benchmark.py ``compute_modality_confusion_logits``),
    on all labels of each clip, top-1: with hit_x whether pass x's top class is a label,
    mu_a = mean(hit_a & ~hit_av), mu_v = mean(hit_v & ~hit_av), mu_av = mean(hit_a & hit_v & ~hit_av)."""
    if not len(truth):
        return dict.fromkeys(("a", "v", "av"))
    a, v, av = (_hits1(truth, s) for s in (audio, video, fused))
    return {"a": float((a & ~av).mean()), "v": float((v & ~av).mean()), "av": float((a & v & ~av).mean())}


def fusion_effect(truth: np.ndarray, audio, video, fused) -> dict:
    """On all labels, top-1: gain = hit_rate@1(fused) - the better of hit_rate@1(audio) and
    hit_rate@1(video); harm = the share of clips a single pass gets right and the fused answer
    wrong, mean((hit_a | hit_v) & ~hit_fused) (= mu_a + mu_v - mu_av)."""
    if not len(truth):
        return {"gain": None, "harm": None, "best_single": None}
    a, v, f = (_hits1(truth, s) for s in (audio, video, fused))
    return {"gain": float(f.mean() - max(a.mean(), v.mean())), "harm": float(((a | v) & ~f).mean()),
            "best_single": "audio" if a.mean() >= v.mean() else "video"}


def _block(truth: dict, scores: dict, ks, keep: np.ndarray) -> dict:
    """Every pass on every subset, VGGSounder's cells, mu and the fusion's effect, on the clips ``keep``."""
    rows = {s: keep & t.any(1) for s, t in truth.items()}  # a subset holds the clips with a label in it
    passes = {p: {s: subset_metrics(truth[s][rows[s]], scores[p][rows[s]], ks) for s in SUBSETS} for p in PASSES}
    on_all = [scores[p][rows["all"]] for p in PASSES]
    return {"clips": int(keep.sum()), "passes": passes,
            "vggsounders_cells": {s: {"pass": p, **passes[p][s]} for s, p in CELLS.items()},
            "mu": modality_confusion(truth["all"][rows["all"]], *on_all),
            "fusion": fusion_effect(truth["all"][rows["all"]], *on_all)}


def benchmark(ids: list, logits: dict, classes: list, annotations: dict, ks=KS) -> dict:
    """The whole evaluation of predictions ``logits`` ({"audio", "video", "fused"}: (N, C),
    the columns ``classes``, display names) of the clips ``ids`` (VGGSound video ids).

    Clips are matched to annotations by id (clips without one, and annotated clips without
    predictions, are counted and left out, as the package drops them); labels to classes by
    display name. An annotated label the bundle lacks stays in the ground truth, as in the
    package: a column whose logit is below every real one, so it is never in a top k and no
    pass gets it right. k runs over ``ks`` up to the number of classes. The figures equal the
    package's (f1_macro aside, see ``subset_metrics``) when every class and label is one of
    its 309 classes."""
    for p in PASSES:
        if not np.isfinite(logits[p]).all():
            raise VGGSounderError(f"the {p} logits are not all finite: the model is broken")
    rows = np.array([i for i, v in enumerate(ids) if v in annotations], int)
    if not len(rows):
        raise VGGSounderError(f"none of the {len(ids)} clips is annotated (ids are file stems: {shorten(ids[:1])}; "
                              f"the annotation's: {shorten(list(annotations)[:1])})")
    matched = [ids[i] for i in rows]
    known = set(classes)
    lacking = list(dict.fromkeys(l for v in matched for l in annotations[v].labels if l not in known))
    col = {c: j for j, c in reversed(list(enumerate(list(classes) + lacking)))}
    floor = min(float(logits[p].min()) for p in PASSES) - 1.0
    scores = {p: np.hstack([logits[p][rows].astype(np.float64), np.full((len(rows), len(lacking)), floor)])
              for p in PASSES}
    truth = {}
    for s in SUBSETS:
        t = truth[s] = np.zeros((len(rows), len(classes) + len(lacking)), bool)
        for i, v in enumerate(matched):
            t[i, [col[l] for l in annotations[v].subset(s)]] = True
    ks, meta = [k for k in ks if k <= len(classes)], {}
    for m in META:
        flags = np.array([annotations[v].meta[m] for v in matched], bool)
        meta.update({f"{m}={value}": _block(truth, scores, ks, flags == value) for value in (True, False)})
    instances = sum(l not in known for v in matched for l in annotations[v].labels)
    return {"unannotated": len(ids) - len(rows), "annotated_without_predictions": len(annotations) - len(rows),
            "classes": len(classes), "ks": ks,
            "labels_not_in_bundle": {"count": len(lacking), "instances": instances, "examples": lacking[:5]},
            **_block(truth, scores, ks, np.ones(len(rows), bool)), "meta": meta}


def evaluate(model, data, labels: list, annotations: dict, device="cpu", out=None, csv_path=None) -> dict:
    """``benchmark`` of a model (a UAVM) on a FeatureSet, its entries matched to the
    annotations by ``clip_id``, with a "note" for a cross-modal model; and, given ``out``,
    the predictions written there by ``write_benchmark_pickle`` (its counts as "pickle")."""
    ids, logits = clip_ids(data.entries), predict_passes(model, data, device)
    names = [l.name for l in labels]
    res = {"kind": model.cfg.kind, "note": CROSS_MODAL_NOTE if model.cfg.kind == "cross_modal" else None,
           **benchmark(ids, logits, names, annotations)}
    if out:
        res["pickle"] = write_benchmark_pickle(out, ids, logits, names, csv_path)
    return res


def write_benchmark_pickle(path, ids: list, logits: dict, classes: list, csv_path=None) -> dict:
    """The predictions as the package's ``compute_all_results`` reads them from a folder of
    ``*.pkl``: {video_id: {"logits": {"a": [...], "v": [...], "av": [...]}}}, each list in
    the order of VGGSounder's classes (``package_classes(csv_path)``), the bundle's classes
    mapped by display name. A VGGSounder class the bundle lacks gets one finite logit below
    every real one, the same for every clip: never in a top k, and an AUC of its own that
    no logit of another class changes. -> counts of what was written and mapped."""
    order = package_classes(csv_path)
    mine = {c: j for j, c in reversed(list(enumerate(classes)))}
    take = np.array([mine.get(c, -1) for c in order])
    floor = min(float(logits[p].min()) for p in PASSES) - 1.0 if len(ids) else 0.0
    out = {}
    for i, v in enumerate(ids):
        out[v] = {"logits": {PICKLE_KEYS[p]: np.where(take >= 0, logits[p][i][np.maximum(take, 0)], floor)
                             .astype(np.float64).tolist() for p in PASSES}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(out, f, protocol=4)
    return {"path": str(path), "clips": len(ids), "classes": len(order), "bundle_classes_mapped": int((take >= 0).sum()),
            "bundle_classes_not_in_vggsounder": sorted(set(classes) - set(order))[:5] or None,
            "vggsounder_classes_not_in_bundle": int((take < 0).sum())}


def report_lines(res: dict) -> list:
    """The text form: pass x subset (clips, hit_rate@1, f1@1, auc_pr), mu, the fusion's effect."""
    pct = lambda x: "-" if x is None else f"{100 * x:5.1f}%"
    left = [f"{n} {what}" for n, what in ((res["unannotated"], "clips without an annotation"),
                                          (res["annotated_without_predictions"], "annotated clips not in the set")) if n]
    lines = [f"{res.get('bundle', 'model')}: VGGSounder's modality-aware evaluation on {res['clips']} annotated clips"
             + (f" (left out, as VGGSounder does: {' and '.join(left)})" if left else "")]
    if res.get("note"):
        lines.append(res["note"])
    lack = res["labels_not_in_bundle"]
    if lack["count"]:
        lines.append(f"{lack['count']} annotated labels ({lack['instances']} in all) are not among the bundle's "
                     f"{res['classes']} classes (e.g. {shorten(lack['examples'][0])}): they stay in the ground "
                     "truth, as VGGSounder's, and no pass can get them right")
    lines.append(f"{'pass':6s} {'subset':7s} {'clips':>6s} {'hit_rate@1':>10s} {'f1@1':>6s} {'auc_pr':>6s}")
    for p in PASSES:
        for s in SUBSETS:
            r = res["passes"][p][s]
            star = "*" if CELLS.get(s) == p else " "
            lines.append(f"{p:6s} {s + star:7s} {r['clips']:6d} {pct(r.get('hit_rate@1')):>10s} "
                         f"{pct(r.get('f1@1')):>6s} {pct(r['auc_pr']):>6s}")
    lines.append("* VGGSounder's cells: audio on a and a only, video on v and v only, fused on av")
    mu, fu = res["mu"], res["fusion"]
    if mu["a"] is not None:
        lines.append(f"mu (modality confusion, top-1, all labels): a {pct(mu['a'])}  v {pct(mu['v'])}  av {pct(mu['av'])}")
        lines.append(f"fusion: gain {100 * fu['gain']:+.1f} points of hit_rate@1 over the {fu['best_single']} pass; "
                     f"harm {pct(fu['harm'])} of clips (a single pass right, the fused answer wrong)")
    lines.append("meta flags (clips): " + ", ".join(f"{k} {v['clips']}" for k, v in res["meta"].items())
                 + "; every figure of each in --json")
    if res.get("pickle"):
        lines.append(f"wrote {res['pickle']['path']} (vggsounder.benchmark.compute_all_results reads its folder)")
    return lines

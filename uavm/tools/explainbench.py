"""`uavm bench --explain`: what explaining a clip costs, and whether the explanations point
at the events (figures, not tests).

* ``timing``: one 10 s clip explained end to end (decode, occlusion of both modalities,
  token occlusion, contribution, rollout): the first call and the warm ones;
* ``finding``: on generated clips whose event times are known (``uavm.demo.corpus``), how
  often the occlusion peak, the rollout peak and the last layer's attention peak fall
  inside an event, per modality and model, beside the rate a random time would get.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timing(bundle_dir=None, size: str = "", device: str = "auto", repeat: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="uavm-explainbench-") as tmp:
        return _timing(Path(tmp), bundle_dir, size, device, repeat)


def _timing(tmp: Path, bundle_dir, size: str, device: str, repeat: int) -> dict:
    from ..bundle import load_bundle, random_bundle
    from ..demo.synth import demo_clip
    from ..inference import Pipeline

    if size:
        bundle_dir = random_bundle(tmp / "bundle", size=size)
    pipe = Pipeline(load_bundle(bundle_dir), device)
    clip = demo_clip(tmp / "clip.mp4", seconds=10, size=(360, 640))  # as `uavm bench`: 10 s, 360p, H.264 + AAC
    t = time.perf_counter()
    first = pipe.explain(clip)
    r = {"bundle": pipe.bundle.name, "device": str(pipe.device), "clip": "10 s 640x360 H.264/AAC",
         "spans": len(first.occlusion["audio"]["times"]), "first_ms": round((time.perf_counter() - t) * 1000, 1)}
    ts, last = [], first
    for _ in range(max(repeat, 1)):
        t = time.perf_counter()
        last = pipe.explain(clip)
        ts.append((time.perf_counter() - t) * 1000)
    r["warm_ms"] = round(statistics.median(ts), 1)
    r["stages_ms"] = {k: round(v, 1) for k, v in last.timings_ms.items()}
    t = time.perf_counter()
    pipe.predict(clip)
    r["predict_ms_for_comparison"] = round((time.perf_counter() - t) * 1000, 1)
    r["threads"] = torch.get_num_threads()
    return r


def _inside(t: float, events) -> bool:
    return any(a <= t <= b for a, b, *_ in events)


def _rate(times, events) -> float:
    """The share of the candidate times inside an event: what a peak picked at random scores."""
    return float(np.mean([_inside(t, events) for t in times]))


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks from 0, tied values sharing their mean rank."""
    r = np.empty(len(v))
    r[np.argsort(v, kind="stable")] = np.arange(len(v))
    _, group = np.unique(v, return_inverse=True)
    return (np.bincount(group, r) / np.bincount(group))[group]


def _spearman(x, y) -> float:
    """Spearman's rank correlation; nan when either side is constant or not finite."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])


def _per_span(curve, step_times, span_times, window: float) -> np.ndarray:
    """A per-step curve averaged over the steps whose centres lie in each occluded span."""
    st = np.asarray(step_times)
    return np.array([np.mean([c for c, t in zip(curve, st) if abs(t - s) <= window / 2] or [np.nan])
                     for s in span_times])


def finding(bundles: dict, clips: int = 96, seed: int = 0, device: str = "auto", log=print) -> dict:
    """bundles: name -> folder. Clips cycle through the corpus's classes; each one's seed
    comes from (seed, "explain", class, i), as ``uavm synth`` derives its own."""
    with tempfile.TemporaryDirectory(prefix="uavm-explain-finding-") as tmp:
        return _finding(Path(tmp), bundles, clips, seed, device, log)


def _finding(tmp: Path, bundles: dict, clips: int, seed: int, device: str, log) -> dict:
    from ..bundle import load_bundle
    from ..demo.corpus import cycled
    from ..errors import UAVMError
    from ..inference import Pipeline

    metas = cycled(tmp, clips, seed, "explain")
    out = {"clips": clips, "seed": seed, "criterion": "the peak's time (span centre or step centre) lies in "
           "[start, end] of one of the clip's events; chance: the share of those times that do; "
           "spearman_with_occlusion: the mean over clips of the rank correlation between the occlusion drops "
           "(fused) and the attention curve averaged over each span's steps", "models": {}}
    for name, folder in bundles.items():
        pipe = Pipeline(load_bundle(folder), device)
        hits: dict = {}
        agree: dict = {}  # rank correlation of an attention curve with the occlusion drops, per clip
        chance = {"spans": [], "steps": []}
        correct = failed = 0
        for path, meta in metas:
            try:
                e = pipe.explain(path)
            except UAVMError as err:  # reported, never silently dropped
                failed += 1
                log(f"{name}: {path.name}: {err}")
                continue
            ev = meta["events"]
            correct += e.target["mid"] == meta["label"]
            chance["spans"].append(_rate(e.occlusion["audio"]["times"], ev))
            chance["steps"].append(_rate(e.step_times, ev))
            for m in ("audio", "video"):
                peaks = {"occlusion": e.occlusion[m] and e.occlusion[m]["drop"],
                         "occlusion_own": e.occlusion[m] and e.occlusion[m]["drop_own"],
                         "occlusion_tokens": e.occlusion_tokens[m] and e.occlusion_tokens[m]["drop"],
                         "rollout": e.rollout[m], "attention_last": e.attention_last[m]}
                for how, curve in peaks.items():
                    if curve is None:
                        continue
                    times = e.step_times if how in ("rollout", "attention_last") else e.occlusion[m]["times"]
                    hits.setdefault(m, {}).setdefault(how, []).append(_inside(times[int(np.argmax(curve))], ev))
                    if how in ("rollout", "attention_last") and e.occlusion[m] is not None:
                        o = e.occlusion[m]
                        rho = _spearman(o["drop"], _per_span(curve, e.step_times, o["times"], e.window))
                        if np.isfinite(rho):
                            agree.setdefault(m, {}).setdefault(how, []).append(rho)
        n = len(metas) - failed
        out["models"][name] = {
            "kind": pipe.bundle.model.cfg.kind, "explained": n, "failed": failed,
            "fused_top1_correct": round(correct / max(n, 1), 3),
            "peak_inside_an_event": {m: {how: round(float(np.mean(v)), 3) for how, v in d.items()}
                                     for m, d in hits.items()},
            "chance": {k: round(float(np.mean(v)), 3) if v else None for k, v in chance.items()},
            "spearman_with_occlusion": {m: {how: round(float(np.mean(v)), 3) for how, v in d.items()}
                                        for m, d in agree.items()}}
        log(f"{name}: {n} clips explained")
    return out

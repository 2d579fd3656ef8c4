"""`uavm bench --explain --where`: over generated clips whose events' boxes and sounds' bands
are known (``uavm.demo.corpus``), how often each explanation of where and of which
frequencies finds them, and how faithful each explanation over time is (figures, not tests).

* video: the share of model frames showing an event whose map peaks in a grid cell that the
  event's box overlaps, for occlusion and Grad-CAM (its map pooled onto the same grid), beside
  chance (the share of cells the box overlaps);
* audio: the share of clips whose band-occlusion peak is one of the 4 of 16 bands where the
  event's sound has the most energy (``sound_bands``), beside chance (4 / 16); over all clips
  and over those whose sound alone names the class (dogs, keyboards);
* faithfulness: per explanation, the mean deletion and insertion areas, and the share of
  clips where its deletion area is below the random ranking's; the mean Shapley shares;
* the time of ``--where`` and of ``--faithfulness`` per clip.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def pooled(cam: np.ndarray, grid: int) -> np.ndarray:
    """(k, h, w) maps -> (k, grid, grid): the mean over the pixels of each cell."""
    k, h, w = cam.shape
    ys, xs = np.linspace(0, h, grid + 1), np.linspace(0, w, grid + 1)
    out = np.zeros((k, grid, grid))
    for r in range(grid):
        for c in range(grid):
            y0, y1 = int(np.floor(ys[r])), max(int(np.ceil(ys[r + 1])), int(np.floor(ys[r])) + 1)
            x0, x1 = int(np.floor(xs[c])), max(int(np.ceil(xs[c + 1])), int(np.floor(xs[c])) + 1)
            out[:, r, c] = cam[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out


def sound_bands(pipe, kind: str, bands: int = 16, top: int = 4) -> set:
    """The ``top`` of ``bands`` mel bands (as ``uavm.where`` groups them) where a sound of the
    corpus has the most energy: its recipe rendered alone (``corpus.solo``), the mean mel
    energy of each band's bins over the event."""
    from ..demo.corpus import solo
    from ..window import Decoded

    fb = pipe.prepare(Decoded(solo(kind), None)).fbank.numpy()
    a = pipe.pre.audio
    frames = slice(int(0.5 * 1000 / a.frame_shift_ms), int(2.5 * 1000 / a.frame_shift_ms))
    energy = np.exp(fb[frames] * a.std + a.mean)
    per = [energy[:, g].mean() for g in np.array_split(np.arange(a.num_mel_bins), bands)]
    return set(np.argsort(per)[::-1][:top].tolist())


def box_cells(box, grid: int) -> set:
    x0, y0, x1, y1 = box
    return {(r, c) for r in range(grid) for c in range(grid)
            if r / grid < y1 and (r + 1) / grid > y0 and c / grid < x1 and (c + 1) / grid > x0}


def finding(bundles: dict, clips: int = 24, seed: int = 0, device: str = "auto", log=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="uavm-where-finding-") as tmp:
        return _finding(Path(tmp), bundles, clips, seed, device, log)


def _finding(tmp: Path, bundles: dict, clips: int, seed: int, device: str, log) -> dict:
    from ..bundle import load_bundle
    from ..demo.corpus import CLASSES, cycled
    from ..inference import Pipeline

    metas = cycled(tmp, clips, seed, "where")
    out = {"clips": clips, "seed": seed, "models": {}}
    for name, folder in bundles.items():
        pipe = Pipeline(load_bundle(folder), device)
        pipe.explain(metas[0][0], where=True)  # warm
        frames = {"occlusion": [], "gradcam": []}
        chance_cells, bands, told, chance_bands, times = [], [], [], [], {"where": [], "faithfulness": []}
        auc: dict = {}
        below: dict = {}
        shares = {"audio": [], "video": []}
        two = {"audio": [], "video": []}
        for path, meta in metas:
            t = time.perf_counter()
            e = pipe.explain(path, where=True)
            times["where"].append(time.perf_counter() - t - e.timings_ms.get("faithfulness", 0) / 1000)
            t = time.perf_counter()
            f = pipe.explain(path, faithfulness=True).faithfulness
            times["faithfulness"].append(time.perf_counter() - t)
            v, a = e.where["video"], e.where["audio"]
            g = v["grid"][0]
            maps = {"occlusion": np.asarray(v["maps"]), "gradcam": pooled(np.asarray(v["gradcam"]["maps"]), g)}
            for k, tt in enumerate(v["times"]):
                ev = [x for x in meta["events"] if x[0] <= tt < x[1]]
                if not ev:
                    continue
                inside = box_cells(ev[0][2], g)
                chance_cells.append(len(inside) / g**2)
                for how, m in maps.items():
                    frames[how].append(divmod(int(np.argmax(m[k])), g) in inside)
            own = sound_bands(pipe, meta["sound"], len(a["bands_hz"]))
            hit = int(np.argmax(a["drop"])) in own
            bands.append(hit)
            if sum(c[3] == meta["sound"] for c in CLASSES) == 1:  # the sound alone names the class
                told.append(hit)
            chance_bands.append(len(own) / len(a["bands_hz"]))
            for how in ("occlusion", "rollout", "attention", "random"):
                auc.setdefault(how, []).append((f[how]["deletion_auc"], f[how]["insertion_auc"]))
                if how != "random":
                    below.setdefault(how, []).append(f[how]["deletion_auc"] < f["random"]["deletion_auc"])
            sg, sm = f["shapley"]["segments"], f["shapley"]["modalities"]
            for m in ("audio", "video"):
                shares[m].append(sg["share"][m])
                two[m].append(sm.get(m, np.nan))
        out["models"][name] = {
            "kind": pipe.bundle.model.cfg.kind,
            "video_peak_in_box": {how: round(float(np.mean(h)), 3) for how, h in frames.items()},
            "video_chance": round(float(np.mean(chance_cells)), 3), "video_frames": len(chance_cells),
            "audio_peak_in_band": round(float(np.mean(bands)), 3),
            "audio_peak_in_band_where_the_sound_names_the_class": round(float(np.mean(told)), 3) if told else None,
            "audio_chance": round(float(np.mean(chance_bands)), 3),
            "deletion_insertion_auc": {how: [round(float(np.mean([x[0] for x in v])), 3),
                                             round(float(np.mean([x[1] for x in v])), 3)] for how, v in auc.items()},
            "deletion_below_random": {how: round(float(np.mean(v)), 3) for how, v in below.items()},
            "shapley_two_modalities": {m: round(float(np.mean(v)), 3) for m, v in two.items()},
            "shapley_segments_share": {m: round(float(np.mean(v)), 3) for m, v in shares.items()},
            "seconds_per_clip": {k: round(float(np.median(v)), 2) for k, v in times.items()}}
        log(f"{name}: {clips} clips explained where and how faithfully")
    return out

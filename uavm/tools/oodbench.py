"""`uavm bench --ood`: how well the familiarity flag (``uavm.ood``) tells what the model knows
from what it does not (figures for docs/missing.md, not tests).

* ``generated``: clips of the demo corpus (``uavm.demo.corpus``) of a seed nothing was
  trained or calibrated on: the share flagged is the false-alarm rate;
* ``real``: recordings and pictures none of this project made, combined into clips: each
  sound of Debian's sound-theme-freedesktop and oxygen-sounds (looped, with half a second
  between, over the model's window) with a picture of the installed wallpaper packages
  (still, the picture paired by a fixed stride): the share flagged is the detection rate.
  The model's top-1 score on them is given too: the closed-set confidence the flag corrects.
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

SOUND_DIRS = ("/usr/share/sounds",)
PICTURE_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
SOUNDS = (".oga", ".ogg", ".wav", ".flac")
PICTURES = (".jpg", ".jpeg", ".png")
UNSEEN_SEED = 9  # not the demo's train (0), val (1), test (2), examples (3) or held (4) seeds


def real_media(sound_dirs=SOUND_DIRS, picture_dirs=PICTURE_DIRS) -> tuple:
    """(sounds, pictures) found in those folders (their subfolders too), sorted."""
    def find(dirs, exts):
        return sorted({p for d in dirs if Path(d).is_dir() for p in Path(d).rglob("*")
                       if p.suffix.lower() in exts and p.is_file()})
    return find(sound_dirs, SOUNDS), find(picture_dirs, PICTURES)


def _sound(path, rate: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        r = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = [g.to_ndarray().reshape(-1) for f in c.decode(audio=0) for g in r.resample(f)]
        parts += [g.to_ndarray().reshape(-1) for g in r.resample(None)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _looped(s: np.ndarray, n: int, gap: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    if not len(s):
        return out
    i = 0
    while i < n:
        k = min(len(s), n - i)
        out[i:i + k] = s[:k]
        i += k + gap
    return out


def _picture(path, short: int = 180) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = short / min(w, h)
        return np.asarray(im.resize((max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)), Image.BILINEAR))


def real_clips(out, sounds, pictures, seconds: float = 10.0, fps: float = 3.0, rate: int = 16000) -> list:
    """Sound i with picture (7 i) mod P, as a ``seconds``-long clip each: -> their paths."""
    from ..media.write import write_media

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(sounds):
        pic = pictures[(7 * i) % len(pictures)]
        frame = _picture(pic)
        p = out / f"{i:03d}_{s.stem}__{pic.stem}.mp4"
        write_media(p, np.repeat(frame[None], max(1, round(seconds * fps)), 0), fps,
                    _looped(_sound(s, rate), int(seconds * rate), rate // 2), rate)
        paths.append(p)
    return paths


def flagged(pipe, clips) -> dict:
    """pass -> {"clips", "flagged", "rate", "top1_median"} over the clips (the median of the
    pass's top-1 score: how sure the closed-set answer looks)."""
    counts, top = {m: [0, 0] for m in ("audio", "video", "fused")}, {m: [] for m in ("audio", "video", "fused")}
    for _, pred in pipe.predict_many(clips):
        if isinstance(pred, Exception):
            continue
        for m, o in pred.ood.items():
            if o is not None:
                counts[m][0] += 1
                counts[m][1] += o["flag"]
                top[m].append(float(pred.scores(m).max()))
    return {m: {"clips": n, "flagged": k, "rate": round(k / n, 3), "top1_median": round(statistics.median(top[m]), 3)}
            for m, (n, k) in counts.items() if n}


def table(r: dict) -> str:
    """`uavm bench --ood`'s text: a line per model and pass."""
    lines = [f"real media: {r['real_media']['sounds']} sounds, {r['real_media']['pictures']} pictures",
             f"{'model':18s} {'pass':6s} {'generated: flagged':>22s} {'real: flagged':>18s} {'real: top-1 median':>19s}"]
    for name, v in r.items():
        if name == "real_media":
            continue
        if not isinstance(v, dict):
            lines.append(f"{name:18s} {v}")
            continue
        for m, g in v["generated"].items():
            x = (v["real"] or {}).get(m)
            real = f"{x['flagged']}/{x['clips']} {100 * x['rate']:5.1f}%" if x else "-"
            lines.append(f"{name:18s} {m:6s} {g['flagged']:>5d}/{g['clips']} {100 * g['rate']:5.1f}%       "
                         f"{real:>18s} {x['top1_median'] if x else '-':>19}")
    return "\n".join(lines)


def run(bundles: dict, per_class: int = 5, seed: int = UNSEEN_SEED, device: str = "cpu", log=print,
        media=None) -> dict:
    """name -> bundle folder; -> name -> {"generated": ..., "real": ...} (see the module's
    docstring). ``media``: (sounds, pictures) to combine (default: ``real_media()``)."""
    from ..bundle import load_bundle
    from ..demo import corpus
    from ..inference import Pipeline
    from ..train.data import read_datafile, resolve

    sounds, pictures = media or real_media()
    out = {"real_media": {"sounds": len(sounds), "pictures": len(pictures)}}
    with tempfile.TemporaryDirectory(prefix="uavm-oodbench-") as tmp:
        tmp = Path(tmp)
        log(f"generating {per_class} clips per class, seed {seed}")
        entries, root = read_datafile(corpus.generate(tmp / "generated", per_class, seed, "unseen") / "clips.json")
        generated = [resolve(root, d["video"]) for d in entries]
        real = []
        if sounds and pictures:
            log(f"combining {len(sounds)} sounds with {len(pictures)} pictures")
            real = real_clips(tmp / "real", sounds, pictures)
        for name, folder in bundles.items():
            pipe = Pipeline(load_bundle(folder), device)
            if pipe.bundle.ood is None:
                out[name] = "no familiarity statistics"
                continue
            log(f"{name}: {len(generated)} generated clips, {len(real)} real ones")
            out[name] = {"generated": flagged(pipe, generated), "real": flagged(pipe, real) if real else None}
    return out

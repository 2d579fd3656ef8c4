"""`uavm explain`: what mattered, when, in which modality (uavm.explain)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .clips import expand_clips
from .options import DEVICE, add_bundle_options, add_degrade_options, bundle_of

BARS = " ▁▂▃▄▅▆▇█"


def add(sub) -> None:
    s = sub.add_parser("explain", help="occlusion over time, modality contribution and attention rollout per clip")
    s.add_argument("clips", nargs="+", metavar="CLIP", help="media files or folders of them")
    add_bundle_options(s)
    s.add_argument("--target", default="fused", metavar="fused|audio|video|LABEL",
                   help="the class explained: the fused top-1 (default), a pass's top-1, or a label (name or mid)")
    s.add_argument("--window", type=float, default=1.0, metavar="SECONDS", help="occluded span")
    s.add_argument("--stride", type=float, default=0.5, metavar="SECONDS", help="step between spans")
    s.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="analysis window start")
    s.add_argument("--no-audio", action="store_true", help="treat the audio as missing")
    s.add_argument("--no-video", action="store_true", help="treat the video as missing")
    s.add_argument("--mute-audio", type=float, nargs=2, metavar=("FROM", "TO"), help="silence this span first")
    s.add_argument("--blank-video", type=float, nargs=2, metavar=("FROM", "TO"), help="black frames in this span first")
    add_degrade_options(s)
    s.add_argument("--where", action="store_true", help="also where in the frames (occlusion of a grid of cells, "
                   "Grad-CAM) and which mel bands (occlusion of bands, and of time x band cells) (uavm.where)")
    s.add_argument("--faithfulness", action="store_true", help="also how faithful each explanation over time is "
                   "(deletion and insertion areas against a seeded random ranking: --seed) and the Shapley values of "
                   "the two modalities and of time segments")
    s.add_argument("--json", action="store_true", help="one JSON object per clip, one per line")
    s.add_argument("--device", **DEVICE)
    s.set_defaults(fn=explain)


def sparkline(values) -> str:
    v = np.asarray(values, np.float64)
    lo, hi = min(v.min(), 0.0), v.max()
    if hi <= lo:
        return BARS[1] * len(v)
    return "".join(BARS[1 + int(round((x - lo) / (hi - lo) * (len(BARS) - 2)))] for x in v)


def _escaped(x):
    """Every string of the answer with its control characters as escapes (for a terminal)."""
    from ..errors import printable

    if isinstance(x, str):
        return printable(x)
    if isinstance(x, dict):
        return {k: _escaped(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_escaped(v) for v in x]
    return x


def _print_human(d: dict) -> None:
    d = _escaped(d)
    t = d["target"]
    sc = ", ".join(f"{m} {s:.3f}" for m, s in t["score"].items() if s is not None)
    print(f"{d['clip']}  target: {t['label']} ({t['from'] if t['from'] == 'label' else t['from'] + ' top-1'}; {sc})")
    c = d["contribution"]
    if c.get("undefined"):
        print(f"  contribution  fused logit {c['fused_logit']:+.3f}; per modality: not defined ({c['undefined']})")
    else:
        parts = [f"{m} {c[m]:+.3f}" for m in ("audio", "video") if c[m] is not None]
        agree = "" if c["agree"] is None else ("; the passes agree" if c["agree"] else
                                               f"; the passes DISAGREE (audio: {c['top1']['audio']['label']}, "
                                               f"video: {c['top1']['video']['label']})")
        print(f"  contribution  {'  '.join(parts)} = fused logit {c['fused_logit']:+.3f}; decided by "
              f"{c['decided_by']}{agree}")
        print("  scores        " + "  ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in c["score"].items()
                                             if v is not None))
    for m in ("audio", "video"):
        o = d["occlusion"][m]
        if o is None:
            print(f"  {m:5s}         - ({d['missing'].get(m, '')})")
            continue
        i = int(np.argmax(o["drop"]))
        print(f"  {m:5s} occlusion peak {o['peak']:.2f} s (drop {o['drop'][i]:+.3f})  {sparkline(o['drop'])}")
        r = d["rollout"][m]
        print(f"  {m:5s} rollout   peak {d['step_times'][int(np.argmax(r))]:.2f} s               {sparkline(r)}")
    w = d.get("where") or {}
    if w.get("video"):
        maps = np.asarray(w["video"]["maps"])
        g = maps.shape[-1]
        peaks = np.argmax(maps.reshape(len(maps), -1), 1)
        r, c = divmod(int(np.bincount(peaks).argmax()), g)
        print(f"  video where  occlusion's peak most often in cell row {r + 1}, column {c + 1} of {g}x{g} "
              f"({np.mean(peaks == r * g + c):.0%} of the frames)")
    if w.get("audio"):
        a = w["audio"]
        b = int(np.argmax(a["drop"]))
        lo, hi = a["bands_hz"][b]
        print(f"  audio bands  occlusion's peak {lo:.0f}-{hi:.0f} Hz (drop {a['drop'][b]:+.3f})  {sparkline(a['drop'])}")
    f = d.get("faithfulness")
    if f:
        print("  faithfulness deletion / insertion area (lower / higher is more faithful): " + ", ".join(
            f"{k} {v['deletion_auc']:.3f} / {v['insertion_auc']:.3f}" for k, v in f.items()
            if k not in ("segments", "shapley")))
        sm = f["shapley"]["modalities"]
        if "undefined" not in sm:
            print(f"  shapley      audio {sm['audio']:+.3f}, video {sm['video']:+.3f} (of the fused score's "
                  f"{sm['v_none']:.3f} -> {sm['v_both']:.3f})")
        sg = f["shapley"]["segments"]
        print("  shapley over segments  " + ", ".join(f"{m} {v:+.3f} ± {sg['share_se'][m]:.3f}"
                                                       for m, v in sg["share"].items())
              + f" ({sg['permutations']} permutations)")
    for what, why in d["notes"].items():
        print(f"  note ({what}): {why}")


def explain(a) -> int:
    from ..bundle import load_bundle
    from ..errors import UAVMError
    from ..explain import check_occlusion, check_target, label_index
    from ..files import progress
    from ..inference import Pipeline, check_window
    from .options import clip_failed, degrade_of

    # every parameter checked before any clip is decoded
    a.start, a.mute_audio, a.blank_video = check_window(a.start, a.mute_audio, a.blank_video)
    degrade = degrade_of(a)
    for src in (a.audio_from, a.video_from):
        if src and not Path(src).is_file():
            raise UAVMError(f"{src}: no such file")
    pipe = Pipeline(load_bundle(bundle_of(a)), a.device)
    check_occlusion(a.window, a.stride, pipe.pre.clip_seconds)
    label_index(check_target(a.target), pipe.bundle.labels)
    clips, problems = expand_clips(a.clips)
    for name, e in problems:
        clip_failed(name, e, a.json)
    show = progress(len(clips), "explain", enabled=len(clips) > 1 and sys.stderr.isatty(), unit=" clips")
    failed = 0
    for i, clip in enumerate(clips):
        try:
            d = pipe.explain(clip, a.start, a.target, a.window, a.stride, not a.no_audio, not a.no_video,
                             a.mute_audio, a.blank_video, degrade=degrade, audio_from=a.audio_from,
                             video_from=a.video_from, where=a.where, faithfulness=a.faithfulness,
                             seed=a.seed).to_dict()
        except UAVMError as e:  # this clip's problem: reported, and the others go on
            failed += 1
            clip_failed(clip, e, a.json)
            continue
        finally:
            show(i + 1)
        if a.json:
            print(json.dumps(d, allow_nan=False), flush=True)
        else:
            _print_human(d)
    return 1 if failed or problems else 0

"""Commands on clips: predict, features."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import UAVMError
from .options import DEVICE, PRECISION, add_bundle_options, add_degrade_options, bundle_of

MEDIA_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wav", ".mp3", ".flac", ".ogg",
             ".m4a", ".aac", ".opus"}


def add(sub) -> None:
    s = sub.add_parser("predict", help="audio-only, video-only and fused predictions for clips or features")
    s.add_argument("clips", nargs="*", metavar="CLIP", help="media files or folders of them (any file with an audio "
                   "and/or a video stream)")
    add_bundle_options(s)
    s.add_argument("--audio-features", metavar="A.npy", help="(T, D) audio features, before L2 normalisation")
    s.add_argument("--video-features", metavar="V.npy", help="(T, D) video features, before L2 normalisation")
    s.add_argument("--no-audio", action="store_true", help="treat the audio as missing")
    s.add_argument("--no-video", action="store_true", help="treat the video as missing")
    s.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="analysis window start")
    s.add_argument("--mute-audio", type=float, nargs=2, metavar=("FROM", "TO"), help="silence this span (clip seconds)")
    s.add_argument("--blank-video", type=float, nargs=2, metavar=("FROM", "TO"), help="black frames in this span")
    add_degrade_options(s)
    s.add_argument("--audio-weight", type=float, default=0.5, metavar="W", help="fused = W * audio + (1 - W) * video "
                   "logits (0.5: Algorithm 1's mean; not for a cross-modal model)")
    s.add_argument("--top-k", type=int, default=5, metavar="K", help="classes listed per prediction")
    s.add_argument("--json", action="store_true", help="one JSON object per clip, one per line")
    s.add_argument("--attention", action="store_true", help="with --json: every layer's and head's attention maps "
                   "too (about 0.9 MB per clip for the demo; the API's include_attention)")
    s.add_argument("--device", **DEVICE)
    s.add_argument("--precision", **PRECISION)
    s.add_argument("--batch", type=int, default=0, metavar="CLIPS",
                   help="clips per backbone pass (default 8 on a GPU, 1 on the CPU)")
    s.add_argument("--compile", action="store_true", help="torch.compile the backbones: a compile per input shape "
                   "first (~30 s on a CPU), then paper-size passes ~1.4x faster (for folders, not one clip)")
    s.set_defaults(fn=predict)

    s = sub.add_parser("sweep", help="one degradation over levels on one window: each pass's score and top-1 "
                       "per level, and where each pass breaks")
    s.add_argument("clip", metavar="CLIP", help="a media file")
    add_bundle_options(s)
    for kind, what in (("audio-snr", "DB"), ("video-blur", "SIGMA"), ("video-size", "PX"), ("video-fps", "F")):
        s.add_argument(f"--{kind}", metavar=f"{what},{what},...", help=f"the levels of --{kind} (as `uavm predict "
                       f"--{kind}`), in this order; give one of the four")
    s.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="analysis window start")
    s.add_argument("--target", metavar="LABEL", help="the class whose scores are followed (default: the plain "
                   "window's fused top-1)")
    s.add_argument("--degrade-span", type=float, nargs=2, metavar=("FROM", "TO"),
                   help="degrade only this span (clip seconds; default: the whole window)")
    s.add_argument("--seed", type=int, default=0, help="the noise's seed")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--csv", action="store_true", help="CSV: one row per level")
    s.add_argument("--device", **DEVICE)
    s.add_argument("--precision", **PRECISION)
    s.set_defaults(fn=sweep)

    s = sub.add_parser("features", help="write OUT/<stem>.audio.npy and OUT/<stem>.video.npy")
    s.add_argument("clips", nargs="*", metavar="CLIP", help="media files")
    s.add_argument("--manifest", metavar="LIST", help="a clip list (JSON, as `uavm evaluate --data` reads): "
                   "resumable, sharded under torchrun, and OUT/features.json for `uavm train`")
    add_bundle_options(s)
    s.add_argument("--out", required=True, metavar="OUTDIR", help="folder for the .npy files")
    s.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="analysis window start")
    s.add_argument("--device", **DEVICE)
    s.add_argument("--precision", **PRECISION)
    s.set_defaults(fn=features)


def expand_clips(items) -> tuple:
    """-> (clips, problems): files as given; folders become their media files (by extension,
    in subfolders too), sorted. A folder with none is a problem (folder, UAVMError) to report
    with the clips' own failures, never skipped in silence."""
    out, problems = [], []
    for it in items:
        p = Path(it)
        if not p.is_dir():
            out.append(str(it))
            continue
        found = sorted(str(q) for q in p.rglob("*") if q.is_file() and q.suffix.lower() in MEDIA_EXT)
        if not found:
            problems.append((str(it), UAVMError(
                f"{it}: a folder with no audio or video files in it (looked for {', '.join(sorted(MEDIA_EXT))}, "
                "in its subfolders too)")))
        out += found
    return out, problems


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UAVMError(f"{path}: no such file") from None
    except Exception as e:  # numpy raises many kinds for a file that is not an array
        raise UAVMError(f"{path}: not a .npy array of {what} features ({type(e).__name__})") from None


def _print_human(name: str, pred, k: int) -> None:
    """For a terminal: a file's or a label's control characters (a newline, an ANSI or a title
    escape) are shown as escapes, never sent to it."""
    from ..errors import printable

    print(printable(name))
    for m in ("audio", "video", "fused"):
        top = pred.top(m, k)
        if top is None:
            why = pred.missing.get(m, "no prediction of its own (cross-modal model)" if m != "fused" else "")
            print(f"  {m:5s}  -  ({printable(why)})")
        else:
            o = pred.ood.get(m)
            word = f"  [unfamiliar: {o['score']:.1f} > {o['threshold']:.1f}]" if o and o["flag"] else ""
            print(f"  {m:5s}  " + " | ".join(f"{printable(t['label'])} {t['score']:.3f}" for t in top) + word)
    asked = pred.asked
    if "sources" in asked:
        print("  (audio from " + printable(asked["sources"]["audio"]) + ", video from "
              + printable(asked["sources"]["video"]) + ")")
    if "audio_weight" in asked:
        print(f"  (fused = {asked['audio_weight']:g} audio + {1 - asked['audio_weight']:g} video)")
    if "degraded" in asked:
        from ..degrade import Degrade

        d = dict(asked["degraded"])
        print(f"  (degraded: {Degrade(**{**d, 'span': tuple(d['span']) if 'span' in d else None}).describe()})")


def predict(a) -> int:
    from ..bundle import load_bundle
    from ..files import progress
    from ..inference import Pipeline, check_top_k, check_weight, check_window
    from .options import clip_failed, degrade_of, err

    if not a.clips and a.audio_features is None and a.video_features is None:
        err("give clips, or --audio-features / --video-features")
        return 1
    # the same checks, and the same messages, as the app's API
    a.start, a.mute_audio, a.blank_video = check_window(a.start, a.mute_audio, a.blank_video)
    degrade, a.audio_weight = degrade_of(a), check_weight(a.audio_weight)
    for src in (a.audio_from, a.video_from):
        if src and not Path(src).is_file():
            raise UAVMError(f"{src}: no such file")
    pipe = Pipeline(load_bundle(bundle_of(a)), a.device, a.precision, compile=a.compile)
    check_top_k(a.top_k, len(pipe.bundle.labels))
    clips, problems = expand_clips(a.clips)
    for name, e in problems:
        clip_failed(name, e, a.json)

    def from_features():
        af = _load_npy(a.audio_features, "audio") if a.audio_features and not a.no_audio else None
        vf = _load_npy(a.video_features, "video") if a.video_features and not a.no_video else None
        if af is None and vf is None:
            raise UAVMError("nothing left to predict from: both modalities are off")
        return pipe.predict_features(af, vf, audio_weight=a.audio_weight)

    results = pipe.predict_many(clips, a.start, not a.no_audio, not a.no_video, a.mute_audio, a.blank_video,
                                batch=a.batch, degrade=degrade, audio_from=a.audio_from, video_from=a.video_from,
                                audio_weight=a.audio_weight)
    if a.audio_features or a.video_features:
        results = [*results, (str(a.audio_features or a.video_features), None)]
    show = progress(len(clips), "predict", enabled=len(clips) > 1 and sys.stderr.isatty(), unit=" clips")
    failed = 0
    for i, (name, pred) in enumerate(results):
        show(i + 1)
        if pred is None:
            try:
                pred = from_features()
            except UAVMError as e:
                pred = e
        if isinstance(pred, Exception):
            failed += 1
            clip_failed(name, pred, a.json)
            continue
        if a.json:
            print(json.dumps({"clip": str(name), "start": a.start, **pred.to_dict(a.top_k, attention=a.attention)}, allow_nan=False),
                  flush=True)
        else:
            _print_human(str(name), pred, a.top_k)
    return 1 if failed or problems else 0


def sweep(a) -> int:
    import csv

    from ..bundle import load_bundle
    from ..degrade import KINDS
    from ..errors import printable
    from ..inference import Pipeline
    from ..sweep import check_levels

    given = [k for k in KINDS if getattr(a, k) is not None]
    if len(given) != 1:
        raise UAVMError("give one of --audio-snr, --video-blur, --video-size, --video-fps, with its levels "
                        "(for example --audio-snr 30,20,10,0,-10)")
    kind = given[0]
    try:
        levels = [float(x) for x in getattr(a, kind).split(",") if x.strip()]
    except ValueError:
        raise UAVMError(f"--{kind.replace('_', '-')} takes numbers separated by commas, "
                        f"got {getattr(a, kind)!r}") from None
    check_levels(kind, levels)
    pipe = Pipeline(load_bundle(bundle_of(a)), a.device, a.precision)
    sw = pipe.sweep(a.clip, kind, levels, a.start, span=a.degrade_span, seed=a.seed, target=a.target)
    if a.json:
        print(json.dumps(sw.to_dict(), allow_nan=False))
    elif a.csv:
        rows = sw.csv_rows()
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    else:
        print(f"{printable(sw.clip)}: {kind.replace('_', ' ')} ({sw.unit}), the scores of {printable(sw.target)}")
        for r in sw.rows:
            cells = [f"{m} {r[m]['score']:.3f} ({printable(r[m]['top1'])}{', unfamiliar' if r[m]['unfamiliar'] else ''})"
                     for m in ("audio", "video", "fused") if r[m]]
            print(f"  {'plain' if r['level'] is None else format(r['level'], 'g'):>6s}  " + " | ".join(cells))
        print("  breaks: " + ", ".join(f"{m} {'never' if v is None else format(v, 'g')}" for m, v in sw.breaks.items()))
        if sw.unfamiliar:
            print("  unfamiliar from: " + ", ".join(f"{m} {'never' if v is None else format(v, 'g')}"
                                                    for m, v in sw.unfamiliar.items()))
    return 0


def features(a) -> int:
    from ..bundle import load_bundle
    from ..errors import one_line
    from ..inference import Pipeline, pick_device
    from ..train import distributed
    from ..train.data import extract_features, stem_collisions, write_clip_features
    from .options import err

    if bool(a.clips) == bool(a.manifest):
        err("give either clips or --manifest LIST")
        return 1
    clashes = stem_collisions(a.clips)
    if clashes:
        err(f"{clashes[0]} share a file name stem: their features would overwrite each other in {a.out}")
        return 1
    # under torchrun each rank extracts its shard; gloo is enough, only the failure lists travel
    with distributed.joined(pick_device(a.device), backend="gloo") as device:
        pipe = Pipeline(load_bundle(bundle_of(a)), device, a.precision)
        if a.manifest:
            path = extract_features(pipe, a.manifest, a.out, log=err, start=a.start)
            report = json.loads(path.read_text())
            if distributed.is_main():
                print(f"wrote {path}: {len(report['data'])} clips, {len(report['failed'])} failed")
            return 1 if report["failed"] else 0
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        failed = 0
        for clip in [a.clips[i] for i in distributed.shard(len(a.clips))]:
            try:
                f = write_clip_features(pipe, clip, out, a.start, redo=True)
            except UAVMError as e:
                failed += 1
                err(one_line(e))
                continue
            print(f"{clip}: " + ", ".join(f"{m} {tuple(x.shape)}" for m, x in (("audio", f.audio), ("video", f.video))
                                          if x is not None)
                  + "".join(f"; {m}: {why} (written as (0, D))" for m, why in f.missing.items()))
        return 1 if failed else 0

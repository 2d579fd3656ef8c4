"""The ``uavm`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def default_bundle() -> Path:
    env = os.environ.get("UAVM_BUNDLE")
    if env:
        return Path(env)
    demo = WEIGHTS / "demo-uavm"
    if (demo / "config.json").is_file():
        return demo
    raise SystemExit("uavm: no default bundle yet: pass --bundle DIR (see `uavm init` or `uavm import-official`)")


def _err(msg: str) -> None:
    print(f"uavm: {msg}", file=sys.stderr)


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as e:
        raise ValueError(f"{path}: not a .npy array of {what} features ({type(e).__name__})") from None


def _print_human(name: str, pred, k: int) -> None:
    print(name)
    for m in ("audio", "video", "fused"):
        top = pred.top(m, k)
        if top is None:
            why = pred.missing.get(m, "no prediction of its own (cross-modal model)" if m != "fused" else "")
            print(f"  {m:5s}  -  ({why})")
        else:
            print(f"  {m:5s}  " + " | ".join(f"{t['label']} {t['score']:.3f}" for t in top))


def cmd_predict(a) -> int:
    from .bundle import load_bundle
    from .inference import Pipeline

    if not a.clips and a.audio_features is None and a.video_features is None:
        _err("give clips, or --audio-features / --video-features")
        return 2
    pipe = Pipeline(load_bundle(a.bundle or default_bundle()), a.device)
    failed = 0
    jobs = list(a.clips)
    if a.audio_features or a.video_features:
        jobs.append(None)
    for clip in jobs:
        name = str(clip) if clip is not None else str(a.audio_features or a.video_features)
        try:
            if clip is None:
                af = _load_npy(a.audio_features, "audio") if a.audio_features and not a.no_audio else None
                vf = _load_npy(a.video_features, "video") if a.video_features and not a.no_video else None
                if af is None and vf is None:
                    raise ValueError("nothing to predict from: both modalities are off")
                pred = pipe.predict_features(af, vf)
            else:
                pred = pipe.predict(clip, a.start, audio=not a.no_audio, video=not a.no_video)
        except (ValueError, RuntimeError, OSError) as e:
            failed += 1
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            _err(msg)
            if a.json:
                print(json.dumps({"clip": name, "error": msg}))
            continue
        if a.json:
            print(json.dumps({"clip": name, "start": a.start, **pred.to_dict(a.top_k)}))
        else:
            _print_human(name, pred, a.top_k)
    return 1 if failed else 0


def cmd_features(a) -> int:
    from .bundle import load_bundle
    from .inference import Pipeline

    pipe = Pipeline(load_bundle(a.bundle or default_bundle()), a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for clip in a.clips:
        try:
            f = pipe.features(clip, a.start)
        except (ValueError, RuntimeError, OSError) as e:
            failed += 1
            _err(str(e).splitlines()[0])
            continue
        stem = Path(clip).stem
        for m, x in (("audio", f.audio), ("video", f.video)):
            if x is not None:
                tmp = out / f".{stem}.{m}.tmp.npy"
                np.save(tmp, x.astype(np.float16 if pipe.pre.feature_dtype == "float16" else np.float32))
                os.replace(tmp, out / f"{stem}.{m}.npy")
        print(f"{clip}: " + ", ".join(f"{m} {tuple(x.shape)}" for m, x in (("audio", f.audio), ("video", f.video)) if x is not None)
              + "".join(f"; {m}: {why}" for m, why in f.missing.items()))
    return 1 if failed else 0


def cmd_import(a) -> int:
    from .official import import_official

    import_official(a.model, a.out, audio_extractor=a.audio_extractor, video_extractor=a.video_extractor,
                    labels=a.labels, dataset=a.dataset, num_heads=a.num_heads)
    return 0


def cmd_download(a) -> int:
    from .official import download

    download(a.name, Path(a.cache) if a.cache else None)
    return 0


def cmd_init(a) -> int:
    from .bundle import random_bundle

    out = random_bundle(a.out, size=a.size, seed=a.seed)
    print(f"wrote a randomly initialised {a.size} bundle to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uavm", description="UAVM: unified audio-visual model (Gong et al. 2022)")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("predict", help="audio-only, video-only and fused predictions for clips or features")
    s.add_argument("clips", nargs="*", metavar="CLIP")
    s.add_argument("--bundle", help="model bundle folder (default: the embedded demo model)")
    s.add_argument("--audio-features", metavar="A.npy", help="(T, D) audio features, before L2 normalisation")
    s.add_argument("--video-features", metavar="V.npy", help="(T, D) video features, before L2 normalisation")
    s.add_argument("--no-audio", action="store_true", help="treat the audio as missing")
    s.add_argument("--no-video", action="store_true", help="treat the video as missing")
    s.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="analysis window start (default 0)")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--json", action="store_true", help="one JSON object per clip, one per line")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("features", help="write OUT/<stem>.audio.npy and OUT/<stem>.video.npy")
    s.add_argument("clips", nargs="+", metavar="CLIP")
    s.add_argument("--bundle")
    s.add_argument("--out", required=True)
    s.add_argument("--start", type=float, default=0.0)
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(fn=cmd_features)

    s = sub.add_parser("import-official", help="convert the authors' released .pth files into a bundle")
    s.add_argument("--model", required=True, metavar="FILE.pth")
    s.add_argument("--audio-extractor", metavar="FILE.pth")
    s.add_argument("--video-extractor", metavar="FILE.pth")
    s.add_argument("--labels", metavar="CSV")
    s.add_argument("--dataset", choices=["vggsound", "audioset"])
    s.add_argument("--num-heads", type=int, default=4, help="attention heads (not stored in the files; 4 in the release)")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("download", help="fetch the authors' released files (needs a network)")
    s.add_argument("name", help="'all' or one of the release names (see uavm.official.RELEASE)")
    s.add_argument("--cache", help="folder (default $UAVM_CACHE or ~/.cache/uavm)")
    s.set_defaults(fn=cmd_download)

    s = sub.add_parser("init", help="write a randomly initialised bundle (for tests and benchmarks)")
    s.add_argument("--out", required=True)
    s.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_init)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    from .bundle import BundleError
    from .official import CheckpointError

    try:
        return a.fn(a)
    except (BundleError, CheckpointError, ValueError, RuntimeError, OSError) as e:
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

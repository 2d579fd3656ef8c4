"""The ``uavm`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
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

    from .inference import check_top_k, check_window

    if not a.clips and a.audio_features is None and a.video_features is None:
        _err("give clips, or --audio-features / --video-features")
        return 2
    # the same checks, and the same messages, as the app's API
    a.start, a.mute_audio, a.blank_video = check_window(a.start, a.mute_audio, a.blank_video)
    pipe = Pipeline(load_bundle(a.bundle or default_bundle()), a.device, a.precision)
    check_top_k(a.top_k, len(pipe.bundle.labels))
    failed = 0
    clips = expand_clips(a.clips)

    def from_features():
        af = _load_npy(a.audio_features, "audio") if a.audio_features and not a.no_audio else None
        vf = _load_npy(a.video_features, "video") if a.video_features and not a.no_video else None
        if af is None and vf is None:
            raise ValueError("nothing to predict from: both modalities are off")
        return pipe.predict_features(af, vf)

    results = pipe.predict_many(clips, a.start, not a.no_audio, not a.no_video, a.mute_audio, a.blank_video,
                                batch=a.batch)
    if a.audio_features or a.video_features:
        results = [*results, (str(a.audio_features or a.video_features), None)]
    show = _progress(len(clips)) if len(clips) > 1 and sys.stderr.isatty() else (lambda i: None)
    for i, (name, pred) in enumerate(results):
        show(i + 1)
        if pred is None:
            try:
                pred = from_features()
            except (ValueError, RuntimeError, OSError) as e:
                pred = e
        if isinstance(pred, Exception):
            failed += 1
            msg = str(pred).splitlines()[0] if str(pred) else type(pred).__name__
            _err(msg)
            if a.json:
                print(json.dumps({"clip": str(name), "error": msg}), flush=True)
            continue
        if a.json:
            print(json.dumps({"clip": str(name), "start": a.start, **pred.to_dict(a.top_k)}, allow_nan=False),
                  flush=True)
        else:
            _print_human(str(name), pred, a.top_k)
    return 1 if failed else 0


MEDIA_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wav", ".mp3", ".flac", ".ogg",
             ".m4a", ".aac", ".opus"}


def expand_clips(items) -> list:
    """Files as given; folders become their media files (by extension), sorted. A folder
    with none stays as it is, so that it is reported (not a regular file), never skipped."""
    out = []
    for it in items:
        p = Path(it)
        found = sorted(str(q) for q in p.rglob("*") if q.is_file() and q.suffix.lower() in MEDIA_EXT) \
            if p.is_dir() else []
        out += found or [str(it)]
    return out


def _progress(total: int):
    t0 = time.time()

    def show(i):
        rate = i / max(time.time() - t0, 1e-9)
        print(f"\r{i}/{total} clips, {rate:.2f} clips/s", end="\n" if i == total else "", file=sys.stderr, flush=True)
    return show


def cmd_features(a) -> int:
    from . import distributed
    from .bundle import load_bundle
    from .data import extract_features, stem_collisions
    from .inference import Pipeline, pick_device

    if bool(a.clips) == bool(a.manifest):
        _err("give either clips or --manifest LIST")
        return 2
    clashes = stem_collisions(a.clips)
    if clashes:
        _err(f"{clashes[0]} share a file name stem: their features would overwrite each other in {a.out}")
        return 2
    # under torchrun each rank extracts its shard; gloo is enough, only the failure lists travel
    with distributed.joined(pick_device(a.device), backend="gloo") as device:
        pipe = Pipeline(load_bundle(a.bundle or default_bundle()), device)
        if a.manifest:
            path = extract_features(pipe, a.manifest, a.out, log=_err, start=a.start)
            report = json.loads(path.read_text())
            if distributed.is_main():
                print(f"wrote {path}: {len(report['data'])} clips, {len(report['failed'])} failed")
            return 1 if report["failed"] else 0
        return _features_of_clips(pipe, [a.clips[i] for i in distributed.shard(len(a.clips))], a)


def _features_of_clips(pipe, clips, a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for clip in clips:
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


def cmd_synth(a) -> int:
    from .corpus import generate

    out = generate(a.out, a.clips_per_class, a.seed, a.split, workers=a.workers)
    print(f"wrote {out / 'clips.json'} and {out / 'labels.csv'}")
    return 0


def cmd_train(a) -> int:
    from . import distributed
    from .bundle import Label, load_extractors, read_labels, save_bundle
    from .data import FeatureSet
    from .features import Preprocessing
    from .inference import pick_device
    from .model import UAVM, ModelConfig
    from .train import Recipe, Trainer, evaluate

    import torch

    labels = read_labels(a.labels)
    dataset = a.dataset or ("audioset" if len(labels) == 527 else "vggsound")
    if a.extractors:
        extractors, pre = load_extractors(a.extractors)
    else:
        extractors, pre = {}, Preprocessing.for_dataset(dataset) if dataset in ("vggsound", "audioset") else Preprocessing()
    train = FeatureSet(a.data, labels, pre.seq_len)
    val = FeatureSet(a.val, labels, pre.seq_len) if a.val else None
    loss = a.loss or ("bce" if dataset == "audioset" else "ce")
    recipe = Recipe(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay,
                    lr_decay_start=a.lr_decay_start, audio_weight=a.audio_weight, mixup=a.mixup,
                    label_smoothing=a.label_smoothing, time_shift=a.time_shift, balanced=not a.no_balanced,
                    loss=loss, seed=a.seed)
    torch.manual_seed(a.seed)
    mcfg = ModelConfig(kind=a.kind, num_classes=len(labels), n_specific=a.n_specific, n_shared=a.n_shared,
                       embed_dim=a.embed_dim, shared_dim=a.shared_dim, num_heads=a.num_heads, seq_len=pre.seq_len,
                       audio_dim=train.dim("audio"), video_dim=train.dim("video"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # under torchrun: DDP over the ranks, each with its slice of every global batch (uavm.train)
    with distributed.joined(pick_device(a.device)) as device:
        trainer = Trainer(UAVM(mcfg), train, recipe, val, out=out, device=device, progress=sys.stderr.isatty())
        # every rank resumes from the same checkpoint (rank 0 writes it; a torchrun restart reruns this)
        if (out / "checkpoint.pt").exists() and not a.restart:
            trainer.resume(out / "checkpoint.pt")
            if distributed.is_main():
                print(f"resuming after epoch {trainer.epoch}", flush=True)
        history = trainer.fit()
        if distributed.is_main():
            final = evaluate(trainer.model, val, device) if val else None
            save_bundle(out, trainer.model.cpu(), pre, labels, extractors=extractors, share_extractors=True,
                        task={"loss": loss, "dataset": dataset}, name=out.name,
                        provenance={"trained_on": str(a.data), "recipe": recipe.__dict__,
                                    "history": history.epochs, "val": final, "built_with": "uavm train"})
            print(f"wrote bundle {out}")
        distributed.barrier()  # the other ranks wait while rank 0 writes the bundle
    return 0


def cmd_evaluate(a) -> int:
    import tempfile

    from .bundle import load_bundle
    from .data import FeatureSet, feature_data
    from .inference import Pipeline
    from .train import evaluate

    pipe = Pipeline(load_bundle(a.bundle or default_bundle()), a.device)
    with tempfile.TemporaryDirectory() as tmp:  # a clip list: extracted with the bundle's own extractors
        data = FeatureSet(feature_data(pipe, a.data, tmp, log=_err), pipe.bundle.labels, pipe.pre.seq_len)
        res = evaluate(pipe.bundle.model, data, pipe.device)
    res = {"bundle": pipe.bundle.name, "clips": len(data), **res}
    if a.json:
        print(json.dumps(res))
    else:
        for m in ("audio", "video", "fused"):
            v = res[m]
            print(f"{m:5s}  " + ("-" if v is None else f"top-1 accuracy {100 * v['acc']:.2f}%  mAP {100 * v['mAP']:.2f}%"))
    return 0


def cmd_build_demo(a) -> int:
    import tempfile

    from . import demo

    cfg = demo.DemoConfig.tiny() if a.tiny else demo.DemoConfig()
    cfg.workers = a.workers
    work = a.work or tempfile.mkdtemp(prefix="uavm-demo-")
    r = demo.build(a.out, work, cfg)
    print(json.dumps({k: r[k] for k in ("models", "timings_seconds", "total_seconds")}, indent=1))
    return 0


def cmd_app(args: list) -> int:
    # the app sits above the library; it is imported only when asked for
    try:
        from app import main as app_main
    except ImportError as e:
        raise SystemExit(f"uavm: the app needs its extras: pip install -e '.[app]' ({e})")
    app_main(args)
    return 0


def recipe_arguments(s) -> None:
    """The released recipe's options (defaults: the VGGSound recipe), for train and sweeps."""
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=144)
    s.add_argument("--lr", type=float, default=5e-5)
    s.add_argument("--lr-decay", type=float, default=0.5)
    s.add_argument("--lr-decay-start", type=int, default=1)
    s.add_argument("--mixup", type=float, default=0.5)
    s.add_argument("--label-smoothing", type=float, default=0.1)
    s.add_argument("--time-shift", type=int, default=15)
    s.add_argument("--loss", choices=["ce", "bce"])


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
    s.add_argument("--mute-audio", type=float, nargs=2, metavar=("FROM", "TO"), help="silence this span (clip seconds)")
    s.add_argument("--blank-video", type=float, nargs=2, metavar=("FROM", "TO"), help="black frames in this span")
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("--json", action="store_true", help="one JSON object per clip, one per line")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="backbone arithmetic (auto: bf16 autocast on a GPU, fp32 on the CPU)")
    s.add_argument("--batch", type=int, default=0, metavar="CLIPS",
                   help="clips per backbone pass (default 8 on a GPU, 1 on the CPU)")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("features", help="write OUT/<stem>.audio.npy and OUT/<stem>.video.npy")
    s.add_argument("clips", nargs="*", metavar="CLIP")
    s.add_argument("--manifest", metavar="LIST", help="a clip list (JSON, as `uavm evaluate --data` reads): "
                   "resumable, sharded under torchrun, and OUT/features.json for `uavm train`")
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

    s = sub.add_parser("synth", help="generate the labelled audio-visual event corpus (uavm.corpus)")
    s.add_argument("--out", required=True)
    s.add_argument("--clips-per-class", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", default="train", help="a name that also enters the clips' seeds")
    s.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    s.set_defaults(fn=cmd_synth)

    s = sub.add_parser("train", help="Algorithm 1 training on a feature data file (the released recipe)")
    s.add_argument("--data", required=True, help="feature data file (JSON) or a folder with features.json")
    s.add_argument("--val", help="validation feature data file, evaluated every epoch")
    s.add_argument("--labels", required=True, help="label CSV: index,mid,display_name")
    s.add_argument("--out", required=True, help="bundle folder; holds checkpoint.pt while training (resumed)")
    s.add_argument("--extractors", help="bundle or extractor set whose extractors the bundle will use")
    s.add_argument("--dataset", choices=["vggsound", "audioset", "other"])
    s.add_argument("--kind", default="unified", choices=["unified", "independent", "cross_modal"])
    s.add_argument("--n-specific", type=int, default=3, help="N")
    s.add_argument("--n-shared", type=int, default=3, help="Ns")
    s.add_argument("--embed-dim", type=int, default=1024)
    s.add_argument("--shared-dim", type=int, default=1024, help="S_dim")
    s.add_argument("--num-heads", type=int, default=4)
    recipe_arguments(s)
    s.add_argument("--audio-weight", type=float, default=0.5, help="lambda_MT")
    s.add_argument("--no-balanced", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--restart", action="store_true",
                   help="ignore an existing checkpoint (not with torchrun --max-restarts: each restart would start over)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="audio-only, video-only and fused accuracy and mAP")
    s.add_argument("--bundle")
    s.add_argument("--data", required=True, help="feature data file, clip list, or a folder with either")
    s.add_argument("--json", action="store_true")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("build-demo", help="rebuild the embedded demo models and examples from scratch")
    s.add_argument("--out", default=str(WEIGHTS))
    s.add_argument("--work", help="scratch folder for corpora and features (default: a new temp folder)")
    s.add_argument("--tiny", action="store_true", help="a seconds-long run of the same recipe (for tests)")
    s.add_argument("--workers", type=int, default=0)
    s.set_defaults(fn=cmd_build_demo)

    sub.add_parser("app", help="launch the browser app (uavm app --help)", add_help=False)
    sub.add_parser("analyze", help="the paper's analyses: probe, retrieval, attention, sweep (uavm analyze --help)",
                   add_help=False)
    sub.add_parser("bench", help="per-stage timings, throughput and memory (uavm bench --help)", add_help=False)
    sub.add_parser("soak", help="load-test a fresh app on loopback and report memory (uavm soak --help)",
                   add_help=False)

    s = sub.add_parser("init", help="write a randomly initialised bundle (for tests and benchmarks)")
    s.add_argument("--out", required=True)
    s.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_init)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # the app parses its own options
        return cmd_app(argv[1:])
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["soak"]:
        from .soak import main as soak_main

        return soak_main(argv[1:])
    from .bundle import BundleError
    from .official import CheckpointError

    if argv[:1] == ["analyze"]:
        from .analyze import main as analyze_main

        run = lambda: analyze_main(argv[1:])
    else:
        a = build_parser().parse_args(argv)
        run = lambda: a.fn(a)
    try:
        return run()
    except (BundleError, CheckpointError, ValueError, RuntimeError, OSError) as e:
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

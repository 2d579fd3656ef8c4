"""Commands for training and study: synth, train, evaluate, ood, build-demo, analyze."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import ModelConfig
from ..train.recipe import Recipe
from .options import DEVICE, add_bundle_options, add_fields, bundle_of, field_values

ARCH = ("kind", "n_specific", "n_shared", "embed_dim", "shared_dim", "num_heads")
RECIPE = ("epochs", "batch_size", "lr", "lr_decay", "lr_decay_start", "mixup", "label_smoothing", "time_shift",
          "loss")


def add(sub) -> None:
    s = sub.add_parser("synth", help="generate the labelled audio-visual event corpus (uavm.demo.corpus)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the clips and clips.json")
    s.add_argument("--clips-per-class", type=int, default=10, metavar="N", help="clips of each class")
    s.add_argument("--seed", type=int, default=0, help="seed of the clips")
    s.add_argument("--split", default="train", help="a name that also enters the clips' seeds")
    s.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    s.set_defaults(fn=synth)

    s = sub.add_parser("train", help="Algorithm 1 training on a feature data file (the released recipe)")
    s.add_argument("--data", required=True, help="feature data file (JSON) or a folder with features.json")
    s.add_argument("--val", help="validation feature data file, evaluated every epoch")
    s.add_argument("--labels", required=True, help="label CSV: index,mid,display_name")
    s.add_argument("--out", required=True, help="bundle folder; holds checkpoint.pt while training (resumed)")
    s.add_argument("--extractors", help="bundle or extractor set whose extractors the bundle will use")
    s.add_argument("--dataset", choices=["vggsound", "audioset", "other"], help="what the bundle says it was trained on")
    add_fields(s, ModelConfig, ARCH)
    add_fields(s, Recipe, RECIPE + ("audio_weight", "balanced", "seed"), defaults={"loss": None})
    s.add_argument("--workers", type=int, metavar="N", help="processes reading feature files ahead of the steps "
                   "(default: up to 4 on a GPU for a set read from disk; none on the CPU, whose cores the step needs)")
    s.add_argument("--restart", action="store_true",
                   help="ignore an existing checkpoint (not with torchrun --max-restarts: each restart would start over)")
    s.add_argument("--device", **DEVICE)
    s.set_defaults(fn=train)

    s = sub.add_parser("evaluate", help="audio-only, video-only and fused accuracy and mAP")
    add_bundle_options(s)
    s.add_argument("--data", required=True, help="feature data file, clip list, or a folder with either")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument("--vggsounder", nargs="?", const=True, metavar="CSV",  # const: the package's own CSV
                   help="VGGSounder's modality-aware evaluation (uavm.analysis.vggsounder) on this annotation CSV "
                   "(default: the vggsounder package's); clips are matched by file stem = VGGSound video id")
    s.add_argument("--vggsounder-out", metavar="FILE.pkl", help="with --vggsounder: also write the predictions "
                   "as the pickle vggsounder.benchmark.compute_all_results reads (from FILE's folder)")
    s.add_argument("--device", **DEVICE)
    s.set_defaults(fn=evaluate)

    s = sub.add_parser("ood", help="familiarity statistics: fit them for a bundle, or check how often a set is "
                       "flagged as unfamiliar (uavm.ood)")
    what = s.add_subparsers(dest="what", required=True, metavar="ACTION")
    f = what.add_parser("fit", help="fit a bundle's familiarity statistics on in-distribution clips and store "
                        "them in the bundle (ood.safetensors and the config's \"ood\")")
    add_bundle_options(f)
    f.add_argument("--data", required=True, help="labelled clips the model was trained on (or like them): a "
                   "feature data file, a clip list, or a folder with either")
    f.add_argument("--held-out", help="more such clips, never used for the means, for the thresholds (default: "
                   "--held-share of --data, drawn with --seed)")
    f.add_argument("--held-share", type=float, default=0.2, help="without --held-out: the share of --data held out")
    f.add_argument("--false-alarm", type=float, default=0.05, help="the share of held-out clips flagged")
    f.add_argument("--seed", type=int, default=0, help="seed of the split and of a sample of a large set")
    f.add_argument("--device", **DEVICE)
    f.set_defaults(fn=ood_fit)
    c = what.add_parser("check", help="how many clips of a set each pass flags as unfamiliar")
    add_bundle_options(c)
    c.add_argument("clips", nargs="+", metavar="CLIP", help="clips or folders of clips")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c.add_argument("--device", **DEVICE)
    c.set_defaults(fn=ood_check)

    s = sub.add_parser("build-demo", help="rebuild the embedded demo models and examples from scratch")
    s.add_argument("--out", help="where the bundles go (default: the weights/ folder the demo is loaded from)")
    s.add_argument("--work", help="scratch folder for corpora and features (default: a new temp folder)")
    s.add_argument("--tiny", action="store_true", help="a seconds-long run of the same recipe (for tests)")
    s.add_argument("--workers", type=int, default=0, help="processes making clips (0: all cores)")
    s.set_defaults(fn=build_demo)

    s = sub.add_parser("analyze", help="the paper's analyses: probe, retrieval, attention, sweep (CSV + HTML)")
    what = s.add_subparsers(dest="what", required=True, metavar="ANALYSIS")

    def common(s, data=True):
        add_bundle_options(s)
        if data:
            s.add_argument("--data", required=True, help="feature data file, a folder with features.json, or a "
                           "labelled clip list (extracted with the bundle's extractors into OUT/features)")
        s.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV and HTML")
        s.add_argument("--seed", type=int, default=0, help="seed of every random draw")
        s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the networks run")

    s = what.add_parser("probe", help="modality probe per layer, coefficients, t-SNE (Fig. 3)")
    common(s)
    s.add_argument("--tsne-clips", type=int, default=300, help="clips per modality in the t-SNE (0: none)")
    s = what.add_parser("retrieval", help="audio-to-video retrieval recall@k per layer (Fig. 4)")
    common(s)
    s.add_argument("--per-class", type=int, default=5, help="clips per class in the subset (the paper: 5)")
    s.add_argument("--k", type=int, nargs="+", default=[5, 10], help="recall at these k")
    s = what.add_parser("attention", help="A-V attention difference per layer, per-head temporal attention (Fig. 5)")
    common(s)
    s.add_argument("--clip", default="0", help="index or name of the clip for the temporal heatmap")
    s.add_argument("--layer", type=int, default=0, help="layer of the heatmap, from 1 (default: the last)")
    s = what.add_parser("sweep", help="train and evaluate over S_dim, Ns, lambda_MT, several seeds (Fig. 2)")
    common(s, data=False)
    s.add_argument("--train", required=True, help="feature data file to train on")
    s.add_argument("--val", required=True, help="feature data file to evaluate on")
    s.add_argument("--labels", help="label CSV (default: the bundle's labels)")
    s.add_argument("--kinds", nargs="+", default=["unified", "independent"],
                   choices=["unified", "independent", "cross_modal"], help="the model kinds compared")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="each run is repeated with these seeds")
    s.add_argument("--shared-dim", type=_nums(int), help="S_dim values, e.g. '16,64,256,1024'")
    s.add_argument("--n-shared", type=_nums(int), help="Ns values; N = --layers - Ns")
    s.add_argument("--audio-weight", type=_nums(float), help="lambda_MT values")
    s.add_argument("--layers", type=int, default=6, help="N + Ns, fixed")
    s.add_argument("--base-n-shared", type=int, default=3, help="Ns of the base model")
    s.add_argument("--base-shared-dim", type=int, default=1024, help="S_dim of the base model")
    s.add_argument("--base-audio-weight", type=float, default=0.5, help="lambda_MT of the base model")
    add_fields(s, ModelConfig, ("embed_dim", "num_heads"))
    add_fields(s, Recipe, RECIPE, defaults={"loss": None})
    s.add_argument("--save-models", action="store_true", help="keep every trained model as a bundle in OUT/models")
    add_robustness(what)
    for p in what.choices.values():
        p.set_defaults(fn=analyze)


def add_robustness(what) -> None:
    from ..analysis.levels import DEFAULTS, KINDS, UNITS

    s = what.add_parser("robustness", help="each pass's accuracy, mAP and calibration over a set against a share "
                        "of clips missing a modality, a muted / blanked span and the degradations, for several "
                        "models; relative and effective robustness (CSV + HTML)")
    s.add_argument("--bundle", action="append", default=[], metavar="DIR", help="a model bundle folder (repeat "
                   "for more models)")
    s.add_argument("--model", action="append", default=[], metavar="NAME", help="a model by name (repeat; "
                   "`uavm models` lists them); default, with no --bundle: the embedded demo UAVM")
    s.add_argument("--mirror", metavar="URL", help="where named models are fetched from (see `uavm predict --help`)")
    s.add_argument("--data", required=True, help="labelled clip list (or a feature data file whose entries name "
                   "their clips; without clips only the missing-modality curves run)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the CSV, HTML and the features "
                   "(OUT/features: a rerun resumes from them)")
    s.add_argument("--baseline", metavar="NAME", help="the model effective robustness is measured against "
                   "(default: the modality-independent one among them, if any)")
    s.add_argument("--only", nargs="+", choices=KINDS, metavar="KIND", help=f"run only these ({', '.join(KINDS)})")
    for k in KINDS:
        shown = [round(100 * v) for v in DEFAULTS[k]] if k.endswith("missing") else DEFAULTS[k]
        unit = "%% of the clips" if k.endswith("missing") else UNITS[k]
        s.add_argument(f"--{k.replace('_', '-')}", type=_nums(float), metavar="LEVELS",
                       help=f"levels in {unit} (default {','.join(f'{v:g}' for v in shown)})")
    s.add_argument("--seed", type=int, default=0, help="seed of which clips miss a modality, the spans' places and "
                   "the noise")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the networks run")


def robustness_levels(a) -> dict:
    from ..analysis.levels import DEFAULTS, KINDS

    out = {}
    for k in KINDS:
        v = getattr(a, k)
        v = DEFAULTS[k] if v is None else ([x / 100 for x in v] if k.endswith("missing") else v)
        out[k] = v if not a.only or k in a.only else []
    return out


def _nums(kind):
    return lambda s: [kind(x) for x in s.replace(",", " ").split()]


def synth(a) -> int:
    from ..demo.corpus import generate

    out = generate(a.out, a.clips_per_class, a.seed, a.split, workers=a.workers)
    print(f"wrote {out / 'clips.json'}, {out / 'labels.csv'} and {out / 'vggsounder.csv'}")
    return 0


def train(a) -> int:
    import torch

    from ..bundle import load_extractors, read_labels, save_bundle
    from ..features import Preprocessing
    from ..inference import pick_device
    from ..model import UAVM
    from ..train import FeatureSet, Trainer, distributed, evaluate, fit_familiarity

    labels = read_labels(a.labels)
    dataset = a.dataset or ("audioset" if len(labels) == 527 else "vggsound")
    if a.extractors:
        extractors, pre = load_extractors(a.extractors)
    else:
        extractors, pre = {}, Preprocessing.for_dataset(dataset) if dataset in ("vggsound", "audioset") else Preprocessing()
    train_set = FeatureSet(a.data, labels, pre.seq_len)
    val = FeatureSet(a.val, labels, pre.seq_len) if a.val else None
    recipe = Recipe(**{**field_values(a, Recipe, RECIPE + ("audio_weight", "balanced", "seed")),
                       "loss": a.loss or ("bce" if dataset == "audioset" else "ce")})
    torch.manual_seed(a.seed)
    mcfg = ModelConfig(**field_values(a, ModelConfig, ARCH), num_classes=len(labels), seq_len=pre.seq_len,
                       audio_dim=train_set.dim("audio"), video_dim=train_set.dim("video"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    # under torchrun: DDP over the ranks, each with its slice of every global batch (uavm.train)
    with distributed.joined(pick_device(a.device)) as device:
        trainer = Trainer(UAVM(mcfg), train_set, recipe, val, out=out, device=device, progress=sys.stderr.isatty(),
                          workers=a.workers)
        # every rank resumes from the same checkpoint (rank 0 writes it; a torchrun restart reruns this)
        if (out / "checkpoint.pt").exists() and not a.restart:
            trainer.resume(out / "checkpoint.pt")
            if distributed.is_main():
                print(f"resuming after epoch {trainer.epoch}", flush=True)
        history = trainer.fit()
        if distributed.is_main():
            final = evaluate(trainer.model, val, device) if val else None
            # the familiarity statistics: the training clips' embeddings, thresholds on --val's
            fam = fit_familiarity(trainer.model, train_set, val, device=device, source=str(a.data)) if val else None
            save_bundle(out, trainer.model.cpu(), pre, labels, extractors=extractors, share_extractors=True,
                        task={"loss": recipe.loss, "dataset": dataset}, name=out.name,
                        provenance={"trained_on": str(a.data), "recipe": recipe.__dict__,
                                    "history": history.epochs, "val": final, "built_with": "uavm train"}, ood=fam)
            print(f"wrote bundle {out}" + ("" if fam else " (no --val: no familiarity statistics; "
                                                          "`uavm ood fit` makes them)"))
        distributed.barrier()  # the other ranks wait while rank 0 writes the bundle
    return 0


def evaluate(a) -> int:
    import tempfile

    from ..bundle import load_bundle
    from ..inference import Pipeline
    from ..train import FeatureSet, evaluate, feature_data
    from .options import err

    vgs = annotations = None
    if a.vggsounder is not None or a.vggsounder_out:  # the annotations first: a bad CSV fails before any work
        from ..analysis import vggsounder as vgs
        from ..errors import UAVMError

        if a.vggsounder is None:
            raise UAVMError("--vggsounder-out needs --vggsounder")
        csv_path = vgs.default_csv() if a.vggsounder is True else Path(a.vggsounder)
        annotations = vgs.read_annotations(csv_path)
    pipe = Pipeline(load_bundle(bundle_of(a)), a.device)
    with tempfile.TemporaryDirectory() as tmp:  # a clip list: extracted with the bundle's own extractors
        data = FeatureSet(feature_data(pipe, a.data, tmp, log=err), pipe.bundle.labels, pipe.pre.seq_len)
        if vgs:
            res = {"bundle": pipe.bundle.name, "annotations": str(csv_path), **vgs.evaluate(
                pipe.bundle.model, data, pipe.bundle.labels, annotations, pipe.device, a.vggsounder_out, csv_path)}
            print(json.dumps(res) if a.json else "\n".join(vgs.report_lines(res)))
            return 0
        res = evaluate(pipe.bundle.model, data, pipe.device)
    res = {"bundle": pipe.bundle.name, "clips": len(data), **res}
    if a.json:
        print(json.dumps(res))
    else:
        for m in ("audio", "video", "fused"):
            v = res[m]
            print(f"{m:5s}  " + ("-" if v is None else f"top-1 accuracy {100 * v['acc']:.2f}%  mAP {100 * v['mAP']:.2f}%"))
    return 0


def ood_fit(a) -> int:
    import tempfile

    from ..bundle import load_bundle, write_familiarity
    from ..errors import UAVMError, number
    from ..hub import reseal
    from ..inference import Pipeline
    from ..train import FeatureSet, feature_data, fit_familiarity
    from ..train.familiar import split_rows
    from .options import err

    share = number("--held-share", a.held_share, lo=0.01, hi=0.9)
    fa = number("--false-alarm", a.false_alarm, lo=0.001, hi=0.5)
    folder = Path(bundle_of(a))
    pipe = Pipeline(load_bundle(folder), a.device)
    labels, seq = pipe.bundle.labels, pipe.pre.seq_len
    with tempfile.TemporaryDirectory() as tmp:  # clip lists: extracted with the bundle's own extractors
        data = FeatureSet(feature_data(pipe, a.data, Path(tmp) / "data", log=err), labels, seq)
        if a.held_out:
            held, rows = FeatureSet(feature_data(pipe, a.held_out, Path(tmp) / "held", log=err), labels, seq), (None, None)
        else:
            if len(data) < 10:
                raise UAVMError(f"{a.data}: {len(data)} clips; give at least 10, or --held-out")
            held, rows = data, split_rows(len(data), share, a.seed)
        fam = fit_familiarity(pipe.bundle.model, data, held, fa, pipe.device, source=str(a.data), seed=a.seed,
                              train_rows=rows[0], held_rows=rows[1])
    write_familiarity(folder, fam)
    reseal(folder)  # a converted model's SHA256SUMS now lists the statistics too
    print(f"wrote {folder / 'ood.safetensors'}: fitted on {fam.fitted['clips']} clips, thresholds at "
          f"{100 * (1 - fa):g}% of {fam.fitted['held_out']} held-out clips: "
          + ", ".join(f"{m} {p.threshold:.2f}" for m, p in fam.passes.items()))
    return 0


def ood_check(a) -> int:
    from ..bundle import load_bundle
    from ..errors import UAVMError
    from ..inference import Pipeline
    from .clips import expand_clips
    from .options import clip_failed

    pipe = Pipeline(load_bundle(bundle_of(a)), a.device)
    if pipe.bundle.ood is None:
        raise UAVMError(f"{pipe.bundle.name} has no familiarity statistics (`uavm ood fit` makes them)")
    clips, problems = expand_clips(a.clips)
    for name, e in problems:
        clip_failed(name, e, a.json)
    counts = {m: [0, 0] for m in ("audio", "video", "fused")}
    failed = 0
    for name, pred in pipe.predict_many(clips):
        if isinstance(pred, Exception):
            failed += 1
            clip_failed(name, pred, a.json)
            continue
        for m, o in pred.ood.items():
            if o is not None:
                counts[m][0] += 1
                counts[m][1] += o["flag"]
    res = {"bundle": pipe.bundle.name, "clips": len(clips) - failed, "failed": failed,
           **{m: {"clips": n, "flagged": k, "rate": round(k / n, 4) if n else None} for m, (n, k) in counts.items()}}
    if a.json:
        print(json.dumps(res))
    else:
        for m in ("audio", "video", "fused"):
            n, k = counts[m]
            print(f"{m:5s}  " + (f"{k} of {n} flagged as unfamiliar ({100 * k / n:.1f}%)" if n else "-"))
    return 1 if failed or problems else 0


def build_demo(a) -> int:
    import tempfile

    from ..assets import weights_dir
    from ..demo import build

    cfg = build.DemoConfig.tiny() if a.tiny else build.DemoConfig()
    cfg.workers = a.workers
    work = a.work or tempfile.mkdtemp(prefix="uavm-demo-")
    r = build.build(a.out or weights_dir() or "weights", work, cfg)
    print(json.dumps({k: r[k] for k in ("models", "timings_seconds", "total_seconds")}, indent=1))
    return 0


def analyze(a) -> int:
    import importlib.util

    from ..errors import UAVMError

    needs = (("plotly", "plotly"),) if a.what == "robustness" else (("scikit-learn", "sklearn"), ("plotly", "plotly"))
    lacking = [m for m, mod in needs if not importlib.util.find_spec(mod)]
    if lacking:
        from ..assets import install_hint

        raise UAVMError(f"uavm analyze needs {' and '.join(lacking)}: {install_hint('analyze')}")
    from ..analysis import report

    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.what == "robustness":
        return robustness(a, report)
    bundle = None if a.what == "sweep" and a.labels and not (a.bundle or a.model) else bundle_of(a)
    log = lambda m: print(m, flush=True)
    if a.what == "probe":
        files = report.probe(bundle, a.data, a.out, a.device, a.seed, a.tsne_clips, log=log)
    elif a.what == "retrieval":
        files = report.retrieval(bundle, a.data, a.out, a.device, a.seed, a.per_class, a.k, log=log)
    elif a.what == "attention":
        files = report.attention(bundle, a.data, a.out, a.device, a.clip, a.layer, log=log)
    else:
        if not 0 <= a.base_n_shared <= a.layers:
            raise UAVMError(f"--base-n-shared {a.base_n_shared} is outside 0..--layers {a.layers}")
        grids = {k: v for k, v in (("shared_dim", a.shared_dim), ("n_shared", a.n_shared),
                                   ("audio_weight", a.audio_weight)) if v}
        base = {"n_specific": a.layers - a.base_n_shared, "n_shared": a.base_n_shared, "embed_dim": a.embed_dim,
                "shared_dim": a.base_shared_dim, "num_heads": a.num_heads, "audio_weight": a.base_audio_weight}
        files = report.sweep(a.train, a.val, a.out, grids, base, field_values(a, Recipe, RECIPE), a.kinds, a.seeds,
                             bundle=bundle, labels=a.labels, device=a.device, save_models=a.save_models, log=log)
    for f in files:
        print(f"wrote {f}")
    return 0


def robustness(a, report) -> int:
    from ..hub import resolve
    from ..inference import pick_device
    from ..train import distributed

    bundles = [resolve(None, b, a.mirror) for b in a.bundle] + [resolve(m, None, a.mirror) for m in a.model]
    with distributed.joined(pick_device(a.device)) as device:  # under torchrun: a shard of the clips per rank
        files = report.robustness(bundles or [resolve(None, None, a.mirror)], a.data, a.out, robustness_levels(a),
                                  a.seed, device, a.baseline, log=lambda m: print(m, flush=True))
    for f in files:
        print(f"wrote {f}")
    return 0

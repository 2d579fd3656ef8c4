"""The embedded demo: the whole recipe from nothing to ``weights/``.

1. generate train / val / test / held corpora (``uavm.corpus``; the test and held seeds are
   never trained on);
2. train the feature extractors, as in the paper, then freeze them: the audio ConvNeXt
   on fbanks with the clip labels (the paper's in-domain audio extractor), the video
   ConvNeXt on single frames to name the object in view (the role ImageNet plays in
   the paper);
3. extract features once;
4. train UAVM and both baselines on them with Algorithm 1 and the released recipe;
5. fit each model's familiarity statistics (``uavm.ood``: the training clips' embeddings,
   thresholds on the held corpus), evaluate audio-only, video-only and fused on the test
   corpus, and write the bundles (sharing one extractor set), the report and example clips.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import media
from ..assets import CAPTIONS
from ..bundle import load_bundle, load_extractors, save_bundle, save_extractors
from ..features import AudioPre, Extractor, Preprocessing, VideoPre, fbank, normalize_frames
from ..files import write_json
from ..inference import FeatureExtractor, Pipeline
from ..model import UAVM, ModelConfig
from ..train import FeatureSet, Recipe, Trainer, evaluate, fit_familiarity
from ..train.data import extract_features, read_datafile, resolve
from . import corpus


@dataclass
class DemoConfig:
    train_per_class: int = 60
    val_per_class: int = 10
    test_per_class: int = 20
    held_per_class: int = 30  # the familiarity thresholds' held-out clips (uavm.ood), never trained on
    seed: int = 0  # train seed; val uses seed + 1, test seed + 2, examples seed + 3, held seed + 4
    convnext_depths: tuple = (1, 1, 2, 1)
    convnext_dims: tuple = (16, 32, 64, 128)
    short_side: int = 128
    audio_epochs: int = 8
    audio_windows_per_clip: int = 8
    video_epochs: int = 16
    video_frames_per_clip: int = 10
    extractor_batch: int = 32
    embed_dim: int = 128
    shared_dim: int = 128
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    lr_decay: float = 0.9
    lr_decay_start: int = 20
    examples: int = 6
    workers: int = 0

    @classmethod
    def tiny(cls) -> DemoConfig:
        """Seconds, not minutes: for the end-to-end test."""
        return cls(train_per_class=2, val_per_class=1, test_per_class=1, held_per_class=1,
                   convnext_dims=(8, 16, 16, 32),
                   audio_epochs=1, audio_windows_per_clip=2, video_epochs=1, video_frames_per_clip=2, embed_dim=32, shared_dim=16,
                   epochs=2, batch_size=8, examples=1)


MODELS = {  # Table I: UAVM, modality-independent (N = 6, Ns = 0), cross-modal attention
    "demo-uavm": dict(kind="unified", n_specific=3, n_shared=3),
    "demo-independent": dict(kind="independent", n_specific=6, n_shared=0),
    "demo-cross-modal": dict(kind="cross_modal", n_specific=3, n_shared=3),
}


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _extractor(modality, classes, cfg: DemoConfig, seed):
    torch.manual_seed(seed)
    return Extractor({"arch": "convnext_base", "modality": modality,
                      "kwargs": {"in_chans": 1 if modality == "audio" else 3, "num_classes": classes,
                                 "depths": list(cfg.convnext_depths), "dims": list(cfg.convnext_dims)}})


def _fit(net, draw, steps: int, epochs: int, seed: int, what: str, log=_log):
    """Plain supervised training of an extractor's classifier, then frozen.
    ``draw(g)`` returns one batch (inputs, class indices)."""
    g = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * steps, pct_start=0.15)
    net.train()
    for ep in range(epochs):
        losses, correct, seen = [], 0, 0
        for _ in range(steps):
            x, t = draw(g)
            logits = net(x)
            loss = F.cross_entropy(logits, t, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            correct, seen = correct + int((logits.argmax(1) == t).sum()), seen + len(t)
        log(f"{what} extractor epoch {ep + 1}/{epochs}: loss {np.mean(losses):.3f}, train acc {correct / seen:.3f}")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)


def sound_labels(entry: dict, centres: np.ndarray, half: float) -> np.ndarray:
    """Per window (centre +- half seconds): the sound kind if an event covers most of it,
    len(SOUNDS) if none touches it, -1 (unused) in between."""
    lab = np.full(len(centres), len(corpus.SOUNDS))
    for s, e, *_ in entry["events"]:
        overlap = np.clip(np.minimum(centres + half, e) - np.maximum(centres - half, s), 0, None) / (2 * half)
        lab[overlap > 0] = -1
        lab[overlap >= 0.5] = corpus.SOUNDS.index(entry["sound"])
    return lab


def train_audio_extractor(entries: list, clips: list, cfg: DemoConfig, log=_log) -> tuple[Extractor, AudioPre]:
    """On fbank windows of 1.28 s, to name the sound in them (or none): the role the
    in-domain audio pretraining plays in the paper, at the time scale of our events."""
    pre = AudioPre()
    raw = torch.stack([fbank(torch.as_tensor(media.load_audio(c)), replace(pre, mean=0.0, std=1.0)) for c in clips])
    mean, std = float(raw.mean()), float(raw.std())  # the corpus's fbank statistics, as the authors computed theirs
    pre = replace(pre, mean=round(mean, 4), std=round(std, 4))
    x_all = ((raw - mean) / std).half()  # (clips, frames, mel)
    ext = _extractor("audio", len(corpus.SOUNDS) + 1, cfg, cfg.seed)
    batch, win, hop = 2 * cfg.extractor_batch, 128, pre.frame_shift_ms / 1000
    n_frames = x_all.shape[1]

    def draw(g):
        xs, ys = [], []
        while len(ys) < batch:
            i = int(g.integers(0, len(clips)))
            ev = entries[i]["events"]
            if g.random() < 0.6:  # mostly windows on events, the rest anywhere
                s, e = ev[int(g.integers(0, len(ev)))][:2]
                c = g.uniform(s, e)
            else:
                c = g.uniform(0, n_frames * hop)
            lab = sound_labels(entries[i], np.array([c]), win * hop / 2)[0]
            start = int(round(c / hop)) - win // 2
            if lab < 0 or start < 0 or start + win > n_frames:
                continue
            x = x_all[i, start:start + win].float().clone()
            f0, fw = int(g.integers(0, 128 - 16)), int(g.integers(0, 16))
            x[:, f0:f0 + fw] = 0
            xs.append(x.t())
            ys.append(int(lab))
        return torch.stack(xs).unsqueeze(1), torch.as_tensor(ys)

    steps = max(len(clips) * cfg.audio_windows_per_clip // batch, 1)
    _fit(ext.net, draw, steps, cfg.audio_epochs, cfg.seed, "audio", log)
    return ext, pre


def picture_labels(entry: dict, times: np.ndarray) -> np.ndarray:
    """Per frame: the index of the picture in view (within an event), or len(PICTURES) for none."""
    lab = np.full(len(times), len(corpus.PICTURES))
    for s, e, *_ in entry["events"]:
        lab[(times >= s) & (times < e)] = corpus.PICTURES.index(entry["picture"])
    return lab


def train_video_extractor(entries: list, clips: list, cfg: DemoConfig, log=_log) -> Extractor:
    """On single 3 fps frames, to name the picture in view (or none): our stand-in for ImageNet."""
    vpre = VideoPre(short_side=cfg.short_side)
    ts = np.arange(int(corpus.SECONDS * corpus.FPS)) / corpus.FPS
    times = ts[media.sample_times(ts, corpus.SECONDS, vpre.fps, 0, corpus.SECONDS)]
    frames = np.stack([media.load_frames(c, vpre.fps, vpre.short_side) for c in clips])  # (clips, T, H, W, 3)
    labels = np.stack([picture_labels(d, times[: frames.shape[1]]) for d in entries])
    ext = _extractor("video", len(corpus.PICTURES) + 1, cfg, cfg.seed + 1)
    batch = 2 * cfg.extractor_batch

    def draw(g):
        ci, fi = g.integers(0, len(clips), batch), g.integers(0, frames.shape[1], batch)
        x = normalize_frames(frames[ci, fi], vpre)
        return (torch.flip(x, [3]) if g.random() < 0.5 else x), torch.as_tensor(labels[ci, fi])

    steps = max(len(clips) * cfg.video_frames_per_clip // batch, 1)
    _fit(ext.net, draw, steps, cfg.video_epochs, cfg.seed + 1, "video", log)
    return ext


def make_example(path: Path, cls: int, seed: int, judge=None, tries: int = 20) -> int:
    """The example clip of a class: the first clip of the examples' seed that the demo UAVM
    (``judge``, a Pipeline) answers right and finds familiar in every pass (``uavm.ood``), so
    that a first click shows what the model does on data like its own; -> its index. (An
    unfamiliar input is shown by swapping or degrading one.) Without a judge, the first."""
    for i in range(tries if judge is not None else 1):
        corpus.make_clip(path, cls, corpus.clip_seed(seed, "examples", cls, i))
        if judge is None:
            return i
        pred = judge.predict(path)
        right = int(pred.scores("fused").argmax()) == cls
        if right and not any(pred.unfamiliar(m) for m in ("audio", "video", "fused")):
            return i
    return i  # none of them: the last one tried is kept


def build(out, work, cfg: DemoConfig = DemoConfig(), log=_log) -> dict:
    """Run the whole recipe; returns the report (also written to out/demo-report.json)."""
    t_start = time.time()
    out, work = Path(out), Path(work)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    splits = {"train": (cfg.train_per_class, cfg.seed), "val": (cfg.val_per_class, cfg.seed + 1),
              "test": (cfg.test_per_class, cfg.seed + 2), "held": (cfg.held_per_class, cfg.seed + 4)}
    timings = {}
    t = time.time()
    for split, (n, seed) in splits.items():
        if not (work / split / "clips.json").exists():
            log(f"generating {split}: {n} clips per class, seed {seed}")
            corpus.generate(work / split, n, seed, split, workers=cfg.workers)
    timings["generate"] = time.time() - t

    t = time.time()
    entries, root = read_datafile(work / "train")
    clips = [resolve(root, d["video"]) for d in entries]
    if not (work / "extractors" / "config.json").exists():
        log("training the audio extractor")
        aext, apre = train_audio_extractor(entries, clips, cfg, log)
        log("training the video extractor")
        vext = train_video_extractor(entries, clips, cfg, log)
        pre = Preprocessing(audio=apre, video=VideoPre(short_side=cfg.short_side))
        for e in (aext, vext):  # frozen features need no classifier
            e.net.reset_classifier(0)
            e.spec["kwargs"]["num_classes"] = 0
        save_extractors(work / "extractors", {"audio": aext, "video": vext}, pre,
                        provenance={"trained_on": f"uavm synth corpus, train split, seed {cfg.seed}",
                                    "recipe": asdict(cfg)})
    timings["extractors"] = time.time() - t

    t = time.time()
    shutil.copytree(work / "extractors", out / "extractors", dirs_exist_ok=True)
    extractors, pre = load_extractors(out / "extractors")
    fx = FeatureExtractor(extractors, pre, "cpu", "demo extractors")
    feats = {}
    for split in splits:
        log(f"extracting {split} features")
        feats[split] = extract_features(fx, work / split, work / f"features-{split}", log=log)
    timings["features"] = time.time() - t

    labels = corpus.labels()
    sets = {s: FeatureSet(feats[s], labels, pre.seq_len) for s in splits}
    dim = sets["train"].dim("audio")
    recipe = Recipe(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, lr_decay=cfg.lr_decay,
                    lr_decay_start=cfg.lr_decay_start, seed=cfg.seed)
    report = {"config": asdict(cfg), "recipe": asdict(recipe), "models": {}}
    for name, arch in MODELS.items():
        t = time.time()
        log(f"training {name}")
        torch.manual_seed(cfg.seed)
        mcfg = ModelConfig(num_classes=len(labels), embed_dim=cfg.embed_dim, shared_dim=cfg.shared_dim,
                           audio_dim=dim, video_dim=dim, **arch)
        model = UAVM(mcfg)
        trainer = Trainer(model, sets["train"], recipe, sets["val"], log=log)
        history = trainer.fit()
        test = evaluate(model, sets["test"])
        ood = fit_familiarity(model, sets["train"], sets["held"], source="uavm synth corpus, train split; "
                              f"held-out: {cfg.held_per_class} clips per class, seed {cfg.seed + 4}")
        save_bundle(out / name, model, pre, labels, extractors=extractors, share_extractors=True,
                    task={"loss": "ce", "dataset": "uavm-synth"}, name=name,
                    provenance={"trained_on": "uavm synth corpus (uavm.corpus), train split "
                                f"{cfg.train_per_class} clips per class, seed {cfg.seed}; "
                                "not real-world audio or video",
                                "recipe": asdict(recipe), "history": history.epochs,
                                "test": {"seed": cfg.seed + 2, "clips": len(sets["test"]), **test},
                                "built_with": "uavm build-demo"}, ood=ood)
        report["models"][name] = {"test": test, "train_seconds": round(time.time() - t, 1)}
        log(f"{name} on the test seed: " + ", ".join(
            f"{m} {100 * v['acc']:.1f}%" for m, v in test.items() if v))

    t = time.time()
    ex = out / "examples"
    ex.mkdir(exist_ok=True)
    pick = np.linspace(0, len(corpus.CLASSES) - 1, cfg.examples).round().astype(int)
    captions = {}
    judge = Pipeline(load_bundle(out / "demo-uavm"), "cpu") if (out / "demo-uavm").is_dir() else None
    for c in pick:
        name = corpus.example_name(int(c))
        make_example(ex / f"{name}.mp4", int(c), cfg.seed + 3, judge)
        captions[f"{name}.mp4"] = corpus.example_caption(int(c))
    write_json(ex / CAPTIONS, {"format": "uavm-examples", "clips": captions})
    timings["examples"] = time.time() - t
    report["timings_seconds"] = {k: round(v, 1) for k, v in timings.items()}
    report["total_seconds"] = round(time.time() - t_start, 1)
    write_json(out / "demo-report.json", report)
    return report

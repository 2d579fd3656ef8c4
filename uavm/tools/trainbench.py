"""Training input: how fast the trainer is fed from feature files on disk (a set too large
to hold in memory, as VGGSound's ~200k clips are), with and without loader workers
(figures, not tests)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def make_set(out, clips: int = 200_000, dim: int = 1024, steps: int = 30, classes: int = 309, seed: int = 0,
             log=print) -> Path:
    """A feature data file of ``clips`` random (steps, dim) float16 audio and video features
    (the authors' layout: JSON + one .npy per clip and modality); resumable."""
    from ..files import write_json, write_text

    out = Path(out)
    (out / "f").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data, t0 = [], time.time()
    for i in range(clips):
        names = {m: f"f/{i:06d}.{m}.npy" for m in ("audio", "video")}
        for name in names.values():
            if not (out / name).exists():
                np.save(out / name, rng.standard_normal((steps, dim)).astype(np.float16))
        data.append({"labels": f"c{i % classes}", "afeat": names["audio"], "vfeat": names["video"]})
        if (i + 1) % 20000 == 0:
            log(f"{i + 1}/{clips} clips written ({time.time() - t0:.0f} s)")
    write_json(out / "features.json", {"data": data})
    write_text(out / "labels.csv", "index,mid,display_name\n" + "".join(f"{c},c{c},class {c}\n" for c in range(classes)))
    return out


def run(data, steps: int = 40, batch: int = 144, workers=(0, 2, 4), size: str = "paper", device: str = "cpu",
        log=print) -> dict:
    """Steps per second over ``steps`` steps of the released recipe's batch: the input alone
    (reading, mixup, rolls) and the whole step (with the model's forward and backward)."""
    import torch

    from ..bundle import SIZES, read_labels
    from ..model import UAVM, ModelConfig
    from ..train import FeatureSet, Recipe, Trainer

    data = Path(data)
    labels = read_labels(data / "labels.csv")
    train = FeatureSet(data / "features.json", labels, in_memory=False)
    arch = dict(SIZES["paper"]["model"]) if size == "paper" else dict(embed_dim=128, shared_dim=128)
    out = {"clips": len(train), "batch": batch, "steps": steps, "model": size, "device": device}
    for w in workers:
        for what in ("input", "step"):
            torch.manual_seed(0)
            model = UAVM(ModelConfig(**{**arch, "num_classes": len(labels)}))
            tr = Trainer(model, train, Recipe(batch_size=batch, seed=w), device=device, log=lambda m: None,
                         workers=w)
            order = tr.rng.permutation(len(train))
            draws = [tr._draw(order[s * batch:(s + 1) * batch]) for s in range(steps)]
            tr.net = tr.model.train()
            t0, n = time.perf_counter(), 0
            for xs, t, share in tr._batches(draws):
                if what == "step":
                    loss = tr._loss(tr.net(**{m: x.to(device) for m, x in xs.items()}).fused, t.to(device)) * share
                    tr.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    tr.opt.step()
                n += 1
            rate = n / (time.perf_counter() - t0)
            out[f"{what}_steps_per_s_workers_{w}"] = round(rate, 2)
            log(f"workers {w}, {what}: {rate:.2f} steps/s")
    return out


if __name__ == "__main__":  # python -m uavm.tools.trainbench DIR [CLIPS] [STEPS]
    import json
    import sys

    folder = Path(sys.argv[1])
    clips = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    if not (folder / "features.json").exists():
        make_set(folder, clips)
    print(json.dumps(run(folder, steps=int(sys.argv[3]) if len(sys.argv) > 3 else 40)))

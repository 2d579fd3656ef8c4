"""`uavm bench`: where the time goes, from a clip to an answer, and how close the
whole path comes to the ConvNeXt backbones alone on the same inputs (figures, not tests)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _ms(f, repeat: int = 5) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def run(bundle_dir=None, size: str = "", device: str = "auto", clips: int = 8, repeat: int = 5,
        precision: str = "auto", batch: int = 0, log=print, compile: bool = False) -> dict:
    from ..bundle import load_bundle, random_bundle
    from ..demo.synth import demo_clip
    from ..explore import Explorer
    from ..features import _fast, choose_precision, fbank, normalize_frames
    from ..files import memory_mb
    from ..inference import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="uavm-bench-"))
    t_cold = time.perf_counter()
    if size:
        bundle_dir = random_bundle(tmp / "bundle", size=size)
    pipe = Pipeline(load_bundle(bundle_dir), device, precision, compile=compile)
    clip = demo_clip(tmp / "clip.mp4", seconds=10, size=(360, 640))  # 10 s, 360p, H.264 + AAC
    pipe.predict(clip)
    batch = batch or (8 if pipe.device.type == "cuda" else 1)
    chosen, why = choose_precision(pipe.device, precision)
    r = {"bundle": pipe.bundle.name, "device": str(pipe.device), "precision": chosen, "precision_why": why,
         "compiled": compile,
         "batch": batch,
         "clip": "10 s 640x360 H.264/AAC",
         "cold_start_ms": round((time.perf_counter() - t_cold) * 1000, 1)}
    pre = pipe.pre
    d = pipe.decode(clip)
    wav, frames = d.wav, d.frames
    fb = fbank(torch.as_tensor(wav), pre.audio)
    st = {"decode": _ms(lambda: pipe.decode(clip), repeat),
          "fbank": _ms(lambda: fbank(torch.as_tensor(wav), pre.audio), repeat),
          "audio_cnn": _ms(lambda: pipe.audio_features(wav), repeat),
          "video_cnn": _ms(lambda: pipe.video_features(frames), repeat)}
    if pipe.device.type == "cuda":  # what crosses to the GPU per clip (also inside the CNN stages)
        st["transfer"] = _ms(lambda: (torch.as_tensor(frames).to(pipe.device), fb.to(pipe.device)), repeat)
    if chosen != "fp32":  # the same stages in float32, in the same run: what the choice buys
        fp32 = Pipeline(pipe.bundle, pipe.device, "fp32")
        st["audio_cnn_fp32"] = _ms(lambda: fp32.audio_features(wav), repeat)
        st["video_cnn_fp32"] = _ms(lambda: fp32.video_features(frames), repeat)
        r["video_cnn_over_fp32"] = round(st["video_cnn"] / st["video_cnn_fp32"], 3)
        r["audio_cnn_over_fp32"] = round(st["audio_cnn"] / st["audio_cnn_fp32"], 3)
    a, v = pipe.audio_features(wav), pipe.video_features(frames)
    st["transformer_with_attention"] = _ms(lambda: pipe.predict_features(a, v), repeat)
    try:
        from .. import figures

        ex = Explorer(pipe)
        an = ex.run(clip)
        cfg = pipe.bundle.model.cfg
        st["figures"] = _ms(lambda: (figures.temporal(an, 1, pre, cfg), figures.full_maps(an, 1, cfg),
                                     figures.av_difference(an, cfg)), repeat)
        r["toggle_ms"] = round(_ms(lambda: ex.run(clip, audio=False), repeat * 4), 2)
        r["toggle_with_figures_ms"] = round(r["toggle_ms"] + st["figures"], 2)
    except ImportError:
        pass
    r["stages_ms"] = {k: round(x, 2) for k, x in st.items()}
    r["warm_end_to_end_ms"] = round(_ms(lambda: pipe.predict(clip), repeat), 1)

    folder = tmp / "folder"
    folder.mkdir()
    for i in range(clips):
        demo_clip(folder / f"{i}.mp4", seconds=10, size=(360, 640), seed=i)
    paths = sorted(folder.glob("*.mp4"))
    t = time.perf_counter()
    done = sum(1 for _, p in pipe.predict_many(paths, batch=batch) if not isinstance(p, Exception))
    r["batch_clips_per_s"] = round(done / (time.perf_counter() - t), 3)

    # the ceiling: the same backbones on already-decoded inputs of `batch` clips, same dtype
    # and the same chunking as the pipeline's (uavm.features)
    ctx, fmt = _fast(pipe.device, precision)
    ae, ve = pipe.extractors.get("audio"), pipe.extractors.get("video")
    xa = fb.t()[None, None].expand(batch, -1, -1, -1).to(pipe.device).contiguous(memory_format=fmt)
    xv = normalize_frames(torch.as_tensor(np.concatenate([frames] * batch)).to(pipe.device), pre.video)
    xv = xv.contiguous(memory_format=fmt)
    bs = 256 if pipe.device.type == "cuda" else 16

    @torch.no_grad()
    def backbone():
        with ctx:
            ae(xa)
            for i in range(0, len(xv), bs):
                ve(xv[i:i + bs])

    r["backbone_alone_clips_per_s"] = round(batch * 1000 / _ms(backbone, repeat), 3)
    r["end_to_end_over_backbone"] = round(r["batch_clips_per_s"] / r["backbone_alone_clips_per_s"], 3)
    r["peak_rss_mb"] = round(memory_mb().get("VmHWM", float("nan")), 1)
    if pipe.device.type == "cuda":
        r["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    r["threads"] = torch.get_num_threads()
    return r


def agreement(bundle_dir=None, size: str = "", device: str = "auto", precision: str = "auto", clips: int = 48,
              seed: int = 7, log=print) -> dict:
    """Does the chosen precision give fp32's answers? On the example clips and ``clips``
    generated ones (every class in turn): how many audio / video / fused top-1 agree, and
    the largest logit difference."""
    from ..assets import examples
    from ..bundle import load_bundle, random_bundle
    from ..demo import corpus
    from ..features import choose_precision
    from ..inference import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="uavm-agreement-"))
    if size:
        bundle_dir = random_bundle(tmp / "bundle", size=size)
    bundle = load_bundle(bundle_dir)
    fast, fp32 = Pipeline(bundle, device, precision), Pipeline(bundle, device, "fp32")
    chosen, why = choose_precision(fast.device, precision)
    paths = [str(p) for p in examples()]
    for i in range(clips):
        c = i % len(corpus.CLASSES)
        paths.append(str(tmp / f"clip{i:03d}.mp4"))
        corpus.make_clip(paths[-1], c, corpus.clip_seed(seed, "agreement", c, i))
    same = {m: 0 for m in ("audio", "video", "fused")}
    worst, top = 0.0, 0.0
    for n, path in enumerate(paths, 1):
        a, b = fast.predict(path), fp32.predict(path)
        for m in same:
            if b.logits.get(m) is None:
                continue
            same[m] += int(a.logits[m].argmax() == b.logits[m].argmax())
            worst = max(worst, float(np.abs(a.logits[m] - b.logits[m]).max()))
            top = max(top, float(np.abs(b.logits[m]).max()))
        if n % 10 == 0:
            log(f"{n}/{len(paths)} clips")
    return {"bundle": bundle.name, "device": str(fast.device), "precision": chosen, "precision_why": why, "clips": len(paths),
            "top1_equal_to_fp32": same, "max_logit_difference": round(worst, 5), "largest_logit": round(top, 3)}

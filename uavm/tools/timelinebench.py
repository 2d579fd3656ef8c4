"""The timeline on long clips (figures, not tests): a 10-minute 720p clip end to end, and an
hour-long clip's memory. Each timeline runs in a fresh process, so that its peak RSS (VmHWM)
is that run's alone; the decoder process reports its own.

    python -m uavm.tools.timelinebench [--bundle DIR] [--minutes 10] [--hour-minutes 60] [--json]

The clips are generated once per run in a temporary folder (and removed): H.264 (x264
ultrafast) with AAC, simple content (a moving box and tone bursts that change every 20 s).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(path, seconds: float, width: int, height: int, fps: float, sample_rate: int = 48000,
              layout: str = "stereo") -> str:
    """A long clip written frame by frame (never held whole): YUV planes drawn directly."""
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "30"}
        au = c.add_stream("aac", rate=sample_rate, layout=layout)
        channels = 2 if layout == "stereo" else 1
        yuv = np.empty((height * 3 // 2, width), np.uint8)
        hop, at = 1024, 0
        for i in range(int(seconds * fps)):
            t = i / fps
            scene = int(t // 20)
            yuv[:height] = 40 + (scene * 37) % 160
            x = int((width - width // 8) * (0.5 + 0.5 * np.sin(t)))
            yuv[height // 3: height // 3 + height // 6, x: x + width // 8] = 230
            yuv[height:] = 98 + (scene * 13) % 60
            for p in vs.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                c.mux(p)
            while at < (i + 1) / fps * sample_rate:
                f0 = 220 * (1 + int(at / sample_rate // 20) % 4)
                on = (at / sample_rate) % 2 < 1
                tone = (0.2 * on * np.sin(2 * np.pi * f0 * (at + np.arange(hop)) / sample_rate)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp", layout=layout)
                af.sample_rate, af.pts, af.time_base = sample_rate, at, Fraction(1, sample_rate)
                for p in au.encode(af):
                    c.mux(p)
                at += hop
        for s in (vs, au):
            for p in s.encode():
                c.mux(p)
    return str(path)


def measure(clip, bundle=None, stride: float = 5.0) -> dict:
    """One timeline in this process: time, memory, and an explorer move at a start off the stride."""
    import torch

    from ..bundle import load_bundle
    from ..clip import one_core_free
    from ..files import memory_mb
    from ..hub import resolve
    from ..inference import Pipeline

    t0 = time.perf_counter()
    pipe = Pipeline(load_bundle(resolve(None, bundle)), "cpu")
    loaded_mb = memory_mb().get("VmHWM", 0.0)
    t = time.perf_counter()
    tl = pipe.timeline(clip, stride=stride)
    r = {"clip": str(clip), "duration_s": round(tl.duration, 1), "windows": len(tl.windows),
         "timeline_s": round(time.perf_counter() - t, 2), "cold_s": round(time.perf_counter() - t0, 2),
         "stages_s": {k: round(v, 2) for k, v in tl.stats.items() if k.endswith("_s")},
         "peak_rss_mb": round(memory_mb().get("VmHWM", 0.0), 1), "rss_after_load_mb": round(loaded_mb, 1),
         "decoder_peak_rss_mb": round((tl.stats.get("decoder_mb") or {}).get("VmHWM", 0.0), 1),
         "waveform_on_disk": bool(tl.features._wave and tl.features._wave.spool.on_disk),
         "threads": torch.get_num_threads()}
    # the explorer moves its window to starts the timeline has no audio features for: features
    # from the kept waveform and grid, then the model; as called, then all of it with one core free
    for key, start, threads in (("explorer_move_s", 123 + 1 / 3, nullcontext()),
                                ("explorer_move_one_core_free_s", 223 + 2 / 3, one_core_free())):
        start = min(tl.duration - 1, start)
        t = time.perf_counter()
        with threads:
            f = tl.features.window(start)
            pipe.predict_features(f.audio, f.video, f.missing)
        r[key] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    pipe.predict(clip, start=start)
    r["one_window_predict_s"] = round(time.perf_counter() - t, 2)  # what a move cost before: a decode
    tl.features.close()
    return r


def _fresh(clip, bundle, stride) -> dict:
    """``measure`` in a new interpreter: its own peak RSS."""
    cmd = [sys.executable, "-m", "uavm.tools.timelinebench", "--measure", str(clip), "--stride", str(stride)]
    if bundle:
        cmd += ["--bundle", str(bundle)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(bundle=None, minutes: float = 10.0, hour_minutes: float = 60.0, stride: float = 5.0, log=print) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="uavm-timelinebench-"))
    try:
        r = {}
        t = time.perf_counter()
        clip = make_clip(tmp / "720p.mp4", minutes * 60, 1280, 720, 30)
        log(f"generated {minutes:g} min of 1280x720 30 fps H.264 + 48 kHz stereo AAC in {time.perf_counter() - t:.0f} s "
            f"({os.path.getsize(clip) / 2**20:.0f} MiB)")
        r["720p"] = _fresh(clip, bundle, stride)
        log(json.dumps(r["720p"]))
        os.unlink(clip)
        if hour_minutes:
            t = time.perf_counter()
            clip = make_clip(tmp / "long.mp4", hour_minutes * 60, 160, 90, 1, 16000, "mono")
            log(f"generated {hour_minutes:g} min of 160x90 1 fps H.264 + 16 kHz mono AAC in "
                f"{time.perf_counter() - t:.0f} s ({os.path.getsize(clip) / 2**20:.0f} MiB)")
            r["long"] = _fresh(clip, bundle, stride)
            log(json.dumps(r["long"]))
        return r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m uavm.tools.timelinebench", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", help="model bundle folder (default: the embedded demo)")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the 720p clip")
    p.add_argument("--hour-minutes", type=float, default=60.0, help="length of the long, small clip (0: skip it)")
    p.add_argument("--stride", type=float, default=5.0)
    p.add_argument("--measure", metavar="CLIP", help=argparse.SUPPRESS)  # one run, in a fresh process
    p.add_argument("--json", action="store_true", help="the figures as one JSON object at the end")
    a = p.parse_args(argv)
    if a.measure:
        print(json.dumps(measure(a.measure, a.bundle, a.stride)))
        return 0
    r = run(a.bundle, a.minutes, a.hour_minutes, a.stride, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(r, indent=None if a.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

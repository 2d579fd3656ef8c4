"""What a sweep costs against one predict (python -m uavm.tools.sweepbench [CLIP]): the
window decoded once and every level batched through the backbones; the issue's bound is a
6-level sweep within 3x one predict. Prints JSON with the machine's figures."""
from __future__ import annotations

import json
import statistics
import sys
import time


def measure(clip=None, repeat: int = 5) -> dict:
    import torch

    from ..assets import default_bundle, examples
    from ..bundle import load_bundle
    from ..inference import Pipeline

    clip = clip or str(examples()[0])
    pipe = Pipeline(load_bundle(default_bundle()), "cpu")
    pipe.predict(clip)  # warm: the first pass pays for allocations

    def ms(fn):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    one = ms(lambda: pipe.predict(clip))
    out = {"clip": clip, "threads": torch.get_num_threads(), "predict_ms": round(one, 1)}
    for kind, levels in (("audio_snr", [30, 20, 10, 0, -10, -20]), ("video_fps", [2, 1, 0.5, 0.25, 0.1, 0.05]),
                         ("video_size", [96, 64, 32, 16, 8, 4]), ("video_blur", [0.5, 1, 2, 4, 8, 16])):
        t = ms(lambda kind=kind, levels=levels: pipe.sweep(clip, kind, levels))
        out[f"sweep_{kind}_6_levels_ms"] = round(t, 1)
        out[f"sweep_{kind}_vs_predict"] = round(t / one, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else None), indent=1))

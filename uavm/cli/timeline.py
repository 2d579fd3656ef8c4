"""`uavm timeline`: a long clip window by window, what each modality hears and sees."""
from __future__ import annotations

import csv
import json
import math
import sys

from .options import DEVICE, add_bundle_options, bundle_of


def add(sub) -> None:
    s = sub.add_parser("timeline", help="audio-only, video-only and fused answers window by window over a long clip")
    s.add_argument("clip", metavar="CLIP", help="a media file, as long as you like (up to $UAVM_MAX_DURATION)")
    add_bundle_options(s)
    s.add_argument("--stride", type=float, default=5.0, metavar="SECONDS", help="between window starts")
    s.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="window length, at most the model's (default: the model's, 10 s; a shorter one is "
                        "analysed as a clip that long, padded as the model pads)")
    s.add_argument("--top-k", type=int, default=3, metavar="K", help="classes listed per window and pass")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object: clip, duration, windows, ...")
    out.add_argument("--csv", action="store_true", help="one row per window: each top-1, agree, missing")
    s.add_argument("--html", metavar="OUT.html", help="also write the timeline figure as a self-contained page")
    s.add_argument("--device", **DEVICE)
    s.set_defaults(fn=timeline)


def timeline(a) -> int:
    from ..bundle import load_bundle
    from ..files import progress, write_text
    from ..inference import Pipeline, check_top_k
    from ..timeline import check_timeline

    pipe = Pipeline(load_bundle(bundle_of(a)), a.device)
    # the parameters' one-line errors come before any decoding
    check_timeline(a.stride, a.window, pipe.pre.clip_seconds)
    check_top_k(a.top_k, len(pipe.bundle.labels))
    bar = {}

    def show(done, total):
        if "show" not in bar:
            bar["total"] = int(math.ceil(total)) if total else None
            bar["show"] = progress(bar["total"], "timeline", unit=" s")
        bar["show"](int(done) if bar["total"] is None else min(int(done), bar["total"]))

    tl = pipe.timeline(a.clip, a.stride, a.window, a.top_k, progress=show)
    if bar.get("total"):
        bar["show"](bar["total"])  # the line ends
    if a.html:
        from .. import figures, series

        write_text(a.html, figures.html(series.timeline(tl)))
    if a.json:
        print(json.dumps(tl.to_dict(), allow_nan=False), flush=True)
    elif a.csv:
        rows = tl.rows()
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["start"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        from ..errors import printable

        print(printable(f"{a.clip}: {tl.duration:.1f} s, {len(tl.windows)} windows of {tl.window:g} s every "
                        f"{tl.stride:g} s"))
        for w in tl.windows:
            cols = []
            for m in ("audio", "video", "fused"):
                top = w[m]["top"][0] if w[m] else None
                cols.append(f"{m} {printable(top['label'])} {top['score']:.2f}" if top else f"{m} -")
            agree = {True: "agree", False: "differ", None: ""}[w["agree"]]
            why = "; ".join(f"{m}: {r}" for m, r in w.get("missing", {}).items())
            print(f"{w['start']:8.1f} s  " + " | ".join(cols) + (f"  {agree}" if agree else "")
                  + (f"  ({why})" if why else "") + (f"  error: {w['error']}" if "error" in w else ""))
    return 0

"""Tools: bench, soak."""
from __future__ import annotations

import json
import sys

from .options import DEVICE, PRECISION, add_bundle_options, bundle_of


def add(sub) -> None:
    s = sub.add_parser("bench", help="per-stage timings, throughput and memory")
    add_bundle_options(s)
    s.add_argument("--size", choices=["tiny", "paper"], help="random weights of this size instead of a bundle "
                   "(paper: ConvNeXt-Base x 2, N = Ns = 3, 1024 wide)")
    s.add_argument("--device", **DEVICE)
    s.add_argument("--clips", type=int, default=8, help="clips in the throughput folder (with --explain: generated "
                   "clips with known event times for the finding; 0 skips it)")
    s.add_argument("--explain", action="store_true", help="`uavm explain` instead: its time on one clip, and how "
                   "often its peaks fall inside the events of generated clips (docs/explain.md)")
    s.add_argument("--where", action="store_true", help="with --explain: also how often the explanations of where "
                   "(frames) and which frequencies find the generated events' boxes and sounds, and how faithful "
                   "each explanation over time is (docs/explain.md)")
    s.add_argument("--seed", type=int, help="the generated clips' seed (with --explain, default 0; with --ood, "
                   "default 9: a seed no demo model was trained or fitted on)")
    s.add_argument("--repeat", type=int, default=5, help="timed repetitions of each stage")
    s.add_argument("--precision", **PRECISION)
    s.add_argument("--batch", type=int, default=0, help="clips per backbone pass (default 8 on a GPU, 1 on the CPU)")
    s.add_argument("--agreement", type=int, metavar="CLIPS", help="instead: compare --precision's answers with "
                   "fp32's on the example clips and CLIPS generated ones (top-1 agreement, largest logit difference)")
    s.add_argument("--compile", action="store_true", help="torch.compile the backbones (compile time in cold start)")
    s.add_argument("--ood", action="store_true", help="instead: the familiarity flag's false-alarm rate on --clips "
                   "generated clips per class of a seed nothing was fitted on, and its detection rate on the real "
                   "sounds and pictures of Debian's sound-theme-freedesktop, oxygen-sounds and wallpaper packages, "
                   "where installed (default: the three demo models)")
    s.add_argument("--page", action="store_true", help="instead: what a user waits for in the browser (launches the "
                   "app and Debian's chromium through Playwright; toggles = 4 x --repeat)")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(fn=bench)

    s = sub.add_parser("soak", help="load-test a fresh app on loopback and report its memory")
    s.add_argument("clips", nargs="*", help="clips to send (default: the example clips)")
    s.add_argument("--sequential", type=int, default=300, help="requests one after another")
    s.add_argument("--concurrent", type=int, default=8, help="clients at once")
    s.add_argument("--rounds", type=int, default=5, help="requests per concurrent client")
    s.add_argument("--fresh", type=int, default=300, help="one-shot clients, each a new session")
    s.set_defaults(fn=soak)


def _bundle(a):
    """The bundle to time: --bundle or --model, else none with --size, else the default."""
    return None if a.size and not (a.bundle or a.model) else bundle_of(a)


def bench(a) -> int:
    from ..tools.bench import run

    if a.explain:
        return bench_explain(a)
    if a.ood:
        return bench_ood(a)
    if a.agreement is not None:
        from ..tools.bench import agreement

        r = agreement(_bundle(a), a.size or "", a.device, a.precision,
                      a.agreement, log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(r) if a.json else json.dumps(r, indent=1))
        return 0
    if a.page:
        from ..tools.pagebench import run as page

        r = page(toggles=a.repeat * 4, device=a.device, log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(r) if a.json else json.dumps(r, indent=1))
        return 0
    r = run(_bundle(a), a.size or "", a.device, a.clips, a.repeat,
            a.precision, a.batch, compile=a.compile)
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    print(f"  {kk:28s} {vv}")
            else:
                print(f"{k:30s} {v}")
    return 0


def bench_explain(a) -> int:
    from pathlib import Path

    from ..assets import demo_bundles
    from ..errors import number
    from ..tools import explainbench

    clips = number("--clips", a.clips, lo=0, integer=True)
    log = (lambda msg: print(msg, file=sys.stderr)) if a.json else print
    r = {"timing": explainbench.timing(_bundle(a), a.size or "", a.device,
                                       a.repeat)}
    if not a.json:
        print(json.dumps(r["timing"], indent=1))
    if clips and not a.size:  # random weights explain nothing: no finding for them
        r["finding"] = explainbench.finding({Path(b).name: b for b in [_bundle(a)]} if a.bundle or a.model else demo_bundles(), clips, a.seed or 0,
                                            a.device, log)
        if not a.json:
            print(json.dumps(r["finding"], indent=1))
        if a.where:  # where in the frames, which bands, how faithful (uavm.tools.wherebench)
            from ..tools import wherebench

            r["where"] = wherebench.finding({Path(b).name: b for b in [_bundle(a)]} if a.bundle or a.model
                                            else demo_bundles(), clips, a.seed or 0, a.device, log)
            if not a.json:
                print(json.dumps(r["where"], indent=1))
    if a.json:
        print(json.dumps(r))
    return 0


def bench_ood(a) -> int:
    from pathlib import Path

    from ..assets import demo_bundles
    from ..errors import number
    from ..tools import oodbench

    clips = number("--clips", a.clips, lo=1, hi=200, integer=True)
    bundles = {Path(b).name: b for b in [_bundle(a)]} if a.bundle or a.model else demo_bundles()
    r = oodbench.run(bundles, clips, oodbench.UNSEEN_SEED if a.seed is None else a.seed, a.device,
                     log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(r) if a.json else oodbench.table(r))
    return 0


def soak(a) -> int:
    from ..assets import examples
    from ..tools.soak import soak

    print(json.dumps(soak(a.clips or [str(c) for c in examples()], a.sequential, a.concurrent, a.rounds, a.fresh),
                     indent=1))
    return 0

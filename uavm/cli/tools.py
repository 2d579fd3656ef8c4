"""Tools and the app: bench, soak, app."""
from __future__ import annotations

import json
import sys

from .options import DEVICE


def add(sub) -> None:
    s = sub.add_parser("bench", help="per-stage timings, throughput and memory")
    s.add_argument("--bundle", help="a bundle (default: the demo UAVM)")
    s.add_argument("--size", choices=["tiny", "paper"], help="random weights of this size instead of a bundle "
                   "(paper: ConvNeXt-Base x 2, N = Ns = 3, 1024 wide)")
    s.add_argument("--device", **DEVICE)
    s.add_argument("--clips", type=int, default=8, help="clips in the throughput folder")
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    s.add_argument("--batch", type=int, default=0, help="clips per backbone pass (default 8 on a GPU, 1 on the CPU)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=bench)

    s = sub.add_parser("soak", help="load-test a fresh app on loopback and report its memory")
    s.add_argument("clips", nargs="*", help="clips to send (default: the example clips)")
    s.add_argument("--sequential", type=int, default=300)
    s.add_argument("--concurrent", type=int, default=8)
    s.add_argument("--rounds", type=int, default=5, help="requests per concurrent client")
    s.add_argument("--fresh", type=int, default=300, help="one-shot clients, each a new session")
    s.set_defaults(fn=soak)

    sub.add_parser("app", help="launch the browser app (uavm app --help)", add_help=False)


def bench(a) -> int:
    from ..assets import default_bundle
    from ..tools.bench import run

    r = run(a.bundle or (None if a.size else default_bundle()), a.size or "", a.device, a.clips, a.repeat,
            a.precision, a.batch)
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


def soak(a) -> int:
    from ..assets import examples
    from ..tools.soak import soak

    print(json.dumps(soak(a.clips or [str(c) for c in examples()], a.sequential, a.concurrent, a.rounds, a.fresh),
                     indent=1))
    return 0


def app(argv: list) -> int:
    # the app sits above the library: this is the one place that imports it
    try:
        from ..app import main as app_main
    except ImportError as e:
        print(f"uavm: the app needs its extras: pip install 'uavm[app]' ({e})", file=sys.stderr)
        return 1
    app_main(argv)
    return 0

"""Commands on models: import-official, download, init."""
from __future__ import annotations

from pathlib import Path


def add(sub) -> None:
    s = sub.add_parser("import-official", help="convert the authors' released .pth files into a bundle")
    s.add_argument("--model", required=True, metavar="FILE.pth")
    s.add_argument("--audio-extractor", metavar="FILE.pth")
    s.add_argument("--video-extractor", metavar="FILE.pth")
    s.add_argument("--labels", metavar="CSV")
    s.add_argument("--dataset", choices=["vggsound", "audioset"])
    s.add_argument("--num-heads", type=int, default=4, help="attention heads (not stored in the files; 4 in the release)")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=import_official)

    s = sub.add_parser("download", help="fetch the authors' released files (needs a network)")
    s.add_argument("name", help="'all' or one of the release names (see uavm.official.RELEASE)")
    s.add_argument("--cache", help="folder (default $UAVM_CACHE or ~/.cache/uavm)")
    s.set_defaults(fn=download)

    s = sub.add_parser("init", help="write a randomly initialised bundle (for tests and benchmarks)")
    s.add_argument("--out", required=True)
    s.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=init)


def import_official(a) -> int:
    from ..official import import_official

    import_official(a.model, a.out, audio_extractor=a.audio_extractor, video_extractor=a.video_extractor,
                    labels=a.labels, dataset=a.dataset, num_heads=a.num_heads)
    return 0


def download(a) -> int:
    from ..official import download

    download(a.name, Path(a.cache) if a.cache else None)
    return 0


def init(a) -> int:
    from ..bundle import random_bundle

    out = random_bundle(a.out, size=a.size, seed=a.seed)
    print(f"wrote a randomly initialised {a.size} bundle to {out}")
    return 0

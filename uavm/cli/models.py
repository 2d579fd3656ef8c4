"""Commands on models: models, download, push, import-official, init."""
from __future__ import annotations

import json

from ..errors import UAVMError

CACHE = dict(help="folder (default $UAVM_CACHE or ~/.cache/uavm)")


def add(sub) -> None:
    s = sub.add_parser("models", help="the models by name: what each is, its size, whether it is cached")
    s.add_argument("--json", action="store_true", help="one JSON object per model, one per line")
    s.add_argument("--cache", **CACHE)
    s.set_defaults(fn=models)

    s = sub.add_parser("download", help="fetch (or --verify) the authors' released files in the cache")
    s.add_argument("name", nargs="?", help="a model name (its four files), a release file name "
                   "(see uavm.official.RELEASE), or 'all'; with --verify, default: the whole cache")
    s.add_argument("--cache", **CACHE)
    s.add_argument("--mirror", metavar="URL", help="fetch from http(s)://BASE/, file:///DIR or a folder holding "
                   "the files under their release file names, and nowhere else (default $UAVM_MIRROR, else "
                   "the release's URLs)")
    s.add_argument("--verify", action="store_true", help="fetch nothing: check every cached file against the "
                   "SHA-256 recorded at its download, and every converted model against its SHA256SUMS")
    s.set_defaults(fn=download)

    s = sub.add_parser("push", help="upload a self-contained copy of a bundle to a Hugging Face Hub repository")
    s.add_argument("bundle", metavar="BUNDLE", help="bundle folder (or a model name, e.g. a converted vggsound-uavm)")
    s.add_argument("repo", metavar="ORG/NAME", help="the Hub repository (created if need be)")
    s.add_argument("--private", action="store_true", help="create the repository as private")
    s.add_argument("--message", help="commit message")
    s.set_defaults(fn=push)

    s = sub.add_parser("import-official", help="convert the authors' released .pth files into a bundle")
    s.add_argument("--model", required=True, metavar="FILE.pth", help="the authors' model checkpoint")
    s.add_argument("--audio-extractor", metavar="FILE.pth", help="the audio ConvNeXt checkpoint (for clips)")
    s.add_argument("--video-extractor", metavar="FILE.pth", help="the video ConvNeXt checkpoint (for clips)")
    s.add_argument("--labels", metavar="CSV", help="the label list (index,mid,display_name)")
    s.add_argument("--dataset", choices=["vggsound", "audioset"], help="the preprocessing of this dataset (default: told by the checkpoint)")
    s.add_argument("--num-heads", type=int, default=4, help="attention heads (not stored in the files; 4 in the release)")
    s.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to write")
    s.set_defaults(fn=import_official)

    s = sub.add_parser("init", help="write a randomly initialised bundle (for tests and benchmarks)")
    s.add_argument("--out", required=True, metavar="DIR", help="the bundle folder to write")
    s.add_argument("--size", choices=["tiny", "paper"], default="tiny", help="tiny for tests, paper: the paper's sizes")
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    s.set_defaults(fn=init)


def models(a) -> int:
    from ..hub import cache_dir, catalog
    from ..settings import settings

    rows = catalog(a.cache)
    if a.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    hub_row = {"name": "hf-hub:ORG/NAME", "status": "", "size": "",
               "what": "a uavm bundle in a Hugging Face Hub repository (uavm push makes one)"}
    rows.append(hub_row)
    w = {k: max(len(k), *(len(r[k]) for r in rows)) + 2 for k in ("name", "status", "size")}
    print(f"{'NAME':{w['name']}}{'STATUS':{w['status']}}{'SIZE':{w['size']}}WHAT")
    for r in rows:
        print(f"{r['name']:{w['name']}}{r['status']:{w['status']}}{r['size']:{w['size']}}{r['what']}")
    print(f"\ncache: {cache_dir(a.cache)}; files come from {settings().mirror or 'the release URLs'} "
          f"($UAVM_MIRROR or --mirror to change)")
    return 0


def download(a) -> int:
    from ..hub import download, verify

    if a.verify:
        verify(a.cache, a.name)
    elif not a.name:
        raise UAVMError("name a model, a release file or 'all' (or give --verify)")
    else:
        download(a.name, a.cache, a.mirror)
    return 0


def push(a) -> int:
    from ..hub import is_name, push, resolve

    bundle = resolve(a.bundle) if is_name(a.bundle) else a.bundle
    print(push(bundle, a.repo, private=a.private, message=a.message))
    return 0


def import_official(a) -> int:
    from ..official import import_official

    import_official(a.model, a.out, audio_extractor=a.audio_extractor, video_extractor=a.video_extractor,
                    labels=a.labels, dataset=a.dataset, num_heads=a.num_heads)
    return 0


def init(a) -> int:
    from ..bundle import random_bundle

    out = random_bundle(a.out, size=a.size, seed=a.seed)
    print(f"wrote a randomly initialised {a.size} bundle to {out}")
    return 0

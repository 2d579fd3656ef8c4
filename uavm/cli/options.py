"""Command-line options made from the dataclasses they configure: one option per field,
its type and default from the field, its help from the field's metadata."""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields


def add_fields(parser: argparse.ArgumentParser, cls, names, defaults: dict | None = None) -> None:
    """``--field-name`` for each of ``names`` (a True boolean becomes ``--no-field-name``); the
    help formatter (``uavm.cli.Help``) adds the defaults."""
    by_name = {f.name: f for f in fields(cls)}
    for name in names:
        f = by_name[name]
        default = (defaults or {}).get(name, f.default if f.default is not MISSING else None)
        flag = "--" + name.replace("_", "-")
        help = f.metadata.get("help", name.replace("_", " "))
        if isinstance(default, bool):
            if default:
                parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false",
                                    help=f"turn off: {help}")
            else:
                parser.add_argument(flag, action="store_true", help=help)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=type(default[0]), nargs=len(default), default=default, help=help)
        else:
            kind = type(f.default) if f.default is not MISSING and f.default is not None else str
            parser.add_argument(flag, type=kind, default=default, choices=f.metadata.get("choices"), help=help)


def field_values(args, cls, names) -> dict:
    """The parsed values of ``names`` (those given a value) as keyword arguments of ``cls``."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


DEVICE = dict(default="auto", choices=["auto", "cpu", "cuda"], help="where the networks run (default: a GPU if any)")
PRECISION = dict(default="auto", choices=["auto", "fp32", "bf16"],
                 help="backbone arithmetic (auto: bf16 autocast and channels-last on a GPU and on a CPU with native "
                      "bf16 units, AMX or AVX512-BF16; fp32 elsewhere; fp32 reproduces released features exactly)")


def add_bundle_options(parser: argparse.ArgumentParser) -> None:
    """--bundle DIR or --model NAME (and where named models are fetched from)."""
    parser.add_argument("--bundle", help="model bundle folder")
    parser.add_argument("--model", metavar="NAME", help="a model by name (`uavm models` lists them; "
                        "hf-hub:ORG/NAME for a Hub repository); fetched and converted on first use; default: "
                        "the embedded demo UAVM, or $UAVM_BUNDLE")
    parser.add_argument("--mirror", metavar="URL", help="fetch named models' files from http(s)://BASE/, "
                        "file:///DIR or a folder, and nowhere else (default $UAVM_MIRROR, else the authors' release)")


def bundle_of(args):
    """The bundle folder the options name (see ``uavm.hub.resolve``)."""
    from ..hub import resolve

    return resolve(getattr(args, "model", None), getattr(args, "bundle", None), getattr(args, "mirror", None))


def add_degrade_options(parser: argparse.ArgumentParser, levels: bool = True) -> None:
    """What a request may change of a clip's media: the sources, degradations, the weight."""
    parser.add_argument("--audio-from", metavar="CLIP", help="take the audio from this clip instead (each pass then "
                        "answers exactly as on its own source)")
    parser.add_argument("--video-from", metavar="CLIP", help="take the video from this clip instead")
    if levels:
        parser.add_argument("--audio-snr", type=float, metavar="DB", help="white noise over the sound at this "
                            "signal-to-noise ratio (dB)")
        parser.add_argument("--video-blur", type=float, metavar="SIGMA", help="Gaussian blur, sigma in pixels of the "
                            "model's frames")
        parser.add_argument("--video-size", type=int, metavar="PX", help="the picture's shorter side down to PX and "
                            "back")
        parser.add_argument("--video-fps", type=float, metavar="F", help="frames held as a stream at F fps would")
    parser.add_argument("--degrade-span", type=float, nargs=2, metavar=("FROM", "TO"),
                        help="degrade only this span (clip seconds; default: the whole window)")
    parser.add_argument("--seed", type=int, default=0, help="the noise's seed")


def degrade_of(args):
    """The options' ``uavm.degrade.Degrade`` (None when nothing is degraded), checked."""
    from ..degrade import KINDS, Degrade

    return Degrade.checked(span=args.degrade_span, seed=args.seed, **{k: getattr(args, k, None) for k in KINDS})


def err(msg: str) -> None:
    """One line on stderr; control characters of file or label names shown as escapes."""
    from ..errors import printable

    print(f"uavm: {printable(msg)}", file=sys.stderr, flush=True)


def clip_failed(clip, e: Exception, as_json: bool) -> None:
    """One clip's problem, reported where the others' answers go; the command goes on."""
    import json

    from ..errors import one_line

    msg = one_line(e)
    err(msg)
    if as_json:
        print(json.dumps({"clip": str(clip), "error": msg}), flush=True)

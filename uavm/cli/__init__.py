"""The ``uavm`` command line: the top floor. Every command is a thin layer over the
library; bad input (``UAVMError``) is one line on stderr and exit 1, anything else is a
bug: one line pointing at ``--debug``, or the traceback with it."""
from __future__ import annotations

import argparse
import sys

from ..errors import UAVMError, one_line
from . import clips, explain, models, research, timeline, tools


def err(msg: str) -> None:
    print(f"uavm: {msg}", file=sys.stderr, flush=True)


def clip_failed(clip, e: Exception, as_json: bool) -> None:
    """One clip's problem, reported where the others' answers go; the command goes on."""
    import json

    from ..errors import one_line

    msg = one_line(e)
    err(msg)
    if as_json:
        print(json.dumps({"clip": str(clip), "error": msg}), flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uavm", description="UAVM: unified audio-visual model (Gong et al. 2022)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in (clips, explain, models, research, timeline, tools):
        module.add(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[:1]
    if argv[:1 + debug][-1:] == ["app"]:  # the app parses its own options
        return tools.app(argv[1 + debug:])
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except UAVMError as e:
        err(one_line(e))
        return 1
    except OSError as e:  # the user's file system: a folder not writable, a disk full
        err(f"{e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or one_line(e)}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if a.debug:
            raise
        err(f"internal error ({type(e).__name__}: {one_line(e)}); run with `uavm --debug ...` for the traceback")
        return 70


if __name__ == "__main__":
    sys.exit(main())

"""The ``uavm`` command line: the top floor. Every command is a thin layer over the
library; bad input (``UAVMError``) is one line on stderr and exit 1, anything else is a
bug: one line pointing at ``--debug``, or the traceback with it."""
from __future__ import annotations

import argparse
import sys

from ..errors import UAVMError, one_line
from . import app, clips, explain, models, research, timeline, tools
from .options import clip_failed, err  # noqa: F401 (the commands' one-line reports)


class Help(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (action.option_strings and "default" not in text and not any(d is x for x in (None, False, True))
                and d is not argparse.SUPPRESS and d != []):
            shown = " ".join(map(str, d)) if isinstance(d, (tuple, list)) else d
            text += f" (default: {shown})"
        return text.replace("%", "%%")


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", Help)
        super().__init__(*args, **kw)

    def error(self, message):
        """A usage error is one line and exit 1, like every other failure."""
        self.exit(1, f"{self.prog}: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    from dataclasses import fields

    from ..settings import Settings

    env = "\n".join(f"  {f.metadata['env']:22s} {f.metadata['help']}"
                     + ("" if f.default is None or "default" in f.metadata["help"] else f" (default: {f.default:g})"
                        if isinstance(f.default, float) else f" (default: {int(f.default)})")
                     for f in fields(Settings))
    p = Parser(prog="uavm", description="UAVM: unified audio-visual model (Gong et al. 2022). "
               "`uavm COMMAND --help` says more about each command.",
               epilog=f"environment variables:\n{env}", formatter_class=_EpilogHelp)
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=Parser)
    for module in (clips, explain, timeline, models, research, tools, app):
        module.add(sub)
    return p


class _EpilogHelp(Help, argparse.RawDescriptionHelpFormatter):
    """The environment variables listed one per line."""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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

"""The one error base for bad input, and the checks that raise it.

``UAVMError`` means "the input is wrong, and the message (one line) says how": a file
that cannot be decoded, a bundle that does not load, a parameter out of range. The CLI
and the app catch it and show the message. Anything else that escapes is a bug and
keeps its traceback.
"""
from __future__ import annotations

import math
import numbers

MAX_MESSAGE = 600  # characters: a message is one line a person reads, never a client's value echoed whole


class UAVMError(Exception):
    """Bad input; ``str(e)`` is one line that says what is wrong."""

    def __init__(self, message: str = ""):
        # one line, whatever the caller built: a newline would break the CLI's and the app's messages;
        # and a short one: a client's 10 MB value must not come back (or reach a log) whole
        message = " ".join(str(message).split()) or type(self).__name__
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 1] + "…"
        super().__init__(message)


def shorten(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: how a message names a client's value."""
    r = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit else repr(value[:4 * limit])
    return r if len(r) <= limit else r[:limit - 1] + "…"


def printable(text) -> str:
    """``text`` with control characters (newlines, ANSI escapes, a terminal's title codes)
    written as escapes: what a terminal may be shown of a file name or a label."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


class InputError(UAVMError):
    """A parameter out of its range or of the wrong type."""


def one_line(e: BaseException) -> str:
    """An exception as one line of text, never empty, never longer than ``MAX_MESSAGE``."""
    lines = str(e).strip().splitlines()
    line = lines[0].strip() if lines and lines[0].strip() else type(e).__name__
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE - 1] + "…"


def number(name: str, value, lo=None, hi=None, integer: bool = False, error=InputError):
    """``value`` as an int or a finite float in [lo, hi], or ``error`` naming ``name``.
    Booleans and strings are not numbers here."""
    kind = "a whole number" if integer else "a finite number"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if integer and ok and not isinstance(value, numbers.Integral):
        ok = float(value).is_integer()  # 5.0 from a JSON client is the whole number 5
    if not ok:
        raise error(f"{name} must be {kind}{_range(lo, hi)}, got {shorten(value)}")
    value = int(value) if integer else float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise error(f"{name} must be {kind}{_range(lo, hi)}, got {shorten(value)}")
    return value


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" >= {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def flag(name: str, value, error=InputError) -> bool:
    """A strict boolean: True or False, nothing that merely looks like one."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {shorten(value)}")
    return value

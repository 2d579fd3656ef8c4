"""Decoding where a crash cannot take the caller down: each job (one window, the facts of a
file, a whole clip as a stream) runs in a child process under a memory cap and a time limit.

The child tells the file's problems (``input_errors``: a one-line MediaError for the caller)
from bugs in the decoding code: the parent logs a bug's traceback (logger "uavm") and raises
a one-line UAVMError that says it is internal, never a MediaError blaming the file.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import types
from typing import Optional

from .. import work
from ..errors import UAVMError
from ..files import memory_mb
from ..settings import settings
from .gate import Limits, MediaError, MediaInfo, checked_probe, regular_file
from .stream import stream_clip
from .window import Window, read_window

log = logging.getLogger("uavm")


def input_errors() -> tuple:
    """The exceptions that mean "this file cannot be decoded": ours for bad input (MediaError
    among them), FFmpeg's through PyAV, decord's, and reading the file (OSError). Anything
    else that escapes a decoder is a bug in this code, and is told as one."""
    kinds = [UAVMError, OSError]
    try:
        import av

        kinds.append(av.error.FFmpegError)
    except Exception:  # (ImportError, or a library that does not load)
        pass
    try:
        import decord

        kinds += [decord.DECORDError, decord.DECORDLimitReachedError]
    except Exception:
        pass
    return tuple(kinds)


def _child(conn, fn, args, kwargs, memory_mb):
    try:
        import resource

        mapped = memory_mb_now()
        cap = max(memory_mb << 20, int(mapped * 2**20) + (256 << 20))  # never below what is mapped + 256 MiB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass
    if settings().decode_debug:
        print(f"decoder {os.getpid()}: {memory_mb_now():.0f} MiB mapped before the cap", file=sys.stderr)
    try:
        result = _JOBS[fn](*args, **kwargs)
        if isinstance(result, types.GeneratorType):  # a stream: each item as it comes (send waits for
            for item in result:                        # the parent to take it), then the end
                conn.send(("item", item))
            result = None
        conn.send(("ok", result))
    except MediaError as e:
        conn.send(("media", str(e)))
    except MemoryError:
        conn.send(("media", f"{args[0]}: decoding needed more than {memory_mb} MiB"))
    except input_errors() as e:  # still the file's problem, said in one line
        conn.send(("media", _cannot(args[0], e)))
    except Exception:  # a bug in the decoding code, not the file's problem: its traceback goes to the parent
        conn.send(("bug", traceback.format_exc()))
    except BaseException as e:  # an interrupt: said in one line
        conn.send(("media", _cannot(args[0], e)))
    finally:
        conn.close()


def _cannot(path, e: BaseException) -> str:
    return f"{path}: cannot be decoded ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"


def _failed(path, kind: str, value) -> UAVMError:
    """The error a child's answer other than a result stands for: the file's problem (a
    MediaError with the child's message), or a bug (logged with the child's traceback)."""
    if kind == "bug":
        log.error("a bug in the decoder of %s:\n%s", path, value)
        return UAVMError(f"internal error while decoding {path} (see the server log)")
    return MediaError(value)


def memory_mb_now() -> float:
    return memory_mb().get("VmSize", 0.0)


_JOBS = {"read_window": read_window, "probe": checked_probe, "stream_clip": stream_clip}
_CTX = None
_START = None  # a lock: starting a decoder briefly hides the parent's __main__ (see _start)


def _start(proc) -> None:
    """Start a decoder without the parent's ``__main__``. multiprocessing would re-run the
    parent's script in the child (a script without a ``__main__`` guard would run again,
    ``python - <<EOF`` would fail to find ``<stdin>``); the decoder needs nothing from it."""
    global _START
    import threading

    if _START is None:
        _START = threading.Lock()
    main = sys.modules.get("__main__")
    with _START:
        saved = {k: main.__dict__.pop(k) for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
        try:
            if main is not None and "__spec__" in saved:
                main.__spec__ = None
            proc.start()
        finally:
            if main is not None:
                main.__dict__.update(saved)


def _context():
    global _CTX
    if _CTX is None:
        import multiprocessing as mp

        # forkserver: a clean, small parent to fork decoders from (no threads, no model)
        _CTX = mp.get_context("forkserver")
        # the libraries are mapped before the child caps its address space
        _CTX.set_forkserver_preload(["uavm.media", "av", "decord"])
    return _CTX


def _spawn(fn: str, path, args: tuple, limits: Limits):
    """A child process running ``_JOBS[fn](path, *args, limits=limits)`` under the memory cap,
    and the end of the pipe its answers come through."""
    regular_file(path)  # cheap refusals need no process
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, daemon=True,
                       args=(child, fn, (str(path), *args), {"limits": limits}, limits.memory_mb))
    _start(proc)
    child.close()
    return proc, parent


def _crashed(path, proc) -> MediaError:
    proc.join(5)
    code = proc.exitcode
    why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return MediaError(f"{path}: the decoder crashed on this file ({why})")


def _stop(proc, parent) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(5)
    parent.close()


def _isolated(fn: str, path, args: tuple, limits: Limits):
    """``_JOBS[fn](path, *args, limits=limits)`` in a child process with a time limit and a
    memory cap: a decoder that crashes, hangs or balloons on a hostile file costs that file only."""
    proc, parent = _spawn(fn, path, args, limits)
    try:
        if not work.wait(parent.poll, limits.timeout_s):  # (a client that leaves stops it: work.Cancelled)
            raise MediaError(f"{path}: decoding took longer than {limits.timeout_s:g} s and was stopped")
        kind, value = parent.recv()
    except EOFError:
        raise _crashed(path, proc) from None
    finally:
        _stop(proc, parent)
    if kind != "ok":
        raise _failed(path, kind, value)
    return value


def _isolated_stream(fn: str, path, args: tuple, limits: Limits, unit: float):
    """The items of the generator ``_JOBS[fn](path, *args, limits=limits)``, run in a child
    process under the memory cap, as they arrive. A stream cannot have one time limit, so it
    gets two: each item within ``limits.timeout_s`` (a stalled decoder), and all of them within
    ``limits.timeout_s`` per ``unit`` seconds of media delivered, plus one (a decoder too slow
    for the clip). Only the time spent waiting for the child counts: not the caller's work
    between items. Closing the generator stops the child."""
    proc, parent = _spawn(fn, path, args, limits)
    waited, media_s = 0.0, 0.0
    try:
        while True:
            left = limits.timeout_s * (1 + media_s / unit) - waited
            t = time.monotonic()
            if not work.wait(parent.poll, max(min(limits.timeout_s, left), 0)):
                if left < limits.timeout_s:  # the budget for the whole stream ran out first
                    raise MediaError(f"{path}: decoding was slower than {limits.timeout_s:g} s per {unit:g} s of "
                                     f"media ({waited + max(left, 0):.3g} s for {media_s:g} s) and was stopped")
                raise MediaError(f"{path}: the decoder sent nothing for {limits.timeout_s:g} s and was stopped")
            kind, value = parent.recv()
            waited += time.monotonic() - t
            if kind == "ok":
                return
            if kind != "item":
                raise _failed(path, kind, value)
            media_s = max(media_s, float(getattr(value, "until", 0.0)))
            yield value
    except EOFError:
        raise _crashed(path, proc) from None
    finally:
        _stop(proc, parent)


def decode_window(path, start: float, seconds: float, sample_rate: int, fps: float, short_side: int,
                  audio: bool = True, video: bool = True, limits: Optional[Limits] = None) -> Window:
    """``read_window`` in an isolated child process (see ``_isolated``); by default within the
    limits of the environment."""
    limits = Limits.from_env() if limits is None else limits
    if not limits.isolate:
        return read_window(path, start, seconds, sample_rate, fps, short_side, audio, video, limits)
    return _isolated("read_window", path, (start, seconds, sample_rate, fps, short_side, audio, video), limits)


def decode_stream(path, sample_rate: int, fps: float, short_side: int, window: float = 10.0,
                  chunk_seconds: float = 5.0, audio: bool = True, video: bool = True,
                  limits: Optional[Limits] = None):
    """``stream_clip`` in an isolated child process (see ``_isolated_stream``; ``window``, the
    model's window in seconds, is the unit of its time budget): the MediaInfo, then the Chunks
    as they decode. Close it (``contextlib.closing``) to stop the decoder early. By default
    within the limits of the environment."""
    limits = Limits.from_env() if limits is None else limits
    args = (sample_rate, fps, short_side, chunk_seconds, audio, video)
    if not limits.isolate:
        return stream_clip(path, *args, limits=limits)
    return _isolated_stream("stream_clip", path, args, limits, window)


def probe_isolated(path, limits: Optional[Limits] = None) -> MediaInfo:
    """``probe`` (and the limits) in an isolated child process: what a server asks of an
    upload before decoding it goes through the same door as the decoding. By default within
    the limits of the environment."""
    limits = Limits.from_env() if limits is None else limits
    if not limits.isolate:
        return checked_probe(path, limits)
    return _isolated("probe", path, (), limits)

"""One helper per file mechanism: atomic writes, content hashes, a progress line, and a
process's memory. Light on purpose: the decoder processes import it."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic(path):
    """A temporary name beside ``path`` (with its suffix, for writers that add one) for the
    block to write to: renamed over ``path`` when the block succeeds, removed when it
    fails. So a file that exists is complete; a killed run never leaves half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj, indent: int = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def progress(total: int | None, desc: str = "", enabled: bool | None = None, unit: str = ""):
    """-> ``show(done, note="")`` drawing one line on stderr: a bar when ``total`` is known,
    a count otherwise, and the rate. Silent unless stderr is a terminal (or ``enabled``)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return lambda done, note="": None
    t0, width = time.time(), 30

    def show(done, note=""):
        rate = done / max(time.time() - t0, 1e-9)
        if total:
            bar = "#" * int(width * min(done / total, 1)) + "." * (width - int(width * min(done / total, 1)))
            line = f"{desc} [{bar}] {done}/{total}{unit}"
        else:
            line = f"{desc} {done}{unit}"
        end = "\n" if total and done >= total else ""
        print(f"\r{line}, {rate:.2f}{unit or ''}/s {note}".rstrip(), end=end, file=sys.stderr, flush=True)
    return show


def memory_mb(pid="self") -> dict:
    """A process's memory from /proc (Linux): resident (VmRSS), its peak (VmHWM) and the
    address space mapped (VmSize), in MiB; empty where /proc is not there."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("VmRSS", "VmHWM", "VmSize"):
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out

"""What the app cleans, on a schedule and at exit: the files it wrote, the uploads nobody has
used for an hour, what dropped uploads left behind, idle sessions, expired logins.

Nothing is evicted to make room (a new upload past the cap is refused at the door,
``guard.py``), and an upload in use is never removed: each use marks it (``Uploads.check``),
and only an hour after the last use does it go.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time

log = logging.getLogger("uavm.app")


def remove_old(root: str, older_than: float, keep_top=None) -> int:
    """Delete the regular files under ``root`` not modified for ``older_than`` seconds (and
    folders left empty); ``keep_top``: names directly in ``root`` left alone -> bytes freed."""
    freed, now = 0, time.time()
    if not os.path.isdir(root):
        return 0
    for dirpath, _, names in os.walk(root, topdown=False):
        for n in names:
            p = os.path.join(dirpath, n)
            if keep_top and dirpath == root and n in keep_top:
                continue
            try:
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
                    os.unlink(p)
                    freed += st.st_size
            except OSError:
                pass
        if dirpath != root:
            try:
                os.rmdir(dirpath)  # only when empty
            except OSError:
                pass
    return freed


class Janitor:
    """A daemon thread that runs ``sweep`` every ``every`` seconds (and once at exit)."""

    def __init__(self, server, upload_dir: str, upload_keep: float, workdir_keep: float = 1800.0,
                 partial_keep: float = 60.0, every: float = 15.0, blocks=None):
        self.server, self.upload_dir, self.blocks = server, upload_dir, blocks
        self.upload_keep, self.workdir_keep, self.partial_keep, self.every = (upload_keep, workdir_keep,
                                                                              partial_keep, every)
        self._stop = threading.Event()

    def sweep(self) -> dict:
        s, out = self.server, {}
        app = getattr(self.blocks, "server_app", None) or getattr(self.blocks, "app", None)
        out["sessions"] = s.sessions.sweep(getattr(app, "state_holder", None) or getattr(self.blocks, "state_holder",
                                                                                          None),
                                           getattr(self.blocks, "_queue", None))
        # uploads an hour after their last use; files directly in the upload folder are what a
        # dropped upload left (Gradio moves finished ones into a folder of their own)
        out["live"] = s.live.sweep() if hasattr(s, "live") else 0  # live windows without a push for IDLE_S
        out["uploads"] = remove_old(self.upload_dir, self.upload_keep)
        out["partial"] = self._partial()
        out["written"] = remove_old(s.workdir, self.workdir_keep)
        tokens = getattr(app, "tokens", None)
        out["logins"] = tokens.sweep() if hasattr(tokens, "sweep") else 0
        return out

    def _partial(self) -> int:
        freed, now = 0, time.time()
        try:
            names = os.listdir(self.upload_dir)
        except OSError:
            return 0
        for n in names:
            p = os.path.join(self.upload_dir, n)
            try:
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > self.partial_keep:
                    os.unlink(p)
                    freed += st.st_size
            except OSError:
                pass
        return freed

    def start(self) -> None:
        def loop():
            while not self._stop.wait(self.every):
                try:
                    done = self.sweep()
                    if any(done.values()):
                        log.info("janitor: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
                except Exception:  # the janitor must outlive a surprise in one sweep
                    log.exception("janitor sweep failed")
        threading.Thread(target=loop, daemon=True, name="uavm-janitor").start()

    def close(self) -> None:
        """At exit: stop, and remove everything the app wrote."""
        self._stop.set()
        shutil.rmtree(self.server.workdir, ignore_errors=True)

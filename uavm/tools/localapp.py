"""`uavm app` started as a user starts it, on a free loopback port, for the tools that
measure it (soak, pagebench) and the tests that drive it: its output in a log file, its
uploads in its own folder, no telemetry."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalApp:
    """``python -m uavm app --port P --device DEVICE ARGS`` (or ``command`` for ``python -m
    uavm``, e.g. an installed ``uavm`` script) in a process of its own; ``log`` holds its
    output, ``started_s`` how long it took to serve the page. A context manager."""

    def __init__(self, work_dir, *args, device: str = "cpu", env=None, wait: bool = True, timeout: float = 180,
                 cwd=None, command=None):
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = work_dir / f"app-{self.port}.log"
        t0 = time.time()
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(
                [*(command or [sys.executable, "-m", "uavm"]), "app", "--port", str(self.port), "--device", device, *map(str, args)],
                cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                # uploads in this run's own folder, never a shared /tmp/gradio
                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(work_dir / "uploads"),
                     **(env or {})})
        if wait:
            self.wait(timeout)
        self.started_s = time.time() - t0

    def wait(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except urllib.error.HTTPError:  # e.g. 401 behind a login: it is up
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the app exited:\n" + self.log.read_text()) from None
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the app did not start in {timeout:g} s:\n" + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

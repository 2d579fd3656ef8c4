"""The UAVM missing-modality explorer: a Gradio app over ``uavm.explore``.

``app/`` draws; ``uavm/`` thinks. Every request goes through one shared Explorer per
model (content-keyed caches), so toggling a modality or changing the layer reuses the
decoded clip and its features. Installed as ``uavm.app``; ``uavm app`` launches it.

    layout.py   the page's components and events (build_app)
    page.py     what each event does: Settings -> outputs by name
    tabs.py     the other results tabs (Sweep, Compare, Heard and seen, Export)
    api.py      the HTTP API (/predict, /timeline, /sweep)
    live.py     the Live tab's pushes and answers
    serving.py  uploads, checked requests, models and locks, sessions, logins
    page.js, page.css   the page's script and styles
"""
from __future__ import annotations

import atexit
import os
import signal
import sys

# Gradio's telemetry and its version check reach the internet at launch unless told not to:
# off unless the user turns them on (the app must start offline and tell no one)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# a client's stream is looked at every few seconds: when it has gone, its work stops soon after
os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "3")

from uavm.settings import settings

from .layout import App, build_app
from .serving import credentials, loopback

__all__ = ["App", "build_app", "find_bundles", "serve"]


def find_bundles(extra=(), models=(), mirror=None) -> dict:
    """The models the app serves (``uavm.hub.available``), its warnings said as the app's."""
    from uavm import hub

    return hub.available(extra, models, mirror, log=lambda msg: print(f"uavm app: {msg}", file=sys.stderr, flush=True))


def serve(a) -> None:
    """Serve the app with the options ``uavm app`` parsed (``uavm.cli.app``): bad options and
    a model that cannot be had are one line (UAVMError) before anything is served."""
    import logging

    from uavm.errors import InputError

    s = settings()
    # the app's own lines (uavm.app: refusals once a minute, cleaning, bugs) and the library's
    # (uavm: a bug in a decoder child, with its traceback)
    log = logging.getLogger("uavm")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("uavm app: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    auth = credentials(a.auth or s.auth)
    if (a.share or not loopback(a.host)) and not auth:
        where = "a public gradio.live link" if a.share else f"every network {a.host} is on"
        print(f"uavm app: WARNING: serving on {where} without a login: anyone who can reach it can upload "
              f"clips and use this machine's CPU/GPU. Add --auth USER:PASS (or $UAVM_AUTH).",
              file=sys.stderr, flush=True)
    app = build_app(find_bundles(a.bundle, a.model, a.mirror), a.device)
    demo = app.blocks
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    from .guard import Guard, Limits
    from .janitor import Janitor
    from .layout import plotly_file

    upload_dir = os.path.realpath(get_upload_folder())
    guard = Guard.State(Limits(upload_request_mb=s.upload_mb, upload_total_mb=s.upload_cache_mb,
                               session_events=s.session_events, client_events=s.client_events,
                               logins_per_client=s.login_failures, logins_total=10 * s.login_failures,
                               login_hours=s.login_hours), upload_dir, bool(auth), plotly_file())
    guard.blocks = demo
    janitor = Janitor(app.server, upload_dir, s.upload_keep, blocks=demo)
    atexit.register(janitor.close)
    # a plain `kill` ends the app like Ctrl+C does: the files it wrote are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    janitor.start()
    # many handlers may wait at once (a cached answer must never queue behind slow decodes): the
    # heavy work is bounded inside, by the decode slots, the per-client lanes and the model lock,
    # and each session's and address's queued requests at the door (guard.py)
    try:
        demo.queue(default_concurrency_limit=64, max_size=2048).launch(
            server_name=a.host, server_port=a.port, share=a.share, auth=auth, max_file_size=int(s.upload_mb * 2**20),
            show_error=True, quiet=True, prevent_thread_lock=True, max_threads=160,
            app_kwargs={"middleware": [Middleware(Guard, state=guard)]}, **app.launch)
    except OSError as e:  # the port was taken after the check, or the share link failed
        raise InputError(f"cannot serve on {a.host}:{a.port}: {e}".split(". You can")[0]) from None
    if a.share and demo.share_url:  # the page's own origin through the share link
        guard.origins.add(demo.share_url.rstrip("/").lower())
    # Gradio's own banner speaks of launch() arguments; a command-line user has flags
    url = f"http://{'127.0.0.1' if a.host in ('0.0.0.0', '::') else a.host}:{a.port}/"
    print(f"uavm app: serving {url}" + (f" and {demo.share_url}" if a.share and demo.share_url else "")
          + ("" if a.share else " (add --share for a public link)") + "; Ctrl+C stops it", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass

"""The UAVM missing-modality explorer: a Gradio app over ``uavm.explore``.

``app/`` draws; ``uavm/`` thinks. Every request goes through one shared Explorer per
model (content-keyed caches), so toggling a modality or changing the layer reuses the
decoded clip and its features. Installed as ``uavm.app``; ``uavm app`` launches it.

    layout.py   the page's components and events (build_app)
    page.py     what each event does: Settings -> outputs by name
    api.py      the HTTP API (/predict, /timeline)
    serving.py  uploads, checked requests, models and locks, sessions, logins
    page.js, page.css   the page's script and styles
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

# Gradio's telemetry and its version check reach the internet at launch unless told not to:
# off unless the user turns them on (the app must start offline and tell no one)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from uavm.assets import demo_bundles
from uavm.settings import settings

from .layout import App, build_app
from .serving import Uploads, credentials, loopback

__all__ = ["App", "build_app", "find_bundles", "serve"]


def find_bundles(extra=(), models=(), mirror=None) -> dict:
    """name -> bundle folder: the demo models shipped with uavm, the released models already
    converted in the cache (each checked; a damaged one is left out, with a warning), then
    the --bundle folders and the --model names (fetched and converted first if need be)."""
    from uavm import hub
    from uavm.errors import UAVMError

    found = demo_bundles()
    for name in hub.converted():
        try:
            found[name] = hub.resolve(name)
        except UAVMError as e:
            print(f"uavm app: {name} left out: {e}", file=sys.stderr, flush=True)
    for b in extra:
        found[Path(b).resolve().name] = Path(b)
    for m in models:
        found[m] = hub.resolve(m, mirror=mirror)
    return found


def serve(a) -> None:
    """Serve the app with the options ``uavm app`` parsed (``uavm.cli.app``): bad options and
    a model that cannot be had are one line (UAVMError) before anything is served."""
    from uavm.errors import InputError

    s = settings()
    auth = credentials(a.auth or s.auth)
    if (a.share or not loopback(a.host)) and not auth:
        where = "a public gradio.live link" if a.share else f"every network {a.host} is on"
        print(f"uavm app: WARNING: serving on {where} without a login: anyone who can reach it can upload "
              f"clips and use this machine's CPU/GPU. Add --auth USER:PASS (or $UAVM_AUTH).",
              file=sys.stderr, flush=True)
    app = build_app(find_bundles(a.bundle, a.model, a.mirror), a.device)
    demo = app.blocks
    cap = int(s.upload_cache_mb * 2**20)
    uploads = Uploads()

    def janitor():  # the upload folder is bounded by size as well as by age; API sessions are dropped
        while True:
            time.sleep(15)
            try:
                dropped = app.sessions.sweep(getattr(demo, "state_holder", None))
                freed = uploads.trim(cap)
                if dropped or freed:
                    print(f"uavm app: dropped {dropped} idle API sessions, freed {freed / 2**20:.0f} MiB of uploads",
                          file=sys.stderr, flush=True)
            except OSError:
                pass

    threading.Thread(target=janitor, daemon=True, name="uavm-janitor").start()
    # many handlers may wait at once (a cached answer must not queue behind slow decodes);
    # the heavy work is bounded inside by the decode slots and the model lock
    try:
        demo.queue(default_concurrency_limit=16, max_size=256).launch(
            server_name=a.host, server_port=a.port, share=a.share, auth=auth, max_file_size="200mb",
            show_error=True, quiet=True, prevent_thread_lock=True, **app.launch)
    except OSError as e:  # the port was taken after the check, or the share link failed
        raise InputError(f"cannot serve on {a.host}:{a.port}: {e}".split(". You can")[0]) from None
    # Gradio's own banner speaks of launch() arguments; a command-line user has flags
    url = f"http://{'127.0.0.1' if a.host in ('0.0.0.0', '::') else a.host}:{a.port}/"
    print(f"uavm app: serving {url}" + (f" and {demo.share_url}" if a.share and demo.share_url else "")
          + ("" if a.share else " (add --share for a public link)") + "; Ctrl+C stops it", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass

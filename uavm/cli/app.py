"""`uavm app`: the browser app's options (parsed here, without loading gradio or torch),
the port checked before anything loads, then the app (``uavm.app``)."""
from __future__ import annotations

import errno
import socket

from ..errors import InputError
from .options import DEVICE


def port(value: str) -> int:
    try:
        p = int(value)
    except ValueError:
        p = None
    if p is None or not 1 <= p <= 65535:
        import argparse

        raise argparse.ArgumentTypeError(f"a port is a whole number from 1 to 65535, got {value!r}")
    return p


def add(sub) -> None:
    s = sub.add_parser("app", help="the browser app: the missing-modality explorer")
    s.add_argument("--bundle", action="append", default=[], metavar="DIR", help="one more model bundle (repeatable)")
    s.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="one more model by name, e.g. vggsound-uavm or hf-hub:ORG/NAME (repeatable; `uavm models`)")
    s.add_argument("--mirror", metavar="URL", help="fetch named models' files from http(s)://BASE/, file:///DIR "
                   "or a folder (default $UAVM_MIRROR, else the authors' release)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only; "
                   "0.0.0.0: every network it is on)")
    s.add_argument("--port", type=port, default=7860, help="port to listen on")
    s.add_argument("--share", action="store_true", help="also a public gradio.live link (add --auth)")
    s.add_argument("--auth", metavar="USER:PASS", help="require a login (or set $UAVM_AUTH)")
    s.add_argument("--device", **DEVICE)
    s.set_defaults(fn=app)


def check_port(host: str, number: int) -> None:
    """One line now, rather than Gradio's traceback after the models have loaded."""
    try:
        infos = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise InputError(f"--host {host}: no such address (give an IP address of this machine, or 0.0.0.0)") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InputError(f"port {number} on {host} is in use (another app?): pick another with --port N"
                                 ) from None
            if e.errno == errno.EACCES:
                raise InputError(f"port {number} needs administrator rights here: pick one above 1023 with --port N"
                                 ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise InputError(f"--host {host} is not an address of this machine") from None
            raise InputError(f"cannot listen on {host}:{number} ({e.strerror})") from None


def app(a) -> int:
    from pathlib import Path

    check_port(a.host, a.port)
    for b in a.bundle:
        if not (Path(b) / "config.json").is_file():
            raise InputError(f"--bundle {b}: not a model bundle (a folder with config.json; see `uavm init`)")
    try:
        import gradio  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as e:
        from ..assets import install_hint

        raise InputError(f"the app needs {e.name or 'its extras'}, which is not installed: {install_hint('app')}"
                         ) from None
    # the app sits above the library: this is the one place that imports it
    from ..app import serve

    serve(a)
    return 0

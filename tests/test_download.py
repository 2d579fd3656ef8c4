"""`download` against a file server on the loopback interface: resume, checksums."""
import hashlib
import http.server
import threading

import pytest

from uavm.errors import UAVMError
from uavm.official import download

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


class Handler(http.server.BaseHTTPRequestHandler):
    cut = None  # serve only this many bytes of a full response, then drop the connection
    ranges = []

    def do_GET(self):
        start = 0
        rng = self.headers.get("Range")
        Handler.ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if Handler.cut is not None and not rng:
            self.wfile.write(body[:Handler.cut])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    srv.shutdown()


def test_download_resumes_a_cut_transfer_and_prints_the_sha256(server, tmp_path):
    release = {"thing": (server, "thing.bin")}
    Handler.cut, Handler.ranges = 300_000, []
    with pytest.raises(UAVMError, match="download"):
        download("thing", tmp_path, release=release, log=lambda s: None)
    assert (tmp_path / "thing.bin.part").stat().st_size == 300_000
    Handler.cut = None
    lines = []
    (path,) = download("thing", tmp_path, release=release, log=lines.append)
    assert Handler.ranges[-1] == "bytes=300000-"
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "thing.bin.part").exists()
    assert lines == [f"{hashlib.sha256(PAYLOAD).hexdigest()}  {path}"]


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(UAVMError, match="unknown release file"):
        download("nope", tmp_path)

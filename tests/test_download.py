"""`uavm download` against a mirror on the loopback interface (or a folder): resume,
retries, recorded and pinned SHA-256, `--verify`."""
import hashlib
import http.server
import threading
import urllib.parse

import pytest

from uavm import hub
from uavm.errors import UAVMError
from uavm.hub import transfer

from .conftest import run_cli

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB
LABELS = "class_labels_indices_vgg.csv"  # the release file of the name "vggsound-labels"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
        rng = self.headers.get("Range")
        srv.requests.append((name, rng))
        if name not in srv.files:
            self.send_error(404)
            return
        body, start = srv.files[name], 0
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        body = body[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cuts = srv.cuts.get(name)
        if cuts:  # send only this much of the promised body, then drop the connection
            self.wfile.write(body[:cuts.pop(0)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Mirror(http.server.ThreadingHTTPServer):
    """Files from memory served on loopback as a mirror serves them; ``cuts[name]`` lists how
    many bytes each next response for it sends before the connection drops."""

    daemon_threads = True

    def __init__(self, files: dict):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.requests, self.cuts, self.ignore_range = dict(files), [], {}, False
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def stop(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def mirror():
    m = Mirror({LABELS: PAYLOAD})
    yield m
    m.stop()


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for v in ("UAVM_MIRROR", "UAVM_CACHE"):
        monkeypatch.delenv(v, raising=False)


def test_a_cut_transfer_resumes_by_itself_and_prints_the_sha256(mirror, tmp_path):
    mirror.cuts[LABELS] = [300_000]
    lines = []
    (path,) = hub.download("vggsound-labels", tmp_path, mirror.url, log=lines.append, say=lambda m: None)
    assert mirror.requests == [(LABELS, None), (LABELS, "bytes=300000-")]
    assert path.read_bytes() == PAYLOAD and not (tmp_path / (LABELS + ".part")).exists()
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert lines == [f"{digest}  {path}"]
    assert (tmp_path / (LABELS + ".sha256")).read_text().split()[0] == digest


def test_a_transfer_that_keeps_stopping_fails_and_the_next_run_resumes_it(mirror, tmp_path):
    mirror.cuts[LABELS] = [100_000] * hub.TRIES
    with pytest.raises(UAVMError, match="run the command again to resume"):
        hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert (tmp_path / (LABELS + ".part")).stat().st_size == 100_000 * hub.TRIES
    (path,) = hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert mirror.requests[-1] == (LABELS, f"bytes={100_000 * hub.TRIES}-") and path.read_bytes() == PAYLOAD


def test_a_server_that_ignores_the_range_gets_the_whole_file_again(mirror, tmp_path):
    (tmp_path / (LABELS + ".part")).write_bytes(b"x" * 1000)  # a stale part: the whole file replaces it
    mirror.ignore_range = True
    (path,) = hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert mirror.requests == [(LABELS, "bytes=1000-")] and path.read_bytes() == PAYLOAD


def test_a_part_longer_than_the_file_starts_over(mirror, tmp_path):
    (tmp_path / (LABELS + ".part")).write_bytes(b"x" * (len(PAYLOAD) + 10))  # 416 from the server
    (path,) = hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert path.read_bytes() == PAYLOAD


def test_a_file_missing_on_the_mirror_is_one_line_naming_its_url(mirror, tmp_path):
    r = run_cli("download", "audioset-labels", "--cache", tmp_path, "--mirror", mirror.url)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 2  # the fetching line, then the error
    assert "class_labels_indices.csv: HTTP 404" in r.stderr.splitlines()[-1]
    assert not list(tmp_path.glob("class_labels_indices.csv*"))


def test_file_urls_and_plain_folders_are_mirrors_too(tmp_path):
    src = tmp_path / "lab share"
    src.mkdir()
    (src / LABELS).write_bytes(PAYLOAD)
    for i, m in enumerate([src.as_uri(), str(src)]):
        r = run_cli("download", "vggsound-labels", "--cache", tmp_path / f"c{i}", "--mirror", m)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"c{i}" / LABELS).read_bytes() == PAYLOAD


def test_the_mirror_is_read_from_uavm_mirror(tmp_path, monkeypatch):
    (tmp_path / LABELS).write_bytes(PAYLOAD)
    monkeypatch.setenv("UAVM_MIRROR", str(tmp_path))
    monkeypatch.setenv("UAVM_CACHE", str(tmp_path / "cache"))
    run_cli("download", "vggsound-labels", check=True)
    assert (tmp_path / "cache" / LABELS).read_bytes() == PAYLOAD


def test_other_mirror_schemes_are_refused(tmp_path):
    r = run_cli("download", "vggsound-labels", "--cache", tmp_path, "--mirror", "ftp://example.org/uavm/")
    assert r.returncode == 1 and "http(s)://" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_damaged_cached_file_is_named_by_download_and_by_verify(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / LABELS).write_bytes(PAYLOAD)
    run_cli("download", "vggsound-labels", "--cache", tmp_path / "c", "--mirror", tmp_path / "src", check=True)
    cached = tmp_path / "c" / LABELS
    cached.write_bytes(PAYLOAD[:-1] + b"!")
    for args in (["download", "vggsound-labels"], ["download", "--verify"]):
        r = run_cli(*args, "--cache", tmp_path / "c", "--mirror", tmp_path / "src")
        assert r.returncode == 1, args
        (line,) = r.stderr.strip().splitlines()
        assert str(cached) in line and "recorded when it was downloaded" in line and "delete it" in line


def test_verify_says_ok_for_an_intact_cache(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / LABELS).write_bytes(PAYLOAD)
    run_cli("download", "vggsound-labels", "--cache", tmp_path / "c", "--mirror", tmp_path / "src", check=True)
    r = run_cli("download", "--verify", "--cache", tmp_path / "c", check=True)
    assert r.stdout.split() == ["OK", str(tmp_path / "c" / LABELS)]


def test_a_redownload_that_differs_from_the_record_is_refused(mirror, tmp_path):
    hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    (tmp_path / LABELS).unlink()  # the record stays, and pins the next download
    mirror.files[LABELS] = PAYLOAD[::-1]
    with pytest.raises(hub.IntegrityError, match="recorded at its first download"):
        hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert not (tmp_path / LABELS).exists() and not (tmp_path / (LABELS + ".part")).exists()


def test_a_file_whose_hash_breaks_the_pin_in_its_name_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "convnext_base-6075fbad.pth").write_bytes(PAYLOAD)
    with pytest.raises(hub.IntegrityError, match="does not start with 6075fbad"):
        hub.download("video-extractor", tmp_path / "c", str(tmp_path / "src"), log=lambda m: None, say=lambda m: None)
    assert not list((tmp_path / "c").glob("convnext*"))


def test_a_source_sending_more_than_any_release_file_is_cut_off(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "MAX_BYTES", 500_000)  # read where it is used
    with pytest.raises(UAVMError, match="more than any release file"):
        hub.download("vggsound-labels", tmp_path, mirror.url, log=lambda m: None, say=lambda m: None)
    assert not (tmp_path / LABELS).exists()


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(UAVMError, match="unknown model or release file"):
        hub.download("nope", tmp_path)

"""The app on a public link: hostile clients, as an attacker would send them over HTTP,
get one-line refusals and the server goes on serving everyone else."""
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .clients import call, descendants, upload
from .conftest import ROOT, AppServer, run_cli

pytest.importorskip("gradio", reason="the app's tests need gradio: pip install -e '.[test]'")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLES = sorted((Path(ROOT) / "weights" / "examples").glob("*.mp4"))
pytestmark = [pytest.mark.skipif(not EXAMPLES, reason="the demo model is not in weights/: run `uavm build-demo`"), pytest.mark.slow]
# /predict after media: the window and model, then the swap, the degradations, the weight
BASE = [0.0, True, True, None, None, None, None, "demo-uavm", 5, False]
DEFAULTS = BASE + [None, None, None, None, None, 0.5, None, None]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")  # this server's own upload folder
    app = AppServer(tmp_path_factory.mktemp("app"), env={"GRADIO_TEMP_DIR": str(uploads)})
    app.uploads = uploads
    yield app
    app.stop()


def served(url) -> bool:
    kind, value = call(url, [upload(url, EXAMPLES[0])] + DEFAULTS)
    return kind == "complete" and value["fused"] is not None


def test_media_that_gradio_did_not_upload_is_refused_and_the_server_goes_on(server, tmp_path):
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(EXAMPLES[0].read_bytes())  # a real clip on the server, never uploaded
    fifo = server.uploads / "fifo.mp4"
    os.mkfifo(fifo)
    hostile = {
        "a plain string": str(secret),
        "a dict without Gradio's meta": {"path": str(secret)},
        "an integer (a file descriptor)": 19,
        "stdout's descriptor": 1,
        "a device": "/dev/zero",
        "a FIFO in the upload folder": str(fifo),
        "FileData of a file never uploaded": {"path": str(secret), "meta": {"_type": "gradio.FileData"}},
        "FileData of a missing file": {"path": str(tmp_path / "nope.mp4"), "meta": {"_type": "gradio.FileData"}},
        "FileData of the upload folder": {"path": str(server.uploads), "meta": {"_type": "gradio.FileData"}},
        "FileData of a FIFO in the upload folder": {"path": str(fifo), "meta": {"_type": "gradio.FileData"}},
    }
    messages = {}
    for what, media in hostile.items():
        kind, msg = call(server.url, [media] + DEFAULTS, timeout=30)
        assert kind == "error" and msg, f"{what}: {kind} {msg!r}"
        assert "\n" not in msg, what
        messages[what] = msg
    # no oracle: a file that exists and one that does not get the same answer
    assert messages["FileData of a file never uploaded"].replace(str(secret), "X") == \
        messages["FileData of a missing file"].replace(str(tmp_path / "nope.mp4"), "X")
    assert "upload" in messages["a plain string"] and "upload" in messages["a device"]
    assert served(server.url), "the server stopped answering"


@pytest.mark.parametrize("name", ["playlist.m3u8", "playlist.mp4", "list.mp4"])
def test_an_uploaded_playlist_naming_a_local_file_is_refused(server, tmp_path, name):
    target = EXAMPLES[0]
    body = (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n" if "playlist" in name
            else f"ffconcat version 1.0\nfile {target}\n")
    (tmp_path / name).write_text(body)
    kind, msg = call(server.url, [upload(server.url, tmp_path / name)] + DEFAULTS)
    assert kind == "error" and ("playlist" in msg or "not a readable" in msg), msg
    assert str(tmp_path) not in msg and "/tmp/" not in msg  # the server's paths stay hidden


def _slow_8k(path):
    """An 8K clip that takes a couple of seconds to decode but little to upload (~100 KB)."""
    from uavm.media import write_media

    f = np.full((30, 4320, 7680, 3), 60, np.uint8)
    f[:, 1000:1400, 2000:2600] = 200
    write_media(path, f, 3, np.zeros(16000 * 10, np.float32), options={"preset": "ultrafast"})


def test_a_cached_request_is_answered_while_slow_hostile_uploads_decode(server, tmp_path):
    _slow_8k(tmp_path / "8k.mp4")
    base = (tmp_path / "8k.mp4").read_bytes()
    hostile = []
    for i in range(4):  # four different files (trailing bytes differ), so none is a cache hit
        (tmp_path / f"8k-{i}.mp4").write_bytes(base + bytes([i]) * 16)
        hostile.append(upload(server.url, tmp_path / f"8k-{i}.mp4"))
    mine = upload(server.url, EXAMPLES[1])
    assert call(server.url, [mine] + DEFAULTS)[0] == "complete"  # decoded and cached once
    done = {}

    def attack(i):
        done[i] = (call(server.url, [hostile[i]] + DEFAULTS, timeout=300), time.time())

    before = descendants(server.proc.pid)
    threads = [threading.Thread(target=attack, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    while descendants(server.proc.pid) < before + 2 and any(t.is_alive() for t in threads):
        time.sleep(0.01)  # until both decode slots hold a hostile decode
    t0 = time.time()
    kind, _ = call(server.url, [mine] + [False if n == "video_on" else d for n, d in zip(NAMES, DEFAULTS)])
    answered = time.time()
    for t in threads:
        t.join(300)
    print(f"\ncached request answered in {answered - t0:.3f} s while four 8K uploads decoded "
          f"(they finished {max(v[1] for v in done.values()) - t0:.1f} s after it started)")
    assert kind == "complete"
    assert all(v[0][0] == "complete" for v in done.values()), done
    # answered before any of them ended (no clock bound: what it waited for, not how long)
    assert min(v[1] for v in done.values()) > answered, "a hostile decode ended first: the request waited for it"


# the same bad value through the API and the CLI: the same one-line message
MATRIX = [
    ({"top_k": 0}, ["--top-k", "0"]),
    ({"top_k": -5}, ["--top-k", "-5"]),
    ({"top_k": 13}, ["--top-k", "13"]),
    ({"mute_from": 5.0, "mute_to": 2.0}, ["--mute-audio", "5", "2"]),
    ({"mute_from": float("nan"), "mute_to": 3.0}, ["--mute-audio", "nan", "3"]),
    ({"blank_from": 1.0, "blank_to": float("inf")}, ["--blank-video", "1", "inf"]),
    ({"blank_from": -2.0, "blank_to": 3.0}, ["--blank-video", "-2", "3"]),
    ({"start": float("nan")}, ["--start", "nan"]),
    ({"start": -1.0}, ["--start", "-1"]),
]
NAMES = ["start", "audio_on", "video_on", "mute_from", "mute_to", "blank_from", "blank_to", "model", "top_k",
         "include_attention", "audio_from", "audio_snr", "video_blur", "video_size", "video_fps", "audio_weight",
         "degrade_from", "degrade_to"]


@pytest.mark.parametrize("api,cli", MATRIX, ids=[" ".join(c) for _, c in MATRIX])
def test_bad_parameters_get_the_same_message_from_the_api_and_the_cli(server, api, cli):
    data = [upload(server.url, EXAMPLES[0])] + [api.get(n, d) for n, d in zip(NAMES, DEFAULTS)]
    kind, msg = call(server.url, data)
    r = run_cli("predict", EXAMPLES[0], *cli)
    assert r.returncode != 0 and kind == "error"
    assert r.stderr.strip().splitlines() == [f"uavm: {msg}"]


@pytest.mark.parametrize("name,value,expect", [
    ("audio_on", "no", "audio_on must be true or false, got 'no'"),
    ("video_on", 0, "video_on must be true or false, got 0"),
    ("model", "../../etc", "unknown model '../../etc'"),
    ("top_k", "5", "top k must be a whole number"),
    ("include_attention", "yes", "include_attention must be true or false"),
])
def test_api_only_parameters_are_strict(server, name, value, expect):
    data = [upload(server.url, EXAMPLES[0])] + [value if n == name else d for n, d in zip(NAMES, DEFAULTS)]
    kind, msg = call(server.url, data)
    assert kind == "error" and msg.startswith(expect), msg


def test_malformed_calls_never_answer_an_empty_error(server):
    for data in ([], [None], ["x", "y"], [{"meta": {"_type": "gradio.FileData"}}] + DEFAULTS, [[1, 2]] + DEFAULTS):
        kind, msg = call(server.url, data)
        assert kind == "error" and msg, (data, msg)


def test_a_login_is_required_when_asked_for(tmp_path):
    app = AppServer(tmp_path, "--auth", "ana:s3cret")
    try:
        with pytest.raises(Exception, match="(?i)login|auth|401|credentials"):  # gradio_client's own error types
            Client(app.url, verbose=False).predict(handle_file(str(EXAMPLES[0])), api_name="/predict")
        out = Client(app.url, auth=("ana", "s3cret"), verbose=False).predict(handle_file(str(EXAMPLES[0])),
                                                                              api_name="/predict")
        assert out["fused"] is not None
    finally:
        app.stop()


def test_serving_beyond_this_machine_without_a_login_warns(tmp_path):
    app = AppServer(tmp_path, "--host", "0.0.0.0", wait=False)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "WARNING" not in app.log.read_text():
            time.sleep(0.2)
        assert "without a login" in app.log.read_text() and "--auth" in app.log.read_text()
    finally:
        app.stop()


def test_the_api_swaps_degrades_and_weighs_as_the_library_does_and_names_no_server_path(server):
    from uavm.assets import demo_bundles
    from uavm.bundle import load_bundle
    from uavm.degrade import Degrade
    from uavm.inference import Pipeline

    dog, piano = (next(p for p in EXAMPLES if p.stem == n) for n in ("dog_howling", "playing_piano"))
    mine, other = upload(server.url, dog), upload(server.url, piano)
    kind, v = call(server.url, [mine] + BASE + [other, 0, 2, None, None, 0.25, None, None])
    assert kind == "complete", v
    assert v["sources"] == {"audio": "playing_piano.mp4", "video": "dog_howling.mp4"}
    assert v["audio_weight"] == 0.25 and v["degraded"] == {"audio_snr": 0, "video_blur": 2, "seed": 0}
    want = Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu").predict(
        dog, audio_from=piano, degrade=Degrade.checked(audio_snr=0, video_blur=2), audio_weight=0.25)
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(v[m]["logits"], want.logits[m], atol=1e-4)
    bad = {"a plain path as the other clip": ([str(piano), None, None, None, None, 0.5], "upload"),
           "NaN noise": ([None, float("nan"), None, None, None, 0.5], "audio snr"),
           "a weight above 1": ([None, None, None, None, None, 2], "audio weight"),
           "a resolution of 0": ([None, None, None, 0, None, 0.5], "video size"),
           "a level as a string": ([None, "10", None, None, None, 0.5], "audio snr"),
           "a huge blur": ([None, None, 1e300, None, None, 0.5], "video blur"),
           "a weight as a string": ([None, None, None, None, None, "0.3"], "audio weight"),
           "FileData of a device": ([{"path": "/dev/zero", "meta": {"_type": "gradio.FileData"}}, None, None, None,
                                     None, 0.5], "upload")}
    for what, (extra, says) in bad.items():
        kind, msg = call(server.url, [mine] + BASE + extra + [None, None])
        assert kind == "error" and says in msg and "\n" not in msg and "/tmp/" not in msg, (what, msg)
    cross = BASE[:7] + ["demo-cross-modal"] + BASE[8:] + [None, None, None, None, None, 0.3, None, None]
    kind, msg = call(server.url, [mine] + cross)
    assert kind == "error" and "cross-modal" in msg, msg
    # the degradation over a span only, and each pass's familiarity, as the library gives them
    kind, v = call(server.url, [mine] + BASE + [None, -20, None, None, None, 0.5, 2.0, 5.0])
    assert kind == "complete" and v["degraded"] == {"audio_snr": -20, "span": [2.0, 5.0], "seed": 0}, v
    want = Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu").predict(
        dog, degrade=Degrade.checked(audio_snr=-20, span=(2, 5)))
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(v[m]["logits"], want.logits[m], atol=1e-4)
        assert v[m]["ood"]["flag"] == want.ood[m]["flag"] and abs(v[m]["ood"]["score"] - want.ood[m]["score"]) < 1e-2
    for extra, says in (([2.0, None], "degraded span"), ([5.0, 2.0], "degraded span must start before")):
        kind, msg = call(server.url, [mine] + BASE + [None, -20, None, None, None, 0.5] + extra)
        assert kind == "error" and says in msg, msg


def test_the_api_sweeps_a_degradation_as_the_library_does(server):
    from uavm.assets import demo_bundles
    from uavm.bundle import load_bundle
    from uavm.inference import Pipeline

    dog = next(p for p in EXAMPLES if p.stem == "dog_howling")
    mine = upload(server.url, dog)
    kind, v = call(server.url, [mine, "video_blur", "1, 8", 0.0, True, True, "demo-uavm", None, None, None, 0.5, None],
                   api="sweep")
    assert kind == "complete", v
    want = Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu").sweep(dog, "video_blur", [1, 8]).to_dict()
    assert v["clip"] == "dog_howling.mp4" and v["breaks"] == want["breaks"] and v["target"] == want["target"]
    assert [r["level"] for r in v["levels"]] == [None, 1.0, 8.0]
    for got, exp in zip(v["levels"], want["levels"]):
        for m in ("audio", "video", "fused"):
            assert abs(got[m]["score"] - exp[m]["score"]) < 1e-4 and got[m]["unfamiliar"] == exp[m]["unfamiliar"]
    for deg, levels, says in (("video_warp", "1", "unknown degradation"), ("audio_snr", "loud", "numbers"),
                              ("audio_snr", "1 " * 300, "at most 64"), ("video_blur", "-1", "video blur"),
                              (["x"], "1", "unknown degradation"), ("audio_snr", {"a": 1}, "numbers")):
        kind, msg = call(server.url, [mine, deg, levels, 0.0, True, True, "demo-uavm", None, None, None, 0.5, None],
                         api="sweep")
        assert kind == "error" and says in msg and "\n" not in msg, (deg, levels, msg)
    assert served(server.url)

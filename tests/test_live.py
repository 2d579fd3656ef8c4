"""Live: a camera's frames and a microphone's sound answered as they arrive (uavm.live, the
Live tab), from known clips; in a browser, Chromium's fake devices play a generated clip."""
import base64
import io
import json
import shutil
import time
import wave

import numpy as np
import pytest

from uavm.assets import demo_bundles, examples
from uavm.bundle import load_bundle
from uavm.errors import InputError
from uavm.explore import Explorer
from uavm.inference import Pipeline
from uavm.live import Live

CLIPS = {p.stem: p for p in examples()}
DOG = CLIPS["dog_howling"]


@pytest.fixture(scope="module")
def explorer():
    return Explorer(Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu"))


def fed(explorer, clip, seconds=10, every=1.0, start=0.0):
    """A clip's window fed as a live sender would: ``every`` seconds of sound and frames at a time."""
    d = explorer.pipe.decode(clip, 0)
    live, rate, fps = Live(explorer), explorer.pipe.pre.audio.sample_rate, explorer.pipe.pre.video.fps
    for k in range(int(seconds / every)):
        a, b = k * every, (k + 1) * every
        live.add_audio(start + a, d.wav[int(a * rate):int(b * rate)])
        for i in range(int(round(a * fps)), int(round(b * fps))):
            live.add_frame(start + i / fps, d.frames[i])
    return live


def test_a_window_fed_second_by_second_answers_exactly_as_the_clip_does(explorer):
    live = fed(explorer, DOG, start=100.0)  # the sender's clock need not start at 0
    got, want = live.answer().prediction, explorer.pipe.predict(DOG)
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(got.logits[m], want.logits[m], atol=1e-5)
    assert got.ood["fused"]["flag"] is False and got.top("fused", 1)[0]["label"] == "dog howling"
    a = live.answer(video=False)
    assert a.prediction.logits["video"] is None and a.prediction.missing["video"] == "turned off"
    np.testing.assert_allclose(a.prediction.logits["fused"], want.logits["audio"], atol=1e-5)
    assert live.memory_bytes() < 4 * 2**20  # 10 s of sound, 30 frames and their features


def test_the_window_keeps_the_last_ten_seconds_and_a_gap_is_silence(explorer):
    live = fed(explorer, DOG, seconds=10)
    rate = explorer.pipe.pre.audio.sample_rate
    live.add_audio(12.0, np.full(rate, 0.5, np.float32))  # 2 s of nothing, then 1 s of sound
    assert len(live.audio) == 10 * rate
    np.testing.assert_array_equal(live.audio[-3 * rate:-rate], 0)
    assert (live.audio[-rate:] == 0.5).all()
    live.add_audio(12.5, np.ones(rate, np.float32))  # half of it heard already: only the new half is kept
    assert (live.audio[-rate // 2:] == 1).all() and (live.audio[-rate - rate // 2:-rate // 2] == 0.5).all()
    live.add_audio(100.0, np.ones(rate, np.float32))  # after a silence longer than the window: that alone
    assert len(live.audio) == rate
    n = len(live.frames)
    live.add_frame(1.0, np.zeros((8, 8, 3), np.uint8))  # older than the window's frames: late, dropped
    assert len(live.frames) == n and len({f[0] for f in live.frames}) == n
    for bad in (float("nan"), -1, 1e12):
        with pytest.raises(InputError):
            live.add_audio(bad, np.zeros(10, np.float32))
    for frame in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((5000, 8, 3), np.uint8)):
        with pytest.raises(InputError, match="RGB image"):
            live.add_frame(20.0, frame)
    with pytest.raises(InputError, match="at most 12 s"):
        live.add_audio(200.0, np.zeros(13 * rate, np.float32))


def _jpeg(array, fmt="JPEG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_a_hostile_push_is_refused_in_one_line():
    from uavm.app.live import parse_push

    ok = {"seq": 1, "frames": [{"t": 0.1, "jpeg": _jpeg(np.zeros((48, 64, 3), np.uint8))}],
          "audio": {"t": 0.0, "rate": 16000, "pcm": base64.b64encode(np.zeros(1600, "<i2").tobytes()).decode()}}
    p = parse_push(json.dumps(ok), 16000)
    assert p["seq"] == 1 and p["frames"][0][1].shape == (48, 64, 3) and len(p["audio"][1]) == 1600
    bad = {
        "not JSON": "{", "a list": "[]", "no number": json.dumps({**ok, "seq": None}),
        "a PNG frame": json.dumps({**ok, "frames": [{"t": 0, "jpeg": _jpeg(np.zeros((8, 8, 3), np.uint8), "PNG")}]}),
        "a huge frame": json.dumps({**ok, "frames": [{"t": 0, "jpeg": _jpeg(np.zeros((1500, 1500, 3), np.uint8))}]}),
        "junk as a frame": json.dumps({**ok, "frames": [{"t": 0, "jpeg": "////"}]}),
        "too many frames": json.dumps({**ok, "frames": ok["frames"] * 13}),
        "a frame at NaN": json.dumps({**ok, "frames": [{**ok["frames"][0], "t": float("nan")}]}),
        "another rate": json.dumps({**ok, "audio": {**ok["audio"], "rate": 44100}}),
        "sound as text": json.dumps({**ok, "audio": {**ok["audio"], "pcm": "not base64!"}}),
        "a minute of sound": json.dumps({**ok, "audio": {**ok["audio"], "pcm": "A" * (16000 * 2 * 60)}}),
    }
    for what, text in bad.items():
        with pytest.raises(InputError) as e:
            parse_push(text, 16000)
        assert "\n" not in str(e.value) and len(str(e.value)) < 200, what


def test_live_sessions_are_bounded_in_number_and_time_and_freed_when_idle(explorer, monkeypatch):
    from uavm.app import sessions as app_live

    s = app_live.LiveSessions(max_sessions=2, max_minutes=1)
    a = s.get("a", "m", explorer)
    s.get("b", "m", explorer)
    assert s.get("a", "m", explorer) is a
    with pytest.raises(InputError, match="2 live sessions"):
        s.get("c", "m", explorer)
    assert s.get("a", "other model", explorer) is not a  # another model: a new window
    assert s.drop("b") and not s.drop("b")
    s.get("c", "m", explorer)
    s.sessions["c"].started -= 61
    with pytest.raises(InputError, match="at most 1 minutes"):
        s.get("c", "m", explorer)
    monkeypatch.setattr(app_live, "IDLE_S", 0.0)
    time.sleep(0.01)
    assert s.sweep() >= 1 and not s.sessions


def fake_devices(tmp_path, clip) -> list:
    """Chromium's flags to play ``clip`` as its camera (a .y4m) and microphone (a .wav)."""
    import av

    frames, pcm = [], []
    with av.open(str(clip)) as c:
        rate = int(round(float(c.streams.video[0].average_rate)))
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(clip)) as c:
        r = av.AudioResampler(format="s16", layout="mono", rate=16000)
        pcm = [g.to_ndarray().reshape(-1) for f in c.decode(audio=0) for g in r.resample(f)]
    with wave.open(str(tmp_path / "mic.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(pcm).astype("<i2").tobytes())
    with av.open(str(tmp_path / "cam.y4m"), "w", format="yuv4mpegpipe") as c:
        s = c.add_stream("rawvideo", rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={tmp_path / 'cam.y4m'}",
            f"--use-file-for-fake-audio-capture={tmp_path / 'mic.wav'}"]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_in_a_browser_the_live_tab_names_what_the_camera_and_microphone_play(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from .clients import memory_kb
    from .conftest import AppServer

    app = AppServer(tmp_path / "app")
    try:
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", *fake_devices(tmp_path, DOG)])
            page = b.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(app.url)
            page.locator("#results button[role=tab]", has_text="Live").first.click()
            time.sleep(1)
            before = memory_kb(app.proc.pid)["VmRSS"]
            page.locator("#live-start").click()
            t0 = time.monotonic()
            page.wait_for_function("() => (document.querySelector('#live-fused .output-class')?.innerText || '')"
                                   ".includes('dog howling')", timeout=15_000)
            named_after = time.monotonic() - t0
            page.wait_for_function("() => window.uavm.live.answers >= 8", timeout=30_000)
            lags = page.evaluate("window.uavm.live.lags")
            assert sorted(lags)[len(lags) // 2] < 2.0, lags  # the newest sample answered within 2 s
            page.locator("#live-video input").uncheck()
            page.wait_for_function("() => (document.querySelector('#live-video-label')?.innerText || '')"
                                   ".includes('turned off')", timeout=15_000)
            audio_top = page.locator("#live-audio-label .output-class").inner_text().strip()
            page.wait_for_function("t => document.querySelector('#live-fused .output-class')?.innerText.trim() == t",
                                   arg=audio_top, timeout=15_000)  # the fused answer is the audio pass's
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            page.locator("#live-stop").click()
            page.wait_for_function("() => (document.querySelector('#live-status')?.innerText || '')"
                                   ".includes('Stopped')", timeout=15_000)
            time.sleep(1)
            after = memory_kb(app.proc.pid)["VmRSS"]
            assert after - before < 50 * 1024, (before, after)
            assert named_after < 15
            b.close()
    finally:
        app.stop()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_in_a_browser_a_refused_camera_leaves_the_sound_answered_and_says_why(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from .conftest import AppServer

    flags = [f for f in fake_devices(tmp_path, DOG) if f != "--use-fake-ui-for-media-stream"]
    app = AppServer(tmp_path / "app")
    try:
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", *flags])
            page = b.new_context(permissions=["microphone"]).new_page()  # the camera is refused
            page.goto(app.url)
            page.locator("#results button[role=tab]", has_text="Live").first.click()
            page.locator("#live-start").click()
            page.wait_for_function("() => (document.querySelector('#live-video-label')?.innerText || '')"
                                   ".includes('the camera is not available (NotAllowedError)')", timeout=30_000)
            page.wait_for_function("() => (document.querySelector('#live-audio-label')?.innerText || '').includes('%')",
                                   timeout=30_000)
            assert "%" not in page.locator("#live-video-label").inner_text()
            b.close()
    finally:
        app.stop()

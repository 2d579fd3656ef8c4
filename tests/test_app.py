"""The app, launched as a user launches it, driven through its API and in a real browser."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT, AppServer, json_lines, run_cli

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLES = sorted((Path(ROOT) / "weights" / "examples").glob("*.mp4"))
pytestmark = [pytest.mark.skipif(not EXAMPLES, reason="the demo weights are not built"), pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("app"))
    yield app.url
    app.stop()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


CASES = {
    "both on": (dict(), []),
    "audio off": (dict(audio_on=False), ["--no-audio"]),
    "video off": (dict(video_on=False), ["--no-video"]),
    "muted span": (dict(mute_from=2.0, mute_to=5.0), ["--mute-audio", "2", "5"]),
}


@pytest.mark.parametrize("case", CASES)
def test_the_api_answers_as_uavm_predict_does(client, case):
    kwargs, flags = CASES[case]
    got = client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict", include_attention=True, **kwargs)
    r = run_cli("predict", EXAMPLES[0], "--json", "--device", "cpu", *flags)
    assert r.returncode == 0, r.stderr
    (want,) = json_lines(r.stdout)
    for m in ("audio", "video", "fused"):
        assert (got[m] is None) == (want[m] is None), m
        if want[m] is not None:
            np.testing.assert_allclose(got[m]["logits"], want[m]["logits"], rtol=1e-5, atol=1e-5)
            assert [t["label"] for t in got[m]["top"]] == [t["label"] for t in want[m]["top"]]
    assert set(got["attention"]) == set(want["attention"])
    for m in want["attention"]:
        np.testing.assert_allclose(got["attention"][m], want["attention"][m], atol=1e-5)


def test_the_api_sends_attention_only_when_asked(client):
    assert "attention" not in client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict")


def test_a_blanked_span_changes_only_the_video_answer(client):
    whole = client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict")
    blanked = client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict", blank_from=0.0, blank_to=10.0)
    assert blanked["audio"]["logits"] == whole["audio"]["logits"]
    assert not np.allclose(blanked["video"]["logits"], whole["video"]["logits"])
    r = run_cli("predict", EXAMPLES[0], "--json", "--blank-video", "0", "10")
    (want,) = json_lines(r.stdout)
    np.testing.assert_allclose(blanked["video"]["logits"], want["video"]["logits"], rtol=1e-3, atol=1e-3)


def test_a_bad_upload_gets_a_message_and_the_server_goes_on(client, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(Exception, match="not a readable audio or video file"):
        client.predict(handle_file(str(junk)), api_name="/predict")
    ok = client.predict(handle_file(str(EXAMPLES[0])), api_name="/predict")
    assert ok["fused"] is not None


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_in_a_browser_turning_audio_off_empties_its_panel_and_redraws_the_heatmaps(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server)
        page.locator("#video-in input[type=file]").set_input_files(str(EXAMPLES[0]))
        plot = page.locator("#plot-temporal")
        # the first answer: all three panels hold predictions, the heatmaps show both passes
        page.wait_for_function("() => document.querySelector('#label-audio') && "
                               "document.querySelector('#label-audio').innerText.includes('%')", timeout=120_000)
        page.wait_for_function("() => document.querySelector('#plot-temporal').innerText.includes('audio pass')",
                               timeout=60_000)
        assert "%" in page.locator("#label-fused").inner_text()
        assert "video pass" in plot.inner_text()
        page.screenshot(path=str(tmp_path / "both-on.png"), full_page=True)

        page.locator("#audio-on input[type=checkbox]").click()
        page.wait_for_function("() => document.querySelector('#label-audio').innerText.includes('turned off')",
                               timeout=60_000)
        page.wait_for_function("() => !document.querySelector('#plot-temporal').innerText.includes('audio pass')",
                               timeout=60_000)
        assert "%" not in page.locator("#label-audio").inner_text()
        assert "video pass" in plot.inner_text() and "%" in page.locator("#label-fused").inner_text()
        page.screenshot(path=str(tmp_path / "audio-off.png"), full_page=True)
        browser.close()
    assert (tmp_path / "audio-off.png").stat().st_size > 10_000

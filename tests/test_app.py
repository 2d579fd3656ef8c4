"""The app, launched as a user launches it, driven through its API and in a real browser."""
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from .conftest import ROOT, AppServer, json_lines, needs_cuda, run_cli

pytest.importorskip("gradio", reason="the app's tests need gradio: pip install -e '.[test]'")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLES = sorted((Path(ROOT) / "weights" / "examples").glob("*.mp4"))
pytestmark = [pytest.mark.skipif(not EXAMPLES, reason="the demo model is not in weights/: run `uavm build-demo`"), pytest.mark.slow]


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
    r = run_cli("predict", EXAMPLES[0], "--json", "--attention", "--device", "cpu", *flags)
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


@pytest.mark.cuda
@needs_cuda
def test_on_a_gpu_the_api_answers_as_uavm_predict_does_there(tmp_path):
    app = AppServer(tmp_path, "--device", "cuda")  # the last --device wins
    try:
        got = Client(app.url, verbose=False).predict(handle_file(str(EXAMPLES[0])), api_name="/predict",
                                                     include_attention=True)
    finally:
        app.stop()
    (want,) = json_lines(run_cli("predict", EXAMPLES[0], "--json", "--attention", "--device", "cuda", check=True).stdout)
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(got[m]["logits"], want[m]["logits"], rtol=1e-5, atol=1e-5)
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
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="the browser tests need Debian's chromium: apt-get install chromium")
NAMES = ["ambulance siren", "dog howling", "fire truck siren", "playing harpsichord", "playing piano",
         "telephone bell ringing"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield b
        b.close()


def status_has(page, text, timeout=60_000):
    try:
        page.wait_for_function("t => (document.querySelector('#status')?.innerText || '').includes(t)", arg=text,
                               timeout=timeout)
    except Exception:
        now = page.evaluate("document.querySelector('#status')?.innerText")
        raise AssertionError(f"the status line never said {text!r}; it says {now!r}") from None


def top1(page, which="fused") -> str:
    return page.locator(f"#label-{which} .output-class").inner_text().strip()


def labels_have_scores(page, which="fused"):
    page.wait_for_function(f"() => (document.querySelector('#label-{which}')?.innerText || '').includes('%')",
                           timeout=60_000)


def settled(page, timeout=60_000):
    """Every analysis request the page has sent is answered (or skipped as overtaken): the
    page's own count (page.js), so no test waits on the clock."""
    page.wait_for_function("() => window.uavm && window.uavm.settled()", timeout=timeout)


def settled_without_scores(page, which="fused"):
    """The results cleared once every request is answered (an answer overtaken in flight may
    land and be corrected: the page's final state is what counts)."""
    settled(page)
    assert "%" not in page.locator(f"#label-{which}").inner_text()


def open_tab(page, name):
    """A results tab by name; on a phone the last ones sit behind Gradio's "More tabs"."""
    tab = page.locator("#results .tab-container:not(.visually-hidden) button[role=tab]", has_text=name)
    if not tab.count():
        page.locator("#results button[aria-label='More tabs']").click()
        tab = page.locator("#results .overflow-dropdown button", has_text=name)
    tab.first.click()


def error_badges(page) -> int:
    """Gradio's red 'Error' badges on the results: there must never be any. (A junk upload
    also gets the browser's own "Video not playable" toast on the upload: that one is fair.)"""
    return page.evaluate("[...document.querySelectorAll('#results *')].filter(e => !e.children.length && "
                         "e.offsetParent && (e.innerText || '').trim() === 'Error').length")


def example_page(server, browser, name: str):
    """A desktop page with one example clip's answers painted and settled."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#examples button", has_text=name).click()
    labels_have_scores(page, "audio")
    settled(page)
    return page


def set_number(page, elem, value):
    box = page.locator(f"#{elem} input[type=number]")
    box.fill(str(value))
    box.press("Enter")  # commits it (the page's keydown handler blurs the box)


@needs_chromium
def test_in_a_browser_every_rough_edge_of_the_explorer(server, browser, media_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    # 8: the demo says what it is; 2: the examples have names and captions
    assert "demo model" in page.locator("#notice").inner_text() and "vggsound" in page.locator("#notice").inner_text()
    assert sorted(page.locator("#examples button").all_inner_texts()) == NAMES
    assert "turn the video off" in page.inner_text("body") and "turn the audio off" in page.inner_text("body")

    # the first example after launch: its latency, from the click
    t0 = time.time()
    page.locator("#examples button", has_text="ambulance siren").click()
    labels_have_scores(page)
    t_labels = time.time() - t0
    page.wait_for_function("() => document.querySelector('#plot-temporal').innerText.includes('pass')",
                           timeout=60_000)
    print(f"\nfirst example after launch: labels {t_labels:.2f} s, heatmaps {time.time() - t0:.2f} s after the click")
    assert top1(page) == "ambulance siren"  # the clip of the button clicked (the fused top-1)
    # 6: one colour scale with its bar, seconds on the axes, shared layers named
    plot = page.locator("#plot-temporal").inner_text()
    assert "attention received" in plot and "seconds of the clip" in plot and "(shared)" in plot
    assert "shared" in page.locator("#layer").inner_text()
    page.get_by_text("Full T x T attention maps of this layer").click()
    page.wait_for_function("() => (document.querySelector('#plot-full')?.innerText || '').includes('query (s)')",
                           timeout=60_000)
    page.screenshot(path=str(tmp_path / "wide-1440.png"), full_page=True)

    # audio off: its panel says so and its rows leave the heatmaps
    page.locator("#audio-on input[type=checkbox]").click()
    page.wait_for_function("() => document.querySelector('#label-audio').innerText.includes('turned off')",
                           timeout=60_000)
    page.wait_for_function("() => !document.querySelector('#plot-temporal').innerText.includes('audio pass')",
                           timeout=60_000)
    assert "%" in page.locator("#label-fused").inner_text()
    # 1: both off -> the library's message, outputs cleared, no badges
    page.locator("#video-on input[type=checkbox]").click()
    status_has(page, "nothing left to predict from")
    settled_without_scores(page)
    assert error_badges(page) == 0
    page.locator("#audio-on input[type=checkbox]").click()
    page.locator("#video-on input[type=checkbox]").click()
    status_has(page, "server time")
    labels_have_scores(page, "video")

    # 4: a reversed span and a negative time: one message each, the box still ticked, no badges
    set_number(page, "mute-from", 5)
    set_number(page, "mute-to", 2)
    page.locator("#mute-on input[type=checkbox]").click()
    status_has(page, "must start before it ends")
    settled_without_scores(page)
    assert error_badges(page) == 0
    set_number(page, "mute-from", -1)
    status_has(page, "FROM must be a finite number >= 0")
    set_number(page, "mute-from", 2)
    set_number(page, "mute-to", 5)
    status_has(page, "server time")
    page.locator("#mute-on input[type=checkbox]").click()

    # compare every model, the clip as the model got it, the export
    page.locator("button[role=tab]", has_text="Compare models").click()
    page.locator("#compare").click()
    page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('demo-cross-modal')",
                           timeout=60_000)
    table = page.locator("#compare-table").inner_text()
    assert all(n in table for n in ("demo-uavm", "demo-independent", "demo-cross-modal")) and "%" in table
    page.locator("button[role=tab]", has_text="Heard and seen").click()
    page.locator("#make-player").click()
    page.wait_for_function("() => { const v = document.querySelector('#player video'); return v && v.src; }",
                           timeout=60_000)
    page.locator("button[role=tab]", has_text="Export").click()
    page.locator("#export").click()
    page.wait_for_function("() => document.querySelectorAll('#export-files a[href]').length == 2", timeout=60_000)
    links = page.locator("#export-files a[href]").evaluate_all("as => as.map(a => a.href)")
    got = {Path(h.split("?")[0]).suffix: urllib.request.urlopen(h).read() for h in links}
    answer = json.loads(got[".json"])
    assert answer["fused"]["top"][0]["label"] == "ambulance siren" and "attention" in answer
    report = got[".html"].decode()
    assert report.startswith("<!doctype html>") and "plotly" in report
    # a report that stands alone: its title and heading name the clip and the model, every
    # setting, the three passes' answers
    assert "<title>UAVM · ambulance_siren.mp4 · demo-uavm</title>" in report
    assert "<h1>ambulance_siren.mp4</h1>" in report
    for words in ("muted audio", "blanked video", "top k", "attention layer shown", "Audio only", "Video only",
                  "Fused", "fire truck siren", "Full T x T attention maps", "Fig. 5"):
        assert words in report, words

    # 1: the cross-modal model with one modality off
    page.locator("button[role=tab]", has_text="Attention").click()
    page.locator("#model input").click()
    page.get_by_role("option", name="demo-cross-modal").click()
    status_has(page, "demo-cross-modal")
    page.locator("#video-on input[type=checkbox]").click()
    status_has(page, "needs both modalities")
    assert error_badges(page) == 0
    page.locator("#video-on input[type=checkbox]").click()
    status_has(page, "server time")

    # 3: a long clip shows the start; typing a start and pressing Enter moves the analysis
    page.locator("#video-in button[aria-label=Clear]").click()
    status_has(page, "Upload or record a clip")  # 5: clearing the clip clears, without an error
    settled_without_scores(page)
    assert error_badges(page) == 0
    page.locator("#video-in input[type=file]").set_input_files(str(media_dir / "long.mp4"))
    status_has(page, "window 0–10 s")
    page.wait_for_selector("#start input[type=number]", timeout=60_000)
    set_number(page, "start", 12)
    status_has(page, "window 12–22 s")

    # 8: a junk upload gets its message, without the server's paths
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    page.locator("#video-in button[aria-label=Clear]").click()
    status_has(page, "Upload or record a clip")
    page.locator("#video-in input[type=file]").set_input_files(str(junk))
    status_has(page, "not a readable audio or video file")
    msg = page.locator("#status").inner_text()
    assert "junk.mp4" in msg and "/tmp" not in msg and "gradio" not in msg.lower()
    assert error_badges(page) == 0
    page.close()


@needs_chromium
def test_two_users_at_once_each_get_their_own_answer(server, browser):
    """Requests are ordered per page session: one user's request is never skipped because
    another user's is newer (it once was: every page shared one ordering key)."""
    pages = [browser.new_page(viewport={"width": 1440, "height": 1000}) for _ in range(3)]
    for page in pages:
        page.goto(server)
        page.wait_for_selector("#examples", timeout=120_000)
    for page, name in zip(pages, ("dog howling", "playing piano", "telephone bell ringing")):
        page.locator("#examples button", has_text=name).click()  # at once, no waiting in between
    for page, name in zip(pages, ("dog howling", "playing piano", "telephone bell ringing")):
        labels_have_scores(page)
        assert top1(page) == name
        page.close()


def stamped_inputs(server) -> dict:
    """fn_index -> the position of the stamp among the inputs, for every stamped event."""
    cfg = json.loads(urllib.request.urlopen(server + "config").read())
    (stamp,) = [c["id"] for c in cfg["components"] if (c.get("props") or {}).get("elem_id") == "stamp"]
    return {d["id"]: d["inputs"].index(stamp) for d in cfg["dependencies"]
            if "uavm.stamp" in str(d.get("js") or "") and stamp in d["inputs"]}


@needs_chromium
def test_an_older_settings_answer_that_lands_last_is_replaced_by_the_current_one(server, browser):
    """The page gathers an event's settings before it stamps it, so two quick events can reach
    the server stamped in the other order (seen on CI). Forced here: the first of two clicks
    is held back and the two requests' stamps are swapped, so the server answers the older
    settings last; the page must end on the answer to what it shows."""
    page = example_page(server, browser, "dog howling")
    stamped, held = stamped_inputs(server), []

    def hold(route):
        body = route.request.post_data_json if route.request.method == "POST" else None
        at = stamped.get(body.get("fn_index")) if isinstance(body, dict) else None
        if at is None or len(held) >= 2:
            return route.continue_()  # not an analysis request, or after the two
        held.append((route, body, at))
        return None

    page.route("**/queue/join*", hold)
    page.locator("#audio-on input[type=checkbox]").click()  # audio off: held back
    page.locator("#video-on input[type=checkbox]").click()  # then video off: what the page shows
    for _ in range(600):  # the two requests reach the route (the page sent them)
        if len(held) == 2:
            break
        page.wait_for_timeout(50)
    assert len(held) == 2, f"the two analysis requests were not both seen ({len(held)}; " \
        f"{page.evaluate('[window.uavm.sent, window.uavm.done]')} sent/answered; stamped: {stamped})"
    (old_route, old, i), (new_route, new, j) = held
    old["data"][i], new["data"][j] = new["data"][j], old["data"][i]
    new_route.continue_(post_data=json.dumps(new))  # the newer settings, with the older stamp: answered first
    status_has(page, "nothing left to predict from")
    settled(page)  # that answer and its check
    before = page.evaluate("window.uavm.sent")
    old_route.continue_(post_data=json.dumps(old))  # then the older settings, with the newer stamp: they land last
    # its answer paints, so the page asks again (a new number), and settles on the correction
    page.wait_for_function("n => window.uavm.sent > n && window.uavm.settled()", arg=before, timeout=60_000)
    page.unroute("**/queue/join*")
    assert not page.locator("#audio-on input[type=checkbox]").is_checked()
    assert not page.locator("#video-on input[type=checkbox]").is_checked()
    assert "nothing left to predict from" in page.locator("#status").inner_text()
    assert "%" not in page.locator("#label-video").inner_text()
    page.close()


@needs_chromium
def test_on_a_phone_the_results_come_into_view_after_tapping_an_example(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#examples button", has_text="dog howling").tap()
    labels_have_scores(page)
    try:  # the smooth scroll brings them up
        page.wait_for_function("() => { const t = document.querySelector('#status').getBoundingClientRect().top; "
                               "return t >= 0 && t < 844; }", timeout=30_000)
    except Exception:
        top = page.evaluate("document.querySelector('#status').getBoundingClientRect().top")
        raise AssertionError(f"the results start {top:.0f} px down the viewport") from None
    # the span fields stay on the line of their box
    tops = [page.evaluate(f"document.querySelector('#{e}').getBoundingClientRect().top")
            for e in ("mute-on", "mute-from", "mute-to")]
    assert max(tops) - min(tops) < 40, tops
    page.screenshot(path=str(tmp_path / "phone-390.png"), full_page=False)
    page.screenshot(path=str(tmp_path / "phone-390-full.png"), full_page=True)
    page.close()


@needs_chromium
def test_in_a_browser_the_explain_panel_and_a_long_clips_timeline(server, browser, tmp_path):
    from uavm.demo.synth import demo_clip

    page = browser.new_page(viewport={"width": 1440, "height": 1100})
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#examples button", has_text="ambulance siren").click()
    labels_have_scores(page)
    # the explanation: computed when its tab opens, on the heatmaps' time axis
    page.locator("button[role=tab]", has_text="Explain").click()
    page.wait_for_function("() => (document.querySelector('#explain-summary')?.innerText || '').includes('Explaining')",
                           timeout=60_000)
    summary = page.locator("#explain-summary").inner_text()
    assert "ambulance siren" in summary and "fused logit" in summary and "Occlusion hurts most" in summary
    assert "disagree" in summary  # the siren's sound alone says another vehicle, its picture another class
    page.wait_for_function("() => (document.querySelector('#plot-explain')?.innerText || '').includes('occlusion')",
                           timeout=60_000)
    assert "10 s" in page.locator("#plot-explain").inner_text()  # seconds on its time axes
    # kept up to date while open: audio off -> no audio occlusion, the library says why
    page.locator("#audio-on input[type=checkbox]").click()
    page.wait_for_function("() => (document.querySelector('#explain-summary')?.innerText || '').includes('audio: turned off')",
                           timeout=60_000)
    page.locator("#audio-on input[type=checkbox]").click()
    page.screenshot(path=str(tmp_path / "explain-1440.png"), full_page=True)

    # a one-minute clip: the timeline strip appears above the explorer; a click moves the window there
    long = demo_clip(tmp_path / "minute.mp4", seconds=60, fps=10, size=(96, 128))
    page.locator("#video-in button[aria-label=Clear]").click()
    status_has(page, "Upload or record a clip")
    page.locator("#video-in input[type=file]").set_input_files(str(long))
    page.wait_for_function("() => (document.querySelector('#timeline-plot')?.innerText || '').includes('fused')",
                           timeout=120_000)
    assert "Timeline" in page.locator("#timeline-note").inner_text()
    status_has(page, "window 0–10 s")
    bars = page.locator("#timeline-plot .barlayer .point")
    assert bars.count() >= 11 * 4  # audio, video, fused and agreement bands of the 11 windows
    plot_box = page.locator("#timeline-plot .nsewdrag").first.bounding_box()
    px = plot_box["width"] / 60  # pixels per second
    boxes = [b for b in (bars.nth(i).bounding_box() for i in range(bars.count())) if b and b["width"] > 2]
    # every band as wide as its 10 s window (the last ones reach the clip's end)
    full = [b for b in boxes if b["x"] + b["width"] < plot_box["x"] + plot_box["width"] - 2]
    assert full and all(abs(b["width"] - 10 * px) < 3 for b in full), [round(b["width"] / px, 1) for b in full]
    lanes = sorted({round(b["y"]) for b in boxes})  # two lanes per row: audio, video, fused, agreement
    assert len(lanes) == 8, lanes
    fused = [b for b in boxes if round(b["y"]) in lanes[4:6]]
    x = plot_box["x"] + 25 * px  # the window starting at 25 s
    b = min(fused, key=lambda b: abs(b["x"] - x))
    # the window shown (0-10 s) is outlined
    outline = page.evaluate("() => { const d = document.getElementById('timeline-div'); "
                            "return (d.layout.shapes || []).filter(s => s.name !== 'playhead').map(s => [s.x0, s.x1]); }")
    assert outline == [[0, 10]], outline
    # and the player's time is marked on it (follow playback: the player is at 0 s)
    page.wait_for_function("() => (document.getElementById('timeline-div').layout.shapes || [])"
                           ".some(s => s.name === 'playhead' && s.x0 === 0)", timeout=15_000)
    # the agreement row's colours are greys, never a class's
    colours = page.evaluate("() => document.getElementById('timeline-div').data.filter(t => t.y[0] === 'agree')"
                            ".flatMap(t => t.marker.color)")
    assert colours and all(c in ("#f2f2f2", "#3a3a3a", "#ffffff") for c in colours), colours
    page.mouse.click(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    status_has(page, "window 25–35 s")
    assert "decoded and extracted" not in page.locator("#status").inner_text()  # served from the clip
    page.wait_for_function("() => JSON.stringify((document.getElementById('timeline-div').layout.shapes || [])"
                           ".filter(s => s.name !== 'playhead').map(s => [s.x0, s.x1])) === '[[25,35]]'",
                           timeout=30_000)  # the outline moved
    page.wait_for_function("() => document.querySelector('#video-in video').currentTime >= 25", timeout=15_000)
    # (and the player went where the click was)
    page.screenshot(path=str(tmp_path / "timeline-1440.png"), full_page=True)
    page.close()


# -- the first hour, at a desktop's and a phone's size ----------------------------------------
SIZES = {"desktop": dict(viewport={"width": 1440, "height": 900}),
         "phone": dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)}
BOXES = "els => els.filter(e => e.getClientRects().length).map(e => { const r = e.getBoundingClientRect(); " \
        "return [r.left, r.top, r.right, r.bottom]; })"


def boxes(page, selector) -> list:
    return page.locator(selector).evaluate_all(BOXES)


def inside(inner, outer, slack=1.5) -> bool:
    return inner[0] >= outer[0] - slack and inner[2] <= outer[2] + slack


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@needs_chromium
@pytest.mark.parametrize("size", SIZES)
def test_at_a_desktops_and_a_phones_size_nothing_is_cut_covered_or_unexplained(server, browser, tmp_path, size):
    import re

    page = browser.new_page(**SIZES[size])
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#examples button", has_text="ambulance siren").click()
    labels_have_scores(page)
    page.wait_for_function("() => document.querySelector('#plot-temporal').innerText.includes('pass')", timeout=60_000)
    settled(page)
    # the heatmap's titles stay inside its figure
    (fig,) = boxes(page, "#temporal-plot")
    notes = boxes(page, "#temporal-plot .annotation")
    assert notes and all(inside(n, fig) for n in notes), (fig, notes)
    # the answers say what their scores are, and claim no more than the model knows
    note = page.locator("#answer-note").inner_text()
    assert "12 classes" in note and "mean nothing" in note
    # a slider moved with the keyboard re-runs like one moved with the mouse
    slider = page.locator("#layer input[type=range]")
    slider.focus()
    slider.press("ArrowLeft")
    page.wait_for_function("() => document.querySelector('#plot-temporal').innerText.includes('layer 5/6')",
                           timeout=60_000)
    # the explanation's legend covers no title and no plot
    open_tab(page, "Explain")
    page.wait_for_function("() => (document.querySelector('#plot-explain')?.innerText || '').includes('occlusion')",
                           timeout=60_000)
    (legend,) = boxes(page, "#plot-explain .legend")
    (fig,) = boxes(page, "#plot-explain .js-plotly-plot")
    notes = boxes(page, "#plot-explain .annotation")
    covered = [b for b in notes + boxes(page, "#plot-explain .nsewdrag") if overlap(legend, b)]
    covered += [b for b in boxes(page, "#plot-explain .xtitle, #plot-explain .ytitle") if any(overlap(b, n) for n in notes)]
    page.screenshot(path=str(tmp_path / f"explain-{size}.png"), full_page=True)
    assert not covered, (legend, covered)
    cut = [b for b in boxes(page, "#plot-explain .annotation") + [legend] if not inside(b, fig)]
    assert not cut, (fig, cut)
    # every column of the comparison inside its container; every "—" says why
    open_tab(page, "Compare models")
    page.locator("#compare").click()
    page.wait_for_function("() => document.querySelector('#compare-table').innerText.includes('demo-cross-modal')",
                           timeout=60_000)
    (table,) = boxes(page, "#compare-table")
    cells = boxes(page, "#compare-table td") + boxes(page, "#compare-table th")
    assert cells and all(inside(c, table) for c in cells), (table, [c for c in cells if not inside(c, table)])
    text = page.locator("#compare-table").inner_text()
    assert "— none: the cross-modal model answers only with both" in text
    assert all(len(why.strip()) > 3 for why in re.findall(r"—([^\n\t]*)", text)), text
    page.screenshot(path=str(tmp_path / f"compare-{size}.png"), full_page=True)
    page.close()


@needs_chromium
def test_a_bad_upload_is_said_once_and_leaves_no_empty_box(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#examples button", has_text="dog howling").click()
    labels_have_scores(page)
    open_tab(page, "Explain")
    page.wait_for_function("() => (document.querySelector('#explain-summary')?.innerText || '').includes('Explaining')",
                           timeout=60_000)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    page.locator("#video-in button[aria-label=Clear]").click()
    status_has(page, "Upload or record a clip")
    page.locator("#video-in input[type=file]").set_input_files(str(junk))
    status_has(page, "not a readable audio or video file: it is a text file")
    settled(page)
    said = page.evaluate("[...document.querySelectorAll('body *')].filter(e => e.getClientRects().length && "
                         "[...e.childNodes].some(n => n.nodeType === 3 && n.textContent.includes('⚠️')))"
                         ".map(e => e.innerText)")
    assert len(said) == 1, said
    for empty in ("#timeline", "#plot-explain", "#answers", "#timeline-div"):
        assert not boxes(page, empty) or boxes(page, empty)[0][3] - boxes(page, empty)[0][1] < 2, empty
    page.screenshot(path=str(tmp_path / "bad-upload.png"), full_page=True)
    page.close()


@needs_chromium
def test_a_short_clips_padding_is_labelled_and_the_report_holds_the_explanation(server, browser, tmp_path):
    from uavm.demo.synth import demo_clip

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(server)
    page.wait_for_selector("#examples", timeout=120_000)
    page.locator("#video-in input[type=file]").set_input_files(str(demo_clip(tmp_path / "four.mp4", seconds=4)))
    labels_have_scores(page)
    page.wait_for_function("() => document.querySelector('#plot-temporal').innerText.includes('padding')",
                           timeout=60_000)
    assert "padding: the audio ends at 4.0 s" in page.locator("#plot-temporal").inner_text()
    open_tab(page, "Explain")
    page.wait_for_function("() => (document.querySelector('#explain-summary')?.innerText || '').includes('padding')",
                           timeout=60_000)
    page.wait_for_function("() => (document.querySelector('#plot-explain')?.innerText || '').includes('padding after')",
                           timeout=60_000)  # the figure, drawn a moment after the summary
    open_tab(page, "Export")
    page.locator("#export").click()
    page.wait_for_function("() => document.querySelectorAll('#export-files a[href]').length == 2", timeout=60_000)
    (html,) = [h for h in page.locator("#export-files a[href]").evaluate_all("as => as.map(a => a.href)")
               if h.split("?")[0].endswith(".html")]
    report = urllib.request.urlopen(html).read().decode()
    assert "<h1>four.mp4</h1>" in report and "Explanation: what mattered" in report and "Explaining" in report
    page.screenshot(path=str(tmp_path / "short-clip.png"), full_page=True)
    page.close()


@needs_chromium
def test_in_a_browser_the_sound_of_another_clip_noise_and_the_weight(server, browser, tmp_path):
    """Swap, degrade, weigh on the page: each says itself in the status line and changes the
    answers the way the library's known answers say it must."""
    page = example_page(server, browser, "dog howling")
    assert top1(page, "audio") == "dog howling"
    page.locator("#variant").get_by_text("Swap, degrade, weigh").click()
    piano = next(p for p in EXAMPLES if p.stem == "playing_piano")
    page.locator("#audio-from input[type=file]").set_input_files(str(piano))
    status_has(page, "the audio from playing_piano.mp4, the video from dog_howling.mp4")
    settled(page)
    assert top1(page, "audio") == "playing piano" and top1(page, "video") == "dog howling"
    assert "the sound of playing_piano.mp4" in page.locator("#label-audio").inner_text()
    box = page.locator("#audio-snr input")
    box.fill("-30")
    box.press("Enter")  # commits it, as in a number box (page.js)
    status_has(page, "degraded: audio at -30 dB SNR")
    settled(page)
    assert top1(page, "video") == "dog howling"  # the noise is over the sound only
    # drowned in noise, the sound is nothing like the training data's: the page says so beside it
    assert "unfamiliar input" in page.locator("#label-audio").inner_text()
    assert "unfamiliar input" not in page.locator("#label-video").inner_text()
    warning = page.locator("#ood-note").inner_text()
    assert "Unfamiliar input: do not trust these answers" in warning and "Audio only" in warning
    page.locator("#degrade-on input").check()  # the noise over 2-5 s only
    status_has(page, "degraded: audio at -30 dB SNR (white noise) from 2 to 5 s")
    settled(page)
    slider = page.locator("#audio-weight input[type=range]")
    slider.focus()
    slider.press("ArrowLeft")  # 0.45: the keys commit it (page.js)
    status_has(page, "fused = 0.45 × audio + 0.55 × video")
    settled(page)
    assert error_badges(page) == 0
    page.screenshot(path=str(tmp_path / "variant.png"), full_page=True)
    # the sweep: one degradation over levels on this window, drawn
    open_tab(page, "Sweep")
    page.locator("#sweep-kind input").click()
    page.get_by_role("option", name="Blur: sigma (px)").click()
    page.wait_for_function("() => document.querySelector('#sweep-kind input')?.value === 'Blur: sigma (px)'",
                           timeout=15_000)
    page.locator("#sweep-levels input").fill("0.5, 4, 32")
    page.locator("#sweep").click()
    page.wait_for_function("() => (document.querySelector('#sweep-summary')?.innerText || '').includes('Top-1')",
                           timeout=60_000)
    assert "blur: sigma (px)" in page.locator("#sweep-summary").inner_text()
    summary = page.locator("#sweep-summary").inner_text()
    assert "The score of" in summary and "video" in summary, summary
    page.wait_for_function("() => document.querySelectorAll('#plot-sweep .scatterlayer .trace').length >= 3",
                           timeout=60_000)
    assert "blur" in page.locator("#plot-sweep").inner_text() and error_badges(page) == 0
    page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)


@needs_chromium
def test_in_a_browser_the_figures_follow_the_player_and_a_click_seeks_it(server, browser, tmp_path):
    """A cursor at the player's time on the heatmaps; a click on the heatmap at t seconds puts
    the player at t (the Explain curves and a long clip's timeline share the same code)."""
    page = example_page(server, browser, "dog howling")
    page.wait_for_function("() => document.querySelector('#temporal-plot')?.data?.length > 0", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#video-in video')?.readyState > 0", timeout=60_000)
    page.evaluate("document.querySelector('#video-in video').currentTime = 3")
    cursor_at = ("t => ((document.querySelector('#temporal-plot').layout.shapes || [])"
                 ".find(s => s.name === 'playhead') || {}).x0 === t")
    page.wait_for_function(cursor_at, arg=3, timeout=15_000)
    page.locator("#temporal-plot").scroll_into_view_if_needed()
    x, y = page.evaluate("""() => {
        const div = document.querySelector('#temporal-plot'), L = div._fullLayout, r = div.getBoundingClientRect();
        return [r.left + L.xaxis._offset + L.xaxis.l2p(6), r.top + L.yaxis._offset + L.yaxis._length / 4];
    }""")
    page.mouse.move(x, y)  # plotly takes a click where the pointer hovered first
    page.wait_for_function("() => !!document.querySelector('#temporal-plot .hoverlayer .hovertext')", timeout=15_000)
    page.mouse.click(x, y)  # on the heatmap at 6 s
    page.wait_for_function("() => Math.abs(document.querySelector('#video-in video').currentTime - 6) < 0.34",
                           timeout=15_000)
    page.wait_for_function("() => { const s = (document.querySelector('#temporal-plot').layout.shapes || [])"
                           ".find(s => s.name === 'playhead'); return s && Math.abs(s.x0 - 6) < 0.34; }",
                           timeout=15_000)
    assert error_badges(page) == 0
    page.screenshot(path=str(tmp_path / "playhead.png"), full_page=True)
    page.close()

"""The app's serving helpers without a server: the door for uploads, the disk cap, and one
session's requests answered in order."""
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the app's tests need gradio: pip install -e '.[test]'")


def test_the_upload_door_takes_regular_files_inside_the_upload_folder_only(tmp_path):
    from uavm.app.serving import Uploads
    from uavm.errors import InputError

    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    ok = root / "abc" / "clip.mp4"
    ok.write_bytes(b"x")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    (root / "abc" / "link.mp4").symlink_to(outside)
    os.mkfifo(root / "abc" / "fifo.mp4")
    door = Uploads(str(root))
    assert door.check(str(ok)) == os.path.realpath(ok)
    for bad in (str(outside), str(root / "abc" / "link.mp4"), str(root / "abc" / "fifo.mp4"), str(root / "abc"),
                str(root / "abc" / ".." / ".." / "outside.mp4"), 19, None, "", "relative.mp4"):
        with pytest.raises(InputError):
            door.check(bad)
    with pytest.raises(InputError, match="handle_file"):
        door.from_api(str(ok))  # the API takes Gradio's FileData only
    assert door.from_api({"path": str(ok), "meta": {"_type": "gradio.FileData"}}) == os.path.realpath(ok)


def test_uploads_go_an_hour_after_their_last_use_and_nothing_is_evicted_for_room(tmp_path):
    from uavm.app.janitor import remove_old
    from uavm.app.serving import Uploads

    now = time.time()
    for i in range(4):
        d = tmp_path / f"u{i}"
        d.mkdir()
        (d / "clip.mp4").write_bytes(b"x" * 1000)
        os.utime(d / "clip.mp4", (now - 4000, now - 4000))  # uploaded over an hour ago
    door = Uploads(str(tmp_path))
    door.check(str(tmp_path / "u1" / "clip.mp4"))  # ... but u1 was just used: kept another hour
    freed = remove_old(str(tmp_path), 3600)
    assert freed == 3000
    assert sorted(p.parent.name for p in tmp_path.rglob("*.mp4")) == ["u1"]
    assert not (tmp_path / "u0").exists()  # its folder went with it
    assert remove_old(str(tmp_path), 3600) == 0  # and however full the folder, nothing young is removed


def test_example_clips_are_served_from_the_package(tmp_path):
    from uavm.app.serving import Uploads
    from uavm.assets import examples
    from uavm.errors import InputError

    ex = [str(p) for p in examples()]
    if not ex:
        pytest.skip("the demo model is not in weights/: run `uavm build-demo`")
    door = Uploads(str(tmp_path), examples=ex)
    assert door.check(ex[0]) == os.path.realpath(ex[0])
    with pytest.raises(InputError):  # only those files: not their folder, not a neighbour
        door.check(str(Path(ex[0]).parent / "config.json"))


def test_a_sessions_requests_are_answered_in_order_and_overtaken_ones_know_it():
    import threading

    from uavm.app.sessions import InOrder

    order, overtaken, gate = [], {}, threading.Event()
    q = InOrder()

    def request(i, hold=False):
        with q.turn("s1") as superseded:
            if hold:
                gate.wait(10)  # the first request is slow: the others queue behind it
            overtaken[i] = superseded()
            order.append(i)

    def until(cond):  # waits on the queue's own state, never on the clock
        deadline = time.time() + 60
        while not cond() and time.time() < deadline:
            time.sleep(0.001)
        assert cond()

    threads = [threading.Thread(target=request, args=(0, True))]
    threads[0].start()
    until(lambda: q._sessions.get("s1", {}).get("busy"))
    for i in (1, 2, 3):
        threads.append(threading.Thread(target=request, args=(i,)))
        threads[-1].start()
        until(lambda i=i: q._sessions["s1"]["seen"] == i + 1)  # it has arrived: the next comes after it
        if i > 1:  # its arrival made the one before it stale: that one leaves now, while 0 still runs
            until(lambda i=i: len(order) >= i - 1)
    with q.turn("s2") as superseded:  # another session is not held up
        assert not superseded()
    until(lambda: len(order) >= 2)
    assert order == [1, 2]  # stale while waiting: they left while 0 still held the session, holding no thread
    gate.set()
    for t in threads:
        t.join(10)
    assert order == [1, 2, 0, 3]  # the newest after the one that held the session
    assert overtaken == {0: True, 1: True, 2: True, 3: False}  # only the newest does the work
    # the page stamps its requests: one that reaches the server after a newer one has been
    # answered (two HTTP requests overtaking each other) must not answer
    with q.turn("s3", stamp=2) as superseded:
        assert not superseded()
    with q.turn("s3", stamp=1) as superseded:
        assert superseded()
    with q.turn("s3", stamp=2) as superseded:  # a repeated stamp: answered already
        assert superseded()
    with q.turn("s3", stamp=3) as superseded:
        assert not superseded()
    for junk in ("x", float("nan"), float("inf"), -4, 0, 2.5, 2 ** 60, None, [1]):
        assert InOrder.stamp(junk) is None  # then arrival order
    with q.turn("s3", stamp="junk") as superseded:
        assert not superseded()  # arrival order: after the newest seen
    assert all(not s["busy"] and not s["waiting"] for s in q._sessions.values())


def test_the_sessions_remembered_are_bounded(monkeypatch):
    from uavm.app.sessions import InOrder

    monkeypatch.setattr(InOrder, "REMEMBER", 10)
    q = InOrder()
    for i in range(100):
        with q.turn(f"s{i}", stamp=1):
            pass
    assert len(q._sessions) == 10


def test_every_page_handler_that_names_the_request_is_given_it():
    """Gradio hands the request (and progress) only to named parameters before any *args: a
    handler that asks for them through *args gets None, and then every client's requests
    share one ordering key (one user's answer skipped because another's was newer)."""
    import inspect

    import gradio as gr
    from gradio.helpers import special_args

    from uavm.app import build_app, find_bundles
    from uavm.app.sessions import session_of

    demo = build_app(find_bundles(), "cpu", warm=False).blocks
    request, checked = object(), 0
    for block_fn in demo.fns.values():
        fn = inspect.unwrap(block_fn.fn) if block_fn.fn else None
        if fn is None or "request" not in inspect.signature(fn).parameters:
            continue
        args, progress_index, _, _ = special_args(block_fn.fn, inputs=list(range(len(block_fn.inputs))),
                                                  request=request)
        assert request in args, f"{fn.__name__} is never given the request"
        if "progress" in inspect.signature(fn).parameters:
            assert progress_index is not None, f"{fn.__name__} is never given its progress"
        checked += 1
    assert checked >= 2  # the page's analysis and the API
    assert session_of(None, "explore") is None and session_of(gr.Request(), "explore") is None


@pytest.mark.slow  # a fresh interpreter importing gradio: seconds
@pytest.mark.parametrize("env,want", [(None, "False"), ("True", "True")])
def test_the_app_sends_no_telemetry_unless_the_user_asks(env, want):
    import subprocess
    import sys

    code = ("import os\nif os.environ.get('SET') is None: os.environ.pop('GRADIO_ANALYTICS_ENABLED', None)\n"
            "else: os.environ['GRADIO_ANALYTICS_ENABLED'] = os.environ['SET']\n"
            "import uavm.app, gradio.analytics as a\nprint(a.analytics_enabled())")
    env_ = {k: v for k, v in os.environ.items() if k not in ("SET", "GRADIO_ANALYTICS_ENABLED")}
    if env is not None:
        env_["SET"] = env
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_, timeout=120)
    assert r.stdout.strip() == str(want == "True"), r.stderr


def test_caches_share_one_budget_of_bytes_and_evict_the_least_recently_used(tmp_path):
    import numpy as np

    from uavm.cache import Budget, Store

    budget = Budget(10_000)
    a, b = Store(100, budget=budget), Store(100, budget=budget)
    a.put("x", np.zeros(4000, np.uint8))
    b.put("y", np.zeros(4000, np.uint8))
    a.get_or("x", None)  # used again: y is now the oldest
    b.put("z", np.zeros(4000, np.uint8))
    assert "x" in a and "y" not in b and "z" in b and budget.used <= 10_000
    closed = []
    c = Store(100, evict=closed.append, budget=budget)
    big = np.zeros(50_000, np.uint8)
    c.put("huge", big)  # bigger than the whole budget: kept alone, everything else out
    assert list(c) == ["huge"] and not a and not b and budget.used == big.nbytes
    c.put("next", np.zeros(10, np.uint8))
    assert closed and closed[0] is big  # an evicted entry is told (to close its files)


def test_logins_expire():
    from uavm.app.guard import ExpiringTokens

    tokens = ExpiringTokens({"old": "ana"}, seconds=3600)
    tokens["new"] = "ana"
    tokens.made["old"] -= 7200  # made two hours ago
    assert tokens.get("old") is None and tokens.get("new") == "ana"
    tokens.made["new"] -= 7200
    assert tokens.sweep() == 1 and not tokens


def test_idle_sessions_are_dropped_whatever_protocol_they_speak():
    import threading
    import types

    from uavm.app.sessions import Sessions

    holder = types.SimpleNamespace(session_data={"api": 1, "page": 2, "busy": 3}, lock=threading.Lock(),
                                   time_last_used={})
    s = Sessions(api_idle_s=30, page_idle_s=3600)
    for h, page in (("api", False), ("page", True), ("busy", True)):
        s.used(types.SimpleNamespace(session_hash=h), page=page)
    now = time.time()
    s.last["api"] = (now - 60, False)  # an API client gone a minute
    s.last["page"] = (now - 7200, True)  # a page nobody has used for two hours
    assert s.sweep(holder) == 2 and holder.session_data == {"busy": 3}


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    """The page's handlers on the demo models, without a browser or a server process."""
    from uavm.app import build_app, find_bundles
    from uavm.app.serving import Uploads

    app = build_app(find_bundles(), "cpu", warm=False)
    root = tmp_path_factory.mktemp("uploads")
    app.server.uploads = Uploads(str(root))
    return app.server, root


@pytest.mark.slow  # the demo models loaded, a clip encoded
def test_the_clip_as_the_model_got_it_and_the_export_of_a_wide_clip(page_server):
    from uavm.app import page, tabs
    from uavm.demo.synth import demo_clip

    server, root = page_server
    (root / "u").mkdir(exist_ok=True)
    clip = demo_clip(root / "u" / "wide.mp4", seconds=4, size=(224, 896))  # 4:1, the widest read
    s = page.Settings(media=str(clip), model=server.names[0])
    out = tabs.heard_and_seen(server, s)
    assert out["player"].startswith(server.workdir) and Path(out["player"]).stat().st_size > 0, out
    files = tabs.export(server, s)["export_files"]
    assert len(files) == 2 and all(f.startswith(server.workdir) for f in files)
    report = Path(files[0]).read_text()
    assert "<h1>wide.mp4</h1>" in report and "padding: the audio ends at 4.0 s" in report
    from dataclasses import replace

    # the report says what a changed answer was made from
    varied = Path(tabs.export(server, replace(s, audio_snr="-20", audio_weight=0.25))["export_files"][0]).read_text()
    assert "audio at -20 dB SNR" in varied and "audio weight" in varied and "audio weight" not in report
    for layer in ("x", float("nan")):  # a hostile layer is one line, never an internal error
        out = tabs.export(server, replace(s, layer=layer))
        assert out["status"].startswith("⚠️ layer") and out["export_files"] is None, out


def test_the_apps_one_failure_rule(caplog):
    """Bad input: its line, the server's paths as the file's name, no traceback logged; a
    client that left: nothing to say; anything else: a bug, logged with its traceback."""
    import logging

    from uavm import work
    from uavm.app.serving import INTERNAL, failure
    from uavm.errors import InputError

    with caplog.at_level(logging.INFO, logger="uavm.app"):
        assert failure(InputError("/srv/up/abc/clip.mp4: no video"), "predict", "/srv/up/abc/clip.mp4") == \
            "clip.mp4: no video"
        assert not caplog.records
        assert failure(work.Cancelled("gone"), "predict") is None
        assert "its client left" in caplog.records[-1].getMessage()
        try:
            raise NameError("oops")
        except NameError as e:
            assert failure(e, "predict") == INTERNAL
        assert caplog.records[-1].levelno == logging.ERROR and caplog.records[-1].exc_info[0] is NameError

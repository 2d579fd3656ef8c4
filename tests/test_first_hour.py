"""What a newcomer meets in the first hour of the command line: every failure one line and
exit 1 that names what they gave and what to do; help that answers at once and shows the
defaults; an answer small enough to read."""
import socket
import subprocess
import sys

import numpy as np
import pytest

from .conftest import json_lines, run_cli


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
    return lines[0]


@pytest.fixture(scope="module")
def not_media(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("not-media")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(d / "photo.jpg")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(d / "drawing.png")
    (d / "notes.txt").write_text("a shopping list\n" * 20)
    (d / "paper.pdf").write_bytes(b"%PDF-1.4\n" + b"0" * 200)
    (d / "photo-named.mp4").write_bytes((d / "photo.jpg").read_bytes())  # the name says video, the bytes do not
    return d


@pytest.mark.parametrize("name,what", [("photo.jpg", "it is a JPEG image; a still image is not a clip"),
                                       ("drawing.png", "it is a PNG image"), ("notes.txt", "it is a text file"),
                                       ("paper.pdf", "it is a PDF document"),
                                       ("photo-named.mp4", "it is a JPEG image")])
def test_a_file_that_is_not_media_is_named_and_said_what_it_is(not_media, tiny_bundle, name, what):
    line = one_line(run_cli("predict", not_media / name, "--bundle", tiny_bundle))
    assert line == f"uavm: {not_media / name}: not a readable audio or video file: {what}" + line.split(what, 1)[1]
    assert "Error" not in line  # never the decoder library's exception names


def test_a_folder_of_files_that_are_not_media_is_one_line(not_media, tiny_bundle, tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_line(run_cli("predict", tmp_path / "empty", "--bundle", tiny_bundle))
    assert line.startswith(f"uavm: {tmp_path / 'empty'}: a folder with no audio or video files in it")


@pytest.mark.parametrize("args,msg", [
    (["--port", "99999"], "uavm app: argument --port: a port is a whole number from 1 to 65535, got '99999'"),
    (["--port", "http"], "a port is a whole number from 1 to 65535, got 'http'"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: no such address"),
    (["--host", "192.0.2.1"], "--host 192.0.2.1 is not an address of this machine"),
    (["--bundle", "."], "--bundle .: not a model bundle"),
])
def test_the_apps_options_are_checked_before_anything_loads(args, msg, monkeypatch):
    from uavm.cli import app

    monkeypatch.setattr(app, "serve", lambda a: pytest.fail("served"), raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    if "--port" not in args:
        args = [*args, "--port", str(free)]
    line = one_line(run_cli("app", *args))
    assert msg in line


def test_a_port_in_use_is_one_line_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_line(run_cli("app", "--port", port))
    assert line == f"uavm: port {port} on 127.0.0.1 is in use (another app?): pick another with --port N"


def test_without_the_apps_extras_the_hint_fits_how_uavm_was_installed(monkeypatch):
    from uavm.assets import install_hint

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails as if it were not installed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    line = one_line(run_cli("app", "--port", free))
    assert line == f"uavm: the app needs gradio, which is not installed: {install_hint('app')}"
    hint = install_hint("app")
    # this checkout is where uavm comes from here: the command installs from it, not from an index
    assert hint.startswith("pip install") and ("[app]'" in hint or "'gradio>=6'" in hint), hint


def test_help_answers_without_loading_torch_timm_or_gradio_and_shows_defaults():
    code = ("import sys, contextlib, io\nfrom uavm.cli import build_parser, main\n"
            "names = [a for a in build_parser()._subparsers._group_actions[0].choices]\n"
            "for n in [None, *names]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n            main(['--help'] if n is None else [n, '--help'])\n"
            "        except SystemExit:\n            pass\n"
            "print(len(names), sorted(m for m in ('torch', 'timm', 'gradio', 'torchaudio', 'plotly') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    n, loaded = r.stdout.split(" ", 1)
    assert int(n) >= 15 and loaded.strip() == "[]", r.stdout + r.stderr
    helps = run_cli("predict", "--help").stdout
    assert "--top-k K" in helps and "(default: 5)" in helps and "(default: 0.0)" in helps
    assert "UAVM_DECODE_TIMEOUT" in run_cli("--help").stdout  # the environment, with its defaults
    assert "(default: 7860)" in run_cli("app", "--help").stdout


def test_json_has_attention_only_when_asked(media_dir, tiny_bundle):
    plain = json_lines(run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--json", check=True).stdout)
    full = json_lines(run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--json", "--attention",
                              check=True).stdout)
    assert "attention" not in plain[0] and set(full[0]["attention"]) == {"audio", "video"}
    assert {k: v for k, v in full[0].items() if k != "attention"} == plain[0]


def test_file_and_label_names_reach_the_terminal_escaped(tmp_path, tiny_bundle):
    name = tmp_path / "a\x1b]0;pwned\x07\nb.mp4"
    name.write_bytes(b"not media")
    r = run_cli("predict", name, "--bundle", tiny_bundle)
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;pwned\\x07 b.mp4" in r.stderr and len(r.stderr.strip().splitlines()) == 1  # (a message is one line)


# -- the examples' captions are data beside the clips --------------------------------------------
def test_the_shipped_examples_have_captions_and_a_hostile_captions_file_is_only_data(tmp_path):
    import json

    from uavm.assets import CAPTIONS, example_captions, examples

    shipped = example_captions(examples())
    assert shipped and all(label and tip for label, tip in shipped), shipped  # every example says what to try
    for p in ("a_clip.mp4", "b_clip.mp4", "c.mp4"):
        (tmp_path / p).write_bytes(b"")
    (tmp_path / CAPTIONS).write_text(json.dumps({"clips": {
        "a_clip.mp4": {"label": "x" * 500, "tip": "t"}, "b_clip.mp4": {"label": ["not", "text"]}, "c.mp4": "no"}}))
    got = example_captions(sorted(tmp_path.glob("*.mp4")))
    assert got == [("x" * 80, "t"), ("b clip", ""), ("c", "")]
    (tmp_path / CAPTIONS).write_text("{broken")
    assert example_captions([tmp_path / "a_clip.mp4"]) == [("a clip", "")]


# -- one "turned off" rule -------------------------------------------------------------------------
def test_a_modality_switched_off_is_gone_and_what_the_file_says_stays_the_reason():
    from uavm.window import Decoded

    d = Decoded(np.zeros(16000, np.float32), None, {"video": "the file has no video stream"})
    off = d.switched(audio=False, video=False)
    assert off.wav is None and off.frames is None
    assert off.missing == {"audio": "turned off", "video": "the file has no video stream"}
    assert d.switched().wav is d.wav and d.missing == {"video": "the file has no video stream"}  # not changed
    empty = Decoded(None, np.zeros((0, 8, 8, 3), np.uint8), {})
    assert empty.switched().frames is None

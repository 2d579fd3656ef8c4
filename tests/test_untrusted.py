"""Every kind of input a stranger may send: a prediction or a one-line message naming the
problem, and the process goes on with the next file."""
import threading
import time

import numpy as np
import pytest

from uavm import media
from uavm.demo.synth import demo_clip
from uavm.media import write_media

from .conftest import json_lines, run_cli

pytestmark = pytest.mark.slow  # the media zoo
SR = 16000


def _tone(seconds, sr=SR, channels=1, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    w = (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.tile(w, (channels, 1)) if channels > 1 else w


def _frames(n, h=64, w=96, value=None):
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i] = value if value is not None else (i * 7) % 255
        if value is None:
            f[i, h // 4:h // 2, (i * 3) % w:(i * 3) % w + 8] = 255
    return f


def _vfr(path):
    """Variable frame rate: frames at irregular times."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(_frames(40)):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            t += int(20 + 180 * (i % 3 == 0))
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _rotated(path):
    """A phone-style portrait video: landscape frames stored with a display matrix that
    turns them 90 degrees clockwise (written into the MP4's tkhd box)."""
    import struct

    f = np.zeros((10, 64, 96, 3), np.uint8)
    f[:, :10, :30] = 255  # a bright band at the top left of the stored frame
    write_media(path, f, 10, _tone(1))
    b = bytearray(path.read_bytes())
    i = b.index(b"tkhd")
    off = i + 8 + (20 if b[i + 4] == 0 else 32) + 16
    b[off:off + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(b))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """name -> (path, expected: None for a prediction, else a substring of the message)."""
    d = tmp_path_factory.mktemp("zoo")
    z = {}

    def add(name, expect, fn):
        p = d / name
        fn(p)
        z[name] = (p, expect)

    fr, wav = _frames(60), _tone(2)
    add("h264.mp4", None, lambda p: write_media(p, fr, 30, wav))
    add("hevc.mp4", None, lambda p: write_media(p, fr, 30, wav, video_codec="libx265"))
    add("vp9.webm", None, lambda p: write_media(p, fr, 30, _tone(2, 48000), 48000, video_codec="libvpx-vp9",
                                                audio_codec="libopus"))
    add("av1.mkv", None, lambda p: write_media(p, fr, 30, _tone(2, 48000), 48000, video_codec="libsvtav1",
                                               audio_codec="libopus"))
    add("mpeg4.avi", None, lambda p: write_media(p, fr, 30, wav, video_codec="mpeg4", audio_codec="mp3"))
    add("h264.mov", None, lambda p: write_media(p, fr, 30, wav, audio_codec="pcm_s16le"))
    add("h264.mkv", None, lambda p: write_media(p, fr, 30, wav))
    add("audio.wav", None, lambda p: write_media(p, audio=wav, audio_codec="pcm_s16le"))
    add("audio.mp3", None, lambda p: write_media(p, audio=_tone(2, 44100), sample_rate=44100, audio_codec="mp3"))
    add("audio.flac", None, lambda p: write_media(p, audio=wav, audio_codec="flac"))
    add("audio.ogg", None, lambda p: write_media(p, audio=_tone(2, 48000), sample_rate=48000, audio_codec="libopus"))
    add("audio.m4a", None, lambda p: write_media(p, audio=wav, audio_codec="aac"))
    add("no_audio.mp4", None, lambda p: write_media(p, fr, 30))
    add("vfr.mp4", None, _vfr)
    add("rotated.mp4", None, _rotated)
    add("one_frame.mp4", None, lambda p: write_media(p, fr[:1], 30))
    add("short.mp4", None, lambda p: write_media(p, fr[:12], 30, _tone(0.4)))
    add("4k.mp4", None, lambda p: write_media(p, np.full((2, 2160, 3840, 3), 90, np.uint8), 1))
    add("8k.mp4", None, lambda p: write_media(p, np.full((1, 4320, 7680, 3), 90, np.uint8), 1))
    add("8khz.wav", None, lambda p: write_media(p, audio=_tone(2, 8000), sample_rate=8000, audio_codec="pcm_s16le"))
    add("192khz.wav", None, lambda p: write_media(p, audio=_tone(2, 192000), sample_rate=192000,
                                                  audio_codec="pcm_s16le"))
    add("stereo.wav", None, lambda p: write_media(p, audio=_tone(2, channels=2), audio_codec="pcm_s16le",
                                                  audio_layout="stereo"))
    add("5.1.wav", None, lambda p: write_media(p, audio=_tone(2, channels=6), audio_codec="pcm_s16le",
                                               audio_layout="5.1"))
    add("silent.wav", None, lambda p: write_media(p, audio=np.zeros(2 * SR, np.float32), audio_codec="pcm_s16le"))
    add("black.mp4", None, lambda p: write_media(p, _frames(30, value=0), 30))
    add("empty.mp4", "the file is empty", lambda p: p.write_bytes(b""))
    add("random.mp4", "not a readable audio or video file",
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(20000)))
    add("text.mp4", "not a readable audio or video file", lambda p: p.write_text("hello, I am a text file\n" * 50))

    def truncated(p):
        demo_clip(d / "full.mp4", seconds=3, size=(64, 96))
        b = (d / "full.mp4").read_bytes()
        p.write_bytes(b[: len(b) // 2])
    add("truncated.mp4", "", truncated)  # a prediction from what decodes, or a message: either is fine

    def image(p):
        from PIL import Image

        Image.fromarray(_frames(1, 120, 160)[0]).save(p, format="PNG")
    add("image.mp4", "", image)
    add("hour.mp4", None, lambda p: write_media(p, _frames(3700, 16, 16), 1))  # over an hour, 1 fps
    z["missing.mp4"] = (d / "missing.mp4", "no such file")
    return z


def test_every_input_class_gets_a_prediction_or_a_one_line_message(zoo, tiny_bundle):
    names = list(zoo)
    r = run_cli("predict", *[zoo[n][0] for n in names], "--bundle", tiny_bundle, "--json", "--top-k", "1")
    out = {o["clip"].rsplit("/", 1)[-1]: o for o in json_lines(r.stdout)}
    assert set(out) == set(names), r.stderr
    for n in names:
        expect = zoo[n][1]
        o = out[n]
        if expect is None:
            assert "error" not in o, (n, o)
            assert o["fused"] is not None
        elif expect:
            assert "error" in o and expect in o["error"], (n, o)
        else:
            assert ("error" in o and "\n" not in o["error"]) or o["fused"] is not None, (n, o)
    failed = sum("error" in o for o in out.values())
    assert r.returncode == (1 if failed else 0)
    assert len(r.stderr.strip().splitlines()) == failed


def test_modalities_are_found_whatever_the_container(zoo):
    assert media.probe(zoo["audio.m4a"][0]).has_video is False
    assert media.probe(zoo["no_audio.mp4"][0]).has_audio is False
    w = media.decode_window(zoo["5.1.wav"][0], 0, 10, SR, 3, 224)
    assert w.wav.shape == (2 * SR,) and w.frames is None
    w = media.decode_window(zoo["192khz.wav"][0], 0, 10, SR, 3, 224)
    assert w.wav.shape == (2 * SR,)
    w = media.decode_window(zoo["8k.mp4"][0], 0, 10, SR, 3, 224)
    assert w.frames.shape == (3, 224, 398, 3)  # one frame shown for 1 s: three 3 fps outputs
    assert media.decode_window(zoo["av1.mkv"][0], 0, 10, SR, 3, 224).frames.shape[0] == 6


def test_limits_refuse_what_is_too_big_with_a_message(zoo):
    lim = media.Limits(max_width=4096, max_height=4096)
    with pytest.raises(media.MediaError, match="7680x4320, over the 4096x4096 limit"):
        media.decode_window(zoo["8k.mp4"][0], 0, 10, SR, 3, 224, limits=lim)
    with pytest.raises(media.MediaError, match="MiB limit"):
        media.decode_window(zoo["h264.mp4"][0], 0, 10, SR, 3, 224, limits=media.Limits(max_bytes=1000))


def test_a_hung_decoder_is_stopped_and_the_next_file_decodes(zoo):
    with pytest.raises(media.MediaError, match="longer than"):
        media.decode_window(zoo["8k.mp4"][0], 0, 10, SR, 3, 224, limits=media.Limits(timeout_s=0.001))
    assert media.decode_window(zoo["h264.mp4"][0], 0, 10, SR, 3, 224).frames.shape[0] == 6


def test_a_decoder_killed_mid_file_costs_that_file_only(zoo, tiny_bundle):
    import multiprocessing

    errors = []

    def decode():
        try:
            media.decode_window(zoo["8k.mp4"][0], 0, 10, SR, 3, 224)
        except media.MediaError as e:
            errors.append(str(e))

    media.decode_window(zoo["h264.mp4"][0], 0, 10, SR, 3, 224)  # the decoder server is up
    t = threading.Thread(target=decode)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and t.is_alive():
        kids = multiprocessing.active_children()
        if kids:
            for p in kids:
                p.kill()
            break
        time.sleep(0.001)
    t.join(60)
    if not errors:
        pytest.skip("the decode finished before it could be killed (a fast machine): nothing to check")
    assert "decoder crashed" in errors[0] and "signal 9" in errors[0]
    # and the next request is served
    assert media.decode_window(zoo["h264.mp4"][0], 0, 10, SR, 3, 224).wav.size >= 2 * SR


def test_a_window_late_in_an_hour_long_file(zoo, tiny_bundle):
    assert media.probe(zoo["hour.mp4"][0]).duration > 3600
    r = run_cli("predict", zoo["hour.mp4"][0], "--start", "3650", "--bundle", tiny_bundle, "--json")
    (o,) = json_lines(r.stdout)
    assert r.returncode == 0 and o["video"] is not None and o["start"] == 3650


def test_rotation_metadata_is_honoured(zoo):
    info = media.probe(zoo["rotated.mp4"][0])
    assert info.rotation == 270  # -90: shown turned clockwise
    f = media.decode_window(zoo["rotated.mp4"][0], 0, 10, SR, 3, 224).frames
    assert f.shape[1:] == (336, 224, 3)  # portrait, shorter side 224
    ys, xs = np.nonzero(f[0].mean(-1) > 128)
    assert xs.min() > 150 and ys.max() < 120  # the band is now at the top right, as a player shows it

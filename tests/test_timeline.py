"""`uavm timeline`: a long clip window by window from one streamed decode: the answers, the
shared 3 fps grid, agreement with `uavm predict --start`, what missing means, the limits."""
import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

from uavm import media
from uavm.demo.corpus import CLASSES, FPS, SR, make_clip
from uavm.demo.synth import demo_clip
from uavm.errors import InputError
from uavm.media import write_media

from .conftest import run_cli

CORPUS = (0, 6, 9)  # ambulance siren, dog barking, playing piano: one of each sound group but ringing


@pytest.fixture(scope="module")
def pipe():
    from uavm import Pipeline, load_bundle
    from uavm.assets import default_bundle

    return Pipeline(load_bundle(default_bundle()), "cpu")


@pytest.fixture(scope="module")
def corpus_clip(tmp_path_factory):
    """Three generated 10 s clips of known classes back to back: 30 s, re-encoded as one file."""
    import av

    d = tmp_path_factory.mktemp("corpus")
    wavs, frames = [], []
    for i, c in enumerate(CORPUS):
        p = make_clip(d / f"{i}.mp4", c, seed=100 + i) and d / f"{i}.mp4"
        wavs.append(media.load_audio(p, SR, 0, 10))
        with av.open(str(p)) as f:
            frames.append(np.stack([x.to_ndarray(format="rgb24") for x in f.decode(video=0)]))
        assert len(wavs[-1]) == 10 * SR and len(frames[-1]) == 10 * FPS
    return write_media(d / "long.mp4", np.concatenate(frames), FPS, np.concatenate(wavs), SR,
                       options={"crf": "26", "preset": "veryfast"})


@pytest.fixture(scope="module")
def corpus_timeline(pipe, corpus_clip):
    return pipe.timeline(corpus_clip, stride=5)


def write_clip(path, video_seconds: float, audio: list, fps: int = 5, size=(64, 96)):
    """A clip whose audio stream holds only ``audio``: (from, to, "tone" | "zeros") spans in
    seconds; where no span is, the stream has no packets at all (a gap, or its end)."""
    import av

    t = np.arange(int(max(b for _, b, _ in audio) * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    keep = np.zeros(len(t), bool)
    for a, b, kind in audio:
        keep[int(a * SR): int(b * SR)] = True
        if kind == "zeros":
            wav[int(a * SR): int(b * SR)] = 0
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = size
        vs.pix_fmt = "yuv420p"
        s = c.add_stream("aac", rate=SR, layout="mono")
        for i in range(int(video_seconds * fps)):
            f = np.full((*size, 3), (i * 5) % 255, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for i in range(0, len(wav), 1024):
            if not keep[i]:
                continue  # no packet: the stream has nothing here
            af = av.AudioFrame.from_ndarray(wav[None, i:i + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, i, Fraction(1, SR)
            for p in s.encode(af):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def holes(tmp_path_factory, pipe):
    """44 s of video; audio: a tone, digital silence 2-12 s (the stream goes on), a tone, no
    packets 14-26 s (a gap), a tone, and the stream ends at 30 s."""
    p = write_clip(tmp_path_factory.mktemp("holes") / "holes.mp4", 44,
                   [(0, 2, "tone"), (2, 12, "zeros"), (12, 14, "tone"), (26, 30, "tone")])
    return pipe.timeline(p, stride=2)


def window_at(tl, start):
    (w,) = [w for w in tl.windows if abs(w["start"] - start) < 1e-9]
    return w


def close_to_float16(a, b):
    """Equal up to float16 rounding (the features are stored as float16)."""
    np.testing.assert_allclose(a, b, rtol=2 ** -10, atol=2 ** -14)


# -- the answers ---------------------------------------------------------------------------
def test_each_window_covering_one_clip_gets_that_clips_class_as_fused_top1(corpus_timeline, pipe):
    assert [w["start"] for w in corpus_timeline.windows] == [0, 5, 10, 15, 20]  # 20-30 reaches the end
    for i, c in enumerate(CORPUS):
        w = window_at(corpus_timeline, 10.0 * i)
        assert w["fused"]["top"][0]["label"] == CLASSES[c][0], (10 * i, w["fused"]["top"])
        assert set(w) >= {"start", "audio", "video", "fused", "agree"} and "attention" not in w


def test_agree_says_whether_audio_and_video_top1_are_the_same(corpus_timeline):
    for w in corpus_timeline.windows:
        assert w["agree"] == (w["audio"]["top"][0]["index"] == w["video"]["top"][0]["index"])


def test_a_window_answers_as_uavm_predict_start_does(corpus_timeline, corpus_clip, pipe):
    r = run_cli("predict", corpus_clip, "--start", "15", "--json", "--top-k", "3", check=True)
    want, got = json.loads(r.stdout), window_at(corpus_timeline, 15.0)
    for m in ("audio", "video", "fused"):
        assert got[m]["top"][0]["label"] == want[m]["top"][0]["label"], m
        np.testing.assert_allclose(got[m]["logits"], want[m]["logits"], atol=1e-3)
    ref, mine = pipe.features(corpus_clip, start=15), corpus_timeline.features.window(15)
    close_to_float16(mine.audio, ref.audio)
    close_to_float16(mine.video, ref.video)


def test_the_last_partial_window_is_padded_as_predict_pads_a_short_tail(pipe, tmp_path):
    clip = demo_clip(tmp_path / "c.mp4", seconds=12, fps=10, size=(64, 96))
    tl = pipe.timeline(clip, stride=7)
    assert [w["start"] for w in tl.windows] == [0, 7]  # 7-17: five seconds of the clip, then padding
    ref, mine = pipe.features(clip, start=7), tl.features.window(7)
    assert len(mine.video) == len(ref.video) == 15
    close_to_float16(mine.audio, ref.audio)
    np.testing.assert_allclose(tl.windows[-1]["fused"]["logits"], pipe.predict(clip, start=7).logits["fused"],
                               atol=1e-3)


@pytest.mark.parametrize("duration,starts", [(60.0, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]),
                                             (60.02, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]),
                                             (8.0, [0]), (12.0, [0, 5])])
def test_windows_are_reported_up_to_the_one_that_reaches_the_end_and_none_past_it(duration, starts):
    from uavm.timeline import reported

    got = [5.0 * i for i in range(40) if reported(5.0 * i, duration, 5.0, 10.0)]
    assert got == starts
    assert [s for s in (0.0, 5.0, 10.0) if reported(s, 12.0, 5.0, 2.0)] == [0.0, 5.0, 10.0]  # gaps between windows


def test_json_csv_and_the_figure_list_the_same_windows(short_clip, pipe):
    from uavm import series

    tl = pipe.timeline(short_clip, stride=1)
    d = tl.to_dict()
    fig = series.timeline(tl)
    fused = [b for b in fig.data if b.y and b.y[0] == "fused"]
    assert sum(len(b.base) for b in fused) == len(d["windows"]) == len(tl.rows()) == 3


def test_the_file_is_decoded_once_in_one_streamed_pass(pipe, short_clip, monkeypatch):
    streams = []
    real = media.decode_stream
    monkeypatch.setattr(media, "decode_window", lambda *a, **k: pytest.fail("a window decoded on its own"))
    monkeypatch.setattr(media, "decode_stream", lambda *a, **k: streams.append(a[0]) or real(*a, **k))
    tl = pipe.timeline(short_clip, stride=1)
    assert len(tl.windows) == 3 and streams == [short_clip]


# -- the 3 fps grid --------------------------------------------------------------------------
def _rotated(path):
    from .test_untrusted import _rotated as make

    make(path)


@pytest.mark.parametrize("kind", ["25fps", "rotated"])
def test_the_streamed_grid_gives_each_window_the_frames_and_samples_a_window_decode_gives(tmp_path, kind):
    clip = tmp_path / "c.mp4"
    _rotated(clip) if kind == "rotated" else demo_clip(clip, seconds=12, fps=25, size=(64, 96))
    items = list(media.decode_stream(clip, SR, 3.0, 64))
    chunks = items[1:]
    grid = np.concatenate([c.frames for c in chunks if c.frames is not None])
    pieces = [p for c in chunks for p in c.audio]
    for start in (0.0, 1 / 3, 0.4, 2.0, 7 + 2 / 3):
        w = media.decode_window(clip, start, 10, SR, 3.0, 64)
        k0 = round(start * 3)
        np.testing.assert_array_equal(grid[k0:k0 + 30], w.frames, err_msg=f"frames from {start:g} s")
        np.testing.assert_array_equal(media.window_of(iter(pieces), round(start * SR), 10 * SR), w.wav)


def test_overlapping_windows_on_the_grid_share_frames_and_features(corpus_timeline, corpus_clip, pipe):
    a, b = 5.0, 7 + 1 / 3  # 22 grid frames in common
    fa, fb = pipe.features(corpus_clip, start=a).video, pipe.features(corpus_clip, start=b).video
    close_to_float16(fa[7:], fb[:23])  # two decodes of their own pick the same frames
    ta, tb = corpus_timeline.features.video(a), corpus_timeline.features.video(b)
    np.testing.assert_array_equal(ta[7:], tb[:23])  # the timeline computed them once
    close_to_float16(tb, fb)


# -- missing ---------------------------------------------------------------------------------
def test_a_gap_in_the_audio_stream_is_missing_there(holes):
    w = window_at(holes, 16)  # [16, 26): no packet at all
    assert w["missing"] == {"audio": "the audio stream has no samples in this window"}
    assert w["audio"] is None and w["video"] is not None and w["fused"] == w["video"] and w["agree"] is None
    for s in (14, 18):  # the last packet before the gap ends after 14 s; the first after it starts before 28 s
        assert "missing" not in window_at(holes, s), s
    (a, b), _ = holes.gaps["audio"]
    assert abs(a - 14) < 0.1 and abs(b - 26) < 0.1


def test_digital_silence_in_a_continuing_stream_is_not_missing(holes):
    w = window_at(holes, 2)  # [2, 12): every sample zero
    assert "missing" not in w and w["audio"] is not None
    wav = holes.features.waveform(2, 10)
    assert len(wav) == 10 * SR and not np.abs(wav[SR:-SR]).any()  # silent (the codec smears the tones by it)


def test_an_audio_stream_that_ends_is_missing_after_its_end(holes):
    assert abs(holes.duration - 44) < 0.1 and holes.windows[-1]["start"] == 34  # 34-44 reaches the end
    assert "missing" not in window_at(holes, 28)  # [28, 38): two seconds of sound, then padding
    for w in holes.windows:
        if w["start"] >= 30.1:
            assert w["missing"] == {"audio": "the audio stream has no samples in this window"}, w["start"]
    assert abs(holes.gaps["audio"][-1][0] - 30) < 0.1 and holes.gaps["audio"][-1][1] == pytest.approx(44, abs=0.1)
    assert holes.gaps["video"] == []


# -- the explorer's reuse ----------------------------------------------------------------------
def test_any_window_is_served_again_without_decoding(corpus_timeline, corpus_clip, pipe, monkeypatch):
    start = 2 + 2 / 3  # on the grid, off the stride: its audio features are made now
    d = pipe.decode(corpus_clip, start)
    ref_wav, ref_frames = d.wav, d.frames
    ref = pipe.features(corpus_clip, start=start)

    def no(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(media, "decode_window", no)
    monkeypatch.setattr(media, "decode_stream", no)
    clip = corpus_timeline.features
    f = clip.window(start)
    np.testing.assert_array_equal(clip.waveform(start), ref_wav)
    close_to_float16(f.audio, ref.audio)
    close_to_float16(f.video, ref.video)
    assert clip.frames(start).shape == (len(ref_frames), 64, 64, 3) and clip.frame_shape == ref_frames.shape[1:]
    with pytest.raises(media.MediaError, match="past the end"):
        clip.window(30)


# -- limits and parameters -----------------------------------------------------------------------
@pytest.mark.parametrize("kw,msg", [
    ({"stride": 0}, "stride must be a finite number > 0, got 0"),
    ({"stride": -1}, "stride must be a finite number > 0"),
    ({"stride": float("nan")}, "stride must be a finite number"),
    ({"stride": "5"}, "stride must be a finite number"),
    ({"window": 0}, "window must be > 0 and at most the model's 10 s, got 0"),
    ({"window": 11}, "window must be > 0 and at most the model's 10 s, got 11"),
    ({"top_k": 0}, "top k must be a whole number from 1 to 12"),
])
def test_bad_parameters_are_one_line_errors_before_any_decoding(pipe, kw, msg, monkeypatch):
    monkeypatch.setattr(media, "decode_stream", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        pipe.timeline("never-opened.mp4", **kw)
    assert "\n" not in str(e.value)


def test_a_clip_over_the_duration_limit_is_refused_in_one_line(pipe, tmp_path, monkeypatch):
    clip = demo_clip(tmp_path / "c.mp4", seconds=12, fps=5, size=(64, 96))
    monkeypatch.setattr(pipe, "limits", dataclasses.replace(pipe.limits, max_seconds=5))
    with pytest.raises(media.MediaError, match="holds media past 5 s, the limit of a clip decoded whole"):
        pipe.timeline(clip)


def test_a_stalled_stream_is_stopped_in_one_line(tmp_path):
    clip = demo_clip(tmp_path / "c.mp4", seconds=3, fps=5, size=(64, 96))
    with pytest.raises(media.MediaError, match="the decoder sent nothing for 0.001 s and was stopped"):
        list(media.decode_stream(clip, SR, 3.0, 64, limits=media.Limits(timeout_s=0.001)))
    assert len(list(media.decode_stream(clip, SR, 3.0, 64))) >= 2  # and the next one decodes


# -- the command line --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return demo_clip(tmp_path_factory.mktemp("short") / "short.mp4", seconds=12, fps=5, size=(64, 96))


def test_cli_json_is_one_object_with_clip_duration_and_windows(short_clip):
    r = run_cli("timeline", short_clip, "--json", "--stride", "4", "--top-k", "2", check=True)
    (line,) = r.stdout.splitlines()
    o = json.loads(line)
    assert o["clip"] == str(short_clip) and o["duration"] == pytest.approx(12, abs=0.1)
    assert [w["start"] for w in o["windows"]] == [0, 4]
    for w in o["windows"]:
        assert len(w["fused"]["top"]) == 2 and len(w["fused"]["logits"]) == 12 and isinstance(w["agree"], bool)


def test_cli_csv_is_one_row_per_window(short_clip):
    r = run_cli("timeline", short_clip, "--csv", "--stride", "6", check=True)
    lines = r.stdout.splitlines()
    assert lines[0] == ("start,audio_label,audio_score,video_label,video_score,fused_label,fused_score,"
                        "agree,missing")
    assert [x.split(",")[0] for x in lines[1:]] == ["0.0", "6.0"]


def test_cli_html_writes_a_self_contained_page(short_clip, tmp_path):
    out = tmp_path / "t.html"
    r = run_cli("timeline", short_clip, "--html", out, "--stride", "6", check=True)
    page = out.read_text()
    assert "Plotly.newPlot" in page and "http" not in page.split("<body>")[0]
    assert all(w in r.stdout for w in ("0.0 s", "6.0 s", "fused"))


@pytest.mark.parametrize("args,msg", [(["--stride", "0"], "stride must be a finite number > 0"),
                                      (["--window", "20"], "at most the model's 10 s")])
def test_cli_bad_parameters_exit_1_with_one_line(short_clip, args, msg):
    r = run_cli("timeline", short_clip, *args)
    assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- long ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_long_clip_streams_and_its_waveform_goes_to_disk(pipe, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the spool rolls over
    clip = write_clip(tmp_path / "long.mp4", 1200, [(0, 1200, "tone")], fps=1, size=(32, 32))
    tl = pipe.timeline(clip, stride=100)
    assert tl.duration == pytest.approx(1200, abs=0.1) and len(tl.windows) == 12
    assert all("missing" not in w for w in tl.windows) and tl.gaps == {"audio": [], "video": []}
    assert tl.features._wave.spool.on_disk  # 73 MiB of waveform: on disk, not in memory
    assert tl.features.video_features.shape[0] == 3 * 1200

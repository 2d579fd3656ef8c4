"""Decoding one analysis window: the ffmpeg fps-filter frame rule, the audio window."""
import numpy as np
import pytest

from uavm import media
from uavm.media import write_media


def test_fps_rule_on_a_30fps_clip_picks_frames_4_14_24():
    ts = np.arange(300) / 30
    idx = media.sample_times(ts, 10.0, fps=3, start=0, seconds=10)
    assert len(idx) == 30 and list(idx[:3]) == [4, 14, 24] and idx[-1] == 294


def test_fps_rule_on_25fps_and_a_start_offset():
    ts = np.arange(1000) / 25
    assert list(media.sample_times(ts, 40.0, 3, 0, 10)[:4]) == [4, 12, 20, 29]
    # a window from 5 s picks the frames the full-length run would pick from output 15 on
    full = media.sample_times(ts, 40.0, 3, 0, 40)
    np.testing.assert_array_equal(media.sample_times(ts, 40.0, 3, 5.0, 10), full[15:45])


def test_fps_rule_stops_at_the_end_of_a_short_clip():
    ts = np.arange(45) / 30  # 1.5 s
    assert len(media.sample_times(ts, 1.5, 3, 0, 10)) == 5
    assert len(media.sample_times(np.zeros(1), 1 / 30, 3, 0, 10)) == 1  # a single frame


def test_scaled_size_keeps_aspect_with_the_shorter_side_224():
    assert media.scaled_size(640, 360, 224) == (398, 224)
    assert media.scaled_size(360, 640, 224) == (224, 398)
    assert media.scaled_size(224, 224, 224) == (224, 224)


def test_audio_window_is_a_slice_of_the_whole_waveform(tmp_path):
    sr = 16000
    wav = (0.5 * np.sin(np.arange(30 * sr) * 2 * np.pi * np.linspace(100, 2000, 30 * sr) / sr)).astype(np.float32)
    write_media(tmp_path / "a.wav", audio=wav, sample_rate=sr, audio_codec="pcm_s16le")
    whole = media.load_audio(tmp_path / "a.wav", sr, 0, 30)
    np.testing.assert_allclose(whole, wav, atol=1e-4)
    part = media.load_audio(tmp_path / "a.wav", sr, 12.5, 10)
    np.testing.assert_array_equal(part, whole[int(12.5 * sr): int(22.5 * sr)])


def test_audio_is_downmixed_and_resampled_to_16k_mono(tmp_path):
    sr = 44100
    t = np.arange(int(3 * sr)) / sr
    left, right = np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    write_media(tmp_path / "s.wav", audio=np.stack([left, right]).astype(np.float32) * 0.5, sample_rate=sr,
                audio_codec="pcm_s16le", audio_layout="stereo")
    w = media.load_audio(tmp_path / "s.wav", 16000, 0, 10)
    assert w.shape == (48000,)
    spec = np.abs(np.fft.rfft(w))
    assert abs(np.argmax(spec) * 16000 / len(w) - 440) < 2
    # ffmpeg's `-ac 1` mix (libswresample): each of L and R at -3 dB
    assert abs(np.abs(w).max() - 0.5 * np.sqrt(0.5)) < 0.01


def test_frames_come_resized_with_the_shorter_side_224(tmp_path):
    frames = np.zeros((30, 360, 640, 3), np.uint8)
    write_media(tmp_path / "v.mp4", frames, 30)
    f = media.load_frames(tmp_path / "v.mp4")
    assert f.shape == (3, 224, 398, 3) and f.dtype == np.uint8


@pytest.mark.parametrize("content,msg", [(None, "no such file"), (b"", "empty"), (b"hello world" * 10, "not a readable")])
def test_unreadable_inputs_name_the_problem(tmp_path, content, msg):
    p = tmp_path / "x.mp4"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(media.MediaError, match=msg):
        media.probe(p)


def test_without_decord_frames_come_from_pyav(tmp_path, monkeypatch):
    """decord has no wheels for some Pythons and machines (the GPU image among them): PyAV
    then decodes the window and the whole-clip grid, to within its slightly different resize."""
    from uavm.demo.synth import demo_clip

    clip = demo_clip(tmp_path / "c.mp4", seconds=4)
    with_decord = media.load_frames(clip)
    grid = [img for _, img in media._grid_frames(clip, media.probe(clip), 3.0, 224, {})]
    monkeypatch.setitem(__import__("sys").modules, "decord", None)  # `import decord` -> ImportError
    without = media.load_frames(clip)
    assert without.shape == with_decord.shape
    assert np.abs(without.astype(int) - with_decord.astype(int)).mean() < 8
    assert [img.shape for _, img in media._grid_frames(clip, media.probe(clip), 3.0, 224, {})] == \
        [img.shape for img in grid]


def test_no_frame_stands_for_more_than_the_hold_and_a_gap_costs_nothing():
    from uavm import media

    ts = np.array([0.0, 0.5, 14000.0])  # two frames, then hours of nothing, then one
    ks, idx = media.sample_grid(ts, 14000.1, 3.0, 0.0, 15000.0)
    assert len(ks) < 40  # not 42,000 repeated frames
    assert ks.max() == 42000 and idx[-1] == 2
    held = ks[idx == 1]
    assert ((held + 0.5) / 3 - 0.5 <= media.HOLD_S + 1e-9).all()  # the frame at 0.5 s stands for at most the hold
    dense = np.arange(300) / 30  # a normal 10 s stream: every output, as before
    ks, idx = media.sample_grid(dense, 10.0, 3.0, 0.0, 10.0)
    np.testing.assert_array_equal(ks, np.arange(30))
    np.testing.assert_array_equal(idx, media.sample_times(dense, 10.0, 3.0, 0.0, 10.0))


def test_implausible_decoder_timestamps_are_spotted():
    from uavm import media

    assert media.plausible_times(np.array([[0.0, 0.03], [0.03, 0.06]]))
    assert not media.plausible_times(np.array([[9.2e15, 9.2e15], [9.2e15, 9.2e15]]))
    assert not media.plausible_times(np.array([[1.0, 2.0], [0.5, 0.6]]))  # going back


@pytest.mark.parametrize("job", ["window", "stream"])
def test_a_bug_in_the_decoder_child_comes_back_as_a_bug_not_as_bad_input(tmp_path, monkeypatch, caplog, job):
    """The decoder child tells a bug in the decoding code (here a NameError) from a file it
    cannot decode: the parent logs the child's traceback and says "internal error", never
    that the file cannot be decoded."""
    import logging
    import multiprocessing

    from uavm.demo.synth import demo_clip
    from uavm.errors import UAVMError
    from uavm.media import isolate, stream, window

    clip = demo_clip(tmp_path / "c.mp4", seconds=2)

    def broken(*a, **k):
        raise NameError("name 'undefined_in_decoder' is not defined")

    # decoders are forked from a forkserver, which a patch here never reaches: fork this process instead
    monkeypatch.setattr(isolate, "_CTX", multiprocessing.get_context("fork"))
    monkeypatch.setattr(window, "load_audio", broken)
    monkeypatch.setattr(stream, "_audio_segments", broken)
    caplog.set_level(logging.ERROR, logger="uavm")
    with pytest.raises(UAVMError) as e:
        if job == "window":
            media.decode_window(clip, 0, 2, 16000, 3.0, 64, limits=media.Limits())
        else:
            list(media.decode_stream(clip, 16000, 3.0, 64, limits=media.Limits()))
    assert not isinstance(e.value, media.MediaError)
    assert str(e.value) == f"internal error while decoding {clip} (see the server log)"
    (rec,) = [r for r in caplog.records if r.name == "uavm"]
    assert rec.levelno == logging.ERROR
    text = rec.getMessage()
    assert "Traceback (most recent call last)" in text and "NameError: name 'undefined_in_decoder'" in text
    assert "in broken" in text

    # bad input through the same door is still the file's problem, in one line
    (tmp_path / "x.mp4").write_bytes(b"hello world" * 10)
    with pytest.raises(media.MediaError, match="not a readable audio or video file"):
        media.decode_window(tmp_path / "x.mp4", 0, 2, 16000, 3.0, 64, limits=media.Limits())

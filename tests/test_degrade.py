"""Swap, degrade, weigh: known answers on the shipped example clips with the demo models."""
import json

import numpy as np
import pytest

from uavm.assets import demo_bundles, examples
from uavm.bundle import load_bundle
from uavm.degrade import Degrade, blurred, held, resized
from uavm.errors import InputError
from uavm.inference import Pipeline
from uavm.window import Decoded

from .conftest import run_cli

CLIPS = {p.stem: p for p in examples()}
DOG, PIANO = CLIPS["dog_howling"], CLIPS["playing_piano"]


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu")


def logits(p, m):
    return np.asarray(p.logits[m], np.float64)


def test_swapped_passes_answer_exactly_as_on_their_own_sources(pipe):
    swapped = pipe.predict(DOG, audio_from=PIANO)
    np.testing.assert_allclose(logits(swapped, "audio"), logits(pipe.predict(PIANO), "audio"), atol=1e-5)
    np.testing.assert_allclose(logits(swapped, "video"), logits(pipe.predict(DOG), "video"), atol=1e-5)
    assert swapped.to_dict()["sources"] == {"audio": str(PIANO), "video": str(DOG)}
    other = pipe.predict(PIANO, video_from=DOG)  # the same pair named the other way
    np.testing.assert_allclose(logits(other, "fused"), logits(swapped, "fused"), atol=1e-5)
    assert swapped.top("audio", 1)[0]["label"] == "playing piano" and swapped.top("video", 1)[0]["label"] == "dog howling"


def test_the_audio_weight_mixes_the_two_logit_vectors_exactly(pipe):
    plain = pipe.predict(DOG)
    a, v = logits(plain, "audio"), logits(plain, "video")
    np.testing.assert_array_equal(logits(pipe.predict(DOG, audio_weight=1), "fused"), a)
    np.testing.assert_array_equal(logits(pipe.predict(DOG, audio_weight=0), "fused"), v)
    np.testing.assert_allclose(logits(pipe.predict(DOG, audio_weight=0.25), "fused"), 0.25 * a + 0.75 * v, atol=1e-6)
    np.testing.assert_allclose(logits(plain, "fused"), (a + v) / 2, atol=1e-6)  # 0.5 is Algorithm 1
    assert "audio_weight" not in plain.to_dict() and pipe.predict(DOG, audio_weight=0.25).to_dict()["audio_weight"] == 0.25
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(InputError, match="audio weight"):
            pipe.predict(DOG, audio_weight=bad)


def test_the_cross_modal_model_says_why_the_weight_does_not_apply():
    cm = Pipeline(load_bundle(demo_bundles()["demo-cross-modal"]), "cpu")
    assert cm.predict(DOG, audio_weight=0.5).logits["fused"] is not None
    with pytest.raises(InputError, match="cross-modal"):
        cm.predict(DOG, audio_weight=0.3)


def test_noise_over_the_sound_never_touches_the_video_pass_and_drowns_the_audio_one(pipe):
    plain = pipe.predict(DOG)
    for snr in (20, 0, -30):
        p = pipe.predict(DOG, degrade=Degrade.checked(audio_snr=snr))
        np.testing.assert_array_equal(logits(p, "video"), logits(plain, "video"))
    drowned = pipe.predict(DOG, degrade=Degrade.checked(audio_snr=-30))
    dog = next(lab.index for lab in pipe.bundle.labels if lab.name == "dog howling")
    chance = 1 / len(pipe.bundle.labels)
    assert drowned.scores("audio")[dog] < 2 * chance  # near chance for the clip's class
    assert drowned.top("video", 1)[0]["label"] == "dog howling"  # the picture still names it
    assert drowned.to_dict()["degraded"] == {"audio_snr": -30.0, "seed": 0}


def test_degradations_are_seeded_bounded_and_checked():
    class Pre:  # the parts of a Preprocessing the degradations read
        clip_seconds = 10.0

        class audio:
            sample_rate = 16000

        class video:
            fps = 3.0
    rng = np.random.default_rng(1)
    d = Decoded(rng.uniform(-0.5, 0.5, 16000 * 10).astype(np.float32),
                rng.integers(0, 256, (30, 24, 40, 3)).astype(np.uint8), {})
    a = Degrade.checked(audio_snr=0).apply(d, Pre, 0.0)
    b = Degrade.checked(audio_snr=0).apply(d, Pre, 0.0)
    c = Degrade.checked(audio_snr=0, seed=7).apply(d, Pre, 0.0)
    np.testing.assert_array_equal(a.wav, b.wav)  # the same request, the same noise
    assert not np.array_equal(a.wav, c.wav) and a.frames is d.frames
    noise = a.wav.astype(np.float64) - d.wav
    assert abs(10 * np.log10(np.mean(d.wav.astype(np.float64) ** 2) / np.mean(noise ** 2))) < 0.2  # 0 dB
    span = Degrade.checked(audio_snr=0, span=(2, 3)).apply(d, Pre, 0.0)
    changed = np.flatnonzero(span.wav != d.wav)
    assert changed.min() >= 2 * 16000 and changed.max() < 3 * 16000
    assert Degrade.checked(audio_snr=0, span=(20, 30)).apply(d, Pre, 0.0) is d  # outside this window
    silent = Decoded(np.zeros(16000, np.float32), None, {})
    assert not Degrade.checked(audio_snr=-10).apply(silent, Pre, 0.0).wav.any()
    np.testing.assert_array_equal(held(d.frames, 3.0, 1.0)[[0, 1, 2, 3, 4, 5]], d.frames[[0, 0, 0, 3, 3, 3]])
    assert held(d.frames, 3.0, 5.0) is d.frames and resized(d.frames, 64) is d.frames
    assert blurred(d.frames, 0) is d.frames
    smooth = blurred(d.frames, 2.0)
    assert smooth.dtype == np.uint8 and smooth.shape == d.frames.shape and smooth.std() < d.frames.std() / 2
    small = resized(d.frames, 6)
    assert small.shape == d.frames.shape and small.std() < d.frames.std()
    assert Degrade.checked() is None and Degrade.checked(audio_snr=None, video_fps="") is None
    for bad in ({"audio_snr": float("nan")}, {"audio_snr": 200}, {"video_blur": -1}, {"video_size": 2.5},
                {"video_fps": 0}, {"nope": 1}, {"audio_snr": 0, "span": (3, 2)}, {"audio_snr": 0, "seed": -1}):
        with pytest.raises(InputError):
            Degrade.checked(**bad)


def test_a_sweep_starts_from_the_plain_window_and_each_level_is_that_predict(pipe):
    sw = pipe.sweep(DOG, "video_blur", [1, 4, 16])
    plain, rows = pipe.predict(DOG), sw.rows
    assert [r["level"] for r in rows] == [None, 1, 4, 16]
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(logits(sw.predictions[0], m), logits(plain, m), atol=1e-5)
    for level, p in zip([1, 4, 16], sw.predictions[1:]):
        want = pipe.predict(DOG, degrade=Degrade.checked(video_blur=level))
        for m in ("audio", "video", "fused"):
            np.testing.assert_allclose(logits(p, m), logits(want, m), atol=1e-4)
    assert sw.target == "dog howling" and all(r["audio"] == rows[0]["audio"] for r in rows)
    first = next((r["level"] for r in rows[1:] if r["video"]["top1"] != rows[0]["video"]["top1"]), None)
    assert sw.breaks["video"] == first and sw.breaks["audio"] is None


@pytest.mark.slow
def test_the_cli_swaps_degrades_weighs_and_sweeps():
    r = run_cli("predict", DOG, "--audio-from", PIANO, "--audio-weight", "0.25", "--video-blur", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["sources"]["audio"] == str(PIANO) and d["audio_weight"] == 0.25 and d["degraded"]["video_blur"] == 2
    r = run_cli("sweep", DOG, "--audio-snr", "20,0,-30", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [r["level"] for r in d["levels"]] == [None, 20, 0, -30] and d["degradation"] == "audio_snr"
    assert set(d["breaks"]) == {"audio", "video", "fused"} and d["breaks"]["video"] is None
    for args, says in ((["--audio-snr", "1", "--video-blur", "2"], "give one of"), (["--audio-snr", "a,b"], "numbers"),
                       (["--video-size", "0"], "video size"), ([], "give one of")):
        r = run_cli("sweep", DOG, *args)
        assert r.returncode == 1 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_cli("predict", DOG, "--audio-from", "/nonexistent.mp4")
    assert r.returncode == 1 and "no such file" in r.stderr


@pytest.mark.slow
def test_an_explanation_is_of_the_swapped_and_degraded_window(pipe):
    d = Degrade.checked(audio_snr=5)
    e = pipe.explain(DOG, audio_from=PIANO, degrade=d)
    want = pipe.predict(DOG, audio_from=PIANO, degrade=d)
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(logits(e.prediction, m), logits(want, m), atol=1e-4)
    assert "sources" in e.notes and e.notes["degraded"] == "audio at 5 dB SNR (white noise)"


def test_a_held_frame_rate_sweep_reuses_the_frames_features_and_is_that_predict(pipe):
    sw = pipe.sweep(DOG, "video_fps", [2, 1, 0.25], span=(3, 8))
    for level, p in zip([2, 1, 0.25], sw.predictions[1:]):
        want = pipe.predict(DOG, degrade=Degrade.checked(video_fps=level, span=(3, 8)))
        for m in ("audio", "video", "fused"):
            np.testing.assert_allclose(logits(p, m), logits(want, m), atol=1e-4)
    assert any(not np.array_equal(logits(p, "video"), logits(sw.predictions[0], "video")) for p in sw.predictions[1:])


def test_the_explorer_answers_as_the_pipeline_for_a_swapped_degraded_weighed_window(pipe):
    from uavm.explore import Explorer

    ex = Explorer(pipe)
    for kw in ({"audio_from": PIANO}, {"degrade": Degrade.checked(audio_snr=0, video_blur=3, span=(2, 7))},
               {"audio_weight": 0.8}, {"audio_from": PIANO, "degrade": Degrade.checked(video_size=16)}):
        an = ex.run(DOG, **kw)
        want = pipe.predict(DOG, **kw)
        for m in ("audio", "video", "fused"):
            np.testing.assert_allclose(logits(an.prediction, m), logits(want, m), atol=1e-4, err_msg=str(kw))
        again = ex.run(DOG, **kw)  # from the caches
        np.testing.assert_array_equal(logits(again.prediction, "fused"), logits(an.prediction, "fused"))
    plain = ex.run(DOG)  # a variant never leaks into the plain window's caches
    np.testing.assert_allclose(logits(plain.prediction, "fused"), logits(pipe.predict(DOG), "fused"), atol=1e-4)


def test_the_explorer_degrades_a_window_once_however_often_it_is_asked(pipe, monkeypatch):
    from uavm.explore import Explorer

    calls = []
    apply = Degrade.apply
    monkeypatch.setattr(Degrade, "apply", lambda self, *a: calls.append(1) or apply(self, *a))
    ex, d = Explorer(pipe), Degrade.checked(video_blur=3)
    first = ex.run(DOG, degrade=d)
    for audio in (False, True, False):  # the page's toggles: the degraded window is kept
        ex.run(DOG, audio=audio, degrade=d)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.frames, ex.run(DOG, degrade=d).frames)  # shown as the model saw it
    assert not np.array_equal(first.frames, ex.run(DOG).frames)


def test_the_pages_degradation_boxes_are_numbers_or_empty():
    from uavm.app.page import level

    assert level("audio_snr", "") is None and level("audio_snr", "  ") is None and level("audio_snr", None) is None
    assert level("audio_snr", " -30 ") == -30.0 and level("video_blur", "2.5") == 2.5
    for bad in ("abc", "1" + "0" * 60, "3 dB"):
        with pytest.raises(InputError, match="must be a number or empty"):
            level("audio_snr", bad)
    with pytest.raises(InputError):  # a number the degradation's range refuses
        Degrade.checked(audio_snr=level("audio_snr", "nan"))

"""The explorer behind the app: content-keyed reuse, and the same answers as the pipeline."""
import numpy as np
import pytest

from uavm import Pipeline, load_bundle, random_bundle
from uavm.explore import Explorer


@pytest.fixture(scope="module")
def explorer(tiny_bundle):
    return Explorer(Pipeline(load_bundle(tiny_bundle), "cpu"))


def test_toggling_a_modality_reuses_the_decoded_clip_and_its_features(explorer, media_dir):
    clip = media_dir / "av.mp4"
    first = explorer.run(clip)
    assert first.reused == []
    off = explorer.run(clip, audio=False)
    assert {"decode", "video features"} <= set(off.reused)
    assert off.prediction.logits["audio"] is None and off.missing["audio"] == "turned off"
    np.testing.assert_array_equal(off.prediction.logits["video"], first.prediction.logits["video"])
    want = explorer.pipe.predict(clip, audio=False)
    np.testing.assert_allclose(off.prediction.logits["fused"], want.logits["fused"], rtol=1e-6)


def test_a_muted_span_matches_the_pipeline_and_is_cached(explorer, media_dir):
    clip = media_dir / "av.mp4"
    a = explorer.run(clip, mute=(2, 5))
    want = explorer.pipe.predict(clip, mute=(2, 5))
    np.testing.assert_allclose(a.prediction.logits["audio"], want.logits["audio"], rtol=1e-5, atol=1e-6)
    assert np.all(a.waveform[2 * 16000:5 * 16000] == 0) and np.any(a.waveform[:2 * 16000] != 0)
    assert "audio features" in explorer.run(clip, mute=(2, 5)).reused


def test_a_blanked_span_splices_the_black_frame_feature(explorer, media_dir):
    clip = media_dir / "av.mp4"
    a = explorer.run(clip, blank=(3, 6))
    want = explorer.pipe.predict(clip, blank=(3, 6))
    np.testing.assert_allclose(a.prediction.logits["video"], want.logits["video"], rtol=1e-3, atol=1e-3)
    assert (a.frames[9:18] == 0).all() and a.frames[8].any() and a.frames[18].any()


def test_spans_are_in_clip_seconds_for_a_later_window(explorer, media_dir):
    clip = media_dir / "long.mp4"
    a = explorer.run(clip, start=12, mute=(13, 14))
    assert np.all(a.waveform[16000:32000] == 0) and np.any(a.waveform[:16000] != 0)


def test_the_cross_modal_model_with_one_modality_off_explains_instead_of_failing(tmp_path, media_dir):
    ex = Explorer(Pipeline(load_bundle(random_bundle(tmp_path / "x", kind="cross_modal")), "cpu"))
    an = ex.run(media_dir / "av.mp4", video=False)
    assert an.prediction is None and "needs both modalities" in an.error
    assert ex.run(media_dir / "av.mp4").prediction.logits["fused"] is not None


def test_after_a_timeline_moving_the_window_decodes_nothing_and_answers_alike(tiny_bundle, media_dir):
    clip = media_dir / "long.mp4"  # 25 s
    fresh = Explorer(Pipeline(load_bundle(tiny_bundle), "cpu"))
    ex = Explorer(Pipeline(load_bundle(tiny_bundle), "cpu"))
    tl = ex.timeline(clip, stride=5.0, top_k=2)
    assert [w["start"] for w in tl.to_dict()["windows"]] == [0, 5, 10, 15]  # 15-25 reaches the end
    assert ex.timeline(clip, stride=5.0, top_k=2) is tl  # built once

    def no_decode(*a, **k):
        raise AssertionError("a window of a clip with a timeline was decoded again")

    ex.pipe.decode = no_decode
    for start, blank in ((5.0, None), (12.0, (13.0, 15.0)), (2 + 1 / 3, None)):
        got, want = ex.run(clip, start=start, blank=blank), fresh.run(clip, start=start, blank=blank)
        assert {"audio features", "video features"} <= set(got.reused)
        for m in ("audio", "video", "fused"):
            np.testing.assert_allclose(got.prediction.logits[m], want.prediction.logits[m], rtol=1e-3, atol=1e-3)
    with pytest.raises(AssertionError, match="decoded again"):
        ex.run(clip, start=2.5)  # off the 3 fps grid: a decode of its own


def test_explain_after_a_timeline_is_the_pipelines_explanation_of_that_window(media_dir):
    """A timeline's clip serves windows with display thumbnails; features never come from
    them (the explorer once explained the thumbnails, and cached their features)."""
    from uavm.assets import default_bundle

    clip = media_dir / "long.mp4"  # 25 s
    ex = Explorer(Pipeline(load_bundle(default_bundle()), "cpu"))
    ex.timeline(clip, stride=5.0)
    got = ex.explain(clip, start=10.0)
    want = ex.pipe.explain(clip, start=10.0)
    assert got.target["label"] == want.target["label"] and got.target["from"] == want.target["from"]
    for m, s in want.target["score"].items():
        assert (got.target["score"][m] is None) == (s is None)
        if s is not None:
            assert abs(got.target["score"][m] - s) < 2e-3, m  # features kept as float16 by the timeline
    for m in ("audio", "video"):
        np.testing.assert_allclose(got.occlusion[m]["drop"], want.occlusion[m]["drop"], atol=5e-3)
    # and a later answer of that window is the pipeline's too (nothing wrong was cached)
    np.testing.assert_allclose(ex.run(clip, start=10.0).prediction.logits["fused"],
                               ex.pipe.predict(clip, start=10.0).logits["fused"], atol=2e-3)

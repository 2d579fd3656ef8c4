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

"""The figures say what they show: one colour scale with its bar, seconds on every time
axis, the parts of the model named, the cross-modal joint map's halves, frames at their times."""
import numpy as np
import pytest

pytest.importorskip("plotly", reason="the figures need plotly: pip install -e '.[test]'")
from uavm import Pipeline, figures, load_bundle, random_bundle  # noqa: E402
from uavm.explore import Explorer  # noqa: E402
from uavm.model import ModelConfig  # noqa: E402


@pytest.fixture(scope="module")
def analyses(tmp_path_factory, media_dir):
    out = {}
    for kind in ("unified", "cross_modal"):
        b = load_bundle(random_bundle(tmp_path_factory.mktemp(kind), kind=kind, n_specific=2, n_shared=1))
        ex = Explorer(Pipeline(b, "cpu"))
        out[kind] = (ex.run(media_dir / "av.mp4", start=0.0), ex.pipe)
    return out


def test_the_layer_slider_names_the_parts_of_each_kind():
    assert figures.layer_label(ModelConfig(n_specific=3, n_shared=3)) == "layers 1-3 modality-specific, 4-6 shared"
    assert figures.layer_label(ModelConfig(kind="independent", n_specific=6, n_shared=0)) == \
        "layers 1-6 modality-specific"
    assert figures.layer_label(ModelConfig(kind="cross_modal", n_specific=3, n_shared=1)) == \
        "layers 1-3 modality-specific, 4 joint: audio and video together"


def test_audio_and_video_rows_share_one_colour_scale_with_a_bar(analyses):
    an, pipe = analyses["unified"]
    fig = figures.temporal(an, 3, pipe.pre, pipe.bundle.model.cfg)
    (heat,) = [t for t in fig.data if t.type == "heatmap"]  # both passes' rows in one map, one scale
    assert heat.coloraxis == "coloraxis"
    assert [y for y in heat.y if y.strip()] == [f"{m} · head {h}" for m in ("audio", "video") for h in range(1, 5)]
    top = max(v for row in heat.z for v in row if v is not None)
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pytest.approx(top)
    assert fig.layout.coloraxis.colorbar.title.text == "attention received"
    assert any(a.text.startswith("layer 3/3 (shared) · ") and a.text.endswith("audio pass, video pass")
               for a in fig.layout.annotations)
    assert fig.layout.xaxis.title.text == "seconds of the clip"
    # step centres, in seconds of the clip
    assert heat.x[0] == pytest.approx(10 / 30 / 2, abs=1e-3) and heat.x[-1] == pytest.approx(10 - 10 / 30 / 2, abs=1e-3)


def test_frames_stand_at_their_own_times_with_their_aspect_ratio(analyses):
    an, pipe = analyses["unified"]
    fig = figures.temporal(an, 1, pipe.pre, pipe.bundle.model.cfg)
    images = [i for i in fig.layout.images if i.sizing == "contain"]  # the frames (the spectrogram stretches)
    every = round(images[1].x * pipe.pre.video.fps) if len(images) > 1 else 1
    assert len(images) == int(np.ceil(len(an.frames) / every))
    for i, img in enumerate(images):
        assert img.x == pytest.approx(i * every / pipe.pre.video.fps) and img.sizing == "contain"
        assert img.sizex == pytest.approx(every / pipe.pre.video.fps)


def test_the_full_maps_are_in_seconds_and_the_joint_map_marks_its_halves(analyses):
    an, pipe = analyses["unified"]
    fig = figures.full_maps(an, 1, pipe.bundle.model.cfg)
    assert fig.layout.yaxis.title.text == "query (s)"
    assert "key (s)" in {fig.layout[k].title.text for k in fig.layout.to_plotly_json() if k.startswith("xaxis")}
    an, pipe = analyses["cross_modal"]
    cfg = pipe.bundle.model.cfg
    fig = figures.full_maps(an, cfg.n_layers, cfg)  # the joint layer
    assert [t.z.shape for t in fig.data] == [(60, 60)] * 4
    assert "A 0" in fig.layout.xaxis.ticktext and "V 0" in fig.layout.xaxis.ticktext
    assert len(fig.layout.shapes) == 8  # a divider across each of the 4 heads, both ways
    temporal = figures.temporal(an, cfg.n_layers, pipe.pre, cfg)
    titles = [a.text for a in temporal.layout.annotations]
    assert any("joint pass, audio tokens" in t for t in titles) and any("joint pass, video tokens" in t for t in titles)

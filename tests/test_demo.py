"""The generated corpus and the whole demo recipe, end to end on a tiny corpus."""
import json

import numpy as np
import pytest

from uavm import load_bundle, media
from uavm.demo import corpus

from .conftest import json_lines, run_cli


@pytest.mark.slow
def test_the_corpus_is_deterministic_and_labelled(tmp_path):
    a = corpus.generate(tmp_path / "a", 1, seed=5, split="x", workers=1)
    b = corpus.generate(tmp_path / "b", 1, seed=5, split="x", workers=1)
    ja, jb = (json.loads((d / "clips.json").read_text()) for d in (a, b))
    assert ja == jb and len(ja["data"]) == len(corpus.CLASSES) >= 12
    first = ja["data"][0]
    wa, wb = (media.load_audio(d / first["video"]) for d in (a, b))
    np.testing.assert_array_equal(wa, wb)
    c = corpus.generate(tmp_path / "c", 1, seed=6, split="x", workers=1)
    assert json.loads((c / "clips.json").read_text())["data"][0]["events"] != first["events"]


def test_a_clip_is_10s_h264_aac_224px_16khz_with_events_inside(tmp_path):
    import av

    meta = corpus.make_clip(tmp_path / "clip.mp4", 4, 123)
    with av.open(str(tmp_path / "clip.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        assert (v.codec_context.width, v.codec_context.height, a.codec_context.sample_rate) == (224, 224, 16000)
        assert abs(c.duration / 1e6 - 10) < 0.2
    assert 1 <= len(meta["events"]) <= 3
    assert all(0 <= s < e <= 10 for s, e, _ in meta["events"])


def test_the_sound_is_loud_during_events_and_quiet_between(tmp_path):
    meta = corpus.make_clip(tmp_path / "clip.mp4", 9, 77)
    w = media.load_audio(tmp_path / "clip.mp4")
    rms = np.sqrt(np.mean(w[: 160000 // 100 * 100].reshape(100, -1) ** 2, 1))  # per 0.1 s
    t = np.arange(100) / 10 + 0.05
    inside = np.zeros(100, bool)
    for s, e, _ in meta["events"]:
        inside |= (t > s + 0.1) & (t < e - 0.1)
    assert rms[inside].mean() > 3 * rms[~inside].mean()


def test_groups_share_a_sound_or_a_picture_so_one_modality_alone_is_confusable():
    by_sound, by_picture = {}, {}
    for name, _, picture, snd in corpus.CLASSES:
        by_sound.setdefault(snd, []).append(name)
        by_picture.setdefault(picture, []).append(name)
    assert sum(len(v) > 1 for v in by_sound.values()) >= 2
    assert sum(len(v) > 1 for v in by_picture.values()) >= 2
    assert len({(c[2], c[3]) for c in corpus.CLASSES}) == len(corpus.CLASSES)  # together unique


@pytest.mark.slow
def test_the_whole_recipe_runs_end_to_end_on_a_tiny_corpus(tmp_path):
    r = run_cli("build-demo", "--tiny", "--out", tmp_path / "w", "--work", tmp_path / "work", "--workers", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    report = json.loads((tmp_path / "w" / "demo-report.json").read_text())
    assert set(report["models"]) == {"demo-uavm", "demo-independent", "demo-cross-modal"}
    for name in report["models"]:
        b = load_bundle(tmp_path / "w" / name)
        assert b.config["audio_extractor"]["weights"] == "../extractors/audio.safetensors"
        assert "synth" in b.config["provenance"]["trained_on"]
    r = run_cli("evaluate", "--bundle", tmp_path / "w" / "demo-uavm", "--data", tmp_path / "work" / "test", "--json")
    assert r.returncode == 0, r.stderr
    (res,) = json_lines(r.stdout)
    assert {"audio", "video", "fused"} <= set(res) and 0 <= res["fused"]["acc"] <= 1
    # the evaluation agrees with the one made at build time on the same features
    assert res["fused"]["acc"] == pytest.approx(report["models"]["demo-uavm"]["test"]["fused"]["acc"])
    example = sorted((tmp_path / "w" / "examples").glob("*.mp4"))[0]
    r = run_cli("predict", example, "--bundle", tmp_path / "w" / "demo-cross-modal", "--json", "--attention")
    (p,) = json_lines(r.stdout)
    assert p["audio"] is None and p["fused"] is not None and "joint" in p["attention"]


def test_each_events_box_holds_every_pixel_its_picture_changes():
    rng_seed = 99
    rng = np.random.default_rng(rng_seed)
    events = corpus.draw_events(rng)
    state = rng.bit_generator.state
    boxes = []
    with_object = corpus.frames("ambulance", events, rng, boxes)
    rng.bit_generator.state = state  # the same background, shapes and noise, without the object
    without = corpus.frames("ambulance", [], rng)
    assert len(boxes) == len(events) and all(b is not None for b in boxes)
    changed = np.abs(with_object.astype(int) - without.astype(int)).max(axis=3) > 0  # (frames, H, W)
    inside = np.zeros_like(changed)
    for (s, e, *_), (x0, y0, x1, y1) in zip([[ev.start, ev.end] for ev in events], boxes):
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        k = slice(int(np.ceil(s * corpus.FPS)), int(np.ceil(e * corpus.FPS)))
        inside[k, int(y0 * corpus.SIZE):int(np.ceil(y1 * corpus.SIZE)), int(x0 * corpus.SIZE):int(np.ceil(x1 * corpus.SIZE))] = True
    assert changed.any() and not (changed & ~inside).any()

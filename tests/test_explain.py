"""Explaining a decision (uavm.explain): known answers on generated clips with known event
times, exact arithmetic of the contribution, rollout's definition, the JSON, the errors."""
import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import json_lines, run_cli
from uavm import Pipeline, load_bundle, random_bundle
from uavm.assets import default_bundle, demo_bundles
from uavm.demo.corpus import CLASSES, clip_seed, make_clip
from uavm.explain import label_index, rollout, rollout_curve, spans
from uavm.explore import Explorer


def inside(t, events) -> bool:
    return any(a <= t <= b for a, b, *_ in events)


@pytest.fixture(scope="module")
def demo():
    return Pipeline(load_bundle(default_bundle()), "cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One generated clip of each class group, events recorded (the finding over many is slow)."""
    d = tmp_path_factory.mktemp("explain-corpus")
    out = []
    for c in range(0, len(CLASSES), 3):
        meta = make_clip(d / f"{c:02d}.mp4", c, clip_seed(0, "test-explain", c, 0))
        out.append((d / f"{c:02d}.mp4", meta))
    return out


@pytest.fixture(scope="module")
def explained(demo, corpus):
    return [(demo.explain(path), meta) for path, meta in corpus]


# -- known answers -------------------------------------------------------------------------------
def test_the_occlusion_peak_falls_inside_an_event_for_most_clips_in_both_modalities(explained):
    for m in ("audio", "video"):
        hits = [inside(e.occlusion[m]["peak"], meta["events"]) for e, meta in explained]
        assert sum(hits) > len(hits) / 2, f"{m} occlusion peaks inside an event for only {sum(hits)} of {len(hits)}"


@pytest.mark.slow
def test_occlusion_peaks_beat_chance_by_far_over_a_dozen_clips(demo, tmp_path):
    hits, chance = {"audio": [], "video": []}, []
    for i in range(12):  # one of each class
        c = i % len(CLASSES)
        meta = make_clip(tmp_path / f"{i}.mp4", c, clip_seed(1, "test-explain", c, i))
        e = demo.explain(tmp_path / f"{i}.mp4")
        chance.append(np.mean([inside(t, meta["events"]) for t in e.occlusion["audio"]["times"]]))
        for m in hits:
            hits[m].append(inside(e.occlusion[m]["peak"], meta["events"]))
    for m, h in hits.items():
        assert np.mean(h) >= 2 / 3 and np.mean(h) > np.mean(chance) + 0.25, \
            f"{m}: peaks inside an event {np.mean(h):.2f}, chance {np.mean(chance):.2f}"


def test_the_fused_logit_is_exactly_the_sum_of_the_modality_contributions(explained):
    for e, _ in explained:
        c, z = e.contribution, e.prediction.logits
        i = e.target["index"]
        # the model computes (z_a + z_v) / 2 in float32; the halves add up to it bit for bit
        assert np.float32(c["audio"]) + np.float32(c["video"]) == np.float32(c["fused_logit"])
        assert c["fused_logit"] == float(z["fused"][i]) and c["audio"] == float(z["audio"][i] / np.float32(2))
        assert c["score"]["audio_only"] == pytest.approx(float(e.prediction.scores("audio")[i]))
        assert c["agree"] == (int(np.argmax(z["audio"])) == int(np.argmax(z["video"])))


def test_a_drop_is_what_muting_or_blanking_that_span_does_to_the_prediction(demo, corpus, explained):
    (path, _), (e, _) = corpus[1], explained[1]
    i, base = e.target["index"], e.target["score"]["fused"]
    for m, option in (("audio", "mute"), ("video", "blank")):
        k = int(np.argmax(e.occlusion[m]["drop"]))
        a = e.occlusion[m]["times"][k] - e.window / 2
        pred = demo.predict(path, **{option: (a, a + e.window)})
        assert e.occlusion[m]["drop"][k] == pytest.approx(base - pred.scores("fused")[i], abs=1e-4), m
        assert e.occlusion[m]["drop_own"][k] == pytest.approx(e.target["score"][m] - pred.scores(m)[i], abs=1e-4), m


# -- rollout ------------------------------------------------------------------------------------
def test_rollout_of_identity_attention_is_uniform():
    eye = np.broadcast_to(np.eye(30), (3, 4, 30, 30))  # 3 layers, 4 heads
    np.testing.assert_allclose(rollout_curve(rollout(eye)), np.full(30, 1 / 30))


def test_rollout_adds_the_residual_and_renormalises_rows():
    # every query attends to step 0 only: (A + I) rows renormalised, then the mean of the rows
    a = np.zeros((3, 3))
    a[:, 0] = 1
    np.testing.assert_allclose(rollout_curve(rollout([a])), [2 / 3, 1 / 6, 1 / 6])
    np.testing.assert_allclose(rollout([a, a]), rollout([a]) @ rollout([a]))


def _identity_attention(self, x):
    B, T, C = x.shape
    v = self.qkv(x).reshape(B, T, 3, self.num_heads, C // self.num_heads)[:, :, 2].transpose(1, 2)
    attn = torch.eye(T).expand(B, self.num_heads, T, T)
    return self.proj((attn @ v).transpose(1, 2).reshape(B, T, C)), attn


@pytest.mark.slow  # two models built and explained
@pytest.mark.parametrize("kind", ["unified", "cross_modal"])
def test_a_model_whose_attention_is_the_identity_gets_a_uniform_rollout(kind, tmp_path, media_dir, monkeypatch):
    import uavm.model

    monkeypatch.setattr(uavm.model.Attention, "forward", _identity_attention)
    pipe = Pipeline(load_bundle(random_bundle(tmp_path / kind, kind=kind)), "cpu")
    e = pipe.explain(media_dir / "av.mp4")
    T = pipe.bundle.model.cfg.seq_len
    each = 1 / (2 * T) if kind == "cross_modal" else 1 / T  # the cross-modal halves share one rollout
    for m in ("audio", "video"):
        np.testing.assert_allclose(e.rollout[m], np.full(T, each), err_msg=m)
        np.testing.assert_allclose(e.attention_last[m], np.full(T, each), err_msg=m)


# -- what each model defines ----------------------------------------------------------------------
def test_the_cross_modal_model_gets_fused_drops_and_no_invented_per_modality_numbers(corpus):
    pipe = Pipeline(load_bundle(demo_bundles()["demo-cross-modal"]), "cpu")
    e = pipe.explain(corpus[0][0])
    c = e.contribution
    assert c["audio"] is None and c["video"] is None and c["agree"] is None and "no per-modality logits" in c["undefined"]
    assert e.occlusion["audio"]["drop_own"] is None and len(e.occlusion["audio"]["drop"]) == 19
    assert e.target["score"]["audio"] is None
    assert sum(e.rollout["audio"]) + sum(e.rollout["video"]) == pytest.approx(1)


def test_a_turned_off_modality_is_null_with_its_reason_and_the_other_holds_the_whole_logit(demo, corpus):
    e = demo.explain(corpus[0][0], video=False)
    assert e.missing == {"video": "turned off"}
    assert e.occlusion["video"] is None and e.rollout["video"] is None and e.contribution["video"] is None
    assert e.contribution["audio"] == e.contribution["fused_logit"] and e.contribution["agree"] is None


def test_the_target_may_be_a_pass_top1(demo, corpus):
    e = demo.explain(corpus[2][0], target="video")
    assert e.target["index"] == int(np.argmax(e.prediction.logits["video"])) and e.target["from"] == "video"


def test_a_target_label_is_a_display_name_or_a_mid_in_any_case(demo):
    labels = demo.bundle.labels
    assert labels[label_index("vgg_52", labels)].name == "playing harpsichord"
    assert labels[label_index("Dog Growling", labels)].mid == "vgg_112"
    assert label_index("fused", labels) is None


# -- the explorer ---------------------------------------------------------------------------------
def test_the_explorer_explains_from_its_cache_with_the_pipelines_answer(demo, corpus):
    ex = Explorer(demo)
    path = corpus[3][0]
    ex.run(path, blank=(3, 6))
    got = ex.explain(path, blank=(3, 6))
    assert len(ex.shared.decoded) == 1, "explain decoded the clip again"
    assert ex.explain(path, blank=(3, 6)) is got, "the explanation was not cached"
    want = demo.explain(path, blank=(3, 6))
    for m in ("audio", "video"):
        np.testing.assert_allclose(got.occlusion[m]["drop"], want.occlusion[m]["drop"], atol=1e-3, err_msg=m)
        np.testing.assert_allclose(got.rollout[m], want.rollout[m], atol=1e-4, err_msg=m)


# -- the command ----------------------------------------------------------------------------------
def test_explain_json_has_the_issue_schema_and_times_follow_start(media_dir):
    r = run_cli("explain", media_dir / "long.mp4", "--start", 12, "--json", check=True)
    (d,) = json_lines(r.stdout)
    json.dumps(d, allow_nan=False)
    assert {"clip", "start", "target", "occlusion", "contribution", "rollout", "missing"} <= set(d)
    assert set(d["target"]) >= {"label", "index"} and set(d["contribution"]) >= {"audio", "video", "agree"}
    for m in ("audio", "video"):
        o = d["occlusion"][m]
        assert o["times"] == [12 + 0.5 * (k + 1) for k in range(19)]
        assert len(o["drop"]) == len(o["drop_own"]) == 19 and len(d["rollout"][m]) == 30
        assert all(math.isfinite(x) for x in o["drop"] + d["rollout"][m])
    assert d["step_times"][0] == pytest.approx(12 + 1 / 6)


def test_a_clip_that_fails_prints_an_error_object_and_the_others_go_on(media_dir, tmp_path):
    r = run_cli("explain", tmp_path / "nope.mp4", media_dir / "audio_only.wav", "--json")
    assert r.returncode == 1
    bad, good = json_lines(r.stdout)
    assert set(bad) == {"clip", "error"} and "nope.mp4" in bad["error"]
    assert good["occlusion"]["video"] is None and "video" in good["missing"] and good["occlusion"]["audio"]


@pytest.mark.parametrize("args, says", [
    (["--window", "0"], "longer than 0"),
    (["--window", "11"], "occlusion window"),
    (["--stride", "0"], "longer than 0"),
    (["--stride", "nan"], "occlusion stride"),
    (["--stride", "0.0001"], "spans"),
    (["--target", "no such class"], "unknown target"),
    (["--start", "-1"], "start"),
])
def test_bad_arguments_are_one_line_errors(media_dir, args, says):
    r = run_cli("explain", media_dir / "av.mp4", *args)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr


def test_spans_cover_the_window_and_end_flush_with_it():
    assert len(spans(10, 1, 0.5)) == 19 and spans(10, 1, 0.5)[-1] == (9, 10)
    assert spans(10, 3, 2) == [(0, 3), (2, 5), (4, 7), (6, 9), (7, 10)]

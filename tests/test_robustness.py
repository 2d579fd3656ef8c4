"""`uavm analyze robustness`: curves over a set against a missing share, a span and the
degradations; each figure checked against a case with a known answer or `uavm evaluate`."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from uavm.analysis.conditions import missing_rows, plan, span_of
from uavm.analysis.robustness import ece, effective_robustness, relative_robustness, summarize
from uavm.errors import InputError
from uavm.train import FeatureSet, evaluate

from .conftest import ROOT, run_cli
from .test_analyze import analyze_cli, write_bundle, write_set

DEMO = [Path(ROOT) / "weights" / n for n in ("demo-uavm", "demo-independent", "demo-cross-modal")]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def row(rows, model, p, condition, level=""):
    want = "" if level == "" else float(level)
    hit = [r for r in rows if r["model"] == model and r["pass"] == p and r["condition"] == condition
           and (r["level"] == "" if want == "" else r["level"] != "" and float(r["level"]) == want)]
    assert len(hit) == 1, (model, p, condition, level)
    return hit[0]


# -- the definitions -------------------------------------------------------------------------
def test_relative_robustness_of_a_flat_curve_is_1_and_of_a_curve_that_halves_at_once_one_half():
    x = [0, 0.25, 0.5, 0.75, 1.0]
    assert relative_robustness(x, [0.8] * 5) == (pytest.approx(0.8), pytest.approx(1.0))
    area, rel = relative_robustness([0, 1e-9, 1], [0.8, 0.4, 0.4])
    assert rel == pytest.approx(0.5, abs=1e-6) and area == pytest.approx(0.4, abs=1e-6)
    # a straight fall from y0 to 0 keeps half the area; x need not span 0..1 to be normalised
    assert relative_robustness([0, 0.3, 0.6], [0.6, 0.3, 0.0])[1] == pytest.approx(0.5)


def test_effective_robustness_is_the_gain_over_the_baseline_moved_to_the_same_start():
    x = [0, 0.5, 1]
    base = [0.9, 0.6, 0.3]
    assert effective_robustness(x, base, base) == 0
    assert effective_robustness(x, [0.5, 0.2, -0.1], base) == pytest.approx(0)  # the same fall from lower down
    assert effective_robustness(x, [0.5, 0.5, 0.5], base) == pytest.approx((0 + 0.3 * 2 + 0.6) / 4)


def test_expected_calibration_error_is_the_weighted_gap_between_confidence_and_accuracy():
    assert ece(np.array([0.95, 0.95]), np.array([True, True])) == pytest.approx(0.05)
    # two bins of two clips: 0.9 confident and half right, 0.3 confident and never right
    assert ece(np.array([0.9, 0.9, 0.3, 0.3]), np.array([True, False, False, False])) == pytest.approx(
        0.5 * 0.4 + 0.5 * 0.3)
    assert np.isnan(ece(np.array([]), np.array([], bool)))


def test_the_clips_missing_a_modality_are_seeded_and_a_smaller_share_is_inside_a_larger():
    small, large = missing_rows(50, 0.2, 3, "audio"), missing_rows(50, 0.6, 3, "audio")
    assert small.sum() == 10 and large.sum() == 30 and not (small & ~large).any()
    assert (missing_rows(50, 0.2, 3, "audio") == small).all()
    assert not (missing_rows(50, 0.2, 4, "audio") == small).all()
    assert missing_rows(50, 1.0, 0, "video").all() and not missing_rows(50, 0.0, 0, "video").any()


def test_a_span_lies_inside_the_clip_at_the_same_place_for_one_seed():
    for clip in range(20):
        a, b = span_of(0, clip, 4.0, 10.0)
        assert 0 <= a and b <= 10 and b - a == pytest.approx(4.0)
    assert span_of(0, 1, 4.0, 10.0) == span_of(0, 1, 4.0, 10.0) != span_of(1, 1, 4.0, 10.0)
    assert span_of(0, 1, 10.0, 10.0) == (0.0, 10.0)


def test_a_plan_starts_each_curve_at_the_plain_set_and_places_its_levels_from_0_to_1():
    p = plan({"audio_missing": [0, 0.5, 1.0], "video_blank": [5.0, 10.0], "audio_snr": [20, 0, -20]}, 10.0)
    assert [(c.kind, c.level, c.x) for c in p["audio_missing"]] == [("plain", None, 0.0), ("audio_missing", 0.5, 0.5),
                                                                    ("audio_missing", 1.0, 1.0)]
    assert [c.x for c in p["video_blank"]] == [0.0, 0.5, 1.0]
    assert [c.x for c in p["audio_snr"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert p["audio_snr"][1].key(7) == "audio_snr=20,seed=7" and p["video_blank"][1].key(7) == "video_blank=5,seed=7"


@pytest.mark.parametrize("levels, says", [
    ({"audio_missing": [1.5]}, "audio_missing share"), ({"audio_mute": [11.0]}, "audio_mute seconds"),
    ({"video_blur": [float("nan")]}, "video blur"), ({"audio_missing": [0.6, 0.2]}, "increasing order"),
    ({"video_fps": [0.0]}, "video fps"), ({"teleport": [1]}, "unknown condition"),
    ({"audio_snr": []}, "nothing to run"), ({"audio_snr": list(range(40))}, "at most 32"),
])
def test_hostile_levels_are_one_line_errors(levels, says):
    with pytest.raises(InputError) as e:
        plan(levels, 10.0)
    assert says in str(e.value) and "\n" not in str(e.value)


# -- over a set of features: the missing-modality curves --------------------------------------
@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    data = write_set(d / "set", n=40)
    bundles = [write_bundle(d / "unified", seed=1), write_bundle(d / "independent", kind="independent", seed=2),
               write_bundle(d / "cross", kind="cross_modal", seed=3)]
    args = ["robustness", "--data", data, "--out", d / "out", "--only", "audio_missing", "video_missing"]
    for b in bundles:
        args += ["--bundle", b]
    analyze_cli(*args)
    return {"data": data, "bundles": bundles, "out": d / "out", "rows": read_csv(d / "out" / "robustness.csv"),
            "summary": read_csv(d / "out" / "robustness-summary.csv")}


def test_at_0_percent_missing_the_figures_are_uavm_evaluates(curves):
    from uavm.bundle import load_bundle

    for folder in curves["bundles"]:
        b = load_bundle(folder)
        res = evaluate(b.model, FeatureSet(curves["data"], b.labels, b.preprocessing.seq_len))
        for p, want in res.items():
            if want is None:
                assert not [r for r in curves["rows"] if r["model"] == b.name and r["pass"] == p]
                continue
            got = row(curves["rows"], b.name, p, "plain")
            assert float(got["accuracy"]) == want["acc"] and float(got["mAP"]) == want["mAP"], (b.name, p)


def test_at_100_percent_audio_missing_the_fused_answer_is_the_video_pass_exactly(curves):
    for model in ("unified", "independent"):
        fused = row(curves["rows"], model, "fused", "audio_missing", 1.0)
        video = row(curves["rows"], model, "video", "plain")
        assert (fused["accuracy"], fused["mAP"], fused["ece"]) == (video["accuracy"], video["mAP"], video["ece"])
        audio = row(curves["rows"], model, "audio", "audio_missing", 1.0)
        assert float(audio["accuracy"]) == 0 and float(audio["answered"]) == 0 and audio["ece"] == ""
        half = row(curves["rows"], model, "audio", "audio_missing", 0.5)
        assert float(half["answered"]) == 0.5
        # the pass not missing is untouched at every share
        assert row(curves["rows"], model, "audio", "video_missing", 0.7)["accuracy"] == \
            row(curves["rows"], model, "audio", "plain")["accuracy"]


def test_a_cross_modal_model_has_only_its_fused_curve_and_answers_with_the_input_padded(curves):
    rows = [r for r in curves["rows"] if r["model"] == "cross"]
    assert {r["pass"] for r in rows} == {"fused"}
    assert float(row(rows, "cross", "fused", "audio_missing", 1.0)["answered"]) == 1.0


def test_effective_robustness_is_measured_against_the_modality_independent_model(curves):
    s = [r for r in curves["summary"] if r["condition"] == "audio_missing" and r["pass"] == "fused"
         and r["metric"] == "accuracy"]
    assert {r["baseline"] for r in s} == {"independent"}
    assert float(next(r for r in s if r["model"] == "independent")["effective_robustness"]) == 0
    run = json.loads((curves["out"] / "robustness.json").read_text())
    assert run["clips"] == 40 and run["models"] == ["unified", "independent", "cross"] and not run["failed"]
    assert (curves["out"] / "robustness.html").read_text().count("plotly") > 1


def test_summaries_follow_the_rows():
    rows = [{"model": "m", "pass": "fused", "condition": c, "level": lv, "x": x, "accuracy": a, "mAP": a}
            for c, lv, x, a in (("plain", "", 0, 0.8), ("audio_missing", 0.5, 0.5, 0.8), ("audio_missing", 1, 1, 0.8))]
    (acc, _) = summarize(rows)
    assert acc["relative_robustness"] == 1 and acc["worst"] == 0.8 and acc["effective_robustness"] == ""


def test_degraded_curves_need_the_clips(curves, tmp_path):
    r = run_cli("analyze", "robustness", "--data", curves["data"], "--out", tmp_path, "--bundle",
                curves["bundles"][0], "--only", "audio_snr")
    assert r.returncode == 1 and "names no clip" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- on generated clips with the demo models -------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from uavm.demo.corpus import generate

    return generate(tmp_path_factory.mktemp("robust-clips"), 1, seed=5, split="test", workers=1) / "clips.json"


LEVELS = ["--audio-missing", "50,100", "--video-missing", "100", "--audio-mute", "10", "--video-blank", "5",
          "--audio-snr", "0,-30", "--video-blur", "8", "--video-size", "8", "--video-fps", "0.2"]


@pytest.mark.slow
def test_the_demo_models_share_one_set_of_features_that_a_rerun_reuses(clips, tmp_path):
    args = ["analyze", "robustness", "--data", clips, "--out", tmp_path, *LEVELS]
    for b in DEMO:
        args += ["--bundle", b]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    run = json.loads((tmp_path / "robustness.json").read_text())
    assert len(run["features"]) == 1 and len(list(tmp_path.glob("features/*/*.npz"))) == 12
    rows = read_csv(tmp_path / "robustness.csv")
    plain = float(row(rows, "demo-uavm", "fused", "plain")["accuracy"])
    # the whole clip muted: the audio pass hears silence, the fused answer leans on the video
    assert float(row(rows, "demo-uavm", "audio", "audio_mute", 10)["accuracy"]) < 0.5 < plain
    assert row(rows, "demo-uavm", "video", "audio_snr", -30)["accuracy"] == row(rows, "demo-uavm", "video",
                                                                                "plain")["accuracy"]
    stamps = {p: os.stat(p).st_mtime_ns for p in tmp_path.glob("features/*/*.npz")}
    again = run_cli(*args)
    assert again.returncode == 0 and read_csv(tmp_path / "robustness.csv") == rows
    assert {p: os.stat(p).st_mtime_ns for p in tmp_path.glob("features/*/*.npz")} == stamps


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_figures_of_one(clips, tmp_path):
    from .test_distributed import uavm

    args = ["analyze", "robustness", "--data", clips, "--bundle", DEMO[0], *LEVELS]
    one = uavm(*args, "--out", tmp_path / "one")
    two = uavm(*args, "--out", tmp_path / "two", procs=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    for f in ("robustness.csv", "robustness-summary.csv"):
        assert (tmp_path / "one" / f).read_text() == (tmp_path / "two" / f).read_text(), f
    assert sorted(p.name for p in (tmp_path / "two").glob("features/*/*.npz")) == \
        sorted(p.name for p in (tmp_path / "one").glob("features/*/*.npz"))

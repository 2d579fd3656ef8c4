"""`uavm analyze`: each number checked against a case with a known answer or a direct computation."""
import csv
import json

import numpy as np
import pytest
import torch

from uavm import analysis as analyze
from uavm.bundle import Label, load_bundle, save_bundle
from uavm.features import Preprocessing
from uavm.model import UAVM, ModelConfig
from uavm.train import FeatureSet, Recipe, Trainer, evaluate

from .conftest import run_cli


class Done:
    returncode, stderr = 0, ""


def analyze_cli(*args):
    """`uavm analyze ARGS` in this process (the commands' own numbers; the subprocess form,
    with its error handling, is tested at the end)."""
    from uavm import cli

    assert cli.main(["analyze", *map(str, args)]) == 0
    return Done

LABELS = [Label(i, f"c{i}", f"class {i}") for i in range(4)]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def write_set(d, n=24, same=False, seed=0):
    """n clips of 4 classes; the video features equal the audio ones when ``same``."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((4, 16))
    data = []
    for i in range(n):
        c = i % 4
        a = proto[c] + 0.5 * rng.standard_normal((30, 16))
        v = a if same else proto[(c + 1) % 4] + 0.5 * rng.standard_normal((30, 16)) + 2.0
        np.save(d / f"{i}.a.npy", a.astype(np.float32))
        np.save(d / f"{i}.v.npy", v.astype(np.float32))
        data.append({"labels": f"c{c}", "afeat": f"{i}.a.npy", "vfeat": f"{i}.v.npy", "name": f"clip{i}"})
    (d / "features.json").write_text(json.dumps({"data": data}))
    return d / "features.json"


def write_bundle(d, mirrored=False, kind="unified", seed=0):
    """A small model; ``mirrored``: the video layers are copies of the audio ones, so a clip
    whose video features equal its audio features takes the very same path twice."""
    torch.manual_seed(seed)
    m = UAVM(ModelConfig(kind=kind, num_classes=4, n_specific=2, n_shared=2, embed_dim=16, shared_dim=8,
                         audio_dim=16, video_dim=16))
    if mirrored:
        m.specific["video"].load_state_dict(m.specific["audio"].state_dict())
    save_bundle(d, m, Preprocessing(), LABELS, name=d.name)
    return d


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("analyze")
    return {"same": write_set(d / "same", same=True), "apart": write_set(d / "apart"),
            "mirrored": write_bundle(d / "mirrored", mirrored=True), "plain": write_bundle(d / "plain")}


# -- the functions, on cases with a known answer -------------------------------------------
def test_probe_scores_1_on_separable_modalities_and_exactly_one_half_on_identical_ones():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 8)) + 3
    assert analyze.probe(a, rng.standard_normal((40, 8)) - 3)[0] == 1.0
    # every held-out clip appears once as audio, once as video, with the same vector:
    # whatever the classifier says, exactly one of the two is right
    assert analyze.probe(a, a.copy())[0] == 0.5


def test_the_probe_split_keeps_a_clips_audio_and_video_on_the_same_side():
    fit, test = analyze.halves(11, seed=3)
    assert len(fit) == 5 and len(test) == 6 and not set(fit) & set(test) and set(fit) | set(test) == set(range(11))


def test_recall_matches_a_brute_force_count():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((30, 6)), rng.standard_normal((30, 6))
    g[:10] = q[:10] * 2.0  # the first ten matches are exact (cosine 1)
    got = analyze.recall_at(q, g, (1, 5, 10))
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    for k in (1, 5, 10):
        hits = [sum(cos[i, j] >= cos[i, i] for j in range(30) if j != i) < k for i in range(30)]
        assert got[k] == pytest.approx(np.mean(hits)), k
    assert got[1] >= 10 / 30
    assert analyze.recall_at(q, q, (1,))[1] == 1.0


def test_the_balanced_subset_takes_at_most_per_class_clips_of_each_class():
    y = np.eye(3)[[0] * 7 + [1] * 2 + [2] * 5]
    sub = analyze.balanced_subset(y, per_class=3, seed=0)
    assert np.bincount(y[sub].argmax(1), minlength=3).tolist() == [3, 2, 3]


def test_sweep_points_vary_one_factor_with_n_plus_ns_fixed():
    base = {"n_specific": 3, "n_shared": 3, "embed_dim": 32, "shared_dim": 32, "num_heads": 4, "audio_weight": 0.5}
    pts = analyze.sweep_points(base, {"n_shared": [0, 6], "audio_weight": [0.2]}, ["unified", "cross_modal"], [0, 1])
    arch = [(f, v, k, p["n_specific"], p["n_shared"], w) for f, v, k, s, p, w in pts if s == 0]
    # a cross-modal model needs Ns >= 1, and lambda_MT does not apply to it: those points are skipped
    assert arch == [("n_shared", 0, "unified", 6, 0, 0.5), ("n_shared", 6, "unified", 0, 6, 0.5),
                    ("n_shared", 6, "cross_modal", 0, 6, 0.5), ("audio_weight", 0.2, "unified", 3, 3, 0.2)]
    with pytest.raises(analyze.AnalysisError, match="outside 0..6"):
        analyze.sweep_points(base, {"n_shared": [7]}, ["unified"], [0])


# -- the commands, end to end ----------------------------------------------------------------
def test_identical_audio_and_video_paths_give_chance_probe_perfect_retrieval_and_no_attention_difference(sets, tmp_path):
    common = ("--bundle", sets["mirrored"], "--data", sets["same"])
    r = analyze_cli("probe", *common, "--out", tmp_path / "p", "--tsne-clips", "10")
    assert r.returncode == 0, r.stderr
    rows = read_csv(tmp_path / "p" / "probe.csv")
    assert [x["layer"] for x in rows] == ["layer 1", "layer 2", "layer 3", "layer 4", "logits"]
    assert [x["part"] for x in rows[:4]] == ["specific", "specific", "shared", "shared"]
    assert all(float(x["modality_accuracy"]) == 0.5 for x in rows)
    assert len(read_csv(tmp_path / "p" / "probe-coefficients.csv")) == 8  # S_dim: the last Transformer layer
    assert len(read_csv(tmp_path / "p" / "probe-tsne.csv")) == 5 * 2 * 10
    assert "plotly" in (tmp_path / "p" / "probe.html").read_text()[:2_000_000]

    r = analyze_cli("retrieval", *common, "--out", tmp_path / "r", "--per-class", "3", "--k", "1", "5")
    assert r.returncode == 0, r.stderr
    rows = read_csv(tmp_path / "r" / "retrieval.csv")
    assert len(rows) == 5 and all(x["clips"] == "12" for x in rows)
    assert all(float(x["a2v_recall@1"]) == 1.0 and float(x["v2a_recall@5"]) == 1.0 for x in rows)

    r = analyze_cli("attention", *common, "--out", tmp_path / "a", "--clip", "clip5")
    assert r.returncode == 0, r.stderr
    assert [float(x["mean_abs_difference"]) for x in read_csv(tmp_path / "a" / "attention-difference.csv")] == [0.0] * 4


def test_probe_and_retrieval_rows_are_the_direct_computation_on_the_models_own_hidden_states(sets, tmp_path):
    r = analyze_cli("probe", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path / "p",
                "--tsne-clips", "0", "--seed", "4")
    assert r.returncode == 0, r.stderr
    b = load_bundle(sets["plain"])
    data = FeatureSet(sets["apart"], LABELS)
    with torch.no_grad():
        a = b.model(audio=data.get(np.arange(24), "audio")).audio
        v = b.model(video=data.get(np.arange(24), "video")).video
    for row, ha, hv in zip(read_csv(tmp_path / "p" / "probe.csv"), a.hidden + [a.logits[:, None]],
                           v.hidden + [v.logits[:, None]]):
        acc, _ = analyze.probe(ha.mean(1).numpy(), hv.mean(1).numpy(), seed=4)
        assert float(row["modality_accuracy"]) == pytest.approx(acc, abs=1e-4), row["layer"]
    assert float(read_csv(tmp_path / "p" / "probe.csv")[0]["modality_accuracy"]) == 1.0  # the inputs differ by +2

    r = analyze_cli("retrieval", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path / "r",
                "--per-class", "6", "--k", "5")
    assert r.returncode == 0, r.stderr
    row = read_csv(tmp_path / "r" / "retrieval.csv")[-1]
    assert row["layer"] == "logits"
    assert float(row["a2v_recall@5"]) == pytest.approx(analyze.recall_at(a.logits, v.logits, (5,))[5], abs=1e-4)


def test_attention_difference_and_temporal_heatmap_follow_the_models_attention(sets, tmp_path):
    r = analyze_cli("attention", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path,
                "--clip", "3", "--layer", "2")
    assert r.returncode == 0, r.stderr
    b = load_bundle(sets["plain"])
    data = FeatureSet(sets["apart"], LABELS)
    with torch.no_grad():
        out = b.model(data.get(np.arange(24), "audio"), data.get(np.arange(24), "video"))
    for row, aa, av in zip(read_csv(tmp_path / "attention-difference.csv"), out.audio.attention, out.video.attention):
        assert float(row["mean_abs_difference"]) == pytest.approx((aa - av).abs().mean().item(), abs=1e-5)
    temporal = read_csv(tmp_path / "attention-temporal.csv")
    assert len(temporal) == 2 * 4 * 30  # modalities x heads x steps
    got = [float(x["attention"]) for x in temporal if x["modality"] == "video" and x["head"] == "2"]
    assert got == pytest.approx(out.video.attention[1][3, 1].mean(0).tolist(), abs=1e-5)
    assert sum(got) == pytest.approx(1.0, abs=1e-4)  # softmax rows averaged over queries


def test_sweep_reports_each_run_and_the_mean_and_std_over_seeds(sets, tmp_path):
    r = analyze_cli("sweep", "--bundle", sets["plain"], "--train", sets["apart"], "--val", sets["apart"],
                "--out", tmp_path, "--shared-dim", "4,8", "--seeds", "0", "1", "--kinds", "unified", "independent",
                "--layers", "2", "--base-n-shared", "1", "--embed-dim", "16", "--epochs", "2", "--batch-size", "8",
                "--lr", "3e-3", "--save-models")
    assert r.returncode == 0, r.stderr
    rows = read_csv(tmp_path / "sweep.csv")
    assert [(x["value"], x["kind"], x["seed"]) for x in rows] == [
        (s, k, seed) for s in ("4", "8") for k in ("unified", "independent") for seed in ("0", "1")]
    summary = read_csv(tmp_path / "sweep-summary.csv")
    assert len(summary) == 4
    fused = [float(x["fused_acc"]) for x in rows[:2]]
    assert float(summary[0]["fused_acc_mean"]) == pytest.approx(np.mean(fused), abs=1e-4)
    assert float(summary[0]["fused_acc_std"]) == pytest.approx(np.std(fused, ddof=1), abs=1e-4)
    # the first run, trained directly with the same recipe, seed and architecture
    torch.manual_seed(0)
    m = UAVM(ModelConfig(kind="unified", num_classes=4, n_specific=1, n_shared=1, embed_dim=16, shared_dim=4,
                         audio_dim=16, video_dim=16))
    data = FeatureSet(sets["apart"], LABELS)
    Trainer(m, data, Recipe(epochs=2, batch_size=8, lr=3e-3, seed=0), log=lambda s: None).fit()
    res = evaluate(m, data)
    for k in ("audio", "video", "fused"):
        assert float(rows[0][f"{k}_acc"]) == pytest.approx(res[k]["acc"], abs=1e-4), k
    saved = load_bundle(tmp_path / "models" / "unified-N1-Ns1-S4-l0.5-seed0")
    assert evaluate(saved.model, data)["fused"]["acc"] == pytest.approx(res["fused"]["acc"], abs=1e-4)
    assert (tmp_path / "sweep.html").stat().st_size > 100_000


def test_analyze_names_bad_arguments_in_one_line(sets, tmp_path):
    r = run_cli("analyze", "attention", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path,
                "--layer", "9")
    assert r.returncode == 1 and r.stderr.strip() == "uavm: --layer 9: the model has layers 1..4"
    r = run_cli("analyze", "attention", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path,
                "--clip", "nope")
    assert r.returncode == 1 and "no clip of that name" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("analyze", "retrieval", "--bundle", sets["plain"], "--data", sets["apart"], "--out", tmp_path,
                "--per-class", "1", "--k", "10")
    assert r.returncode == 1 and "too few for recall@10" in r.stderr


@pytest.mark.slow  # decodes clips and extracts their features
def test_a_labelled_clip_list_is_analysed_with_the_bundles_own_extractors(tiny_bundle, tmp_path):
    from uavm.demo.synth import demo_clip
    from uavm.inference import Pipeline

    clips = [demo_clip(tmp_path / f"c{i}.mp4", seconds=3, size=(96, 128), seed=i) for i in range(4)]
    (tmp_path / "clips.json").write_text(json.dumps({"data": [
        {"labels": f"class_{i % 2}", "video": f"c{i}.mp4"} for i in range(4)]}))
    analyze_cli("attention", "--bundle", tiny_bundle, "--data", tmp_path / "clips.json", "--out", tmp_path / "a",
                "--clip", "c2")
    # the features it analysed are the ones the bundle's pipeline makes from each clip
    pipe = Pipeline(load_bundle(tiny_bundle), "cpu")
    for i, clip in enumerate(clips):
        f = pipe.features(clip)
        assert np.allclose(np.load(tmp_path / "a" / "features" / f"c{i}.audio.npy"), f.audio, atol=1e-3)
        assert np.allclose(np.load(tmp_path / "a" / "features" / f"c{i}.video.npy"), f.video, atol=1e-3)
    rows = read_csv(tmp_path / "a" / "attention-difference.csv")
    assert [r["layer"] for r in rows] == ["layer 1", "layer 2"]


def test_a_cross_modal_model_is_analysed_through_its_modality_specific_layers(sets, tmp_path):
    b = write_bundle(tmp_path / "cross", kind="cross_modal")
    analyze_cli("probe", "--bundle", b, "--data", sets["apart"], "--out", tmp_path / "p", "--tsne-clips", "0")
    assert [r["layer"] for r in read_csv(tmp_path / "p" / "probe.csv")] == ["layer 1", "layer 2"]
    analyze_cli("attention", "--bundle", b, "--data", sets["apart"], "--out", tmp_path / "a")
    model, data = load_bundle(b).model, FeatureSet(sets["apart"], LABELS)
    with torch.no_grad():
        out = model(data.get(np.arange(24), "audio"), data.get(np.arange(24), "video"))
    got = [float(r["mean_abs_difference"]) for r in read_csv(tmp_path / "a" / "attention-difference.csv")]
    assert got == pytest.approx([(x - y).abs().mean().item() for x, y in zip(out.audio.attention, out.video.attention)],
                                abs=1e-5)


def test_analyze_without_scikit_learn_says_what_to_install(sets, tmp_path, monkeypatch, capsys):
    import importlib.util

    from uavm import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    assert cli.main(["analyze", "probe", "--bundle", str(sets["plain"]), "--data", str(sets["apart"]),
                     "--out", str(tmp_path)]) == 1
    from uavm.assets import install_hint

    hint = install_hint("analyze")  # from the checkout (or file) uavm came from, else the packages by name
    assert capsys.readouterr().err.strip() == f"uavm: uavm analyze needs scikit-learn: {hint}"
    assert hint.startswith("pip install ") and ("[analyze]'" in hint or "scikit-learn" in hint)

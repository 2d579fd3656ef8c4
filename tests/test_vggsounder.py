"""VGGSounder's modality-aware evaluation (uavm.analysis.vggsounder): its metrics equal the
vggsounder package's own, the demo corpus is annotated as it was designed, and a hostile
annotation CSV is a one-line error."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uavm.analysis import vggsounder as vgs
from uavm.bundle import read_labels
from uavm.demo import corpus
from uavm.errors import UAVMError
from uavm.features import to_model_input
from uavm.model import UAVM, ModelConfig
from uavm.train import FeatureSet
from uavm.train.trainer import predict_set

from .conftest import ROOT, feature_corpus, json_lines, run_cli

WEIGHTS = Path(ROOT) / "weights"
DEMOS = ("demo-uavm", "demo-independent", "demo-cross-modal")
FLAGS = {m: "False" for m in vgs.META}


# the package's own warnings: its label binarizer on labels outside its classes, pandas on its inplace drop
pytestmark = [pytest.mark.filterwarnings("ignore:unknown class"), pytest.mark.filterwarnings("ignore:The inplace")]


def package():
    return pytest.importorskip("vggsounder.benchmark")


def write_csv(path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=vgs.COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def random_annotations(rng, ids, names, meta=True) -> list:
    """CSV rows: each clip 1-4 of ``names``, each tagged A, V or AV; random meta flags."""
    rows = []
    for v in ids:
        flags = {m: str(bool(rng.random() < 0.3)) if meta else "False" for m in vgs.META}
        for label in rng.choice(names, int(rng.integers(1, 5)), replace=False):
            rows.append({"video_id": v, "label": label, "modality": str(rng.choice(vgs.TAGS)), **flags})
    return rows


def truth_of(labels: list, classes: list) -> np.ndarray:
    t = np.zeros((len(labels), len(classes)), bool)
    for i, ls in enumerate(labels):
        t[i, [classes.index(x) for x in ls]] = True
    return t


# -- the definitions, against the package's functions -------------------------------------------
def test_subset_metrics_equal_the_packages_compare_labels_logits(rng):
    pd, B = pytest.importorskip("pandas"), package()
    classes = [f"c{i}" for i in range(25)]
    labels = [list(rng.choice(classes, int(rng.integers(1, 4)), replace=False)) for _ in range(80)]
    logits = rng.standard_normal((80, 25))
    ids = [str(i) for i in range(80)]
    ref = B.compare_labels_logits(pd.DataFrame({"id": ids, "labels": labels}),
                                  pd.DataFrame({"id": ids, "logits": list(logits)}), classes)
    mine = vgs.subset_metrics(truth_of(labels, classes), logits)
    assert mine["clips"] == 80
    for k, v in ref.items():
        assert mine[k] == pytest.approx(v, abs=1e-12), k


def test_modality_confusion_equals_the_packages_compute_modality_confusion_logits(rng):
    pd, B = pytest.importorskip("pandas"), package()
    classes = [f"c{i}" for i in range(8)]  # few classes: hits and misses of every kind
    labels = [list(rng.choice(classes, int(rng.integers(1, 3)), replace=False)) for _ in range(200)]
    ids = [str(i) for i in range(200)]
    a, v, av = rng.standard_normal((3, 200, 8))
    frame = lambda z: pd.DataFrame({"id": ids, "logits": list(z)})
    ref = B.compute_modality_confusion_logits(pd.DataFrame({"id": ids, "labels": labels}), frame(av), frame(a),
                                              frame(v), classes)
    mine = vgs.modality_confusion(truth_of(labels, classes), a, v, av)
    assert mine == pytest.approx({k: float(x) for k, x in ref.items()}, abs=1e-12)
    assert min(mine.values()) > 0


def test_roc_auc_counts_ties_as_one_half():
    assert vgs.roc_auc(np.zeros(4), np.array([True, False, True, False])) == 0.5
    assert vgs.roc_auc(np.array([1.0, 2.0, 2.0, 3.0]), np.array([False, True, False, True])) == 0.875


def test_the_fusion_gain_and_harm_follow_their_definitions():
    truth = np.eye(3, dtype=bool)[[0, 1, 2, 0]]  # four clips, classes 0 1 2 0
    one_hot = lambda idx: np.eye(3)[idx]
    audio, video, fused = one_hot([0, 0, 2, 1]), one_hot([1, 1, 1, 1]), one_hot([0, 1, 0, 0])
    # hit@1: audio 1,0,1,0 (1/2); video 0,1,0,0 (1/4); fused 1,1,0,1 (3/4)
    got = vgs.fusion_effect(truth, audio, video, fused)
    assert got == {"gain": pytest.approx(0.25), "harm": pytest.approx(0.25), "best_single": "audio"}  # clip 2


# -- the whole evaluation and the pickle, against compute_all_results --------------------------------
@pytest.fixture(scope="module")
def random_case(tmp_path_factory):
    """A random annotation of 60 clips over 30 of VGGSounder's classes; a "bundle" of 20 of them
    (so some annotated labels are not the bundle's) plus clips without an annotation."""
    pytest.importorskip("pandas")
    package()
    rng = np.random.default_rng(1)
    d = tmp_path_factory.mktemp("random")
    pool = list(rng.choice(vgs.package_classes(), 30, replace=False))
    classes = pool[:20]
    ids = [f"vid{i:03d}_000010" for i in range(64)]
    write_csv(d / "ann.csv", random_annotations(rng, ids[:60], pool))
    logits = {p: rng.standard_normal((64, 20)).astype(np.float32) for p in vgs.PASSES}
    logits["fused"] = (logits["audio"] + logits["video"]) / 2
    (d / "models").mkdir()
    vgs.write_benchmark_pickle(d / "models" / "m.pkl", ids, logits, classes, d / "ann.csv")
    res = vgs.benchmark(ids, logits, classes, vgs.read_annotations(d / "ann.csv"))
    return d, res


def same_cells(mine: dict, ref: dict, columns: int):
    for s, p in vgs.CELLS.items():
        got, want = mine["passes"][p][s], ref[s]
        assert got["clips"] > 0
        for k, v in want.items():
            if k == "mu":
                continue
            if k.startswith("f1_macro"):  # the package averages over its 309 classes, uavm over its columns
                assert got[k] * columns / 309 == pytest.approx(v, abs=1e-12), (s, k)
            else:
                assert got[k] == pytest.approx(v, abs=1e-12), (s, k)
    assert mine["mu"] == pytest.approx({m: ref[m]["mu"] for m in ("a", "v", "av")}, abs=1e-12)


@pytest.mark.slow
def test_every_vggsounder_cell_equals_compute_all_results_on_the_pickle(random_case):
    d, res = random_case
    from vggsounder.labels import VGGSounder

    ref = package().compute_all_results(str(d / "models"), verbose=False, vggsounder=VGGSounder(
        d / "ann.csv", background_music=None, voice_over=None, static_image=None))["m"]
    lacking = res["labels_not_in_bundle"]["count"]
    assert lacking > 0 and res["unannotated"] == 4 and res["clips"] == 60
    same_cells(res, ref, 20 + lacking)
    assert res["vggsounders_cells"]["av"]["hit_rate@1"] == res["passes"]["fused"]["av"]["hit_rate@1"]


@pytest.mark.slow
@pytest.mark.parametrize("flag", vgs.META)
def test_a_meta_subset_equals_the_packages_meta_filter(random_case, flag):
    d, res = random_case
    from vggsounder.labels import VGGSounder

    meta = {m: (True if m == flag else None) for m in vgs.META}
    ref = package().compute_all_results(str(d / "models"), verbose=False,
                                        vggsounder=VGGSounder(d / "ann.csv", **meta))["m"]
    mine = res["meta"][f"{flag}=True"]
    assert 0 < mine["clips"] < res["clips"]
    # f1_macro: the columns are those of all annotated labels, on any subset
    same_cells(mine, ref, 20 + res["labels_not_in_bundle"]["count"])


def test_a_class_the_bundle_lacks_gets_one_logit_below_every_real_one(tmp_path, rng):
    import pickle

    names = vgs.package_classes()
    logits = {p: rng.standard_normal((3, 2)) for p in vgs.PASSES}
    info = vgs.write_benchmark_pickle(tmp_path / "m.pkl", ["x", "y", "z"], logits, [names[5], "not a vggsound class"])
    with open(tmp_path / "m.pkl", "rb") as f:  # our own file, just written
        got = pickle.load(f)
    a = np.array([got[v]["logits"]["a"] for v in "xyz"])
    assert a.shape == (3, 309) and np.isfinite(a).all()
    np.testing.assert_array_equal(a[:, 5], logits["audio"][:, 0])
    others = np.delete(a, 5, axis=1)
    assert len(np.unique(others)) == 1 and others.max() < min(z.min() for z in logits.values())
    assert info["vggsounder_classes_not_in_bundle"] == 308
    assert info["bundle_classes_not_in_vggsounder"] == ["not a vggsound class"]


def test_an_empty_subset_is_zero_clips_not_a_crash(rng):
    ann = {"a": vgs.Annotation({"x": "A"}, dict.fromkeys(vgs.META, False)),
           "b": vgs.Annotation({"y": "A", "x": "AV"}, dict.fromkeys(vgs.META, False))}
    logits = {p: rng.standard_normal((2, 2)) for p in vgs.PASSES}
    res = vgs.benchmark(["a", "b"], logits, ["x", "y"], ann)
    assert res["passes"]["video"]["v only"] == {"clips": 0, **{k: None for k in res["passes"]["video"]["v only"]
                                                             if k != "clips"}}
    assert res["meta"]["voice_over=True"]["clips"] == 0 and res["meta"]["voice_over=True"]["mu"]["a"] is None
    json.dumps(res, allow_nan=False)


def test_a_cross_modal_models_single_passes_are_its_joint_pass_with_the_other_stream_padded(tmp_path):
    d = feature_corpus(tmp_path)
    data = FeatureSet(d / "features.json", read_labels(d / "labels.csv"), 30)
    torch.manual_seed(0)
    cross = UAVM(ModelConfig(kind="cross_modal", num_classes=4, n_specific=1, n_shared=1, embed_dim=16,
                             shared_dim=16, audio_dim=16, video_dim=16))
    got = vgs.predict_passes(cross, data)
    pad = to_model_input(np.zeros((0, 16)), 30).expand(len(data), -1, -1)  # a clip without that stream
    a, v = data.get(np.arange(len(data)), "audio"), data.get(np.arange(len(data)), "video")
    with torch.no_grad():
        np.testing.assert_allclose(got["audio"], cross(a, pad).fused.numpy(), atol=1e-6)
        np.testing.assert_allclose(got["video"], cross(pad, v).fused.numpy(), atol=1e-6)
        np.testing.assert_allclose(got["fused"], cross(a, v).fused.numpy(), atol=1e-6)
    unified = UAVM(ModelConfig(num_classes=4, n_specific=1, n_shared=1, embed_dim=16, shared_dim=16,
                               audio_dim=16, video_dim=16))
    same = predict_set(unified, data)
    assert all(np.array_equal(vgs.predict_passes(unified, data)[p], same[p]) for p in vgs.PASSES)


# -- clips, the synth corpus's annotation ------------------------------------------------------
def test_a_clip_is_matched_by_its_file_stem():
    assert vgs.clip_id({"clip": "/d/clips/--abc_000010.mp4", "afeat": "x.audio.npy"}) == "--abc_000010"
    assert vgs.clip_id({"video": "clips/test_00_0001.mp4"}) == "test_00_0001"
    assert vgs.clip_id({"afeat": "feats/--abc_000010.audio.npy", "vfeat": "v.npy"}) == "--abc_000010"
    with pytest.raises(UAVMError, match="video id .x. is entry 0.s too"):
        vgs.clip_ids([{"video": "a/x.mp4"}, {"video": "b/x.mp4"}])


def test_a_set_none_of_whose_clips_is_annotated_is_a_one_line_error(rng):
    ann = {"--abc_000010": vgs.Annotation({"x": "AV"}, dict.fromkeys(vgs.META, False))}
    logits = {p: rng.standard_normal((1, 1)) for p in vgs.PASSES}
    with pytest.raises(UAVMError, match="none of the 1 clips is annotated .*file stems"):
        vgs.benchmark(["test_00_0000"], logits, ["x"], ann)


def test_the_synth_annotation_follows_the_corpus_design(tmp_path):
    path = corpus.write_vggsounder(tmp_path / "v.csv", [(f"clip{c}", c) for c in range(len(corpus.CLASSES))])
    ann = vgs.read_annotations(path)
    for c, (name, _, picture, sound) in enumerate(corpus.CLASSES):
        tags = ann[f"clip{c}"].labels
        assert tags[name] == "AV"
        assert {l for l, t in tags.items() if t == "A"} == {o[0] for o in corpus.CLASSES if o[3] == sound} - {name}
        assert {l for l, t in tags.items() if t == "V"} == {o[0] for o in corpus.CLASSES if o[2] == picture} - {name}
        assert ann[f"clip{c}"].meta == dict.fromkeys(vgs.META, False)
    assert set(vgs.package_classes()) >= {c[0] for c in corpus.CLASSES}  # VGGSound's own names


# -- hostile annotations ---------------------------------------------------------------------
ROW = {"video_id": "x", "label": "dog barking", "modality": "A", **FLAGS}
HOSTILE = {
    "missing column": ("video_id,label,modality\nx,dog barking,A\n", "no column background_music"),
    "unknown tag": ([{**ROW, "modality": "AVV"}], "modality must be A, V or AV"),
    "bad boolean": ([{**ROW, "static_image": "yes"}], "static_image must be True or False"),
    "empty file": ("", "empty"),
    "header only": (",".join(vgs.COLUMNS) + "\n", "no annotation rows"),
    "empty label": ([{**ROW, "label": " "}], "empty label"),
    "short row": (",".join(vgs.COLUMNS) + "\nx,dog barking\n", "must be A, V or AV"),
    "label twice": ([ROW, {**ROW, "modality": "V"}], "twice"),
    "flags disagree": ([ROW, {**ROW, "label": "dog howling", "voice_over": "True"}], "meta flags differ"),
    "not utf-8": (b"video_id,label\n\xff\xfe\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_annotation_csv_is_a_one_line_error(tmp_path, case):
    body, message = HOSTILE[case]
    path = tmp_path / "a.csv"
    if isinstance(body, list):
        write_csv(path, body)
    else:
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(UAVMError, match=message) as e:
        vgs.read_annotations(path)
    assert "\n" not in str(e.value)


def test_the_annotation_csv_is_bounded(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "a.csv", [{**ROW, "label": f"l{i}"} for i in range(20)])
    monkeypatch.setattr(vgs, "MAX_LABELS", 10)
    with pytest.raises(UAVMError, match="more than 10 distinct labels"):
        vgs.read_annotations(path)
    monkeypatch.setattr(vgs, "MAX_CSV_BYTES", 100)
    with pytest.raises(UAVMError, match="MiB at most"):
        vgs.read_annotations(path)
    with pytest.raises(UAVMError, match="no such file"):
        vgs.read_annotations(tmp_path / "none.csv")


def test_without_the_package_the_default_csv_says_how_to_install_it(monkeypatch):
    import importlib.util

    assert vgs.default_csv().name == "vggsounder+background-music.csv" if importlib.util.find_spec("vggsounder") \
        else True
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UAVMError, match="pip install vggsounder"):
        vgs.default_csv()


def test_the_cli_rejects_a_bad_csv_before_any_work(tmp_path):
    path = write_csv(tmp_path / "a.csv", [{**ROW, "modality": "X"}])
    r = run_cli("evaluate", "--vggsounder", path, "--data", tmp_path / "nothing.json")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "modality must be A, V or AV" in r.stderr
    r = run_cli("evaluate", "--vggsounder-out", tmp_path / "m.pkl", "--data", tmp_path / "nothing.json")
    assert r.returncode == 1 and "needs --vggsounder" in r.stderr


# -- Done when: the demo models on a generated set, uavm's figures = the package's ------------------
@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    """12 generated clips (one per class), their features from the demo's extractors, and
    ``uavm evaluate --vggsounder --vggsounder-out`` of the three demo models."""
    if not (WEIGHTS / "demo-uavm" / "config.json").exists():
        pytest.skip("the demo model is not in weights/: run `uavm build-demo`")
    from uavm import Pipeline, load_bundle
    from uavm.train import extract_features

    d = corpus.generate(tmp_path_factory.mktemp("vgs-demo"), 1, 7, "vgs", workers=1)
    extract_features(Pipeline(load_bundle(WEIGHTS / "demo-uavm"), "cpu"), d / "clips.json", d / "features",
                     log=lambda m: None)
    (d / "models").mkdir()
    res = {}
    for name in DEMOS:
        r = run_cli("evaluate", "--bundle", WEIGHTS / name, "--data", d / "features" / "features.json", "--json",
                    "--vggsounder", d / "vggsounder.csv", "--vggsounder-out", d / "models" / f"{name}.pkl", check=True)
        (res[name],) = json_lines(r.stdout)
    return d, res


@pytest.mark.slow
def test_the_demo_models_figures_equal_compute_all_results_on_their_pickles(demo_set):
    d, res = demo_set
    from vggsounder.labels import VGGSounder

    ref = package().compute_all_results(str(d / "models"), verbose=False, vggsounder=VGGSounder(
        d / "vggsounder.csv", background_music=None, voice_over=None, static_image=None))
    for name in DEMOS:
        assert res[name]["clips"] == len(corpus.CLASSES) and res[name]["unannotated"] == 0
        same_cells(res[name], ref[name], len(corpus.CLASSES))
    assert res["demo-cross-modal"]["note"] == vgs.CROSS_MODAL_NOTE and res["demo-uavm"]["note"] is None


@pytest.mark.slow
def test_the_synth_annotation_names_every_clip_by_its_file_stem(demo_set):
    d, _ = demo_set
    clips = {Path(e["video"]).stem for e in json.loads((d / "clips.json").read_text())["data"]}
    assert set(vgs.read_annotations(d / "vggsounder.csv")) == clips


@pytest.mark.slow
def test_the_text_report_is_a_table_with_mu_and_the_fusions_effect(demo_set):
    d, _ = demo_set
    r = run_cli("evaluate", "--bundle", WEIGHTS / "demo-cross-modal", "--data", d / "features" / "features.json",
                "--vggsounder", d / "vggsounder.csv", check=True)
    out = r.stdout
    assert "padding" in out and "hit_rate@1" in out and "mu (modality confusion" in out and "fusion: gain" in out
    assert len([l for l in out.splitlines() if l.startswith(("audio ", "video ", "fused "))]) == 3 * len(vgs.SUBSETS)

"""Can an answer be trusted: the familiarity score and flag (uavm.ood), fitted, stored in a
bundle, refused when hostile, and measured on the demo models."""
import json
import shutil

import numpy as np
import pytest
import torch

from uavm import ood
from uavm.assets import demo_bundles, examples
from uavm.bundle import BundleError, load_bundle, save_bundle
from uavm.inference import Pipeline
from uavm.model import UAVM, ModelConfig
from uavm.ood import Familiarity, PassStats, fit_pass

from .conftest import feature_corpus, json_lines, run_cli

CLIPS = {p.stem: p for p in examples()}
DOG, PIANO = CLIPS["dog_howling"], CLIPS["playing_piano"]


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(load_bundle(demo_bundles()["demo-uavm"]), "cpu")


def test_the_score_is_the_mahalanobis_distance_to_the_nearest_class_mean_and_the_threshold_holds(rng):
    d, means = 8, rng.standard_normal((3, 8)) * 6
    mix = rng.standard_normal((d, d)) / 2 + np.eye(d)  # a shared, correlated covariance
    draw = lambda n: (lambda c: (means[c] + rng.standard_normal((n, d)) @ mix, c))(rng.integers(0, 3, n))
    x, c = draw(3000)
    held, _ = draw(1000)
    st = fit_pass(x, np.eye(3)[c], held, false_alarm=0.05)
    # against the formula, with the covariance and means estimated the same way
    mu = np.stack([x[c == k].mean(0) for k in range(3)])
    r = x - mu[c]
    prec = np.linalg.inv(r.T @ r / len(r))
    probe, _ = draw(50)
    want = np.sqrt(np.min([np.einsum("nd,de,ne->n", probe - m, prec, probe - m) for m in mu], axis=0))
    np.testing.assert_allclose(st.score(torch.as_tensor(probe, dtype=torch.float32)).numpy(), want, rtol=2e-3)
    fresh, _ = draw(4000)  # the same distribution, never seen: about the asked share is flagged
    rate = float((st.score(torch.as_tensor(fresh, dtype=torch.float32)) > st.threshold).float().mean())
    assert 0.03 < rate < 0.07, rate
    far = means[0] + 8 * np.linalg.norm(mix, 2) * rng.standard_normal((100, d))
    assert (st.score(torch.as_tensor(far, dtype=torch.float32)) > st.threshold).all()


def _always(flagged: bool, dim: int) -> PassStats:
    """Statistics whose flag is fixed: threshold 0 (anything is farther) or huge."""
    return PassStats(torch.zeros(1, dim), torch.eye(dim), 0.0 if flagged else 1e9)


def test_the_fused_answer_is_flagged_with_a_pass_it_weighs_and_is_that_pass_alone():
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=4, n_specific=1, n_shared=1, embed_dim=16, shared_dim=8, audio_dim=16,
                      video_dim=16, num_heads=2, seq_len=30)
    model = UAVM(cfg).eval()
    fam = Familiarity({"audio": _always(True, 8), "video": _always(False, 8), "fused": _always(False, 16)})
    a, v = torch.randn(1, 30, 16), torch.randn(1, 30, 16)
    with torch.no_grad():
        both, audio_only, video_only = model(a, v), model(audio=a), model(video=v)
    j = ood.judge(fam, both)
    assert j["audio"]["flag"] and not j["video"]["flag"]
    assert j["fused"]["flag"] and j["fused"]["passes"] == ["audio"]  # built on an unfamiliar pass
    j0 = ood.judge(fam, both, audio_weight=0.0)  # the audio pass weighs nothing: the fused answer is the video's
    assert not j0["fused"]["flag"] and j0["fused"]["passes"] == []
    assert ood.judge(fam, audio_only)["fused"] == ood.judge(fam, audio_only)["audio"]
    assert ood.judge(fam, video_only)["fused"] == ood.judge(fam, video_only)["video"]
    assert ood.judge(None, both) == {}


def test_statistics_fitted_by_the_command_travel_with_the_bundle_and_reach_every_answer(tmp_path):
    from uavm.bundle import Label
    from uavm.features import Preprocessing

    (tmp_path / "data").mkdir()
    data = feature_corpus(tmp_path / "data")
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=4, n_specific=1, n_shared=1, embed_dim=16, shared_dim=8, audio_dim=16,
                      video_dim=16, num_heads=2, seq_len=30)
    b = save_bundle(tmp_path / "b", UAVM(cfg), Preprocessing(), [Label(i, f"c{i}", f"class {i}") for i in range(4)])
    assert load_bundle(b).ood is None
    r = run_cli("ood", "check", "--bundle", b, DOG)
    assert r.returncode == 1 and "no familiarity statistics" in r.stderr and "uavm ood fit" in r.stderr
    r = run_cli("ood", "fit", "--bundle", b, "--data", data / "features.json", "--device", "cpu", check=True)
    assert "fitted on 32 clips" in r.stdout and "8 held-out clips" in r.stdout  # --held-share 0.2 of 40
    loaded = load_bundle(b)
    assert set(loaded.ood.passes) == {"audio", "video", "fused"} and loaded.ood.fitted["held_out"] == 8
    cfg_json = json.loads((b / "config.json").read_text())["ood"]
    assert cfg_json["method"] == "mahalanobis" and set(cfg_json["thresholds"]) == {"audio", "video", "fused"}
    # the answer from features carries each pass's familiarity
    af, vf = (np.load(data / f"0.{m}.npy").astype(np.float32) for m in "av")
    d = Pipeline(loaded, "cpu").predict_features(af, vf).to_dict(top_k=3)
    for m in ("audio", "video", "fused"):
        assert {"score", "flag", "threshold"} <= set(d[m]["ood"]) and d[m]["ood"]["threshold"] > 0
    far = Pipeline(loaded, "cpu").predict_features(-af)  # the mirror image of every training clip's sound
    assert far.ood["audio"]["flag"] and far.unfamiliar("fused") and far.ood["video"] is None
    for bad, says in ((["--false-alarm", "0.9"], "false-alarm"), (["--held-share", "0"], "held-share")):
        r = run_cli("ood", "fit", "--bundle", b, "--data", data / "features.json", *bad)
        assert r.returncode == 1 and says in r.stderr


def _copy(tmp_path):
    """The demo UAVM copied, without its extractors (they lie beside it, in weights/)."""
    b = tmp_path / "b"
    shutil.copytree(demo_bundles()["demo-uavm"], b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["audio_extractor"] = cfg["video_extractor"] = None
    (b / "config.json").write_text(json.dumps(cfg))
    assert load_bundle(b).ood is not None
    return b


@pytest.mark.parametrize("bad, says", [
    (lambda c: c["ood"].update(method="energy"), "method must be 'mahalanobis'"),
    (lambda c: c["ood"]["thresholds"].update(audio=float("nan")), "finite number"),
    (lambda c: c["ood"]["thresholds"].update(audio=-1), "finite number"),
    (lambda c: c["ood"]["thresholds"].update(audio="1"), "finite number"),
    (lambda c: c["ood"].update(thresholds={"joint": 1.0}), "thresholds must map"),
    (lambda c: c["ood"].update(thresholds=[]), "thresholds must map"),
    (lambda c: c["ood"].update(weights="../ood.safetensors"), "inside the bundle folder"),
    (lambda c: c["ood"].update(weights="/etc/passwd"), "inside the bundle folder"),
    (lambda c: c["ood"].update(weights="missing.safetensors"), "missing familiarity file"),
    (lambda c: c["ood"].update(false_alarm=2), "false_alarm"),
    (lambda c: c.update(ood="mahalanobis"), "method must be"),
])
def test_a_hostile_familiarity_config_is_refused_in_one_line(tmp_path, bad, says):
    b = _copy(tmp_path)
    cfg = json.loads((b / "config.json").read_text())
    bad(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match=says) as e:
        load_bundle(b)
    assert "\n" not in str(e.value)


def test_familiarity_tensors_that_do_not_fit_the_model_are_refused_before_use(tmp_path):
    from safetensors.torch import load_file, save_file

    b = _copy(tmp_path)
    good = load_file(str(b / "ood.safetensors"))
    for change, says in ((lambda t: t.update({"audio.whiten": torch.zeros(4, 4)}), "needs"),
                         (lambda t: t.update({"video.means": torch.zeros(99, 128)}), "at most 12 classes"),
                         (lambda t: t.pop("fused.means"), "the config needs"),
                         (lambda t: t.update({"audio.means": torch.full((12, 128), float("inf"))}), "finite")):
        t = dict(good)
        change(t)
        save_file(t, str(b / "ood.safetensors"))
        with pytest.raises(BundleError, match=says):
            load_bundle(b)
    (b / "ood.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(b)
    (b / "ood.safetensors").unlink()
    (b / "ood.safetensors").symlink_to(demo_bundles()["demo-independent"] / "ood.safetensors")
    with pytest.raises(BundleError, match="inside the bundle folder"):  # a link out of the bundle
        load_bundle(b)


@pytest.mark.slow
def test_every_demo_model_ships_statistics_and_its_examples_are_familiar():
    for name, folder in demo_bundles().items():
        p = Pipeline(load_bundle(folder), "cpu")
        assert p.bundle.ood is not None and p.bundle.ood.fitted["held_out"] == 360, name
        for clip, pred in p.predict_many(examples()):
            assert not any(pred.unfamiliar(m) for m in ("audio", "video", "fused")), (name, clip, pred.ood)


def test_noise_drowning_the_sound_makes_only_the_audio_pass_and_the_fused_answer_unfamiliar(pipe):
    from uavm.degrade import Degrade

    p = pipe.predict(DOG, degrade=Degrade.checked(audio_snr=-20))
    assert p.unfamiliar("audio") and not p.unfamiliar("video")
    assert p.unfamiliar("fused") and "audio" in p.ood["fused"]["passes"]
    # the CLI says it in a word, and --json carries it
    r = run_cli("predict", DOG, "--audio-snr", "-20", check=True)
    lines = {l.split()[0]: l for l in r.stdout.splitlines()[1:]}
    assert "unfamiliar" in lines["audio"] and "unfamiliar" not in lines["video"]
    d = json_lines(run_cli("predict", DOG, "--audio-snr", "-20", "--json", check=True).stdout)[0]
    assert d["audio"]["ood"]["flag"] is True and d["audio"]["ood"]["score"] > d["audio"]["ood"]["threshold"]


def test_a_sweep_says_at_which_level_each_pass_turns_unfamiliar(pipe):
    sw = pipe.sweep(DOG, "audio_snr", [40, 20, 0, -20])
    assert sw.unfamiliar["video"] is None and sw.unfamiliar["audio"] in (20, 0, -20)
    assert sw.rows[0]["audio"]["unfamiliar"] is False and sw.rows[-1]["audio"]["unfamiliar"] is True
    assert sw.to_dict()["unfamiliar_from"] == sw.unfamiliar


def test_a_sound_and_a_picture_never_seen_together_make_the_pair_unfamiliar(pipe):
    p = pipe.predict(DOG, audio_from=CLIPS["fire_truck_siren"])
    assert not p.unfamiliar("audio") and not p.unfamiliar("video")  # each is a familiar clip's
    assert p.ood["fused"]["score"] > p.ood["fused"]["threshold"] and p.ood["fused"]["passes"] == []


@pytest.mark.slow
def test_real_recordings_and_photos_from_debian_packages_are_flagged_and_unseen_generated_clips_are_not():
    from uavm.tools import oodbench

    sounds, pictures = oodbench.real_media()
    if len(sounds) < 20 or len(pictures) < 5:
        pytest.skip("needs Debian's sound-theme-freedesktop / oxygen-sounds and a wallpaper package (.ci/run "
                    "installs them)")
    step = max(1, len(sounds) // 24)
    r = oodbench.run({"demo-uavm": demo_bundles()["demo-uavm"]}, per_class=2, log=lambda m: None,
                     media=(sounds[::step], pictures))["demo-uavm"]
    real, gen = r["real"], r["generated"]
    assert real["fused"]["clips"] >= 20 and real["fused"]["rate"] >= 0.9, real
    assert real["audio"]["rate"] >= 0.8 and real["video"]["rate"] >= 0.6, real
    assert gen["fused"]["clips"] == 24 and gen["fused"]["flagged"] <= 6, gen


def test_training_with_a_validation_set_gives_the_bundle_its_statistics_and_without_says_how(tmp_path):
    (tmp_path / "data").mkdir()
    data = feature_corpus(tmp_path / "data")
    args = ("train", "--data", data / "features.json", "--labels", data / "labels.csv", "--dataset", "other",
            "--n-specific", "1", "--n-shared", "1", "--embed-dim", "16", "--shared-dim", "8", "--epochs", "2",
            "--batch-size", "8", "--device", "cpu")
    r = run_cli(*args, "--val", data / "features.json", "--out", tmp_path / "with", check=True)
    fam = load_bundle(tmp_path / "with").ood
    assert set(fam.passes) == {"audio", "video", "fused"} and fam.fitted == {**fam.fitted, "clips": 40, "held_out": 40}
    r = run_cli(*args, "--out", tmp_path / "without", check=True)
    assert load_bundle(tmp_path / "without").ood is None and "uavm ood fit" in r.stdout


def test_a_converted_models_sums_are_written_anew_only_when_its_other_files_still_check(tmp_path):
    from uavm.bundle import write_familiarity
    from uavm.hub import IntegrityError, check_folder, integrity, reseal

    b = _copy(tmp_path)
    integrity._write_sums(b)
    write_familiarity(b, load_bundle(b).ood)  # what `uavm ood fit` does: config.json rewritten
    with pytest.raises(IntegrityError):
        check_folder(b)
    assert reseal(b)
    check_folder(b)
    with open(b / "model.safetensors", "r+b") as f:  # damage behind uavm's back
        f.seek(100)
        f.write(b"\0" * 8)
    with pytest.raises(IntegrityError, match="model.safetensors"):
        reseal(b)
    assert not reseal(tmp_path)  # a folder without SHA256SUMS: nothing to do

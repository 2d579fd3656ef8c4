"""`uavm predict` and `uavm features` on generated clips, as a user runs them."""
import numpy as np
import pytest

from uavm import MediaError, Pipeline, load_bundle

from .conftest import json_lines, run_cli


@pytest.fixture(scope="module")
def predicted(media_dir, tiny_bundle):
    clips = [media_dir / "av.mp4", media_dir / "audio_only.wav", media_dir / "silent_video.mp4"]
    r = run_cli("predict", *clips, "--bundle", tiny_bundle, "--json", "--attention", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return {p["clip"].rsplit("/", 1)[-1]: p for p in json_lines(r.stdout)}


def test_an_av_clip_gets_audio_video_and_fused_predictions(predicted):
    p = predicted["av.mp4"]
    assert p["audio"] and p["video"] and p["fused"]
    np.testing.assert_allclose(p["fused"]["logits"], (np.array(p["audio"]["logits"]) + np.array(p["video"]["logits"])) / 2,
                               rtol=1e-5, atol=1e-6)


def test_an_audio_only_file_gets_an_audio_prediction_only(predicted):
    p = predicted["audio_only.wav"]
    assert p["video"] is None and p["audio"] is not None
    assert p["fused"]["logits"] == p["audio"]["logits"]
    assert "no video stream" in p["missing"]["video"]


def test_a_video_without_audio_gets_a_video_prediction_only(predicted):
    p = predicted["silent_video.mp4"]
    assert p["audio"] is None and p["video"] is not None
    assert p["fused"]["logits"] == p["video"]["logits"]


def test_json_schema(predicted, tiny_bundle):
    n_layers = load_bundle(tiny_bundle).model.cfg.n_layers
    p = predicted["av.mp4"]
    assert {"clip", "audio", "video", "fused", "attention"} <= set(p)
    for m in ("audio", "video", "fused"):
        assert set(p[m]) == {"logits", "top", "ood"} and len(p[m]["logits"]) == 5
        assert p[m]["ood"] is None  # a bundle without familiarity statistics says so
        assert len(p[m]["top"]) == 5 and {"label", "score"} <= set(p[m]["top"][0])
        scores = [t["score"] for t in p[m]["top"]]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4  # softmax over 5 classes
    a = np.array(p["attention"]["audio"])
    assert a.shape == (n_layers, 4, 30, 30)
    np.testing.assert_allclose(a.sum(-1), 1, atol=1e-5)
    assert np.array(predicted["audio_only.wav"]["attention"]["audio"]).shape == (n_layers, 4, 30, 30)
    assert "video" not in predicted["audio_only.wav"]["attention"]


def test_turning_a_modality_off_equals_a_file_without_it(media_dir, tiny_bundle, predicted):
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--json", "--no-video", "--top-k", "2")
    assert r.returncode == 0, r.stderr
    (p,) = json_lines(r.stdout)
    assert p["video"] is None and p["missing"]["video"] == "turned off"
    np.testing.assert_allclose(p["audio"]["logits"], predicted["av.mp4"]["audio"]["logits"], rtol=1e-6)
    assert len(p["fused"]["top"]) == 2


def test_both_modalities_off_is_a_clear_error(media_dir, tiny_bundle):
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--no-audio", "--no-video")
    assert r.returncode == 1 and "nothing left to predict from" in r.stderr


def test_a_bad_clip_fails_alone_and_the_others_are_still_predicted(media_dir, tiny_bundle, tmp_path):
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    r = run_cli("predict", tmp_path / "junk.mp4", tmp_path / "missing.mp4", tmp_path / "empty.mp4",
                media_dir / "av.mp4", "--bundle", tiny_bundle, "--json")
    assert r.returncode == 1
    out = json_lines(r.stdout)
    assert [("error" in o) for o in out] == [True, True, True, False]
    assert "not a readable audio or video file" in out[0]["error"]
    assert "no such file" in out[1]["error"] and "empty" in out[2]["error"]
    assert len(r.stderr.strip().splitlines()) == 3


def test_start_offset_analyses_a_later_window(media_dir, tiny_bundle):
    pipe = Pipeline(load_bundle(tiny_bundle), "cpu")
    f0 = pipe.features(media_dir / "long.mp4", start=0)
    f12 = pipe.features(media_dir / "long.mp4", start=12)
    assert f0.video.shape == f12.video.shape == (30, 64)
    assert not np.allclose(f0.video, f12.video)
    # the tail window is shorter than 10 s: fewer frames, padded later by the model input
    f20 = pipe.features(media_dir / "long.mp4", start=20)
    assert f20.video.shape[0] == 15
    with pytest.raises(MediaError, match="past the end"):
        pipe.features(media_dir / "long.mp4", start=30)


def test_features_written_by_the_cli_give_the_same_prediction(media_dir, tiny_bundle, tmp_path, predicted):
    r = run_cli("features", media_dir / "av.mp4", media_dir / "audio_only.wav", "--bundle", tiny_bundle, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio_only.audio.npy", "audio_only.video.npy",
                                                          "av.audio.npy", "av.video.npy"]
    a = np.load(tmp_path / "av.audio.npy")
    assert a.shape == (30, 64) and a.dtype == np.float16
    # a missing stream is stored as it is fed to the model (no steps: all padding) and read back as missing
    assert np.load(tmp_path / "audio_only.video.npy").shape == (0, 64)
    r = run_cli("predict", "--audio-features", tmp_path / "audio_only.audio.npy", "--video-features",
                tmp_path / "audio_only.video.npy", "--bundle", tiny_bundle, "--json")
    (p,) = json_lines(r.stdout)
    assert p["video"] is None and "empty" in p["missing"]["video"]
    np.testing.assert_allclose(p["fused"]["logits"], predicted["audio_only.wav"]["fused"]["logits"], rtol=1e-5,
                               atol=1e-6)
    r = run_cli("predict", "--audio-features", tmp_path / "av.audio.npy", "--video-features", tmp_path / "av.video.npy",
                "--bundle", tiny_bundle, "--json")
    assert r.returncode == 0, r.stderr
    (p,) = json_lines(r.stdout)
    np.testing.assert_allclose(p["fused"]["logits"], predicted["av.mp4"]["fused"]["logits"], rtol=1e-5, atol=1e-6)
    r = run_cli("predict", "--video-features", tmp_path / "av.video.npy", "--bundle", tiny_bundle, "--json")
    (p,) = json_lines(r.stdout)
    assert p["audio"] is None and p["video"]["logits"] == p["fused"]["logits"]


@pytest.mark.parametrize("shape,msg", [((30, 63), "shape \\(T, 64\\)"), ((30,), "shape"), (None, "not a .npy")])
def test_bad_feature_files_are_refused(tmp_path, tiny_bundle, shape, msg):
    f = tmp_path / "a.npy"
    if shape is None:
        f.write_text("hello")
    else:
        np.save(f, np.zeros(shape, np.float32))
    r = run_cli("predict", "--audio-features", f, "--bundle", tiny_bundle)
    assert r.returncode == 1
    import re

    assert re.search(msg, r.stderr), r.stderr


def test_no_default_bundle_and_a_bad_bundle_path_say_so(tmp_path, media_dir):
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tmp_path)
    assert r.returncode == 1 and "not a uavm bundle" in r.stderr


def test_a_folder_without_media_is_reported_not_skipped(tmp_path, tiny_bundle):
    (tmp_path / "x.mp4").mkdir()
    r = run_cli("predict", tmp_path / "x.mp4", "--bundle", tiny_bundle, "--json")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "a folder with no audio or video files in it (looked for .aac" in r.stderr
    (o,) = json_lines(r.stdout)
    assert o["clip"] == str(tmp_path / "x.mp4") and "no audio or video files" in o["error"]


def test_fifos_and_devices_are_refused_without_being_opened(tmp_path, tiny_bundle):
    import os

    os.mkfifo(tmp_path / "fifo.mp4")  # opening it would block forever
    r = run_cli("predict", tmp_path / "fifo.mp4", "/dev/zero", "--bundle", tiny_bundle, "--json")
    assert r.returncode == 1
    assert [o["error"].split(": ", 1)[1] for o in json_lines(r.stdout)] == [
        "not a regular file (a FIFO)", "not a regular file (a character device)"]


def test_damaged_weights_fail_that_clip_with_valid_json(tmp_path, tiny_bundle, media_dir):
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_bundle, tmp_path / "nan")
    sd = load_file(tmp_path / "nan" / "model.safetensors")
    sd["shared.head.1.bias"] = torch.full_like(sd["shared.head.1.bias"], float("nan"))
    save_file(sd, tmp_path / "nan" / "model.safetensors")
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tmp_path / "nan", "--json")
    assert r.returncode == 1
    (o,) = [json.loads(line) for line in r.stdout.splitlines()]  # strict JSON: no NaN anywhere
    assert "non-finite" in o["error"] and "NaN" not in r.stdout.replace("NaN or infinity", "")


def test_an_audio_stream_without_samples_counts_as_missing(tmp_path, tiny_bundle):
    from uavm.media import write_media

    frames = np.zeros((30, 64, 96, 3), np.uint8)
    frames[:, 10:30, 10:40] = 200
    write_media(tmp_path / "mute.mp4", frames, 10, np.zeros(0, np.float32))
    r = run_cli("predict", tmp_path / "mute.mp4", "--bundle", tiny_bundle, "--json")
    (o,) = json_lines(r.stdout)
    assert r.returncode == 0 and o["audio"] is None and o["video"] is not None
    assert "audio" in o["missing"] and "turned off" not in o["missing"]["audio"]


# -- the error boundary: bad input is one line; a bug says so, with its traceback under --debug
def test_a_bug_is_reported_as_internal_with_the_traceback_under_debug(monkeypatch, media_dir, tiny_bundle):
    from uavm.cli import clips

    def boom(a):
        raise KeyError("a shape bug")

    monkeypatch.setattr(clips, "predict", boom)
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle)
    assert r.returncode == 70
    assert r.stderr.strip().splitlines() == [
        "uavm: internal error (KeyError: 'a shape bug'); run with `uavm --debug ...` for the traceback"]
    with pytest.raises(KeyError, match="a shape bug"):
        from uavm.cli import main

        main(["--debug", "predict", str(media_dir / "av.mp4"), "--bundle", str(tiny_bundle)])


def test_an_error_without_a_message_still_gets_one_line(monkeypatch, tiny_bundle, media_dir):
    from uavm.cli import clips
    from uavm.errors import UAVMError

    monkeypatch.setattr(clips, "predict", lambda a: (_ for _ in ()).throw(UAVMError("")))
    r = run_cli("predict", media_dir / "av.mp4")
    assert r.returncode == 1 and r.stderr.strip() == "uavm: UAVMError"


@pytest.mark.slow  # a fresh interpreter: seconds of imports
def test_a_script_on_standard_input_decodes_clips(media_dir, tiny_bundle):
    import subprocess
    import sys

    script = (f"import uavm\npipe = uavm.Pipeline(uavm.load_bundle({str(tiny_bundle)!r}), 'cpu')\n"
              f"print(pipe.predict({str(media_dir / 'av.mp4')!r}).top('fused', 1)[0]['label'])\n")
    r = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().startswith("class "), r.stderr


@pytest.mark.slow  # a fresh interpreter: seconds of imports
def test_the_module_entry_point_runs_as_a_user_runs_it(media_dir, tiny_bundle):
    r = run_cli("predict", media_dir / "av.mp4", "--bundle", tiny_bundle, "--json", subprocess_=True)
    assert r.returncode == 0 and json_lines(r.stdout)[0]["fused"] is not None

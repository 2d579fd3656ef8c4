"""One bundle format: save, load, and clear refusals of damaged bundles."""
import json
import shutil

import pytest
import torch

from uavm import BundleError, load_bundle, random_bundle


def test_a_saved_bundle_loads_to_the_same_model(tiny_bundle):
    a, b = load_bundle(tiny_bundle), load_bundle(tiny_bundle)
    x = torch.nn.functional.normalize(torch.randn(1, 30, 64), dim=-1)
    torch.testing.assert_close(a.model(x, x).fused, b.model(x, x).fused)
    assert set(a.extractors) == {"audio", "video"} and len(a.labels) == 5


def test_extractor_weights_can_be_shared_between_bundles(tmp_path, tiny_bundle):
    shutil.copytree(tiny_bundle, tmp_path / "one")
    shutil.copytree(tiny_bundle, tmp_path / "two")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "config.json").write_text(json.dumps({"format": "uavm-extractors"}))  # an extractor set
    shutil.move(tmp_path / "two" / "audio_extractor.safetensors", tmp_path / "shared" / "audio.safetensors")
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    cfg["audio_extractor"]["weights"] = "../shared/audio.safetensors"
    (tmp_path / "two" / "config.json").write_text(json.dumps(cfg))
    a, b = load_bundle(tmp_path / "one"), load_bundle(tmp_path / "two")
    for p, q in zip(a.extractors["audio"].parameters(), b.extractors["audio"].parameters()):
        assert torch.equal(p, q)


def _damaged(tmp_path, tiny_bundle, edit):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    edit(d)
    with pytest.raises(BundleError) as e:
        load_bundle(d)
    return str(e.value)


def test_a_missing_weight_file_is_named(tmp_path, tiny_bundle):
    assert "missing weight file model.safetensors" in _damaged(tmp_path, tiny_bundle, lambda d: (d / "model.safetensors").unlink())


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, tiny_bundle):
    def edit(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["model"]["num_classes"] = 6
        (d / "config.json").write_text(json.dumps(cfg))
    assert "shape" in _damaged(tmp_path, tiny_bundle, edit)


def test_a_config_that_is_not_json_is_refused(tmp_path, tiny_bundle):
    assert "not valid JSON" in _damaged(tmp_path, tiny_bundle, lambda d: (d / "config.json").write_text("{"))


def test_an_absolute_weight_path_is_refused(tmp_path, tiny_bundle):
    def edit(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["weights"] = "/etc/passwd"
        (d / "config.json").write_text(json.dumps(cfg))
    assert "relative" in _damaged(tmp_path, tiny_bundle, edit)


def test_label_count_must_match_the_classes(tmp_path, tiny_bundle):
    def edit(d):
        lines = (d / "labels.csv").read_text().splitlines()
        (d / "labels.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert "4 labels for a model with 5 classes" in _damaged(tmp_path, tiny_bundle, edit)


def test_every_model_kind_round_trips(tmp_path):
    for kind in ("unified", "independent", "cross_modal"):
        b = load_bundle(random_bundle(tmp_path / kind, kind=kind))
        assert b.model.cfg.kind == kind


# -- a bundle is data, never instructions: every field checked, one line each -------------
def _edit_config(edit):
    def apply(d):
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    return apply


@pytest.mark.parametrize("edit,msg", [
    (lambda c: c["audio_extractor"]["kwargs"].update(checkpoint_path="/etc/passwd"), "refused: checkpoint_path"),
    (lambda c: c["audio_extractor"]["kwargs"].update(pretrained_cfg_overlay={"file": "x"}), "refused: pretrained_cfg"),
    (lambda c: c["video_extractor"].update(arch="resnet50"), "ConvNeXt"),
    (lambda c: c["video_extractor"].update(pretrained=True), "unknown keys"),
    (lambda c: c["video_extractor"]["kwargs"].update(depths=[1, 1, 1]), "depths must be a list of 4"),
    (lambda c: c["model"].update(num_heads=0), "num_heads must be a whole number from 1"),
    (lambda c: c["model"].update(embed_dim="64"), "embed_dim must be a whole number"),
    (lambda c: c["model"].update(mlp_ratio=float("nan")), "mlp_ratio must be a finite number"),
    (lambda c: c["preprocessing"]["audio"].update(sample_rate=0), "sample_rate must be a whole number from 1000"),
    (lambda c: c["preprocessing"]["video"].update(std=[0.2, 0, 0.2]), "std must be a finite number"),
    (lambda c: c["preprocessing"].update(feature_dtype="int8"), "feature_dtype"),
    (lambda c: c.update(weights="../tiny/model.safetensors"), "inside the bundle folder"),
    (lambda c: c.update(labels="../../../etc/passwd"), "inside the bundle folder"),
    (lambda c: c["audio_extractor"].update(weights="../other/audio_extractor.safetensors"), "extractor set beside it"),
    (lambda c: c.update(model=[1, 2]), "a model config is a JSON object"),
])
def test_a_hostile_config_gets_a_one_line_message(tmp_path, tiny_bundle, edit, msg):
    (tmp_path / "other").mkdir()
    shutil.copy(tiny_bundle / "audio_extractor.safetensors", tmp_path / "other")  # a folder, not an extractor set
    got = _damaged(tmp_path, tiny_bundle, _edit_config(edit))
    assert msg in got and "\n" not in got, got


def test_an_enormous_architecture_is_refused_before_anything_is_allocated(tmp_path, tiny_bundle):
    import resource

    def huge(c):
        c["model"].update(embed_dim=16384, shared_dim=16384, n_specific=64, n_shared=64)  # ~ 1.6 TB in float32

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = _damaged(tmp_path, tiny_bundle, _edit_config(huge))
    assert "do not match the config" in got or "shape" in got
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing big was built


def test_a_bundle_made_by_training_elsewhere_carries_its_own_extractors(tmp_path, tiny_bundle):
    from uavm.bundle import load_extractors, save_bundle

    b = load_bundle(tiny_bundle)
    ex, pre = load_extractors(tiny_bundle)
    out = save_bundle(tmp_path / "deep" / "er" / "new", b.model, pre, b.labels, extractors=ex, share_extractors=True)
    cfg = json.loads((out / "config.json").read_text())
    assert not cfg["audio_extractor"]["weights"].startswith("..")  # copied in: it may not point out of itself
    assert set(load_bundle(out).extractors) == {"audio", "video"}

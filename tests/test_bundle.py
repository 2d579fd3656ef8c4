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

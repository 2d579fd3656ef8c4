"""The Algorithm 1 trainer and the released recipe's pieces."""

import numpy as np
import pytest
import torch

from uavm.bundle import Label
from uavm.model import UAVM, ModelConfig
from uavm.train import FeatureSet, average_precision, metrics
from uavm.train.trainer import Recipe, Trainer, sample_weights, smooth_targets

from .conftest import feature_corpus

LABELS = [Label(i, f"c{i}", f"class {i}") for i in range(4)]


@pytest.fixture(scope="module")
def featset(tmp_path_factory):
    return feature_corpus(tmp_path_factory.mktemp("feats")) / "features.json"


def small_model(kind="unified", seed=0):
    torch.manual_seed(seed)
    return UAVM(ModelConfig(kind=kind, num_classes=4, n_specific=1, n_shared=1, embed_dim=16, shared_dim=8,
                            audio_dim=16, video_dim=16))


RECIPE = Recipe(epochs=3, batch_size=8, lr=3e-3, seed=7)


def test_training_is_deterministic_for_a_fixed_seed(featset):
    runs = []
    for _ in range(2):
        m = small_model()
        Trainer(m, FeatureSet(featset, LABELS), RECIPE, log=lambda s: None).fit()
        runs.append(m.state_dict())
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(featset, tmp_path):
    data = FeatureSet(featset, LABELS)
    straight = small_model()
    Trainer(straight, data, RECIPE, log=lambda s: None).fit()
    first = small_model()
    Trainer(first, data, Recipe(**{**RECIPE.__dict__, "epochs": 1}), out=tmp_path, log=lambda s: None).fit()
    resumed = small_model(seed=99)  # different init: everything must come from the checkpoint
    t = Trainer(resumed, data, RECIPE, out=tmp_path, log=lambda s: None)
    t.resume(tmp_path / "checkpoint.pt")
    assert t.epoch == 1
    t.fit()
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_each_step_trains_one_modality_and_the_shared_layers(featset):
    """lambda_MT = 1: every step is an audio step, so the video branch never changes."""
    m = small_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    Trainer(m, FeatureSet(featset, LABELS), Recipe(**{**RECIPE.__dict__, "audio_weight": 1.0}), log=lambda s: None).fit()
    after = m.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in after if not torch.equal(after[k], before[k])}
    assert "specific.audio" in changed and "shared.blocks" in changed
    assert not any(k.startswith("specific.video") for k in changed)


def test_fusion_beats_each_modality_when_each_sees_half_the_story(featset):
    data = FeatureSet(featset, LABELS)
    m = small_model()
    h = Trainer(m, data, Recipe(**{**RECIPE.__dict__, "epochs": 20, "lr_decay": 1.0}), val=data, log=lambda s: None).fit()
    last = h.epochs[-1]
    assert last["fused"]["acc"] == 1.0
    assert last["audio"]["acc"] <= 0.75 and last["video"]["acc"] <= 0.75


def test_the_cross_modal_baseline_trains_on_both_modalities(featset):
    m = small_model("cross_modal")
    h = Trainer(m, FeatureSet(featset, LABELS), Recipe(**{**RECIPE.__dict__, "epochs": 1}),
                val=FeatureSet(featset, LABELS), log=lambda s: None).fit()
    assert h.epochs[0]["audio"] is None and h.epochs[0]["fused"] is not None


def test_label_smoothing_and_mixup_targets_follow_the_release():
    y = np.array([[1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    t = smooth_targets(y, 0.1)
    np.testing.assert_allclose(t[0], [0.9, 0.025, 0.025, 0.025])
    lam = np.array([0.7, 0.5], np.float32)
    t = smooth_targets(y, 0.1, partner=y[::-1], lam=lam)
    np.testing.assert_allclose(t[0], [0.025 + 0.7 * 0.9, 0.025, 0.025 + 0.3 * 0.9, 0.025], rtol=1e-6)


def test_balanced_sampling_weights_rare_classes_up():
    y = np.array([[1, 0]] * 9 + [[0, 1]], np.float32)
    p = sample_weights(y)
    assert abs(p[:9].sum() - p[9]) < 0.01  # both classes (nearly: the +0.01 in the count) equally likely


def test_learning_rate_is_kept_for_one_epoch_then_halved_every_epoch():
    r = Recipe(lr=5e-5)
    assert [r.lr_at(e) for e in (1, 2, 3)] == [5e-5, 2.5e-5, 1.25e-5]


def test_average_precision_and_accuracy_on_hand_computed_cases():
    s = np.array([0.9, 0.8, 0.7, 0.6])
    assert average_precision(s, np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(s, np.array([0, 0, 0, 1])) == pytest.approx(0.25)
    m = metrics(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([[1, 0], [0, 1], [0, 1]], np.float32))
    assert m["acc"] == pytest.approx(2 / 3)


def test_loader_workers_feeding_from_files_train_exactly_as_in_memory(featset):
    """A set too large for memory is read by loader processes ahead of the steps: the same
    draws, the same data, the same weights as the in-memory path."""
    labels = LABELS
    runs = {}
    for name, data, workers in (("memory", FeatureSet(featset, labels), None),
                                ("files, 2 workers", FeatureSet(featset, labels, in_memory=False), 2),
                                ("files, main thread", FeatureSet(featset, labels, in_memory=False), 0)):
        m = small_model()
        h = Trainer(m, data, RECIPE, log=lambda s: None, workers=workers).fit()
        runs[name] = ([e["loss"] for e in h.epochs], m.state_dict())
    assert not FeatureSet(featset, labels, in_memory=False).in_memory
    ref_loss, ref_sd = runs["memory"]
    for name, (loss, sd) in runs.items():
        assert loss == ref_loss, name
        for k in ref_sd:
            assert torch.equal(sd[k], ref_sd[k]), f"{name}: {k}"

"""The model family as the paper defines it (Sec. II-A, Algorithm 1, Table I baselines)."""
import pytest
import torch

from uavm.model import UAVM, ConfigError, ModelConfig, ModelInputError


def feats(b=2, t=30, d=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(b, t, d, generator=g), dim=-1)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return UAVM(ModelConfig()).eval()  # N = Ns = 3, S_dim = 1024, 4 heads, 309 classes


def test_paper_base_attention_is_layers_by_4_heads_by_30_by_30(base):
    out = base(feats(1), feats(1, seed=1))
    for p in (out.audio, out.video):
        assert len(p.attention) == 6
        for a in p.attention:
            assert a.shape == (1, 4, 30, 30)
            torch.testing.assert_close(a.sum(-1), torch.ones(1, 4, 30))


def test_fused_is_the_mean_of_two_separate_single_modality_passes(base):
    a, v = feats(2), feats(2, seed=1)
    with torch.no_grad():
        both = base(a, v)
        only_a, only_v = base(audio=a), base(video=v)
    torch.testing.assert_close(both.fused, (only_a.fused + only_v.fused) / 2)
    torch.testing.assert_close(only_a.fused, only_a.audio.logits)
    assert only_a.video is None and only_v.audio is None


def test_the_shared_layers_and_classifier_serve_both_modalities(base):
    assert base.shared is not None and base.upper is None and base.heads is None
    names = {n.split(".")[0] for n, _ in base.named_parameters()}
    assert names == {"specific", "shared"}


def test_both_modalities_missing_is_an_error(base):
    with pytest.raises(ModelInputError, match="both audio and video are missing"):
        base()


def test_attention_weights_are_the_ones_that_made_the_output(base):
    """Recompute the first block's attention output from the returned weights."""
    x = feats(1)
    with torch.no_grad():
        out = base(audio=x)
        stack = base.specific["audio"]
        h = stack.in_norm(x) + stack.pos_embed  # in_proj is the identity at 1024 -> 1024
        blk = stack.blocks[0]
        _, _, v = blk.attn.qkv(blk.norm1(h)).reshape(1, 30, 3, 4, 256).permute(2, 0, 3, 1, 4)
        y = (out.audio.attention[0] @ v).transpose(1, 2).reshape(1, 30, 1024)
        y = h + blk.attn.proj(y)
        y = y + blk.mlp(blk.norm2(y))
    torch.testing.assert_close(y, out.audio.hidden[0])


def test_no_modality_specific_layers_projects_straight_into_the_shared_stack():
    m = UAVM(ModelConfig(n_specific=0, n_shared=2, embed_dim=64, shared_dim=32, audio_dim=48, video_dim=40,
                         num_classes=5)).eval()
    out = m(feats(1, d=48), feats(1, d=40))
    assert len(out.audio.attention) == 2 and out.audio.attention[0].shape == (1, 4, 30, 30)
    assert out.fused.shape == (1, 5)


def test_no_shared_layers_gives_two_independent_models_with_their_own_classifiers():
    m = UAVM(ModelConfig(kind="independent", n_specific=2, n_shared=0, embed_dim=32, audio_dim=32,
                         video_dim=32, num_classes=5)).eval()
    assert set(m.heads) == {"audio", "video"} and m.shared is None
    out = m(feats(1, d=32), feats(1, d=32))
    assert len(out.video.attention) == 2
    # the video weights cannot influence the audio prediction
    before = m(audio=feats(1, d=32)).fused
    with torch.no_grad():
        for p in m.specific["video"].parameters():
            p.add_(1.0)
    torch.testing.assert_close(m(audio=feats(1, d=32)).fused, before)


def test_modality_independent_upper_layers_are_separate_per_modality():
    m = UAVM(ModelConfig(kind="independent", n_specific=1, n_shared=2, embed_dim=32, shared_dim=16,
                         audio_dim=32, video_dim=32, num_classes=5))
    assert set(m.upper) == {"audio", "video"}
    assert m.upper["audio"].pos_embed is not m.upper["video"].pos_embed


def test_cross_modal_attends_over_concatenated_tokens_and_needs_both():
    m = UAVM(ModelConfig(kind="cross_modal", n_specific=1, n_shared=2, embed_dim=32, shared_dim=16,
                         audio_dim=32, video_dim=32, num_classes=5)).eval()
    out = m(feats(1, d=32), feats(1, d=32))
    assert out.joint.attention[0].shape == (1, 4, 60, 60)
    assert out.audio.logits is None and out.fused.shape == (1, 5)
    with pytest.raises(ModelInputError, match="video is missing"):
        m(audio=feats(1, d=32))


@pytest.mark.parametrize("bad", [dict(kind="nope"), dict(n_shared=-1), dict(shared_dim=30),
                                 dict(kind="cross_modal", n_shared=0)])
def test_impossible_configurations_are_refused(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)

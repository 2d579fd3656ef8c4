"""Checkpoints in the authors' release layout import into bundles that give the numbers
an independent computation gives, written here from ../shared/reference/official-release.md
(torchvision's own ConvNeXt, a functional Transformer, Kaldi fbank, PyAV frames)."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
import torchvision
from torchvision.models.convnext import CNBlockConfig

from uavm import media
from uavm.media import write_media

from .conftest import SHARED, json_lines, run_cli

HEADS = 4


# -- checkpoints in the released layout ---------------------------------------------------
def rand(*shape, scale=0.2, g):
    return torch.randn(*shape, generator=g) * scale


def stack_sd(prefix, depth, in_dim, dim, seq, classes, g):
    sd = {f"{prefix}.in_layernorm.weight": 1 + rand(in_dim, g=g), f"{prefix}.in_layernorm.bias": rand(in_dim, g=g),
          f"{prefix}.in_proj.weight": rand(dim, in_dim, g=g), f"{prefix}.in_proj.bias": rand(dim, g=g),
          f"{prefix}.pos_embed": rand(1, seq, dim, g=g),
          f"{prefix}.mlp_head.0.weight": 1 + rand(dim, g=g), f"{prefix}.mlp_head.0.bias": rand(dim, g=g),
          f"{prefix}.mlp_head.1.weight": rand(classes, dim, g=g), f"{prefix}.mlp_head.1.bias": rand(classes, g=g)}
    for i in range(depth):
        b = f"{prefix}.blocks.{i}"
        sd.update({f"{b}.norm1.weight": 1 + rand(dim, g=g), f"{b}.norm1.bias": rand(dim, g=g),
                   f"{b}.attn.qkv.weight": rand(3 * dim, dim, g=g),
                   f"{b}.attn.proj.weight": rand(dim, dim, g=g), f"{b}.attn.proj.bias": rand(dim, g=g),
                   f"{b}.norm2.weight": 1 + rand(dim, g=g), f"{b}.norm2.bias": rand(dim, g=g),
                   f"{b}.mlp.fc1.weight": rand(4 * dim, dim, g=g), f"{b}.mlp.fc1.bias": rand(4 * dim, g=g),
                   f"{b}.mlp.fc2.weight": rand(dim, 4 * dim, g=g), f"{b}.mlp.fc2.bias": rand(dim, g=g)})
    return sd


def released_transformer(kind, n, ns, feat_dim, embed, s_dim, classes, seed=0):
    """A state dict laid out like the released files (DataParallel 'module.' prefix)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for m in "av":
        if n:
            sd.update(stack_sd(f"{m}_trans", n, feat_dim, embed, 30, classes, g))
        else:
            sd.update({f"{m}_in_proj.0.weight": 1 + rand(feat_dim, g=g), f"{m}_in_proj.0.bias": rand(feat_dim, g=g),
                       f"{m}_in_proj.1.weight": rand(embed, feat_dim, g=g), f"{m}_in_proj.1.bias": rand(embed, g=g)})
    if ns:
        sd.update(stack_sd("s_trans", ns, embed, s_dim, 60 if kind == "cross" else 30, classes, g))
    else:
        for m in "av":
            sd.update({f"{m}_mlp.0.weight": 1 + rand(embed, g=g), f"{m}_mlp.0.bias": rand(embed, g=g),
                       f"{m}_mlp.1.weight": rand(classes, embed, g=g), f"{m}_mlp.1.bias": rand(classes, g=g)})
    return {"module." + k: v for k, v in sd.items()}


# -- the reference computation, from the sheet --------------------------------------------
def ref_stack(sd, p, x, head):
    """in_layernorm (eps 1e-6); in_proj only if widths differ; + pos_embed; pre-norm blocks
    (LN eps 1e-5, qkv without bias, scale head_dim**-0.5, 4 heads, GELU MLP)."""
    x = F.layer_norm(x, x.shape[-1:], sd[f"{p}.in_layernorm.weight"], sd[f"{p}.in_layernorm.bias"], 1e-6)
    dim = sd[f"{p}.pos_embed"].shape[-1]
    if x.shape[-1] != dim:
        x = F.linear(x, sd[f"{p}.in_proj.weight"], sd[f"{p}.in_proj.bias"])
    x = x + sd[f"{p}.pos_embed"]
    i = 0
    while f"{p}.blocks.{i}.norm1.weight" in sd:
        b = f"{p}.blocks.{i}"
        h = F.layer_norm(x, (dim,), sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], 1e-5)
        B, T, C = h.shape
        q, k, v = F.linear(h, sd[f"{b}.attn.qkv.weight"]).reshape(B, T, 3, HEADS, C // HEADS).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // HEADS), -1)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(B, T, C), sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"])
        h = F.layer_norm(x, (dim,), sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], 1e-5)
        h = F.linear(F.gelu(F.linear(h, sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"])), sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
        x = x + h
        i += 1
    if head:
        x = x.mean(1)
        x = F.layer_norm(x, x.shape[-1:], sd[f"{p}.mlp_head.0.weight"], sd[f"{p}.mlp_head.0.bias"], 1e-6)
        x = F.linear(x, sd[f"{p}.mlp_head.1.weight"], sd[f"{p}.mlp_head.1.bias"])
    return x


def ref_prep(feat):
    """Pad with zeros / cut to 30 steps, then L2-normalise each step."""
    x = torch.tensor(feat, dtype=torch.float32)
    x = torch.cat([x, torch.zeros(max(30 - len(x), 0), x.shape[1])])[:30]
    return F.normalize(x, dim=1)[None]


def ref_logits(sd, kind, a, v):
    sd = {k[len("module."):]: val for k, val in sd.items()}

    def specific(m, x):
        if f"{m}_trans.pos_embed" in sd:
            return ref_stack(sd, f"{m}_trans", x, head=False)
        x = F.layer_norm(x, x.shape[-1:], sd[f"{m}_in_proj.0.weight"], sd[f"{m}_in_proj.0.bias"], 1e-6)
        return F.linear(x, sd[f"{m}_in_proj.1.weight"], sd[f"{m}_in_proj.1.bias"])

    xa, xv = specific("a", ref_prep(a)), specific("v", ref_prep(v))
    if kind == "cross":
        return None, None, ref_stack(sd, "s_trans", torch.cat([xa, xv], 1), head=True)[0]
    out = []
    for m, x in (("a", xa), ("v", xv)):
        if "s_trans.pos_embed" in sd:
            out.append(ref_stack(sd, "s_trans", x, head=True)[0])
        else:
            x = x.mean(1)
            x = F.layer_norm(x, x.shape[-1:], sd[f"{m}_mlp.0.weight"], sd[f"{m}_mlp.0.bias"], 1e-6)
            out.append(F.linear(x, sd[f"{m}_mlp.1.weight"], sd[f"{m}_mlp.1.bias"])[0])
    return out[0], out[1], (out[0] + out[1]) / 2


# -- transformer-only imports ------------------------------------------------------------
CASES = {
    "uavm": ("uni", 2, 2, 32, 32, 16),  # S_dim < embed: the shared in_proj is applied
    "independent_di6_ds0": ("uni", 3, 0, 32, 32, 32),
    "cross_modal": ("cross", 2, 2, 32, 32, 32),
    "no_specific_layers": ("uni", 0, 2, 24, 32, 16),
}


@pytest.mark.parametrize("case", CASES)
def test_released_transformer_imports_and_matches_reference(case, tmp_path, rng):
    kind, n, ns, fd, emb, sdim = CASES[case]
    sd = released_transformer(kind, n, ns, fd, emb, sdim, classes=7)
    torch.save(sd, tmp_path / "model.pth")
    r = run_cli("import-official", "--model", tmp_path / "model.pth", "--dataset", "vggsound", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    a = rng.standard_normal((30, fd)).astype(np.float16)  # as the authors released features
    v = rng.standard_normal((21, fd)).astype(np.float16)  # shorter: zero-padded to 30
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "v.npy", v)
    r = run_cli("predict", "--audio-features", tmp_path / "a.npy", "--video-features", tmp_path / "v.npy",
                "--bundle", tmp_path / "b", "--json", "--attention")
    assert r.returncode == 0, r.stderr
    (out,) = json_lines(r.stdout)
    ra, rv, rf = ref_logits(sd, kind, a, v)
    np.testing.assert_allclose(out["fused"]["logits"], rf.numpy(), rtol=1e-4, atol=1e-4)
    if kind == "cross":
        assert out["audio"] is None and out["video"] is None
    else:
        np.testing.assert_allclose(out["audio"]["logits"], ra.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["video"]["logits"], rv.numpy(), rtol=1e-4, atol=1e-4)
        assert len(out["attention"]["audio"]) == n + ns


def test_import_infers_the_architecture_from_the_file(tmp_path):
    import json

    torch.save(released_transformer("uni", 2, 3, 32, 32, 16, classes=9), tmp_path / "m.pth")
    run_cli("import-official", "--model", tmp_path / "m.pth", "--dataset", "audioset", "--out", tmp_path / "b", check=True)
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    m = cfg["model"]
    assert (m["kind"], m["n_specific"], m["n_shared"], m["shared_dim"], m["num_classes"]) == ("unified", 2, 3, 16, 9)
    assert cfg["task"]["loss"] == "bce" and cfg["preprocessing"]["audio"]["target_length"] == 1000
    # exactly the keys the released code never applies are reported as unused
    unused = set(cfg["provenance"]["unused_released_keys"])
    assert unused == {f"module.{m}_trans.{p}.{w}" for m in "av" for p in ("mlp_head.0", "mlp_head.1", "in_proj")
                      for w in ("weight", "bias")}


# -- refusals ----------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    evil = _Evil()
    evil.path = tmp_path / "pwned"
    torch.save({"module.a_trans.pos_embed": torch.zeros(1), "x": evil}, tmp_path / "evil.pth")
    r = run_cli("import-official", "--model", tmp_path / "evil.pth", "--out", tmp_path / "b")
    assert r.returncode != 0
    assert "refused" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()


def test_wrong_shapes_are_refused_naming_the_key(tmp_path):
    sd = released_transformer("uni", 2, 2, 32, 32, 16, classes=7)
    sd["module.s_trans.blocks.1.mlp.fc1.weight"] = torch.zeros(100, 16)
    torch.save(sd, tmp_path / "m.pth")
    r = run_cli("import-official", "--model", tmp_path / "m.pth", "--dataset", "vggsound", "--out", tmp_path / "b")
    assert r.returncode == 1
    assert "s_trans.blocks.1.mlp.fc1.weight" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_keys_are_refused(tmp_path):
    sd = released_transformer("uni", 2, 2, 32, 32, 16, classes=7)
    del sd["module.v_trans.blocks.1.norm2.bias"]
    torch.save(sd, tmp_path / "m.pth")
    r = run_cli("import-official", "--model", tmp_path / "m.pth", "--dataset", "vggsound", "--out", tmp_path / "b")
    assert r.returncode == 1 and "norm2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_foreign_files_are_refused(tmp_path, content):
    p = tmp_path / "x.pth"
    if content is None:
        torch.save(torchvision.models.convnext.ConvNeXt([CNBlockConfig(8, None, 2)]).state_dict(), p)
    else:
        p.write_bytes(content)
    r = run_cli("import-official", "--model", p, "--out", tmp_path / "b")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "b" / "config.json").exists()


# -- the whole chain: clip -> features -> logits -----------------------------------------
TINY_CONVNEXT = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 48, 1), CNBlockConfig(48, 64, 2), CNBlockConfig(64, None, 1)]


def torchvision_convnext(in_chans, classes, seed):
    torch.manual_seed(seed)
    net = torchvision.models.convnext.ConvNeXt(TINY_CONVNEXT, num_classes=classes).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "layer_scale" in name:  # far from the 1e-6 init, so every block matters
                p.copy_(0.5 + 0.2 * torch.randn_like(p))
        if in_chans == 1:  # the released audio stem: the RGB stem summed over channels
            conv = net.features[0][0]
            one = torch.nn.Conv2d(1, conv.out_channels, 4, 4)
            one.weight.copy_(conv.weight.sum(1, keepdim=True))
            one.bias.copy_(conv.bias)
            net.features[0][0] = one
    return net


def ref_audio_features(net, wav):
    w = torch.tensor(wav)[None]
    fb = kaldi.fbank(w - w.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
                     window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    fb = torch.cat([fb, torch.zeros(max(990 - len(fb), 0), 128)])[:990]
    fb = (fb + 5.081) / 4.4849
    with torch.no_grad():
        f = net.features(fb.t()[None, None])  # (1, C, 4, T)
    return f.mean(2)[0].t().half().float().numpy()


def ref_frames(path):
    """The authors' own pipeline: ffmpeg's fps=3 filter, then scale (shorter side 224,
    FFmpeg's default bicubic scaler), then rgb24; run through PyAV's filter graph."""
    import av

    def drain(g, out):
        while True:
            try:
                out.append(g.pull().to_ndarray())
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        w, h = s.codec_context.width, s.codec_context.height
        size = (224, int(h * 224 / w)) if w <= h else (int(w * 224 / h), 224)
        g = av.filter.Graph()
        chain = [g.add_buffer(template=s), g.add("fps", "3"), g.add("scale", f"{size[0]}:{size[1]}"),
                 g.add("format", "rgb24"), g.add("buffersink")]
        for x, y in zip(chain, chain[1:]):
            x.link_to(y)
        g.configure()
        out = []
        for f in c.decode(s):
            g.push(f)
            drain(g, out)
        g.push(None)
        drain(g, out)
    return np.stack(out[:30])


def ref_video_features(net, frames):
    x = torch.tensor(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        return net.features(x).mean((2, 3)).half().float().numpy()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    anet, vnet = torchvision_convnext(1, 7, 1), torchvision_convnext(3, 1000, 2)
    torch.save({"module.model.0." + k: v for k, v in anet.features.state_dict().items()}
               | {"module.model.2." + k: v for k, v in anet.classifier.state_dict().items()}, d / "audio.pth")
    torch.save(vnet.state_dict(), d / "video.pth")  # torchvision's own layout, as its ImageNet file
    sd = released_transformer("uni", 2, 2, 64, 64, 32, classes=7, seed=3)
    torch.save(sd, d / "model.pth")
    labels = d / "labels.csv"
    labels.write_text("index,mid,display_name\n" + "".join(f"{i},vgg_{i},sound_ number {i}\n" for i in range(7)))
    run_cli("import-official", "--model", d / "model.pth", "--audio-extractor", d / "audio.pth",
            "--video-extractor", d / "video.pth", "--labels", labels, "--dataset", "vggsound", "--out", d / "bundle", check=True)
    return d, anet, vnet, sd


def _clip(path, rng, seconds=10.0):
    t = np.arange(int(seconds * 30))
    frames = np.zeros((len(t), 120, 160, 3), np.uint8)
    for i in t:
        frames[i, :, :] = rng.integers(0, 255, 3)
        frames[i, 20:60, (i * 3) % 120:(i * 3) % 120 + 40] = 255
    wav = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 16000)) / 16000) * (1 + rng.standard_normal(1))
    write_media(path, frames, 30, wav.astype(np.float32), 16000, audio_codec="pcm_s16le")
    return wav.astype(np.float32)


def test_features_from_a_clip_match_torchvision_convnext_on_reference_preprocessing(imported, tmp_path, rng):
    d, anet, vnet, _ = imported
    _clip(tmp_path / "clip.mov", rng)
    run_cli("features", tmp_path / "clip.mov", "--bundle", d / "bundle", "--out", tmp_path / "f", "--precision", "fp32",
            check=True)
    a = np.load(tmp_path / "f" / "clip.audio.npy")
    v = np.load(tmp_path / "f" / "clip.video.npy")
    assert a.dtype == np.float16 and a.shape == (30, 64) and v.shape == (30, 64)
    import av

    with av.open(str(tmp_path / "clip.mov")) as c:  # the stored 16-bit PCM, read back
        wav = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32) / 32768
    np.testing.assert_allclose(a.astype(np.float32), ref_audio_features(anet, wav), rtol=2e-3, atol=2e-3)
    # frames: the same pictures (each frame of the clip has its own colour, so a wrong pick
    # is far off); the two bicubic code paths differ by a fraction of a grey level
    ours = media.load_frames(tmp_path / "clip.mov")
    ref = ref_frames(tmp_path / "clip.mov")
    assert ours.shape == ref.shape == (30, 224, 298, 3)
    per_frame = np.abs(ours.astype(int) - ref).mean(axis=(1, 2, 3))
    assert per_frame.max() < 1.0, per_frame
    rv = ref_video_features(vnet, ref)
    assert np.abs(v.astype(np.float32) - rv).mean() < 0.01 * np.abs(rv).mean()
    np.testing.assert_allclose(v.astype(np.float32), rv, atol=0.05 * np.abs(rv).max())


def test_logits_from_a_clip_match_the_reference_chain(imported, tmp_path, rng):
    d, anet, vnet, sd = imported
    _clip(tmp_path / "clip.mov", rng)
    r = run_cli("predict", tmp_path / "clip.mov", "--bundle", d / "bundle", "--json", "--top-k", "3", "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    (out,) = json_lines(r.stdout)
    import av

    with av.open(str(tmp_path / "clip.mov")) as c:
        wav = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32) / 32768
    ra, rv, rf = ref_logits(sd, "uni", ref_audio_features(anet, wav), ref_video_features(vnet, ref_frames(tmp_path / "clip.mov")))
    np.testing.assert_allclose(out["audio"]["logits"], ra.numpy(), rtol=1e-3, atol=1e-3)
    # video frames differ from ffmpeg's CLI path by a fraction of a grey level (see above)
    np.testing.assert_allclose(out["video"]["logits"], rv.numpy(), rtol=0.02, atol=0.02)
    np.testing.assert_allclose(out["fused"]["logits"], rf.numpy(), rtol=0.02, atol=0.02)
    assert out["fused"]["top"][0]["index"] == int(rf.argmax())
    assert out["fused"]["top"][0]["label"] == f"sound, number {int(rf.argmax())}"  # VGGSound '_' shown as ','


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "reference", "labels")),
                    reason="needs the authors' VGGSound and AudioSet label lists (they are not in the repository): "
                           "the project's reference folder, shared/reference/labels, placed beside this checkout")
def test_real_label_lists_import_with_their_class_counts(tmp_path):
    from uavm.official import official_labels

    vgg = official_labels(os.path.join(SHARED, "reference/labels/vggsound_class_labels_indices.csv"), "vggsound")
    aus = official_labels(os.path.join(SHARED, "reference/labels/audioset_class_labels_indices.csv"), "audioset")
    assert len(vgg) == 309 and len(aus) == 527
    assert vgg[2].name == "bird chirping, tweeting" and aus[0].name == "Speech"

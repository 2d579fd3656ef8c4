"""Models by name: the authors' models fetched from a mirror (loopback HTTP, file://, a
folder) in the release's own layout, converted once into the cache, checked by hash,
used offline afterwards; Hugging Face Hub bundles from a pre-filled Hub cache, and push."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import uavm
from uavm import hub, official
from uavm.bundle import load_bundle

from .conftest import AppServer, json_lines, run_cli
from .test_download import Mirror
from .test_official import released_transformer, torchvision_convnext

CLASSES = 309  # VGGSound's
VIDEO = "convnext_base-6075fbad.pth"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The files of vggsound-uavm (and vggsound-independent) under their release file names:
    random weights in the release's key layout, small widths, 309 classes."""
    d = tmp_path_factory.mktemp("release")
    anet, vnet = torchvision_convnext(1, CLASSES, 1), torchvision_convnext(3, 1000, 2)
    torch.save({"module.model.0." + k: v for k, v in anet.features.state_dict().items()}
               | {"module.model.2." + k: v for k, v in anet.classifier.state_dict().items()}, d / "vgg_audio_feat.pth")
    torch.save(vnet.state_dict(), d / VIDEO)  # torchvision's own layout, as its ImageNet file
    torch.save(released_transformer("uni", 1, 1, 64, 64, 32, classes=CLASSES, seed=3), d / "vggsound-uavm.pth")
    torch.save(released_transformer("uni", 2, 0, 64, 64, 64, classes=CLASSES, seed=4), d / "vggsound-independent.pth")
    (d / "class_labels_indices_vgg.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},vgg_{i},sound_ number {i}\n" for i in range(CLASSES)))
    return d


def _isolate(mp, release, cache):
    """Its own cache, no mirror or default bundle from outside, and the pin of the video
    extractor's name moved to the stand-in file (the real file's hash starts with 6075fbad;
    this small one's cannot): the pin is still checked, against the stand-in's own prefix."""
    mp.setenv("UAVM_CACHE", str(cache))
    for v in ("UAVM_MIRROR", "UAVM_BUNDLE"):
        mp.delenv(v, raising=False)
    mp.setitem(official.PINNED_SHA256, VIDEO, hashlib.sha256((release / VIDEO).read_bytes()).hexdigest()[:8])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch, release):
    _isolate(monkeypatch, release, tmp_path / "cache")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def first_use(release, tmp_path_factory):
    """A cache as the first use of vggsound-uavm (from a folder mirror) leaves it."""
    d = tmp_path_factory.mktemp("first-use")
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, release, d)
        hub.resolve("vggsound-uavm", mirror=str(release), log=lambda m: None)
    return d


@pytest.fixture
def converted(first_use, cache):
    """A copy of that cache: vggsound-uavm converted, its folder."""
    shutil.copytree(first_use, cache)
    return cache / "bundles" / "vggsound-uavm"


@pytest.fixture
def features(tmp_path):
    rng = np.random.default_rng(0)
    for m in ("a", "v"):
        np.save(tmp_path / f"{m}.npy", rng.standard_normal((30, 64)).astype(np.float16))
    return ["--audio-features", tmp_path / "a.npy", "--video-features", tmp_path / "v.npy"]


def predict(*args):
    r = run_cli("predict", *args, "--json")
    assert r.returncode == 0, r.stderr
    (out,) = json_lines(r.stdout)
    return out


def flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- released models from a mirror ---------------------------------------------------------
def test_a_name_is_fetched_from_a_mirror_and_converted_as_import_official_converts_it(release, cache, features, tmp_path):
    got = predict(*features, "--model", "vggsound-uavm", "--mirror", release)
    run_cli("import-official", "--model", release / "vggsound-uavm.pth", "--audio-extractor", release / "vgg_audio_feat.pth",
            "--video-extractor", release / VIDEO, "--labels", release / "class_labels_indices_vgg.csv",
            "--out", tmp_path / "by-hand", check=True)
    want = predict(*features, "--bundle", tmp_path / "by-hand")
    for m in ("audio", "video", "fused"):
        np.testing.assert_allclose(got[m]["logits"], want[m]["logits"], rtol=1e-6, atol=1e-6)
    assert got["fused"]["top"] == want["fused"]["top"] and "," in got["fused"]["top"][0]["label"]


def test_the_first_use_fetches_only_the_four_files_the_model_needs(converted, cache):
    assert sorted(p.name for p in cache.iterdir() if p.is_file() and not p.name.startswith(".")) == sorted(
        f + s for f in ("vggsound-uavm.pth", "vgg_audio_feat.pth", VIDEO, "class_labels_indices_vgg.csv")
        for s in ("", ".sha256"))


def test_each_download_has_its_sha256_recorded_beside_it(converted, cache):
    for f in ("vggsound-uavm.pth", "vgg_audio_feat.pth", VIDEO, "class_labels_indices_vgg.csv"):
        digest = hashlib.sha256((cache / f).read_bytes()).hexdigest()
        assert (cache / (f + ".sha256")).read_text() == f"{digest}  {f}\n"


def test_models_of_a_dataset_share_one_converted_extractor_set(release, converted):
    a = hub.resolve("vggsound-uavm", log=lambda m: None)
    b = hub.resolve("vggsound-independent", mirror=str(release), log=lambda m: None)
    for folder in (a, b):
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["audio_extractor"]["weights"] == "../extractors-vggsound/audio.safetensors"
        assert not list(folder.glob("*extractor*"))
    assert load_bundle(b).model.cfg.kind == "independent" and load_bundle(a).model.cfg.kind == "unified"


def test_later_uses_are_offline(release, cache, features, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(release, mirror)
    first = predict(*features, "--model", "vggsound-uavm", "--mirror", mirror)
    shutil.rmtree(mirror)
    again = predict(*features, "--model", "vggsound-uavm", "--mirror", mirror)
    assert again == first


def test_a_damaged_converted_model_is_detected_by_its_hash(converted, features):
    folder = converted
    flip_a_byte(folder / "model.safetensors")
    r = run_cli("predict", *features, "--model", "vggsound-uavm", "--json")
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert str(folder / "model.safetensors") in line and "SHA-256" in line and "delete it" in line


def test_a_damaged_shared_extractor_is_detected_by_its_hash(converted, cache):
    flip_a_byte(cache / "bundles" / "extractors-vggsound" / "video.safetensors")
    with pytest.raises(hub.IntegrityError, match="video.safetensors: SHA-256 differs"):
        hub.resolve("vggsound-uavm", log=lambda m: None)


def test_a_damaged_download_is_detected_before_it_is_converted(release, cache, features):
    run_cli("download", "vggsound-uavm", "--mirror", release, check=True)
    flip_a_byte(cache / "vggsound-uavm.pth")
    r = run_cli("predict", *features, "--model", "vggsound-uavm", "--json")
    assert r.returncode == 1
    assert f"{cache / 'vggsound-uavm.pth'}: SHA-256" in r.stderr.strip().splitlines()[-1]
    assert not (cache / "bundles" / "vggsound-uavm").exists()


def test_a_file_of_the_wrong_model_under_a_name_leaves_no_bundle(release, cache, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(release, mirror)
    shutil.copy(release / "vggsound-independent.pth", mirror / "vggsound-uavm.pth")
    with pytest.raises(official.CheckpointError, match="holds a independent model, vggsound-uavm is unified"):
        hub.resolve("vggsound-uavm", mirror=str(mirror), log=lambda m: None)
    assert sorted(p.name for p in (cache / "bundles").iterdir()) == ["extractors-vggsound"]


def test_a_half_converted_bundle_of_a_killed_run_is_never_used(release, cache):
    stale = cache / "bundles" / ".vggsound-uavm.999999.tmp"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    folder = hub.resolve("vggsound-uavm", mirror=str(release), log=lambda m: None)
    assert folder == cache / "bundles" / "vggsound-uavm" and not stale.exists()


def test_uavm_models_lists_every_name_and_what_is_cached(release, first_use, cache):
    before = {r["name"]: r for r in json_lines(run_cli("models", "--json", check=True).stdout)}
    assert set(before) == set(hub.names()) and set(official.MODELS) <= set(before)
    assert before["vggsound-uavm"]["status"] == "not downloaded"
    assert before["vggsound-uavm"]["download_bytes"] is None and "unknown" in before["vggsound-uavm"]["size"]
    assert before["demo-uavm"]["status"] == "embedded"
    shutil.copytree(first_use, cache, dirs_exist_ok=True)
    after = {r["name"]: r for r in json_lines(run_cli("models", "--json", check=True).stdout)}
    row = after["vggsound-uavm"]
    assert row["status"] == "converted" and row["download_bytes"] == sum(
        (release / f).stat().st_size for f in ("vggsound-uavm.pth", "vgg_audio_feat.pth", VIDEO, "class_labels_indices_vgg.csv"))
    assert after["vggsound-independent"]["status"] == "3 of 4 files downloaded"
    table = run_cli("models", check=True).stdout
    assert any(line.split()[:2] == ["vggsound-uavm", "converted"] for line in table.splitlines())


def test_uavm_load_takes_a_name_or_a_folder(converted):
    b = uavm.load("vggsound-uavm")
    assert len(b.labels) == CLASSES and b.path == converted
    assert uavm.load(converted).config == b.config
    with pytest.raises(uavm.UAVMError, match="neither a model name"):
        uavm.load("no-such-model")


def test_uavm_bundle_may_name_a_model(converted, monkeypatch):
    monkeypatch.setenv("UAVM_BUNDLE", "vggsound-uavm")
    assert hub.resolve(log=lambda m: None) == converted


def test_the_demo_names_are_the_embedded_bundles_and_need_no_cache(cache):
    for name, folder in uavm.assets.demo_bundles().items():
        assert hub.resolve(name) == folder
    assert not cache.exists()


def test_a_name_and_a_folder_together_are_refused(tiny_bundle):
    r = run_cli("predict", "x.mp4", "--model", "demo-uavm", "--bundle", tiny_bundle)
    assert r.returncode == 1 and "not both" in r.stderr


def test_an_unknown_name_lists_the_known_ones(cache):
    r = run_cli("predict", "x.mp4", "--model", "vggsound-uavn")
    assert r.returncode == 1 and "vggsound-uavm" in r.stderr and "hf-hub:ORG/NAME" in r.stderr


# -- the Hugging Face Hub ------------------------------------------------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(root: Path, repo: str, folder: Path, commit: str = COMMIT) -> None:
    """``folder`` laid out as huggingface_hub lays out a downloaded repository: blobs named
    by content (SHA-256 for LFS files, git's blob SHA-1 for the rest), a snapshot of links
    to them, and refs/main naming the commit."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        blob = (hashlib.sha256(data).hexdigest() if p.suffix == ".safetensors"
                else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        (repo_dir / "blobs" / blob).write_bytes(data)
        link = repo_dir / "snapshots" / commit / p.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo_dir / "blobs" / blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    """huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported: in this
    process they are set on its constants (the subprocess test sets the variables)."""
    constants = pytest.importorskip("huggingface_hub.constants", reason="needs huggingface_hub (gradio installs it): pip install huggingface_hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def test_a_hub_bundle_loads_from_the_hub_cache_offline(tiny_bundle, hf_offline, features, cache):
    fill_hub_cache(hf_offline, "lab/tiny-uavm", tiny_bundle)
    got = predict(*features, "--model", "hf-hub:lab/tiny-uavm")
    assert got == predict(*features, "--bundle", tiny_bundle)
    assert (cache / "hf-hub" / "lab--tiny-uavm" / COMMIT / "model.safetensors").is_file()


def test_a_hub_repository_that_is_not_a_uavm_bundle_is_refused(hf_offline, tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    fill_hub_cache(hf_offline, "lab/bert", tmp_path / "repo")
    with pytest.raises(uavm.UAVMError, match="not a uavm bundle"):
        hub.resolve("hf-hub:lab/bert")


def test_a_hub_bundle_that_points_outside_itself_is_refused(tiny_bundle, hf_offline, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_bundle, repo)
    cfg = json.loads((repo / "config.json").read_text())
    cfg["audio_extractor"]["weights"] = "../extractors/audio.safetensors"
    (repo / "config.json").write_text(json.dumps(cfg))
    fill_hub_cache(hf_offline, "lab/leaky", repo)
    with pytest.raises(uavm.UAVMError, match="refused: the bundle names a file outside itself"):
        hub.resolve("hf-hub:lab/leaky")


def test_a_damaged_blob_in_the_hub_cache_is_detected(tiny_bundle, hf_offline):
    fill_hub_cache(hf_offline, "lab/tiny-uavm", tiny_bundle)
    (blob,) = [p for p in (hf_offline / "models--lab--tiny-uavm" / "blobs").iterdir()
               if p.stat().st_size == (tiny_bundle / "model.safetensors").stat().st_size]
    flip_a_byte(blob)
    with pytest.raises(hub.IntegrityError, match="does not match its name in the Hugging Face cache"):
        hub.resolve("hf-hub:lab/tiny-uavm", log=lambda m: None)


def test_a_hub_model_missing_from_the_cache_offline_is_one_line(hf_offline, cache):
    r = run_cli("predict", "x.mp4", "--model", "hf-hub:lab/absent")
    assert r.returncode == 1
    assert r.stderr.strip() == ("uavm: hf-hub:lab/absent: config.json is not in the Hugging Face cache and "
                                "HF_HUB_OFFLINE is set")


@pytest.mark.parametrize("spec", ["hf-hub:", "hf-hub:noslash", "hf-hub:a/../b", "hf-hub:a/b@", "hf-hub:a/b/c"])
def test_malformed_hub_names_are_refused(spec, cache):
    with pytest.raises(uavm.UAVMError, match="hf-hub:ORG/NAME"):
        hub.resolve(spec)


@pytest.fixture
def uploads(monkeypatch, tmp_path):
    """huggingface_hub's repository calls replaced: what would be uploaded is copied aside."""
    hf = pytest.importorskip("huggingface_hub", reason="needs huggingface_hub (gradio installs it): pip install huggingface_hub")
    seen = {"repos": [], "folders": []}

    def create_repo(self, repo_id, private=None, exist_ok=False, **kw):
        seen["repos"].append((repo_id, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kw):
        dest = tmp_path / "uploaded" / str(len(seen["folders"]))
        shutil.copytree(folder_path, dest)
        seen["folders"].append((repo_id, dest, commit_message))
        return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/1"})()

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
    return seen


@pytest.mark.slow  # a conversion and a push
def test_push_uploads_a_self_contained_copy_of_a_cache_bundle(converted, uploads, features):
    folder = converted
    r = run_cli("push", "vggsound-uavm", "lab/vggsound-uavm", "--private", check=True)
    assert r.stdout.strip() == "https://hub.invalid/lab/vggsound-uavm/commit/1"
    assert uploads["repos"] == [("lab/vggsound-uavm", True, True)]
    ((repo, up, _),) = uploads["folders"]
    assert sorted(p.name for p in up.iterdir()) == ["README.md", "audio_extractor.safetensors", "config.json",
                                                     "labels.csv", "model.safetensors", "video_extractor.safetensors"]
    assert "../" not in (up / "config.json").read_text() and "hf-hub:lab/vggsound-uavm" in (up / "README.md").read_text()
    assert predict(*features, "--bundle", up) == predict(*features, "--bundle", folder)


@pytest.mark.slow  # a conversion, a push and a load
def test_a_pushed_bundle_loads_back_through_the_hub_cache(converted, uploads, hf_offline, features):
    run_cli("push", "vggsound-uavm", "lab/vggsound-uavm", check=True)
    fill_hub_cache(hf_offline, "lab/vggsound-uavm", uploads["folders"][0][1])
    assert predict(*features, "--model", "hf-hub:lab/vggsound-uavm") == predict(*features, "--model", "vggsound-uavm")


def test_push_refuses_a_folder_that_is_not_a_bundle(uploads, tmp_path):
    r = run_cli("push", tmp_path, "lab/x")
    assert r.returncode == 1 and "not a uavm bundle" in r.stderr and uploads["folders"] == []


# -- end to end, as a user runs it -----------------------------------------------------------
@pytest.mark.slow
def test_a_loopback_mirror_serves_the_first_use_and_the_cache_every_later_one(release, cache, media_dir, monkeypatch):
    server = Mirror({p.name: p.read_bytes() for p in release.iterdir()})
    monkeypatch.setenv("UAVM_MIRROR", server.url)
    try:
        first = predict(media_dir / "av.mp4", "--model", "vggsound-uavm")
    finally:
        server.stop()
    assert sorted(n for n, _ in server.requests) == sorted(
        ["vggsound-uavm.pth", "vgg_audio_feat.pth", VIDEO, "class_labels_indices_vgg.csv"])
    assert first["audio"] and first["video"] and len(first["fused"]["logits"]) == CLASSES
    assert predict(media_dir / "av.mp4", "--model", "vggsound-uavm") == first  # the server is gone


@pytest.mark.slow
def test_a_hub_bundle_loads_with_hf_hub_offline_in_the_environment(tiny_bundle, tmp_path, features, cache):
    fill_hub_cache(tmp_path / "hf" / "hub", "lab/tiny-uavm", tiny_bundle)
    r = run_cli("predict", *features, "--model", "hf-hub:lab/tiny-uavm", "--json",
                env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "UAVM_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stdout) == [predict(*features, "--bundle", tiny_bundle)]


@pytest.mark.slow
def test_the_app_serves_a_named_model(converted, cache, media_dir, tmp_path):
    from gradio_client import Client, handle_file

    want = predict(media_dir / "av.mp4", "--model", "vggsound-uavm")
    app = AppServer(tmp_path, "--model", "vggsound-uavm", env={"UAVM_CACHE": str(cache)})
    try:
        got = Client(app.url, verbose=False).predict(handle_file(str(media_dir / "av.mp4")), api_name="/predict",
                                                     model="vggsound-uavm")
    finally:
        app.stop()
    np.testing.assert_allclose(got["fused"]["logits"], want["fused"]["logits"], rtol=1e-5, atol=1e-5)
    assert got["fused"]["top"][0]["label"] == want["fused"]["top"][0]["label"]


@pytest.mark.slow
def test_the_app_lists_the_demo_models_the_converted_ones_and_those_given(converted, tiny_bundle, release):
    from uavm.app import find_bundles

    found = find_bundles([tiny_bundle], ["vggsound-independent"], mirror=str(release))
    assert list(found) == [*uavm.assets.demo_bundles(), "vggsound-uavm", tiny_bundle.name, "vggsound-independent"]
    assert found["vggsound-uavm"] == converted

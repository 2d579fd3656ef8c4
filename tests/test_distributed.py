"""`uavm features --manifest` and `uavm train` under torchrun: 2 CPU processes (gloo) give
what one process gives, and a killed run picks up where it stopped."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from uavm.demo.synth import demo_clip
from uavm.train.data import DataError, extract_features

from .conftest import ROOT, feature_corpus, needs_cuda

pytestmark = pytest.mark.slow

# one thread per process: what torchrun sets, so one process and two compute alike (and fast on 2 cores)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def uavm(*args, procs=1, torchrun=(), background=False):
    """``python -m uavm ARGS``, or the same under torchrun with ``procs`` processes (also one,
    when ``torchrun`` names options)."""
    cmd = [sys.executable, "-m", "uavm", *map(str, args)]
    if procs > 1 or torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               *torchrun, *cmd[1:]]
    if background:  # its own session, so nothing it starts outlives the test
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def process_tree(pid: int) -> list:
    """pid and its descendants, from /proc (torchrun starts each worker in a session of its own)."""
    children = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sigkill(pids: list) -> None:
    """SIGKILL, as a crash or a lost node would; returns once they are gone."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)


def environ(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/environ") as f:
            return f.read().split("\0")
    except OSError:
        return []


def wait_for(cond, proc, what: str, timeout=120):
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.time() > deadline:
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.01)


# -- feature extraction ----------------------------------------------------------------------
N_CLIPS = 12
BROKEN = 5  # the manifest's entry 5 is not a media file


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    data = []
    for i in range(N_CLIPS):
        name = f"clip{i:02d}.mp4"
        if i == BROKEN:
            (d / name).write_text("not a video")
        else:
            demo_clip(d / name, seconds=4, fps=10, size=(96, 128), seed=i)
        data.append({"labels": f"class_{i % 3}", "video": name, "id": i})
    (d / "clips.json").write_text(json.dumps({"data": data}))
    return d / "clips.json"


@pytest.fixture(scope="module")
def one_process(manifest, tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("features-1")
    r = uavm("features", "--manifest", manifest, "--bundle", tiny_bundle, "--out", out, "--device", "cpu")
    assert r.returncode == 1, r.stderr  # 1: the broken clip failed
    return out


def feature_files(out) -> dict:
    """clip stem -> its (audio, video) files, for the clips with both written."""
    stems = {p.name.split(".")[0] for p in out.glob("*.npy") if not p.name.startswith(".")}
    return {s: (out / f"{s}.audio.npy", out / f"{s}.video.npy") for s in sorted(stems)
            if (out / f"{s}.audio.npy").exists() and (out / f"{s}.video.npy").exists()}


def assert_same_features(out, reference):
    assert (out / "features.json").read_text() == (reference / "features.json").read_text()
    files = feature_files(reference)
    assert feature_files(out).keys() == files.keys() and len(files) == N_CLIPS - 1
    for a, v in files.values():
        for f in (a, v):
            np.testing.assert_array_equal(np.load(out / f.name), np.load(f), err_msg=f.name)


def rank_counts(stderr: str) -> dict:
    """Sum of the 'rank r of w: E clips extracted, K already done, F failed' lines."""
    total = {"extracted": 0, "already done": 0, "failed": 0}
    for line in stderr.splitlines():
        if " of 2: " in line:
            for part in line.split(": ", 2)[2].split(", "):
                n, what = part.split(" ", 1)
                total[what.removeprefix("clips ")] += int(n)
    return total


def test_two_processes_extract_each_clip_once_and_write_what_one_process_writes(manifest, tiny_bundle,
                                                                               one_process, tmp_path):
    r = uavm("features", "--manifest", manifest, "--bundle", tiny_bundle, "--out", tmp_path, "--device", "cpu",
             procs=2)
    assert r.returncode != 0, "a failed clip must fail the command"
    assert rank_counts(r.stderr) == {"extracted": N_CLIPS - 1, "already done": 0, "failed": 1}, r.stderr
    report = json.loads((tmp_path / "features.json").read_text())
    assert [d["id"] for d in report["data"]] == [i for i in range(N_CLIPS) if i != BROKEN]  # manifest order
    assert len(report["failed"]) == 1 and report["failed"][0].startswith(f"clip{BROKEN:02d}.mp4: ")
    assert r.stderr.count(f"failed: clip{BROKEN:02d}.mp4") == 1  # printed once, by rank 0
    assert_same_features(tmp_path, one_process)


def test_a_killed_extraction_is_completed_by_a_rerun_without_redoing_finished_clips(manifest, tiny_bundle,
                                                                                  one_process, tmp_path):
    args = ("features", "--manifest", manifest, "--bundle", tiny_bundle, "--out", tmp_path, "--device", "cpu")
    run = uavm(*args, procs=2, background=True)
    wait_for(lambda: len(feature_files(tmp_path)) >= 2, run, "two finished clips")
    sigkill(process_tree(run.pid))
    run.communicate(timeout=60)
    finished = feature_files(tmp_path)
    assert 2 <= len(finished) < N_CLIPS - 1, "the kill was meant to land part way"
    assert not (tmp_path / "features.json").exists()
    stamps = {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for pair in finished.values() for f in pair}

    r = uavm(*args, procs=2)
    counts = rank_counts(r.stderr)
    assert counts == {"extracted": N_CLIPS - 1 - len(finished), "already done": len(finished), "failed": 1}, r.stderr
    assert {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in stamps} == stamps, "finished files were redone"
    assert_same_features(tmp_path, one_process)


@pytest.mark.cuda
@needs_cuda
def test_one_gpu_process_under_torchrun_extracts_what_plain_python_does(manifest, tiny_bundle, tmp_path):
    args = ("features", "--manifest", manifest, "--bundle", tiny_bundle, "--device", "cuda")
    plain = uavm(*args, "--out", tmp_path / "plain")
    run = uavm(*args, "--out", tmp_path / "torchrun", torchrun=("--max-restarts", "0"))
    assert plain.returncode == run.returncode == 1, run.stderr  # 1: the broken clip failed
    assert "a group of 1 process (gloo, cuda)" in run.stderr
    assert_same_features(tmp_path / "torchrun", tmp_path / "plain")


def test_clips_whose_features_would_share_a_file_are_refused(tmp_path):
    (tmp_path / "clips.json").write_text(json.dumps({"data": [
        {"labels": "a", "video": "one/x.mp4"}, {"labels": "a", "video": "two/x.mp4"}]}))
    with pytest.raises(DataError, match="one/x.mp4 and two/x.mp4"):
        extract_features(None, tmp_path / "clips.json", tmp_path / "out")


# -- training --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return feature_corpus(tmp_path_factory.mktemp("feats"))


def train_args(corpus, out):
    """A 20-epoch run with a global batch of 9: two ranks get slices of 5 and 4."""
    return ("train", "--data", corpus / "features.json", "--val", corpus / "features.json", "--labels",
            corpus / "labels.csv", "--out", out, "--dataset", "other", "--n-specific", "1", "--n-shared", "1",
            "--embed-dim", "16", "--shared-dim", "8", "--epochs", "20", "--batch-size", "9",
            "--lr", "3e-3", "--lr-decay", "0.9", "--seed", "7", "--device", "cpu")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """The same run in one process and in two."""
    runs = {}
    for procs in (1, 2):
        out = tmp_path_factory.mktemp(f"run-{procs}")
        r = uavm(*train_args(corpus, out), procs=procs)
        assert r.returncode == 0, r.stderr
        runs[procs] = (out, r.stdout)
    return runs


def provenance(out) -> dict:
    return json.loads((out / "config.json").read_text())["provenance"]


def test_two_processes_train_as_one_does(trained):
    """Same global batch, modality and draws per step; only the order of float sums differs.
    Measured (torch 2.11, CPU, 20 epochs, slices of 5 and 4): per-epoch loss within 2.2e-7,
    every accuracy and mAP identical, weights within 4.4e-5; the bounds below leave ~20x."""
    (one, _), (two, log2) = trained[1], trained[2]
    h1, h2 = provenance(one)["history"], provenance(two)["history"]
    assert len(h1) == len(h2) == 20
    for e1, e2 in zip(h1, h2):
        assert e1["loss"] == pytest.approx(e2["loss"], abs=1e-5), e1["epoch"]
        for m in ("audio", "video", "fused"):
            assert e1[m]["acc"] == pytest.approx(e2[m]["acc"], abs=1e-3), (e1["epoch"], m)
            assert e1[m]["mAP"] == pytest.approx(e2[m]["mAP"], abs=1e-3), (e1["epoch"], m)
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], rtol=0, atol=1e-3, err_msg=k)
    assert log2.count("epoch 1 |") == 1, "only rank 0 logs"


def test_one_process_under_torchrun_joins_a_group_of_one_and_trains_as_plain_python(corpus, trained, device,
                                                                                   tmp_path):
    """What a one-GPU machine runs: the collective calls (nccl there, gloo here) in a group of
    one, without DDP (nothing to average)."""
    def run(out, **kw):
        args = list(train_args(corpus, out))
        args[args.index("--device") + 1] = device
        r = uavm(*args, **kw)
        assert r.returncode == 0, r.stderr
        return r

    alone = run(tmp_path / "alone", torchrun=("--max-restarts", "0"))
    backend = "nccl" if device == "cuda" else "gloo"
    assert f"a group of 1 process ({backend}, {device})" in alone.stderr
    if device == "cpu":
        plain = trained[1][0]
    else:
        plain = tmp_path / "plain"
        run(plain)
    h1, h2 = provenance(plain)["history"], provenance(tmp_path / "alone")["history"]
    for e1, e2 in zip(h1, h2, strict=True):
        assert e1["loss"] == pytest.approx(e2["loss"], abs=1e-5), e1["epoch"]
    w1, w2 = load_file(plain / "model.safetensors"), load_file(tmp_path / "alone" / "model.safetensors")
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], rtol=0, atol=1e-4, err_msg=k)


def test_a_killed_worker_is_restarted_and_training_resumes_from_the_checkpoint(corpus, trained, tmp_path):
    run = uavm(*train_args(corpus, tmp_path), procs=2, torchrun=("--max-restarts", "1"),
               background=True)
    wait_for(lambda: (tmp_path / "checkpoint.pt").exists(), run, "a checkpoint")
    workers = [p for p in process_tree(run.pid) if p != run.pid and "RANK=1" in environ(p)]
    assert len(workers) == 1, "rank 1 not found"
    sigkill(workers)  # rank 1 dies; torchrun stops rank 0 and starts both again
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert "resuming after epoch" in out, out
    # the restarted run ends where the uninterrupted one did (measured: bit for bit)
    reference, _ = trained[2]
    h, ref = provenance(tmp_path)["history"], provenance(reference)["history"]
    assert [e["loss"] for e in h] == pytest.approx([e["loss"] for e in ref], abs=1e-6)
    w, w_ref = load_file(tmp_path / "model.safetensors"), load_file(reference / "model.safetensors")
    for k in w_ref:
        np.testing.assert_allclose(w[k], w_ref[k], rtol=0, atol=1e-6, err_msg=k)

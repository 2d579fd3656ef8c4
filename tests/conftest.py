import json
import os
import subprocess
import sys

import numpy as np
import pytest

from uavm.demo.synth import demo_clip
from uavm.tools.localapp import LocalApp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def run_cli(*args, check=False, env=None, subprocess_=False):
    """``uavm ARGS`` as a user runs it: its exit code, stdout and stderr. In this process
    (the same entry point, without a new interpreter's start-up), or in a subprocess when
    it needs its own environment or ``subprocess_``."""
    import contextlib
    import io

    args = [str(a) for a in args]
    if env is not None or subprocess_:
        r = subprocess.run([sys.executable, "-m", "uavm", *args], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)
    else:
        from uavm.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 1
        r = subprocess.CompletedProcess(["uavm", *args], code, out.getvalue(), err.getvalue())
    if check and r.returncode != 0:
        raise AssertionError(f"uavm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def json_lines(stdout: str) -> list:
    return [json.loads(l) for l in stdout.splitlines() if l.strip()]


def AppServer(log_dir, *args, env=None, wait=True, cwd=ROOT, command=None):
    """`python -m uavm app --device cpu ARGS` started as a user starts it, on a free loopback
    port, its log and uploads in log_dir (``uavm.tools.localapp``)."""
    return LocalApp(log_dir, *args, env=env, wait=wait, cwd=cwd, command=command)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    demo_clip(d / "av.mp4", seconds=10)  # H.264 + AAC
    demo_clip(d / "audio_only.wav", video=False, audio_codec="pcm_s16le")
    demo_clip(d / "silent_video.mp4", audio=False, size=(360, 640))
    demo_clip(d / "long.mp4", seconds=25, fps=10)
    return d


def feature_corpus(d):
    """A feature data file in d (features.json + labels.csv): 40 clips, 4 classes; audio tells
    classes {0,1} from {2,3}, video tells {0,2} from {1,3}, so only fusion names all four."""
    rng = np.random.default_rng(0)
    a_proto, v_proto = rng.standard_normal((2, 16)), rng.standard_normal((2, 16))
    data = []
    for i in range(40):
        c = i % 4
        np.save(d / f"{i}.a.npy", (a_proto[c // 2] + 0.3 * rng.standard_normal((30, 16))).astype(np.float16))
        np.save(d / f"{i}.v.npy", (v_proto[c % 2] + 0.3 * rng.standard_normal((30, 16))).astype(np.float16))
        data.append({"labels": f"c{c}", "afeat": f"{i}.a.npy", "vfeat": f"{i}.v.npy"})
    (d / "features.json").write_text(json.dumps({"data": data}))
    (d / "labels.csv").write_text("index,mid,display_name\n" + "".join(f"{i},c{i},class {i}\n" for i in range(4)))
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    from uavm import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundles") / "tiny", size="tiny", seed=1)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not has_cuda(), reason="needs an NVIDIA GPU with CUDA (on a GPU machine `bash .ci/gpu` runs these)")
cuda = [pytest.mark.cuda, needs_cuda]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=cuda)])
def device(request):
    """The same check on the CPU and, where there is one, on the GPU."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)

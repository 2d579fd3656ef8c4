import json
import os
import subprocess
import sys

import numpy as np
import pytest

from uavm.synth import demo_clip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def run_cli(*args, check=False, env=None):
    """Run ``python -m uavm ARGS`` in a subprocess, as a user would."""
    r = subprocess.run([sys.executable, "-m", "uavm", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"uavm {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


def json_lines(stdout: str) -> list:
    return [json.loads(l) for l in stdout.splitlines() if l.strip()]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    demo_clip(d / "av.mp4", seconds=10)  # H.264 + AAC
    demo_clip(d / "audio_only.wav", video=False, audio_codec="pcm_s16le")
    demo_clip(d / "silent_video.mp4", audio=False, size=(360, 640))
    demo_clip(d / "long.mp4", seconds=25, fps=10)
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    from uavm import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundles") / "tiny", size="tiny", seed=1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

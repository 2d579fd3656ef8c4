"""What `pip install uavm` gets: a wheel, installed into a fresh virtual environment, runs
the CLI and the app on the embedded demo, and installs no top-level `app` package."""
import json
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest

from .conftest import ROOT, AppServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(d / "dist"),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (d / "dist").glob("uavm-*.whl")
    # the dependencies (torch, gradio, ...) are this interpreter's, wherever they live (the
    # system's, a venv's, a conda env's, the user's site): its site folders are listed in a
    # .pth of the child's own site folder, which comes first, so uavm is only the wheel's.
    # (system_site_packages would see the BASE interpreter's packages: inside a venv, not
    # the venv's, and the wheel then finds no torch.)
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(d / "env")
    py = d / "env" / "bin" / "python"
    child_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (child_site / "parent-site-packages.pth").write_text("\n".join(parent_site_folders()) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                        str(whl)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return py, d


def parent_site_folders() -> list:
    """Where this interpreter's installed packages are: its site folders and its user site."""
    import site
    import sysconfig

    found = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    out = []
    for f in found:
        if f not in out and Path(f).is_dir():
            out.append(f)
    return out


def run(py, *args, cwd):
    return subprocess.run([str(py), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_the_wheel_holds_uavm_with_its_app_and_demo_and_no_top_level_app(installed):
    py, d = installed
    r = run(py, "-c", "import uavm, uavm.app, uavm.assets as a; print(uavm.__file__); print(a.weights_dir())", cwd=d)
    lib, weights = r.stdout.split()
    assert "/env/" in lib and "/env/" in weights, r.stdout + r.stderr  # not the checkout
    site = Path(lib).parents[1]
    assert not (site / "app").exists()
    assert (Path(weights) / "demo-uavm" / "model.safetensors").is_file()


def test_the_installed_cli_predicts_an_example_clip_with_the_demo_bundles(installed):
    py, d = installed
    uavm = py.parent / "uavm"
    r = run(py, "-c", "import uavm.assets as a; print(a.examples()[0])", cwd=d)
    clip = r.stdout.strip()
    for model in ("demo-uavm", "demo-independent", "demo-cross-modal"):
        bundle = Path(clip).parents[1] / model
        r = run(uavm, "predict", clip, "--bundle", bundle, "--json", cwd=d)
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)
        assert answer["fused"]["top"][0]["label"] and answer["fused"]["ood"]["flag"] is False  # statistics shipped
    r = run(uavm, "predict", clip, "--json", cwd=d)  # the default bundle
    assert r.returncode == 0 and Path(clip).stem.replace("_", " ") in r.stdout


def test_the_installed_app_serves_the_demo(installed):
    py, d = installed
    with AppServer(d, command=[str(py.parent / "uavm")], cwd=d) as app:  # the installed script, as a user starts it
        page = urllib.request.urlopen(app.url, timeout=10).read().decode()
        assert "UAVM" in page
        from gradio_client import Client, handle_file

        r = run(py, "-c", "import uavm.assets as a; print(a.examples()[0])", cwd=d)
        out = Client(app.url, verbose=False).predict(handle_file(r.stdout.strip()), api_name="/predict")
        assert out["fused"]["top"][0]["label"]

"""The house: dependencies run one way, read off the source (every import, deferred ones
too), and the layout sketch in docs/ names every module that exists."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# tier of each part of uavm: a module may import only its own tier or lower ones (and no
# circle within a tier: test_no_circle)
TIERS = [
    ("base", ["uavm", "uavm.errors", "uavm.settings", "uavm.files", "uavm.config", "uavm.work", "uavm.cache"]),
    ("core: the window", ["uavm.media", "uavm.features", "uavm.window", "uavm.degrade"]),
    ("core: the model", ["uavm.model", "uavm.ood", "uavm.bundle", "uavm.official", "uavm.assets", "uavm.hub"]),
    ("core: the analyses", ["uavm.clip", "uavm.explain", "uavm.where", "uavm.timeline", "uavm.sweep"]),
    ("core: the pipeline", ["uavm.inference"]),
    ("core: the explorer", ["uavm.explore", "uavm.live", "uavm.figures", "uavm.series", "uavm.report"]),
    ("train", ["uavm.train"]),
    ("analysis", ["uavm.analysis"]),
    ("demo", ["uavm.demo"]),
    ("tools", ["uavm.tools"]),
    ("cli", ["uavm.cli", "uavm.__main__", "uavm.app.__main__"]),  # entry points: the top floor
    ("app", ["uavm.app"]),
]


def tier(module: str):
    best = None
    for i, (_, prefixes) in enumerate(TIERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    return best[0] if best else None


def modules():
    """(dotted name, path) of every module of the package, the app under its installed name."""
    for path in sorted((ROOT / "uavm").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path
    for path in sorted((ROOT / "app").rglob("*.py")):
        rel = path.relative_to(ROOT / "app").with_suffix("")
        parts = ["uavm", "app", *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULE_NAMES = {n for n, _ in modules()}


def imports(name: str, path: Path) -> set:
    """Every module ``path`` imports, absolute, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            named = {f"{mod}.{a.name}" for a in node.names}
            subs = {n for n in named if n in MODULE_NAMES}  # `from . import x` may name a submodule,
            found |= subs
            if subs != named:  # and then it needs that module, not its package's __init__
                found.add(mod)
    return found


ALL = dict(modules())


def _known(m: str) -> bool:
    return m in ALL


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_module_imports_only_its_own_tier_and_those_below(name):
    mine = tier(name)
    assert mine is not None, f"{name} is in no tier: add it to TIERS (and to the layout in docs/)"
    for m in imports(name, ALL[name]):
        if m.split(".")[0] == "app":
            pytest.fail(f"{name} imports the top-level name 'app': the app is installed as uavm.app")
        if not m.startswith("uavm") or not _known(m):
            continue
        t = tier(m)
        if name == "uavm.cli.app" and m.startswith("uavm.app"):
            continue  # the one entry that launches the app
        assert t <= mine, f"{name} ({TIERS[mine][0]}) imports {m} ({TIERS[t][0]}): a lower tier never imports a higher"


def _graph() -> dict:
    return {n: {m for m in imports(n, p) if m in ALL and m != n} for n, p in ALL.items()}


def test_no_circle():
    """The whole import graph, deferred imports included, runs one way (a package's __init__
    that imports its modules counts: none of them may import it back)."""
    graph, state, path = _graph(), {}, []

    def visit(n):
        state[n] = "open"
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                pytest.fail("an import circle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_nothing_imports_the_command_line():
    for name, path in ALL.items():
        if tier(name) == tier("uavm.cli"):
            continue
        bad = [m for m in imports(name, path) if (m == "uavm.cli" or m.startswith("uavm.cli.")) and _known(m)]
        assert not bad, f"{name} imports {bad}: helpers shared by commands belong in the library"


def test_the_model_knows_no_files_decoders_features_plots_or_gradio():
    got = imports("uavm.model", ALL["uavm.model"])
    for banned in ("uavm.media", "uavm.features", "uavm.figures", "uavm.bundle", "gradio", "plotly", "av", "decord"):
        assert not any(m == banned or m.startswith(banned + ".") for m in got), f"uavm.model imports {banned}"


def test_the_decoder_side_never_loads_torch():
    # decoder processes are forked from a server that preloads uavm.media: it must stay small
    media = [n for n in ALL if n == "uavm.media" or n.startswith("uavm.media.")]
    for name in media + ["uavm.errors", "uavm.files", "uavm.settings", "uavm.work"]:
        got = imports(name, ALL[name])
        assert not any(m.split(".")[0] in ("torch", "timm", "torchaudio", "gradio") for m in got), name
        assert all(tier(m) == 0 or m in media for m in got if m.startswith("uavm") and _known(m)), name


def test_the_layout_sketch_in_docs_names_every_module_and_only_those():
    text = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    sketch = text.split("The layout:", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    named, folder = set(), []
    for line in sketch.splitlines():
        m = re.match(r"^(\s*)(\S+?)(/?)(\s|$)", line)
        if not m or line.strip().startswith("#"):
            continue
        depth = len(m.group(1)) // 2
        folder = folder[:depth]
        if m.group(3):
            folder.append(m.group(2))
        elif m.group(2).endswith(".py"):
            named.add("/".join(folder + [m.group(2)]))
    real = {str(p.relative_to(ROOT)) for p in list((ROOT / "uavm").rglob("*.py")) + list((ROOT / "app").rglob("*.py"))
            if p.name != "__main__.py"}
    assert named == real, f"in docs/README.md but not on disk: {sorted(named - real)}; " \
                          f"on disk but not in docs/README.md: {sorted(real - named)}"


def test_the_wheel_lists_every_package():
    """pyproject.toml names its packages by hand: a new sub-package left out would be missing
    from the wheel (and only the slow wheel test would see it)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "uavm").rglob("__init__.py")}
    on_disk |= {"uavm.app"} if (ROOT / "app" / "__init__.py").exists() else set()
    assert on_disk - listed == set(), f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


def test_the_tier_list_in_docs_is_the_one_checked_here():
    text = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    block = text.split("```text", 1)[1].split("```", 1)[0]
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in block.splitlines() if line.strip()]

    def short(p):
        return p if p == "uavm" else p.removeprefix("uavm.")
    assert rows == [[name, ", ".join(short(p) for p in prefixes)] for name, prefixes in TIERS], \
        "docs/README.md's tier list differs from tests/test_layout.py's TIERS"


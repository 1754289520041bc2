"""The house rules of docs/architecture.md, checked on the source: imports go down the layers, no
package imports one beside or above it (except the edges named here), no import cycle between modules,
no importlib registry hiding a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "dlcli"

# Lower numbers are lower layers; a package may import its own layer's packages only through ALLOWED.
LAYER = {
    "errors": 0, "__init__": 0, "__main__": 6, "timeseries": 3, "features": 2,
    "core": 1,
    "models": 2, "text": 2, "train": 2, "tabular": 2,
    "datasets": 2,  # the public data sets and their downloads (core.progress only)
    "lm": 3, "translation": 3, "forecast": 3, "embed": 3, "gan": 3, "nerf": 3,
    "anomaly": 3,  # NAB scoring of anomaly scores; the streaming detectors plug in beside it
    "runs": 3,  # reads run directories of every stage (core.rundir) and plots them (train.plots)
    "rlhf": 4,
    "hf": 4,  # Hugging Face checkpoints in and out: makes and reads language-model runs (lm.run)
    "cli": 5,
}
ALLOWED = {
    ("rlhf", "lm"),  # RLHF starts from language-model runs
    ("lm", "embed"),  # a language model may start from word vectors (embed.vecfile)
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every dlcli module `path` imports, at module level or inside functions."""
    found = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dlcli")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("dlcli"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}


def test_imports_go_down_the_layers():
    bad = []
    for mod, deps in _graph().items():
        src = _package(mod)
        for dep in deps:
            dst = _package(dep)
            if src == dst or dst in ("__init__", "errors"):
                continue
            if LAYER[dst] >= LAYER[src] and (src, dst) not in ALLOWED:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports that go up or sideways:\n" + "\n".join(sorted(bad))


def test_every_package_has_a_layer():
    assert {_package(m) for m in _modules()} <= set(LAYER)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if d.startswith(m + ".") or m.startswith(d + "."):
                continue  # a package and its own modules
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_importlib_registries():
    hits = [str(p.relative_to(REPO)) for p in SRC.rglob("*.py") if "importlib" in p.read_text(encoding="utf-8")]
    assert not hits, hits

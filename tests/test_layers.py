"""The layer order of docs/ARCHITECTURE.md, enforced: no module imports from a higher layer, and
no two files import each other (directly or round a loop), function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import accelkit

ROOT = Path(accelkit.__file__).parent

# Lowest first. A module may import from its own layer and the layers below it, never above.
# Keep in step with the table in docs/ARCHITECTURE.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "_atomic", "_lazy", "_threads", "signal_stack", "quiet", "outdir", "hardware",
     "quality_floors", "verdict", "registration"),
    ("measure", "report"),
    ("runtimes", "architectures"),
    ("tasks",),
    ("data",),
    ("workloads",),
    ("train",),
    ("export", "saving"),
    ("techniques",),
    ("variants", "bench", "peers"),
    ("optimize",),
    ("commands", "cli", "__init__", "__main__"),
)
RANK = {name: i for i, layer in enumerate(LAYERS, start=1) for name in layer}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The accelkit modules ``name`` imports anywhere in its file (each resolved to a known module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `from pkg import name`: name may be an attribute
                target = target.rpartition(".")[0]
            if target.startswith("accelkit") and target != name:
                out.add(target)
    return out


def _layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "accelkit":
        return "__init__"
    return parts[1]


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def test_every_top_level_module_has_a_layer():
    unplaced = sorted({_layer_of(m) for m in _modules()} - set(RANK))
    assert not unplaced, f"place {unplaced} in LAYERS here and in docs/ARCHITECTURE.md"


def test_no_import_from_a_higher_layer():
    upward = sorted(
        f"{src} -> {dst} ({_layer_of(src)} is layer {RANK[_layer_of(src)]}, {_layer_of(dst)} is layer "
        f"{RANK[_layer_of(dst)]})"
        for src, targets in _graph().items() for dst in targets
        if RANK.get(_layer_of(dst), -1) > RANK.get(_layer_of(src), -1)
    )
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_file_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "files that import each other: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    # the rule is only as good as the parser: a function-local import must count
    known = {"accelkit.low": tmp_path / "low.py", "accelkit.high": tmp_path / "high.py",
             "accelkit.pkg": tmp_path / "pkg" / "__init__.py", "accelkit.pkg.mod": tmp_path / "pkg" / "mod.py"}
    (tmp_path / "low.py").write_text("def f():\n    from accelkit.high import thing\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("from . import other\nfrom ..low import f\n")
    assert _imports("accelkit.low", known["accelkit.low"], known) == {"accelkit.high"}
    assert _imports("accelkit.pkg.mod", known["accelkit.pkg.mod"], known) == {"accelkit.pkg", "accelkit.low"}

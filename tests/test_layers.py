"""The layering of the package: data flows one way, and no module imports from a layer above its own.

Every module under src/mmoe is parsed (not imported), and every `import`/`from ... import` of an mmoe
module counts: at module level, inside functions and under `if TYPE_CHECKING:` alike, relative
imports resolved. A module missing from LAYERS fails the test until it is given a layer.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "mmoe"

# Bottom to top. A name ending in ".*" covers the package and every module under it; one ending in
# "_*" covers the module and its siblings with that prefix (mmoe.tune, mmoe.tune_workers, ...).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("neutral", ("mmoe.errors", "mmoe.io", "mmoe.spec")),
    ("data", ("mmoe.data.*",)),
    ("models", ("mmoe.models.*",)),
    # mmoe.baselines: models that are not networks (one LightGBM booster per task), fitted and measured
    # on the trainer's data and metrics; the run files and the predict path dispatch on them.
    ("train", ("mmoe.train.*", "mmoe.baselines.*")),
    # A fitted run's files, predicting with it and exporting it: what the estimator is made of
    # (est.save / load / predict / export are calls into these).
    ("runs", ("mmoe.runs", "mmoe.predict", "mmoe.export.*", "mmoe.config_file")),
    ("estimator", ("mmoe.estimator",)),
    ("tune", ("mmoe.tune.*", "mmoe.tune_*")),
    ("demo", ("mmoe.demo",)),  # `mmoe demo`: MMoE beside Shared-Bottom through the estimator
    ("experiments", ("mmoe.experiments.*",)),
    ("report", ("mmoe.report.*",)),
    ("cli", ("mmoe.cli", "mmoe.__main__")),
]
# Layers that share a rank: neither may import the other.
RANK = {
    "neutral": 0,
    "data": 1,
    "models": 2,
    "train": 3,
    "runs": 4,
    "estimator": 5,
    "tune": 6,
    "demo": 6,
    "experiments": 7,
    "report": 8,
    "cli": 9,
}
# mmoe/__init__.py re-exports the public API from every layer, and `mmoe` itself is what
# `from mmoe import __version__` reads; the package root belongs to no layer.
EXEMPT = {"mmoe"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "mmoe.data.dataset"
    line: int
    target: str  # the mmoe module imported, e.g. "mmoe.train.trainer"
    at_import_time: bool  # executed when `module` is imported: module level, not in a function or TYPE_CHECKING


def layer_of(module: str) -> str | None:
    for name, patterns in LAYERS:
        for pattern in patterns:
            if pattern.endswith(".*"):
                stem = pattern[:-2]
                if module == stem or module.startswith(stem + "."):
                    return name
            elif pattern.endswith("_*"):
                stem = pattern[:-2]
                if module == stem or module.startswith(stem + "_"):
                    return name
            elif module == pattern:
                return name
    return None


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """{module name: file} for every .py under the package."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import of an mmoe module in `source` (the text of `module`). `known`: the package's module
    names, to tell `from mmoe.experiments import stats` (a module) from `from mmoe.io import to_jsonable`
    (a name in a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = package.split(".")
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mmoe" or alias.name.startswith("mmoe."):
                    found.append(Import(module, node.lineno, alias.name, at_import_time))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node)
            if base == "mmoe" or base.startswith("mmoe."):
                targets = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
                found.extend(Import(module, node.lineno, target, at_import_time) for target in sorted(targets))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                visit(child, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, at_import_time)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child, at_import_time)

    visit(ast.parse(source), True)
    return found


def layer_violations(imports: list[Import]) -> list[str]:
    """One line per import that goes up (or sideways between tune and demo), or that involves a
    module without a layer."""
    problems: list[str] = []
    for imp in imports:
        if imp.module in EXEMPT or imp.target in EXEMPT:
            continue
        own, other = layer_of(imp.module), layer_of(imp.target)
        if own is None:
            problems.append(f"{imp.module} is in no layer: add it to a layer in tests/test_layers.py")
        elif other is None:
            problems.append(
                f"{imp.module} (line {imp.line}) imports {imp.target}, which is in no layer: "
                "add it to a layer in tests/test_layers.py"
            )
        elif RANK[own] < RANK[other]:
            problems.append(f"{imp.module} (line {imp.line}) imports {imp.target}: layer {own} below {other}")
        elif RANK[own] == RANK[other] and own != other:
            problems.append(
                f"{imp.module} (line {imp.line}) imports {imp.target}: layer {own} is independent of {other}"
            )
    return list(dict.fromkeys(problems))


def import_circles(imports: list[Import]) -> list[list[str]]:
    """The circles among modules through imports executed at import time (strongly connected
    components with more than one module, or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.at_import_time:
            graph.setdefault(imp.module, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return circles


def all_imports(root: Path = PACKAGE_ROOT) -> tuple[dict[str, Path], list[Import]]:
    modules = package_modules(root)
    imports: list[Import] = []
    for name, path in modules.items():
        imports.extend(imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", set(modules)))
    return modules, imports


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    modules, imports = all_imports()
    assert "mmoe.data.dataset" in modules and len(imports) > 50  # the walk found the package
    problems = [
        f"{name} is in no layer: add it to a layer in tests/test_layers.py"
        for name in modules
        if name not in EXEMPT and layer_of(name) is None
    ]
    problems += [p for p in layer_violations(imports) if p not in problems]
    assert not problems, "upward or unlayered imports:\n" + "\n".join(problems)


def test_no_import_circle_at_module_level() -> None:
    _, imports = all_imports()
    circles = import_circles(imports)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(circle) for circle in circles)


def test_the_checker_reports_what_it_must() -> None:
    known = {
        "mmoe",
        "mmoe.data",
        "mmoe.data.fake",
        "mmoe.train",
        "mmoe.train.trainer",
        "mmoe.io",
        "mmoe.tune",
        "mmoe.demo",
        "mmoe.experiments",
        "mmoe.experiments.stats",
    }
    data_source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from mmoe.io import to_jsonable\n"  # neutral: fine
        "from . import fake\n"  # its own layer: fine
        "if TYPE_CHECKING:\n"
        "    from mmoe.tune import suggest\n"  # line 6
        "def evaluate(model):\n"
        "    from ..train.trainer import evaluate_data\n"  # line 8: function level, relative
        "    return evaluate_data(model)\n"
    )
    imports = imports_of("mmoe.data.fake", data_source, is_package=False, known=known)
    assert {(imp.line, imp.target, imp.at_import_time) for imp in imports} == {
        (3, "mmoe.io", True),
        (4, "mmoe.data.fake", True),
        (6, "mmoe.tune", False),
        (8, "mmoe.train.trainer", False),
    }
    assert layer_violations(imports) == [
        "mmoe.data.fake (line 6) imports mmoe.tune: layer data below tune",
        "mmoe.data.fake (line 8) imports mmoe.train.trainer: layer data below train",
    ]
    # tune and demo share a rank and may not import each other; a module with no layer is reported
    demo_source = "def check():\n    import mmoe.tune\nfrom mmoe.experiments import stats\n"
    imports = imports_of("mmoe.demo", demo_source, is_package=False, known=known)
    assert layer_violations(imports) == [
        "mmoe.demo (line 2) imports mmoe.tune: layer demo is independent of tune",
        "mmoe.demo (line 3) imports mmoe.experiments.stats: layer demo below experiments",
    ]
    assert layer_violations(imports_of("mmoe.helpers", "import mmoe.io\n", False, known)) == [
        "mmoe.helpers is in no layer: add it to a layer in tests/test_layers.py"
    ]
    assert layer_of("mmoe.tune_workers") == "tune" and layer_of("mmoe.tuner") is None
    # circles count only imports run at import time
    circle = [
        Import("mmoe.a", 1, "mmoe.b", True),
        Import("mmoe.b", 1, "mmoe.c", True),
        Import("mmoe.c", 1, "mmoe.a", True),
        Import("mmoe.c", 2, "mmoe.d", True),
    ]
    assert import_circles(circle) == [["mmoe.a", "mmoe.b", "mmoe.c"]]
    assert import_circles([*circle[:2], Import("mmoe.c", 5, "mmoe.a", False)]) == []

"""The import rules of docs/ARCHITECTURE.md, read from the source: every arrow runs one way.

record <- readers <- stages <- execution <- cli; augmenters import only pipeline.record;
trainers only pipeline.record and pipeline.store (and their own config); the recipe sits
between record and readers because it holds the augmenters' and trainers' config models.
Imports inside functions count as imports: no module imports, at any depth, one that
imports it back (imports under `if TYPE_CHECKING:` never run and do not count).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "augmenters", "trainers")

RECORD = {"pipeline.record"}
STORE = RECORD | {"pipeline.store"}
RECIPE = RECORD | {
    "pipeline.recipe",
    "augmenters",
    "trainers.config",
    "pipeline.stages.quality.config",
}
# Readers open sources on object stores through the store's filesystem seam, and only that.
READERS = RECIPE | {"pipeline.readers", "pipeline.store.fs", "pipeline.store.store_fs"}
STAGES = READERS | {"pipeline.stages"}
# What each layer may import from the project (module prefixes); the most specific wins.
ALLOWED: dict[str, set[str]] = {
    "pipeline.record": RECORD,
    "pipeline.store": STORE,
    "pipeline.cards": STORE | {"pipeline.cards"},
    "pipeline.recipe": RECIPE,
    "pipeline.readers": READERS,
    "pipeline.stages": STAGES,
    "pipeline.stages.quality.config": RECORD,  # the recipe's `quality:` section
    # The job over the stages: it reads sources, runs stages, writes the store and its cards,
    # and (retrain) hands a version to the trainers; never the CLI or the viewer.
    "pipeline.execution": STAGES | STORE | {"pipeline.cards", "pipeline.execution", "trainers"},
    # Hands the top-level packages to Ray as the workers' code (py_modules); nothing in them.
    # ("=name": that module exactly, not what lies under it.)
    "pipeline.execution.cluster": RECIPE
    | {"=pipeline", "=augmenters", "=trainers", "pipeline.execution.ray_reaper"},
    "pipeline.cli": {"pipeline", "augmenters", "trainers"},
    # The viewer is a front end like the CLI: it reads the store and the model registry.
    "pipeline.view": {"pipeline", "augmenters", "trainers"},
    "pipeline": {"pipeline"},  # pipeline/__init__.py: lazy re-exports only
    "augmenters.config": RECORD | {"augmenters.config"},
    "augmenters": RECORD | {"augmenters"},
    "trainers.config": RECORD | {"trainers.config"},
    "trainers": STORE | {"trainers"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    candidates = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    return max(candidates, key=len)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Return the ids of the import nodes under `if TYPE_CHECKING:` (hints only)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out.update(id(n) for child in node.body for n in ast.walk(child))
    return out


def _function_level(tree: ast.AST) -> set[int]:
    """Return the ids of the import nodes inside a function body."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    return out


def _project_imports(path: Path, in_functions: bool | None = None) -> list[tuple[int, str]]:
    """Return (line, module) of the project imports of `path`; with `in_functions` True
    (False) only those inside (outside) a function body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hints = _type_checking_only(tree)
    nested = _function_level(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if in_functions is not None and (id(node) in nested) != in_functions:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            # `from pipeline import readers` imports pipeline.readers, not pipeline.
            target = next((n for n in names[1:] if _is_module(n)), node.module)
            found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _allowed(importer: str, imported: str) -> bool:
    def matches(rule: str) -> bool:
        if rule.startswith("="):
            return imported == rule[1:]
        return imported == rule or imported.startswith(rule + ".")

    return any(matches(rule) for rule in ALLOWED[_layer(importer)])


SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    importer = _module_name(path)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for line, imported in _project_imports(path)
        if not _allowed(importer, imported)
    ]
    assert not wrong, "\n".join(wrong)


def _import_graph() -> dict[str, set[str]]:
    """Return module -> the project modules it imports (module or function level)."""
    modules = {_module_name(p) for p in SOURCES}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        importer = _module_name(path)
        targets = {owner(m) for _, m in _project_imports(path)}
        graph[importer] = {t for t in targets if t is not None and t != importer}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back_even_inside_a_function() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Project imports inside function bodies: kept for a fast `roleforge --help` (the CLI
# imports a command's modules when it runs) and for optional heavy paths; none may hold a
# cycle apart (the test above). The ceiling only goes down.
MAX_FUNCTION_LEVEL_IMPORTS = {"pipeline": 90, "augmenters": 8, "trainers": 36}


def _function_level_imports() -> dict[str, int]:
    counts = dict.fromkeys(PACKAGES, 0)
    for path in SOURCES:
        counts[_module_name(path).split(".")[0]] += len(_project_imports(path, in_functions=True))
    return counts


def test_function_level_project_imports_do_not_grow() -> None:
    counts = _function_level_imports()
    grown = {
        p: (n, MAX_FUNCTION_LEVEL_IMPORTS[p])
        for p, n in counts.items()
        if n > MAX_FUNCTION_LEVEL_IMPORTS[p]
    }
    assert not grown, f"function-level project imports (now, ceiling): {grown}"


def test_the_layer_rules_reject_a_backward_import(tmp_path: Path) -> None:
    # The rules themselves must be able to fail: a record module importing a stage is refused.
    assert not _allowed("pipeline.record.schema", "pipeline.stages.validate")
    assert not _allowed("augmenters.record", "pipeline.recipe")
    assert not _allowed("trainers.run", "pipeline.execution.job")
    assert _allowed("pipeline.cli.app", "pipeline.execution.job")
    assert not _allowed("pipeline.execution.job", "pipeline.cli.console")
    assert not _allowed("pipeline.execution.job", "pipeline.view")
    assert _allowed("pipeline.execution.cluster", "pipeline")
    assert not _allowed("pipeline.execution.cluster", "pipeline.cli.app")


def test_every_package_folder_has_an_init() -> None:
    for pkg in PACKAGES:
        for folder in (ROOT / pkg).rglob("*"):
            if folder.is_dir() and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), folder

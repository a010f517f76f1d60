"""The import rules of DESIGN.md, read from the source: every arrow runs one way.

record <- readers <- stages <- execution <- cli; augmenters import only pipeline.record;
trainers only pipeline.record and pipeline.store (and their own config); the recipe sits
between record and readers because it holds the augmenters' and trainers' config models.
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
READERS = RECIPE | {"pipeline.readers", "pipeline.store.fs"}
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
    "pipeline.execution": STAGES
    | STORE
    | {"pipeline.cards", "pipeline.execution", "trainers", "pipeline"},
    "pipeline.cli": {"pipeline", "augmenters", "trainers"},
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


def _project_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
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
    return any(imported == p or imported.startswith(p + ".") for p in ALLOWED[_layer(importer)])


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


def test_the_layer_rules_reject_a_backward_import(tmp_path: Path) -> None:
    # The rules themselves must be able to fail: a record module importing a stage is refused.
    assert not _allowed("pipeline.record.schema", "pipeline.stages.validate")
    assert not _allowed("augmenters.record", "pipeline.recipe")
    assert not _allowed("trainers.stage", "pipeline.execution.job")
    assert _allowed("pipeline.cli.app", "pipeline.execution.job")


def test_every_package_folder_has_an_init() -> None:
    for pkg in PACKAGES:
        for folder in (ROOT / pkg).rglob("*"):
            if folder.is_dir() and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), folder

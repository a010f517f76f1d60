"""Package namespaces that import their public names on first use.

`roleforge --help` and the recipe's config models must not pull in ray, torch or the op
libraries just because a package `__init__` names them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """Return a module `__getattr__` that imports `exports[name]` (a module path) on first use."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__

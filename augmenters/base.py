"""What every augmentation op is: built from a recipe spec, draws its parameters, applies them."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from pipeline.record.schema import ROLES


class OpConfigError(ValueError):
    """A recipe spec an op cannot use; `key` names the offending argument when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class _Skipped:
    """The op was chosen but cannot handle this target (e.g. CJK text for keyboard typos)."""

    _instance: _Skipped | None = None

    def __new__(cls) -> _Skipped:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = _Skipped()


class Op:
    """One recipe op: `draw(rng, target)` picks random parameters, `apply(target, params)` uses them.

    `draw` returns a JSON-able dict of what to apply, None when the draw changes nothing,
    or SKIPPED when the target is one the op cannot handle. `apply` is deterministic, so
    recorded params replay to the same bytes. Constructors validate the spec and stay
    cheap; heavy objects (models, library transforms) are built lazily and never pickled.
    """

    modality: ClassVar[str]
    default_p: ClassVar[float] = 1.0

    def __init__(self, name: str, step: int, p: float) -> None:
        self.name = name
        self.step = step
        self.p = p

    def check(self) -> None:
        """Raise OpConfigError if the op cannot run here (missing data, bad argument values)."""

    def __getstate__(self) -> dict[str, Any]:
        # Lazily built library objects (underscore-prefixed caches) are rebuilt in the worker.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_lazy")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.modality}[{self.step}] {self.name}, p={self.p})"


def pop_probability(args: dict[str, Any], default: float) -> float:
    """Return the op-level probability `p` from `args` (removing it), validated to [0, 1]."""
    p = args.pop("p", default)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise OpConfigError(f"must be a number between 0 and 1, got {p!r}", key="p")
    return float(p)


def library_args(
    transform_cls: type, args: dict[str, Any], default_p: float, reserved: tuple[str, ...] = ()
) -> tuple[float, dict[str, Any]]:
    """Return (p, constructor kwargs) for a library transform, rejecting unknown arguments.

    The transform's own `p` default applies when the recipe gives none; `reserved` names
    constructor parameters the recipe may not set (e.g. albumentations' `strict`).
    """
    args = dict(args)
    signature = inspect.signature(transform_cls.__init__).parameters
    p = pop_probability(args, signature["p"].default if "p" in signature else default_p)
    for key in args:
        if key not in signature or key == "self" or key in reserved:
            raise OpConfigError("unknown argument", key=key)
    return p, args


def pop_roles(args: dict[str, Any], default: tuple[str, ...] = ("user",)) -> tuple[str, ...]:
    """Return the `roles` a text op may touch (removing the key), validated against ROLES."""
    roles = args.pop("roles", list(default))
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, (list, tuple)) or not roles:
        raise OpConfigError(f"must be a non-empty list of roles from {list(ROLES)}", key="roles")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise OpConfigError(f"unknown role(s) {bad}; use {list(ROLES)}", key="roles")
    return tuple(roles)


def reject_unknown(args: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Raise OpConfigError naming the first argument not in `allowed`."""
    for key in args:
        if key not in allowed:
            raise OpConfigError("unknown argument", key=key)


def plain(value: Any, max_items: int = 32) -> Any:
    """Return `value` as plain JSON data (numpy scalars/arrays to Python), or None if too big or opaque."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.ndarray):
        if value.size > max_items:
            return None
        return plain(value.tolist(), max_items)
    if isinstance(value, (list, tuple)):
        if len(value) > max_items:
            return None
        items = [plain(v, max_items) for v in value]
        return (
            None
            if any(i is None and v is not None for i, v in zip(items, value, strict=True))
            else items
        )
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            pv = plain(v, max_items)
            if pv is not None or v is None:
                out[str(k)] = pv
        return out
    return None

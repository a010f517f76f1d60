"""What every augmentation op is: built from a recipe spec, draws its parameters, applies them."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, get_args

import numpy as np
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from augmenters.config import OpParams


class OpConfigError(ValueError):
    """A recipe spec an op cannot use; `key` names the offending argument when there is one.

    `problems` holds every (key, message) found when a parameter model rejected several
    arguments at once; the first is `key` and the message.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.problems: list[tuple[str | None, str]] = [(key, message)]


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
    recorded params replay to the same bytes. `from_spec(name, step, args)` validates a
    recipe spec and builds the op cheaply; heavy objects (models, library transforms) are
    built lazily and never pickled.
    """

    modality: ClassVar[str]
    # True when `draw` and `apply` only read the arrays they are given (what they return is
    # new, or a view of the input): the variant then hands them its record's decoded
    # original as is, instead of a copy of its own (~0.1-0.3 ms per image or clip).
    keeps_input: ClassVar[bool] = False

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


P = TypeVar("P", bound=OpParams)


def parse_params(model: type[P], args: Mapping[str, Any]) -> P:
    """Return `args` checked by the parameter model `model`; raise OpConfigError naming each bad argument."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = [_problem(err, model, args) for err in exc.errors()]
    error = OpConfigError(problems[0][1], key=problems[0][0])
    error.problems = problems
    raise error


def _problem(
    err: ErrorDetails, model: type[OpParams], args: Mapping[str, Any]
) -> tuple[str | None, str]:
    """Return (argument, one-line message) for one pydantic error, phrased as the recipe reads."""
    key = str(err["loc"][0]) if err["loc"] else None
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, OpConfigError):  # a check across arguments names its own key
        return cause.key or key, str(cause)
    field = model.model_fields.get(key) if key else None
    expected = field.description if field else None
    if err["type"] == "extra_forbidden":
        return key, "unknown argument"
    if err["type"] == "missing":
        return key, f"required: {expected}" if expected else "required"
    if cause is not None:  # a validator's own message says what is wrong
        return key, str(cause)
    if err["type"] == "literal_error" and field is not None and not expected:
        expected = f"one of {list(get_args(field.annotation))}"
    # The whole value the recipe gave, also when one item of a list was the bad part.
    value = args[key] if key in args else err["input"]
    if expected:
        return key, f"must be {expected}, got {value!r}"
    return key, f"{err['msg'].replace('Input should be', 'must be', 1)}, got {value!r}"


class ParamsOp(Op):
    """An op of our own: its recipe arguments are one pydantic model, the class's `Params`."""

    Params: ClassVar[type[OpParams]] = OpParams

    def __init__(self, name: str, step: int, params: OpParams) -> None:
        super().__init__(name, step, params.p)
        self.params = params

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> ParamsOp:
        """Return the op a recipe spec's arguments describe; raise OpConfigError naming each bad one."""
        return cls(name, step, parse_params(cls.Params, args))


def library_args(
    transform_cls: type, args: dict[str, Any], default_p: float, reserved: tuple[str, ...] = ()
) -> tuple[float, dict[str, Any]]:
    """Return (p, constructor kwargs) for a library transform, rejecting unknown arguments.

    The transform's own `p` default applies when the recipe gives none; `reserved` names
    constructor parameters the recipe may not set (e.g. albumentations' `strict`).
    The values themselves are the library's to check.
    """
    args = dict(args)
    signature = inspect.signature(transform_cls.__init__).parameters
    default = signature["p"].default if "p" in signature else default_p
    p = parse_params(OpParams, {"p": args.pop("p", default)}).p
    for key in args:
        if key not in signature or key == "self" or key in reserved:
            raise OpConfigError("unknown argument", key=key)
    return p, args


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

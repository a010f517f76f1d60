"""Image ops: any albumentations transform, by class name, with its own arguments.

The op seeds the transform's random streams from the record's generator, draws the
transform's parameters with albumentations' own machinery (`get_params` and
`get_params_dependent_on_data`), and applies them with `apply_with_params`: exactly what
the transform's `__call__` does, minus its bookkeeping. The recorded params hold the seed
(enough to replay) and the small, readable drawn values (crop box, angle, ...).
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import numpy as np

from augmenters.base import Op, OpConfigError, library_args, plain
from augmenters.libraries import import_op_library
from augmenters.randomness import SeededStreams, draw_seed
from pipeline.record.media import (  # noqa: F401 - decode/encode/image_format re-exported
    IMAGE_EXTENSIONS,
    decode_image,
    encode_image,
    image_format,
    variant_image_format,
)

# Params albumentations adds from the transform's own configuration, not from the draw.
_CONFIG_PARAMS = {"shape", "interpolation", "fill", "fill_mask", "mask_interpolation"}

# Transforms that only read their input image (crops take a view, resizes and flips write
# a new array), so a variant may give them its record's decoded original without copying
# it (tests/augmenters/test_media_ops.py runs each on a read-only image). Any other
# transform gets a copy of its own: albumentations does not promise to leave its input be.
_READ_ONLY_TRANSFORMS = frozenset(
    {"RandomResizedCrop", "RandomCrop", "CenterCrop", "Resize", "HorizontalFlip", "VerticalFlip"}
)


def _albumentations() -> Any:
    # Imported on first use, without torch (libraries.py): with it, ~4 s per fresh process.
    return import_op_library("albumentations")


def transform_class(name: str) -> type | None:
    """Return the albumentations image transform called `name`, or None when there is none."""
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
        return None
    A = _albumentations()
    cls = getattr(A, name, None)
    base = (A.ImageOnlyTransform, A.DualTransform)
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        return None
    return cls


class AlbumentationsOp(Op):
    """One albumentations transform; the op's `p` decides, the transform always applies when chosen."""

    modality = "image"

    def __init__(self, name: str, step: int, p: float, kwargs: dict[str, Any]) -> None:
        super().__init__(name, step, p)
        self.kwargs = kwargs

    @property
    def keeps_input(self) -> bool:  # type: ignore[override]
        return self.name in _READ_ONLY_TRANSFORMS

    @property
    def is_horizontal_flip(self) -> bool:
        """True for the op the spatial guard watches (mirroring swaps left and right)."""
        return self.name == "HorizontalFlip"

    @classmethod
    def from_spec(cls, name: str, step: int, args: dict[str, Any]) -> AlbumentationsOp:
        transform_cls = transform_class(name)
        if transform_cls is None:
            raise OpConfigError(f"no albumentations image transform called {name!r}")
        p, args = library_args(transform_cls, args, default_p=1.0, reserved=("strict",))
        op = cls(name, step, p, args)
        op._transform()  # validates the argument values through albumentations' schema
        return op

    def _transform(self) -> Any:
        transform = getattr(self, "_lazy_transform", None)
        if transform is None:
            transform = _build_transform(self.name, self.kwargs)
            self._lazy_streams = SeededStreams()
            transform.set_random_state(self._lazy_streams.numpy, self._lazy_streams.python)
            self._lazy_transform = transform
        return transform

    def _full_params(self, image: np.ndarray, seed: int) -> dict[str, Any]:
        transform = self._transform()
        self._lazy_streams.reset(seed)
        data = {"image": _color(image)}
        params = transform.get_params()
        params = transform.update_transform_params(params=params, data=data)
        params.update(transform.get_params_dependent_on_data(params=params, data=data))
        return params

    def draw(self, rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
        """Return {"seed", "drawn"}: the transform's seed and its readable drawn parameters."""
        seed = draw_seed(rng)
        full = self._full_params(image, seed)
        # Kept so that apply() on the same image does not draw again (noise maps are costly).
        self._lazy_last = (seed, image, full)
        drawn = plain({k: v for k, v in full.items() if k not in _CONFIG_PARAMS}) or {}
        return {"seed": seed, "drawn": drawn}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Return `image` transformed as `params` (from draw) says."""
        seed = params["seed"]
        last = getattr(self, "_lazy_last", None)
        self._lazy_last = None
        if last is not None and last[0] == seed and last[1] is image:
            full = last[2]
        else:
            full = self._full_params(image, seed)
        transform = self._transform()
        if not _has_alpha(image):
            return transform.apply_with_params(full, image=image)["image"]
        # Colour ops want 3 channels; the alpha plane travels as a mask, so geometric ops
        # move it with the pixels and colour ops leave it alone.
        out = transform.apply_with_params(
            full,
            image=np.ascontiguousarray(image[..., :3]),
            mask=np.ascontiguousarray(image[..., 3]),
        )
        rgb, alpha = out["image"], out["mask"]
        if alpha.ndim == 3:
            alpha = alpha[..., 0]
        if rgb.shape[:2] != alpha.shape[:2]:
            return rgb  # a transform that cannot carry the mask: keep the pixels, drop alpha
        return np.dstack([rgb, alpha.astype(rgb.dtype)])

    def check(self) -> None:
        image = np.full((64, 64, 3), 127, np.uint8)
        try:
            self.apply(image, self.draw(np.random.default_rng(0), image))
        except Exception as exc:
            raise OpConfigError(f"failed on a test image: {exc!r}") from exc


def _has_alpha(image: np.ndarray) -> bool:
    return image.ndim == 3 and image.shape[2] == 4


def _color(image: np.ndarray) -> np.ndarray:
    """Return the colour channels of an image (a view without alpha)."""
    return image[..., :3] if _has_alpha(image) else image


def _build_transform(name: str, kwargs: dict[str, Any]) -> Any:
    cls = transform_class(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter; errors still raise
            return cls(**kwargs, p=1.0, strict=True)
    except Exception as exc:
        raise _config_error(exc) from None


def _config_error(exc: Exception) -> OpConfigError:
    from pydantic import ValidationError

    # albumentations re-raises its InitSchema's pydantic error as a ValueError.
    cause = exc if isinstance(exc, ValidationError) else exc.__cause__
    if isinstance(cause, ValidationError):
        first = cause.errors()[0]
        key = ".".join(str(part) for part in first.get("loc", ())) or None
        return OpConfigError(first.get("msg", str(exc)).removeprefix("Value error, "), key=key)
    return OpConfigError(str(exc))


# --- codec: pipeline/record/media.py, the one codec of every stage ---------------------


def variant_image_path(path: str | None, fmt: str) -> str | None:
    """Return the path for a variant image: the original's, with the extension of its output format."""
    if path is None or variant_image_format(fmt) == fmt:
        return path
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return stem + IMAGE_EXTENSIONS[variant_image_format(fmt)]


# --- spatial guard ----------------------------------------------------------------------

_SIDE_WORDS = {"left": "right", "right": "left", "左": "右", "右": "左"}
_SIDES = re.compile(r"(?<![A-Za-z])(left|right)(?![A-Za-z])|[左右]", re.IGNORECASE)


def mentions_sides(text: str) -> bool:
    """Return True when `text` speaks of left or right (English or Chinese)."""
    low = text.lower()
    # Substring tests first: the regex scans every position and this runs per flipped image.
    if "left" not in low and "right" not in low and "左" not in text and "右" not in text:
        return False
    return _SIDES.search(text) is not None


def swap_sides(text: str) -> str:
    """Return `text` with left and right swapped, keeping each word's case.

    "right" meaning "correct" is swapped too: that is why the guard skips flips by default.
    """

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        other = _SIDE_WORDS[word.lower()]
        if word.isupper() and len(word) > 1:
            return other.upper()
        if word[:1].isupper():
            return other.capitalize()
        return other

    return _SIDES.sub(swap, text)

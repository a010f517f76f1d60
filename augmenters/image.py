"""Image ops: any albumentations transform, by class name, with its own arguments.

The op seeds the transform's random streams from the record's generator, draws the
transform's parameters with albumentations' own machinery (`get_params` and
`get_params_dependent_on_data`), and applies them with `apply_with_params`: exactly what
the transform's `__call__` does, minus its bookkeeping. The recorded params hold the seed
(enough to replay) and the small, readable drawn values (crop box, angle, ...).
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from typing import Any

import numpy as np

from augmenters.base import Op, OpConfigError, library_args, plain
from augmenters.randomness import SeededStreams, draw_seed

# Params albumentations adds from the transform's own configuration, not from the draw.
_CONFIG_PARAMS = {"shape", "interpolation", "fill", "fill_mask", "mask_interpolation"}


def _albumentations() -> Any:
    # Imported on first use: albumentations imports torch (~4 s per fresh process).
    return importlib.import_module("albumentations")


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
        data = {"image": image}
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
        return self._transform().apply_with_params(full, image=image)["image"]

    def check(self) -> None:
        image = np.full((64, 64, 3), 127, np.uint8)
        try:
            self.apply(image, self.draw(np.random.default_rng(0), image))
        except Exception as exc:
            raise OpConfigError(f"failed on a test image: {exc!r}") from exc


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


# --- codec: keep the original format -----------------------------------------------------

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
)
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
JPEG_QUALITY = 95
WEBP_QUALITY = 95


def image_format(data: bytes) -> str:
    """Return the container format of encoded image bytes: jpeg, png, webp, gif, bmp or unknown."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def output_format(fmt: str) -> str:
    """Return the format a variant of a `fmt` image is written in (itself when cv2 can write it)."""
    return fmt if fmt in EXTENSIONS else "png"


def decode_image(data: bytes) -> np.ndarray:
    """Return RGB (or RGBA, for images with alpha) uint8 pixels of encoded image bytes."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    if image_format(data) in ("png", "webp"):
        raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.ndim == 3 and raw.shape[2] == 4 and raw.dtype == np.uint8:
            return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA)
    # IMREAD_COLOR_RGB also applies the EXIF orientation, so pixels match what viewers show.
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ValueError("image bytes do not decode")
    return image


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """Return `image` (RGB/RGBA uint8) encoded as `fmt` (jpeg at quality 95, png, webp, bmp)."""
    import cv2

    fmt = output_format(fmt)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
        if fmt == "jpeg":
            bgr = bgr[:, :, :3]
    elif image.ndim == 3 and image.shape[2] == 3:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    else:
        bgr = image
    flags = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY],
    }
    ok, buf = cv2.imencode(EXTENSIONS[fmt], np.ascontiguousarray(bgr), flags.get(fmt, []))
    if not ok:
        raise ValueError(f"could not encode image as {fmt}")
    return buf.tobytes()


def variant_image_path(path: str | None, fmt: str) -> str | None:
    """Return the path for a variant image: the original's, with the extension of its output format."""
    if path is None or output_format(fmt) == fmt:
        return path
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return stem + EXTENSIONS[output_format(fmt)]


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

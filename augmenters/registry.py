"""The registry: recipe `op` names to augmenter ops, per modality, and recipe-time validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Light (numpy and pydantic, which the ops need anyway): the libraries are imported per op.
from augmenters.audio import AudiomentationsOp, SpeedPerturb
from augmenters.audio import transform_class as audio_transform_class
from augmenters.base import Op, OpConfigError
from augmenters.config import AugmentConfig
from augmenters.waveform import WAVEFORM_OPS
from pipeline.record.config import RecipeError

MODALITIES = ("dialogue", "text", "image", "audio")


def _dialogue_ops() -> dict[str, Any]:
    from augmenters.dialogue import DIALOGUE_OPS

    return DIALOGUE_OPS


def _text_ops() -> dict[str, Any]:
    from augmenters.models import MODEL_TEXT_OPS
    from augmenters.text import TEXT_OPS

    return {**TEXT_OPS, **MODEL_TEXT_OPS}


def _image_op(name: str) -> Any:
    from augmenters.image import AlbumentationsOp, transform_class

    return AlbumentationsOp if transform_class(name) is not None else None


def _audio_op(name: str) -> Any:
    if name == "SpeedPerturb":
        return SpeedPerturb
    if name in WAVEFORM_OPS:  # ported: audiomentations is imported only for the others
        return WAVEFORM_OPS[name]
    return AudiomentationsOp if audio_transform_class(name) is not None else None


# Named tables for dialogue and text; any class of the image/audio library is an op.
_LOOKUP: dict[str, Callable[[str], Any]] = {
    "dialogue": lambda name: _dialogue_ops().get(name),
    "text": lambda name: _text_ops().get(name),
    "image": _image_op,
    "audio": _audio_op,
}


def registered_names() -> dict[str, list[str]]:
    """Return the named ops per modality (image and audio also take any library transform)."""
    return {
        "dialogue": sorted(_dialogue_ops()),
        "text": sorted(_text_ops()),
        "image": ["<any albumentations image transform>"],
        "audio": ["<any audiomentations waveform transform>", "SpeedPerturb"],
    }


def op_class(modality: str, name: str) -> Any:
    """Return the op class for `name` in `modality`, or None when no op has that name there."""
    return _LOOKUP[modality](name)


def _wrong_list_hint(modality: str, name: str) -> str:
    for other in MODALITIES:
        if (
            other != modality
            and other in ("dialogue", "text")
            and op_class(other, name) is not None
        ):
            return f"; {name} is a {other} op: list it under augment.{other}"
    return ""


def build_op(modality: str, step: int, spec: Any) -> Op:
    """Return the op the recipe spec at augment.<modality>[step] describes; raise RecipeError naming it."""
    where = f"augment.{modality}[{step}]"
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise RecipeError(f"{where}: each op is a mapping with an 'op' name, got {spec!r}")
    args = {k: v for k, v in spec.items() if k != "op"}
    name = spec["op"]
    cls = op_class(modality, name)
    if cls is None:
        known = ", ".join(registered_names()[modality])
        raise RecipeError(
            f"{where}: unknown {modality} op {name!r}{_wrong_list_hint(modality, name)} (known: {known})"
        )
    try:
        op = cls.from_spec(name, step, args)
    except OpConfigError as exc:
        raise RecipeError(_located(where, name, exc)) from None
    return op


def _located(where: str, name: str, exc: OpConfigError) -> str:
    """Return one line per problem, each naming the op's place, the op and the argument."""
    return "\n".join(
        f"{where} ({name}).{key}: {message}" if key else f"{where} ({name}): {message}"
        for key, message in exc.problems
    )


def build_ops(cfg: AugmentConfig) -> dict[str, list[Op]]:
    """Return every op of the config, per modality, in recipe order."""
    return {m: [build_op(m, i, spec) for i, spec in enumerate(getattr(cfg, m))] for m in MODALITIES}


def validate_augment_config(cfg: AugmentConfig) -> None:
    """Build and check every op of `cfg` once; raise RecipeError listing each bad op with its location.

    Checks are cheap dry runs (a test sentence, image or clip) and file checks; models
    are not loaded here.
    """
    problems = []
    for modality in MODALITIES:
        for step, spec in enumerate(getattr(cfg, modality)):
            try:
                op = build_op(modality, step, spec)
                try:
                    op.check()
                except OpConfigError as exc:
                    raise RecipeError(
                        _located(f"augment.{modality}[{step}]", op.name, exc)
                    ) from None
            except RecipeError as exc:
                problems.append(str(exc))
    if problems:
        raise RecipeError("\n".join(problems))

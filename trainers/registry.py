"""The model registry of one dataset: its trained models with lineage, and the promoted one.

Layout, under `<store>/<name>/models/`:
  <run_id>/run.json   each trained model (written by the training stage): dataset version and
                      content_id, base model, init (base or the model it continued), status
  <run_id>/eval.json  its own test evaluation; <run_id>/evals/ its evaluations on other splits
  PROMOTED            the pointer: the promoted model id, a generation number and the full
                      history of promotions and rollbacks, in one JSON file
  PROMOTED.lock       held while the pointer is read-checked and replaced

The pointer is replaced whole (`pipeline.store.atomic.replace_file`: temp file, fsync,
rename, fsync of the folder; the store's commit toolkit), so a crash at
any step leaves either the old or the new file: exactly one promoted model, never two or
none once a first one exists. Writers hold the lock and compare-and-swap: `promote(...,
expected=X)` refuses with PromotionConflict when another process promoted meanwhile, so two
concurrent retrains cannot both promote without one seeing the other's result. The lock is a
POSIX file lock (local or NFS-like filesystems); the OS releases it when a holder dies.

On an object store (no rename, no lock across machines) the pointer is a series of
immutable generation objects instead, `PROMOTED.d/<generation:012d>.json`, each the whole
pointer document (the same format as PROMOTED), created by a conditional PUT that fails
when the key exists: the current pointer is the highest generation. A promote reads
generation G, checks `expected`, and creates G+1; of two writers racing for G+1 one wins
and the other gets PromotionConflict (or, with no `expected`, tries again on top of the
winner's). Model folders and their files are read through the store's filesystem.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pipeline.store.atomic import fault_point, replace_file, stale_temp_files
from pipeline.store.lock import file_lock
from pipeline.store.read import Store
from trainers.config import TrainConfig
from trainers.pending import killed_before_comparison

logger = logging.getLogger(__name__)

POINTER_FILE = "PROMOTED"
GENERATIONS_DIR = "PROMOTED.d"  # object stores: one immutable object per generation
POINTER_FORMAT = "roleforge.promoted/1"
LOCK_TIMEOUT_S = 120.0
# Steps of a local promotion a fault can be injected at (`pipeline.store.atomic`).
FAULT_POINTS = ("promote_locked", "promote_temp_written", "promote_replaced", "promote_synced")
RUN_FILE = "run.json"  # trainers.run writes it; read here without importing torch
MAX_CREATE_TRIES = 10  # object stores: generations lost to other writers before giving up

Action = Literal["promote", "rollback"]
_ANY = object()  # `expected` default: promote whatever is promoted now (a manual promote)


class UnknownModel(LookupError):
    """The named model is not a finished training run of this dataset."""


class PromotionConflict(RuntimeError):
    """The promoted model changed since the caller compared against it."""

    def __init__(self, expected: str | None, current: str | None):
        super().__init__(
            f"the promoted model is now {current or 'none'}, not {expected or 'none'} as "
            "compared against; compare again"
        )
        self.expected = expected
        self.current = current


class NothingToRollBack(LookupError):
    """No earlier promoted model to return to."""


class CannotContinue(ValueError):
    """`train.init: promoted` names a promoted model the recipe's train: cannot continue."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PromotionEvent:
    """One change of the pointer: which model became promoted, from which, and why."""

    generation: int
    action: Action
    model_id: str
    previous: str | None
    at: str
    reason: str


@dataclass(frozen=True)
class PromotedPointer:
    """The content of PROMOTED: the current model and every change that led to it."""

    model_id: str
    generation: int
    history: tuple[PromotionEvent, ...]

    def to_json(self) -> str:
        body = {
            "format": POINTER_FORMAT,
            "model_id": self.model_id,
            "generation": self.generation,
            "history": [asdict(e) for e in self.history],
        }
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PromotedPointer:
        body = json.loads(text)
        if body.get("format", POINTER_FORMAT) != POINTER_FORMAT:
            raise ValueError(
                f"promotion pointer has format {body['format']!r}; this roleforge reads "
                f"{POINTER_FORMAT!r}"
            )
        history = tuple(PromotionEvent(**e) for e in body["history"])
        return cls(body["model_id"], int(body["generation"]), history)

    def stack(self) -> list[str]:
        """Return the promoted models in force, oldest first: a promote pushes, a rollback pops."""
        stack: list[str] = []
        for event in self.history:
            if event.action == "rollback":
                stack.pop()
            else:
                stack.append(event.model_id)
        return stack


@dataclass(frozen=True)
class ModelEntry:
    """A finished training run as the registry lists it: lineage and headline metrics."""

    id: str
    path: str
    created: float
    dataset: dict[str, Any]  # name, version, content_id
    base_model: str  # the recipe's `model` (e.g. tiny-random or a hub id)
    base_path: str  # the weights the run started from (a folder for tiny-random)
    init: str | None  # None: started from the base model; else the model it continued
    lora: bool
    eval: dict[str, Any] = field(default_factory=dict)  # eval.json without the replies
    run: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # run.json
    uncompared: bool = False  # its retrain died before comparing it (trainers.pending)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.run["config"])

    def keep_media(self) -> list[str]:
        return list(self.run.get("keep_media") or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "created": self.created,
            "dataset": self.dataset,
            "base_model": self.base_model,
            "init": self.init or "base",
            "lora": self.lora,
            "eval": self.eval,
            "comparable": not self.uncompared,
        }


@dataclass(frozen=True)
class InitWeights:
    """Where `train.init: promoted` starts: the promoted model's base and its own weights."""

    model_id: str
    path: str  # the promoted run folder (adapter, or full weights)
    base_model: str  # what to load first: the promoted run's base (LoRA) or its folder (full)
    adapter: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelRegistry:
    """The models of one dataset and its promotion pointer."""

    def __init__(self, store: Store):
        self.store = store
        self.fs = store.fs
        self.root = os.path.join(store.root, "models")
        self.pointer_path = os.path.join(self.root, POINTER_FILE)
        self.generations_dir = os.path.join(self.root, GENERATIONS_DIR)

    @property
    def location(self) -> str:
        """Return the models folder as a user names it (`s3://...` or a local path)."""
        return self.fs.uri(self.root)

    # ---- models ----

    def models(self) -> list[ModelEntry]:
        """Return every finished run of this dataset, oldest first."""
        entries = []
        for name in self.fs.listdir(self.root):
            if name in (POINTER_FILE, GENERATIONS_DIR) or name.startswith("."):
                continue
            entry = self._entry(os.path.join(self.root, name))
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda e: (e.created, e.id))

    def get(self, model_id: str) -> ModelEntry:
        """Return one finished model; raise UnknownModel naming what exists."""
        is_name = os.path.basename(model_id) == model_id and model_id not in ("", ".", "..")
        entry = self._entry(os.path.join(self.root, model_id)) if is_name else None
        if entry is None:
            known = ", ".join(e.id for e in self.models()) or "none"
            raise UnknownModel(
                f"{model_id!r} is not a finished model of {self.store.name} (models: {known})"
            )
        return entry

    def _read_json(self, path: str) -> Any:
        """Return the JSON document at `path` on the store, or None when there is none."""
        try:
            return json.loads(self.fs.read_bytes(path))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _entry(self, run_dir: str) -> ModelEntry | None:
        try:
            info = self._read_json(os.path.join(run_dir, RUN_FILE))
        except json.JSONDecodeError:
            return None
        if not isinstance(info, dict):
            return None
        if info.get("status") != "done" or info["dataset"]["name"] != self.store.name:
            return None
        own = self._read_json(os.path.join(run_dir, "eval.json")) or {}
        evaluation = {k: v for k, v in own.items() if k != "replies"}
        init = info.get("init")
        return ModelEntry(
            id=os.path.basename(run_dir),
            path=run_dir,
            created=float(info["created"]),
            dataset=info["dataset"],
            base_model=info["config"].get("model", ""),
            base_path=info.get("base_model", ""),
            init=init["model_id"] if init else None,
            lora=info["config"].get("lora") is not None,
            eval=evaluation,
            run=info,
            uncompared=killed_before_comparison(self.store, os.path.basename(run_dir))
            and not self._ever_promoted(os.path.basename(run_dir)),
        )

    def _ever_promoted(self, model_id: str) -> bool:
        """Return whether `model_id` was promoted once (so it was compared)."""
        pointer = self.pointer()
        return pointer is not None and any(e.model_id == model_id for e in pointer.history)

    # ---- the pointer ----

    def pointer(self) -> PromotedPointer | None:
        """Return the promotion pointer, or None before the first promotion."""
        if not self.fs.is_local:
            return self._newest_generation()
        try:
            with open(self.pointer_path, encoding="utf-8") as f:
                return PromotedPointer.from_json(f.read())
        except FileNotFoundError:
            return None

    def _generation_path(self, generation: int) -> str:
        return os.path.join(self.generations_dir, f"{generation:012d}.json")

    def _newest_generation(self) -> PromotedPointer | None:
        generations = [
            int(n[: -len(".json")])
            for n in self.fs.listdir(self.generations_dir)
            if n.endswith(".json") and n[: -len(".json")].isdigit()
        ]
        if not generations:
            return None
        newest = max(generations)
        path = self._generation_path(newest)
        pointer = PromotedPointer.from_json(self.fs.read_bytes(path).decode("utf-8"))
        if pointer.generation != newest:
            raise ValueError(
                f"{self.fs.uri(path)} holds generation {pointer.generation}, not {newest}"
            )
        return pointer

    def promoted(self) -> ModelEntry | None:
        """Return the promoted model, or None before the first promotion."""
        pointer = self.pointer()
        return self.get(pointer.model_id) if pointer else None

    def _lock(self):
        busy = f"{self.pointer_path}: another promotion held the lock for over {LOCK_TIMEOUT_S:g} s"
        return file_lock(self.pointer_path + ".lock", LOCK_TIMEOUT_S, busy)

    def promote(
        self, model_id: str, reason: str, expected: Any = _ANY, action: Action = "promote"
    ) -> PromotedPointer:
        """Make `model_id` the promoted model; return the new pointer.

        With `expected` (a model id, or None for "nothing promoted yet") the swap happens only
        if that is still the promoted model, else PromotionConflict names the current one.
        """
        self.get(model_id)  # only finished models of this dataset can be promoted
        if not self.fs.is_local:

            def swap(current: PromotedPointer | None) -> tuple[str, Action]:
                current_id = current.model_id if current else None
                if expected is not _ANY and expected != current_id:
                    raise PromotionConflict(expected, current_id)
                return model_id, action

            return self._create_generation(swap, reason)
        with self._lock():
            fault_point("promote_locked")
            self._remove_stale_temp_files()
            current = self.pointer()
            current_id = current.model_id if current else None
            if expected is not _ANY and expected != current_id:
                raise PromotionConflict(expected, current_id)
            return self._replace(current, model_id, action, reason)

    def confirm(self, expected: str | None) -> PromotedPointer | None:
        """Return the pointer if it still names `expected`, else raise PromotionConflict
        (a refusal is only meaningful against the model that is promoted now)."""
        current = self.pointer()
        current_id = current.model_id if current else None
        if current_id != expected:
            raise PromotionConflict(expected, current_id)
        return current

    def rollback(self, reason: str = "rollback by hand") -> PromotedPointer:
        """Return to the model promoted before the current one; raise NothingToRollBack."""
        if not self.fs.is_local:
            return self._create_generation(
                lambda current: (self._earlier(current), "rollback"), reason
            )
        with self._lock():
            self._remove_stale_temp_files()
            current = self.pointer()
            return self._replace(current, self._earlier(current), "rollback", reason)

    def _earlier(self, current: PromotedPointer | None) -> str:
        """Return the model promoted before the current one; raise NothingToRollBack."""
        stack = current.stack() if current else []
        if len(stack) < 2:
            raise NothingToRollBack(f"{self.store.name}: no earlier promoted model to roll back to")
        try:  # a pointer to a removed or unfinished folder would break every init: promoted
            return self.get(stack[-2]).id
        except UnknownModel as exc:
            raise UnknownModel(f"cannot roll back to {stack[-2]}: {exc}") from None

    def _create_generation(
        self, change: Callable[[PromotedPointer | None], tuple[str, Action]], reason: str
    ) -> PromotedPointer:
        """Object stores: create the generation after the current one, holding the pointer
        `change(current)` -> (model id, action) makes; on losing the race for it, decide
        again on top of the winner's (`change` raises PromotionConflict when that no longer
        holds)."""
        for _ in range(MAX_CREATE_TRIES):
            current = self.pointer()
            model_id, action = change(current)
            pointer = _next_pointer(current, model_id, action, reason)
            try:
                self.fs.create_exclusive(
                    self._generation_path(pointer.generation), pointer.to_json().encode("utf-8")
                )
            except FileExistsError:
                logger.info("%s: generation %d was taken", self.store.name, pointer.generation)
                continue
            logger.info(
                "%s: %s %s (generation %d)", self.store.name, action, model_id, pointer.generation
            )
            return pointer
        raise RuntimeError(
            f"{self.store.name}: other writers took the next pointer generation "
            f"{MAX_CREATE_TRIES} times in a row; try again"
        )

    def _replace(
        self, current: PromotedPointer | None, model_id: str, action: Action, reason: str
    ) -> PromotedPointer:
        pointer = _next_pointer(current, model_id, action, reason)
        replace_file(self.pointer_path, pointer.to_json().encode("utf-8"), steps="promote")
        logger.info(
            "%s: %s %s (generation %d)", self.store.name, action, model_id, pointer.generation
        )
        return pointer

    def _remove_stale_temp_files(self) -> None:
        # Only a writer that died before its rename leaves one; we hold the lock, so no
        # live writer owns it.
        for stale in stale_temp_files(self.pointer_path):
            os.remove(stale)

    # ---- train.init: promoted ----

    def initial_weights(self, cfg: TrainConfig) -> InitWeights | None:
        """Return where a run with `cfg` starts: None for the base model, else the promoted
        model's weights; raise CannotContinue when the promoted model cannot be continued."""
        if cfg.init != "promoted":
            return None
        promoted = self.promoted()
        if promoted is None:
            logger.info(
                "%s: nothing promoted yet; init: promoted starts from the base", self.store.name
            )
            return None
        saved = promoted.config
        if (saved.lora is None) != (cfg.lora is None):
            kind = "a LoRA adapter" if promoted.lora else "fully fine-tuned"
            raise CannotContinue(
                f"train.init: promoted: model {promoted.id} is {kind}; set train.lora the same "
                "way to continue it, or use init: base"
            )
        if cfg.lora is not None and saved.lora is not None and cfg.lora.r != saved.lora.r:
            raise CannotContinue(
                f"train.init: promoted: model {promoted.id} has LoRA r={saved.lora.r}, the "
                f"recipe asks r={cfg.lora.r}; continuing keeps the adapter's shape"
            )
        base = promoted.base_path if promoted.lora else promoted.path
        return InitWeights(promoted.id, promoted.path, base, promoted.lora)


def _next_pointer(
    current: PromotedPointer | None, model_id: str, action: Action, reason: str
) -> PromotedPointer:
    """Return the pointer after `current` that names `model_id`, its event appended."""
    generation = (current.generation if current else 0) + 1
    event = PromotionEvent(
        generation=generation,
        action=action,
        model_id=model_id,
        previous=current.model_id if current else None,
        at=_now(),
        reason=reason,
    )
    return PromotedPointer(model_id, generation, (*(current.history if current else ()), event))


def continue_adapter(model: Any, adapter_dir: str) -> Any:
    """Return `model` wrapped with the saved LoRA adapter at `adapter_dir`, trainable."""
    from peft import PeftModel

    from trainers.models import quiet_peft_wrapping

    with quiet_peft_wrapping():
        peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    # The saved adapter names its base relative to the store (portable_adapter_config);
    # point it at the base loaded here, so peft finds its config.json when it saves.
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = model.name_or_path
    return peft_model

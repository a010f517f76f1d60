"""Scoring saved models on one version's held-out test split, the same way for every model.

The retrain job compares the new model with the promoted one (or the untrained base) on the
new version's test split. The new model's own eval.json was computed there by training; any
other model is evaluated here, and the result is kept in its folder under
`evals/<test split hash>-<protocol key>.json`, so a second comparison on the same rows
reuses it. The test split's hash is over its rows (`held_out_set`: the sorted (id, row
digest) pairs of the version's row-digest sidecars), so the same rows cut into other shards
are the same eval set. Model files are read and written through the store's filesystem; on an object
store a model's weights are downloaded to a local folder first (trainers.mirror).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline.store.manifest import Manifest, content_id
from pipeline.store.read import Store, VersionNotFound
from pipeline.store.row_digest import (
    ROW_DIGEST_SCHEMA,
    RowDigestsMismatch,
    read_checked_row_digests,
)
from trainers.comparison import EvalProtocol, EvalSet, Scored
from trainers.config import TrainConfig
from trainers.mirror import ModelMirror
from trainers.registry import ModelEntry

logger = logging.getLogger(__name__)

EVALS_DIR = "evals"


@dataclass(frozen=True)
class Weights:
    """What to load to evaluate a model: base weights, an optional adapter, the processor."""

    base_model: str
    adapter: str | None
    processor: str
    trust_remote_code: bool = False

    @classmethod
    def of(cls, entry: ModelEntry, cfg: TrainConfig) -> Weights:
        """Return the trained weights of a finished run (base + adapter, or its full weights)."""
        if entry.lora:
            return cls(entry.base_path, entry.path, entry.path, cfg.trust_remote_code)
        return cls(entry.path, None, entry.path, cfg.trust_remote_code)

    @classmethod
    def untrained(cls, entry: ModelEntry, cfg: TrainConfig) -> Weights:
        """Return the base model a run started from, without what training changed."""
        return cls(entry.base_path, None, entry.base_path, cfg.trust_remote_code)

    def local(self, mirror: ModelMirror) -> Weights:
        """Return these weights with store paths replaced by local copies (downloaded once)."""
        adapter = mirror.local(self.adapter) if self.adapter is not None else None
        return replace(
            self,
            base_model=mirror.local(self.base_model),
            adapter=adapter,
            processor=mirror.local(self.processor),
        )


def load_weights(weights: Weights) -> tuple[Any, Any, Any]:
    """Return (model, processor, spec) for `weights`, in eval mode."""
    from trainers.models import load_model, load_processor, resolve_model

    spec = resolve_model(weights.base_model, weights.trust_remote_code)
    model = load_model(spec, weights.trust_remote_code)
    if weights.adapter is not None:
        from peft import PeftModel

        from trainers.models import quiet_peft_wrapping

        with quiet_peft_wrapping():
            model = PeftModel.from_pretrained(model, weights.adapter)
    processor = load_processor(replace(spec, name=weights.processor), weights.trust_remote_code)
    return model.eval(), processor, spec


def evaluate_loaded(
    model: Any,
    processor: Any,
    spec: Any,
    shards: list[str],
    cfg: TrainConfig,
    keep_media: list[str] | tuple[str, ...],
    split: str = "test",
    fs: Any = None,
) -> dict[str, Any]:
    """Return the full evaluation (eval.json form) of a loaded model on `split`'s shards
    (on store filesystem `fs`, local when None)."""
    from trainers.chat import ChatFormatter
    from trainers.collator import RolePlayCollator
    from trainers.data import RolePlayDataset, SplitReader
    from trainers.encoding import ConversationEncoder
    from trainers.evaluate import TestEvaluator
    from trainers.loop import _forward_inputs

    encoder = ConversationEncoder(processor, multimodal=spec.multimodal, max_length=cfg.max_length)
    formatter = ChatFormatter(cfg.system_template, keep=frozenset(keep_media))
    data = RolePlayDataset(split, SplitReader(shards, fs), formatter, encoder)
    collator = RolePlayCollator(
        encoder.tokenizer.pad_token_id, accepted=_forward_inputs(model), encoder=encoder
    )
    evaluator = TestEvaluator(
        model, data, collator, cfg.batch_size, cfg.eval_prompts, cfg.max_new_tokens
    )
    return evaluator.run()


class HeldOutRowsUnreadable(RuntimeError):
    """A version's row-digest sidecar does not match its manifest (run `roleforge verify`)."""


def held_out_set(store: Store, manifest: Manifest, split: str = "test") -> EvalSet:
    """Return the eval set of `split` of a committed version, its identity a digest over the
    schema and the split's (id, row digest) pairs sorted by id: the layout (shard size, shard
    count, reused shards) does not change it, a changed row does.

    The pairs are read from the version's sidecars (checked against the manifest's sha256
    of each), never recomputed from the media. A version without sidecars (manifest format
    1) keeps the identity over its shard files' hashes (`EvalSet.of`): its rows' digests are
    nowhere to read, and an identity can only tell fewer sets apart, never call two
    different sets the same."""
    files = EvalSet.of(manifest, split)
    shards = [s for s in manifest.shards if s.split == split]
    if any(s.row_digests is None for s in shards):
        return files
    folder = store.version_dir(manifest.number)
    tables = []
    for shard in shards:
        path = os.path.join(folder, shard.row_digests)
        try:
            table = read_checked_row_digests(path, shard.row_digests_sha256, store.fs)
        except RowDigestsMismatch:
            raise HeldOutRowsUnreadable(
                f"{store.fs.uri(path)}: row digests of {manifest.name}@v{manifest.number} "
                "do not match its manifest; run `roleforge verify`"
            ) from None
        tables.append(table.select(ROW_DIGEST_SCHEMA.names))
    return replace(files, sha256=content_id(manifest.schema_sha256, tables))


def _brief(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in evaluation.items() if k != "replies"}


class HeldOutScorer:
    """Scores models on one version's test split under the protocol of one training config."""

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        cfg: TrainConfig,
        keep_media: list[str] | tuple[str, ...],
    ):
        self.eval_set = held_out_set(store, manifest, "test")
        # The identity evaluations cached before it was taken over rows: over these very
        # shard files, so a cache under it holds an evaluation on these rows.
        self.file_eval_set = EvalSet.of(manifest, "test")
        self.protocol = EvalProtocol.of(cfg, keep_media)
        self.shards = store.shard_paths(manifest, "test")
        self.store = store
        self.mirror = ModelMirror(store)
        self.cfg = cfg

    def _own_split(self, entry: ModelEntry) -> bool:
        """Return whether the test split the model was evaluated on holds these rows."""
        try:
            trained_on = self.store.manifest(int(entry.dataset["version"]))
        except VersionNotFound:
            return False
        same = held_out_set(self.store, trained_on, "test")
        return (
            same.sha256 == self.eval_set.sha256
            and trained_on.content_id == entry.dataset["content_id"]
        )

    def _cache_path(self, entry: ModelEntry, eval_set: EvalSet | None = None) -> str:
        sha256 = (eval_set or self.eval_set).sha256
        return os.path.join(entry.path, EVALS_DIR, f"{sha256[:16]}-{self.protocol.key()}.json")

    def trained(self, entry: ModelEntry) -> Scored:
        """Return the model's score from its own eval.json when training measured it on these
        very rows this way, else from an evaluation on them (cached in its folder)."""
        # Evaluations from before per-conversation losses were kept cannot be paired.
        if entry.eval and "per_sample" in entry.eval and self._own_split(entry):
            own = EvalProtocol.of(entry.config, entry.keep_media())
            if own == self.protocol:
                return Scored(
                    entry.id,
                    self.store.fs.uri(entry.path),
                    self.eval_set,
                    self.protocol,
                    entry.eval,
                    replies=self._own_replies(entry),
                )
        cached = self._read_cache(entry)
        if cached is None:
            logger.info("evaluating %s on %s", entry.id, self.eval_set.label())
            cached = self._evaluate(Weights.of(entry, entry.config))
            self._write_cache(entry, cached)
        return Scored(
            entry.id,
            self.store.fs.uri(entry.path),
            self.eval_set,
            self.protocol,
            _brief(cached),
            True,
            tuple(cached.get("replies") or ()),
        )

    def _own_replies(self, entry: ModelEntry) -> tuple[dict[str, Any], ...]:
        try:
            own = json.loads(self.store.fs.read_bytes(os.path.join(entry.path, "eval.json")))
        except FileNotFoundError:
            return ()
        return tuple(own.get("replies") or ())

    def untrained(self, entry: ModelEntry) -> Scored:
        """Return the score of the base model `entry` started from, evaluated here."""
        weights = Weights.untrained(entry, entry.config)
        logger.info(
            "evaluating the untrained base %s on %s", weights.base_model, self.eval_set.label()
        )
        evaluation = self._evaluate(weights)
        return Scored(
            None,
            weights.base_model,
            self.eval_set,
            self.protocol,
            _brief(evaluation),
            True,
            tuple(evaluation.get("replies") or ()),
        )

    def _evaluate(self, weights: Weights) -> dict[str, Any]:
        model, processor, spec = load_weights(weights.local(self.mirror))
        return evaluate_loaded(
            model,
            processor,
            spec,
            self.shards,
            self.cfg,
            self.protocol.keep_media,
            fs=self.store.fs,
        )

    def _read_cache(self, entry: ModelEntry) -> dict[str, Any] | None:
        """Return the cached evaluation of `entry` on these rows under this protocol: one
        cached under the rows' identity, else one cached under the older identity over
        shard files when it names these very files."""
        for eval_set in (self.eval_set, self.file_eval_set):
            cached = self._cached(entry, eval_set)
            if cached is not None:
                return cached
        return None

    def _cached(self, entry: ModelEntry, eval_set: EvalSet) -> dict[str, Any] | None:
        try:
            body = json.loads(self.store.fs.read_bytes(self._cache_path(entry, eval_set)))
        except FileNotFoundError:
            return None
        if body.get("eval_set", {}).get("sha256") != eval_set.sha256:
            return None
        if "per_sample" not in body["evaluation"]:
            return None  # written before per-conversation losses were kept
        return body["evaluation"]

    def _write_cache(self, entry: ModelEntry, evaluation: dict[str, Any]) -> None:
        body = {
            "eval_set": asdict(self.eval_set),
            "protocol": asdict(self.protocol),
            "evaluation": evaluation,
        }
        from trainers.loop import json_text

        self.store.fs.write_bytes(self._cache_path(entry), json_text(body).encode("utf-8"))

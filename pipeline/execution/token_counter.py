"""The token ledger's counter as the record pass's tasks hold it: built once per worker
process, on first use, never pickled with its processor.

`trainers.token_ledger.counter_for` loads a processor (seconds); the record pass's stages
travel to every task in one pickled context, so the stage holds this light handle instead
and each process builds (and keeps) the real counter the first time a record is counted.
"""

from __future__ import annotations

import functools
from typing import Any

from trainers.config import TrainConfig
from trainers.media import MediaHeaders
from trainers.token_ledger import counter_for


@functools.lru_cache(maxsize=4)
def _counter(train_json: str, tokenizer: str | None) -> Any:
    train = TrainConfig.model_validate_json(train_json) if train_json else None
    return counter_for(train, tokenizer)


class WorkerTokenCounter:
    """A TokenCounter for `quality.tokenizer` (else `train.model`), built lazily per process."""

    def __init__(self, train: TrainConfig | None, tokenizer: str | None):
        self._train_json = train.model_dump_json() if train is not None else ""
        self._tokenizer = tokenizer

    def _built(self) -> Any:
        return _counter(self._train_json, self._tokenizer)

    @property
    def processor_hash(self) -> str:
        return self._built().processor_hash

    def count(self, record: dict[str, Any]) -> int:
        return self._built().count(record)

    def count_many(
        self, records: list[dict[str, Any]], headers: MediaHeaders | None = None
    ) -> list[int]:
        return self._built().count_many(records, headers)

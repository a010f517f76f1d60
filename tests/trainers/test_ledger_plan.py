"""The trainer's length plan from the token ledger's counts: used only where they hold."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.record.schema import RECORD_SCHEMA, records_to_table
from pipeline.stages.base import BatchContext
from pipeline.stages.quality.tokens import TokenLedgerStage
from pipeline.store.read import Store
from tests.trainers.conftest import make_record, write_version
from trainers.chat import ChatFormatter
from trainers.data import RolePlayDataset, SplitReader
from trainers.encoding import ConversationEncoder
from trainers.token_ledger import ChatTokenCounter, counter_for, processor_hash

SYSTEM = "You are {name}. {profile}"


def _records() -> list[dict]:
    """Train rows of every media kind the check samples: image + audio, text only, audio."""
    rows = [make_record(i, "train", turns=2 + i % 3) for i in range(3)]
    rows += [make_record(10 + i, "train", images=0, audios=0, turns=3) for i in range(3)]
    rows += [make_record(20, "train", images=0, audios=1)]
    return rows


@pytest.fixture(scope="module")
def processor(tiny_omni):
    from trainers.models import load_processor, resolve_model

    return load_processor(resolve_model(tiny_omni))


@pytest.fixture(scope="module")
def ledger_rows(tiny_omni) -> list[dict]:
    """The train rows as ingest writes them: the ledger's count and hash in `quality`."""
    counter = ChatTokenCounter(tiny_omni, SYSTEM)
    table = records_to_table(_records(), RECORD_SCHEMA)
    return TokenLedgerStage(counter).process(table, BatchContext()).table.to_pylist()


def _reader(store: Path, rows: list[dict], name: str = "led") -> SplitReader:
    write_version(store, name, rows)
    versions = Store(str(store), name)
    return SplitReader(versions.shard_paths(versions.manifest(1), "train"))


class Calls:
    """Counts the encoder's renderings and tokenizations (the work the ledger saves)."""

    def __init__(self, encoder: ConversationEncoder):
        self.tokenize = self.render = 0
        tokenize, render = encoder._tokenize, encoder.render

        def counted_tokenize(*args, **kwargs):
            self.tokenize += 1
            return tokenize(*args, **kwargs)

        def counted_render(*args, **kwargs):
            self.render += 1
            return render(*args, **kwargs)

        encoder._tokenize, encoder.render = counted_tokenize, counted_render


def _dataset(reader, processor, max_length=4096, formatter=None, chat_template=None):
    encoder = ConversationEncoder(
        processor, multimodal=True, max_length=max_length, chat_template=chat_template
    )
    calls = Calls(encoder)
    data = RolePlayDataset("train", reader, formatter or ChatFormatter(SYSTEM), encoder)
    return data, calls


def _without_ledger(rows: list[dict]) -> list[dict]:
    return [{**r, "quality": None} for r in rows]


def test_matching_hash_plans_without_tokenizing_and_as_tokenizing_would(
    tmp_path, processor, ledger_rows
):
    data, calls = _dataset(_reader(tmp_path, ledger_rows), processor)
    tokenized, baseline = _dataset(
        _reader(tmp_path, _without_ledger(ledger_rows), "raw"), processor
    )
    assert data.plans == tokenized.plans and data.rows == tokenized.rows
    assert data.stats.tokens == tokenized.stats.tokens
    assert data.stats.planned_from_ledger == 7 and tokenized.stats.planned_from_ledger == 0
    # Only the first row of each media kind (image + audio, text only, audio) is tokenized,
    # to check the counts still hold; the tokenizing path tokenizes every row.
    assert calls.tokenize == 3 and baseline.tokenize == 7
    assert calls.render < baseline.render


@pytest.mark.parametrize(
    "change",
    ["no ledger column", "another system template", "another chat template", "media dropped"],
)
def test_counts_that_do_not_hold_for_the_trainer_are_tokenized_again(
    tmp_path, processor, ledger_rows, change
):
    rows, formatter, template = ledger_rows, ChatFormatter(SYSTEM), None
    if change == "no ledger column":
        rows = _without_ledger(rows)
    elif change == "another system template":
        formatter = ChatFormatter("You play {name}.")
    elif change == "another chat template":
        template = processor.chat_template.replace("<|im_start|>", "<|im_start|> ")
    else:
        formatter = ChatFormatter(SYSTEM, keep=frozenset({"image"}))
    data, calls = _dataset(_reader(tmp_path, rows), processor, 4096, formatter, template)
    if change == "media dropped":
        # The 4 rows with a clip lost it: their counts (clip included) no longer hold and
        # they are tokenized; the 3 text-only rows keep theirs (one tokenized as the check).
        assert data.stats.media_dropped_samples == 4
        assert data.stats.planned_from_ledger == 3 and calls.tokenize == 4 + 1
    else:
        assert data.stats.planned_from_ledger == 0 and calls.tokenize == 7


def test_a_row_over_max_length_is_planned_turn_by_turn_as_before(tmp_path, processor, ledger_rows):
    counts = sorted(r["quality"]["tokens"] for r in ledger_rows)
    limit = counts[3]  # three rows are longer: truncated or skipped
    data, calls = _dataset(_reader(tmp_path, ledger_rows), processor, limit)
    raw = _reader(tmp_path, _without_ledger(ledger_rows), "raw")
    tokenized, _ = _dataset(raw, processor, limit)
    assert data.plans == tokenized.plans and data.stats.truncated == tokenized.stats.truncated
    assert data.stats.skipped == tokenized.stats.skipped
    assert data.stats.truncated + data.stats.skipped == 3
    assert data.stats.planned_from_ledger == 4
    fitting = [r for r in ledger_rows if r["quality"]["tokens"] <= limit]
    kinds = {(bool(r["images"]), bool(r["audios"])) for r in fitting}
    assert calls.tokenize == 3 + len(kinds)  # the longer rows, and one check per media kind


def test_a_stale_count_under_the_right_hash_stops_the_ledger_for_the_split(
    tmp_path, processor, ledger_rows, caplog
):
    rows = [dict(r, quality=dict(r["quality"])) for r in ledger_rows]
    # The split's first row (the reader's rows are in id order), whose count is checked by
    # tokenizing: counted by code that changed since (no hash sees it).
    first = min(range(len(rows)), key=lambda i: rows[i]["id"])
    rows[first]["quality"]["tokens"] += 5
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        data, calls = _dataset(_reader(tmp_path, rows), processor)
    tokenized, _ = _dataset(_reader(tmp_path, _without_ledger(rows), "raw"), processor)
    assert data.plans == tokenized.plans and data.stats.planned_from_ledger == 0
    assert "not used" in caplog.text


def test_a_built_models_processor_never_matches_the_ledgers_byte_level_one(tiny_omni, processor):
    from trainers.config import TrainConfig
    from trainers.tiny import TEXT_CHAT_TEMPLATE, train_tokenizer

    for preset in ("tiny-random", "scratch-small"):
        ledger = counter_for(TrainConfig(model=preset, system_template=SYSTEM), None)
        # A run builds its model's tokenizer from the dataset's text (tiny_omni is one).
        assert ledger.processor_hash != processor_hash(processor, SYSTEM)
        text_only = train_tokenizer(["Ahoy, groundling! By the four winds."], vocab_size=320)
        text_only.chat_template = TEXT_CHAT_TEMPLATE
        assert ledger.processor_hash != processor_hash(text_only, SYSTEM)
    # A local model (quality.tokenizer = train.model) matches the trainer's own processor.
    assert ChatTokenCounter(tiny_omni, SYSTEM).processor_hash == processor_hash(processor, SYSTEM)

"""The token ledger: counts under the chat template, media expanded, and max_tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.stages.base import BatchContext
from pipeline.stages.quality.column import _blank as blank
from pipeline.stages.quality.column import with_quality
from pipeline.stages.quality.tokens import TokenLedgerStage, truncated

from .corpus import clean_pippa, record, table

CORPUS = Path(__file__).resolve().parents[4] / "examples" / "corpus"


class WordCounter:
    """Counts words plus 100 per image: enough to check the policies exactly."""

    processor_hash = "words-v1"

    def count(self, r):
        words = sum(len(m["content"].split()) for m in r["messages"])
        return words + 100 * len(r.get("images") or [])

    def count_many(self, records, headers=None):
        return [self.count(r) for r in records]


def _quality(out):
    return out.table["quality"].to_pylist()


@pytest.fixture(scope="module")
def tiny_counter():
    from trainers.token_ledger import counter_for

    return counter_for(None, None)  # no train section: tiny-random


def test_counts_land_in_the_column_with_the_processor_hash():
    out = TokenLedgerStage(WordCounter()).process(table(clean_pippa("a")), BatchContext())
    [q] = _quality(out)
    assert q["tokens"] == WordCounter().count(clean_pippa("a"))
    assert q["tokens_hash"] == "words-v1" and q["flags"] == []


def test_counts_keep_the_findings_of_the_checks_before_on_every_row():
    # Rows the checks gave a struct keep their flags, notes and language; a row without
    # one (quality null) gets a blank one with its count.
    batch = table(clean_pippa("a"), clean_pippa("b"), clean_pippa("c"))
    seen = {"flags": ["slop"], "notes": ["slop: 2 phrases"], "language": "en"}
    for nulls in (False, True):
        values = [None if nulls and i == 1 else {**blank(), **seen} for i in range(3)]
        before = with_quality(batch, values)
        out = TokenLedgerStage(WordCounter()).process(before, BatchContext())
        got = _quality(out)
        for i, q in enumerate(got):
            expected = blank() if values[i] is None else {**blank(), **seen}
            assert q == {**expected, "tokens": q["tokens"], "tokens_hash": "words-v1"}
            assert q["tokens"] == WordCounter().count(batch.slice(i, 1).to_pylist()[0])


def _long():
    r = record(
        "long",
        [
            ("user", "<image>Look"),
            ("assistant", "one two three"),
            ("user", "<image>And this"),
            ("assistant", "four five six seven"),
        ],
    )
    img = {"bytes": (CORPUS / "images" / "campfire.png").read_bytes(), "path": "c.png"}
    r["images"] = [img, img]
    return r


def test_truncate_drops_whole_turns_and_their_media_from_the_end():
    out = TokenLedgerStage(WordCounter(), max_tokens=120, policy="truncate").process(
        table(_long()), BatchContext()
    )
    [row] = out.table.to_pylist()
    assert [m["content"] for m in row["messages"]] == ["<image>Look", "one two three"]
    assert len(row["images"]) == 1
    assert row["quality"]["tokens"] == 104 and row["quality"]["flags"] == ["truncated"]
    assert out.stats["truncated"] == 1


def test_a_record_whose_first_character_turn_does_not_fit_leaves_even_under_truncate():
    out = TokenLedgerStage(WordCounter(), max_tokens=50, policy="truncate").process(
        table(_long(), clean_pippa("ok")), BatchContext()
    )
    assert out.table["id"].to_pylist() == ["ok"]
    assert [(r.record_id, r.reason) for r in out.rejects] == [("long", "too_many_tokens")]


def test_flag_and_quarantine_policies():
    flagged = TokenLedgerStage(WordCounter(), max_tokens=120).process(
        table(_long()), BatchContext()
    )
    assert _quality(flagged)[0]["flags"] == ["too_many_tokens"]
    quarantined = TokenLedgerStage(WordCounter(), max_tokens=120, policy="quarantine").process(
        table(_long()), BatchContext()
    )
    assert quarantined.table.num_rows == 0 and quarantined.rejects[0].reason == "too_many_tokens"


def test_truncated_keeps_media_in_placeholder_order():
    r = _long()
    assert len(truncated(r, 2)["images"]) == 1 and len(truncated(r, 4)["images"]) == 2


def test_tiny_random_counts_the_chat_template_and_image_expansion(tiny_counter):
    text_only = clean_pippa("t")
    with_image = clean_pippa("i")
    with_image["messages"][1]["content"] = "<image>" + with_image["messages"][1]["content"]
    with_image["images"] = [
        {"bytes": (CORPUS / "images" / "sea_storm.jpg").read_bytes(), "path": "s.jpg"}
    ]
    plain_bytes = sum(len(m["content"].encode()) for m in text_only["messages"])
    n_text, n_image = tiny_counter.count(text_only), tiny_counter.count(with_image)
    assert n_text > plain_bytes  # byte-level tokens plus the template's role markers
    assert n_image > n_text + 2  # the image expands to several tokens
    out = TokenLedgerStage(tiny_counter).process(table(text_only), BatchContext())
    assert _quality(out)[0]["tokens"] == n_text
    assert len(_quality(out)[0]["tokens_hash"]) == 64


def test_the_processor_hash_changes_with_the_system_template(tiny_counter):
    from trainers.token_ledger import processor_hash

    processor = tiny_counter.encoder.processor
    assert processor_hash(processor, "You are {name}.") != processor_hash(processor, "{name}")
    assert processor_hash(processor, "x") == processor_hash(processor, "x")


def test_a_from_scratch_preset_counts_offline_like_tiny_random(tiny_counter):
    # scratch-small (the demo's model) has no processor before a run trains its tokenizer:
    # the ledger counts it byte-level, offline, never asking the hub for a config.
    from trainers.config import TrainConfig
    from trainers.token_ledger import counter_for

    scratch = counter_for(TrainConfig(model="scratch-small"), None)
    record = clean_pippa("s")
    assert scratch.count(record) == tiny_counter.count(record)


def _whole_counts(tokenizer, texts):
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_counting_piece_by_piece_between_added_tokens_equals_tokenizing_whole_texts(
    tiny_counter,
):
    # The ledger counts each piece between two added tokens once: a character's system
    # prompt, a variant's turns augmentation left alone.
    pieces = tiny_counter.text
    assert pieces.splitter is not None
    records = [clean_pippa("a"), clean_pippa("b"), _long()]
    records[1]["messages"][0]["content"] = "A changed line, 你好 <|not special|>"
    encoder = tiny_counter.encoder
    texts = [encoder.length_parts(tiny_counter.formatter.format(r))[0] for r in records]
    expected = _whole_counts(encoder.tokenizer, texts)
    assert pieces.counts(texts) == expected
    remembered = len(pieces.pieces)
    assert pieces.counts(texts[::-1]) == expected[::-1] and len(pieces.pieces) == remembered
    assert tiny_counter.count_many(records) == [tiny_counter.count(r) for r in records]


def test_a_byte_level_tokenizer_without_merges_counts_bytes_as_tokenizing_would(tiny_counter):
    # The built model's ledger tokenizer has no merges: a piece is one token per UTF-8 byte,
    # counted without tokenizing; one with merges is tokenized piece by piece.
    from trainers.tiny import train_tokenizer
    from trainers.token_ledger import SegmentTokenCounter

    texts = [
        "<|im_start|>user\nplain words, 你好 🙂 é<|im_end|>\n<|im_start|>assistant\n",
        "  leading spaces\n\n<|IMAGE|><|AUDIO|>tail\t",
        "",
    ]
    assert tiny_counter.text.bytewise
    assert tiny_counter.text.counts(texts) == _whole_counts(tiny_counter.encoder.tokenizer, texts)
    merged = train_tokenizer(["plain words here, plain words"] * 20, vocab_size=300)
    counter = SegmentTokenCounter(merged)
    assert counter.splitter is not None and not counter.bytewise
    assert counter.counts(texts) == _whole_counts(merged, texts)


def test_a_tokenizer_that_strips_around_its_added_tokens_is_counted_whole():
    from tokenizers import AddedToken

    from trainers.tiny import train_tokenizer
    from trainers.token_ledger import SegmentTokenCounter

    tokenizer = train_tokenizer(["plain words here"], vocab_size=300)
    tokenizer.add_tokens([AddedToken("<sep>", lstrip=True, rstrip=True)])
    counter = SegmentTokenCounter(tokenizer)
    assert counter.splitter is None  # the probe found pieces do not count independently
    texts = ["plain <sep> words", "here  <sep>  here <sep>"]
    assert counter.counts(texts) == _whole_counts(tokenizer, texts)


def test_media_headers_read_by_validate_and_augment_count_as_a_header_read_would(tiny_counter):
    # The ledger takes a clip's frames and rate (and a variant image's size) from what
    # validation probed or decoded and augment's encoders wrote, and its rows from the batch context:
    # the counts must be those of the written rows read back, headers parsed again.
    from augmenters import RecordAugmenter
    from augmenters.config import AugmentConfig
    from pipeline.recipe import MediaLimits
    from pipeline.stages.augment import AugmentStage
    from pipeline.stages.validate import ValidateStage
    from tests.fixtures.media import audio_bytes

    r = _long()
    r["split"] = "train"
    r["messages"][2]["content"] += " <audio>"
    r["audios"] = [{"bytes": audio_bytes("WAV", 1.0, 8000), "path": "a.wav"}]
    augment = AugmentConfig(
        copies=2,
        image=[{"op": "HorizontalFlip", "p": 1.0}],
        audio=[{"op": "SpeedPerturb", "factors": [0.9]}],
    )
    ctx = BatchContext()
    batch = table(r, clean_pippa("t"))
    for stage in (
        ValidateStage(MediaLimits(), frozenset({"train"})),
        AugmentStage(RecordAugmenter(augment, 3, "h"), MediaLimits()),
        TokenLedgerStage(tiny_counter),
    ):
        batch = stage.process(batch, ctx).table
    assert batch.num_rows == 4
    noted = {id(data) for data, _ in ctx.media_headers.values()}
    train = [row for row in ctx.rows(batch) if row["split"] == "train"]
    assert len(train) == 3  # the original (its image decoded for augment) and its variants
    assert all(id(m["bytes"]) in noted for v in train for m in v["images"] + v["audios"])
    assert [q["tokens"] for q in _quality_of(batch)] == tiny_counter.count_many(batch.to_pylist())


def test_a_media_header_is_taken_for_its_own_bytes_object_only(tiny_counter):
    with_image = _long()
    data = with_image["images"][0]["bytes"]
    read = tiny_counter.count(with_image)
    # A 1x1 size noted for these very bytes is believed (so the count changes)...
    assert tiny_counter.count_many([with_image], {id(data): (data, (1, 1))}) != [read]
    # ... but never under another object's id, nor for equal bytes in another object.
    other = bytes(bytearray(data))
    wrong = {id(other): (other, (1, 1)), id(data): (other, (1, 1))}
    assert tiny_counter.count_many([with_image], wrong) == [read]


def _quality_of(batch):
    return batch["quality"].to_pylist()


def test_an_image_decoded_by_validation_is_noted_at_its_viewed_size(tiny_counter):
    import io

    from PIL import Image

    from pipeline.recipe import MediaLimits
    from pipeline.stages.validate import validate_record
    from trainers.media import image_size

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view: 37 wide, 23 high, seen 23 x 37
    buf = io.BytesIO()
    Image.new("RGB", (37, 23), (90, 40, 10)).save(buf, "JPEG", exif=exif)
    r = record("turned", [("user", "<image>Look"), ("assistant", "A tall one.")])
    r["images"] = [{"bytes": buf.getvalue(), "path": "t.jpg"}]
    ctx = BatchContext()
    validate_record(r, MediaLimits(), decoded={}, headers=ctx)
    data = r["images"][0]["bytes"]
    assert ctx.media_headers[id(data)] == (data, image_size(data)) == (data, (37, 23))
    assert tiny_counter.count_many([r], ctx.media_headers) == [tiny_counter.count(r)]

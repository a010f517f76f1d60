"""Model inputs: labels only on the character's tokens, left truncation at turn boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.store.read import Store
from tests.trainers.conftest import make_record
from trainers.chat import ChatFormatter
from trainers.collator import RolePlayCollator
from trainers.data import RolePlayDataset, SplitReader
from trainers.encoding import IGNORE_INDEX, ConversationEncoder, PlannedSample, SamplePlan

SYSTEM = "You are {name}. {profile}"


def labelled_runs(labels) -> list[list[int]]:
    """Return the maximal runs of positions whose label is set, as token id lists."""
    runs, current = [], []
    for value in labels.tolist():
        if value == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(value)
    return runs + ([current] if current else [])


def character_lines(record) -> list[str]:
    return [m["content"] for m in record["messages"] if m["role"] == "assistant"]


def chinese_record():
    record = make_record(3, "train", images=1, audios=1, turns=3)
    record["messages"][3]["content"] = "你好，旅行者！ The tea is 好喝."
    return record


def test_label_mask_decodes_to_exactly_the_characters_text(omni_processor):
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=1024)
    record = chinese_record()
    sample = ChatFormatter(SYSTEM).format(record)
    plan = encoder.plan(sample)
    item = encoder.encode(sample, plan)
    tok = encoder.tokenizer
    runs = labelled_runs(item["labels"])
    assert [tok.decode(r, skip_special_tokens=True) for r in runs] == character_lines(record)
    # Each labelled run ends on the end-of-turn token, so the model learns to stop.
    assert {r[-1] for r in runs} == {tok.convert_tokens_to_ids("<|im_end|>")}
    set_ = item["labels"] != IGNORE_INDEX
    assert (item["labels"][set_] == item["input_ids"][set_]).all()
    # The image and the clip are in the inputs, expanded to their tokens, never labelled.
    assert int((item["input_ids"] == omni_processor.image_token_id).sum()) == 4
    assert int((item["input_ids"] == omni_processor.audio_token_id).sum()) == 25
    assert {"pixel_values", "image_grid_thw", "input_features", "feature_attention_mask"} <= set(
        item
    )
    # The length plan reads media headers only, and still counts exactly.
    assert plan.status == "ok" and plan.length == len(item["input_ids"])


def test_label_mask_decodes_to_the_characters_text_for_a_text_only_tokenizer(causal_tokenizer):
    encoder = ConversationEncoder(causal_tokenizer, multimodal=False, max_length=1024)
    record = chinese_record()
    sample = ChatFormatter(SYSTEM, keep=frozenset()).format(record)
    item = encoder.encode(sample, encoder.plan(sample))
    runs = labelled_runs(item["labels"])
    decoded = [causal_tokenizer.decode(r, skip_special_tokens=True) for r in runs]
    assert decoded == character_lines(record)
    assert set(item) == {"input_ids", "attention_mask", "labels"}


def test_length_is_the_unlimited_plans_length_from_one_rendering(omni_processor, causal_tokenizer):
    # The token ledger counts with `length`; the trainer trusts those counts as its plan's.
    record = make_record(4, "train", images=1, audios=1, turns=3)
    record["messages"].append({"role": "user", "name": "Mira", "content": "Bye (no reply)"})
    for processor, multimodal, keep in (
        (omni_processor, True, frozenset({"image", "audio"})),
        (causal_tokenizer, False, frozenset()),
    ):
        encoder = ConversationEncoder(processor, multimodal=multimodal, max_length=1 << 30)
        for r in (record, chinese_record()):
            sample = ChatFormatter(SYSTEM, keep=keep).format(r)
            assert encoder.length(sample) == encoder.plan(sample).length > 0


def test_long_conversations_lose_whole_earliest_turns_and_keep_the_system_prompt(omni_processor):
    record = make_record(5, "train", images=1, audios=1, turns=4)
    sample = ChatFormatter(SYSTEM).format(record)
    full = ConversationEncoder(omni_processor, multimodal=True, max_length=4096).plan(sample)
    limit = full.length - 20
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=limit)
    plan = encoder.plan(sample)
    assert plan.status == "truncated"
    item = encoder.encode(sample, plan)
    assert len(item["input_ids"]) <= limit
    text = encoder.tokenizer.decode(item["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are Professor Hoot.")
    # The first exchange (which carried the image and the clip) went as a whole.
    assert text.split("<|im_end|>\n")[1].startswith("<|im_start|>user\nMira: ")
    assert "pixel_values" not in item and "input_features" not in item
    runs = labelled_runs(item["labels"])
    kept = [encoder.tokenizer.decode(r, skip_special_tokens=True) for r in runs]
    assert kept == character_lines(record)[-len(kept) :] and len(kept) == 3


def test_split_reports_truncated_and_skipped_samples(mm_store, omni_processor):
    store = Store(str(mm_store), "mm")
    manifest = store.manifest(1)
    formatter = ChatFormatter(SYSTEM)
    reader = SplitReader(store.shard_paths(manifest, "train"))
    lengths = [
        ConversationEncoder(omni_processor, multimodal=True, max_length=4096)
        .plan(formatter.format(reader.row(i)))
        .length
        for i in range(len(reader))
    ]
    limit = sorted(lengths)[len(lengths) // 2]  # half the samples are longer than this
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=limit)
    data = RolePlayDataset("train", reader, formatter, encoder)
    longer = sum(n > limit for n in lengths)
    assert data.stats.truncated + data.stats.skipped == longer > 0
    assert data.stats.used == len(data) == len(lengths) - data.stats.skipped
    assert all(len(data[i]["input_ids"]) <= limit for i in range(len(data)))
    tiny = RolePlayDataset(
        "train",
        reader,
        formatter,
        ConversationEncoder(omni_processor, multimodal=True, max_length=30),
    )
    assert tiny.stats.skipped == len(lengths) and len(tiny) == 0
    assert tiny.stats.skip_reasons == {"last character turn alone too long": len(lengths)}


def test_collator_pads_tokens_right_and_stacks_media(omni_processor):
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=1024)
    fmt = ChatFormatter(SYSTEM)
    samples = [
        fmt.format(make_record(0, "train", images=2, audios=1)),
        fmt.format(make_record(1, "train", images=0, audios=0)),
    ]
    items = [encoder.encode(s, encoder.plan(s)) for s in samples]
    collator = RolePlayCollator(pad_token_id=encoder.tokenizer.pad_token_id)
    batch = collator(items)
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert batch["input_ids"].shape == (2, max(n0, n1))
    assert batch["attention_mask"][1].tolist() == [1] * n1 + [0] * (n0 - n1)
    assert (batch["labels"][1, n1:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][1, n1:] == encoder.tokenizer.pad_token_id).all()
    assert batch["pixel_values"].shape == (8, 1176) and batch["image_grid_thw"].shape == (2, 3)
    assert batch["input_features"].shape == (1, 20, 3000)
    filtered = RolePlayCollator(0, accepted={"input_ids", "labels"})(items)
    assert set(filtered) == {"input_ids", "labels"}


def assert_same_batch(got: dict, want: dict) -> None:
    import torch

    assert list(sorted(got)) == list(sorted(want))
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def _batched_and_one_by_one(encoder: ConversationEncoder, planned: list[PlannedSample]):
    collator = RolePlayCollator(encoder.tokenizer.pad_token_id, encoder=encoder)
    return collator(planned), collator([encoder.encode(p.sample, p.plan) for p in planned])


@pytest.mark.parametrize("model", ["omni", "image-text", "text-only"])
def test_a_batch_encoded_together_equals_its_samples_encoded_one_by_one(
    model, omni_processor, causal_tokenizer, tiny_vl
):
    from transformers import AutoProcessor

    processor, keep = {
        "omni": (omni_processor, {"image", "audio"}),
        "image-text": (AutoProcessor.from_pretrained(tiny_vl), {"image"}),
        "text-only": (causal_tokenizer, set()),
    }[model]
    encoder = ConversationEncoder(processor, multimodal=bool(keep), max_length=1024)
    formatter = ChatFormatter(SYSTEM, keep=frozenset(keep))
    records = [
        make_record(0, "train", images=2, audios=1),
        make_record(1, "train", images=0, audios=0, turns=3),  # no media, longest
        make_record(2, "train", images=0, audios=1),
        chinese_record(),
    ]
    planned = [PlannedSample(s, encoder.plan(s)) for s in map(formatter.format, records)]
    batched, one_by_one = _batched_and_one_by_one(encoder, planned)
    assert_same_batch(batched, one_by_one)


def test_a_batch_sample_over_max_length_is_encoded_alone_and_loses_turns(omni_processor):
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=1024)
    formatter = ChatFormatter(SYSTEM)
    short = formatter.format(make_record(0, "train", images=0, audios=0))
    long = formatter.format(make_record(5, "train", images=1, audios=1, turns=4))
    full = encoder.plan(long)
    encoder.max_length = full.length - 20
    # A plan that underestimated the sample (templates are not always additive).
    planned = [
        PlannedSample(short, encoder.plan(short)),
        PlannedSample(long, SamplePlan(full.first, full.last, full.length - 20, "ok")),
    ]
    batched, one_by_one = _batched_and_one_by_one(encoder, planned)
    assert_same_batch(batched, one_by_one)
    assert int(batched["attention_mask"][1].sum()) <= encoder.max_length


def test_a_dataloader_fetches_planned_samples_that_the_collator_encodes_as_one_batch(
    mm_store, omni_processor
):
    from torch.utils.data import DataLoader

    store = Store(str(mm_store), "mm")
    reader = SplitReader(store.shard_paths(store.manifest(1), "train"))
    encoder = ConversationEncoder(omni_processor, multimodal=True, max_length=4096)
    data = RolePlayDataset("train", reader, ChatFormatter(SYSTEM), encoder)
    collator = RolePlayCollator(encoder.tokenizer.pad_token_id, encoder=encoder)
    planned = data.__getitems__([2, 0, 2])  # repeats: an oversampled mixture
    assert [p.sample.record_id for p in planned] == [data.record_ids()[i] for i in (2, 0, 2)]
    loader = DataLoader(data, batch_size=3, collate_fn=collator)
    assert_same_batch(next(iter(loader)), collator([data[i] for i in range(3)]))


def test_label_mask_decodes_to_the_characters_text_for_an_image_text_processor(tiny_vl):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vl)
    encoder = ConversationEncoder(processor, multimodal=True, max_length=1024)
    record = chinese_record()
    sample = ChatFormatter(SYSTEM, keep=frozenset({"image"})).format(record)
    plan = encoder.plan(sample)
    item = encoder.encode(sample, plan)
    runs = labelled_runs(item["labels"])
    decoded = [encoder.tokenizer.decode(r, skip_special_tokens=True) for r in runs]
    assert decoded == character_lines(record)
    assert int((item["input_ids"] == processor.image_token_id).sum()) == 4  # 56x56, merge 2
    assert item["mm_token_type_ids"].shape == item["input_ids"].shape
    assert plan.length == len(item["input_ids"])


# Qwen3's published chat template (Qwen/Qwen3-8B, tokenizer_config.json `chat_template`),
# verbatim: it drops reasoning from earlier assistant turns and writes an empty think block
# before the last one, so a conversation renders differently from its prefixes.
QWEN3_TEMPLATE = (Path(__file__).parent / "templates" / "qwen3.jinja").read_text()


def test_qwen3_template_masks_exactly_the_characters_turns(causal_tokenizer):
    encoder = ConversationEncoder(
        causal_tokenizer, multimodal=False, max_length=1024, chat_template=QWEN3_TEMPLATE
    )
    record = chinese_record()
    record["messages"][1]["content"] = (
        "<think>\nThe sky is red.\n</think>\n\n" + (record["messages"][1]["content"])
    )
    sample = ChatFormatter(SYSTEM, keep=frozenset()).format(record)
    item = encoder.encode(sample, encoder.plan(sample))
    text = causal_tokenizer.decode(item["input_ids"])
    assert "The sky is red" not in text  # the template dropped the earlier reasoning
    assert text.count("<think>\n\n</think>") == 1  # and gave the last turn an empty block
    runs = labelled_runs(item["labels"])
    decoded = [causal_tokenizer.decode(r) for r in runs]
    lines = [line.split("</think>\n\n")[-1] for line in character_lines(record)]
    assert decoded == [line + "<|im_end|>" for line in lines]


def test_a_template_without_generation_markers_still_masks_the_characters_turns(
    causal_tokenizer,
):
    from trainers.models import DEFAULT_TEXT_TEMPLATE

    assert "{% generation %}" not in DEFAULT_TEXT_TEMPLATE
    encoder = ConversationEncoder(
        causal_tokenizer, multimodal=False, max_length=1024, chat_template=DEFAULT_TEXT_TEMPLATE
    )
    record = chinese_record()
    sample = ChatFormatter(SYSTEM, keep=frozenset()).format(record)
    item = encoder.encode(sample, encoder.plan(sample))
    decoded = [causal_tokenizer.decode(r) for r in labelled_runs(item["labels"])]
    assert decoded == [line + "<|im_end|>" for line in character_lines(record)]


def test_rendering_with_the_compiled_template_equals_apply_chat_template(omni_processor, tiny_vl):
    # The encoder renders with the processor's compiled template directly once its first
    # rendering agreed with apply_chat_template's, and message by message where the
    # template renders each message alone; every rendering must still agree.
    from transformers import AutoProcessor

    both = frozenset({"image", "audio"})
    cases = [(omni_processor, both, None, True)]
    other = omni_processor.chat_template.replace("<|im_start|>", "<|im_start|> ")
    cases.append((omni_processor, both, other, True))
    # A default system prompt before the first message: not rendered message by message.
    first = omni_processor.chat_template.replace(
        "{{- '<|im_start|>' + message['role']",
        "{%- if loop.first and message['role'] != 'system' -%}{{- '<|im_start|>system\\nHi"
        "<|im_end|>\\n' -}}{%- endif -%}{{- '<|im_start|>' + message['role']",
    )
    assert first != omni_processor.chat_template
    cases.append((omni_processor, both, first, False))
    cases.append((AutoProcessor.from_pretrained(tiny_vl), frozenset({"image"}), None, True))
    records = [chinese_record(), make_record(6, "train", images=2, audios=1, turns=4)]
    for processor, keep, template, by_message in cases:
        encoder = ConversationEncoder(
            processor, multimodal=True, max_length=1024, chat_template=template
        )
        for record in records:
            turns = ChatFormatter(SYSTEM, keep=keep).format(record).turns
            for cut, prompt in ((len(turns), False), (1, True), (len(turns) - 1, True)):
                messages = [{"role": t.role, "content": t.parts()} for t in turns[:cut]]
                expected = processor.apply_chat_template(
                    messages, chat_template=template, tokenize=False, add_generation_prompt=prompt
                )
                assert encoder.render(turns[:cut], add_generation_prompt=prompt) == expected
                # A later rendering of the same turns (pieces seen before) still agrees.
                assert encoder.render(turns[:cut], add_generation_prompt=prompt) == expected
        assert encoder._direct is True
        assert encoder._per_message is by_message

"""Replies for reading: generated in batches, greedy and seeded-sampled, scored per character."""

from __future__ import annotations

from pipeline.store.read import Store
from trainers.chat import ChatFormatter
from trainers.collator import RolePlayCollator
from trainers.config import TrainConfig
from trainers.data import RolePlayDataset, SplitReader
from trainers.encoding import ConversationEncoder
from trainers.evaluate import TestEvaluator
from trainers.heldout import Weights, load_weights
from trainers.loop import _forward_inputs


def evaluator(tiny_omni: str, mm_store, batch_size: int) -> TestEvaluator:
    model, processor, spec = load_weights(Weights(tiny_omni, None, tiny_omni))
    store = Store(str(mm_store), "mm")
    shards = store.shard_paths(store.manifest(1), "test")
    encoder = ConversationEncoder(processor, multimodal=True, max_length=512)
    formatter = ChatFormatter(TrainConfig().system_template, keep=frozenset({"image", "audio"}))
    data = RolePlayDataset("test", SplitReader(shards), formatter, encoder)
    collator = RolePlayCollator(encoder.tokenizer.pad_token_id, accepted=_forward_inputs(model))
    return TestEvaluator(model, data, collator, batch_size, prompts=3, max_new_tokens=6)


def test_batched_greedy_replies_equal_replies_generated_one_at_a_time(tiny_omni, mm_store):
    batched = evaluator(tiny_omni, mm_store, batch_size=3)
    inputs = [built for _, built, _ in batched.prompts_to_answer()]
    assert len(inputs) == 3
    together = batched.generate(inputs)
    batched.batch_size = 1
    assert batched.generate(inputs) == together
    assert any(together)


def test_sampled_replies_repeat_for_a_seed(tiny_omni, mm_store):
    ev = evaluator(tiny_omni, mm_store, batch_size=3)
    inputs = [built for _, built, _ in ev.prompts_to_answer()]
    assert ev.generate(inputs, sample_seed=5) == ev.generate(inputs, sample_seed=5)


def test_each_reply_carries_its_reference_scores_and_the_run_their_per_character_means(
    tiny_omni, mm_store
):
    result = evaluator(tiny_omni, mm_store, batch_size=2).run()
    replies = result["replies"]
    assert len(replies) == 3 and all({"rouge_l", "chrf", "sampled"} <= set(r) for r in replies)
    per_character = result["reference_scores_per_character"]
    assert set(per_character) == {r["character"] for r in replies}
    assert result["generation"]["sampled"]["seed"] == 0
    assert set(result["per_sample"]) == {r["id"] for r in replies}

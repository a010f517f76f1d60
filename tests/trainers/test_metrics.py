"""Role-play reply metrics: AI exposure, speaker leakage, catchphrases, distinct-n."""

from __future__ import annotations

import pytest

from trainers.metrics import (
    Reply,
    ai_exposure,
    catchphrase_hit,
    distinct_n,
    reply_metrics,
    speaker_leakage,
    words,
)


@pytest.mark.parametrize(
    ("text", "exposed"),
    [
        ("As an AI, I cannot sail.", True),
        ("I'm just a large language model.", True),
        ("I am an AI assistant created to help.", True),
        ("By the four winds, hoist the sails!", False),
        ("The AIrship flies at dawn.", False),
    ],
)
def test_ai_exposure_flags_replies_that_break_character_as_an_assistant(text, exposed):
    assert ai_exposure(text) is exposed


def test_speaker_leakage_flags_another_speakers_name_prefix():
    assert speaker_leakage("Aye.\nMira: and then I said", ["Mira"])
    assert speaker_leakage("User: what now?", [])
    assert not speaker_leakage("I told Mira the plan: sail north.", ["Mira"])


def test_catchphrase_hits_ignore_case_and_trailing_punctuation():
    assert catchphrase_hit("well, by the four winds we go", ["By the four winds!"])
    assert not catchphrase_hit("we go", ["By the four winds!"])


def test_distinct_n_counts_unique_ngrams_and_chinese_by_character():
    assert distinct_n(["a a a a"], 1) == 0.25
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert distinct_n([""], 1) is None
    assert words("你好 Mira!") == ["你", "好", "mira"]


def test_reply_metrics_are_shares_of_replies():
    replies = [
        Reply("As an AI I must decline.", ["Mira"], ["Trust the sky."]),
        Reply("Trust the sky, Mira.", ["Mira"], ["Trust the sky."]),
        Reply("Mira: hello", ["Mira"], []),
        Reply("Ahoy there friend", [], ["Ahoy"]),
    ]
    m = reply_metrics(replies)
    assert m["replies"] == 4
    assert m["ai_exposure_rate"] == 0.25
    assert m["speaker_leakage_rate"] == 0.25
    assert m["catchphrase_hit_rate"] == pytest.approx(2 / 3)
    assert m["mean_reply_words"] == pytest.approx((6 + 4 + 2 + 3) / 4)
    assert reply_metrics([]) == {"replies": 0}


def test_rouge_l_is_the_f1_of_the_longest_common_word_subsequence() -> None:
    from trainers.metrics import rouge_l

    # LCS "the cat the mat" = 4 words; precision 4/6, recall 4/6.
    assert rouge_l("the cat sat on the mat", "the cat lay by the mat") == pytest.approx(4 / 6)
    assert rouge_l("By the four winds!", "by the four winds") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("sky", "sea") == 0.0


def test_chrf_weights_recall_and_ignores_whitespace() -> None:
    from trainers.metrics import chrf

    assert chrf("trust the sky", "trustthesky") == 1.0
    assert chrf("abc", "xyz") == 0.0
    short = chrf("trust", "trust the sky")  # all precise, little recalled
    long = chrf("trust the sky and the sea", "trust the sky")  # all recalled, less precise
    assert 0 < short < long < 1


def test_reference_scores_take_the_best_of_several_references() -> None:
    from trainers.metrics import chrf, reference_scores, rouge_l

    reply = "we climb above the storm"
    references = ["reef the sails and tie down the cargo", "we climb above the storm", "no"]
    scores = reference_scores(reply, references)
    assert scores == {"rouge_l": 1.0, "chrf": 1.0}
    # One reference alone scores as before; the best is never below any single one.
    alone = reference_scores(reply, references[:1])
    assert alone == {"rouge_l": rouge_l(reply, references[0]), "chrf": chrf(reply, references[0])}
    assert alone["rouge_l"] < scores["rouge_l"] and alone["chrf"] < scores["chrf"]


class _PromptOnly:
    """An encoder that cuts a sample before its last character turn, with no tokenizer."""

    max_length = 64

    def prompt(self, sample):
        import numpy as np

        last = max(i for i, t in enumerate(sample.turns) if t.role == "assistant")
        return {"input_ids": np.zeros((1, 4))}, sample.turns[last].text


def test_evaluation_scores_a_reply_against_the_records_further_references_too() -> None:
    from types import SimpleNamespace

    from pipeline.record.schema import RECORD_SCHEMA, records_to_table
    from trainers.chat import ChatFormatter
    from trainers.data import SplitReader
    from trainers.evaluate import TestEvaluator

    def record(rid: str, target: str, references: list[str] | None) -> dict:
        return {
            "id": rid,
            "source": "rolebench",
            "character": {"name": "Mira", "catchphrases": [], "aliases": []},
            "messages": [
                {"role": "user", "name": None, "content": "Storm ahead?"},
                {"role": "assistant", "name": None, "content": target},
            ],
            "references": references,
        }

    reader = SplitReader([])
    reader._table = records_to_table(
        [
            record("a", "reef the sails and tie down the cargo", ["we climb above the storm"]),
            record("b", "reef the sails and tie down the cargo", None),
        ],
        RECORD_SCHEMA,
    )
    formatter = ChatFormatter("You are {name}.")
    dataset = SimpleNamespace(
        reader=reader, encoder=_PromptOnly(), sample=lambda row: formatter.format(reader.row(row))
    )
    evaluator = TestEvaluator(None, dataset, None, batch_size=2, prompts=2, max_new_tokens=4)
    evaluator.generate = lambda inputs, sample_seed=None: ["we climb above the storm"] * 2
    a, b = evaluator.replies()
    assert a["reference"] == b["reference"] == "reef the sails and tie down the cargo"
    assert a["references"] == ["we climb above the storm"] and "references" not in b
    # The same reply: the best of a's references is its own words; b has only the target.
    assert a["rouge_l"] == 1.0 and a["chrf"] == 1.0
    assert b["rouge_l"] < 0.5 and b["chrf"] < 0.5

"""The role-play checks, each called through its `process` on corpus-shaped records."""

from __future__ import annotations

import pytest

from pipeline.stages.base import BatchContext
from pipeline.stages.quality.ai_exposure import AiExposureStage
from pipeline.stages.quality.config import (
    AiExposureConfig,
    LanguageConfig,
    MacroConfig,
    QualityConfig,
    RepetitionConfig,
    SlopConfig,
    SpeakerLeakConfig,
)
from pipeline.stages.quality.conversation import words
from pipeline.stages.quality.language import LanguageMismatchStage
from pipeline.stages.quality.repetition import RepetitionStage, repeated_fraction
from pipeline.stages.quality.slop import SlopStage
from pipeline.stages.quality.speaker_leak import SpeakerLeakStage
from pipeline.stages.quality.stages import lint_stages
from pipeline.stages.quality.unresolved_macro import UnresolvedMacroStage

from .corpus import clean_chinese, clean_pippa, record, table


def _with_reply(record_id: str, reply: str, **kw):
    base = clean_pippa(record_id)
    base["messages"].append({"role": "user", "name": "Anon", "content": "And then?"})
    base["messages"].append({"role": "assistant", "name": None, "content": reply})
    return base


def _flags(out):
    return [q["flags"] if q else [] for q in out.table["quality"].to_pylist()]


def test_ai_exposure_quarantines_an_english_self_description_and_keeps_the_clean_record():
    bad = _with_reply("bad", "As an AI language model, I cannot keep a lighthouse.")
    ctx = BatchContext()
    out = AiExposureStage(AiExposureConfig()).process(table(clean_pippa(), bad), ctx)
    assert out.table["id"].to_pylist() == ["clean"]
    assert [(r.reason, r.record_id, r.stage) for r in out.rejects] == [
        ("ai_exposure", "bad", "quality.ai_exposure")
    ]
    assert "As an AI language model" in out.rejects[0].message
    assert out.stats["ai_exposure"] == 1
    assert ("bad", "quality.ai_exposure") not in ctx.facts  # it left the batch


def test_ai_exposure_finds_chinese_refusals_and_recipe_phrases_but_not_talk_about_ai():
    zh = clean_chinese("zh")
    zh["messages"][-1]["content"] = "作为一个人工智能，我无法品尝茶。"
    robot = _with_reply("robot", "Artificial intelligence? The harbour robots run on it, lad.")
    custom = _with_reply("custom", "Beep boop, I'm only a program here.")
    config = AiExposureConfig(policy="flag", phrases=["only a program"])
    ctx = BatchContext()
    out = AiExposureStage(config).process(table(zh, robot, custom), ctx)
    assert _flags(out) == [["ai_exposure"], [], ["ai_exposure"]]
    assert sorted(k[0] for k in ctx.facts) == ["custom", "zh"]


def test_ai_exposure_finds_the_replies_found_in_chatharuhi():
    # Character turns of LC1332/Chat-Haruhi-Suzumiya characters/haruhi/all_chat_datas.jsonl.
    replies = [
        "「这是因为我是一个AI语言模型，我可以通过学习大量的语言数据和算法来模拟」",
        "抱歉，我只是一个语言模型，无法获取实时的天气信息。",
        "我是AI语言模型，正在扮演凉宫春日，为您提供相关的回答。",
    ]
    records = []
    for i, reply in enumerate(replies):
        r = clean_chinese(f"h{i}")
        r["messages"][-1]["content"] = reply
        records.append(r)
    out = AiExposureStage(AiExposureConfig()).process(table(*records), BatchContext())
    assert len(out.rejects) == 3 and out.table.num_rows == 0


def test_speaker_leak_finds_the_users_name_or_user_label_on_a_line_of_a_character_turn():
    leak = _with_reply("leak", "*He laughs.* Storms pass.\nAnon: Do they always?\nAye, always.")
    label = _with_reply("label", "Storms pass. {{user}}: really?")
    ok = _with_reply("ok", "Note: the lamp must be wound at dusk. Remember: dusk.")
    out = SpeakerLeakStage(SpeakerLeakConfig()).process(table(leak, label, ok), BatchContext())
    assert _flags(out) == [["speaker_leak"], ["speaker_leak"], []]
    assert out.rejects == []  # flag is the default


def test_unresolved_macro_quarantines_braces_and_tags_left_in_any_turn():
    char = _with_reply("char", "Welcome, {{user}}! I am {{char}}.")
    rand = record("rand", [("system", "Mood: {{random:calm,grim}}"), ("assistant", "Evening.")])
    tag = record("tag", [("user", "<USER> waves."), ("assistant", "Evening.")])
    ok = _with_reply("ok", "The sign reads {curly} and [square]; nothing else.")
    out = UnresolvedMacroStage(MacroConfig()).process(table(char, rand, tag, ok), BatchContext())
    assert out.table["id"].to_pylist() == ["ok"]
    assert sorted(r.record_id for r in out.rejects) == ["char", "rand", "tag"]
    assert all(r.reason == "unresolved_macro" for r in out.rejects)


def test_repetition_flags_a_character_pasting_the_same_paragraph_into_every_turn():
    para = "The lamp turns and the fog rolls and the gulls cry over the grey water tonight."
    looped = record(
        "loop",
        [
            ("user", "Hi"),
            ("assistant", para),
            ("user", "And?"),
            ("assistant", para),
            ("user", "Well?"),
            ("assistant", para),
        ],
    )
    stage = RepetitionStage(RepetitionConfig())
    out = stage.process(table(looped, clean_pippa()), BatchContext())
    assert _flags(out) == [["repetition"], []]
    assert "67%" in out.table["quality"].to_pylist()[0]["notes"][0]


def test_the_repeated_fraction_counts_each_n_gram_seen_before_within_each_text():
    # a b c a b c: abc bca cab abc, the last seen before; n-grams never span two texts.
    assert repeated_fraction(["A b, c a B c"], 3) == 0.25
    assert repeated_fraction(["a b c", "a b c"], 3) == 0.5
    assert repeated_fraction(["a b", "c"], 3) == 0.0
    # Chinese and Japanese characters are words one by one, beside spaced words.
    assert words("Mira 你好 SAYS") == ["mira", "你", "好", "says"]
    assert repeated_fraction(["好好好好"], 2) == 2 / 3


def test_slop_counts_shipped_and_recipe_phrases_and_only_flags():
    slop = _with_reply(
        "slop", "A shiver ran down her spine. Her voice, barely above a whisper, trembled."
    )
    one = _with_reply("one", "I can't help but laugh at that.")
    out = SlopStage(SlopConfig()).process(table(slop, one), BatchContext())
    assert _flags(out) == [["slop"], []]
    assert out.rejects == []
    extra = SlopStage(SlopConfig(phrases=["laugh at that"])).process(table(one), BatchContext())
    assert _flags(extra) == [["slop"]]
    with pytest.raises(ValueError):
        SlopConfig(policy="quarantine")


def test_a_slop_phrase_counts_only_from_the_start_of_a_word():
    inside = _with_reply("inside", "Ahi don't bite much. Ostrich tapestry, said the sign.")
    words = _with_reply("words", "I don't bite much. Such a rich tapestry, said the sign.")
    out = SlopStage(SlopConfig()).process(table(inside, words), BatchContext())
    assert _flags(out) == [[], ["slop"]]
    # A recipe phrase that opens with punctuation still counts after a space.
    extra = SlopStage(SlopConfig(phrases=["*smirks*"], min_hits=1))
    assert _flags(extra.process(table(_with_reply("s", "Oh? *smirks*")), BatchContext())) == [
        ["slop"]
    ]


def test_language_mismatch_flags_a_turn_in_another_language_and_records_the_language():
    mixed = clean_pippa("mixed")
    mixed["messages"][-1]["content"] = (
        "Quarante et un hivers. Mon père gardait la lampe avant moi, et sa mère avant lui. "
        "La lampe se moque de qui la remonte, pourvu que quelqu'un le fasse."
    )
    out = LanguageMismatchStage(LanguageConfig(policy="flag")).process(
        table(clean_pippa(), mixed, clean_chinese()), BatchContext()
    )
    assert _flags(out) == [[], ["language_mismatch"], []]
    assert [q["language"] for q in out.table["quality"].to_pylist()] == ["en", "en", "zh"]
    note = out.table["quality"].to_pylist()[1]["notes"][0]
    assert "is fr, the conversation en" in note


def test_a_short_latin_line_full_of_names_is_not_judged_against_another_latin_language():
    # From the ChatHaruhi Harry Potter dialogues: English that lingua reads as Portuguese.
    names = _with_reply("names", "Meteolojinx Recanto? No, I didn't. Thanks, D— I mean, Arthur.")
    out = LanguageMismatchStage(LanguageConfig(policy="flag")).process(table(names), BatchContext())
    assert _flags(out) == [[]]


def test_language_mismatch_judges_against_the_declared_language():
    stage = LanguageMismatchStage(LanguageConfig(expected="zh", policy="quarantine"))
    out = stage.process(table(clean_pippa(), clean_chinese()), BatchContext())
    assert out.table["id"].to_pylist() == ["yun"]
    assert [r.reason for r in out.rejects] == ["language_mismatch"]


def test_every_check_leaves_clean_corpus_records_alone():
    batch = table(clean_pippa(), clean_chinese())
    for stage in lint_stages(QualityConfig()):
        out = stage.process(batch, BatchContext())
        assert out.rejects == [] and out.table.num_rows == 2, stage.name
        assert all(not f for f in _flags(out)), stage.name


def test_a_check_set_off_is_left_out_of_the_stage_list():
    config = QualityConfig(slop={"policy": "off"}, repetition={"policy": "off"})
    names = [s.name for s in lint_stages(config)]
    assert "quality.slop" not in names and "quality.repetition" not in names
    assert "quality.ai_exposure" in names


def test_the_recipe_section_builds_every_stage_in_run_order(tmp_path):
    from pipeline.stages.quality.planner import NearDupPlan
    from pipeline.stages.quality.stages import quality_stages, token_ledger_stage

    held = tmp_path / "held.txt"
    held.write_text("a held-out line\n", encoding="utf-8")
    names = [s.name for s in quality_stages(QualityConfig(), NearDupPlan(), [str(held)])]
    assert names[-2:] == ["quality.contaminated", "quality.near_duplicate"]
    assert names[0] == "quality.unresolved_macro"
    assert token_ledger_stage(QualityConfig(count_tokens=False), counter=None) is None


def test_every_quality_stage_is_a_stage_and_survives_pickling_as_ray_ships_it(tmp_path):
    import pickle

    from pipeline.stages.base import Stage
    from pipeline.stages.quality.config import NearDupConfig
    from pipeline.stages.quality.planner import plan_near_duplicates
    from pipeline.stages.quality.signatures import near_dup_signatures
    from pipeline.stages.quality.stages import quality_stages

    held = tmp_path / "held.txt"
    held.write_text("nothing shared with the corpus here at all\n", encoding="utf-8")
    batch = table(clean_pippa("a"), clean_chinese("c"))
    plan = plan_near_duplicates(near_dup_signatures(batch, NearDupConfig()), NearDupConfig())
    for stage in quality_stages(QualityConfig(), plan, [str(held)]):
        assert isinstance(stage, Stage), stage
        copy = pickle.loads(pickle.dumps(stage))
        assert copy.process(batch, BatchContext()).table.equals(
            stage.process(batch, BatchContext()).table
        ), stage.name

"""Records become chat turns: persona as system prompt, other speakers as named user turns."""

from __future__ import annotations

from tests.trainers.conftest import CAPTAIN, make_record
from trainers.chat import ChatFormatter


def test_profile_becomes_the_system_prompt_and_speakers_become_named_user_turns():
    record = make_record(0, "train", images=1, audios=1)
    sample = ChatFormatter("You are {name}. {profile} Say: {catchphrases}").format(record)
    system = sample.turns[0]
    assert system.role == "system"
    assert system.text == (
        f"You are {CAPTAIN['name']}. {CAPTAIN['profile']} Say: By the four winds!; Trust the sky."
    )
    assert [t.role for t in sample.turns] == ["system", "user", "assistant", "user", "assistant"]
    assert sample.turns[1].text.startswith("Mira: <image> <audio> ")
    assert [k for k, _ in sample.turns[1].media] == ["image", "audio"]
    assert sample.turns[2].text == record["messages"][1]["content"]
    assert sample.speakers == ["Mira"] and sample.character == CAPTAIN["name"]


def test_record_system_lines_follow_the_persona_and_consecutive_speakers_merge():
    record = make_record(0, "train", images=0, audios=0)
    record["messages"] = [
        {"role": "system", "name": None, "content": "Stay in character."},
        {"role": "user", "name": "Mira", "content": "Hi!"},
        {"role": "user", "name": "Tom", "content": "Hello there."},
        {"role": "assistant", "name": None, "content": "Ahoy, both of you."},
    ]
    sample = ChatFormatter("You are {name}.").format(record)
    assert sample.turns[0].text == "You are Captain Vela.\n\nStay in character."
    assert [t.role for t in sample.turns] == ["system", "user", "assistant"]
    assert sample.turns[1].text == "Mira: Hi!\nTom: Hello there."
    assert sample.speakers == ["Mira", "Tom"]


def test_unknown_template_fields_stay_as_written():
    sample = ChatFormatter("{name} ({mood})").format(make_record(1, "train", images=0, audios=0))
    assert sample.turns[0].text == "Professor Hoot ({mood})"


def test_media_the_model_cannot_take_is_removed_with_its_placeholder_and_counted():
    record = make_record(0, "train", images=1, audios=1)
    sample = ChatFormatter("You are {name}.", keep=frozenset({"image"})).format(record)
    user = sample.turns[1]
    assert "<audio>" not in user.text and "<image>" in user.text
    assert [k for k, _ in user.media] == ["image"]
    assert sample.dropped_media == 1
    text_only = ChatFormatter("You are {name}.", keep=frozenset()).format(record)
    assert text_only.turns[1].text == "Mira: What do you make of this sky? (0.0)"
    assert text_only.turns[1].media == [] and text_only.dropped_media == 2

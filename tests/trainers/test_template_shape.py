"""Which chat templates render each message alone (read from the template's source)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import _compile_jinja_template

from trainers.template_shape import (
    overlaps_itself,
    renders_each_message_alone,
    without_generation_blocks,
)
from trainers.tiny import CHAT_TEMPLATE, TEXT_CHAT_TEMPLATE

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def alone(source: str) -> bool:
    return renders_each_message_alone(_compile_jinja_template(source).environment, source)


@pytest.mark.parametrize("source", [CHAT_TEMPLATE, TEXT_CHAT_TEMPLATE, CHATML])
def test_one_loop_over_the_messages_reading_only_the_message_renders_each_alone(source):
    assert alone(source)


@pytest.mark.parametrize(
    "source",
    [
        # A default system prompt before the first message (Qwen2-VL): depends on position.
        CHATML.replace(
            "<|im_start|>{{ message['role'] }}",
            "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nHi"
            "<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}",
        ),
        # Looking at another message.
        CHATML.replace("{{ message['content'] }}", "{{ messages[0]['content'] }}"),
        # State carried between iterations in a namespace (Qwen3's reasoning handling).
        "{% set ns = namespace(n=0) %}" + CHATML.replace("<|im_end|>", "{% set ns.n = 1 %}"),
        # A variable set outside the loop and read inside it.
        "{% set tag = 'x' %}" + CHATML.replace("<|im_end|>", "{{ tag }}"),
        # Leaving the loop early.
        CHATML.replace(
            "<|im_end|>\n", "<|im_end|>\n{% if message['role'] == 'x' %}{% break %}{% endif %}"
        ),
        # A filtered loop, and the clock.
        CHATML.replace("in messages", "in messages if message['role'] != 'tool'"),
        CHATML.replace("<|im_end|>", "{{ strftime_now('%Y') }}"),
        # No loop over the messages at all.
        "{{ messages | length }}",
    ],
    ids=[
        "loop-first",
        "other-message",
        "namespace",
        "outer-set",
        "break",
        "filter",
        "clock",
        "no-loop",
    ],
)
def test_a_template_that_could_render_a_message_differently_in_context_is_not_split(source):
    assert not alone(source)


def test_qwen3s_published_template_is_not_split():
    source = (Path(__file__).parent / "templates" / "qwen3.jinja").read_text()
    assert not alone(source)


def test_generation_blocks_inlined_render_what_the_template_renders():
    template = _compile_jinja_template(CHAT_TEMPLATE)
    inlined = without_generation_blocks(template.environment, CHAT_TEMPLATE)
    assert inlined is not None
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are Ann."}]},
        {"role": "user", "content": [{"type": "text", "text": "Bo: hi "}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "audio"}, {"type": "text", "text": " 好"}]},
        {"role": "assistant", "content": "plain text {{ not a macro }}"},
    ]
    for prompt in (False, True):
        for cut in range(len(messages) + 1):
            kwargs = {"messages": messages[:cut], "add_generation_prompt": prompt}
            assert inlined.render(**kwargs) == template.render(**kwargs)


def test_a_generation_block_that_sets_a_variable_is_not_inlined():
    source = CHAT_TEMPLATE.replace("{% generation %}", "{% generation %}{% set seen = true %}", 1)
    assert without_generation_blocks(_compile_jinja_template(source).environment, source) is None
    assert without_generation_blocks(_compile_jinja_template(CHATML).environment, CHATML) is None


@pytest.mark.parametrize(
    ("text", "overlaps"),
    [
        ("abcab", True),
        ("aa", True),
        ("<|im_start|>user\nX<|im_end|>\n", False),
        ("ab", False),
        ("", False),
    ],
)
def test_a_text_overlaps_itself_when_a_proper_prefix_is_also_its_suffix(text, overlaps):
    assert overlaps_itself(text) is overlaps

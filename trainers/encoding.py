"""Chat samples as model inputs: the processor's template, labels on the character's turns only.

Labels come from the chat template itself, without `{% generation %}` markers, so any
model's own template works: the conversation is rendered once per prefix, and the text an
assistant turn adds after the generation prompt (content and end-of-turn token, without
the trailing newline) is the labelled span. Spans are mapped to tokens through the offset
mapping, shifted past the placeholder expansions the processor reports.

Long conversations lose whole turns from the left (never part of a turn); the system
prompt always stays. A sample whose last character turn does not fit even alone is skipped.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from trainers.audio_features import lean_audio_processor
from trainers.chat import ChatSample, ChatTurn
from trainers.media import MediaHeaders, MediaTokenCounter, model_audio, model_image
from trainers.template_shape import (
    overlaps_itself,
    renders_each_message_alone,
    without_generation_blocks,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Per-token keys besides input_ids / attention_mask / labels that processors may return.
PER_TOKEN_KEYS = {"mm_token_type_ids", "token_type_ids"}
# Keys a processor returns that are bookkeeping, not model inputs.
_NOT_INPUTS = ("offset_mapping", "text_replacement_offsets", "num_audio_tokens")


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, as DataLoader workers always do.

    A batch's media features (image patches, filterbanks of clips of a few seconds) are
    many small tensor ops; spread over every core they mostly wait on each other. Encoding
    in the training process itself (no loader workers, the CPU default) this way, the
    batches of benchmarks/train_throughput.py took 0.12 instead of 0.32 CPU seconds per
    step on a shared 2-core machine (one sample at a time, before Whisper's padding was
    skipped; now 0.045 per batch of 4, as against 0.20 for the plain Trainer's collator)."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TemplateError(ValueError):
    """The chat template cannot be used to find the character's tokens."""


class _PrefixMismatch(Exception):
    """The template renders a prefix of a conversation differently from the whole."""


class _MixedSpecialTokens(Exception):
    """Texts of one batch disagree on whether the tokenizer adds special tokens."""


@dataclass(frozen=True)
class Layout:
    """A rendered conversation: its text, where each turn starts, and the labelled spans."""

    text: str
    bounds: list[int]  # char start of each turn, then len(text)
    assistant_spans: list[tuple[int, int]]


@dataclass(frozen=True)
class SamplePlan:
    """Which turns of a sample are kept (system prompt + turns[first:last+1]) and its length."""

    first: int
    last: int
    length: int
    status: Literal["ok", "truncated", "skipped"]
    reason: str = ""


@dataclass(frozen=True)
class PlannedSample:
    """A sample and its plan, not yet encoded: what the training DataLoader hands the
    collator, which encodes a whole batch at once (`ConversationEncoder.encode_batch`)."""

    sample: ChatSample
    plan: SamplePlan


@dataclass
class EncodedBatch:
    """Samples encoded together: each one's 1D token tensors (input_ids, attention_mask,
    labels, per-token extras), and the media features of the whole batch as the processor
    laid them out; `features` is None when each row carries its own (encoded one by one)."""

    rows: list[dict[str, Any]]
    features: dict[str, Any] | None


@dataclass
class _Tokens:
    ids: Any  # 1D LongTensor
    labels: Any  # 1D LongTensor
    per_turn: list[int]  # tokens per turn of the rendered conversation
    per_token: dict[str, Any] = field(default_factory=dict)  # 1D extras (mm_token_type_ids)
    features: dict[str, Any] = field(default_factory=dict)  # media tensors of a lone sample


class ConversationEncoder:
    """Builds input ids, labels and media features of ChatSamples for one model's processor.

    `processor` is a multimodal processor (multimodal=True) or a tokenizer (text-only
    causal LMs). `chat_template` overrides the processor's own template when given.
    """

    def __init__(
        self,
        processor: Any,
        *,
        multimodal: bool,
        max_length: int,
        chat_template: str | None = None,
    ):
        self.processor = processor
        self.multimodal = multimodal
        self.max_length = max_length
        self.chat_template = chat_template
        self.tokenizer = processor.tokenizer if multimodal else processor
        # What computes model inputs: the processor, with a Whisper feature extractor that
        # skips the spectrogram of each clip's padding to 30 s (same features, ~20x faster).
        self._inputs_processor = lean_audio_processor(processor) if multimodal else processor
        fe = getattr(processor, "feature_extractor", None) if multimodal else None
        self.sampling_rate = int(getattr(fe, "sampling_rate", 16000) or 16000)
        self.counter = MediaTokenCounter(processor, self.sampling_rate) if multimodal else None
        self._media_ids = {
            i
            for name in ("image_token_id", "audio_token_id", "video_token_id")
            if isinstance(i := getattr(processor, name, None), int)
        }
        # Rendering with the processor's compiled template directly: None until the first
        # rendering compares it with apply_chat_template's, then whether they agreed.
        self._direct: bool | None = None
        self._template: Any = None
        self._template_source = ""
        self._template_kwargs: dict[str, Any] = {}
        # Rendering message by message (`_render_by_message`): None until the first direct
        # rendering without a generation prompt compares it with the whole conversation's;
        # `_separator`: the rendering of the message put between two (`_render_pieces`).
        # `_piece_template`: the template the pieces are rendered with (the processor's, its
        # `{% generation %}` blocks inlined: `trainers.template_shape`; None: the same).
        self._per_message: bool | None = None
        self._separator = ""
        self._piece_template: Any = None

    # -- rendering ---------------------------------------------------------------------
    def render(self, turns: list[ChatTurn], add_generation_prompt: bool = False) -> str:
        """Return the template text of `turns` (media as the template's placeholders)."""
        messages = self._messages(turns)
        if self._direct:
            direct = self._direct_render(messages, add_generation_prompt)
            if direct is not None:
                if self._per_message is None and not add_generation_prompt:
                    self._per_message = self._by_message_agrees(turns, direct)
                return direct
        rendered = self.processor.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        if self._direct is None:
            # The first rendering checks the direct one against the processor's own.
            self._direct = self._direct_render(messages, add_generation_prompt) == rendered
            if not self._direct:
                logger.info("rendering through apply_chat_template: the direct rendering differs")
        return rendered

    def _direct_render(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool, template: Any = None
    ):
        """Return the processor's compiled template rendered over `messages` (plain dicts of
        strings, which apply_chat_template's sanitizing copies leave as they are), without
        its per-call preparation (~2/3 of a rendering's time); None where it cannot. What
        the template raises (a template refusing a conversation) is raised as the
        processor's own rendering would raise it. `template`: another compiled from the
        same source (`_piece_template`)."""
        if self._direct is False or not self.multimodal:
            return None
        if self._template is None:
            try:
                from transformers.utils.chat_template_utils import (
                    _compile_jinja_template,
                    _plain_template_data,
                )

                source = self.processor._resolve_chat_template(self.chat_template)
                self._template = _compile_jinja_template(source)
                self._template_source = source
                self._template_kwargs = _plain_template_data(
                    dict(self.tokenizer.special_tokens_map)
                )
            except (ImportError, AttributeError, TypeError, ValueError) as exc:
                logger.info("rendering through apply_chat_template: %s", exc)
                self._direct = False
                return None
        return (template or self._template).render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self._template_kwargs,
        )

    def render_many(
        self, conversations: list[list[ChatTurn]], add_generation_prompt: bool = False
    ) -> list[str]:
        """Return the template texts of several non-empty conversations, rendered in one
        call (the template's set-up, done once instead of per conversation, cost most of a
        rendering), or message by message where the template allows (`_render_by_message`)."""
        first: list[str] = []
        while conversations and (
            self._direct is None
            or (self._direct and self._per_message is None and not add_generation_prompt)
        ):
            # The first renderings decide how the others are rendered (`render`).
            first.append(self.render(conversations[0], add_generation_prompt))
            conversations = conversations[1:]
        if not conversations:
            return first
        if self._per_message and not add_generation_prompt and len(conversations) > 1:
            return first + self._render_by_message(conversations)
        messages = [self._messages(turns) for turns in conversations]
        if self._direct:
            direct = [self._direct_render(m, add_generation_prompt) for m in messages]
            if all(d is not None for d in direct):
                return first + direct
        return first + self.processor.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    # The text of the message that separates the messages of one rendering call
    # (`_render_pieces`): what no message of a corpus holds.
    SEPARATOR = "\x00\x1eroleforge\x1e\x00"
    # Plain string content, which the templates render without a loop over parts.
    _SEPARATOR_MESSAGE = {"role": "user", "content": SEPARATOR}

    def _render_by_message(self, conversations: list[list[ChatTurn]]) -> list[str]:
        """Return the direct rendering (no generation prompt) of each of `conversations` as
        the renderings of its messages one after another, for a template that renders each
        message alone (`_by_message_agrees`). Each distinct message of the call is rendered
        once, and all of them together, in one template call (`_render_pieces`; a call's
        set-up cost most of a rendering): a batch's variants share every turn augmentation
        left alone with their original, a conversation's prefixes (`_prefix_layout`) share
        all but their last turn, a character's chats its persona prompt. Nothing is kept
        between calls. The token ledger's 600 renderings of 200 benchmark records
        (originals and variants, 13 batches) took 0.127 ms a record whole, 0.031 this way
        (side by side, one loaded machine)."""
        # A message is its role and text (media as placeholders): what `_messages` reads.
        distinct: dict[tuple[str, str], ChatTurn] = {}
        for turns in conversations:
            for t in turns:
                distinct.setdefault((t.role, t.text), t)
        pieces = self._render_pieces(list(distinct.values()))
        return ["".join([pieces[(t.role, t.text)] for t in turns]) for turns in conversations]

    def _render_pieces(self, turns: list[ChatTurn]) -> dict[tuple[str, str], str]:
        """Return the rendering of each of `turns` alone, by (role, text), from one rendering
        of all of them with a separator message between each two: cut at the separator's
        rendering, which cannot overlap itself (`_by_message_agrees`), it gives exactly one
        piece per message unless a message's rendering holds the separator's too (then each
        message is rendered on its own)."""
        keys = [(t.role, t.text) for t in turns]
        if len(turns) > 1:
            messages = self._messages(turns)
            between = self._SEPARATOR_MESSAGE
            interleaved = [x for m in messages for x in (between, m)][1:]
            rendered = self._direct_render(interleaved, False, self._piece_template)
            parts = rendered.split(self._separator)
            if len(parts) == len(turns):
                return dict(zip(keys, parts, strict=True))
        return {
            k: self._direct_render(self._messages([t]), False, self._piece_template)
            for k, t in zip(keys, turns, strict=True)
        }

    def _by_message_agrees(self, turns: list[ChatTurn], rendered: str) -> bool:
        """Return whether the template renders each message alone (read from its source:
        `trainers.template_shape`) and renders nothing for no messages, and rendering
        `turns` message by message gives `rendered`, their direct rendering; and the
        separator message renders as a text `_render_pieces` can cut at (not empty, and
        two of its occurrences cannot overlap): else the messages would each take a
        template call, more than whole conversations take."""
        environment, source = self._template.environment, self._template_source
        try:
            if not renders_each_message_alone(environment, source):
                return False
            if self._direct_render([], False) != "":
                return False
            self._piece_template = without_generation_blocks(environment, source)
            separator = self._direct_render([self._SEPARATOR_MESSAGE], False, self._piece_template)
            if not separator or overlaps_itself(separator):
                return False
            self._separator = separator
            return self._render_by_message([turns])[0] == rendered
        except Exception:  # a template refusing a lone message or none: render whole
            return False

    def _messages(self, turns: list[ChatTurn]) -> list[dict[str, Any]]:
        if self.multimodal:
            return [{"role": t.role, "content": t.parts()} for t in turns]
        return [{"role": t.role, "content": t.text} for t in turns]

    def _generation_prompt(self, turns: list[ChatTurn]) -> str:
        try:
            return self.render(turns, add_generation_prompt=True)
        except Exception:  # some templates refuse an empty conversation
            if turns:
                raise
            return ""

    def layout(self, turns: list[ChatTurn]) -> Layout:
        """Return the rendered text of `turns`, turn boundaries and the character's spans.

        Templates whose prefixes render the same text (most) are read prefix by prefix.
        Templates that rewrite earlier turns (Qwen3's drops reasoning from earlier
        assistant turns and adds an empty think block to the last) are read by finding each
        character turn's own text, in order, in the full rendering (`_searched_layout`)."""
        text = self.render(turns)
        try:
            return self._prefix_layout(text, turns)
        except _PrefixMismatch:
            return self._searched_layout(text, turns)

    def _end_of_turn(self) -> str:
        """Return what the template writes right after a character turn's text (its
        end-of-turn token, e.g. `<|im_end|>`), trailing whitespace left out."""
        probe = "\x00roleforge\x00"
        rendered = self.render(
            [ChatTurn("user", "hi"), ChatTurn("assistant", probe), ChatTurn("user", "ok")]
        )
        after = rendered.split(probe, 1)[1]
        header = self.render([ChatTurn("user", "ok")])
        cut = after.find(header.strip()[:8]) if header.strip() else -1
        return (after[:cut] if cut > 0 else after).rstrip()

    def _searched_layout(self, text: str, turns: list[ChatTurn]) -> Layout:
        """Return the layout of a template that rewrites turns: each character turn's text
        found in order in `text`, its end-of-turn token included in the labelled span; a
        turn starts where the previous one's text (and end-of-turn token) ended."""
        end_token = self._end_of_turn()
        bounds, spans, cursor = [0], [], 0
        for k, turn in enumerate(turns):
            content = turn.text if turn.role == "assistant" else None
            if content:
                start = text.find(content, cursor)
                if start < 0 and "</think>" in content:
                    # Reasoning templates drop or move the think block: label the reply.
                    content = content.split("</think>")[-1].lstrip("\n")
                    start = text.find(content, cursor)
                if start < 0:
                    raise TemplateError(
                        "the model's chat template rewrites the character's turns beyond "
                        "recognition, so the character's tokens cannot be found"
                    )
                stop = start + len(content)
                if end_token and text.startswith(end_token, stop):
                    stop += len(end_token)
                spans.append((start, stop))
                cursor = stop
            elif turn.text:
                found = text.find(turn.text, cursor)
                cursor = found + len(turn.text) if found >= 0 else cursor
            if k < len(turns) - 1:
                bounds.append(cursor)
        bounds.append(len(text))
        return Layout(text=text, bounds=bounds, assistant_spans=spans)

    def _prefix_layout(self, text: str, turns: list[ChatTurn]) -> Layout:
        prefixes = [*self.render_many([turns[: k + 1] for k in range(len(turns) - 1)]), text]
        answered = [k for k, t in enumerate(turns) if t.role == "assistant"]
        prompts = dict(
            zip(
                [k for k in answered if k],
                self.render_many([turns[:k] for k in answered if k], add_generation_prompt=True),
                strict=True,
            )
        )
        bounds = [0]
        spans: list[tuple[int, int]] = []
        for k, turn in enumerate(turns):
            prefix = prefixes[k]
            if not text.startswith(prefix):
                raise _PrefixMismatch
            if turn.role == "assistant":
                prompt = prompts[k] if k else self._generation_prompt([])
                stop = len(prefix.rstrip())
                if not text.startswith(prompt) or len(prompt) > stop:
                    if k:
                        raise TemplateError(
                            "the chat template's generation prompt is not a prefix of the "
                            "conversation, so the character's tokens cannot be found"
                        )
                    prompt = ""  # an opening character turn: label from the start
                spans.append((len(prompt), stop))
            bounds.append(len(prefix))
        return Layout(text=text, bounds=bounds, assistant_spans=spans)

    # -- tokenizing --------------------------------------------------------------------
    def _tokenize(self, turns: list[ChatTurn], with_media: bool) -> _Tokens:
        media = [m for t in turns for m in t.media] if with_media else []
        tokens, features = self._tokenize_laid_out([self.layout(turns)], [media], [len(turns)])
        tokens[0].features = features  # one conversation: the batch's media are its own
        return tokens[0]

    def _tokenize_laid_out(
        self,
        layouts: list[Layout],
        media: list[list[tuple[str, bytes]]],
        turn_counts: list[int],
    ) -> tuple[list[_Tokens], dict[str, Any]]:
        """Return the tokens of rendered conversations tokenized together, and the media
        features of those with media, laid out by the processor in conversation order.

        Conversations with media go through one processor call (images nested per
        conversation and clips flat, as the processor's own `apply_chat_template` passes a
        batch), the others through one tokenizer call, as each went alone before."""
        import numpy as np
        import torch

        tokens: list[_Tokens | None] = [None] * len(layouts)
        features: dict[str, Any] = {}
        with_media = [i for i, m in enumerate(media) if m]
        if with_media:
            out = self._process(
                [layouts[i].text for i in with_media], [media[i] for i in with_media]
            )
            if "text_replacement_offsets" not in out:
                raise TemplateError(
                    f"{type(self.processor).__name__} does not report where it expands media "
                    "placeholders, so labels cannot be aligned"
                )
            lengths = out["attention_mask"].sum(dim=1).tolist()  # padded on the right
            offsets = np.asarray(out["offset_mapping"])
            for j, i in enumerate(with_media):
                n = lengths[j]
                shifts = [
                    (r["span"][1], r["new_span"][1] - r["span"][1])
                    for r in out["text_replacement_offsets"][j]
                ]
                per_token = {k: out[k][j, :n] for k in PER_TOKEN_KEYS & out.keys()}
                tokens[i] = self._labelled(
                    out["input_ids"][j, :n], offsets[j, :n], shifts, layouts[i], turn_counts[i]
                )
                tokens[i].per_token = per_token
            features = {
                k: v
                for k, v in out.items()
                if k not in (*_NOT_INPUTS, *PER_TOKEN_KEYS, "input_ids", "attention_mask")
            }
        text_only = [i for i, m in enumerate(media) if not m]
        if text_only:
            enc = self.tokenizer(
                [layouts[i].text for i in text_only],
                add_special_tokens=False,
                return_offsets_mapping=True,
            )
            for j, i in enumerate(text_only):
                ids = torch.tensor(enc["input_ids"][j], dtype=torch.long)
                offsets = np.asarray(enc["offset_mapping"][j]).reshape(-1, 2)
                tokens[i] = self._labelled(ids, offsets, [], layouts[i], turn_counts[i])
        return tokens, features

    def _process(self, texts: list[str], media: list[list[tuple[str, bytes]]]) -> Any:
        """Return the processor's output for `texts` with their media, padded on the right,
        with offsets and where each text's placeholders were expanded."""
        bos = self.tokenizer.bos_token
        special = {not (bos and text.startswith(bos)) for text in texts}
        if len(special) > 1:
            raise _MixedSpecialTokens
        images = [[model_image(b) for k, b in m if k == "image"] for m in media]
        audios = [model_audio(b, self.sampling_rate) for m in media for k, b in m if k == "audio"]
        return self._inputs_processor(
            text=texts,
            images=images if any(images) else None,
            audio=audios or None,
            add_special_tokens=special.pop(),
            padding=True,
            padding_side="right",
            return_attention_mask=True,
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
            return_tensors="pt",
        )

    def _labelled(
        self, ids: Any, offsets: Any, shifts: list[tuple[int, int]], layout: Layout, turns: int
    ) -> _Tokens:
        """Return the tokens `ids` of `layout`'s text with labels on the character's spans
        and the tokens of each turn; `offsets` are the tokens' character spans in the
        expanded text, `shifts` (end of a placeholder in the rendered text, characters its
        expansion added) map the layout's positions there."""
        import numpy as np
        import torch

        ends = [e for e, _ in shifts]
        gained = [0] + [g for _, g in shifts]

        def shift(char: int) -> int:
            return char + gained[bisect.bisect_right(ends, char)]

        starts, stops = offsets[:, 0], offsets[:, 1]
        mask = np.zeros(len(ids), dtype=bool)
        for a, b in layout.assistant_spans:
            a, b = shift(a), shift(b)
            mask |= (starts < b) & (stops > a)
        labels = torch.where(torch.from_numpy(mask), ids, torch.full_like(ids, IGNORE_INDEX))
        for media_id in self._media_ids:
            labels[ids == media_id] = IGNORE_INDEX
        turn_starts = [shift(b) for b in layout.bounds[1:-1]]
        turn_of = np.searchsorted(np.asarray(turn_starts, dtype=np.int64), starts, side="right")
        per_turn = np.bincount(turn_of, minlength=turns)[:turns].tolist()
        return _Tokens(ids=ids, labels=labels, per_turn=per_turn)

    # -- planning and encoding ---------------------------------------------------------
    def _kept(self, sample: ChatSample, first: int, last: int) -> list[ChatTurn]:
        head = sample.turns[:1] if sample.has_system else []
        return head + sample.turns[first : last + 1]

    def _turn_lengths(self, sample: ChatSample, last: int) -> list[int]:
        """Return the token count of each turn in turns[:last+1], media expanded."""
        turns = sample.turns[: last + 1]
        extra = [0] * len(turns)
        for i, turn in enumerate(turns):
            for kind, data in turn.media:
                n = self.counter.count(kind, data) if self.counter else None
                if n is None:
                    return self._tokenize(turns, with_media=True).per_turn
                extra[i] += n - 1  # the rendered placeholder is one token of these
        text_only = self._tokenize(turns, with_media=False).per_turn
        return [a + b for a, b in zip(text_only, extra, strict=True)]

    def length(self, sample: ChatSample) -> int:
        """Return the tokens of `sample` up to its last character turn, media expanded: the
        length `plan` gives it with no length limit, from one rendering and one tokenization
        (`plan` renders every prefix to find turn boundaries; a count does not need them)."""
        parts = self.length_parts(sample)
        if parts is None:
            return self.measured_length(sample)
        text, extra = parts
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + extra

    def length_parts(
        self, sample: ChatSample, headers: MediaHeaders | None = None
    ) -> tuple[str, int] | None:
        """Return what `length` adds up: the rendered text of the turns up to the last
        character turn, and the tokens its media add beyond their one placeholder token
        each; None when a medium's tokens cannot be counted from its header
        (`measured_length` then processes the sample). `headers`: what the caller already
        read of the media (`MediaTokenCounter.count`)."""
        return self.length_parts_many([sample], headers)[0]

    def length_parts_many(
        self, samples: list[ChatSample], headers: MediaHeaders | None = None
    ) -> list[tuple[str, int] | None]:
        """Return `length_parts` of each of `samples`, their texts rendered together
        (`render_many`)."""
        counted = [self._counted_turns(sample) for sample in samples]
        extras = [self._media_extra(turns, headers) for turns in counted]
        rendered = iter(
            self.render_many(
                [t for t, e in zip(counted, extras, strict=True) if t and e is not None]
            )
        )
        return [
            None if extra is None else ((next(rendered) if turns else ""), extra)
            for turns, extra in zip(counted, extras, strict=True)
        ]

    def _media_extra(self, turns: list[ChatTurn], headers: MediaHeaders | None) -> int | None:
        """Return the tokens the media of `turns` add beyond their one placeholder token
        each, or None when one's tokens cannot be counted from its header."""
        extra = 0
        for kind, data in (m for t in turns for m in t.media):
            n = self.counter.count(kind, data, headers) if self.counter else None
            if n is None:
                return None
            extra += n - 1  # the rendered placeholder is one token of these
        return extra

    def measured_length(self, sample: ChatSample) -> int:
        """Return `length` by processing the sample, media and all."""
        turns = self._counted_turns(sample)
        return len(self._tokenize(turns, with_media=True).ids) if turns else 0

    def _counted_turns(self, sample: ChatSample) -> list[ChatTurn]:
        assistants = [i for i, t in enumerate(sample.turns) if t.role == "assistant"]
        return sample.turns[: assistants[-1] + 1] if assistants else []

    def plan(self, sample: ChatSample) -> SamplePlan:
        """Return which turns of `sample` fit in max_length and how many tokens they take."""
        assistants = [i for i, t in enumerate(sample.turns) if t.role == "assistant"]
        if not assistants:
            return SamplePlan(0, -1, 0, "skipped", "no character turn")
        last = assistants[-1]  # turns after the character's last line carry no loss
        head = 1 if sample.has_system else 0
        lengths = self._turn_lengths(sample, last)
        total = sum(lengths)
        first = head
        while total > self.max_length and first < last:
            total -= lengths[first]
            first += 1
        if total > self.max_length:
            return SamplePlan(first, last, total, "skipped", "last character turn alone too long")
        if first > head and sample.turns[first].role == "assistant" and first < last:
            # Keep the kept part starting on a user turn, as strict templates require.
            total -= lengths[first]
            first += 1
            while sample.turns[first].role == "assistant" and first < last:
                total -= lengths[first]
                first += 1
        return SamplePlan(first, last, total, "truncated" if first > head else "ok")

    def counted_plan(self, sample: ChatSample, count: int) -> SamplePlan | None:
        """Return `plan(sample)` for a sample known to be `count` tokens long (the token
        ledger's `length`), without rendering or tokenizing: the whole sample when it fits
        max_length; None when `plan` must find the turns to drop, or that there are none."""
        assistants = [i for i, t in enumerate(sample.turns) if t.role == "assistant"]
        if not assistants or count > self.max_length:
            return None
        return SamplePlan(1 if sample.has_system else 0, assistants[-1], count, "ok")

    def encode(self, sample: ChatSample, plan: SamplePlan) -> dict[str, Any]:
        """Return input_ids, attention_mask, labels (1D) and media features of a planned sample."""
        first = plan.first
        while True:
            tokens = self._tokenize(self._kept(sample, first, plan.last), with_media=True)
            if len(tokens.ids) <= self.max_length or first >= plan.last:
                break
            # The plan's estimate was short (templates are not always additive): drop more.
            head = 1 if sample.has_system else 0
            over = len(tokens.ids) - self.max_length
            drop = 0
            while over > 0 and first < plan.last:
                over -= tokens.per_turn[head + drop]
                drop += 1
                first += 1
        if len(tokens.ids) > self.max_length:
            logger.warning(
                "sample %s is %d tokens, over max_length", sample.record_id, len(tokens.ids)
            )
        return {**self._row(tokens), **tokens.features}

    def encode_batch(self, planned: list[PlannedSample]) -> EncodedBatch:
        """Return planned samples encoded as `encode` encodes each, tokenized together: the
        media of the whole batch in one processor call (one Whisper filterbank call, one
        image-processor call, one kwargs merge), the texts without media in one tokenizer
        call. Falls back to `encode` one by one when a sample comes out over max_length (its
        plan was short: `encode` drops more turns) or the texts disagree on special tokens."""
        kept = [self._kept(p.sample, p.plan.first, p.plan.last) for p in planned]
        media = [[m for t in turns for m in t.media] for turns in kept]
        try:
            with one_intra_op_thread():
                tokens, features = self._tokenize_laid_out(
                    [self.layout(turns) for turns in kept], media, [len(t) for t in kept]
                )
        except _MixedSpecialTokens:
            tokens = None
        if tokens is None or any(len(t.ids) > self.max_length for t in tokens):
            return EncodedBatch([self.encode(p.sample, p.plan) for p in planned], None)
        return EncodedBatch([self._row(t) for t in tokens], features)

    @staticmethod
    def _row(tokens: _Tokens) -> dict[str, Any]:
        import torch

        return {
            "input_ids": tokens.ids,
            "attention_mask": torch.ones_like(tokens.ids),
            "labels": tokens.labels,
            **tokens.per_token,
        }

    def prompt(self, sample: ChatSample) -> tuple[dict[str, Any], str] | None:
        """Return model inputs for the sample cut before its last character turn, and that turn."""
        assistants = [i for i, t in enumerate(sample.turns) if t.role == "assistant"]
        if not assistants or assistants[-1] == 0:
            return None
        last = assistants[-1]
        turns = sample.turns[:last]
        text = self.render(turns, add_generation_prompt=True)
        media = [m for t in turns for m in t.media]
        if self.multimodal:
            images = [model_image(b) for k, b in media if k == "image"]
            audios = [model_audio(b, self.sampling_rate) for k, b in media if k == "audio"]
            bos = self.tokenizer.bos_token
            out = self._inputs_processor(
                text=[text],
                images=images or None,
                audio=audios or None,
                add_special_tokens=not (bos and text.startswith(bos)),
                return_tensors="pt",
            )
            inputs = {k: v for k, v in out.items() if k not in _NOT_INPUTS}
        else:
            inputs = dict(self.tokenizer(text, add_special_tokens=False, return_tensors="pt"))
        return inputs, sample.turns[last].text

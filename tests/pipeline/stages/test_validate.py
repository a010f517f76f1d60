"""Every kind of bad record is quarantined with its exact reason; good records all survive."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from pipeline.execution.ingest import run_ingest
from pipeline.recipe import MediaLimits, load_recipe
from pipeline.record.media import probe_audio, probe_image
from pipeline.record.rejection import REASONS, RecordRejected
from pipeline.stages.validate import validate_record
from tests.fixtures.corpus import write_bytes, write_jsonl, write_recipe
from tests.fixtures.media import (
    AUDIO_FORMATS,
    audio_bytes,
    data_uri,
    image_bytes,
    png_bomb,
    truncated,
)

LIMITS = {"max_image_pixels": 5_000, "max_audio_seconds": 1.0, "max_media_bytes": 100_000}


def _turns(user: str = "Hi", assistant: str = "Hello!") -> list[dict[str, Any]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _with_image(path: str) -> dict[str, Any]:
    return {"messages": _turns("<image> look"), "images": [path]}


def _with_audio(path: str) -> dict[str, Any]:
    return {"messages": _turns("<audio> listen"), "audios": [path]}


# (case name, the bad line as a record or raw bytes, expected reason). Media they name are
# written by `bad_corpus` below; the limits above make "too large" and "too long" cheap to build.
BAD_RECORDS: list[tuple[str, Any, str]] = [
    ("invalid_json", b'{"messages": [{"role": "user", "content": "Hi"', "invalid_json"),
    ("invalid_utf8", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "invalid_utf8"),
    (
        "lone_surrogate",
        b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}',
        "invalid_utf8",
    ),
    ("not_an_object", ["a", "list"], "wrong_types"),
    (
        "content_not_text",
        {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]},
        "wrong_types",
    ),
    ("images_not_a_list", {"messages": _turns("<image>"), "images": {"a": 1}}, "wrong_types"),
    ("empty_messages", {"messages": []}, "empty_messages"),
    (
        "no_assistant_turn",
        {
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": "Hi"},
            ]
        },
        "no_assistant_turn",
    ),
    ("empty_assistant_turn", {"messages": _turns(assistant="")}, "empty_turn"),
    ("whitespace_assistant_turn", {"messages": _turns(assistant=" \n\t ")}, "empty_turn"),
    ("tool_role", {"messages": [*_turns(), {"role": "tool", "content": "{}"}]}, "unknown_role"),
    (
        "unnamed_speaker_without_character",
        {
            "conversations": [
                {"from": "Gandalf", "value": "Fly, you fools."},
                {"from": "gpt", "value": "..."},
            ]
        },
        "unknown_role",
    ),
    (
        "system_mid_dialogue",
        {
            "messages": [
                *_turns(),
                {"role": "system", "content": "New rules."},
                {"role": "assistant", "content": "ok"},
            ]
        },
        "bad_turn_order",
    ),
    (
        "placeholder_mismatch",
        {"messages": _turns("<image><image> two?"), "images": ["media/ok.jpg"]},
        "placeholder_mismatch",
    ),
    (
        "audio_placeholder_missing",
        {"messages": _turns("no marker"), "audios": ["media/ok.wav"]},
        "placeholder_mismatch",
    ),
    ("missing_media", _with_image("media/nope.jpg"), "missing_media"),
    ("dotdot_escape", _with_image("../outside/secret.jpg"), "media_outside_root"),
    ("symlink_escape", _with_image("media/escape.jpg"), "media_outside_root"),
    ("absolute_path", _with_image("<ABSOLUTE>"), "media_outside_root"),
    ("remote_url", _with_image("https://example.com/a.jpg"), "media_outside_root"),
    ("bad_data_uri", _with_image("data:image/png;base64,!!not*base64!!"), "bad_data_uri"),
    ("file_over_byte_limit", _with_image("media/huge.jpg"), "media_too_large"),
    ("truncated_jpeg", _with_image("media/truncated.jpg"), "corrupt_image"),
    ("audio_named_jpg", _with_image("media/sound.jpg"), "corrupt_image"),
    ("bomb_header", _with_image("media/bomb.png"), "image_too_large"),
    ("over_pixel_limit", _with_image("media/big.png"), "image_too_large"),
    ("garbage_audio", _with_audio("media/garbage.wav"), "corrupt_audio"),
    ("truncated_flac", _with_audio("media/truncated.flac"), "corrupt_audio"),
    ("clip_too_long", _with_audio("media/long.ogg"), "audio_too_long"),
    ("unknown_character", {"character": "Nobody", "messages": _turns()}, "unknown_character"),
]

GOOD_RECORDS: list[dict[str, Any]] = [
    {"character": "Aiko", "messages": _turns("<image> 見て！"), "images": ["media/ok.jpg"]},
    {"messages": _turns("<audio><audio>"), "audios": ["media/ok.wav", "media/ok.mp3"]},
    {"messages": _turns("<audio>"), "audios": ["media/ok.flac"]},
    {
        "messages": _turns("<audio> <image>"),
        "audios": ["media/ok.ogg"],
        "images": [data_uri(image_bytes("PNG"), "image/png")],
    },
    {
        "character": "Aiko",
        "messages": [{"role": "system", "content": "Stay in character."}, *_turns()],
    },
]


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Ingest one file interleaving every bad case with good records; return what came out."""
    root = tmp_path_factory.mktemp("bad")
    media = root / "corpus" / "media"
    write_bytes(media / "ok.jpg", image_bytes("JPEG"))
    for fmt in AUDIO_FORMATS:
        write_bytes(media / f"ok.{fmt.lower()}", audio_bytes(fmt))
    outside = write_bytes(root / "outside" / "secret.jpg", image_bytes("JPEG"))
    os.symlink(outside, media / "escape.jpg")
    write_bytes(media / "huge.jpg", os.urandom(LIMITS["max_media_bytes"] + 1))
    write_bytes(media / "truncated.jpg", truncated(image_bytes("JPEG", 64)))
    write_bytes(media / "sound.jpg", audio_bytes("WAV"))
    write_bytes(media / "bomb.png", png_bomb())
    write_bytes(media / "big.png", image_bytes("PNG", 100))  # 10,000 pixels > 5,000
    write_bytes(media / "garbage.wav", b"RIFF" + os.urandom(500))
    write_bytes(media / "truncated.flac", truncated(audio_bytes("FLAC", 0.5)))
    write_bytes(media / "long.ogg", audio_bytes("OGG", 1.5))
    write_jsonl(
        root / "corpus" / "characters.jsonl", [{"name": "Aiko", "profile": "A shy librarian."}]
    )

    lines: list[Any] = []
    expected: dict[int, tuple[str, str]] = {}
    good_lines: list[int] = []
    for i, (case, record, reason) in enumerate(BAD_RECORDS):
        if (
            record is not None
            and isinstance(record, dict)
            and record.get("images") == ["<ABSOLUTE>"]
        ):
            record = {**record, "images": [str(outside)]}
        lines.append(record)
        expected[len(lines)] = (case, reason)
        lines.append(GOOD_RECORDS[i % len(GOOD_RECORDS)])
        good_lines.append(len(lines))
    write_jsonl(root / "corpus" / "dialogues.jsonl", lines)
    recipe_path = write_recipe(
        root,
        [
            {
                "name": "table",
                "path": "corpus/dialogues.jsonl",
                "characters": "corpus/characters.jsonl",
            }
        ],
        limits=LIMITS,
        max_bad_fraction=1.0,
    )
    report = run_ingest(load_recipe(recipe_path, check_ops=False), run_id="run-1")
    with open(report.quarantine_path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f]
    return {"report": report, "entries": entries, "expected": expected, "good_lines": good_lines}


def test_bad_input_table_covers_at_least_fourteen_reasons() -> None:
    reasons = {reason for _, _, reason in BAD_RECORDS}
    assert len(reasons) >= 14 and reasons <= REASONS.keys()


@pytest.mark.parametrize(
    ("case", "reason"), [(c, r) for c, _, r in BAD_RECORDS], ids=[c for c, _, _ in BAD_RECORDS]
)
def test_each_bad_record_is_quarantined_with_its_reason_and_line(
    bad_corpus, case: str, reason: str
) -> None:
    line = next(n for n, (c, _) in bad_corpus["expected"].items() if c == case)
    ref = f"corpus/dialogues.jsonl:{line}"
    hits = [e for e in bad_corpus["entries"] if e["source_ref"] == ref]
    assert len(hits) == 1, f"{case}: expected one entry at {ref}, got {hits}"
    entry = hits[0]
    assert entry["reason"] == reason, entry["message"]
    assert entry["source"] == "table" and entry["message"] and entry["record_id"]


def test_every_good_record_in_the_same_file_survives(bad_corpus) -> None:
    report = bad_corpus["report"]
    assert report.valid == len(bad_corpus["good_lines"])
    assert report.quarantined == len(BAD_RECORDS) == len(bad_corpus["entries"])
    good_refs = {f"corpus/dialogues.jsonl:{n}" for n in bad_corpus["good_lines"]}
    assert not good_refs & {e["source_ref"] for e in bad_corpus["entries"]}
    assert report.sources == [
        {
            "name": "table",
            "records_in": len(BAD_RECORDS) + len(good_refs),
            "valid": len(good_refs),
            "quarantined": len(BAD_RECORDS),
            "unmapped_fields": {},
            "formats": {"corpus/dialogues.jsonl": "llamafactory"},
        }
    ]


def test_quarantine_counts_match_the_entries(bad_corpus) -> None:
    counts: dict[str, int] = {}
    for e in bad_corpus["entries"]:
        counts[e["reason"]] = counts.get(e["reason"], 0) + 1
    assert bad_corpus["report"].quarantine_reasons == counts
    assert bad_corpus["report"].quarantine_path.endswith(
        os.path.join("store", "test-ds", "quarantine", "run-1.jsonl")
    )


# Direct checks of the pure validator and media probes.


def _record(**kw: Any) -> dict[str, Any]:
    base = {
        "id": "x",
        "source": "s",
        "messages": _turns(),
        "images": [],
        "audios": [],
        "source_ref": "f:1",
    }
    return {**base, **kw}


def _reason(record: dict[str, Any], limits: MediaLimits | None = None) -> str | None:
    try:
        validate_record(record, limits or MediaLimits())
    except RecordRejected as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_audio_in_each_format_decodes_and_reports_its_length(fmt: str) -> None:
    info = probe_audio(audio_bytes(fmt), max_seconds=5)
    assert info.format == fmt and info.seconds == pytest.approx(0.2, abs=0.06)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_truncated_compressed_audio_is_corrupt(fmt: str) -> None:
    with pytest.raises(RecordRejected) as exc:
        probe_audio(truncated(audio_bytes(fmt, 0.5), 0.6), max_seconds=5)
    assert exc.value.reason == "corrupt_audio"


def test_a_header_only_check_holds_the_limits_without_decoding_the_payload() -> None:
    # How the augment stage checks a variant's media (its original's validated bytes, or
    # what our encoders just wrote): the limits come from the headers, nothing is decoded.
    clip = audio_bytes("FLAC", 0.5)
    assert probe_audio(truncated(clip, 0.6), max_seconds=5, payload=False).frames > 0
    with pytest.raises(RecordRejected) as exc:
        probe_audio(clip, max_seconds=0.25, payload=False)
    assert exc.value.reason == "audio_too_long"
    image = image_bytes("JPEG", size=64)
    assert probe_image(truncated(image, 0.6), max_pixels=5_000, payload=False).width == 64
    variant = _record(
        messages=_turns("<image> <audio>"),
        images=[{"bytes": image, "path": None}],
        audios=[{"bytes": clip, "path": None}],
    )
    headers = MediaLimits(max_image_pixels=4_095, max_audio_seconds=1.0)
    with pytest.raises(RecordRejected) as exc:
        validate_record(variant, headers, headers_only=True)
    assert exc.value.reason == "image_too_large"


def test_real_decompression_bomb_is_refused_even_above_our_own_limit() -> None:
    # With our limit out of the way PIL's own bomb guard fires in Image.open; it must map, not crash.
    with pytest.raises(RecordRejected) as exc:
        probe_image(png_bomb(), max_pixels=10**12)
    assert exc.value.reason == "image_too_large"


def test_image_format_is_sniffed_from_bytes_not_the_name() -> None:
    assert probe_image(image_bytes("PNG"), max_pixels=100).format == "PNG"
    record = _record(
        messages=_turns("<image>"), images=[{"bytes": image_bytes("PNG"), "path": "looks_like.jpg"}]
    )
    assert _reason(record) is None


def test_validator_checks_types_roles_and_limits_on_in_memory_records() -> None:
    assert _reason(_record()) is None
    assert _reason(_record(messages=[{"role": "narrator", "content": "x"}])) == "unknown_role"
    assert _reason(_record(messages=[{"role": "user", "content": None}])) == "wrong_types"
    assert _reason(_record(messages=None)) == "empty_messages"
    image = {"bytes": image_bytes("JPEG"), "path": None}
    assert _reason(_record(messages=_turns("<image>"), images=[image])) is None
    assert (
        _reason(_record(messages=_turns("<image>"), images=[{"bytes": None, "path": "a.jpg"}]))
        == "missing_media"
    )
    small = MediaLimits(max_media_bytes=len(image["bytes"]) - 1)
    assert _reason(_record(messages=_turns("<image>"), images=[image]), small) == "media_too_large"


def test_data_uris_decode_with_urlsafe_alphabet_or_missing_padding() -> None:
    from pipeline.record.media import decode_data_uri

    payload = image_bytes("PNG")
    uri = data_uri(payload, "image/png")
    unpadded = uri.rstrip("=").replace("+", "-").replace("/", "_")
    assert decode_data_uri(uri, 10**6) == decode_data_uri(unpadded, 10**6) == payload
    with pytest.raises(RecordRejected) as exc:
        decode_data_uri(uri, max_bytes=len(payload) - 1)
    assert exc.value.reason == "media_too_large"


def test_mp3_is_decoded_in_one_read_without_decoder_errors(capfd) -> None:
    # Block-wise reads of this clip make libsndfile's mpg123 misdecode and complain on stderr.
    path = os.path.join(
        os.path.dirname(__file__), "../../../examples/corpus/audio/shanty_melody.mp3"
    )
    with open(path, "rb") as f:
        probed = probe_audio(f.read(), max_seconds=60)
    assert probed.frames > 0
    assert "part2_3_length" not in capfd.readouterr().err

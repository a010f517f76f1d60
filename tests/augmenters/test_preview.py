"""The preview page: self-contained, media embedded, corpus text escaped, no script."""

from __future__ import annotations

import json
import re

from pipeline.recipe import load_recipe
from tests.augmenters.conftest import jpeg_bytes, wav_bytes

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> on the left"


def write_corpus(folder):
    (folder / "media").mkdir()
    (folder / "media" / "cat.jpg").write_bytes(jpeg_bytes(64, 48))
    (folder / "media" / "purr.wav").write_bytes(wav_bytes(0.3))
    (folder / "characters.jsonl").write_text(
        json.dumps(
            {
                "name": "Nova</title><script>x()</script>",
                "profile": "A pilot.",
                "greeting": "Hi",
                "catchphrases": [],
            }
        )
        + "\n"
    )
    dialogue = {
        "character": "Nova</title><script>x()</script>",
        "messages": [
            {"role": "user", "content": f"<image>Look at my cat. {HOSTILE} <audio>"},
            {"role": "assistant", "content": "What a fluffy, sleepy cat! It sounds very happy."},
        ],
        "images": ["media/cat.jpg"],
        "audios": ["media/purr.wav"],
    }
    (folder / "dialogues.jsonl").write_text(json.dumps(dialogue) + "\n")
    (folder / "recipe.yaml").write_text(
        """
name: preview-test
seed: 3
sources: [{name: tiny, path: dialogues.jsonl, characters: characters.jsonl}]
augment:
  copies: 2
  text: [{op: KeyboardAug, p: 1.0}]
  image: [{op: RandomResizedCrop, size: [32, 32]}, {op: HorizontalFlip, p: 1.0}]
  audio: [{op: Gain, p: 1.0}]
  flip_guard: swap
"""
    )


def test_preview_embeds_media_highlights_changes_and_runs_no_script_from_the_data(tmp_path):
    from pipeline.cli.preview import render_preview

    write_corpus(tmp_path)
    out = tmp_path / "preview.html"
    assert render_preview(load_recipe(tmp_path / "recipe.yaml"), 8, str(out)) == str(out)
    page = out.read_text(encoding="utf-8")

    assert "<script" not in page.lower() and "onerror=" not in page.replace(
        "onerror=alert(1)&gt;", ""
    )
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Nova&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # Media are embedded, not linked: originals and variants, plus audio plots.
    assert page.count("src='data:image/jpeg;base64,") == 3  # original + 2 variants
    assert "src='data:audio/wav;base64," in page and page.count("src='data:audio/flac;base64,") == 2
    assert page.count("src='data:image/png;base64,") == 3  # waveform + spectrogram per clip
    assert not re.search(r"(src|href)=['\"](?!data:)", page)
    # Changes are highlighted and the applied ops listed with their params.
    assert "<ins>" in page and "<del>" in page
    assert "image:HorizontalFlip" in page and "swap_turns" in page

"""A single self-contained HTML page: sampled records beside their variants, changes highlighted.

Corpus text is untrusted: every piece of it is HTML-escaped, media are embedded as data
URIs with MIME types we derive from the bytes' signatures, and the page carries no script
at all (its Content-Security-Policy forbids any).
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import logging
import os
import re
import tempfile
from typing import Any

import numpy as np

from augmenters.audio import decode_clip
from augmenters.image import image_format
from augmenters.record import RecordAugmenter
from pipeline.recipe import Recipe

log = logging.getLogger(__name__)

CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"
IMAGE_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
}


def audio_mime(data: bytes) -> str:
    """Return the MIME type of encoded audio bytes, from their signature."""
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"ID3") or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return "application/octet-stream"


def data_uri(mime: str, data: bytes) -> str:
    """Return `data` as a base64 data URI (safe inside an HTML attribute)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def record_stratum(record: dict[str, Any]) -> tuple[str, str]:
    """Return what a preview sample must cover: (source, modality), modality being the
    richest media the record carries (audio, image, or text)."""
    if record.get("audios"):
        modality = "audio"
    elif record.get("images"):
        modality = "image"
    else:
        modality = "text"
    return record["source"], modality


def sample_records(recipe: Recipe, n: int) -> list[dict[str, Any]]:
    """Return up to n valid records of the recipe's sources, sampled reproducibly from the
    recipe seed and spread over every (source, modality) the corpus has.

    Each stratum keeps its own small reservoir, and the sample takes from the strata in
    turn, so a corpus with 3 audio records in 9 shows audio, and every source shows up
    while n allows.
    """
    from pipeline.readers import read_source
    from pipeline.record.rejection import QuarantineEntry, RecordRejected
    from pipeline.stages.validate import validate_record

    rng = np.random.default_rng(recipe.seed)
    # Twice n per stratum leaves room for records that fail validation (only the chosen
    # ones are decoded); memory stays at a few records per stratum whatever the corpus.
    size = max(2 * n, n + 4)
    reservoirs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for source in recipe.sources:
        for record in read_source(source, recipe):
            if isinstance(record, QuarantineEntry):
                continue
            stratum = record_stratum(record)
            reservoir = reservoirs.setdefault(stratum, [])
            count = seen.get(stratum, 0)
            seen[stratum] = count + 1
            if len(reservoir) < size:
                reservoir.append(record)
            else:
                j = int(rng.integers(count + 1))
                if j < size:
                    reservoir[j] = record
    pools: list[list[dict[str, Any]]] = []
    for stratum in sorted(reservoirs):
        valid = []
        for record in sorted(reservoirs[stratum], key=lambda r: r.get("source_ref") or r["id"]):
            try:
                validate_record(record, recipe.limits)
            except RecordRejected as exc:
                log.info("preview skips %s: %s", record.get("source_ref"), exc)
                continue
            valid.append(record)
        if valid:
            order = rng.permutation(len(valid)).tolist()
            pools.append([valid[i] for i in order])
    picked: list[dict[str, Any]] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop(0))
    return sorted(picked, key=lambda r: (r["source"], r.get("source_ref") or r["id"]))


def render_preview(recipe: Recipe, n: int, out_path: str) -> str:
    """Write the preview page for n sampled records of `recipe` to out_path; return out_path."""
    records = sample_records(recipe, n)
    augmenter = RecordAugmenter(recipe.augment, recipe.seed, recipe.recipe_hash)
    sections = []
    with augmenter.batch():
        for record in records:
            # Preview every sampled record as if it were in the train split (the only one augmented).
            variants, _ = augmenter.variants({**record, "split": "train"})
            sections.append(_record_section(record, variants))
    page = _page(recipe, sections, len(records))
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".preview-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(page)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the page is meant to be shared
    os.replace(tmp, out_path)
    return out_path


# --- page parts -------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d232a;background:#fafafa}
h1{font-size:20px} h2{font-size:16px;margin:28px 0 6px} .meta{color:#59636e;font-size:12px}
.grid{display:grid;grid-auto-flow:column;grid-auto-columns:minmax(320px,1fr);gap:12px;overflow-x:auto}
.col{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:10px}
.col h3{font-size:13px;margin:0 0 8px}
.turn{margin:6px 0;padding:6px 8px;border-radius:4px;white-space:pre-wrap;word-wrap:break-word}
.system{background:#f1f3f5}.user{background:#eef6ff}.assistant{background:#fff6e5}
.role{font-size:11px;font-weight:600;color:#59636e;display:block}
ins{background:#c9f7d4;text-decoration:none} del{background:#ffd7d5;color:#8a1f17}
.new{outline:2px solid #c9f7d4}
img.media{max-width:100%;max-height:260px;display:block;margin:6px 0;border:1px solid #d8dee4}
img.plot{width:100%;display:block} audio{width:100%;margin-top:6px}
ul.ops{margin:8px 0 0;padding-left:18px;font-size:12px} code{font-size:11px;word-break:break-all}
.empty{color:#59636e;font-style:italic}
"""


def _page(recipe: Recipe, sections: list[str], count: int) -> str:
    ops = [
        f"{m}: {spec.get('op')}"
        for m in ("dialogue", "text", "image", "audio")
        for spec in getattr(recipe.augment, m)
    ]
    header = (
        f"<h1>roleforge preview: {html.escape(recipe.name)}</h1>"
        f"<p class='meta'>recipe {html.escape(recipe.recipe_hash[:12])} &middot; seed {recipe.seed} &middot; "
        f"copies {recipe.augment.copies} &middot; {count} sampled records &middot; ops: "
        f"{html.escape(', '.join(ops) or 'none')}</p>"
    )
    if recipe.augment.copies == 0:
        header += "<p class='empty'>copies is 0: this recipe makes no variants.</p>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<title>roleforge preview: {html.escape(recipe.name)}</title><style>{STYLE}</style></head>"
        f"<body>{header}{''.join(sections)}</body></html>"
    )


def _record_section(record: dict[str, Any], variants: list[dict[str, Any]]) -> str:
    character = (record.get("character") or {}).get("name") or "?"
    title = (
        f"<h2>{html.escape(record.get('source_ref') or record['id'])}</h2>"
        f"<p class='meta'>source {html.escape(record['source'])} &middot; character {html.escape(character)} "
        f"&middot; id {html.escape(record['id'])}</p>"
    )
    columns = [_column("original", record, None)]
    columns += [_column(f"variant {v['augmentation']['copy'] + 1}", v, record) for v in variants]
    if not variants:
        columns.append(
            "<div class='col'><p class='empty'>no op applied to this record in any copy</p></div>"
        )
    return title + f"<div class='grid'>{''.join(columns)}</div>"


def _column(label: str, record: dict[str, Any], original: dict[str, Any] | None) -> str:
    parts = [f"<div class='col'><h3>{html.escape(label)}</h3>"]
    for message in record["messages"]:
        parts.append(_turn(message, original))
    for image in record["images"]:
        fmt = image_format(image["bytes"])
        mime = IMAGE_MIME.get(fmt)
        if mime:
            parts.append(
                f"<img class='media' alt='{html.escape(image.get('path') or 'image')}' src='{data_uri(mime, image['bytes'])}'>"
            )
        else:
            parts.append(f"<p class='empty'>image in an unviewable format ({html.escape(fmt)})</p>")
    for clip in record["audios"]:
        parts.append(_audio(clip))
    if original is not None:
        parts.append("<ul class='ops'>")
        for entry in record["augmentation"]["ops"]:
            parts.append(
                f"<li><b>{html.escape(entry['modality'])}:{html.escape(entry['op'])}</b> "
                f"<code>{html.escape(_short(entry['params']))}</code></li>"
            )
        parts.append("</ul>")
    parts.append("</div>")
    return "".join(parts)


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _turn(message: dict[str, Any], original: dict[str, Any] | None) -> str:
    role = message["role"] if message["role"] in ("system", "user", "assistant") else "user"
    name = f" ({message['name']})" if message.get("name") else ""
    head = f"<span class='role'>{html.escape(message['role'] + name)}</span>"
    if original is None:
        return f"<div class='turn {role}'>{head}{html.escape(message['content'])}</div>"
    before = _counterpart(message, original["messages"])
    if before is None:
        return f"<div class='turn {role} new'>{head}{html.escape(message['content'])}</div>"
    return f"<div class='turn {role}'>{head}{highlight_changes(before['content'], message['content'])}</div>"


def _counterpart(message: dict[str, Any], originals: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the original turn this variant turn came from (dialogue ops may drop or add turns)."""
    best, best_ratio = None, 0.3
    for candidate in originals:
        if candidate["role"] != message["role"]:
            continue
        ratio = difflib.SequenceMatcher(
            None, candidate["content"], message["content"], autojunk=False
        ).quick_ratio()
        if ratio > best_ratio:
            best, best_ratio = candidate, ratio
    return best


_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def highlight_changes(before: str, after: str) -> str:
    """Return `after` as escaped HTML with words added (<ins>) and removed (<del>) since `before`."""
    a, b = _TOKENS.findall(before), _TOKENS.findall(after)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(b[j1:j2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


def _audio(clip: dict[str, Any]) -> str:
    data = clip["bytes"]
    player = f"<audio controls preload='none' src='{data_uri(audio_mime(data), data)}'></audio>"
    try:
        plot = waveform_and_spectrogram(data)
    except Exception as exc:  # a clip the plotter cannot read still gets its player
        log.warning("no plot for %s: %s", clip.get("path"), exc)
        return player
    return f"<img class='plot' alt='waveform and spectrogram' src='{data_uri('image/png', plot)}'>{player}"


def waveform_and_spectrogram(data: bytes) -> bytes:
    """Return a PNG with the clip's waveform above its log-magnitude spectrogram."""
    # A bare Figure renders with Agg and leaves pyplot's global backend alone.
    from matplotlib.figure import Figure

    clip = decode_clip(data, mono=True)
    samples, rate = clip.samples, clip.sample_rate
    fig = Figure(figsize=(4.2, 2.4), dpi=80)
    top, bottom = fig.subplots(2, 1, sharex=True)
    t = np.arange(len(samples)) / rate
    top.plot(t, samples, linewidth=0.5, color="#3b6ea5")
    top.set_ylim(-1, 1)
    top.set_yticks([])
    nfft = 512 if len(samples) >= 512 else max(16, 2 ** int(np.log2(max(len(samples), 2))))
    bottom.specgram(samples, NFFT=nfft, Fs=rate, noverlap=nfft // 2, cmap="magma")
    bottom.set_xlabel("seconds", fontsize=7)
    bottom.set_ylabel("Hz", fontsize=7)
    for axis in (top, bottom):
        axis.tick_params(labelsize=6)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

"""Every page of `roleforge view`: one GET path (and query) in, one response out.

The HTTP server and the static export both call `ViewSite.get`, so they answer the same
pages. Corpus text reaches HTML only through autoescaping Jinja templates, and nothing is
read from the disk by a path the request spells: each path segment is checked against the
names the store itself lists (dataset names, version numbers, record ids looked up in the
shards, model ids the registry knows), and files come only from the store's own layout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from pipeline.cli.preview import IMAGE_MIME, audio_mime, waveform_and_spectrogram
from pipeline.record.media import image_format
from pipeline.store.diff import diff_versions
from pipeline.store.manifest import Manifest
from pipeline.store.read import Store, VersionNotFound, check_dataset_name
from pipeline.store.store_fs import store_fs
from pipeline.view.chat import aligned_turns, turn_kind, turn_media
from pipeline.view.quality import summarize_quality
from pipeline.view.quarantine import read_quarantine
from pipeline.view.rows import KINDS, MODALITIES, PageToken, RowFilter, VersionRows
from trainers.curve import CURVE_PNG
from trainers.heldout import EVALS_DIR
from trainers.registry import ModelRegistry, UnknownModel

log = logging.getLogger(__name__)

# No script may run on any page (there is none), media and pictures come from this server.
CSP = (
    "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MEDIA_ITEM = re.compile(r"^(\d{1,4})(\.[a-z0-9]{1,5})?$")
STATIC_FILES = {"view.css": "text/css; charset=utf-8"}
DIFF_IDS_SHOWN = 200
MAX_OTHER_EVALS = 100


@dataclass
class Response:
    """What a GET answers: status, content type and body (whole: pages and media are small)."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class NotFound(LookupError):
    """The path names nothing this store holds (or is not allowed)."""


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.view", "templates"),
        autoescape=True,  # every template, whatever its name: corpus text is hostile
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(turn_kind=turn_kind, turn_media=turn_media, urlencode=urlencode)
    env.filters["params"] = _params_text
    return env


def _params_text(params: str | None) -> str:
    """Return an op's recorded params (canonical JSON) indented for reading."""
    try:
        return json.dumps(json.loads(params or "null"), indent=1, ensure_ascii=False)
    except json.JSONDecodeError:
        return params or ""


class ViewSite:
    """The pages of one store (or one dataset of it): versions, rows, records, media,
    quarantine, quality, diffs and models."""

    def __init__(
        self, store: str, name: str | None = None, version: int | None = None, static: bool = False
    ):
        self.fs, self.path = store_fs(store)
        self.location = self.fs.uri(self.path)
        self.only = check_dataset_name(name) if name else None
        self.version = version if name else None  # the landing page's version
        self.static = static  # a static export: no forms (nothing answers them)
        self.env = _environment()
        self._rows = lru_cache(maxsize=16)(self._open_rows)
        self._plots = lru_cache(maxsize=256)(self._plot)
        # A committed version never changes: what was read from it once stays true.
        self._summaries = lru_cache(maxsize=8)(
            lambda name, number: summarize_quality(self._rows(name, number))
        )

    # ---- the store ----

    def datasets(self) -> list[str]:
        """Return the dataset names of the store (only the named one when given)."""
        if self.only:
            return [self.only]
        names = []
        for entry in sorted(self.fs.listdir(self.path)):
            try:
                check_dataset_name(entry)
            except ValueError:
                continue
            if self.fs.listdir(os.path.join(self.path, entry, "versions")):
                names.append(entry)
        return names

    def store(self, name: str) -> Store:
        try:
            check_dataset_name(name)
        except ValueError:
            raise NotFound(name) from None
        if name not in self.datasets():
            raise NotFound(name)
        return Store(self.path, name, self.fs)

    def manifest(self, store: Store, version: str) -> Manifest:
        if not re.fullmatch(r"v\d{1,6}", version):
            raise NotFound(version)
        try:
            return store.manifest(int(version[1:]))
        except VersionNotFound:
            raise NotFound(version) from None

    def _open_rows(self, name: str, number: int) -> VersionRows:
        store = self.store(name)
        return VersionRows(store, store.manifest(number))

    # ---- routing ----

    def get(self, path: str, query: dict[str, str] | None = None) -> Response:
        """Return the response to GET `path` (already percent-decoded) with `query`."""
        query = query or {}
        parts = path.split("/")
        if not path.startswith("/") or any(p in ("..", ".") or "\\" in p for p in parts):
            return self._error(404, "no such page")
        segments = [p for p in parts[1:] if p]
        if "" in parts[1:-1]:  # an empty segment in the middle: `//`
            return self._error(404, "no such page")
        try:
            return self._route(segments, query)
        except NotFound:
            return self._error(404, "no such page")
        except ValueError as exc:
            return self._error(400, str(exc))

    def _route(self, s: list[str], query: dict[str, str]) -> Response:
        if not s:
            names = self.datasets()
            if self.only and self.version is not None:
                return self._redirect(f"/d/{self.only}/v{self.version}/")
            if len(names) == 1:
                return self._redirect(f"/d/{names[0]}/")
            return self._page("datasets.html", names=names)
        if s[0] == "static" and len(s) == 2 and s[1] in STATIC_FILES:
            body = (_here("assets") / s[1]).read_bytes()
            return Response(200, STATIC_FILES[s[1]], body, {"Cache-Control": "max-age=3600"})
        if s[0] != "d" or len(s) < 2:
            raise NotFound("/".join(s))
        name, rest = s[1], s[2:]
        store = self.store(name)
        if not rest:
            return self._versions(store)
        if rest == ["diff"]:
            return self._diff(store, query)
        if rest[0] == "models":
            return self._models(store, rest[1:])
        version, rest = rest[0], rest[1:]
        manifest = self.manifest(store, version)
        if not rest:
            return self._rows_page(store, manifest, query)
        if rest == ["quality"]:
            return self._quality(store, manifest)
        if rest == ["quarantine"]:
            return self._page(
                "quarantine.html", store=store, m=manifest, q=read_quarantine(store, manifest)
            )
        if rest[0] == "r" and len(rest) == 2:
            return self._record(store, manifest, rest[1])
        if rest[0] == "m" and len(rest) == 4:
            return self._media(store, manifest, rest[1:])
        if rest[0] == "s" and len(rest) == 3:
            return self._spectrogram(store, manifest, rest[1], rest[2])
        raise NotFound("/".join(s))

    # ---- pages ----

    def _page(self, template: str, **context: Any) -> Response:
        html = self.env.get_template(template).render(
            location=self.location, static=self.static, **context
        )
        return Response(200, "text/html; charset=utf-8", html.encode("utf-8"))

    def _error(self, status: int, message: str) -> Response:
        html = self.env.get_template("error.html").render(
            location=self.location, static=self.static, status=status, message=message
        )
        return Response(status, "text/html; charset=utf-8", html.encode("utf-8"))

    def _redirect(self, target: str) -> Response:
        return Response(302, "text/plain; charset=utf-8", b"", {"Location": target})

    def _versions(self, store: Store) -> Response:
        manifests = [store.manifest(v) for v in store.versions()]
        return self._page("versions.html", store=store, manifests=manifests[::-1])

    def _rows_page(self, store: Store, manifest: Manifest, query: dict[str, str]) -> Response:
        rows = self._rows(store.name, manifest.number)
        where = RowFilter.from_query(query)
        page = rows.page(where, PageToken.parse(query.get("after")))
        shown = query.get("page") or "1"
        number = int(shown) if shown.isdigit() and len(shown) < 7 else 1
        next_query = (
            urlencode({**where.query(), "after": str(page.next), "page": number + 1})
            if page.next
            else None
        )
        if query.get("format") == "json":
            return self._rows_json(store, manifest, page.rows, next_query)
        sources = sorted({s["name"] for s in manifest.recipe.get("sources", []) if "name" in s})
        return self._page(
            "rows.html",
            store=store,
            m=manifest,
            rows=page.rows,
            where=where,
            filters=where.query(),
            next_query=next_query,
            json_query=urlencode({**query, "format": "json"}),
            page_number=number,
            sources=sources,
            splits=[s for s in ("train", "validation", "test") if manifest.splits.get(s)],
            modalities=MODALITIES,
            kinds=KINDS,
            has_quality=rows.has_quality,
            media_url=_media_url,
        )

    def _rows_json(
        self, store: Store, manifest: Manifest, rows: list[dict[str, Any]], next_query: str | None
    ) -> Response:
        """Return a rows page as JSON (datasette's rule: one view, HTML or JSON): each row as
        stored, its media as URLs, and the next page's URL."""
        base = f"/d/{store.name}/v{manifest.number}/"
        out = []
        for row in rows:
            row = {k: v for k, v in row.items() if not k.startswith("_")}
            for column in ("images", "audios"):
                row[column] = [
                    {**item, "url": _media_url(store, manifest, row, column, i)}
                    for i, item in enumerate(row[column])
                ]
            out.append(row)
        body = {
            "dataset": store.name,
            "version": manifest.number,
            "content_id": manifest.content_id,
            "rows": out,
            "next": f"{base}?{next_query}&format=json" if next_query else None,
        }
        data = json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")
        return Response(200, "application/json; charset=utf-8", data)

    def _record(self, store: Store, manifest: Manifest, record_id: str) -> Response:
        if not _RECORD_ID.match(record_id):
            raise NotFound(record_id)
        rows = self._rows(store.name, manifest.number)
        record = rows.record(record_id)
        if record is None:
            raise NotFound(record_id)
        original = rows.record(record["parent_id"]) if record.get("parent_id") else None
        pairs = aligned_turns(original["messages"], record["messages"]) if original else []
        variants = []
        if not record.get("parent_id"):
            for batch in rows.scan(["id", "parent_id"], split=record["split"]):
                for rid, parent in zip(
                    batch["id"].to_pylist(), batch["parent_id"].to_pylist(), strict=True
                ):
                    if parent == record_id:
                        variants.append(rid)
        return self._page(
            "record.html",
            store=store,
            m=manifest,
            r=record,
            original=original,
            pairs=pairs,
            variants=variants,
            media_url=_media_url,
        )

    def _media(self, store: Store, manifest: Manifest, parts: list[str]) -> Response:
        data = self._media_bytes(store.name, manifest.number, *parts)
        return Response(200, media_type(data, parts[1]), data, _IMMUTABLE)

    def _spectrogram(self, store: Store, manifest: Manifest, record_id: str, item: str) -> Response:
        if not item.endswith(".png"):
            raise NotFound(item)
        png = self._plots(store.name, manifest.number, record_id, item[: -len(".png")])
        return Response(200, "image/png", png, _IMMUTABLE)

    def _plot(self, name: str, number: int, record_id: str, item: str) -> bytes:
        """Return the waveform-and-spectrogram PNG of one audio item (cached: drawing it
        costs far more than reading the clip)."""
        clip = self._media_bytes(name, number, record_id, "audios", item)
        with _PLOT_LOCK:  # matplotlib is not thread-safe; the server answers in threads
            return waveform_and_spectrogram(clip)

    def _media_bytes(self, name: str, number: int, record_id: str, column: str, item: str) -> bytes:
        """Return one media item's bytes, read from its shard row; NotFound otherwise."""
        m = _MEDIA_ITEM.match(item)
        if not _RECORD_ID.match(record_id) or column not in ("images", "audios") or not m:
            raise NotFound(f"{record_id}/{column}/{item}")
        data = self._rows(name, number).media(record_id, column, int(m.group(1)))
        if data is None:
            raise NotFound(f"{record_id}/{column}/{item}")
        return data

    def _quality(self, store: Store, manifest: Manifest) -> Response:
        rows = self._rows(store.name, manifest.number)
        summary = self._summaries(store.name, manifest.number)
        clusters = {
            cluster: [rows.record(rid) for rid in ids] for cluster, ids in summary.clusters.items()
        }
        return self._page(
            "quality.html",
            store=store,
            m=manifest,
            s=summary,
            clusters=clusters,
            media_url=_media_url,
        )

    def _diff(self, store: Store, query: dict[str, str]) -> Response:
        versions = store.versions()
        try:
            a, b = int(query.get("a", "")), int(query.get("b", ""))
        except ValueError:
            raise ValueError("diff needs two version numbers, a and b") from None
        if a not in versions or b not in versions:
            raise NotFound(f"v{a} or v{b}")
        result = diff_versions(store, a, b)
        return self._page(
            "diff.html", store=store, d=result, deltas=result.split_deltas(), shown=DIFF_IDS_SHOWN
        )

    def _models(self, store: Store, rest: list[str]) -> Response:
        registry = ModelRegistry(store)
        if not rest:
            pointer = registry.pointer()
            return self._page(
                "models.html",
                store=store,
                models=registry.models()[::-1],
                pointer=pointer,
                stack=pointer.stack() if pointer else [],
            )
        if not _MODEL_ID.match(rest[0]) or len(rest) > 2:
            raise NotFound("/".join(rest))
        try:
            entry = registry.get(rest[0])
        except UnknownModel:
            raise NotFound(rest[0]) from None
        if len(rest) == 2:
            if rest[1] != CURVE_PNG:
                raise NotFound(rest[1])
            try:
                data = store.fs.read_bytes(os.path.join(entry.path, CURVE_PNG))
            except FileNotFoundError:
                raise NotFound(rest[1]) from None
            return Response(200, "image/png", data)
        own_eval = _read_json(store, os.path.join(entry.path, "eval.json")) or {}
        replies: dict[str, list[dict[str, Any]]] = {}
        for reply in own_eval.get("replies") or []:
            replies.setdefault(str(reply.get("character") or "?"), []).append(reply)
        curve = _read_json(store, os.path.join(entry.path, "training_curve.json")) or {}
        return self._page(
            "model.html",
            store=store,
            e=entry,
            others=_other_evaluations(store, entry.path),
            replies=replies,
            curve=curve.get("points") or [],
            report=_read_json(store, os.path.join(entry.path, "report.json")),
            promoted=registry.pointer(),
        )


_IMMUTABLE = {"Cache-Control": "max-age=86400, immutable"}
_PLOT_LOCK = threading.Lock()


def _read_json(store: Store, path: str) -> Any:
    try:
        return json.loads(store.fs.read_bytes(path))
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None


def _other_evaluations(store: Store, run_dir: str) -> list[dict[str, Any]]:
    """Return the model's evaluations on other versions' test splits (what retrains kept in
    its `evals/` folder when they compared it with a newer model), oldest version first."""
    folder = os.path.join(run_dir, EVALS_DIR)
    found = []
    for name in sorted(store.fs.listdir(folder))[:MAX_OTHER_EVALS]:
        if name.endswith(".json"):
            body = _read_json(store, os.path.join(folder, name))
            if isinstance(body, dict) and isinstance(body.get("evaluation"), dict):
                found.append(body)
    return sorted(found, key=lambda b: (b.get("eval_set") or {}).get("version") or 0)


def _here(folder: str) -> Any:
    from importlib.resources import files

    return files("pipeline.view") / folder


def media_type(data: bytes, column: str) -> str:
    """Return the MIME type of a media item from its bytes' signature."""
    if column == "images":
        return IMAGE_MIME.get(image_format(data), "application/octet-stream")
    return audio_mime(data)


def _media_url(
    store: Store,
    manifest: Manifest,
    record: dict[str, Any],
    column: str,
    i: int,
    plot: bool = False,
) -> str:
    """Return the URL of one media item (or of an audio item's spectrogram); the extension
    (from the item's path) lets a static copy open in a browser from the disk."""
    if plot:
        return f"/d/{store.name}/v{manifest.number}/s/{record['id']}/{i}.png"
    path = (record[column][i] or {}).get("path") or ""
    ext = os.path.splitext(path)[1].lower()
    ext = ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ""
    return f"/d/{store.name}/v{manifest.number}/m/{record['id']}/{column}/{i}{ext}"

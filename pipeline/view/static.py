"""`roleforge view --out DIR`: the server's pages written as a folder of files to share.

It walks the site from `/` as a browser would, asking `ViewSite.get` for each link it
finds, so the files are the pages the server answers; each root-relative link is rewritten
to the relative path of the file it names. A static copy has no query to answer, so it
holds the unfiltered pages (the site, built with `static=True`, shows no filter forms) and
the first `max_row_pages` pages of each version's rows.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from pipeline.view.site import ViewSite

log = logging.getLogger(__name__)

MAX_ROW_PAGES = 20
MAX_FILES = 20_000
_LINK = re.compile(r'(?P<attr>\b(?:href|src))="(?P<url>/[^"]*)"')
_PAGING_KEYS = {"after", "page"}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class StaticSite:
    """What an export wrote: files, and the links left out (filtered or past the page limit)."""

    folder: str
    files: int = 0
    skipped_links: int = 0


def file_for(url: str) -> str:
    """Return the relative file path a root-relative URL is written to."""
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    if not path or path.endswith("/"):
        path += "index"
    elif os.path.splitext(path)[1]:  # media, pictures, the stylesheet: as named
        return path
    if parts.query:
        query = "-".join(f"{k}-{v}" for k, v in sorted(parse_qsl(parts.query)))
        path += "-" + _SAFE.sub("_", query)
    return path + ".html"


def _follows(url: str, max_row_pages: int) -> bool:
    """Return whether the export follows a link: pages without a query, diffs, and the
    rows pages up to `max_row_pages` (filtered pages need the server)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if not query or parts.path.endswith("/diff"):
        return True
    if set(query) <= _PAGING_KEYS:
        page = query.get("page", "1")
        return page.isdigit() and int(page) <= max_row_pages
    return False


def write_static_site(
    site: ViewSite, folder: str, max_row_pages: int = MAX_ROW_PAGES
) -> StaticSite:
    """Write every page reachable from `/` (and the media they show) under `folder`."""
    result = StaticSite(os.path.abspath(folder))
    start = site.get("/")
    landing = start.headers.get("Location", "/") if start.status == 302 else "/"
    queue: deque[str] = deque([landing])
    seen = {landing}
    missing: set[str] = set()  # links that answered no page
    linking: dict[str, list[str]] = {}  # written page file -> the links it follows
    while queue:
        url = queue.popleft()
        parts = urlsplit(url)
        response = site.get(parts.path, dict(parse_qsl(parts.query)))
        if response.status == 302:
            target = response.headers["Location"]
            if target not in seen:
                seen.add(target)
                queue.append(target)
            continue
        if response.status != 200:
            log.warning("static copy: %s answered %d; left out", url, response.status)
            missing.add(url)
            continue
        relative = file_for(url)
        body = response.body
        if response.content_type.startswith("text/html"):
            text, links = _relinked(body.decode("utf-8"), relative, max_row_pages)
            linking[relative] = links
            for link in links:
                if link in seen:
                    continue
                if len(seen) >= MAX_FILES:
                    result.skipped_links += 1
                    continue
                seen.add(link)
                queue.append(link)
            result.skipped_links += text.count('data-left-out=""')
            body = text.encode("utf-8")
        target = os.path.join(result.folder, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(body)
        result.files += 1
    for relative, links in linking.items():
        dead = [link for link in links if link in missing]
        if dead:
            result.skipped_links += len(dead)
            _unlink(os.path.join(result.folder, relative), relative, dead)
    _write_index(result.folder, file_for(landing))
    return result


def _unlink(path: str, relative: str, dead: list[str]) -> None:
    """Point a written page's links to pages that answered nothing at `#`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    here = os.path.dirname(relative) or "."
    for link in dead:
        target = html.escape(os.path.relpath(file_for(link), here))
        text = text.replace(f'="{target}"', '="#" data-left-out=""')
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _relinked(text: str, relative: str, max_row_pages: int) -> tuple[str, list[str]]:
    """Return the page with its root-relative links made relative to its own file, and
    the links to follow. A link the export does not follow points nowhere (`#`)."""
    here = os.path.dirname(relative)
    follow: list[str] = []

    def relink(m: re.Match[str]) -> str:
        url = html.unescape(m.group("url"))
        if url.startswith("//"):
            return m.group(0)
        if not _follows(url, max_row_pages):
            return f'{m.group("attr")}="#" data-left-out=""'
        follow.append(url)
        target = os.path.relpath(file_for(url), here or ".")
        return f'{m.group("attr")}="{html.escape(target)}"'

    return _LINK.sub(relink, text), follow


def _write_index(folder: str, landing: str) -> None:
    """Write index.html at the top, sending the browser on to the landing page."""
    path = os.path.join(folder, "index.html")
    if os.path.exists(path):
        return
    href = html.escape(landing)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='refresh' content='0; url={href}'><title>roleforge view</title>"
            f"</head><body><a href='{href}'>open</a></body></html>"
        )

"""The HTTP side of `roleforge view`: the standard library's threading server, GET only.

Each request's path is percent-decoded once and handed to `ViewSite.get`, which decides
what it names; every other method is refused with 405. Media answer byte ranges (what an
`<audio>` element asks for to seek). Every response forbids scripts (CSP) and MIME sniffing.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from pipeline.view.site import CSP, Response, ViewSite

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def is_loopback(host: str) -> bool:
    """Return whether `host` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewRequestHandler(BaseHTTPRequestHandler):
    """Answers GET from the server's ViewSite; refuses every other method."""

    server: ViewServer
    server_version = "roleforge-view"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        if not self.server.host_allowed(self.headers.get("Host")):
            # A page elsewhere that rebinds its own name to 127.0.0.1 must not read the store.
            self._send(self.server.site._error(421, "this server answers to its own address only"))
            return
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            path = "\x00"  # refused below like any other path that names nothing
        if "\x00" in path:
            response = self.server.site._error(404, "no such page")
        else:
            try:
                response = self.server.site.get(path, query)
            except Exception:  # one broken page must not stop the server
                log.exception("GET %s failed", self.path)
                response = self.server.site._error(500, "this page failed; see the server log")
        self._send(response)

    def _refuse(self) -> None:
        body = b"roleforge view answers GET only\n"
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse  # noqa: N815
    do_OPTIONS = do_TRACE = do_CONNECT = _refuse  # noqa: N815

    def _send(self, response: Response) -> None:
        body, status = response.body, response.status
        headers = dict(response.headers)
        wanted = self.headers.get("Range")
        if status == 200 and wanted and not response.content_type.startswith("text/"):
            span = _byte_range(wanted, len(body))
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, stop = span
            status, body = 206, body[start:stop]
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(response.body)}"
        self.send_response(status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if not response.content_type.startswith("text/"):
            self.send_header("Accept-Ranges", "bytes")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.info("%s %s", self.address_string(), format % args)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Return [start, stop) of a single `bytes=a-b` range within `size`, or None."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # the last n bytes
        n = int(m.group(2))
        return (max(0, size - n), size) if n else None
    start = int(m.group(1))
    stop = min(size, int(m.group(2)) + 1) if m.group(2) else size
    return (start, stop) if start < stop else None


class ViewServer(ThreadingHTTPServer):
    """A threading HTTP server that serves one ViewSite."""

    daemon_threads = True

    def __init__(self, site: ViewSite, host: str = LOOPBACK, port: int = 0):
        self.site = site
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), ViewRequestHandler)

    def host_allowed(self, header: str | None) -> bool:
        """Return whether a request's Host header names this server: on a loopback address
        only the loopback names are (a DNS-rebinding page sends its own name); listening on
        another address, any is."""
        if not is_loopback(str(self.server_address[0])):
            return True
        if not header:
            return False
        host = header.rsplit(":", 1)[0] if not header.endswith("]") else header
        return is_loopback(host.strip("[]"))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}/"

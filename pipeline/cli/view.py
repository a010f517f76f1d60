"""`roleforge view`: a local web page over a store's versions, rows, quarantine, quality and models."""

from __future__ import annotations

import os

import typer


def view(
    ref: str | None = typer.Argument(
        None, help="NAME or NAME@vN to open at (default: every dataset of the store)"
    ),
    store: str | None = typer.Option(
        None, "--store", help="store path (default: $ROLEFORGE_STORE, then ./roleforge-store)"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="port (0: any free one)"),
    out: str | None = typer.Option(
        None, "--out", help="write the pages as a static folder here instead of serving"
    ),
) -> None:
    """Serve a local web page to read versions, rows, quarantine, quality and models."""
    from pipeline.cli.common import EXIT_FAILED
    from pipeline.store.read import parse_ref
    from pipeline.view import ViewServer, ViewSite, write_static_site
    from pipeline.view.server import is_loopback

    name, version = None, None
    try:
        if ref:
            name, version = parse_ref(ref)
        uri = store or os.environ.get("ROLEFORGE_STORE") or "roleforge-store"
        site = ViewSite(uri, name, version, static=out is not None)
        if name and not site.fs.listdir(os.path.join(site.path, name, "versions")):
            raise ValueError(f"dataset {name!r} has no committed version in {site.location}")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if out is not None:
        written = write_static_site(site, out)
        typer.echo(f"wrote {written.files} files to {out} (open {os.path.join(out, 'index.html')})")
        if written.skipped_links:
            typer.echo(
                f"{written.skipped_links} links lead nowhere in the copy (filtered pages, rows "
                "past the page limit, missing records): `roleforge view` serves them"
            )
        return
    if not is_loopback(host):
        typer.echo(
            f"warning: listening on {host}: anyone who reaches this machine can read the store "
            "(there is no login)",
            err=True,
        )
    try:
        server = ViewServer(site, host, port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"roleforge view: {server.url} (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add `view` to the `roleforge` app."""
    app.command()(view)

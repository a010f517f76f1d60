"""`roleforge inspect NAME@vN`: what the quality stages found in a committed version.

Counts per flag per source and character with three examples each (`--flags`), and the
near-duplicate clusters with their members and the similarity of each noted pair
(`--duplicates`); both when neither is given. Read from the `quality` column of the
shards' light columns, never the media.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # `roleforge --help` must not import pyarrow
    from pipeline.cards.quality import QualityFacts


def inspect(
    ref: str = typer.Argument(..., help="NAME or NAME@vN (default: the latest version)"),
    flags: bool = typer.Option(False, "--flags", help="counts per flag, with examples"),
    duplicates: bool = typer.Option(False, "--duplicates", help="near-duplicate clusters"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    store: str | None = typer.Option(None, "--store", help="store path"),
) -> None:
    """Show the quality flags and near-duplicate clusters of a version."""
    from pipeline.cards.quality import read_quality_facts
    from pipeline.cli.common import checked_version

    s, manifest = checked_version(ref, store, None)
    facts = read_quality_facts(s.version_dir(manifest.number), manifest.shards, s.fs)
    label = f"{manifest.name}@v{manifest.number}"
    both = not flags and not duplicates
    if as_json:
        data = facts.to_dict() if facts else {"records": 0}
        dropped = ([] if flags or both else ["flags"]) + (
            [] if duplicates or both else ["clusters", "pairs"]
        )
        for key in dropped:
            data.pop(key, None)
        typer.echo(json.dumps({"version": label, **data}, indent=2, ensure_ascii=False))
        return
    if facts is None:
        typer.echo(f"{label}: no quality column (the recipe had no `quality:` section)")
        return
    typer.echo(f"{label}: {facts.records} records with quality findings")
    if flags or both:
        _print_flags(facts)
    if duplicates or both:
        _print_duplicates(facts)


def _print_flags(facts: QualityFacts) -> None:
    if not facts.flags:
        typer.echo("no flags")
        return
    for flag in sorted(facts.flags):
        typer.echo(f"\n{flag}: {sum(facts.flags[flag].values())} records")
        for f, source, character, n in facts.flag_rows():
            if f == flag:
                typer.echo(f"  {n:>6}  {source} / {character}")
        for e in facts.examples.get(flag, []):
            typer.echo(f"    e.g. {e.record_id[:12]} ({e.source}): {e.note[:160]}")


def _print_duplicates(facts: QualityFacts) -> None:
    typer.echo(f"\nnear-duplicate clusters: {len(facts.clusters)}")
    similarity = {(a, b): (m, s) for a, b, m, s in facts.pairs}
    for cluster, members in sorted(facts.clusters.items()):
        typer.echo(f"  {cluster[:12]}: {len(members)} records")
        for rid in sorted(members):
            if rid == cluster:
                continue
            m, sim = similarity.get(tuple(sorted((cluster, rid))), ("?", float("nan")))
            typer.echo(f"    {rid[:12]}  {m} {sim:.2f}")
    cross = sorted(p for p in facts.pairs if p[2] != "text")
    if cross:
        typer.echo(f"\nmedia shared across records (not grouped unless group_media): {len(cross)}")
        for a, b, m, sim in cross[:20]:
            typer.echo(f"  {a[:12]} ~ {b[:12]}  {m} {sim:.2f}")


def register(app: typer.Typer) -> None:
    """Add `inspect` to the `roleforge` app."""
    app.command()(inspect)

"""What the data-job commands show on a terminal: stage progress and summary tables (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.record.schema import SPLITS
from pipeline.store.manifest import Manifest


class RichStageProgress:
    """One rich progress bar per stage, drawn on stderr so stdout stays machine-readable."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichStageProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, stage: str, total: int | None) -> None:
        self._tasks[stage] = self._progress.add_task(stage, total=total)

    def advance(self, stage: str, n: int) -> None:
        self._progress.advance(self._tasks[stage], n)

    def finish(self, stage: str) -> None:
        task = self._tasks[stage]
        done = self._progress.tasks[task].completed
        self._progress.update(task, total=done, completed=done)


def counts_table(counts: dict[str, dict[str, int]], title: str = "records per stage") -> Table:
    """Return a table of in/out/dropped/quarantined (and variants) per stage."""
    table = Table(title=title)
    for column in ("stage", "in", "out", "dropped", "quarantined", "variants"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, c in counts.items():
        variants = str(c["variants"]) if "variants" in c else ""
        table.add_row(
            stage, str(c["in"]), str(c["out"]), str(c["dropped"]), str(c["quarantined"]), variants
        )
    return table


def print_run_summary(result: dict[str, Any], console: Console | None = None) -> None:
    """Print where the version is, its content id, rows per split and per-stage counts."""
    console = console or Console()
    console.print(counts_table(result["counts"]))
    splits = ", ".join(f"{s} {result['splits'].get(s, 0)}" for s in SPLITS)
    if result["unchanged"]:
        console.print(
            f"[bold]{result['name']}[/]: unchanged, same content as v{result['version']} "
            "(nothing published)"
        )
    else:
        console.print(f"[bold]{result['name']}[/]: published v{result['version']}")
    console.print(f"  rows: {splits}")
    console.print(f"  original records: {result['reused']} reused, {result['computed']} computed")
    groups = result.get("split_groups")
    if groups:
        # Groups are what the split holds out whole: conversations, or characters.
        console.print("  split groups: " + ", ".join(f"{s} {groups.get(s, 0)}" for s in SPLITS))
    console.print(f"  content id: {result['content_id']}")
    console.print(f"  path: {result['path']}")
    train = result.get("train")
    if train:
        console.print(f"  model: {train.get('model_path')}")
        first, last = train.get("train_loss_first"), train.get("train_loss_last")
        test_loss = (train.get("eval") or {}).get("loss")
        console.print(f"  train loss {_num(first)} -> {_num(last)}, test loss {_num(test_loss)}")


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def print_versions(name: str, manifests: list[Manifest], console: Console | None = None) -> None:
    """Print one line per committed version."""
    console = console or Console()
    table = Table(title=f"{name}: versions")
    for column in ("version", "created", "parent", "content id", *SPLITS, "run"):
        table.add_column(column)
    for m in manifests:
        table.add_row(
            f"v{m.version}",
            m.created_at,
            f"v{m.parent_version}" if m.parent_version else "-",
            m.content_id[:16],
            *(str(m.splits.get(s, 0)) for s in SPLITS),
            m.run_id,
        )
    console.print(table)


def print_manifest(manifest: Manifest, path: str, console: Console | None = None) -> None:
    """Print a version's summary: identity, counts, splits and shards."""
    console = console or Console()
    console.print(f"[bold]{manifest.name}@v{manifest.version}[/]  {path}")
    console.print(f"  created {manifest.created_at}, run {manifest.run_id}")
    console.print(f"  content id {manifest.content_id}")
    console.print(f"  recipe hash {manifest.recipe_hash}")
    console.print(counts_table(manifest.to_dict()["counts"]))
    shards = Table(title="shards")
    for column in ("path", "split", "rows", "bytes", "sha256"):
        shards.add_column(column)
    for s in manifest.shards:
        shards.add_row(s.path, s.split, str(s.rows), str(s.bytes), s.sha256[:16])
    console.print(shards)
    reasons = manifest.quarantine.reasons
    if reasons:
        console.print("  quarantined: " + ", ".join(f"{r} {n}" for r, n in reasons.items()))


def print_diff(diff: dict[str, Any], console: Console | None = None) -> None:
    """Print records added/removed/changed and per-split deltas."""
    console = console or Console()
    console.print(
        f"[bold]{diff['name']}[/] v{diff['from']} -> v{diff['to']}: "
        f"{len(diff['added'])} added, {len(diff['removed'])} removed, "
        f"{len(diff['changed'])} changed"
    )
    table = Table(title="per split (before -> after)")
    stats = next(iter(diff["splits"].values())).keys() if diff["splits"] else []
    table.add_column("split")
    for stat in stats:
        table.add_column(stat, justify="right")
    for split, values in diff["splits"].items():
        table.add_row(
            split,
            *(f"{v['before']} -> {v['after']} ({v['delta']:+})" for v in values.values()),
        )
    console.print(table)


def print_verify(report: dict[str, Any], console: Console | None = None) -> None:
    """Print the result of re-hashing a version."""
    console = console or Console()
    head = f"{report['name']}@v{report['version']}: {report['checked']} files checked"
    if report["ok"]:
        console.print(f"[green]ok[/] {head}, all match the manifest")
        return
    console.print(f"[red]MISMATCH[/] {head}")
    for p in report["problems"]:
        console.print(
            f"  {p['path']}: {p['problem']} (expected {p['expected']}, found {p['actual']})"
        )

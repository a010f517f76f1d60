"""Publishing a staged version: move it into versions/v<N>/, write cards, create the manifest.

The manifest's exclusive creation is the commit point: before it a v<N>/ folder is invisible
to readers (they trust only manifests) and `roleforge gc` removes it; after it the version is
immutable. A fault can be injected at every step (`pipeline.store.atomic.fault_point`, one of
FAULT_POINTS) to prove that a crash anywhere leaves only complete versions visible.

On an object store the move is a copy, and committers on other machines share no lock, so
a committer first claims N with a conditional PUT of `versions/v<N>/.claim`: a loser moves
on to N+1 before it copies anything, and never writes into the winner's folder.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.store.atomic import fault_point
from pipeline.store.fs import CLAIM_FILE, LocalFS, StoreFS
from pipeline.store.lock import commit_lock
from pipeline.store.manifest import CardEntry, Manifest
from pipeline.store.read import Store

log = logging.getLogger(__name__)

FAULT_POINTS = ("after_staging", "after_move", "after_cards", "before_manifest", "after_manifest")
STAGES = ("ingest", "validate", "dedup", "split", "augment", "write")

# (version folder, manifest without cards, parent manifest, diff summary, fs=store fs)
# -> card file names
CardWriter = Callable[..., list[str]]
# (parent manifest, parent folder, manifest, version folder, fs=store fs) -> diff summary
DiffSummarizer = Callable[..., dict[str, Any]]
# How many taken numbers a committer steps over before it gives up (racing writers each
# take one; a store with this many crashed leftovers in a row needs `roleforge gc`).
MAX_NUMBER_TRIES = 1000


class CommitCheckFailed(RuntimeError):
    """The staged version fails a pre-commit check; nothing was published."""


def check_counts(counts: dict[str, dict[str, int]]) -> None:
    """Raise CommitCheckFailed unless every stage has in == out + dropped + quarantined and
    each stage takes in what the previous one let out."""
    problems = []
    for stage in STAGES:
        c = counts.get(stage)
        if c is None:
            problems.append(f"{stage}: no counts")
            continue
        if c["in"] != c["out"] + c["dropped"] + c["quarantined"]:
            problems.append(
                f"{stage}: in {c['in']} != out {c['out']} + dropped {c['dropped']} "
                f"+ quarantined {c['quarantined']}"
            )
    if not problems:
        for before, after in zip(STAGES, STAGES[1:], strict=False):
            expected = counts[before]["out"]
            if before == "augment":
                expected += counts[before].get("variants", 0)
            if counts[after]["in"] != expected:
                problems.append(
                    f"{after}: in {counts[after]['in']} != {expected} let out by {before}"
                )
    if problems:
        raise CommitCheckFailed("stage counts do not add up: " + "; ".join(problems))


def card_metadata(recipe: dict[str, Any]) -> dict[str, Any]:
    """Return what the cards show that the shards do not decide: the licences, from a
    resolved recipe's JSON (a manifest's `recipe`)."""
    return {
        "license": recipe.get("license"),
        "license_name": recipe.get("license_name"),
        "license_link": recipe.get("license_link"),
        "sources": {s.get("name"): s.get("license") for s in recipe.get("sources") or []},
    }


def same_publication(committed: Manifest, staged: Manifest) -> bool:
    """Return whether `staged` would publish nothing new over `committed`: the same content
    and the same card-only metadata (a licence change alone is a new version, so its card
    is right)."""
    return committed.content_id == staged.content_id and card_metadata(
        committed.recipe
    ) == card_metadata(staged.recipe)


def reclaim_leftover(store: Store, fs: StoreFS, number: int) -> None:
    """Remove v<number>/ when it has no manifest and the store is local: the caller holds
    the commit lock, which every local committer takes, so it is a crashed commit's leftover,
    and keeping it would make the next version skip its number. On an object store the lock
    does not reach other machines' committers, so the folder may be one's work: it stays."""
    vdir = store.version_dir(number)
    if fs.is_local and fs.exists(vdir) and not fs.exists(store.manifest_path(number)):
        log.info("v%d of %s is a crashed commit's leftover; reusing its number", number, store.name)
        fs.remove_tree(vdir)


@dataclass(frozen=True)
class CommitResult:
    """What the commit did: the version that holds this content, and whether it is new."""

    version: int
    path: str
    content_id: str
    unchanged: bool
    manifest: Manifest


class VersionCommitter:
    """Moves a staged version folder into the store and creates its manifest exclusively."""

    def __init__(
        self,
        store: Store,
        fs: StoreFS | None = None,
        write_cards: CardWriter | None = None,
        summarize_diff: DiffSummarizer | None = None,
        cards_copy_dir: str | None = None,
    ):
        self.store = store
        self.fs = fs if fs is not None else store.fs
        self.write_cards = write_cards
        self.summarize_diff = summarize_diff
        self.cards_copy_dir = cards_copy_dir

    def _free_number(self, latest: Manifest | None) -> int:
        """Return the first number after the latest version whose v<N>/ is free.

        Called under the commit lock, so a v<N>/ without a manifest is a crashed commit's
        leftover (gc removes it), never a competitor's half-made version.
        """
        number = (latest.number if latest else 0) + 1
        reclaim_leftover(self.store, self.fs, number)
        while self.fs.exists(self.store.version_dir(number)) or self.fs.exists(
            self.store.manifest_path(number)
        ):
            log.info(
                "v%d of %s is a crashed commit's leftover; skipping it", number, self.store.name
            )
            number += 1
        return number

    def commit(self, staged: str, manifest: Manifest) -> CommitResult:
        """Publish the staged folder (shards written and hashed) with `manifest`
        (everything but version, parent_version and cards); return the committed version,
        or the latest one with `unchanged=True` when it already holds this content."""
        # Every staged file is fsynced here, once, and not by the tasks that wrote it: the
        # disk flushed each shard while the next was encoded, so this pass waits for
        # little. The order keeps a crash safe: all shards, sidecars and their folder
        # entries are durable before the folder is renamed into versions/ and before the
        # manifest (the commit point) is created, so a manifest never survives a crash that
        # its files did not; a crash before the manifest leaves a folder no reader trusts.
        # On an object store a PUT is durable when it returns: nothing to do.
        self.fs.sync_tree(staged)
        fault_point("after_staging")
        self.fs.makedirs(self.store.versions_dir)
        # Choosing N and the parent, moving the folder and creating the manifest happen
        # under one lock: racing writers then publish a linear chain, and the same content
        # from several of them ends as one version and the rest `unchanged`.
        with commit_lock(self.store):
            parent = self.store.latest_manifest()
            if parent is not None and same_publication(parent, manifest):
                return self._unchanged(parent)
            for _ in range(MAX_NUMBER_TRIES):
                number = self._free_number(parent)
                vdir = self.store.version_dir(number)
                try:
                    self._claim(number)
                    self.fs.rename_dir(staged, vdir)
                    break
                except FileExistsError:
                    # Another committer (one this lock does not cover) took N first.
                    log.info(
                        "v%d of %s was taken meanwhile; trying the next", number, self.store.name
                    )
                    parent = self.store.latest_manifest()
                    if parent is not None and same_publication(parent, manifest):
                        return self._unchanged(parent)
            else:
                raise CommitCheckFailed(
                    f"{self.store.name}: no free version number after {MAX_NUMBER_TRIES} tries"
                )
            fault_point("after_move")
            manifest = manifest.committed(number, parent.number if parent else None)
            # The cards describe the manifest without cards; then the manifest lists them.
            manifest = manifest.with_cards(self._write_cards(vdir, manifest, parent))
            fault_point("after_cards")
            manifest = manifest.sealed()  # the digest over every other field, last
            fault_point("before_manifest")
            self.fs.create_exclusive(self.store.manifest_path(number), manifest.to_json_bytes())
            fault_point("after_manifest")
            self._release_claim(number)
        self._copy_card(vdir, number)
        return CommitResult(number, vdir, manifest.content_id, False, manifest)

    def _unchanged(self, parent: Manifest) -> CommitResult:
        number = parent.number
        return CommitResult(number, self.store.version_dir(number), parent.content_id, True, parent)

    def _claim(self, number: int) -> None:
        """On an object store, take number N for this committer alone (a conditional PUT
        inside v<N>/); raise FileExistsError when another has it. Locally the lock and the
        rename's check already make N ours."""
        if self.fs.is_local:
            return
        claim = os.path.join(self.store.version_dir(number), CLAIM_FILE)
        # A token of its own: a claimer whose retried PUT meets its own claim has it (see
        # ObjectStoreFS.holds); another claimer's claim never reads the same.
        token = secrets.token_hex(16)
        self.fs.create_exclusive(claim, f"{self.store.name} v{number} {token}\n".encode())

    def _release_claim(self, number: int) -> None:
        """Remove the claim once the manifest holds N (a version folder then holds only its
        shards and cards); a crash before this leaves it to gc."""
        if not self.fs.is_local:
            self.fs.remove_tree(os.path.join(self.store.version_dir(number), CLAIM_FILE))

    def _write_cards(
        self, vdir: str, manifest: Manifest, parent: Manifest | None
    ) -> list[CardEntry]:
        if self.write_cards is None:
            return []
        diff = None
        if parent is not None and self.summarize_diff is not None:
            parent_dir = self.store.version_dir(parent.number)
            diff = self.summarize_diff(parent, parent_dir, manifest, vdir, fs=self.fs)
        names = self.write_cards(vdir, manifest, parent, diff, fs=self.fs)
        cards = []
        for name in sorted(names):
            path = os.path.join(vdir, name)
            self.fs.fsync_file(path)
            cards.append(CardEntry(path=name, sha256=self.fs.sha256(path)))
        self.fs.fsync_dir(vdir)
        return cards

    def _copy_card(self, vdir: str, number: int) -> None:
        readme = os.path.join(vdir, "README.md")
        if self.cards_copy_dir is None or not self.fs.exists(readme):
            return
        # The copy is for git, so it is always local, whatever the store is.
        target = os.path.join(self.cards_copy_dir, self.store.name, f"v{number}.md")
        try:
            LocalFS().write_bytes(target, self.fs.read_bytes(readme))
        except OSError as exc:  # the version is committed; a missing git copy must not undo it
            log.warning("could not copy the card to %s: %s", target, exc)

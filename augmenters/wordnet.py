"""Synonyms from the WordNet 3.0 database files, read directly (no nltk, no download).

Debian's `wordnet-base` ships the files in /usr/share/wordnet. nltk's reader cannot open
that folder as is (it wants a `lexnames` file the package lacks, and nltk 3.10 refuses
paths outside its data roots), and importing nltk costs ~3 s per worker, while the two
files a synonym lookup needs parse in well under a second.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

ENV_VAR = "ROLEFORGE_WORDNET"
DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/share/wordnet")
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
INSTALL_HINT = (
    "install it with `apt-get install wordnet-base` (or `make wordnet`), "
    f"or set {ENV_VAR}=<dir holding index.noun and data.noun>"
)


class WordNetMissing(FileNotFoundError):
    """The WordNet database files are not where we look; the message says how to install them."""


def _has_database(folder: Path) -> bool:
    return all(
        (folder / f"{kind}.{pos}").is_file()
        for pos in POS_FILES.values()
        for kind in ("index", "data")
    )


def find_wordnet() -> Path:
    """Return the folder holding the WordNet database ($ROLEFORGE_WORDNET first); raise WordNetMissing."""
    override = os.environ.get(ENV_VAR)
    candidates = [override] if override else list(DEFAULT_DIRS)
    for candidate in candidates:
        folder = Path(candidate)
        if _has_database(folder):
            return folder
    where = f"{ENV_VAR}={override}" if override else ", ".join(DEFAULT_DIRS)
    raise WordNetMissing(f"WordNet data not found (looked in {where}); {INSTALL_HINT}")


class WordNet:
    """Synonym lookup over one WordNet database folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # lemma -> [(pos, tagged sense count, synset offsets in sense-frequency order)]
        self._index: dict[str, list[tuple[str, int, list[int]]]] = {}
        for pos, stem in POS_FILES.items():
            with open(root / f"index.{stem}", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(" "):  # licence header
                        continue
                    fields = line.split()
                    n_synsets, n_pointers = int(fields[2]), int(fields[3])
                    tagged = int(fields[5 + n_pointers])
                    offsets = [int(o) for o in fields[6 + n_pointers : 6 + n_pointers + n_synsets]]
                    self._index.setdefault(fields[0], []).append((pos, tagged, offsets))
        self._data = {pos: (root / f"data.{stem}").read_bytes() for pos, stem in POS_FILES.items()}
        # How often each (lemma, part of speech) was seen in the tagged SemCor corpus; it
        # stands in for a POS tagger when deciding whether "run" is the noun or the verb.
        self._tag_counts: dict[tuple[str, str], int] = {}
        counts = root / "cntlist.rev"
        if counts.is_file():
            ss_pos = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}
            for line in counts.read_text(encoding="utf-8").splitlines():
                key, _, count = line.split()
                lemma, _, rest = key.partition("%")
                slot = (lemma, ss_pos.get(rest[:1], "n"))
                self._tag_counts[slot] = self._tag_counts.get(slot, 0) + int(count)

    def _synset_words(self, pos: str, offset: int) -> list[str]:
        data = self._data[pos]
        line = data[offset : data.index(b"\n", offset)].decode("utf-8").split()
        count = int(line[3], 16)
        words = line[4 : 4 + 2 * count : 2]
        # Adjective entries may carry a syntactic marker such as "galore(ip)".
        return [w.split("(", 1)[0].replace("_", " ") for w in words]

    def synonyms(self, word: str) -> list[str]:
        """Return synonyms of `word` in its most frequent sense (empty when it is not a WordNet lemma).

        Only the base form is looked up, so inflected words ("dogs") get none: a lemma
        swapped into an inflected slot would break the grammar of the turn.
        """
        entries = self._index.get(word.lower())
        if not entries:
            return []
        lemma = word.lower()
        # Without a POS tagger, take the part of speech the word is most often tagged with,
        # and only its first (most frequent) sense: later senses drift in meaning.
        pos, _, offsets = max(
            entries, key=lambda e: (self._tag_counts.get((lemma, e[0]), 0), e[1], len(e[2]))
        )
        found = [w for w in self._synset_words(pos, offsets[0]) if w.lower() != lemma]
        if lemma == word:  # a lower-case word never turns into a proper or taxonomic name
            found = [w for w in found if w.islower()]
        return sorted(dict.fromkeys(found))


@functools.lru_cache(maxsize=2)
def load_wordnet(root: str) -> WordNet:
    """Return the (process-cached) WordNet reader for `root`."""
    return WordNet(Path(root))

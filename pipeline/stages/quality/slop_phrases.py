"""The shipped list of over-used phrases of role-play fine-tunes ("slop"). Edit freely.

Multi-word phrases only: single words ("tapestry", "testament") misfire on ordinary prose.
Each entry is a lower-case regular expression matched against the lower-cased character turn
where a word starts (not after a letter or digit: "hi don't bite" is no "i don't bite");
`quality.slop.phrases` in the recipe adds plain phrases to it.
"""

from __future__ import annotations

SLOP_PHRASES: tuple[str, ...] = (
    r"sends? (?:a )?shivers? (?:down|up) (?:his|her|my|your|their) spines?",
    r"shivers? (?:ran|run|running) down (?:his|her|my|your|their) spines?",
    r"barely above a whisper",
    r"a mix(?:ture)? of (?:\w+ )?and (?:\w+ )?",
    r"eyes (?:sparkling|gleaming|twinkling|glinting) with (?:mischief|amusement)",
    r"a mischievous (?:glint|twinkle|grin|smirk)",
    r"maybe,? just maybe",
    r"the air (?:was|is|grew) (?:thick|heavy) with",
    r"little did (?:he|she|they|you|i) know",
    r"(?:is|was|stands as) a testament to",
    r"rich tapestry",
    r"(?:can't|cannot) help but",
    r"(?:his|her|their) ministrations",
    r"with an audible pop",
    r"(?:i|we) don't bite\W+(?:much|unless)",
    r"(?:her|his) voice (?:husky|low and husky)",
    r"a pang of",
    r"(?:chuckles|laughs) darkly",
    r"you're a feisty one",
    r"leaving little to the imagination",
    r"in the grand scheme of things",
    r"delve (?:deeper )?into",
    r"(?:the )?world (?:seemed to )?narrow(?:ed|s)? to",
    r"(?:a|the) dance of (?:shadows|light|flames)",
    r"(?:his|her) breath hitch(?:ed|es)",
    r"(?:a )?wave of (?:\w+ )?(?:washed|washes) over",
    r"unbeknownst to",
    r"a (?:sly|knowing|wicked) smirk",
    r"(?:it's|it is) not just (?:\w+ ){1,3}(?:, |— |- )?it's",
    r"the scent of (?:\w+ )?and (?:\w+ )?",
)

"""The recipe's `quality:` section: one parameter model per check, each with its policy.

A check computes a per-record fact, then its policy decides: `quarantine` (the record
leaves with the check's reason), `flag` (the record stays, the code lands in
`quality.flags`) or `off` (the check does not run). The defaults quarantine what teaches
the model to break character (AI exposure, unresolved macros, contamination) and flag what
needs a human look (speaker leaks, repetition, language, slop, length).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.record.config import StrictModel

Policy = Literal["quarantine", "flag", "off"]

# The languages the identifier chooses between (ISO 639-1). A closed set keeps the
# identifier's first load to seconds and its errors among languages corpora really hold.
DEFAULT_LANGUAGES = ("en", "zh", "ja", "ko", "fr", "de", "es", "pt", "it", "ru")


class AiExposureConfig(StrictModel):
    policy: Policy = "quarantine"
    # Added to the shipped English and Chinese phrases; matched case-insensitively.
    phrases: list[str] = Field(default_factory=list)


class SpeakerLeakConfig(StrictModel):
    policy: Policy = "flag"
    # Speaker labels besides "User", "Human", {{user}}, <USER> and the record's user names.
    labels: list[str] = Field(default_factory=list)


class MacroConfig(StrictModel):
    policy: Policy = "quarantine"
    # Regular expressions added to the shipped macro patterns.
    patterns: list[str] = Field(default_factory=list)


class RepetitionConfig(StrictModel):
    policy: Policy = "flag"
    n: int = Field(default=8, ge=2)  # words per n-gram (CJK characters count as words)
    # Flag when this fraction of the character's n-grams repeat an earlier one.
    max_fraction: float = Field(default=0.3, gt=0, le=1)


class SlopConfig(StrictModel):
    policy: Literal["flag", "off"] = "flag"
    phrases: list[str] = Field(default_factory=list)  # added to the shipped list
    min_hits: int = Field(default=2, ge=1)  # phrases per record before it is flagged


class LanguageConfig(StrictModel):
    # None: `flag` when the recipe declares `expected`, else `off`. The identifier is the
    # costliest check: on 100 records of the benchmark corpus the record pass took 3.0x as
    # long with every default on, 1.85x with this check off (benchmarks/quality_bench.py).
    policy: Policy | None = None
    # The corpus's declared language (ISO 639-1); None: the character turns' majority.
    expected: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES), min_length=2)
    min_chars: int = Field(default=24, ge=1)  # shorter turns are not judged

    @model_validator(mode="after")
    def _expected_is_a_candidate(self) -> LanguageConfig:
        if self.expected is not None and self.expected not in self.languages:
            raise ValueError(f"expected {self.expected!r} is not in languages")
        if self.policy is None:
            object.__setattr__(self, "policy", "flag" if self.expected is not None else "off")
        return self


class NearDupConfig(StrictModel):
    enabled: bool = True
    # `group`: a cluster is one split group (no near-copy crosses train/validation/test);
    # `keep_one`: the smallest id of a cluster stays, the others leave as near_duplicate.
    action: Literal["group", "keep_one"] = "group"
    threshold: float = Field(default=0.8, gt=0, le=1)  # estimated Jaccard of the shingles
    shingle: int = Field(default=5, ge=1)  # characters per shingle
    num_perm: int = Field(default=128, ge=16, le=1024)
    image_distance: int = Field(default=8, ge=0, le=30)  # pHash bits that may differ
    audio_distance: int = Field(default=4, ge=0, le=30)  # spectral-hash bits that may differ
    # Records sharing only a near-identical image or clip are reported; grouped when True.
    group_media: bool = False
    # An opening character turn shared by at least this many records is flagged.
    greeting_min_records: int = Field(default=3, ge=2)


class DecontaminateConfig(StrictModel):
    policy: Literal["quarantine", "flag"] = "quarantine"
    n: int = Field(default=13, ge=4)  # words per shared n-gram (datatrove's default)


class QualityConfig(StrictModel):
    ai_exposure: AiExposureConfig = Field(default_factory=AiExposureConfig)
    speaker_leak: SpeakerLeakConfig = Field(default_factory=SpeakerLeakConfig)
    unresolved_macro: MacroConfig = Field(default_factory=MacroConfig)
    repetition: RepetitionConfig = Field(default_factory=RepetitionConfig)
    slop: SlopConfig = Field(default_factory=SlopConfig)
    language_mismatch: LanguageConfig = Field(default_factory=LanguageConfig)
    near_dup: NearDupConfig = Field(default_factory=NearDupConfig)
    # The token ledger: counts under `tokenizer`'s chat template (None: the recipe's
    # train.model, else tiny-random); over `max_tokens`, `max_tokens_policy` applies
    # (`truncate` drops whole turns from the end until the record fits).
    count_tokens: bool = True
    tokenizer: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_tokens_policy: Literal["quarantine", "flag", "truncate"] = "flag"
    # Held-out files (JSONL of records, JSON, or plain text) that must not leak into training.
    decontaminate: list[str] = Field(default_factory=list)
    decontamination: DecontaminateConfig = Field(default_factory=DecontaminateConfig)

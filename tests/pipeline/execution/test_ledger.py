"""The run ledger: the record pass's stages summed in run order, and checked."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.execution.ledger import RunLedger
from pipeline.execution.passes import StageTally
from pipeline.store.commit import CommitCheckFailed
from pipeline.store.quarantine import QuarantineWriter


def _task(split_in: int, rejected: int, variants: int) -> dict[str, StageTally]:
    kept = split_in - rejected
    return {
        "split": StageTally(split_in, split_in),
        "validate": StageTally(split_in, kept, rejected, Counter(corrupt_image=rejected)),
        "augment": StageTally(kept, kept + variants, 0, Counter(variants=variants)),
    }


def test_the_ledger_sums_the_pass_tasks_stage_by_stage_in_the_order_they_ran(tmp_path) -> None:
    ledger = RunLedger(["s"], QuarantineWriter(str(tmp_path / "q.jsonl")))
    ledger.add_pass(_task(4, 1, 6))
    ledger.add_pass(_task(3, 0, 4))
    assert list(ledger.pass_stages) == ["split", "validate", "augment"]
    validate = ledger.pass_stages["validate"]
    assert (validate.records_in, validate.out, validate.quarantined) == (7, 6, 1)
    assert ledger.pass_stages["augment"].stats == {"variants": 10}
    ledger.check_pass(rejected=1)


def test_a_pass_whose_counts_disagree_with_its_quarantine_parts_is_refused(tmp_path) -> None:
    ledger = RunLedger(["s"], QuarantineWriter(str(tmp_path / "q.jsonl")))
    ledger.add_pass(_task(4, 1, 6))
    with pytest.raises(CommitCheckFailed, match="quarantine parts hold 2"):
        ledger.check_pass(rejected=2)
    broken = _task(4, 1, 6)
    broken["augment"].records_in = 5  # more than validation let out
    ledger = RunLedger(["s"], QuarantineWriter(str(tmp_path / "q.jsonl")))
    ledger.add_pass(broken)
    with pytest.raises(CommitCheckFailed, match="augment: in 5 != 3"):
        ledger.check_pass(rejected=1)

"""``resume`` alone, without HTTP or Airflow runs: the checkpoint's round trip and the Skipper's checks.

Real retries that resume from a checkpoint are in tests/reliability/test_resume.py.
"""

from __future__ import annotations

import json

import pytest

from peak_provider.exceptions import PeakResumeError
from peak_provider.ingest import Progress
from peak_provider.result import IngestResult
from peak_provider.resume import KEY, Checkpoint, Skipper, fingerprint, jsonable_key
from tests.context import MemoryTaskStateStore


def _result() -> IngestResult:
    return IngestResult(resource="products", object_name="INV_PRODUCTS_OOTB", operation="APPEND")


def test_fingerprint_is_stable_and_tied_to_the_query_and_its_parameters():
    assert fingerprint("SELECT 1", [1]) == fingerprint("SELECT 1", [1])
    assert len(fingerprint("SELECT 1", None)) == 16
    assert fingerprint("SELECT 1", [1]) != fingerprint("SELECT 1", [2])
    assert fingerprint("SELECT 1", [1]) != fingerprint("SELECT 2", [1])
    assert fingerprint("SELECT 1", {"a": 1, "b": 2}) == fingerprint("SELECT 1", {"b": 2, "a": 1})


def test_jsonable_key_is_a_key_as_json_gives_it_back():
    assert jsonable_key(("P1", 2)) == ["P1", 2] == jsonable_key(["P1", 2])
    assert jsonable_key("P1") == "P1" and jsonable_key(None) is None


def test_without_a_task_state_store_nothing_is_read_or_kept():
    checkpoint = Checkpoint({}, "f", "APPEND")
    assert not checkpoint.available
    checkpoint.save(Progress(ranges=[[0, 2, 2, 0, 0]], keys={1: "P2"}))
    checkpoint.clear()
    assert checkpoint.load() is None and checkpoint.rows_skipped == 0 and checkpoint.attempts == 1


def test_a_saved_checkpoint_is_read_by_the_next_attempt_of_the_same_query_and_operation():
    store = MemoryTaskStateStore()
    first = Checkpoint({"task_state_store": store}, "f", "APPEND")
    assert first.available and first.load() is None
    first.save(Progress(ranges=[[0, 3, 2, 1, 0], [5, 6, 0, 0, 1]], keys={2: ("P3", 1), 5: "P6"}))
    store.data[KEY] = json.loads(json.dumps(store.data[KEY]))  # as Airflow keeps it: JSON

    second = Checkpoint({"task_state_store": store}, "f", "APPEND")
    earlier = second.load()
    assert earlier == Progress(ranges=[[0, 3, 2, 1, 0], [5, 6, 0, 0, 1]], keys={2: ["P3", 1], 5: "P6"})
    assert second.attempts == 2 and second.rows_skipped == 4
    assert Checkpoint({"task_state_store": store}, "other query", "APPEND").load() is None
    assert Checkpoint({"task_state_store": store}, "f", "UPSERT").load() is None
    second.clear()
    assert KEY not in store.data


def test_skipper_skips_settled_ranges_and_carries_their_counts_after_the_key_check():
    result = _result()
    skipper = Skipper(Progress(ranges=[[0, 2, 1, 1, 0], [3, 4, 0, 0, 1]], keys={1: ["P2"], 3: "P4"}), result)
    assert [skipper.skips(p) for p in range(5)] == [True, True, False, True, False]

    skipper = Skipper(Progress(ranges=[[0, 2, 1, 1, 0], [3, 4, 0, 0, 1]], keys={1: ["P2"], 3: "P4"}), result)
    assert skipper.skips(0) and skipper.check(0, ("P1",)) == (("P1",), None)
    assert skipper.skips(1) and skipper.check(1, ("P2",)) == (("P2",), [0, 2, 1, 1, 0])  # tuple key, JSON list
    assert not skipper.skips(2)
    assert skipper.skips(3) and skipper.check(3, "P4") == ("P4", [3, 4, 0, 0, 1])
    skipper.finish(4)
    assert (result.rows_accepted, result.rows_rejected, result.rows_in_doubt, result.rows_unsent) == (1, 1, 1, 0)


def test_skipper_fails_when_the_source_changed_key_at_a_range_end():
    result = _result()
    skipper = Skipper(Progress(ranges=[[0, 2, 2, 0, 0]], keys={1: "P2"}), result)
    assert skipper.skips(1)
    with pytest.raises(PeakResumeError, match="row 2 of the query now has key P9"):
        skipper.check(1, "P9")
    assert result.rows_accepted == 2  # the earlier attempts' counts are carried all the same


def test_skipper_fails_when_the_source_now_ends_before_the_settled_rows():
    result = _result()
    skipper = Skipper(Progress(ranges=[[0, 5, 5, 0, 0]], keys={4: "P5"}), result)
    for position in range(3):
        assert skipper.skips(position)
    with pytest.raises(PeakResumeError, match="yields 3 rows, but the earlier attempt settled rows up to 5"):
        skipper.finish(2)
    assert skipper.unfinished(2) == 3  # read in a range never walked to its end: not counted as read
    assert (result.rows_accepted, result.rows_unsent) == (0, 0)


def test_skipper_keeps_the_earlier_ranges_not_walked_in_every_checkpoint():
    """Rows 0-1 and 5-7 were settled earlier. While range 0-1 is walked, its rows are not counted as read and
    it stays in every checkpoint; once walked, this attempt's progress carries it, and 5-7 stays pending."""
    earlier = Progress(ranges=[[0, 2, 2, 0, 0], [5, 8, 2, 1, 0]], keys={1: "P2", 7: "P8"})
    skipper = Skipper(earlier, _result())
    assert skipper.skips(0) and skipper.check(0, "P1") == ("P1", None)
    assert skipper.unfinished(0) == 1
    assert skipper.pending(Progress(ranges=[], keys={})) == earlier
    assert skipper.skips(1) and skipper.check(1, "P2") == ("P2", [0, 2, 2, 0, 0])
    assert skipper.unfinished(1) == 0
    this_attempt = Progress(ranges=[[0, 4, 4, 0, 0]], keys={3: "P4"})  # the walked range and rows 2-3
    assert skipper.pending(this_attempt) == Progress(ranges=[[0, 4, 4, 0, 0], [5, 8, 2, 1, 0]], keys={3: "P4", 7: "P8"})
    for position in range(5, 8):  # 5-7 walked to its end, while row 4 is still in flight
        assert skipper.skips(position)
        skipper.check(position, f"P{position + 1}")
    assert skipper.pending(this_attempt).ranges == [[0, 4, 4, 0, 0], [5, 8, 2, 1, 0]]  # kept until covered
    assert skipper.pending(Progress(ranges=[[0, 8, 7, 1, 0]], keys={7: "P8"})).ranges == [[0, 8, 7, 1, 0]]

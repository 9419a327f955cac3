"""The look-again timetables: deferred young files, backed-off failures, quick scans."""

from __future__ import annotations

import math

from flowdrop.daemon.schedule import QUICK_SCANS, Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deferred_name_comes_back_once_its_delay_has_passed() -> None:
    clock = Clock()
    schedule = Schedule(clock)
    schedule.defer("a.json", 0.2)
    due, soonest = schedule.due_deferred()
    assert due == [] and math.isclose(soonest, 0.2)
    clock.now += 0.25
    assert schedule.due_deferred() == (["a.json"], math.inf)
    assert schedule.deferred == 0


def test_a_backed_off_item_is_skipped_until_its_time() -> None:
    clock = Clock()
    schedule = Schedule(clock)
    schedule.back_off(("work", "a.json"), 5.0)
    assert schedule.in_backoff(("work", "a.json"))
    assert not schedule.in_backoff(("work", "b.json"))
    clock.now += 5.0
    assert not schedule.in_backoff(("work", "a.json"))


def test_hints_book_quick_scans_that_are_consumed_when_due() -> None:
    clock = Clock()
    schedule = Schedule(clock)
    schedule.hint()
    assert schedule.quick_scans == len(QUICK_SCANS)
    assert schedule.quick_scan_due()[0] is False
    clock.now += max(QUICK_SCANS) + 0.01
    due, following = schedule.quick_scan_due()
    assert (due, following, schedule.quick_scans) == (True, math.inf, 0)


def test_a_burst_of_hints_in_one_grid_slot_books_nothing_more() -> None:
    schedule = Schedule(Clock())
    for _ in range(10_000):
        schedule.hint()
    assert schedule.quick_scans == len(QUICK_SCANS)

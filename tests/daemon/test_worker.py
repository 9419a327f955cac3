"""WorkQueue: deduplication, busy tracking and closing."""

from __future__ import annotations

from flowdrop.daemon.worker import WorkQueue


def test_queue_deduplicates_until_done() -> None:
    """An item queued or in progress is not queued again until done()."""
    queue = WorkQueue()
    assert queue.put(("inbox", "a.json"))
    assert not queue.put(("inbox", "a.json"))
    item = queue.get(timeout=0.1)
    assert item == ("inbox", "a.json")
    assert queue.busy(item)
    assert not queue.put(item)
    queue.done(item)
    assert queue.put(item)
    assert len(queue) == 1


def test_closed_queue_returns_nothing() -> None:
    """After close() get() returns None at once and put() refuses."""
    queue = WorkQueue()
    queue.put(("inbox", "a.json"))
    queue.close()
    assert queue.get(timeout=5) is None
    assert not queue.put(("inbox", "b.json"))


def test_mark_tracks_items_handled_outside_the_queue() -> None:
    """mark() makes an item busy (a claimed inbox file being handled as work)."""
    queue = WorkQueue()
    queue.mark(("work", "a.json"))
    assert queue.busy(("work", "a.json"))
    assert not queue.put(("work", "a.json"))

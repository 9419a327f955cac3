"""Bounded memos: entries and total cost, the least recently used out first."""

from __future__ import annotations

from flowdrop.core.memo import Memo


def _put(memo: Memo[bytes, str], key: bytes, text: str) -> None:
    memo.put(key, text, len(key) + len(text))


def test_a_memo_is_bounded_in_entries_and_cost_least_recent_out_first() -> None:
    memo: Memo[bytes, str] = Memo(entries=2, size=20)
    _put(memo, b"a", "1111")
    _put(memo, b"b", "2222")
    assert memo.get(b"a") == "1111"  # now the most recent
    _put(memo, b"c", "3333")  # a third entry: the least recent (b) goes
    assert (memo.get(b"a"), memo.get(b"b"), memo.get(b"c")) == ("1111", None, "3333")
    _put(memo, b"d", "x" * 15)  # 16 bytes with its key: with c's 5 over 20, so c goes too
    assert (memo.get(b"a"), memo.get(b"c"), memo.get(b"d")) == (None, None, "x" * 15)
    _put(memo, b"e", "y" * 30)  # larger than the whole memo: not kept, nothing evicted
    assert (memo.get(b"e"), memo.get(b"d")) == (None, "x" * 15)


def test_without_a_size_only_entries_count_and_a_kept_key_is_not_replaced() -> None:
    memo: Memo[str, int] = Memo(entries=2)
    memo.put("a", 1, cost=10**9)
    memo.put("a", 2)
    memo.put("b", 3)
    assert (memo.get("a"), memo.get("b")) == (1, 3)  # the cost counts for nothing here
    memo.put("c", 4)  # "a" was read before "b": "a" is the least recent and goes
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, 3, 4)
    memo.clear()
    assert (memo.get("b"), memo.get("c")) == (None, None)

"""What is in flight: requests in inbox/ and every instance's work/, read once each."""

from __future__ import annotations

import json
from pathlib import Path

from flowdrop.daemon.inflight import RequestCache, scan_in_flight
from flowdrop.daemon.spool import Spool


def _spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", "test")
    spool.ensure(own_work=False)
    for instance in ("host-1", "host-2"):
        (spool.work_root / instance).mkdir()
    return spool


def _request(path: Path, **body: object) -> None:
    path.write_text(json.dumps({"schemaVersion": 1, "mode": "simulation", **body}))


def test_requests_in_the_inbox_and_every_work_dir_are_in_flight(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    _request(spool.inbox / "a.json", templateId="orders")
    _request(spool.work_root / "host-1" / "b.json", templateId="billing", requestId="bill-7")
    _request(spool.work_root / "host-2" / "c.json", templateId="orders", options={"runId": "run_x"})
    _request(spool.inbox / ".d.json.tmp", templateId="hidden")  # still being written: unseen
    found = scan_in_flight(spool, RequestCache(4096))
    assert found.request_ids == {"a", "b", "bill-7", "c"}
    assert found.template_ids == {"orders", "billing"}
    assert found.run_ids == {"run_x"}
    assert found.unreadable == []


def test_a_file_that_is_not_a_request_yet_is_unreadable(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    (spool.work_root / "host-1" / "half.json").write_text('{"schemaVersion": 1, "templ')
    (spool.inbox / "big.json").write_text(json.dumps({"templateId": "t", "pad": "x" * 200}))
    found = scan_in_flight(spool, RequestCache(100))
    assert sorted(found.unreadable) == ["inbox/big.json", "work/host-1/half.json"]
    assert found.request_ids == {"half", "big"}  # their outbox files stay


def test_protects_names_why_a_run_is_needed(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    _request(spool.inbox / "a.json", templateId="orders", options={"runId": "run_pinned"})
    found = scan_in_flight(spool, RequestCache(4096))
    assert found.protects("run_pinned", "billing") == (
        "a request in flight names it in options.runId"
    )
    assert found.protects("run_orders_1", "orders") == (
        "a request in flight runs template 'orders' (it may reuse this run)"
    )
    assert found.protects("run_billing_1", "billing") is None
    assert found.protects("run_unknown", None) == (
        "its template is unknown and requests are in flight"
    )

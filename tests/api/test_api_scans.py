"""The verification scan log (api/scans.py) on real SQLite and PostgreSQL databases: counts
per certificate, the burst window, and the redeemed/flagged anomalies."""

from __future__ import annotations

import threading

from api.db import Database
from api.scans import BURST, FLAGGED, REDEEMED, ScanLog

#: A throwaway PostgreSQL server for the shared-database case.
pytest_plugins = ["pg"]


def test_record__counts_per_certificate(tmp_path):
    log = ScanLog(tmp_path / "scans.sqlite", window_seconds=60, burst_threshold=5)
    for _ in range(3):
        log.record(1, redeemed=False, flagged=False, now=1_000)
    summary = log.record(2, redeemed=False, flagged=False, now=1_000)
    assert (summary.total, summary.recent, summary.anomalies) == (1, 1, [])
    assert log.record(1, redeemed=False, flagged=False, now=1_000).total == 4


def test_record__more_scans_than_threshold_in_window__burst(tmp_path):
    log = ScanLog(None, window_seconds=60, burst_threshold=3)
    answers = [log.record(7, redeemed=False, flagged=False, now=1_000 + i) for i in range(4)]
    assert [a.anomalies for a in answers] == [[], [], [], [BURST]]


def test_record__old_scans_leave_the_window(tmp_path):
    log = ScanLog(None, window_seconds=60, burst_threshold=3)
    for i in range(4):
        log.record(7, redeemed=False, flagged=False, now=1_000 + i)
    later = log.record(7, redeemed=False, flagged=False, now=1_000 + 120)
    assert (later.total, later.recent, later.anomalies) == (5, 1, [])


def test_record__redeemed_or_flagged__reported(tmp_path):
    log = ScanLog(None, window_seconds=60, burst_threshold=3)
    assert log.record(1, redeemed=True, flagged=False).anomalies == [REDEEMED]
    assert log.record(2, redeemed=False, flagged=True).anomalies == [FLAGGED]


def test_record__file_database__shared_by_two_logs_and_survives_reopening(tmp_path):
    path = tmp_path / "scans.sqlite"
    first, second = ScanLog(path, 60, 100), ScanLog(path, 60, 100)
    first.record(9, redeemed=False, flagged=False, now=1_000)
    assert second.record(9, redeemed=False, flagged=False, now=1_001).total == 2
    first.close()
    second.close()
    assert ScanLog(path, 60, 100).record(9, redeemed=False, flagged=False, now=1_002).total == 3


def test_record__concurrent_threads__no_scan_lost(tmp_path):
    log = ScanLog(tmp_path / "scans.sqlite", 60, 10_000)

    def scan():
        for _ in range(50):
            log.record(3, redeemed=False, flagged=False)

    threads = [threading.Thread(target=scan) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.record(3, redeemed=False, flagged=False).total == 401


def test_scan_log__two_instances_on_postgresql__share_the_counts(postgres_url):
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        ScanLog(first, 60, 2).record(7, redeemed=False, flagged=False, now=1_000)
        ScanLog(second, 60, 2).record(7, redeemed=False, flagged=False, now=1_001)

        summary = ScanLog(first, 60, 2).record(7, redeemed=False, flagged=False, now=1_002)
    finally:
        first.close()
        second.close()

    assert (summary.total, summary.recent, summary.anomalies) == (3, 3, ["burst"])

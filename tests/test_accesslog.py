"""The hash-chained access log on SQLite and PostgreSQL: appends, and every kind of tampering located."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, update

from codeservice.accesslog import service as accesslog
from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from codeservice.accesslog.service import AUDIT_OFFICE
from codeservice.services import Services
from tests.conftest import clear_database, make_settings


@pytest.fixture
def services(tmp_path, database_url):
    services = Services(make_settings(tmp_path / "home", database_url, demo_data="false"))
    services.initialise()
    clear_database(services.db.engine)
    yield services
    clear_database(services.db.engine)
    services.db.dispose()


def fill(services, n: int, signer=None) -> None:
    with services.db.session() as s:
        for i in range(n):
            accesslog.append(s, actor=f"clerk:{i % 3}", actor_label="Window 3, Xuzhou service hall",
                             office="xz-hall", subject="abcdefghijklmnop", action="fetch",
                             what=[{"type": "YYZZ", "fields": ["company_name"]}], purpose="food licence renewal",
                             outcome="released", signer=signer)


def verify(services):
    with services.db.session() as s:
        return accesslog.verify_chain(s, services.audit_key)


def test_an_untouched_log_verifies(services):
    fill(services, 25)
    report = verify(services)
    assert report.ok and report.entries == 25 and report.first_bad_seq is None


def test_an_empty_log_verifies(services):
    assert verify(services).ok


def test_a_tampered_entry_is_detected_and_located(services):
    fill(services, 20)
    with services.db.session() as s:
        s.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 7).values(purpose="curiosity"))
    report = verify(services)
    assert not report.ok and report.first_bad_seq == 7 and "altered" in report.problem


def test_a_deleted_entry_is_detected_and_located(services):
    fill(services, 20)
    with services.db.session() as s:
        s.delete(s.get(AccessLogEntry, 12))
    report = verify(services)
    assert not report.ok and report.first_bad_seq == 12 and "missing" in report.problem


def test_reordered_entries_are_detected_and_located(services):
    fill(services, 20)
    with services.db.session() as s:
        a, b = s.get(AccessLogEntry, 5), s.get(AccessLogEntry, 9)
        swap = {k: getattr(a, k) for k in ("at", "actor", "actor_label", "action", "what", "purpose", "outcome",
                                           "prev_hash", "hash")}
        for k in swap:
            setattr(a, k, getattr(b, k))
            setattr(b, k, swap[k])
    report = verify(services)
    assert not report.ok and report.first_bad_seq == 5


def test_deleting_the_newest_entries_is_caught_by_the_signed_checkpoint(services):
    signer = services.keyring.signer(AUDIT_OFFICE.id)
    fill(services, 10)
    with services.db.session() as s:
        accesslog.checkpoint_head(s, signer)
        for seq in (9, 10):
            s.delete(s.get(AccessLogEntry, seq))
    report = verify(services)
    assert not report.ok and report.first_bad_seq == 9 and "checkpoint" in report.problem


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(services):
    signer = services.keyring.signer(AUDIT_OFFICE.id)
    fill(services, 10)
    with services.db.session() as s:
        accesslog.checkpoint_head(s, signer)
        prev = accesslog.GENESIS
        for row in s.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq)):
            if row.seq == 4:
                row.outcome = "refused"
            row.prev_hash = prev
            row.hash = accesslog.entry_hash(prev, {k: getattr(row, k) for k in accesslog.HASHED_FIELDS})
            prev = row.hash
    report = verify(services)
    assert not report.ok and report.first_bad_seq == 10 and "rewritten" in report.problem


def test_a_forged_checkpoint_is_detected(services):
    fill(services, 5)
    with services.db.session() as s:
        s.add(AuditCheckpoint(seq=5, hash="0" * 64, token="eyJhbGciOiJub25lIn0.e30."))
    report = verify(services)
    assert not report.ok and "checkpoint" in report.problem


def test_checkpoints_are_signed_automatically(services, monkeypatch):
    monkeypatch.setattr(accesslog, "CHECKPOINT_EVERY", 5)
    fill(services, 12, signer=services.keyring.signer(AUDIT_OFFICE.id))
    report = verify(services)
    assert report.ok and report.checkpoints == 2


def test_concurrent_appends_keep_one_unbroken_chain(services):
    errors = []

    def worker():
        try:
            fill(services, 15)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = verify(services)
    assert report.ok and report.entries == 90


def test_many_writers_holding_their_transactions_open_never_give_up(services):
    """Each writer appends one entry and keeps its transaction open a little (as a request does while it
    signs and answers): sixteen of them at once must all get their entry in, none 'too busy'."""
    errors: list[Exception] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait(timeout=30)
        for _ in range(12):
            try:
                with services.db.session() as s:
                    accesslog.append(s, actor="clerk:1", actor_label="Window 3", action="fetch", outcome="released")
                    time.sleep(0.003)
            except Exception as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = verify(services)
    assert report.ok and report.entries == 16 * 12


def test_a_resident_sees_only_their_own_entries_newest_first(services):
    with services.db.session() as s:
        for subject in ("a" * 16, "b" * 16, "a" * 16):
            accesslog.append(s, actor="clerk:1", actor_label="Window 1", action="request", outcome="pending",
                             subject=subject)
        mine = accesslog.entries_about(s, "a" * 16)
        assert [e.seq for e in mine] == [3, 1]

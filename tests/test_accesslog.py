"""The hash-chained access log on SQLite and PostgreSQL: appends, and every kind of tampering located."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# -- the walk's hash is entry_hash's, byte for byte ------------------------------------------------------
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # any text a database holds
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=12)


def _walk_row(fields: dict, stored_what) -> tuple:
    """A row as the walk reads it (``WALK_COLUMNS``), ``what`` as the column stores it."""
    return tuple(stored_what if k == "what" else fields.get(k) for k in accesslog.WALK_COLUMNS)


@settings(max_examples=400, deadline=None)
@given(seq=st.integers(1, 2**31 - 1), at=_TEXT, actor=_TEXT, actor_label=_TEXT, office=st.none() | _TEXT,
       subject=st.none() | _TEXT, action=_TEXT, what=st.lists(_JSON, max_size=4), purpose=st.none() | _TEXT,
       outcome=_TEXT, prev=st.binary(min_size=32, max_size=32).map(bytes.hex))
def test_the_walk_hashes_every_entry_exactly_as_append_did(seq, at, actor, actor_label, office, subject, action,
                                                             what, purpose, outcome, prev):
    fields = {"seq": seq, "at": at, "actor": actor, "actor_label": actor_label, "office": office,
              "subject": subject, "action": action, "what": what, "purpose": purpose, "outcome": outcome}
    stored = json.dumps(what)  # as SQLAlchemy's JSON type writes it
    assert accesslog._ChainHasher()(prev, _walk_row(fields, stored)) == accesslog.entry_hash(prev, fields)


@pytest.mark.parametrize("odd", [{"seq": 7.0}, {"seq": True}, {"seq": "7"}, {"actor": 5}, {"actor": b"clerk"},
                                 {"office": 3.5}, {"what": None}, {"what": "{not json"}, {"what": 5}])
def test_a_value_of_an_unexpected_type_hashes_or_fails_as_entry_hash_does(odd):
    """Only a hand-edited database holds such values (SQLite keeps what it is given): same hash, or same error."""
    fields = {"seq": 7, "at": "2026-11-23T08:00:00.000000Z", "actor": "clerk:1", "actor_label": "Window 1",
              "office": None, "subject": None, "action": "fetch", "what": [], "purpose": None, "outcome": "released"}
    stored = json.dumps(fields["what"])
    fields.update(odd)
    if "what" in odd:
        stored = odd["what"]
        fields["what"] = odd["what"] if odd["what"] is None else "decoded below"
    row = _walk_row(fields, stored)

    def old_verify():  # what verify_chain did: the column type decodes what, entry_hash hashes the row
        decoded = dict(fields, what=None if stored is None else json.loads(stored))
        return accesslog.entry_hash(accesslog.GENESIS, decoded)

    try:
        expected = old_verify()
    except Exception as exc:
        with pytest.raises(type(exc)):
            accesslog._ChainHasher()(accesslog.GENESIS, row)
    else:
        assert accesslog._ChainHasher()(accesslog.GENESIS, row) == expected


ODD = [
    {"actor_label": "窗口 3，中心服务大厅 🏛", "purpose": "naïve \"quoted\" back\\slash", "office": None},
    {"actor_label": "tab\tnewline\ncr\rbell\x07esc\x1bdel\x7f", "subject": None, "purpose": None},
    {"actor_label": "\u2028\u2029 separators, é composed and e\u0301 decomposed", "what": [[], {}, [None, [1.5]]]},
    {"actor_label": "plain", "what": [{"z": 1, "a": {"y": [True, False, None], "b": "ü"}}, "x" * 200, -0.0, 10**20]},
]


def fill_odd(services) -> None:
    with services.db.session() as s:
        for i, odd in enumerate(ODD * 3):
            values = {"office": "xz-hall", "subject": f"{i:016d}", "what": [{"type": "YYZZ"}], "purpose": "p", **odd}
            accesslog.append(s, actor=f"clerk:{i}", action="fetch", outcome="released", **values)


def test_odd_values_verify_across_batches_and_tampering_is_located(services):
    fill_odd(services)
    for batch in (1, 5, 5000):
        report = accesslog_verify(services, batch)
        assert report.ok and report.entries == 12, batch
    with services.db.session() as s:
        s.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 6).values(actor_label="tab\tnewline\ncr\r"))
    for batch in (1, 5, 5000):
        report = accesslog_verify(services, batch)
        assert (report.ok, report.first_bad_seq, report.entries, report.problem) == \
            (False, 6, 6, "entry 6 was altered"), batch


def test_what_tampered_inside_a_nested_list_is_located(services):
    fill_odd(services)
    with services.db.session() as s:
        s.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 8)
                  .values(what=[{"z": 1, "a": {"y": [True, False, None], "b": "u"}}, "x" * 200, -0.0, 10**20]))
    report = accesslog_verify(services, 3)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 8, "entry 8 was altered")


def accesslog_verify(services, batch):
    with services.db.session() as s:
        return accesslog.verify_chain(s, services.audit_key, batch=batch)


def test_each_stored_hash_is_entry_hash_of_what_was_appended(services):
    """On PostgreSQL the database computes the hash (citycode_access_log_append); it must be entry_hash's, byte
    for byte, for every odd value, and chain each entry to the one before."""
    appended = []
    with services.db.session() as s:
        for i, odd in enumerate(ODD):
            values = {"office": "xz-hall", "subject": f"{i:016d}", "what": [{"type": "YYZZ"}], "purpose": "p", **odd}
            values = {**values, "actor": f"clerk:{i}", "action": "fetch", "outcome": "released"}
            appended.append((accesslog.append(s, actor_label=values.pop("actor_label"), **values), odd))
    with services.db.session() as s:
        rows = {e.seq: e for e in s.scalars(select(AccessLogEntry))}
    prev = accesslog.GENESIS
    for done, _odd in appended:
        row = rows[done.seq]
        fields = {k: getattr(row, k) for k in accesslog.HASHED_FIELDS}
        assert row.prev_hash == prev
        assert done.hash == row.hash == accesslog.entry_hash(prev, fields)
        prev = row.hash
    assert [done.seq for done, _ in appended] == [1, 2, 3, 4]

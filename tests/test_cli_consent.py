"""``citycode office``, ``client`` and ``audit``: registering offices and their clients, and finding a tampered,
deleted or reordered access-log entry in the data directory's database. Exit 0 intact, 1 a bad log, 2 input error."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from codeservice.clients.models import ApiClient
from codeservice.config import Settings
from codeservice.consent import service as consent
from codeservice.demo import DEMO_OFFICE
from codeservice.services import Services

CITYCODE = str(Path(sys.executable).with_name("citycode"))
COLUMNS = ("at", "actor", "actor_label", "office", "subject", "action", "what", "purpose", "outcome",
           "prev_hash", "hash")


def _env(home: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")}, "CITYCODE_HOME": str(home)}


def run(env, *args):  # type: ignore[no-untyped-def]
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, timeout=60)


def ok(result):  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fill_log(home: Path) -> int:
    """Real consent traffic at the demo window: requests, approvals, refusals, fetches. Returns the entry count."""
    services = Services(Settings.from_env(_env(home)))
    services.initialise()
    try:
        with services.db.session() as s:
            from sqlalchemy import select

            from codeservice.identity.residents import list_residents

            zhou = s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Zhou")).one()
            sun = s.scalars(select(ApiClient).where(ApiClient.name == "Clerk Sun")).one()
            elder = list_residents(s)[0].pid
            items = [{"type": "LNYD", "fields": ["name", "age_over_60"]}]
            for i in range(5):
                made = consent.create_request(s, zhou, resident=elder, purpose="elderly allowance application",
                                              items=items)
                consent.decide(s, elder, made.id, approve=items if i % 2 == 0 else None)
                if i == 2:  # another clerk tries first: refused, and logged
                    try:
                        consent.fetch(s, services.keyring, sun, made.id)
                    except consent.ConsentError as exc:
                        assert exc.reason == "other_clerk"
                if i % 2 == 0:
                    consent.fetch(s, services.keyring, zhou, made.id)
        from codeservice.accesslog.service import count_entries

        with services.db.session() as s:
            return count_entries(s)
    finally:
        services.db.dispose()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One initialised home with a filled access log; each test works on a copy."""
    home = tmp_path_factory.mktemp("pristine") / "home"
    ok(run(_env(home), "init"))
    count = fill_log(home)
    assert count >= 12
    return home, count


@pytest.fixture
def home(pristine, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(pristine[0], copy)
    return copy


def db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "citycode.sqlite3")


def verify(home: Path):  # type: ignore[no-untyped-def]
    result = run(_env(home), "audit", "verify")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_an_intact_log_verifies(home, pristine):
    code, report = verify(home)
    assert code == 0
    assert report == {"ok": True, "entries": pristine[1], "checkpoints": 0, "first_bad_seq": None, "problem": ""}


def test_a_tampered_entry_is_named(home):
    with db(home) as conn:
        conn.execute("UPDATE access_log SET purpose = 'curiosity' WHERE seq = 5")
    code, report = verify(home)
    assert code == 1 and report["ok"] is False and report["first_bad_seq"] == 5 and "altered" in report["problem"]


def test_a_tampered_outcome_deep_in_the_log_is_named(home):
    with db(home) as conn:
        conn.execute("UPDATE access_log SET outcome = 'refused: other_clerk' WHERE seq = 11")
    code, report = verify(home)
    assert code == 1 and report["first_bad_seq"] == 11


def test_a_deleted_entry_is_named(home):
    with db(home) as conn:
        conn.execute("DELETE FROM access_log WHERE seq = 7")
    code, report = verify(home)
    assert code == 1 and report["first_bad_seq"] == 7 and "missing" in report["problem"]


def test_two_swapped_entries_are_named(home):
    with db(home) as conn:
        rows = {seq: conn.execute(f"SELECT {', '.join(COLUMNS)} FROM access_log WHERE seq = ?", (seq,)).fetchone()
                for seq in (4, 9)}
        for seq, other in ((4, 9), (9, 4)):
            conn.execute(f"UPDATE access_log SET {', '.join(c + ' = ?' for c in COLUMNS)} WHERE seq = ?",
                         (*rows[other], seq))
    code, report = verify(home)
    assert code == 1 and report["first_bad_seq"] == 4


def test_swapped_sequence_numbers_are_named(home):
    with db(home) as conn:
        conn.execute("UPDATE access_log SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE access_log SET seq = 3 WHERE seq = 8")
        conn.execute("UPDATE access_log SET seq = 8 WHERE seq = -1")
    code, report = verify(home)
    assert code == 1 and report["first_bad_seq"] == 3


def test_a_checkpoint_catches_deleting_the_newest_entries(home, pristine):
    count = pristine[1]
    mark = ok(run(_env(home), "audit", "checkpoint"))
    assert mark["seq"] == count and mark["issuer"] == "city-audit" and len(mark["hash"]) == 64
    assert verify(home) == (0, {"ok": True, "entries": count, "checkpoints": 1, "first_bad_seq": None,
                                "problem": ""})
    with db(home) as conn:
        conn.execute("DELETE FROM access_log WHERE seq >= ?", (count - 1,))
    code, report = verify(home)
    assert code == 1 and report["first_bad_seq"] == count - 1 and "checkpoint" in report["problem"]


def test_an_empty_log_verifies_and_has_nothing_to_checkpoint(tmp_path):
    env = _env(tmp_path / "home")
    ok(run(env, "init"))
    assert verify(tmp_path / "home") == (0, {"ok": True, "entries": 0, "checkpoints": 0, "first_bad_seq": None,
                                             "problem": ""})
    assert ok(run(env, "audit", "checkpoint"))["seq"] is None


def test_audit_verify_of_an_uninitialised_home_is_an_input_error(tmp_path):
    result = run(_env(tmp_path / "nothing"), "audit", "verify")
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "init_error"
    assert not (tmp_path / "nothing").exists()


def test_offices_and_their_clients(home):
    env = _env(home)
    made = ok(run(env, "office", "add", "--id", "xz-hall-w3", "--name", "Window 3, Xuzhou service hall",
                  "--purpose", "food-licence renewal", "--purpose", "business licence change",
                  "--type", "yyzz", "--type", "SPJY", "--service", "business"))
    asks = made.pop("purpose_asks")
    assert made == {"id": "xz-hall-w3", "name": "Window 3, Xuzhou service hall",
                    "purposes": ["food-licence renewal", "business licence change"], "cert_types": ["YYZZ", "SPJY"],
                    "services": ["business"]}
    # Until 'citycode office purpose' narrows them, each purpose may ask every field of the office's types.
    assert list(asks) == made["purposes"] and [a["type"] for a in asks["food-licence renewal"]] == ["YYZZ", "SPJY"]
    again = run(env, "office", "add", "--id", "xz-hall-w3", "--name", "x", "--purpose", "p")
    assert again.returncode == 2 and "exists" in json.loads(again.stderr)["message"]
    bad_type = run(env, "office", "add", "--id", "h2", "--name", "x", "--purpose", "p", "--type", "NOPE")
    assert bad_type.returncode == 2
    assert run(env, "office", "add", "--id", "Bad Id", "--name", "x", "--purpose", "p").returncode == 2
    assert run(env, "office", "add", "--id", "h3", "--name", "x").returncode == 2  # no purpose

    clerk = ok(run(env, "client", "add", "--role", "clerk", "--name", "Clerk Li", "--office", "xz-hall-w3",
                   "--rate", "5"))
    assert clerk["role"] == "clerk" and clerk["office"] == "xz-hall-w3" and clerk["rate_per_minute"] == 5
    assert clerk["key"].startswith("cc_c_")
    device = ok(run(env, "client", "add", "--role", "device", "--name", "Kiosk", "--office", "xz-hall-w3"))
    assert device["rate_per_minute"] == 60 and device["key"].startswith("cc_d_")
    auditor = ok(run(env, "client", "add", "--role", "auditor", "--name", "City audit office"))
    assert auditor["office"] is None and auditor["key"].startswith("cc_a_")
    for args in (("--role", "clerk", "--name", "x"), ("--role", "auditor", "--name", "x", "--office", DEMO_OFFICE),
                 ("--role", "clerk", "--name", "x", "--office", "nowhere"), ("--role", "admin", "--name", "x"),
                 ("--role", "clerk", "--name", "x", "--office", DEMO_OFFICE, "--rate", "0")):
        assert run(env, "client", "add", *args).returncode == 2, args

    services = Services(Settings.from_env(env))
    try:
        from codeservice.clients.service import client_by_key

        with services.db.session() as s:
            found = client_by_key(s, clerk["key"])
            assert found is not None and found.id == clerk["id"] and found.office_id == "xz-hall-w3"
    finally:
        services.db.dispose()
    listed = {o["id"]: o for o in ok(run(env, "office", "list"))}
    assert [c["name"] for c in listed["xz-hall-w3"]["clients"]] == ["Clerk Li", "Kiosk"]
    assert all("key" not in c for o in listed.values() for c in o["clients"])

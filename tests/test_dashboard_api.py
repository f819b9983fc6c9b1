"""The dashboards' JSON (/api/v1/dashboard/): an operator's figures of a generated day (thousands of records
uploaded through the gates' upload path, then cleared) equal counts made here from the generated records, never
another operator's; the data office's figures equal the checks made through the API; auditor-only and
operator-only; bad days refused with 400 invalid_day; a cleared day read from the summaries clearing keeps
equals the same day read from its records. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import re
import sqlite3
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.service import certificates_of
from codeservice.clients.service import add_api_client
from codeservice.dashboard.counts import AuditRun, CertificateUseCount, count_certificate_use
from codeservice.dashboard.models import SummarisedDay, TapHour
from codeservice.demo import DEMO_COMPANY, DEMO_POINT_USES, DEMO_SERVICE, DEMO_USES, _uscc, ensure_demo_figures
from codeservice.identity.residents import list_residents
from codeservice.transit.clearing import run_clearing
from codeservice.transit.models import Trip
from codeservice.transit.service import ingest_records
from codeservice.venues.models import PointRecord
from sdk.citytime import CITY_TZ, service_day
from tests.test_clearing import Generator, _gate_client, transit_key_of_old

CST = dt.timezone(dt.timedelta(hours=8))
OPERATOR_ENDPOINTS = ("/api/v1/dashboard/operator/day", "/api/v1/dashboard/operator/gates",
                      "/api/v1/dashboard/operator/clearing")
CITY_ENDPOINTS = ("/api/v1/dashboard/city/day", "/api/v1/dashboard/city/state")
HOURS = [(4 + i) % 24 for i in range(24)]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(services: Any, records_by_operator: dict[str, list[dict]], now: float) -> None:
    for operator, records in records_by_operator.items():
        gate = _gate_client(services, operator)
        for start in range(0, len(records), 400):
            with services.db.session() as s:
                result = ingest_records(s, gate, records[start:start + 400], now, services.evidence_verifier())
                assert not result.rejected, result.rejected[:3]


@pytest.fixture
def day_of(web_app):  # type: ignore[no-untyped-def]
    """A generated operating day two days ago (metro, bus, scenic site), its reference a week before, both
    uploaded through the gates' path and cleared; the keys of two operators and an auditor."""
    services = web_app.extensions["citycode"]
    transit_key_of_old(services)
    now = dt.datetime.now(CST).timestamp()
    day = dt.date.fromisoformat(service_day(now)) - dt.timedelta(days=2)
    gen = Generator(day, seed=1207, services=services)
    gen.metro_day(riders=250)
    gen.bus_day(rides=400)
    gen.scenic_day(entries=60)
    before = Generator(day - dt.timedelta(days=7), seed=1130, services=services)
    before.metro_day(riders=80)
    before.bus_day(rides=60)
    upload(services, gen.records, now)
    upload(services, before.records, now)
    with services.db.session() as s:
        for operator in gen.records:
            run_clearing(s, operator, day)
            run_clearing(s, operator, day - dt.timedelta(days=7))
        keys = {name: add_api_client(s, name, "operator", operator=name)[1] for name in ("qd-metro", "qd-bus")}
        keys["auditor"] = add_api_client(s, "Data office", "auditor")[1]
        keys["verifier"] = add_api_client(s, "Market inspector", "verifier", ["SPJY", "YYZZ"], [])[1]
    return {"services": services, "client": web_app.test_client(), "day": day, "gen": gen, "before": before,
            "keys": keys}


def city_hour(at: float) -> int:
    return dt.datetime.fromtimestamp(at, CITY_TZ).hour


def expected_taps(records: list[dict]) -> list[int]:
    per = Counter(city_hour(r["at"]) for r in records)
    return [per.get(h, 0) for h in HOURS]


def get(d: dict, path: str, key: str, **query: str) -> Any:
    response = d["client"].get(path, query_string=query, headers=bearer(d["keys"][key]))
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_an_operators_day_equals_the_counts_of_its_generated_records(day_of):
    d = day_of
    day = d["day"].isoformat()
    for operator, by in (("qd-metro", "station"), ("qd-bus", "line")):
        records = [r for r in d["gen"].records[operator] if service_day(r["at"]) == day]
        body = get(d, "/api/v1/dashboard/operator/day", operator, day=day)
        assert body["operator"] == operator and body["hours"][0] == "04:00" and body["hours"][-1] == "03:00"
        assert body["taps"] == expected_taps(records) and body["taps_total"] == len(records) > 300
        before = [r for r in d["before"].records[operator]]
        assert body["taps_reference"] == expected_taps(before) and sum(body["taps_reference"]) > 0
        accepted = [r for r in records if r["accepted"]]
        places = Counter(r[by] for r in accepted if r[by] is not None)
        assert body["busiest"]["by"] == by
        assert [(i["name"], i["taps"]) for i in body["busiest"]["items"]] == sorted(
            places.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert {i["card_type"]: i["taps"] for i in body["card_types"]} == Counter(
            r["card_type"] or "unknown" for r in accepted)
        assert {i["reason"]: i["taps"] for i in body["refusals"]} == Counter(
            r["reason"] for r in records if not r["accepted"])
        with d["services"].db.session() as s:
            starts = [t.started_at for t in s.query(Trip).filter(Trip.operator_id == operator,
                                                                 Trip.service_day == d["day"])]
        per = Counter((m if m.tzinfo else m.replace(tzinfo=dt.UTC)).astimezone(CITY_TZ).hour for m in starts)
        assert body["trips"] == [per.get(h, 0) for h in HOURS] and body["trips_total"] == len(starts) > 0
    metro = get(d, "/api/v1/dashboard/operator/day", "qd-metro", day=day)
    assert metro["refusals"] and {i["reason"] for i in metro["refusals"]} == {"replayed"}


def test_the_week_average_is_the_seven_days_before_divided_by_seven(day_of):
    d = day_of
    body = get(d, "/api/v1/dashboard/operator/day", "qd-bus", day=d["day"].isoformat(), against="week_average")
    assert body["against"] == "week_average" and len(body["reference_days"]) == 7
    per = Counter(city_hour(r["at"]) for r in d["before"].records["qd-bus"])
    assert body["taps_reference"] == [round(per.get(h, 0) / 7, 1) for h in HOURS]


def test_gates_show_their_records_last_upload_and_late_records(day_of):
    d = day_of
    day = d["day"].isoformat()
    records = [r for r in d["gen"].records["qd-metro"] if service_day(r["at"]) == day]
    body = get(d, "/api/v1/dashboard/operator/gates", "qd-metro", day=day)
    per_gate = Counter(r["gate_id"] for r in records)
    assert {g["gate_id"]: g["records"] for g in body["gates"]} == per_gate
    # uploaded now, two days after the scans: every record is late, no gate is offline
    assert all(g["late"] and g["late_records"] == g["records"] and not g["offline"] for g in body["gates"])
    assert body["late"] == len(per_gate) and body["offline"] == 0
    assert body["cleared"] is True and body["records_waiting"] == 0


def test_a_gate_silent_for_over_an_hour_is_offline_and_its_records_wait_for_clearing(day_of):
    d = day_of
    services = d["services"]
    day = d["day"] - dt.timedelta(days=1)  # a day not cleared
    gen = Generator(day, seed=99, services=services)
    gen.bus_day(rides=40)
    for record in gen.records["qd-bus"]:
        record["gate_id"] = "bus-silent"
    upload(services, gen.records, dt.datetime.now(CST).timestamp() - 7200)
    body = get(d, "/api/v1/dashboard/operator/gates", "qd-bus", day=day.isoformat())
    (gate,) = body["gates"]
    assert gate["gate_id"] == "bus-silent" and gate["offline"] and gate["silent_seconds"] >= 7200
    assert body["records_waiting"] == gate["records"] == len(
        [r for r in gen.records["qd-bus"] if service_day(r["at"]) == day.isoformat()])
    assert body["cleared"] is False


def test_the_clearing_panel_names_the_statement_its_csv_and_its_sha256(day_of):
    d = day_of
    day = d["day"].isoformat()
    body = get(d, "/api/v1/dashboard/operator/clearing", "qd-metro", day=day)
    statement = body["statement"]
    csv = d["client"].get(statement["csv_url"], headers=bearer(d["keys"]["qd-metro"]))
    assert csv.status_code == 200 and hashlib.sha256(csv.data).hexdigest() == statement["sha256"]
    official = d["client"].get(f"/api/v1/operators/qd-metro/clearing/{day}", headers=bearer(d["keys"]["qd-metro"]))
    assert {k: statement[k] for k in ("trips", "charged_total", "records")} == {
        k: official.get_json()[k] for k in ("trips", "charged_total", "records")}
    later = (d["day"] + dt.timedelta(days=1)).isoformat()
    assert get(d, "/api/v1/dashboard/operator/clearing", "qd-metro", day=later)["statement"] is None


def test_no_endpoint_shows_one_operator_anothers_data(day_of):
    d = day_of
    day = d["day"].isoformat()
    bus_gates = {r["gate_id"] for r in d["gen"].records["qd-bus"]}
    bus_lines = {r["line"] for r in d["gen"].records["qd-bus"]}
    for path in OPERATOR_ENDPOINTS:
        metro = get(d, path, "qd-metro", day=day)
        bus = get(d, path, "qd-bus", day=day)
        assert metro["operator"] == "qd-metro" and bus["operator"] == "qd-bus" and metro != bus
        # naming the other operator anywhere in the request changes nothing
        for query in ({"operator": "qd-bus"}, {"operator_id": "qd-bus"}):
            response = d["client"].get(path, query_string={"day": day, **query}, headers=bearer(d["keys"]["qd-metro"]))
            assert response.status_code != 200 or response.get_json() == metro
        text = str(metro)
        assert not any(f"'{gate}'" in text for gate in bus_gates) and "qd-bus" not in text
    metro_day = get(d, "/api/v1/dashboard/operator/day", "qd-metro", day=day)
    assert not {i["name"] for i in metro_day["busiest"]["items"]} & bus_lines
    # an operator key of an operator's staff sees neither the city's figures
    for path in CITY_ENDPOINTS:
        response = d["client"].get(path, query_string={"day": day}, headers=bearer(d["keys"]["qd-metro"]))
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


def test_city_figures_need_an_auditor_and_operator_figures_an_operator(day_of):
    d = day_of
    day = d["day"].isoformat()
    for path in OPERATOR_ENDPOINTS + CITY_ENDPOINTS:
        assert d["client"].get(path, query_string={"day": day}).status_code == 401
        assert d["client"].get(path, query_string={"day": day},
                               headers=bearer("cc_o_not-a-key")).get_json()["error"] == "unauthorised"
        wrong = "auditor" if path in OPERATOR_ENDPOINTS else "verifier"
        response = d["client"].get(path, query_string={"day": day}, headers=bearer(d["keys"][wrong]))
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


@pytest.mark.parametrize("bad", ["", "2026-13-01", "2026-02-30", "yesterday", "2026-1-5", "20261205", "2026-12-05T00"])
def test_a_bad_day_is_400_invalid_day_with_a_message(day_of, bad):
    d = day_of
    for path, key in [(p, "qd-metro") for p in OPERATOR_ENDPOINTS] + [("/api/v1/dashboard/city/day", "auditor")]:
        response = d["client"].get(path, query_string={"day": bad}, headers=bearer(d["keys"][key]))
        assert response.status_code == 400, (path, bad)
        assert response.get_json()["error"] == "invalid_day" and response.get_json()["message"]
    response = d["client"].get("/api/v1/dashboard/operator/day", query_string={"day": d["day"].isoformat(),
                               "against": "last_year"}, headers=bearer(d["keys"]["qd-metro"]))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_query"


def test_the_data_office_counts_checks_per_department_and_answer_and_the_logs_growth(day_of):
    d = day_of
    client = d["client"]
    stranger = _uscc("91370200MA3C8N2K2")
    rng = random.Random(5)
    asked = Counter()
    for _ in range(23):
        subject, kind = rng.choice([(DEMO_COMPANY, "SPJY"), (DEMO_COMPANY, "YYZZ"), (stranger, "SPJY")])
        response = client.post("/api/v1/checks", json={"subject": subject, "type": kind,
                                                        "purpose": "licence check at the service hall"},
                               headers=bearer(d["keys"]["verifier"]))
        assert response.status_code == 200, response.get_json()
        asked[response.get_json()["answer"]] += 1
    today = dt.datetime.now(CITY_TZ).date()
    body = get(d, "/api/v1/dashboard/city/day", "auditor", day=today.isoformat())
    assert body["days"][-1] == today.isoformat() and len(body["days"]) == 7
    (market,) = body["checks"]
    assert market["department"] == "market-regulation"
    assert market["yes"][-1] == asked[True] > 0 and market["no"][-1] == asked[False] > 0
    assert sum(market["yes"][:-1]) + sum(market["no"][:-1]) == 0
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    assert body["access_log"]["entries_per_day"][-1] == state["access_log"]["entries"] >= 23
    yesterday = get(d, "/api/v1/dashboard/city/day", "auditor", day=(today - dt.timedelta(days=1)).isoformat())
    assert yesterday["checks"] == [] and yesterday["access_log"]["entries_per_day"][-1] == 0


def test_the_data_office_sees_status_lists_and_the_keys_due_for_rotation(day_of):
    d = day_of
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    lists = {entry["issuer"]: entry for entry in state["status_lists"]["lists"]}
    assert {"civil-affairs", "market-regulation", "city-transit"} <= set(lists)
    assert all(entry["entries"] >= 1024 for entry in lists.values())
    keys = {k["issuer"]: k for k in state["keys"]["keys"]}
    assert not keys["city-id"]["due"] and keys["city-id"]["age_days"] == 0
    d["services"].keyring.rotate("city-id", grace=0, now=dt.datetime.now(CST).timestamp() - 100 * 86400)
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    keys = {k["issuer"]: k for k in state["keys"]["keys"]}
    assert keys["city-id"]["due"] and keys["city-id"]["age_days"] == 100 and state["keys"]["due"] >= 1
    assert state["keys"]["keys"][0]["due"]  # the ones due come first


# -- the data office: certificate shows and pulls, audit runs, service points (issue 12) ---------------------------
@pytest.fixture
def office(web_app):  # type: ignore[no-untyped-def]
    """The demo app (no generated day) with an auditor's, an operator's, a clerk's (Clerk Zhou's, fresh) and a
    verifier's key."""
    from tests.test_consent_api import fresh_key

    services = web_app.extensions["citycode"]
    with services.db.session() as s:
        keys = {"auditor": add_api_client(s, "Data office", "auditor")[1],
                "qd-metro": add_api_client(s, "Metro staff", "operator", operator="qd-metro")[1],
                "verifier": add_api_client(s, "Hall verifier", "verifier")[1],
                "admin": add_api_client(s, "City administration", "admin")[1],
                "clerk": fresh_key(s, "Clerk Zhou")}
        residents = [r.pid for r in list_residents(s)]
    return {"services": services, "client": web_app.test_client(), "app": web_app, "keys": keys,
            "residents": residents}


def signed_in(app, pid: str):  # type: ignore[no-untyped-def]
    client = app.test_client()
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/signin/dev", data={"csrf": csrf, "resident": pid}).status_code == 302
    return client


def certificate_of(services: Any, pid: str, type_code: str) -> str:
    with services.db.session() as s:
        return next(c.id for c in certificates_of(s, pid) if c.type_code == type_code)


def show_and_verify(d: dict, phone: Any, cert_id: str, anonymous: bool = False) -> dict:
    shown = phone.post(f"/api/v1/me/certificates/{cert_id}/show", json={"fields": ["name"]})
    assert shown.status_code == 200, shown.get_json()
    headers = {} if anonymous else bearer(d["keys"]["verifier"])
    verified = d["client"].post("/api/v1/verify", json={"code": shown.get_json()["code"]}, headers=headers)
    assert verified.status_code == 200 and verified.get_json()["accepted"] is True, verified.get_json()
    return dict(verified.get_json())


def consented_pull(d: dict, pid: str, items: list[dict]) -> list[dict]:
    clerk = bearer(d["keys"]["clerk"])
    made = d["client"].post("/api/v1/consent/requests", headers=clerk, json={
        "code": d["services"].issue_identity_code(pid), "purpose": "elderly allowance application", "items": items})
    assert made.status_code == 201, made.get_json()
    request_id = made.get_json()["id"]
    answered = signed_in(d["app"], pid).post(f"/api/v1/me/consent-requests/{request_id}", json={"decision": "approve"})
    assert answered.status_code == 200, answered.get_json()
    fetched = d["client"].post(f"/api/v1/consent/requests/{request_id}/fetch", headers=clerk)
    assert fetched.status_code == 200, fetched.get_json()
    return list(fetched.get_json()["certificates"])


def test_certificate_shows_verified_online_and_a_consented_pull_are_counted_per_department_and_day(office):
    d = office
    elder = d["residents"][0]
    today = dt.datetime.now(CITY_TZ).date()
    before = get(d, "/api/v1/dashboard/city/day", "auditor", day=today.isoformat())
    assert before["shows"] == []
    phone = signed_in(d["app"], elder)
    lnyd = certificate_of(d["services"], elder, "LNYD")
    show_and_verify(d, phone, lnyd)
    show_and_verify(d, phone, lnyd, anonymous=True)  # anyone may verify a show online: it is a show all the same
    # a code that does not verify, and an identity code, are no certificate shown
    assert d["client"].post("/api/v1/verify", json={"code": "CC1:NOTACODE"}).get_json()["accepted"] is False
    assert d["client"].post("/api/v1/verify", json={"code": d["services"].issue_identity_code(elder)},
                            headers=bearer(d["keys"]["verifier"])).get_json()["kind"] == "id"
    (released,) = consented_pull(d, elder, [{"type": "LNYD", "fields": ["name", "age_over_60"]}])
    assert released["type"] == "LNYD"
    body = get(d, "/api/v1/dashboard/city/day", "auditor", day=today.isoformat())
    (civil,) = body["shows"]
    assert civil["department"] == "civil-affairs" and civil["department_name"]
    assert civil["show"] == [0] * 6 + [2] and civil["pull"] == [0] * 6 + [1]
    assert civil["show_total"] == 2 and civil["pull_total"] == 1
    assert len(body["days"]) == 7 and body["days"][-1] == today.isoformat()
    # a refused fetch (the one fetch was spent) releases nothing and counts nothing; neither does the next day
    tomorrow = get(d, "/api/v1/dashboard/city/day", "auditor", day=(today + dt.timedelta(days=1)).isoformat())
    assert tomorrow["shows"][0]["show"] == [0] * 5 + [2, 0]
    week_before = get(d, "/api/v1/dashboard/city/day", "auditor", day=(today - dt.timedelta(days=7)).isoformat())
    assert week_before["shows"] == []
    with d["services"].db.session() as s:
        rows = s.execute(select(CertificateUseCount)).scalars().all()
        assert {(r.day, r.department_id, r.kind, r.n) for r in rows} == {
            (today, "civil-affairs", "show", 2), (today, "civil-affairs", "pull", 1)}
        # counts only: no pid, certificate id or verifier in the table
        assert {c.name for c in CertificateUseCount.__table__.columns} == {"day", "department_id", "kind", "n"}
    assert elder not in json.dumps(body) and lnyd not in json.dumps(body)


def test_counting_a_use_adds_up_in_one_row_a_day_and_kind(office):
    services = office["services"]
    at = dt.datetime(2026, 11, 20, 23, 59, tzinfo=CITY_TZ).timestamp()
    with services.db.session() as s:
        for _ in range(3):
            count_certificate_use(s, "market-regulation", "show", at)
        count_certificate_use(s, "market-regulation", "pull", at + 120, n=4)  # 00:01 the next city day
    with services.db.session() as s:
        rows = {(r.day.isoformat(), r.kind): r.n for r in s.execute(select(CertificateUseCount)).scalars()}
    assert rows == {("2026-11-20", "show"): 3, ("2026-11-21", "pull"): 4}
    with pytest.raises(ValueError), services.db.session() as s:
        count_certificate_use(s, "market-regulation", "peek", at)
    body = get(office, "/api/v1/dashboard/city/day", "auditor", day="2026-11-21")
    (market,) = body["shows"]
    assert market["show"] == [0, 0, 0, 0, 0, 3, 0] and market["pull"] == [0] * 6 + [4]


def test_every_audit_run_is_kept_and_the_state_shows_the_last_and_the_runs_of_the_week(office):
    d = office
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    assert state["audit"]["last"] is None and state["audit"]["runs_7d"] == 0
    consented_pull(d, d["residents"][0], [{"type": "LNYD", "fields": ["name"]}])  # request, approve, fetch
    report = d["client"].get("/api/v1/audit/verify", headers=bearer(d["keys"]["auditor"])).get_json()
    assert report["ok"] is True and report["entries"] == 3
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    last = state["audit"]["last"]
    assert last["ok"] is True and last["entries_checked"] == 3 and last["last_seq"] == 3 and last["reason"] is None
    assert last["at"].endswith("Z") and dt.datetime.fromisoformat(last["at"]).tzinfo is not None
    assert state["audit"]["runs_7d"] == 1 and state["audit"]["failed_7d"] == 0
    with d["services"].db.session() as s:  # tampering: an entry's purpose rewritten behind the log's back
        s.execute(update(AccessLogEntry).where(AccessLogEntry.seq == 2).values(purpose="curiosity"))
    report = d["client"].get("/api/v1/audit/verify", headers=bearer(d["keys"]["auditor"])).get_json()
    assert report["ok"] is False and report["first_bad_seq"] == 2
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    last = state["audit"]["last"]
    assert last["ok"] is False and last["entries_checked"] == 2 and last["last_seq"] == 3
    assert last["reason"] == report["problem"] and "entry 2" in last["reason"]
    assert state["audit"]["runs_7d"] == 2 and state["audit"]["failed_7d"] == 1
    # a run older than seven days is the last no more once newer ones exist, and is not among the week's
    with d["services"].db.session() as s:
        s.add(AuditRun(at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8), ok=True, entries_checked=1, last_seq=1))
    state = get(d, "/api/v1/dashboard/city/state", "auditor")
    assert state["audit"]["runs_7d"] == 2


def test_the_cli_audit_keeps_its_run_too(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CITYCODE_HOME": str(tmp_path / "home")}
    env.pop("CITYCODE_DATABASE_URL", None)
    citycode = str(Path(sys.executable).with_name("citycode"))
    assert subprocess.run([citycode, "init"], env=env, capture_output=True, timeout=120).returncode == 0
    verified = subprocess.run([citycode, "audit", "verify"], env=env, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    with sqlite3.connect(tmp_path / "home" / "citycode.sqlite3") as conn:
        rows = conn.execute("SELECT ok, entries_checked, last_seq, reason FROM audit_runs ORDER BY id").fetchall()
    assert rows == [(1, 0, 0, None), (1, 0, 0, None)]  # the demo's run at init, and this one


SERVICE_DAY = dt.date(2026, 11, 20)


def point_record(point: str, resident: str, hour: int, minute: int = 10, accepted: bool = True,
                 day: dt.date = SERVICE_DAY) -> PointRecord:
    at = dt.datetime.combine(day, dt.time(hour, minute), CITY_TZ)
    return PointRecord(record_id=uuid.uuid4().hex, point_id=point, service_id="oxygen", resident=resident,
                       at=at.astimezone(dt.UTC), day=day, hour=hour, accepted=accepted, online=False,
                       note=None if accepted else "quota_exhausted")


def test_service_use_per_point_per_hour_counts_each_points_granted_uses_and_the_overdraws(office):
    d = office
    admin = bearer(d["keys"]["admin"])
    made = d["client"].post("/api/v1/admin/services", json={"id": "oxygen", "name": "免费吸氧", "daily_quota": 2},
                            headers=admin)
    assert made.status_code == 201, made.get_json()
    keys = {}
    for point, name in (("square", "格萨尔广场"), ("hospital", "州医院")):
        answer = d["client"].post("/api/v1/admin/services/oxygen/points", json={"id": point, "name": name},
                                  headers=admin)
        assert answer.status_code == 201, answer.get_json()
        keys[point] = answer.get_json()["key"]
    elder, adult = d["residents"][:2]
    with d["services"].db.session() as s:
        s.add_all([point_record("square", elder, 9), point_record("square", adult, 9, 40),
                   point_record("square", elder, 15), point_record("hospital", elder, 15, 30),  # elder: 3 of 2
                   point_record("hospital", adult, 2),  # 02:00 of the date: last but one of the day's hours
                   point_record("hospital", adult, 15, accepted=False),  # refused: not a use
                   point_record("square", adult, 9, day=SERVICE_DAY + dt.timedelta(days=1))])  # another date
    body = get(d, "/api/v1/dashboard/city/points", "auditor", day=SERVICE_DAY.isoformat())
    assert body["day"] == SERVICE_DAY.isoformat() and len(body["hours"]) == 24
    assert body["hours"][0] == "04:00" and body["hours"][-1] == "03:00"
    (oxygen,) = body["services"]
    assert oxygen["service"] == "oxygen" and oxygen["service_name"] == "免费吸氧" and oxygen["quota_per_day"] == 2
    points = {p["point"]: p for p in oxygen["points"]}
    assert [p["point"] for p in oxygen["points"]] == ["hospital", "square"]
    assert points["square"]["point_name"] == "格萨尔广场"

    def at(*pairs: tuple[int, int]) -> list[int]:
        per = dict(pairs)
        return [per.get(h, 0) for h in HOURS]

    assert points["square"]["per_hour"] == at((9, 2), (15, 1)) and points["square"]["total"] == 3
    assert points["hospital"]["per_hour"] == at((15, 1), (2, 1)) and points["hospital"]["total"] == 2
    assert points["hospital"]["per_hour"][HOURS.index(2)] == 1 and HOURS.index(2) == 22
    assert oxygen["overdraws"] == 1 and oxygen["overdrawn_uses"] == 1 and oxygen["total"] == 5
    assert elder not in json.dumps(body) and adult not in json.dumps(body)
    # an online use through the point's API is counted in the hour it was recorded in
    used = d["client"].post("/api/v1/points/uses", json={"code": d["services"].issue_identity_code(adult)},
                            headers=bearer(keys["square"]))
    assert used.status_code == 200 and used.get_json()["granted"] is True, used.get_json()
    with d["services"].db.session() as s:
        record = s.get(PointRecord, used.get_json()["record_id"])
        day, hour = record.day, record.hour
    today = get(d, "/api/v1/dashboard/city/points", "auditor", day=day.isoformat())
    square = next(p for p in today["services"][0]["points"] if p["point"] == "square")
    assert square["per_hour"][HOURS.index(hour)] >= 1 and square["total"] == (2 if day == SERVICE_DAY
                                                                               + dt.timedelta(days=1) else 1)
    empty = get(d, "/api/v1/dashboard/city/points", "auditor", day="2026-01-01")
    assert [p["total"] for p in empty["services"][0]["points"]] == [0, 0] and empty["services"][0]["overdraws"] == 0


def test_the_new_figures_need_an_auditor_key(office):
    d = office
    for path in ("/api/v1/dashboard/city/points", "/api/v1/dashboard/city/day", "/api/v1/dashboard/city/state"):
        assert d["client"].get(path, query_string={"day": "2026-11-20"}).status_code == 401
        for key in ("qd-metro", "clerk", "verifier", "admin"):
            response = d["client"].get(path, query_string={"day": "2026-11-20"}, headers=bearer(d["keys"][key]))
            assert response.status_code == 403 and response.get_json()["error"] == "forbidden", (path, key)


@pytest.mark.parametrize("bad", ["", "2026-13-01", "2026-02-30", "yesterday", "20261205"])
def test_a_bad_day_for_the_service_points_is_400_invalid_day(office, bad):
    response = office["client"].get("/api/v1/dashboard/city/points", query_string={"day": bad},
                                    headers=bearer(office["keys"]["auditor"]))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_day"
    assert response.get_json()["message"]
    missing = office["client"].get("/api/v1/dashboard/city/points", headers=bearer(office["keys"]["auditor"]))
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_day"
    early = office["client"].get("/api/v1/dashboard/city/points", query_string={"day": "1999-12-31"},
                                 headers=bearer(office["keys"]["auditor"]))
    assert early.status_code == 422 and early.get_json()["error"] == "day_out_of_range"


def test_the_demo_figures_fill_each_new_panel_once(office):
    d = office
    services = d["services"]
    with services.db.session() as s:
        residents = list_residents(s)[:3]
        made = ensure_demo_figures(s, residents, services.audit_key)
    assert made == {"certificate_uses": sum(sum(n) for _, _, n in DEMO_USES), "audit_runs": 1,
                    "point_uses": len(DEMO_POINT_USES)}
    with services.db.session() as s:  # a second init adds nothing
        assert ensure_demo_figures(s, residents, services.audit_key) == {
            "certificate_uses": 0, "audit_runs": 0, "point_uses": 0}
    today = dt.datetime.now(CITY_TZ).date().isoformat()
    day = get(d, "/api/v1/dashboard/city/day", "auditor", day=today)
    shows = {s["department"]: s for s in day["shows"]}
    assert shows["civil-affairs"]["show"] == [3, 5, 2, 4, 6, 1, 3] and shows["market-regulation"]["pull_total"] == 3
    audit = get(d, "/api/v1/dashboard/city/state", "auditor")["audit"]
    assert audit["last"]["ok"] is True and audit["runs_7d"] == 1
    (oxygen,) = get(d, "/api/v1/dashboard/city/points", "auditor", day=today)["services"]
    assert oxygen["service"] == DEMO_SERVICE[0] and [p["total"] for p in oxygen["points"]] == [3, 3]
    assert oxygen["overdraws"] == 1


def test_concurrent_counts_add_up_never_overwrite(office):
    import threading

    services = office["services"]
    at = dt.datetime(2026, 11, 20, 12, tzinfo=CITY_TZ).timestamp()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def count() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                with services.db.session() as s:
                    count_certificate_use(s, "civil-affairs", "show", at)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with services.db.session() as s:
        (row,) = s.execute(select(CertificateUseCount)).scalars().all()
        assert row.n == 40
def _without_clock(body: dict) -> dict:
    """A gates body without what depends on the moment it was asked (seconds since each gate's last upload)."""
    return {**body, "gates": [{k: v for k, v in g.items() if k not in ("silent_seconds", "offline")}
                              for g in body["gates"]], "offline": None}


def test_a_cleared_days_figures_from_the_summaries_equal_the_raw_aggregates_with_records_received_since(day_of):
    d = day_of
    services, day = d["services"], d["day"]
    with services.db.session() as s:
        assert s.query(TapHour).filter(TapHour.operator_id == "qd-metro", TapHour.service_day == day).count() > 0
    # records of the cleared day received after its clearing: in the figures, and waiting for the next clearing
    late = Generator(day, seed=4242, services=services)
    late.bus_day(rides=30)
    late_records = [r for r in late.records["qd-bus"] if service_day(r["at"]) == day.isoformat()]
    upload(services, {"qd-bus": late_records}, dt.datetime.now(CST).timestamp() + 60)
    paths = ("/api/v1/dashboard/operator/day", "/api/v1/dashboard/operator/gates")
    for operator in ("qd-metro", "qd-bus"):
        summarised = {p: get(d, p, operator, day=day.isoformat()) for p in paths}
        week = get(d, paths[0], operator, day=day.isoformat(), against="week_average")
        with services.db.session() as s:  # without the summaries' marker the day is read from its records
            s.execute(delete(SummarisedDay).where(SummarisedDay.operator_id == operator))
        raw = {p: get(d, p, operator, day=day.isoformat()) for p in paths}
        assert summarised[paths[0]] == raw[paths[0]]
        assert get(d, paths[0], operator, day=day.isoformat(), against="week_average") == week
        assert _without_clock(summarised[paths[1]]) == _without_clock(raw[paths[1]])
        with services.db.session() as s:
            run_clearing(s, operator, day)
            run_clearing(s, operator, day - dt.timedelta(days=7))
    bus = get(d, paths[0], "qd-bus", day=day.isoformat())
    own = [r for r in d["gen"].records["qd-bus"] if service_day(r["at"]) == day.isoformat()]
    assert bus["taps_total"] == len(own) + len(late_records) and len(late_records) > 0

"""The dashboards' JSON (/api/v1/dashboard/): an operator's figures of a generated day (thousands of records
uploaded through the gates' upload path, then cleared) equal counts made here from the generated records, never
another operator's; the data office's figures equal the checks made through the API; auditor-only and
operator-only; bad days refused with 400 invalid_day; a cleared day read from the summaries clearing keeps
equals the same day read from its records. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import delete

from codeservice.clients.service import add_api_client
from codeservice.dashboard.models import SummarisedDay, TapHour
from codeservice.demo import DEMO_COMPANY, _uscc
from codeservice.transit.clearing import run_clearing
from codeservice.transit.models import Trip
from codeservice.transit.service import ingest_records
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

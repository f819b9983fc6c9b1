"""Service points with a daily quota (扫码吸氧): the quota shared online across two points (through the API, the
shared state: in-process and Redis, SQLite and PostgreSQL), two SDK points offline that each enforce what they know,
their uploads stored exactly once (also when an answer is lost and the batch is sent again), the overdraws found
after upload, refusals (quota exhausted, a code shown twice, a forged code, an unknown point), and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from codeservice.clients.service import add_api_client
from codeservice.identity.residents import list_residents
from codeservice.venues.points import overdraws, use_per_point_per_hour
from sdk import TrustList, Verifier, load_anchor
from sdk.base45 import b45decode, b45encode
from sdk.citytime import CITY_TZ
from sdk.gate import GateStore
from sdk.points import RECORDS_PATH, PointConfig, ServicePoint, quota_scope
from sdk.upload import Uploader, UploadError
from tests.conftest import with_cluster

CITYCODE = str(Path(sys.executable).with_name("citycode"))
SERVICE = "oxygen"


def services_of(app: Flask):  # type: ignore[no-untyped-def]
    return app.extensions["citycode"]


def pids(app: Flask) -> list[str]:
    with services_of(app).db.session() as db:
        return [r.pid for r in list_residents(db)]


def post(client: FlaskClient, path: str, body: object, key: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


def today() -> dt.date:
    return dt.datetime.now(CITY_TZ).date()


def forged(code: str) -> str:
    raw = bytearray(b45decode(code[4:]))
    raw[-1] ^= 0x01
    return "CC1:" + b45encode(bytes(raw))


@pytest.fixture
def oxygen(app: Flask) -> dict[str, str]:
    """A service of two uses a day with two points (their keys), and an admin key, through the API."""
    app.testing = True
    client = app.test_client()
    with services_of(app).db.session() as db:
        _, admin = add_api_client(db, "City administration", "admin")
    made = post(client, "/api/v1/admin/services", {"id": SERVICE, "name": "免费吸氧", "daily_quota": 2}, admin)
    assert made.status_code == 201, made.json
    keys = {"admin": admin}
    for point in ("square", "hospital"):
        answer = post(client, f"/api/v1/admin/services/{SERVICE}/points", {"id": point, "name": point}, admin)
        assert answer.status_code == 201 and answer.json["key"].startswith("cc_p_")
        keys[point] = answer.json["key"]
    return keys


def use(app: Flask, key: str, code: str):  # type: ignore[no-untyped-def]
    return post(app.test_client(), "/api/v1/points/uses", {"code": code}, key)


# -- online: one quota across the points ------------------------------------------------------------------------
@with_cluster
def test_two_points_online_share_one_daily_quota_per_resident(app: Flask, oxygen: dict[str, str]) -> None:
    services = services_of(app)
    elder, other = pids(app)[:2]
    first = use(app, oxygen["square"], services.issue_identity_code(elder))
    assert first.status_code == 200 and first.json["granted"] and first.json["used"] == 1
    second = use(app, oxygen["hospital"], services.issue_identity_code(elder))
    assert second.json["granted"] and second.json["used"] == 2
    third = use(app, oxygen["square"], services.issue_identity_code(elder))
    assert third.json == {**third.json, "granted": False, "reason": "quota_exhausted", "used": 2, "quota": 2}
    assert use(app, oxygen["hospital"], services.issue_identity_code(other)).json["granted"]  # another resident
    with services.db.session() as db:
        assert overdraws(db, SERVICE, today()) == []  # online, nobody got more than the quota
        hourly = use_per_point_per_hour(db, today())
    assert sorted((h["point"], h["uses"]) for h in hourly) == [("hospital", 2), ("square", 1)]
    assert all(h["service"] == SERVICE for h in hourly)


@with_cluster
def test_a_point_refuses_a_code_shown_twice_a_forged_code_and_answers_an_unknown_point_key_with_401(
        app: Flask, oxygen: dict[str, str]) -> None:
    services = services_of(app)
    code = services.issue_identity_code(pids(app)[0])
    assert use(app, oxygen["square"], code).json["granted"]
    again = use(app, oxygen["hospital"], code)  # the same code at the other point: one scan, one use
    assert again.status_code == 200 and not again.json["granted"] and again.json["reason"] == "replayed"
    fake = use(app, oxygen["square"], forged(services.issue_identity_code(pids(app)[0])))
    assert not fake.json["granted"] and fake.json["reason"] == "bad_signature"
    nobody = use(app, "cc_p_" + "x" * 43, services.issue_identity_code(pids(app)[0]))
    assert nobody.status_code == 401 and nobody.json["error"] == "unauthorised"
    assert use(app, oxygen["admin"], code).status_code == 401  # an API client's key is not a point's


def test_a_frozen_residents_code_gets_nothing(app: Flask, oxygen: dict[str, str]) -> None:
    services = services_of(app)
    pid = pids(app)[0]
    code = services.issue_identity_code(pid)
    frozen = post(app.test_client(), f"/api/v1/admin/residents/{pid}/freeze", {}, oxygen["admin"])
    assert frozen.status_code == 200
    answer = use(app, oxygen["square"], code)
    assert not answer.json["granted"] and answer.json["reason"] == "suspended"


def test_services_and_points_are_registered_once_with_their_rules(app: Flask, oxygen: dict[str, str]) -> None:
    client = app.test_client()
    admin = oxygen["admin"]
    assert post(client, "/api/v1/admin/services", {"id": SERVICE, "name": "x", "daily_quota": 1}, admin).status_code \
        == 409
    assert post(client, "/api/v1/admin/services", {"id": "water", "name": "x", "daily_quota": 0}, admin).json[
        "error"] == "invalid_service"
    assert post(client, "/api/v1/admin/services/nowhere/points", {"id": "p1", "name": "x"}, admin).json["error"] == \
        "unknown_service"
    assert post(client, f"/api/v1/admin/services/{SERVICE}/points", {"id": "square", "name": "x"}, admin).status_code \
        == 409
    answer = client.get(f"/api/v1/services/{SERVICE}/overdraws?date=someday",
                        headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 400 and answer.json["error"] == "invalid_day"


# -- offline: two SDK points, uploads, overdraws ----------------------------------------------------------------
def _trust(app: Flask) -> TrustList:
    client = app.test_client()
    anchor = load_anchor(client.get("/api/v1/trust-anchor").data)
    return TrustList.load(client.get("/api/v1/trust-list").get_data(as_text=True), anchor)


def _poster(app: Flask, lose_first: list[bool]):  # type: ignore[no-untyped-def]
    """The uploader's POST through the app; while ``lose_first`` holds True the answer is lost after the service
    processed the batch (the network failing on the way back)."""

    def post_json(url: str, body: dict[str, Any], key: str) -> tuple[int, Any]:
        path = url.split("http://service", 1)[1]
        response = post(app.test_client(), path, body, key)
        if lose_first and lose_first.pop(0):
            raise UploadError("connection reset while reading the answer")
        return response.status_code, response.json

    return post_json


def test_two_offline_points_each_enforce_what_they_know_and_the_overdraw_is_found_after_upload(
        app: Flask, oxygen: dict[str, str], tmp_path: Path) -> None:
    services = services_of(app)
    elder = pids(app)[0]
    trust = _trust(app)
    points = {name: ServicePoint(PointConfig(name, SERVICE, 2), Verifier(trust), GateStore(tmp_path / f"{name}.db"))
              for name in ("square", "hospital")}
    granted = {name: [points[name].scan(services.issue_identity_code(elder)).granted for _ in range(3)]
               for name in points}
    assert granted == {"square": [True, True, False], "hospital": [True, True, False]}  # each knows only its own
    refusal = points["square"].store.records()[-1]
    assert refusal["accepted"] is False and refusal["reason"] == "quota_exhausted" and refusal["online"] is False

    lost = [True]  # the square's first answer is lost: it sends the batch again
    square = Uploader(points["square"].store, "http://service", oxygen["square"], post=_poster(app, lost),
                      path=RECORDS_PATH)
    first = square.upload()
    assert first.errors and first.sent == 0 and points["square"].store.counts()["pending"] == 3
    retry = square.upload()
    assert retry.errors == [] and retry.duplicates == 3 and retry.stored == 0
    assert points["square"].store.counts() == {"pending": 0, "sent": 3, "rejected": 0}
    hospital = Uploader(points["hospital"].store, "http://service", oxygen["hospital"], post=_poster(app, []),
                        path=RECORDS_PATH)
    assert hospital.upload().stored == 3
    assert hospital.upload().sent == 0  # nothing left to send

    with services.db.session() as db:
        found = overdraws(db, SERVICE, today())
    assert found == [{"resident": elder, "uses": 4, "quota": 2, "over": 2, "points": 2}]
    answer = app.test_client().get(f"/api/v1/services/{SERVICE}/overdraws?date={today().isoformat()}",
                                   headers={"Authorization": f"Bearer {oxygen['admin']}"})
    assert answer.status_code == 200 and answer.json["overdraws"] == found


def test_an_upload_stores_only_records_of_its_point_whose_codes_are_genuine(app: Flask, oxygen: dict[str, str],
                                                                          tmp_path: Path) -> None:
    services = services_of(app)
    point = ServicePoint(PointConfig("square", SERVICE, 2), Verifier(_trust(app)), GateStore(tmp_path / "p.db"))
    good = point.scan(services.issue_identity_code(pids(app)[0])).record
    made_up = {**good, "record_id": "a" * 32, "code": forged(good["code"])}
    elsewhere = {**good, "record_id": "b" * 32, "point_id": "hospital"}
    answer = post(app.test_client(), RECORDS_PATH, {"records": [good, made_up, elsewhere, {"record_id": "short"}]},
                  oxygen["square"])
    assert answer.status_code == 200 and answer.json["stored"] == [good["record_id"]]
    errors = {r["record_id"]: r["error"].split(":")[0] for r in answer.json["rejected"]}
    assert errors == {"a" * 32: "unproven", "b" * 32: "wrong_point", "short": "invalid_record"}
    again = post(app.test_client(), RECORDS_PATH, {"records": [good]}, oxygen["square"])
    assert again.json["duplicates"] == [good["record_id"]] and again.json["stored"] == []
    stolen = post(app.test_client(), RECORDS_PATH, {"records": [good]}, oxygen["hospital"])
    assert stolen.json["rejected"][0]["error"].startswith("record_id_conflict")


class StateQuota:
    """An online point's shared quota over the service's state store (what POST /api/v1/points/uses does)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def take(self, scope: str, limit: int, keep_until: float) -> bool:
        return bool(self.state.count(scope, keep_until - time.time()) <= limit)


def test_sdk_points_online_share_the_quota_through_the_state_store_and_keep_counting_offline(
        app: Flask, oxygen: dict[str, str], tmp_path: Path) -> None:
    services = services_of(app)
    elder = pids(app)[0]
    shared = StateQuota(services.state)
    trust = _trust(app)
    square = ServicePoint(PointConfig("square", SERVICE, 2), Verifier(trust), GateStore(tmp_path / "s.db"),
                          shared=shared)
    hospital = ServicePoint(PointConfig("hospital", SERVICE, 2), Verifier(trust), GateStore(tmp_path / "h.db"),
                            shared=shared)
    assert square.scan(services.issue_identity_code(elder)).online
    assert hospital.scan(services.issue_identity_code(elder)).granted
    third = square.scan(services.issue_identity_code(elder))
    assert not third.granted and third.reason == "quota_exhausted" and third.online

    class Unreachable:
        def take(self, scope: str, limit: int, keep_until: float) -> bool:
            raise ConnectionError("no network")

    square.shared = Unreachable()  # offline now: the square knows the one use it granted, so one more
    offline = [square.scan(services.issue_identity_code(elder)) for _ in range(2)]
    assert [(u.granted, u.online) for u in offline] == [(True, False), (False, False)]
    assert quota_scope(SERVICE, today().isoformat(), elder).startswith("quota:oxygen:")


# -- the command line -------------------------------------------------------------------------------------------
def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, timeout=90)


def test_the_cli_adds_a_service_and_points_uses_them_online_and_reports_overdraws(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(tmp_path / "home")}
    init = run(env, "init")
    assert init.returncode == 0, init.stderr
    elder = json.loads(init.stdout)["demo_residents"][0]
    assert run(env, "service", "add", "--id", SERVICE, "--name", "免费吸氧", "--quota", "2").returncode == 0
    for point in ("square", "hospital"):
        added = run(env, "service", "point", "add", "--service", SERVICE, "--id", point, "--name", point)
        assert added.returncode == 0 and json.loads(added.stdout)["key"].startswith("cc_p_")
    assert json.loads(run(env, "service", "point", "add", "--service", "nowhere", "--id", "p1", "--name", "x")
                      .stderr)["error"] == "unknown_service"
    codes = run(env, "code", "issue", elder, "--count", "3").stdout.splitlines()
    first = run(env, "service", "use", "--point", "square", codes[0], codes[1])
    assert first.returncode == 0, first.stderr
    assert [json.loads(line)["used"] for line in first.stdout.splitlines()] == [1, 2]
    # in-process state lives in one process: the quota of the next command starts afresh, so the
    # database shows what the points did; each command's own scans share one quota
    assert run(env, "service", "use", "--point", "nowhere", codes[2]).returncode == 2
    over = json.loads(run(env, "service", "overdraws", "--service", SERVICE, "--date", today().isoformat()).stdout)
    assert over == {"service": SERVICE, "date": today().isoformat(), "overdraws": []}
    exhausted = run(env, "service", "use", "--point", "hospital", codes[2], codes[2])
    lines = [json.loads(line) for line in exhausted.stdout.splitlines()]
    assert exhausted.returncode == 1 and lines[1]["reason"] == "replayed"

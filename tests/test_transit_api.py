"""Transit over HTTP on SQLite and PostgreSQL, each with in-process state and Redis (and a Redis Cluster): a phone
registers its device key and gets a ride credential; gates upload records exactly once; operators read records and
clearing statements; a removed phone or a frozen identity is refused by gates after a refresh."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from codeservice.clients.service import add_api_client
from codeservice.identity.residents import get_resident, list_residents
from issuers.rides import issue_credential, make_ride_code
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.citytime import service_day
from sdk.claims import subject_from_text
from sdk.gate import Gate, GateConfig, GateStore
from sdk.keys import b64u_decode, b64u_encode
from sdk.statuslist import StatusCache
from sdk.upload import Uploader
from tests import forge
from tests.conftest import with_cluster
from tests.test_api import sign_in
from verifiers.scenes import SCENES


def residents(app):
    with app.extensions["citycode"].db.session() as s:
        return [r.pid for r in list_residents(s)]


def client_key(app, role, **where) -> str:
    with app.extensions["citycode"].db.session() as s:
        return add_api_client(s, f"{role} {uuid.uuid4().hex[:6]}", role, **where)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class BrowserPhone:
    """What the page does with WebCrypto: a P-256 key, its raw public point, proofs and codes."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential: bytes | None = None
        self.device_id: str | None = None

    @property
    def public_raw(self) -> str:
        return b64u_encode(self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                              serialization.PublicFormat.UncompressedPoint))

    def proof(self, challenge: str) -> str:
        return b64u_encode(forge.es256(self.key, b"citycode-ride-device:" + b64u_decode(challenge)))

    def register(self, client, label="my phone"):
        challenge = client.post("/api/v1/me/ride/challenge").json["challenge"]
        response = client.post("/api/v1/me/ride/devices",
                               json={"public_key": self.public_raw, "proof": self.proof(challenge), "label": label})
        if response.status_code == 201:
            self.credential = b64u_decode(response.json["credential"])
            self.device_id = response.json["device_id"]
        return response

    def code(self, at: float | None = None) -> str:
        assert self.credential is not None
        return make_ride_code(self.key, self.credential, now=at)


def gate_verifier(client, at: float | None = None) -> Verifier:
    """An offline gate after a sync: the trust list and the transit platform's status list, verified."""
    anchor = load_anchor(client.get("/api/v1/trust-anchor").get_data())
    trust = TrustList.load(client.get("/api/v1/trust-list").get_data(), anchor)
    cache = StatusCache()
    cache.load(client.get("/api/v1/status/city-transit").get_data(), trust)
    return Verifier(trust, status=cache)


# -- the phone -------------------------------------------------------------------------------------------------
def test_phone_registers_its_key_and_its_codes_open_an_offline_gate(app, client):
    student = residents(app)[2]
    sign_in(client, student)
    ride = client.get("/api/v1/me/ride").json
    assert ride["card_type"] == "student" and ride["devices"] == [] and ride["code_validity"] == 60
    phone = BrowserPhone()
    response = phone.register(client)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["code_validity"] == 60 and 30 <= body["refresh_seconds"] < 60
    assert body["expires_at"] - body["issued_at"] == 24 * 3600
    result = gate_verifier(client).verify(phone.code(), SCENES["metro-gate"])
    assert result.accepted, result.detail
    assert result.subject == ride["account"] and result.card_type == "student" and result.fare_limit == 2000
    assert result.subject != student  # the gate sees the transit account, never the pid
    devices = client.get("/api/v1/me/ride").json["devices"]
    assert [(d["id"], d["label"], d["status"]) for d in devices] == [(phone.device_id, "my phone", "valid")]
    # times in UTC with their offset, on SQLite as on PostgreSQL
    until = dt.datetime.fromisoformat(devices[0]["authorised_until"])
    assert until.utcoffset() == dt.timedelta(0) and until.timestamp() == body["expires_at"]


def test_registration_needs_a_fresh_challenge_signed_by_the_key(app, client):
    sign_in(client, residents(app)[1])
    phone, other = BrowserPhone(), BrowserPhone()
    no_challenge = client.post("/api/v1/me/ride/devices", json={"public_key": phone.public_raw, "proof": "AA"})
    assert no_challenge.status_code == 422 and no_challenge.json["error"] == "no_challenge"
    challenge = client.post("/api/v1/me/ride/challenge").json["challenge"]
    wrong_key = client.post("/api/v1/me/ride/devices",
                            json={"public_key": phone.public_raw, "proof": other.proof(challenge)})
    assert wrong_key.status_code == 422 and wrong_key.json["error"] == "bad_proof"
    reused = client.post("/api/v1/me/ride/devices",
                         json={"public_key": phone.public_raw, "proof": phone.proof(challenge)})
    assert reused.status_code == 422 and reused.json["error"] == "no_challenge"  # one use, even after a failure


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"public_key": "not base64!", "proof": "AA"}, 400, "invalid_key"),  # not of the documented form
    ({"public_key": "A" * 87, "proof": "AA"}, 422, "invalid_key"),  # of the form, but no P-256 point
    ({"public_key": b64u_encode(b"\x04" + b"\x01" * 64), "proof": "AA"}, 422, "invalid_key"),
    ({"public_key": 42, "proof": "AA"}, 400, "invalid_key"),
    ({"proof": "AA"}, 400, "invalid_body"),
    ({"public_key": "x", "proof": "y", "admin": True}, 400, "invalid_body"),
])
def test_bad_registration_bodies_get_400_or_422_with_a_reason(app, client, body, status, error):
    sign_in(client, residents(app)[1])
    client.post("/api/v1/me/ride/challenge")
    response = client.post("/api/v1/me/ride/devices", json=body)
    assert response.status_code == status and response.json["error"] == error


def test_ride_endpoints_need_a_signed_in_resident_who_is_not_frozen(app, client):
    for method, path in (("get", "/api/v1/me/ride"), ("post", "/api/v1/me/ride/challenge"),
                         ("get", "/api/v1/me/trips"), ("delete", "/api/v1/me/ride/devices/0123456789abcdef")):
        assert getattr(client, method)(path).status_code == 401
    # the session is checked before the body, as at every resident endpoint
    for path in ("/api/v1/me/ride/devices", "/api/v1/me/ride/devices/0123456789abcdef/credential"):
        assert client.post(path).json["error"] == "unauthorised"
        assert client.post(path, json={"x": 1}).json["error"] == "unauthorised"
    pid = residents(app)[1]
    sign_in(client, pid)
    with app.extensions["citycode"].db.session() as s:
        get_resident(s, pid).frozen = True
    assert client.post("/api/v1/me/ride/challenge").json["error"] == "frozen"


def test_a_removed_phone_and_a_frozen_identity_are_refused_by_gates_after_a_refresh(app, client):
    pid = residents(app)[1]
    sign_in(client, pid)
    lost, kept = BrowserPhone(), BrowserPhone()
    assert lost.register(client).status_code == 201 and kept.register(client).status_code == 201
    assert client.delete(f"/api/v1/me/ride/devices/{lost.device_id}").json == {"id": lost.device_id,
                                                                                "status": "revoked"}
    gate = gate_verifier(client)
    assert gate.verify(lost.code(), SCENES["bus"]).reason is Reason.REVOKED
    assert gate.verify(kept.code(), SCENES["bus"]).accepted
    with app.extensions["citycode"].db.session() as s:
        get_resident(s, pid).frozen = True
    assert gate_verifier(client).verify(kept.code(), SCENES["bus"]).reason is Reason.SUSPENDED
    with app.extensions["citycode"].db.session() as s:
        get_resident(s, pid).frozen = False
    assert gate_verifier(client).verify(kept.code(), SCENES["bus"]).accepted


def test_the_transit_status_list_covers_a_phone_above_a_lowered_list_size(app, client):
    """Indices are never reused: a list made after CITYCODE_STATUS_LIST_SIZE was lowered still holds every phone."""
    from codeservice.transit.models import RideDevice

    sign_in(client, residents(app)[1])
    phone = BrowserPhone()
    phone.register(client)
    size = app.extensions["citycode"].settings.status_list_size
    with app.extensions["citycode"].db.session() as s:
        s.get(RideDevice, phone.device_id).status_index = size + 5000  # allocated when the list was larger
    challenge = client.post("/api/v1/me/ride/challenge").json["challenge"]
    renewed = client.post(f"/api/v1/me/ride/devices/{phone.device_id}/credential",
                          json={"proof": phone.proof(challenge)})
    phone.credential = b64u_decode(renewed.json["credential"])
    result = gate_verifier(client).verify(phone.code(), SCENES["bus"])
    assert result.accepted, result.detail


def test_renewal_gives_a_later_authorisation_to_a_phone_that_proves_its_key(app, client):
    sign_in(client, residents(app)[0])
    phone = BrowserPhone()
    first = phone.register(client).json
    time.sleep(1.1)
    challenge = client.post("/api/v1/me/ride/challenge").json["challenge"]
    renewed = client.post(f"/api/v1/me/ride/devices/{phone.device_id}/credential",
                          json={"proof": phone.proof(challenge)})
    assert renewed.status_code == 200 and renewed.json["expires_at"] > first["expires_at"]
    assert renewed.json["device_id"] == phone.device_id
    challenge = client.post("/api/v1/me/ride/challenge").json["challenge"]
    stranger = client.post("/api/v1/me/ride/devices/0123456789abcdef/credential",
                           json={"proof": phone.proof(challenge)})
    assert stranger.status_code == 404


def test_at_most_three_phones_and_a_key_registers_once(app, client):
    sign_in(client, residents(app)[0])
    phones = [BrowserPhone() for _ in range(4)]
    answers = [p.register(client) for p in phones]
    assert [a.status_code for a in answers] == [201, 201, 201, 409], [a.json for a in answers]
    sign_in(client, residents(app)[1])
    taken = phones[0].register(client)
    assert taken.status_code == 409 and taken.json["error"] == "key_in_use"


# -- gates and records ---------------------------------------------------------------------------------------------
_SIGNING: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _signing_service(request):
    """Records carry real codes, signed with the app's keys; its transit and identity keys are made as of three
    days ago, so that yesterday's rides have credentials it signed."""
    if "app" in request.fixturenames:
        services = request.getfixturevalue("app").extensions["citycode"]
        for issuer in ("city-transit", "city-id"):
            services.keyring.rotate(issuer, grace=0, now=time.time() - 3 * 86400)
        _SIGNING["services"] = services
    yield
    _SIGNING.clear()


def signed_scan(*, at: float, kind: str = "ride", account: str = "abcdefghijklmnop", card_type: str = "adult",
                fare_limit: int = 2000) -> dict[str, Any]:
    """The members of a record that a real code proves: a ride code of a fresh phone (or an identity code)."""
    services = _SIGNING["services"]
    if kind == "id":
        code = services.issue_identity_code(account, now=at)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        credential = issue_credential(services.keyring.signer("city-transit"), account=subject_from_text(account),
                                      device_key=key.public_key(), card_type=card_type, fare_limit=fare_limit,
                                      status_index=7, validity=60, lifetime=86400, now=at - 600)
        code = make_ride_code(key, credential, now=at)
    proof = services.evidence_verifier().evidence(code, at=at)
    assert proof.accepted, proof.detail
    return {"kind": kind, "account": account, "card_type": proof.card_type, "fare_limit": proof.fare_limit,
            "credential_id": proof.credential_id, "code_id": proof.code_id, "code": code}


def _record(operator="qd-metro", **overrides):
    at = overrides.get("at")
    at = at if type(at) in (int, float) and abs(at - time.time()) < 30 * 86400 else time.time()
    record = {"record_id": uuid.uuid4().hex, "gate_id": "g-1", "operator": operator, "scene": "metro-gate",
              "station": "101", "line": None, "direction": "in", "at": at, "accepted": True, "reason": "ok",
              "entitlement": None, "online": False}
    accepted = overrides.get("accepted", True) is True
    proven = {k: overrides[k] for k in ("kind", "account", "card_type", "fare_limit") if k in overrides}
    try:
        record.update(signed_scan(at=at, **proven))
    except (ValueError, TypeError):  # a kind or card type the test makes up: no code can carry it
        record.update({"kind": "ride", "account": "abcdefghijklmnop", "card_type": "adult", "fare_limit": 2000,
                       "credential_id": "00112233aabbccdd", "code_id": "ab" * 16, "code": None})
    if not accepted:
        record["code"] = None
    record.update(overrides)
    return record


def yesterday_noon() -> float:
    """Noon (city time) of the last operating day that is over: far from the 04:00 day boundary."""
    day = dt.date.fromisoformat(service_day(time.time() - 86400))
    return dt.datetime.combine(day, dt.time(12), dt.timezone(dt.timedelta(hours=8))).timestamp()


def upload(client, key, records):
    return client.post("/api/v1/gate/records", json={"records": records}, headers=bearer(key))


@with_cluster
def test_each_record_is_stored_once_however_often_it_is_sent(app, client):
    key = client_key(app, "device", operator="qd-metro")
    records = [_record() for _ in range(5)]
    first = upload(client, key, records[:3])
    assert first.status_code == 200 and first.json == {"stored": [r["record_id"] for r in records[:3]],
                                                       "duplicates": [], "rejected": [], "code_duplicates": []}
    again = upload(client, key, records)
    assert again.json["stored"] == [r["record_id"] for r in records[3:]]
    assert again.json["duplicates"] == [r["record_id"] for r in records[:3]]
    from sqlalchemy import func, select

    from codeservice.transit.models import GateRecord

    with app.extensions["citycode"].db.session() as s:
        assert s.scalar(select(func.count()).select_from(GateRecord)) == 5


def test_a_stored_record_holds_exactly_what_the_gate_sent_texts_times_and_flags(app, client):
    """On PostgreSQL a batch goes in as one JSON parameter: Chinese and Tibetan texts, the scan's time to the
    microsecond, the operating day, the flags and the nulls come back exactly as sent."""
    from sqlalchemy import select

    from codeservice.transit.models import GateRecord

    key = client_key(app, "device", operator="qd-bus")
    at = yesterday_noon() + 0.123456
    record = _record("qd-bus", scene="bus", station="五四广场 བོད", line="路1", direction=None, at=at, online=True,
                     entitlement=None)
    refused = _record("qd-bus", scene="bus", station=None, line="301", at=at + 1, accepted=False, reason="code_stale")
    assert upload(client, key, [record, refused]).json["stored"] == [record["record_id"], refused["record_id"]]
    with app.extensions["citycode"].db.session() as s:
        row = s.get(GateRecord, record["record_id"])
        other = s.get(GateRecord, refused["record_id"])
        assert (row.station, row.line, row.direction, row.online, row.accepted, row.entitlement) == (
            "五四广场 བོད", "路1", None, True, True, None)
        stored_at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=dt.UTC)
        assert stored_at.timestamp() == pytest.approx(at, abs=1e-6)
        assert row.service_day == dt.date.fromisoformat(service_day(at))
        assert (row.evidence, row.code_key is not None, row.fare_limit) == (record["code"], True, 2000)
        assert (other.accepted, other.reason, other.station, other.evidence, other.code_key) == (
            False, "code_stale", None, None, None)
        assert s.scalars(select(GateRecord.record_id).where(GateRecord.duplicate_of.is_not(None))).all() == []


def test_bad_records_are_rejected_one_by_one_and_the_good_ones_stored(app, client):
    key = client_key(app, "device", operator="qd-metro")
    good = _record()
    bad = [
        _record(operator="qd-bus"), _record(reason="replayed"), _record(at="yesterday"), _record(at=1e12),
        _record(direction="sideways"), _record(card_type="vip"), _record(code_id="XYZ"), _record(gate_id=""),
        _record(station="s" * 65), _record(kind="ticket"), _record(accepted="yes"), _record(record_id="short"),
        _record(station="a\x00b"), _record(code=None), _record(code=7), {**_record(), "fare_limit": 100_000},
        {**_record(), "account": "zzzzzzzzzzzzzzzz"}, {**_record(), "code": _record()["code"]},
        _record(at=time.time() - 3600, code=_record()["code"]),
        # not text where text belongs (these were a 500), and ids with a trailing newline
        _record(reason=[]), _record(kind={}), _record(card_type=["adult"]), _record(gate_id="g-1\n"),
        _record(record_id="a" * 31 + "\n"), _record(code_id="ab\n"),
    ]
    response = upload(client, key, [good, *bad, "not an object"])
    assert response.status_code == 200
    assert response.json["stored"] == [good["record_id"]]
    errors = {r["record_id"]: r["error"] for r in response.json["rejected"]}
    assert len(response.json["rejected"]) == len(bad) + 1
    assert errors[bad[0]["record_id"]].startswith("wrong_operator: ")
    # every refusal is "reason: message"; an accepted scan the code it carries does not prove is "unproven"
    assert all(e.split(": ")[0] in ("invalid_record", "unproven") for e in list(errors.values())[1:]), errors
    for unproven in (bad[13], bad[15], bad[16], bad[17], bad[18]):
        assert errors[unproven["record_id"]].startswith("unproven: "), errors[unproven["record_id"]]


def test_a_record_id_another_gate_used_is_refused_not_acknowledged(app, client):
    mine, other = client_key(app, "device", operator="qd-metro"), client_key(app, "device", operator="qd-metro")
    record = _record()
    assert upload(client, mine, [record]).json["stored"] == [record["record_id"]]
    clash = upload(client, other, [record]).json
    assert clash["stored"] == [] and clash["duplicates"] == []
    assert clash["rejected"][0]["error"].startswith("record_id_conflict")


@pytest.mark.parametrize(("who", "status", "error"), [
    (None, 401, "unauthorised"), ("clerk", 403, "forbidden"), ("kiosk", 403, "forbidden"),
])
def test_only_an_operators_gates_upload(app, client, who, status, error):
    headers = {}
    if who == "clerk":
        headers = bearer(client_key(app, "clerk", office="central-hall-w3"))
    elif who == "kiosk":
        headers = bearer(client_key(app, "device", office="central-hall-w3"))
    response = client.post("/api/v1/gate/records", json={"records": [_record()]}, headers=headers)
    assert response.status_code == status and response.json["error"] == error


@pytest.mark.parametrize("body", ['{"records": 5}', '{"records": [], "more": 1}', "[]", "{"])
def test_malformed_upload_bodies_get_400(app, client, body):
    key = client_key(app, "device", operator="qd-metro")
    response = client.post("/api/v1/gate/records", data=body, content_type="application/json", headers=bearer(key))
    assert response.status_code == 400 and response.json["error"] in ("invalid_body", "invalid_json")


def test_a_gate_asks_for_its_fares_and_capacity(app, client):
    bus = client_key(app, "device", operator="qd-bus")
    setup = client.get("/api/v1/gate/setup?line=301", headers=bearer(bus)).json
    assert setup["fares"]["adult"] == 300 and setup["fares"]["student"] == 150 and setup["fares"]["elderly"] == 0
    site = client_key(app, "device", operator="laoshan")
    assert client.get("/api/v1/gate/setup?station=taiqing", headers=bearer(site)).json["daily_capacity"] == 20000
    assert client.get("/api/v1/gate/setup?station=nowhere", headers=bearer(site)).status_code == 404
    assert client.get("/api/v1/gate/setup", headers=bearer(bus)).json["error"] == "invalid_query"


def _phone_and_entry_gate(app, client, tmp_path) -> tuple[BrowserPhone, Gate]:
    """A signed-in resident's registered phone, and an entry gate of the demo metro at station 101."""
    sign_in(client, residents(app)[2])
    phone = BrowserPhone()
    phone.register(client)
    config = GateConfig(gate_id="g-101-1", operator="qd-metro", kind="metro", scene=SCENES["metro-gate"],
                        station="101", direction="in")
    return phone, Gate(config, gate_verifier(client), GateStore(tmp_path / "gate.sqlite3"))


def test_the_sdk_uploader_delivers_a_real_gates_records_once(app, client, tmp_path):
    """The SDK's uploader through the service's HTTP handler; the answer of the first delivery is lost."""
    phone, gate = _phone_and_entry_gate(app, client, tmp_path)
    for _ in range(3):
        assert gate.scan(phone.code()).record
    key = client_key(app, "device", operator="qd-metro")
    lost = {"n": 1}

    def post(url, body, device_key):
        response = client.post("/" + url.split("/", 3)[3], json=body, headers=bearer(device_key))
        if lost["n"]:
            lost["n"] -= 1
            from sdk.upload import UploadError

            raise UploadError("answer lost")
        return response.status_code, response.json

    uploader = Uploader(gate.store, "http://citycode.test", key, post=post)
    assert uploader.upload().errors
    report = uploader.upload()
    assert (report.stored, report.duplicates) == (0, 3) and gate.store.counts()["sent"] == 3
    operator = client_key(app, "operator", operator="qd-metro")
    day = service_day(gate.store.records()[0]["at"])
    listed = client.get(f"/api/v1/operators/qd-metro/records?day={day}", headers=bearer(operator)).json["records"]
    assert sorted(r["record_id"] for r in listed) == sorted(r["record_id"] for r in gate.store.records())
    assert [r["reason"] for r in sorted(listed, key=lambda r: r["at"])] == ["ok", "passback", "passback"]


@with_cluster
def test_an_online_gates_retry_after_a_timeout_comes_back_duplicate_on_every_state_store(app, client, tmp_path):
    """Two gates online on the service's own state store (in-process, Redis, the Redis Cluster): the same code is
    refused at the second gate, passback holds across them; the upload's answer times out after the service stored
    the batch, and the gate's retry comes back as duplicates, not new trips."""
    from verifiers.transit import StateSharedGuard

    services = app.extensions["citycode"]
    phone, _ = _phone_and_entry_gate(app, client, tmp_path)
    shared = StateSharedGuard(services.state)

    def entry_gate(name: str) -> Gate:
        config = GateConfig(gate_id=name, operator="qd-metro", kind="metro", scene=SCENES["metro-gate"],
                            station="101", direction="in")
        return Gate(config, gate_verifier(client), GateStore(tmp_path / f"{name}.sqlite3"), shared=shared)

    east, west = entry_gate("g-101-e"), entry_gate("g-101-w")
    code = phone.code()
    assert east.scan(code).opened
    again = west.scan(code)
    assert again.result.reason is Reason.REPLAYED and again.record["online"] is True
    assert west.scan(phone.code(time.time() + 1)).result.reason is Reason.PASSBACK
    key = client_key(app, "device", operator="qd-metro")
    timed_out = {"n": 1}

    def post(url, body, device_key):
        response = client.post("/" + url.split("/", 3)[3], json=body, headers=bearer(device_key))
        if timed_out["n"]:
            timed_out["n"] -= 1
            from sdk.upload import UploadError

            raise UploadError("timed out")  # the service has stored the batch; the gate never hears it
        return response.status_code, response.json

    assert Uploader(west.store, "http://citycode.test", key, post=post).upload().errors
    assert Uploader(east.store, "http://citycode.test", key, post=post).upload().stored == 1
    assert west.store.counts()["sent"] == 0 and east.store.counts()["sent"] == 1
    report = Uploader(west.store, "http://citycode.test", key, post=post).upload()
    assert (report.stored, report.duplicates) == (0, 2) and west.store.counts()["sent"] == 2
    from sqlalchemy import func, select

    from codeservice.transit.models import GateRecord

    with services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(GateRecord)) == 3


# -- operators: rules, records, clearing ------------------------------------------------------------------------------
def test_operators_are_added_by_an_administrator_with_checked_fares(app, client):
    admin = client_key(app, "admin")
    body = {"id": "jiaozhou-bus", "name": "Jiaozhou Bus", "kind": "bus",
            "fares": {"lines": {"801": 200}, "default": 200}, "discounts": {"student": 50}}
    created = client.post("/api/v1/admin/operators", json=body, headers=bearer(admin))
    assert created.status_code == 201 and created.headers["Location"] == "/api/v1/operators/jiaozhou-bus"
    again = client.post("/api/v1/admin/operators", json=body, headers=bearer(admin))
    assert again.status_code == 409
    for fares, fragment in (({"lines": {"801": 1.5}, "default": 200}, "integer"),  # the document's words
                            ({"lines": {}, "default": 200}, "less than 1 property"),
                            ({"lines": {"801": 200}}, "default")):
        bad = client.post("/api/v1/admin/operators", json={**body, "id": "x-bus", "fares": fares},
                          headers=bearer(admin))
        assert bad.status_code == 400 and bad.json["error"] == "invalid_fares" and fragment in bad.json["message"]
    bad_discount = client.post("/api/v1/admin/operators",
                               json={**body, "id": "y-bus", "discounts": {"student": 150}}, headers=bearer(admin))
    assert bad_discount.json["error"] == "invalid_fares"


def test_an_operator_key_reaches_only_its_own_operator(app, client):
    metro = client_key(app, "operator", operator="qd-metro")
    assert client.get("/api/v1/operators/qd-metro", headers=bearer(metro)).status_code == 200
    assert client.get("/api/v1/operators/qd-bus", headers=bearer(metro)).status_code == 403
    day = service_day(time.time())
    assert client.get(f"/api/v1/operators/qd-bus/records?day={day}", headers=bearer(metro)).status_code == 403
    device = client_key(app, "device", operator="qd-metro")
    assert client.get("/api/v1/operators/qd-metro", headers=bearer(device)).status_code == 403


def test_clearing_over_http_gives_the_statement_and_the_trips_csv(app, client):
    device = client_key(app, "device", operator="qd-metro")
    operator = client_key(app, "operator", operator="qd-metro")
    yesterday = yesterday_noon()
    day = service_day(yesterday)
    taps = [
        _record(account="aaaaaaaaaaaaaaaa", card_type="adult", station="101", direction="in", at=yesterday),
        _record(account="aaaaaaaaaaaaaaaa", card_type="adult", station="206", direction="out", at=yesterday + 900),
        _record(account="bbbbbbbbbbbbbbbb", card_type="student", station="102", direction="in", at=yesterday + 60),
        _record(account="cccccccccccccccc", card_type="elderly", station="103", direction="out", at=yesterday + 99,
                fare_limit=0),
        _record(account="dddddddddddddddd", card_type="adult", accepted=False, reason="passback", at=yesterday),
    ]
    assert len(upload(client, device, taps).json["stored"]) == 5
    path = f"/api/v1/operators/qd-metro/clearing/{day}"
    assert client.get(path, headers=bearer(operator)).json["error"] == "not_cleared"
    statement = client.post(path, headers=bearer(operator))
    assert statement.status_code == 200, statement.json
    body = statement.json
    # 101 -> 104 -> 206 across the transfer: 4300 + (9300 - 3100) = 10500 m -> 400; unpaired: max fare 700
    assert body["by_status"] == {"paired": 1, "unpaired_entry": 1, "unpaired_exit": 1}
    assert body["fare_total"] == 400 + 700 + 700
    assert body["charged_total"] == body["due_to_operator"] == 400 + 350 + 0
    assert body["records"] == 4 and body["trips"] == 3
    assert client.get(path, headers=bearer(operator)).json == body
    exported = client.get(f"{path}/trips.csv", headers=bearer(operator))
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert sum(int(r["charged_cents"]) for r in rows) == body["charged_total"]
    import hashlib

    assert hashlib.sha256(exported.get_data()).hexdigest() == body["digest"]
    assert client.post(f"/api/v1/operators/qd-metro/clearing/{service_day(time.time())}",
                       headers=bearer(operator)).status_code == 409
    assert client.post("/api/v1/operators/qd-metro/clearing/2026-13-01", headers=bearer(operator)).status_code == 400


def test_the_resident_sees_their_charged_trips(app, client):
    pid = residents(app)[2]
    sign_in(client, pid)
    account = client.get("/api/v1/me/ride").json["account"]
    device = client_key(app, "device", operator="qd-bus")
    admin = client_key(app, "admin")
    yesterday = yesterday_noon()
    upload(client, device, [_record(operator="qd-bus", scene="bus", station=None, line="301", direction=None,
                                    account=account, card_type="student", at=yesterday)])
    client.post(f"/api/v1/operators/qd-bus/clearing/{service_day(yesterday)}", headers=bearer(admin))
    trips = client.get("/api/v1/me/trips").json
    assert trips["account"] == account and trips["charged_total"] == 150
    (trip,) = trips["trips"]
    assert (trip["operator_name"], trip["line"], trip["fare"], trip["charged"]) == ("Qingdao Bus Group", "301", 300,
                                                                                    150)
    json.dumps(trips)


def test_an_identity_code_at_a_gate_is_billed_to_the_residents_account_not_the_pid(app, client):
    pid = residents(app)[1]
    device = client_key(app, "device", operator="qd-bus")
    record = _record(operator="qd-bus", scene="bus", station=None, line="1", direction=None, kind="id", account=pid,
                     card_type=None, fare_limit=None, credential_id=None)
    upload(client, device, [record])
    from codeservice.transit.models import GateRecord, TransitAccount

    with app.extensions["citycode"].db.session() as s:
        stored = s.get(GateRecord, record["record_id"])
        account = s.query(TransitAccount).filter_by(resident=pid).one()
        assert stored.account == account.account != pid and stored.card_type == account.card_type


def test_day_and_query_errors_get_400(app, client):
    admin = client_key(app, "admin")
    assert client.get("/api/v1/operators/qd-metro/records?day=monday", headers=bearer(admin)).status_code == 400
    day = dt.date.today().isoformat()
    assert client.get(f"/api/v1/operators/qd-metro/records?day={day}&limit=0",
                      headers=bearer(admin)).status_code == 400
    # a limit is ASCII digits, as at every endpoint with a limit
    for limit in ("%EF%BC%95", "+5", "5_0", "%205", "0x10", ""):
        response = client.get(f"/api/v1/operators/qd-metro/records?day={day}&limit={limit}", headers=bearer(admin))
        assert (response.status_code, response.json["error"]) == (400, "invalid_query"), limit
    assert client.get(f"/api/v1/operators/qd-metro/records?day={day}&limit=0005",
                      headers=bearer(admin)).status_code == 200
    assert client.get("/api/v1/operators/nobody", headers=bearer(admin)).status_code == 404
    # only YYYY-MM-DD: a week date, another ISO 8601 form Python reads (as 2025-12-29), is not a day of the API
    week = "2026-W01-1"
    for method, path in (("get", f"/api/v1/operators/qd-metro/records?day={week}"),
                         ("post", f"/api/v1/operators/qd-metro/clearing/{week}"),
                         ("get", f"/api/v1/operators/qd-metro/clearing/{week}"),
                         ("get", f"/api/v1/operators/qd-metro/clearing/{week}/trips.csv")):
        response = getattr(client, method)(path, headers=bearer(admin))
        assert (response.status_code, response.json["error"]) == (400, "invalid_day"), (path, response.json)


def test_nul_characters_in_a_path_or_query_are_answered_not_a_500(app, client):
    """PostgreSQL cannot compare text with a NUL character: such ids are unknown before any query."""
    admin = client_key(app, "admin")
    day = service_day(time.time() - 86400)
    for method, path, status in (
        ("get", "/api/v1/operators/qd%00metro", 404),
        ("get", f"/api/v1/operators/qd%00metro/records?day={day}", 404),
        ("get", f"/api/v1/operators/qd-metro/records?day={day}&after=a%00b", 400),
        ("post", f"/api/v1/operators/qd%00metro/clearing/{day}", 404),
        ("get", f"/api/v1/operators/qd%00metro/clearing/{day}", 404),
        ("get", f"/api/v1/operators/qd%00metro/clearing/{day}/trips.csv", 404),
        ("get", "/api/v1/status/city%00transit", 404),
    ):
        response = getattr(client, method)(path, headers=bearer(admin))
        assert response.status_code == status, (path, response.json)
    sign_in(client, residents(app)[0])
    assert client.delete("/api/v1/me/ride/devices/ab%00cd").status_code == 404
    client.post("/api/v1/me/ride/challenge")
    assert client.post("/api/v1/me/ride/devices/ab%00cd/credential", json={"proof": "AA"}).status_code == 404


# -- one code, one charge: a code brought back under another record id ------------------------------------------------
def _bus_ride(gate_id: str = "bus-301-a", **overrides) -> dict[str, Any]:
    fields = {"operator": "qd-bus", "scene": "bus", "station": None, "line": "301", "direction": None,
              "gate_id": gate_id, "account": "aaaaaaaaaaaaaaaa", "card_type": "adult", "at": yesterday_noon()}
    return _record(**{**fields, **overrides})


def _copy(record: dict[str, Any], **overrides) -> dict[str, Any]:
    """The same scan, code and all, under a record id of its own: what a gate's key can make of one ride."""
    return {**record, "record_id": uuid.uuid4().hex, **overrides}


def _clear(client, admin: str, operator: str, at: float) -> dict[str, Any]:
    response = client.post(f"/api/v1/operators/{operator}/clearing/{service_day(at)}", headers=bearer(admin))
    assert response.status_code == 200, response.json
    return response.json


def test_a_ride_code_reuploaded_under_a_new_record_id_is_charged_once_and_answered_duplicate(app, client):
    gate, admin = client_key(app, "device", operator="qd-bus"), client_key(app, "admin")
    ride = _bus_ride()
    assert upload(client, gate, [ride]).json["stored"] == [ride["record_id"]]
    copy = _copy(ride, at=ride["at"] + 5)
    answer = upload(client, gate, [copy]).json
    # held, so that the gate marks it sent, and said to be a copy of the charged record
    assert (answer["stored"], answer["duplicates"], answer["rejected"]) == ([], [copy["record_id"]], [])
    assert answer["code_duplicates"] == [{"record_id": copy["record_id"], "duplicate_of": ride["record_id"]}]
    # delivered again (the answer was lost), the copy is answered the same way, and still held once
    assert upload(client, gate, [copy]).json == answer
    statement = _clear(client, admin, "qd-bus", ride["at"])
    assert (statement["trips"], statement["charged_total"], statement["by_status"]) == (1, 300, {"ride": 1})
    assert (statement["records"], statement["duplicates"]) == (1, 1)


@pytest.mark.parametrize("kind", ["ride", "id"])
def test_a_code_brought_back_by_another_gate_batch_or_operator_is_never_charged_again(app, client, kind):
    bus_a, bus_b = client_key(app, "device", operator="qd-bus"), client_key(app, "device", operator="qd-bus")
    metro, admin = client_key(app, "device", operator="qd-metro"), client_key(app, "admin")
    pid = residents(app)[2]
    if kind == "id":
        sign_in(client, pid)  # the resident's transit account, which an identity code is billed to
        client.get("/api/v1/me/ride")
        ride = _bus_ride(kind="id", account=pid, card_type=None, fare_limit=None, credential_id=None)
    else:
        ride = _bus_ride()
    same_batch = _copy(ride, gate_id="bus-301-b")
    first = upload(client, bus_a, [ride, same_batch]).json
    assert (first["stored"], first["duplicates"]) == ([ride["record_id"]], [same_batch["record_id"]])
    assert first["code_duplicates"] == [{"record_id": same_batch["record_id"], "duplicate_of": ride["record_id"]}]
    other_gate = _copy(ride, gate_id="bus-11-c", line="11")
    second = upload(client, bus_b, [other_gate]).json
    assert (second["stored"], second["duplicates"]) == ([], [other_gate["record_id"]])
    assert second["code_duplicates"] == [{"record_id": other_gate["record_id"], "duplicate_of": ride["record_id"]}]
    # another operator's gate: still a copy, never charged, but not told which record of qd-bus holds the code
    at_metro = _copy(ride, operator="qd-metro", scene="metro-gate", gate_id="g-101", station="101", line=None,
                     direction="in")
    third = upload(client, metro, [at_metro]).json
    assert (third["stored"], third["duplicates"]) == ([], [at_metro["record_id"]])
    assert third["code_duplicates"] == [{"record_id": at_metro["record_id"], "duplicate_of": None}]
    bus = _clear(client, admin, "qd-bus", ride["at"])
    assert (bus["records"], bus["trips"], bus["duplicates"]) == (1, 1, 2)
    if kind == "ride":
        assert bus["charged_total"] == 300
    assert bus["charged_total"] == sum(t["charged"] for t in bus["by_card_type"].values())
    metro_day = _clear(client, admin, "qd-metro", ride["at"])
    assert (metro_day["records"], metro_day["trips"], metro_day["charged_total"], metro_day["duplicates"]) == (
        0, 0, 0, 1)


def test_the_operator_sees_a_copy_of_a_charged_code_among_its_records(app, client):
    gate, operator = client_key(app, "device", operator="qd-bus"), client_key(app, "operator", operator="qd-bus")
    metro, metro_staff = client_key(app, "device", operator="qd-metro"), client_key(app, "operator",
                                                                                    operator="qd-metro")
    ride = _bus_ride()
    copy = _copy(ride, gate_id="bus-301-b")
    at_metro = _copy(ride, operator="qd-metro", scene="metro-gate", gate_id="g-101", station="101", line=None,
                     direction="in")
    upload(client, gate, [ride, copy])
    upload(client, metro, [at_metro])
    day = service_day(ride["at"])
    listed = {r["record_id"]: r for r in client.get(f"/api/v1/operators/qd-bus/records?day={day}",
                                                    headers=bearer(operator)).json["records"]}
    assert set(listed) == {ride["record_id"], copy["record_id"]}  # kept, not dropped
    assert (listed[ride["record_id"]]["duplicate"], listed[ride["record_id"]]["duplicate_of"]) == (False, None)
    assert (listed[copy["record_id"]]["duplicate"], listed[copy["record_id"]]["duplicate_of"]) == (
        True, ride["record_id"])
    assert listed[copy["record_id"]]["accepted"] is True  # what the gate decided, as it decided it
    (other,) = client.get(f"/api/v1/operators/qd-metro/records?day={day}", headers=bearer(metro_staff)).json["records"]
    assert (other["record_id"], other["duplicate"], other["duplicate_of"]) == (at_metro["record_id"], True, None)


def test_the_sdk_uploader_counts_a_copy_of_a_charged_code_delivered_and_never_sends_it_again(app, client, tmp_path):
    phone, gate = _phone_and_entry_gate(app, client, tmp_path)
    assert gate.scan(phone.code()).record
    (record,) = gate.store.records()
    record.pop("upload_state")
    gate.store.add_record(_copy(record))  # the gate's store holds the code twice
    key = client_key(app, "device", operator="qd-metro")

    def post(url, body, device_key):
        response = client.post("/" + url.split("/", 3)[3], json=body, headers=bearer(device_key))
        return response.status_code, response.json

    report = Uploader(gate.store, "http://citycode.test", key, post=post).upload()
    assert (report.stored, report.duplicates, report.rejected, report.errors) == (1, 1, 0, [])
    assert gate.store.counts()["sent"] == 2 and not gate.store.pending()


def test_concurrent_uploads_of_one_code_under_two_record_ids_charge_it_once(app, monkeypatch):
    """The second upload reaches its insert while the first, which took the code, has not committed: the unique
    code key makes it wait, then skip the row, which goes in again as a copy of the first."""
    import threading

    from codeservice.clients.service import add_api_client as add
    from codeservice.transit import service as transit

    services = app.extensions["citycode"]
    with services.db.session() as s:
        gates = [add(s, f"bus {n}", "device", operator="qd-bus")[0] for n in range(2)]
        s.flush()
        for gate_client in gates:
            s.expunge(gate_client)
    ride = _bus_ride()
    copy = _copy(ride, gate_id="bus-301-b")
    answers: dict[str, Any] = {}
    inserting, rounds = threading.Event(), []
    real_insert = transit._insert_new

    def insert_new(session, rows):
        if threading.current_thread().name == "second":
            rounds.append([r["duplicate_of"] for r in rows])
            inserting.set()
        return real_insert(session, rows)

    monkeypatch.setattr(transit, "_insert_new", insert_new)

    def second() -> None:
        with services.db.session() as s:
            answers["second"] = transit.ingest_records(s, gates[1], [copy], time.time(), services.evidence_verifier())

    with services.db.session() as s:
        answers["first"] = transit.ingest_records(s, gates[0], [ride], time.time(), services.evidence_verifier())
        thread = threading.Thread(target=second, name="second")
        thread.start()
        assert inserting.wait(30)
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for this transaction
    thread.join(30)
    assert answers["first"].stored == [ride["record_id"]]
    assert answers["second"].stored == [] and answers["second"].duplicates == [copy["record_id"]]
    assert answers["second"].code_duplicates == [{"record_id": copy["record_id"], "duplicate_of": ride["record_id"]}]
    assert rounds == [[None], [ride["record_id"]]]  # skipped as a second original, then stored as the copy

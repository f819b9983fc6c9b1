"""Certificate administration and yes/no checks (核验) over HTTP, on every storage and state combination:
real keys, real codes, real API keys."""

from __future__ import annotations

import datetime as dt
import json
import re

import jwt
import pytest
from sqlalchemy import func, select

from codeservice.certificates.models import Certificate, CheckRecord
from codeservice.certificates.service import certificates_of, show_code
from codeservice.clients.models import ApiClient
from codeservice.clients.service import add_api_client
from codeservice.demo import DEMO_COMPANY
from codeservice.identity.residents import get_resident, list_residents
from sdk import TrustList, load_anchor
from sdk.certid import CertificateId, uscc_check
from sdk.citytime import city_today
from sdk.keys import b64u_decode
from sdk.statuslist import StatusList

NEW_ORG = "12370200MB0012345"
NEW_ORG += uscc_check(NEW_ORG)

TRANSPORT_TYPE = {
    "code": "JTYH",
    "name": "Transport concession card",
    "department": "transport-bureau",
    "holder_kind": "resident",
    "validity_days": 730,
    "fields": [{"name": "name", "label": "Name", "type": "text"},
               {"name": "birth_date", "label": "Date of birth", "type": "date"},
               {"name": "student", "label": "Student", "type": "bool"},
               {"name": "rides_per_month", "type": "int", "disclosable": False}],
    "predicates": [{"field": "birth_date", "op": "age_over", "value": 18, "label": "adult"}],
}


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture
def services(app):
    return app.extensions["citycode"]


@pytest.fixture
def keys(services) -> dict[str, str]:
    with services.db.session() as s:
        _, admin = add_api_client(s, "City administration", "admin")
        _, elderly = add_api_client(s, "Scenic site ticket office", "verifier", ["LNYD", "SPJY"],
                                    ["age_over_60", "age_over_70", "catering"])
        _, narrow = add_api_client(s, "Corner shop", "verifier", ["SPJY"], [])
    return {"admin": admin, "verifier": elderly, "narrow": narrow}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


#: Every yes/no check states why it asks; the checks here state this one unless they say otherwise.
CHECK_PURPOSE = "senior discount at the ticket office"


def post(client, url: str, body, key: str | None):
    headers = bearer(key) if key else {}
    if url == "/api/v1/checks" and isinstance(body, dict) and "purpose" not in body and body:
        body = {**body, "purpose": CHECK_PURPOSE}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", headers=headers)


def residents(services):
    with services.db.session() as s:
        return [r.pid for r in list_residents(s)]


def cert_of(services, holder: str, type_code: str) -> Certificate:
    with services.db.session() as s:
        return next(c for c in certificates_of(s, holder) if c.type_code == type_code)


def check_records(services) -> list[CheckRecord]:
    with services.db.session() as s:
        return list(s.scalars(select(CheckRecord).order_by(CheckRecord.id)))


def trust_of(client) -> TrustList:
    anchor = load_anchor(client.get("/api/v1/trust-anchor").data)
    return TrustList.load(client.get("/api/v1/trust-list").get_data(as_text=True), anchor)


def status_of(client, department: str, index: int) -> int:
    response = client.get(f"/api/v1/status/{department}")
    assert response.status_code == 200 and response.mimetype == "application/statuslist+jwt"
    return StatusList.load(response.get_data(as_text=True), trust_of(client)).status(index)


def wrong_check_character(cert_id: str) -> str:
    last = cert_id[-1]
    return cert_id[:-1] + ("0" if last != "0" else "1")


def set_status(client, key: str, cert_id: str, status: str):
    return post(client, f"/api/v1/admin/certificates/{cert_id}/status", {"status": status}, key)


# -- the admin flow --------------------------------------------------------------------------------
def test_admin_creates_a_department_a_type_and_a_certificate_then_suspends_reinstates_revokes(
        app, client, services, keys):
    admin = keys["admin"]
    response = post(client, "/api/v1/admin/departments",
                    {"id": "transport-bureau", "name": "City Transport Bureau", "org_code": NEW_ORG}, admin)
    assert response.status_code == 201, response.json
    assert response.json == {"id": "transport-bureau", "name": "City Transport Bureau", "org_code": NEW_ORG}

    response = post(client, "/api/v1/admin/cert-types", TRANSPORT_TYPE, admin)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["code"] == "JTYH" and created["department"] == "transport-bureau"
    assert created["validity_days"] == 730 and created["holder_kind"] == "resident"
    assert [f["name"] for f in created["fields"]] == ["name", "birth_date", "student", "rides_per_month"]
    assert created["fields"][3]["disclosable"] is False
    assert created["predicates"][0]["name"] == "age_over_18"

    # the new department is an issuer in the trust list, trusted for its new type
    keys_of = [k for k in trust_of(client).keys.values() if k.issuer == "transport-bureau"]
    assert len(keys_of) == 1 and "cert" in keys_of[0].kinds and keys_of[0].cert_types == {"JTYH"}

    holder = residents(services)[2]
    response = post(client, "/api/v1/admin/certificates",
                    {"type": "JTYH", "holder": holder, "number": "JT-0001",
                     "fields": {"name": "Zhang Min", "birth_date": "2007-06-30", "student": "yes",
                                "rides_per_month": "60"}}, admin)
    assert response.status_code == 201, response.json
    cert = response.json
    ident = CertificateId.parse(cert["id"])
    assert ident.type_code == "JTYH" and ident.issuer_code == NEW_ORG
    today = city_today()
    assert cert == {
        "id": cert["id"], "type": "JTYH", "department": "transport-bureau", "number": "JT-0001", "holder": holder,
        "holder_kind": "resident", "issued_on": today.isoformat(), "valid_from": today.isoformat(),
        "valid_until": (today + dt.timedelta(days=730)).isoformat(), "status": "valid",
        "fields": {"name": "Zhang Min", "birth_date": "2007-06-30", "student": True, "rides_per_month": 60},
    }
    shown = client.get(f"/api/v1/admin/certificates/{cert['id']}", headers=bearer(admin))
    assert shown.status_code == 200 and shown.json == cert

    with services.db.session() as s:
        index = s.get(Certificate, cert["id"]).status_index
    assert status_of(client, "transport-bureau", index) == 0

    response = set_status(client, admin, cert["id"], "suspended")
    assert response.status_code == 200 and response.json["status"] == "suspended"
    assert status_of(client, "transport-bureau", index) == 2

    response = set_status(client, admin, cert["id"], "valid")
    assert response.status_code == 200 and response.json["status"] == "valid"
    assert status_of(client, "transport-bureau", index) == 0

    response = set_status(client, admin, cert["id"], "revoked")
    assert response.status_code == 200 and response.json["status"] == "revoked"
    assert status_of(client, "transport-bureau", index) == 1

    for status in ("valid", "suspended"):
        response = set_status(client, admin, cert["id"], status)
        assert response.status_code == 409 and response.json["error"] == "conflict", status
    assert set_status(client, admin, cert["id"], "revoked").status_code == 200  # revoking again is harmless
    assert client.get(f"/api/v1/admin/certificates/{cert['id']}", headers=bearer(admin)).json["status"] == "revoked"
    assert status_of(client, "transport-bureau", index) == 1


def test_status_list_of_a_demo_department_follows_each_change(client, services, keys):
    cert = cert_of(services, DEMO_COMPANY, "YYZZ")
    assert status_of(client, "market-regulation", cert.status_index) == 0
    for status, value in (("suspended", 2), ("valid", 0), ("revoked", 1)):
        assert set_status(client, keys["admin"], cert.id, status).status_code == 200
        assert status_of(client, "market-regulation", cert.status_index) == value
    assert client.get("/api/v1/status/no-such-department").status_code == 404


def test_existing_department_type_and_org_code_are_conflicts(client, keys):
    admin = keys["admin"]
    body = {"id": "transport-bureau", "name": "City Transport Bureau", "org_code": NEW_ORG}
    assert post(client, "/api/v1/admin/departments", body, admin).status_code == 201
    cases = [
        ("/api/v1/admin/departments", body),
        ("/api/v1/admin/departments", {**body, "id": "other-bureau"}),  # org code taken
        ("/api/v1/admin/departments", {**body, "id": "civil-affairs"}),
        ("/api/v1/admin/departments", {**body, "id": "city-id"}),  # an issuer that is no department
        ("/api/v1/admin/departments", {**body, "id": "city-checks"}),
        ("/api/v1/admin/cert-types", {**TRANSPORT_TYPE, "code": "LNYD"}),
    ]
    for url, case in cases:
        response = post(client, url, case, admin)
        assert response.status_code == 409 and response.json["error"] == "conflict", (case, response.json)


# -- authentication and roles ------------------------------------------------------------------------
ADMIN_CALLS = [
    ("POST", "/api/v1/admin/departments"),
    ("POST", "/api/v1/admin/cert-types"),
    ("POST", "/api/v1/admin/certificates"),
    ("GET", "/api/v1/admin/certificates/1.2.156.3005.2.LNYD.X.1.1.X"),
    ("POST", "/api/v1/admin/certificates/1.2.156.3005.2.LNYD.X.1.1.X/status"),
    ("POST", "/api/v1/admin/residents/aaaaaaaaaaaaaaaa/freeze"),
    ("POST", "/api/v1/admin/residents/aaaaaaaaaaaaaaaa/unfreeze"),
]


def test_without_a_valid_key_every_endpoint_is_401_and_with_the_wrong_role_403(client, keys):
    for method, url in [*ADMIN_CALLS, ("POST", "/api/v1/checks")]:
        for headers in ({}, bearer("cc_a_not-a-real-key"), {"Authorization": f"Basic {keys['admin']}"},
                        {"Authorization": "Bearer "}):
            response = client.open(url, method=method, data="{}", content_type="application/json", headers=headers)
            assert response.status_code == 401, (url, headers)
            assert response.json["error"] == "unauthorised" and response.json["message"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for method, url in ADMIN_CALLS:
        response = client.open(url, method=method, data="{}", content_type="application/json",
                               headers=bearer(keys["verifier"]))
        assert response.status_code == 403 and response.json["error"] == "forbidden", url
    response = post(client, "/api/v1/checks", {"subject": DEMO_COMPANY, "type": "SPJY"}, keys["admin"])
    assert response.status_code == 403 and response.json["error"] == "forbidden"


# -- malformed input ---------------------------------------------------------------------------------
def assert_refused(response, status: int, error: str, context) -> None:
    assert response.status_code == status, (context, response.status_code, response.get_data(as_text=True))
    assert response.json["error"] == error and response.json["message"], (context, response.json)


COMMON_MALFORMED = [
    ("not json", 400, "invalid_json"),
    (b"\xff\xfe\x00", 400, "invalid_json"),
    ("[1, 2]", 400, "invalid_body"),
    ('"text"', 400, "invalid_body"),
    ("{}", 400, "invalid_body"),
    ('{"a": NaN}', 400, "invalid_json"),
]


def test_malformed_department_bodies_get_400_or_422_with_a_reason(client, keys):
    good = {"id": "transport-bureau", "name": "City Transport Bureau", "org_code": NEW_ORG}
    cases = [*COMMON_MALFORMED,
             ({**good, "extra": 1}, 400, "invalid_body"),
             ({"name": "x", "org_code": NEW_ORG}, 400, "invalid_body"),
             ({**good, "id": 7}, 400, "invalid_body"),
             ({**good, "id": ["a"]}, 400, "invalid_body"),
             ({**good, "name": None}, 400, "invalid_body"),
             ({**good, "name": ""}, 400, "invalid_body"),
             ({**good, "name": "x" * 201}, 400, "invalid_body"),
             ({**good, "name": "Bureau\x00"}, 400, "invalid_body"),
             ({**good, "org_code": 12}, 400, "invalid_body"),
             ({**good, "id": "Transport Bureau"}, 400, "invalid_value"),
             ({**good, "id": "-x"}, 400, "invalid_value"),
             ({**good, "org_code": NEW_ORG[:-1] + ("0" if NEW_ORG[-1] != "0" else "1")}, 422, "invalid_value"),
             ({**good, "org_code": "12370200MB00123"}, 400, "invalid_value"),
             ({**good, "org_code": "IIIIIIIIIIIIIIIIII"}, 400, "invalid_value"),
             ({**good, "org_code": "x" * 19}, 400, "invalid_body")]
    for body, status, error in cases:
        assert_refused(post(client, "/api/v1/admin/departments", body, keys["admin"]), status, error, body)
    response = client.post("/api/v1/admin/departments", data=json.dumps(good), content_type="text/plain",
                           headers=bearer(keys["admin"]))
    assert_refused(response, 415, "unsupported_media_type", "text/plain")
    assert post(client, "/api/v1/admin/departments", good, keys["admin"]).status_code == 201


def test_malformed_cert_type_bodies_get_400_or_422_with_a_reason(client, keys):
    good = {**TRANSPORT_TYPE, "department": "civil-affairs"}
    field = TRANSPORT_TYPE["fields"][0]
    cases = [*COMMON_MALFORMED,
             ({**good, "extra": 1}, 400, "invalid_body"),
             ({k: v for k, v in good.items() if k != "fields"}, 400, "invalid_body"),
             ({**good, "code": 5}, 400, "invalid_body"),
             ({**good, "name": {"a": 1}}, 400, "invalid_body"),
             ({**good, "fields": "name"}, 400, "invalid_body"),
             ({**good, "fields": ["name"]}, 400, "invalid_body"),
             ({**good, "fields": [{**field, "disclosable": "no"}]}, 400, "invalid_body"),
             ({**good, "fields": [{**field, "label": 3}]}, 400, "invalid_body"),
             ({**good, "predicates": {"a": 1}}, 400, "invalid_body"),
             ({**good, "predicates": [{"field": "birth_date", "op": "age_over", "value": 18, "name": 4}]},
              400, "invalid_body"),
             ({**good, "validity_days": "365"}, 400, "invalid_body"),
             ({**good, "validity_days": 365.5}, 400, "invalid_body"),
             ({**good, "validity_days": True}, 400, "invalid_body"),
             ({**good, "validity_days": 0}, 400, "invalid_value"),
             ({**good, "department": "no-such-office"}, 422, "unknown_department"),
             ({**good, "code": "jtyh"}, 400, "invalid_value"),
             ({**good, "holder_kind": "animal"}, 400, "invalid_value"),
             ({**good, "fields": []}, 400, "invalid_value"),
             ({**good, "fields": [field, field]}, 422, "invalid_value"),
             ({**good, "fields": [{**field, "type": "float"}]}, 400, "invalid_value"),
             ({**good, "fields": [{**field, "type": ["text"]}]}, 400, "invalid_value"),
             ({**good, "fields": [{**field, "name": "Bad Name"}]}, 400, "invalid_value"),
             ({**good, "predicates": [{"field": "name", "op": "age_over", "value": 18}]}, 422, "invalid_value"),
             ({**good, "predicates": [{"field": "birth_date", "op": "age_over", "value": 1.5}]}, 400,
              "invalid_value"),
             ({**good, "predicates": [{"field": "birth_date", "op": "sum", "value": 18}]}, 400, "invalid_value")]
    for body, status, error in cases:
        assert_refused(post(client, "/api/v1/admin/cert-types", body, keys["admin"]), status, error, body)
    assert post(client, "/api/v1/admin/cert-types", good, keys["admin"]).status_code == 201


def test_malformed_certificate_bodies_get_400_or_422_with_a_reason(client, services, keys):
    pid = residents(services)[1]
    lnyd = {"type": "LNYD", "holder": pid, "fields": {"name": "Wang Fang", "birth_date": "1988-11-02",
                                                       "gender": "female"}}
    spjy = {"type": "SPJY", "holder": DEMO_COMPANY,
            "fields": {"company_name": "Tea House", "operating_items": "Tea", "address": "1 Road", "catering": False}}
    other_company = "91370200MA3C8N2K2"
    other_company += uscc_check(other_company)
    cases = [*COMMON_MALFORMED,
             ({**lnyd, "extra": 1}, 400, "invalid_body"),
             ({"type": "LNYD", "holder": pid}, 400, "invalid_body"),
             ({**lnyd, "type": None}, 400, "invalid_body"),
             ({**lnyd, "holder": 42}, 400, "invalid_body"),
             ({**lnyd, "fields": ["name"]}, 400, "invalid_body"),
             ({**lnyd, "number": 7}, 400, "invalid_body"),
             ({**lnyd, "number": "N" * 65}, 400, "invalid_body"),
             ({**lnyd, "type": "NOPE"}, 422, "unknown_type"),
             ({**lnyd, "holder": "aaaaaaaaaaaaaaaa"}, 422, "unknown_holder"),
             ({**lnyd, "holder": "not a resident"}, 422, "unknown_holder"),
             ({**spjy, "holder": pid}, 422, "invalid_value"),
             ({**spjy, "holder": DEMO_COMPANY[:-1] + ("0" if DEMO_COMPANY[-1] != "0" else "1")}, 422,
              "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "birth_date": "1988-13-02"}}, 422, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "birth_date": 19881102}}, 422, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "name": ""}}, 422, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "name": None}}, 400, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "name": ["Wang"]}}, 400, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "name": "x" * 501}}, 422, "invalid_value"),
             ({**lnyd, "fields": {**lnyd["fields"], "name": "Wang\x00Fang"}}, 400, "invalid_body"),
             ({**lnyd, "fields": {**lnyd["fields"], "shoe_size": "42"}}, 422, "invalid_value"),
             ({**lnyd, "fields": {"name": "Wang Fang"}}, 422, "invalid_value"),
             ({**spjy, "fields": {**spjy["fields"], "catering": "perhaps"}}, 422, "invalid_value"),
             ({**spjy, "fields": {**spjy["fields"], "catering": 0.5}}, 400, "invalid_value")]
    for body, status, error in cases:
        assert_refused(post(client, "/api/v1/admin/certificates", body, keys["admin"]), status, error, body)
    response = post(client, "/api/v1/admin/certificates", {**spjy, "holder": other_company}, keys["admin"])
    assert response.status_code == 201 and response.json["fields"]["catering"] is False
    response = post(client, "/api/v1/admin/certificates", lnyd, keys["admin"])
    assert response.status_code == 201 and response.json["holder"] == pid


def test_certificate_ids_with_a_wrong_check_character_are_422_and_unknown_ones_404(client, services, keys):
    admin = keys["admin"]
    cert = cert_of(services, residents(services)[0], "LNYD")
    wrong = wrong_check_character(cert.id)
    for response in (client.get(f"/api/v1/admin/certificates/{wrong}", headers=bearer(admin)),
                     set_status(client, admin, wrong, "revoked")):
        assert_refused(response, 422, "invalid_identifier", wrong)
        assert "check character" in response.json["message"]
    for bad in ("LNYD-1", "1.2.156.3005.2.LNYD.X", "1.2.156.3005.2.lnyd.X.1.1.X"):
        assert_refused(client.get(f"/api/v1/admin/certificates/{bad}", headers=bearer(admin)), 400,
                       "invalid_identifier", bad)
    ident = CertificateId.parse(cert.id)
    unknown = str(CertificateId.build(ident.type_code, ident.issuer_code, "99999999", 1))
    assert_refused(client.get(f"/api/v1/admin/certificates/{unknown}", headers=bearer(admin)), 404, "not_found",
                   unknown)
    assert_refused(set_status(client, admin, unknown, "revoked"), 404, "not_found", unknown)
    for body in ({"status": "lost"}, {"status": 1}, {}, {"status": "valid", "why": "x"}):
        assert_refused(post(client, f"/api/v1/admin/certificates/{cert.id}/status", body, admin), 400,
                       "invalid_body", body)
    assert client.get(f"/api/v1/admin/certificates/{cert.id}", headers=bearer(admin)).json["status"] == "valid"


# -- freezing a resident ---------------------------------------------------------------------------------
def sign_in(client, pid: str) -> None:
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/signin/dev", data={"csrf": csrf, "resident": pid})
    assert response.status_code == 302


def test_freezing_a_resident_stops_their_codes_and_unfreezing_restores_them(client, services, keys):
    pid = residents(services)[0]
    sign_in(client, pid)
    assert client.get("/api/v1/me/code").status_code == 200
    code = services.issue_identity_code(pid)

    response = post(client, f"/api/v1/admin/residents/{pid}/freeze", None, keys["admin"])
    assert response.status_code == 200 and response.json == {"id": pid, "frozen": True}
    with services.db.session() as s:
        assert get_resident(s, pid).frozen is True
    assert client.get("/api/v1/me/code").status_code == 403
    # a code already on the phone is refused by online checks
    response = post(client, "/api/v1/checks", {"code": code, "type": "LNYD", "predicate": "age_over_60"},
                    keys["verifier"])
    assert_refused(response, 422, "code_refused", "frozen")
    assert "frozen" in response.json["message"] and check_records(services) == []

    response = post(client, f"/api/v1/admin/residents/{pid}/unfreeze", None, keys["admin"])
    assert response.status_code == 200 and response.json == {"id": pid, "frozen": False}
    assert client.get("/api/v1/me/code").status_code == 200
    response = post(client, "/api/v1/checks", {"code": code, "type": "LNYD", "predicate": "age_over_60"},
                    keys["verifier"])
    assert response.status_code == 200 and response.json["answer"] is True

    for unknown in ("aaaaaaaaaaaaaaaa", "NOT-A-PID"):
        assert_refused(post(client, f"/api/v1/admin/residents/{unknown}/freeze", None, keys["admin"]), 404,
                       "not_found", unknown)


# -- yes/no checks -------------------------------------------------------------------------------------
def check_call(client, key: str, **body):
    return post(client, "/api/v1/checks", body, key)


def body_without_receipt(response) -> str:
    """The response body with the receipt's base64 left out (its decoded claims are checked apart)."""
    return json.dumps({k: v for k, v in response.json.items() if k != "receipt"}, ensure_ascii=False)


def receipt_claims(client, receipt: str) -> dict:
    header = jwt.get_unverified_header(receipt)
    assert header["typ"] == "checkreceipt+jwt" and header["alg"] == "ES256"
    key = trust_of(client).get(b64u_decode(header["kid"]))
    assert key is not None and key.issuer == "city-checks" and "receipt" in key.kinds
    return jwt.decode(receipt, key.public_key, algorithms=["ES256"])


def test_elderly_resident_is_over_60_and_the_younger_one_is_not(client, services, keys):
    elder, adult = residents(services)[:2]
    elder_cert = cert_of(services, elder, "LNYD")
    before = dt.datetime.now(dt.UTC).timestamp()

    response = check_call(client, keys["verifier"], code=services.issue_identity_code(elder), type="LNYD",
                          predicate="age_over_60")
    assert response.status_code == 200, response.json
    assert set(response.json) == {"answer", "receipt_id", "receipt"}
    assert response.json["answer"] is True
    assert response.headers["Cache-Control"] == "no-store"
    claims = receipt_claims(client, response.json["receipt"])
    assert claims == {"iss": "city-checks", "jti": response.json["receipt_id"], "iat": claims["iat"], "sub": elder,
                      "type": "LNYD", "predicate": "age_over_60", "purpose": CHECK_PURPOSE, "answer": True,
                      "verifier": "Scenic site ticket office"}
    assert before - 1 <= claims["iat"] <= dt.datetime.now(dt.UTC).timestamp() + 1

    # none of the certificate's field values leaves the service, in the body or in the receipt
    text = body_without_receipt(response) + json.dumps(claims)
    for value in elder_cert.fields.values():
        assert str(value) not in text
    assert "1952" not in text and "Li Wei" not in text

    no = check_call(client, keys["verifier"], code=services.issue_identity_code(adult), type="LNYD",
                    predicate="age_over_60")
    assert no.status_code == 200 and no.json["answer"] is False
    assert receipt_claims(client, no.json["receipt"])["answer"] is False
    over_70 = check_call(client, keys["verifier"], code=services.issue_identity_code(elder), type="LNYD",
                         predicate="age_over_70")
    assert over_70.json["answer"] is True
    holds = check_call(client, keys["verifier"], code=services.issue_identity_code(elder), type="LNYD")
    assert holds.json["answer"] is True and receipt_claims(client, holds.json["receipt"])["predicate"] is None

    records = check_records(services)
    assert [(r.subject, r.cert_type, r.predicate, r.answer) for r in records] == [
        (elder, "LNYD", "age_over_60", True), (adult, "LNYD", "age_over_60", False),
        (elder, "LNYD", "age_over_70", True), (elder, "LNYD", None, True)]
    assert [r.receipt_id for r in records] == [response.json["receipt_id"], no.json["receipt_id"],
                                               over_70.json["receipt_id"], holds.json["receipt_id"]]
    assert len({r.client_id for r in records}) == 1


def test_company_food_licence_with_catering_until_it_is_revoked(client, services, keys):
    response = check_call(client, keys["verifier"], subject=DEMO_COMPANY, type="SPJY", predicate="catering")
    assert response.status_code == 200 and response.json["answer"] is True
    claims = receipt_claims(client, response.json["receipt"])
    assert claims["sub"] == DEMO_COMPANY and claims["answer"] is True and claims["predicate"] == "catering"
    licence = cert_of(services, DEMO_COMPANY, "SPJY")
    text = body_without_receipt(response) + json.dumps(claims)
    for value in licence.fields.values():
        if isinstance(value, str):
            assert value not in text

    # the company can also be named by a certificate code it shows (its business licence)
    with services.db.session() as s:
        business = cert_of(services, DEMO_COMPANY, "YYZZ")
        shown = show_code(s, services.keyring, business, ["company_name"], lifetime=60)
    response = check_call(client, keys["narrow"], code=shown, type="SPJY")
    assert response.status_code == 200 and response.json["answer"] is True
    assert receipt_claims(client, response.json["receipt"])["verifier"] == "Corner shop"

    assert set_status(client, keys["admin"], licence.id, "suspended").status_code == 200
    response = check_call(client, keys["verifier"], subject=DEMO_COMPANY, type="SPJY", predicate="catering")
    assert response.status_code == 200 and response.json["answer"] is False
    assert set_status(client, keys["admin"], licence.id, "valid").status_code == 200
    assert check_call(client, keys["narrow"], subject=DEMO_COMPANY, type="SPJY").json["answer"] is True
    assert set_status(client, keys["admin"], licence.id, "revoked").status_code == 200
    response = check_call(client, keys["verifier"], subject=DEMO_COMPANY, type="SPJY", predicate="catering")
    assert response.status_code == 200 and response.json["answer"] is False
    assert receipt_claims(client, response.json["receipt"])["answer"] is False

    answers = [(r.subject, r.cert_type, r.predicate, r.answer) for r in check_records(services)]
    assert answers == [(DEMO_COMPANY, "SPJY", "catering", True), (DEMO_COMPANY, "SPJY", None, True),
                       (DEMO_COMPANY, "SPJY", "catering", False), (DEMO_COMPANY, "SPJY", None, True),
                       (DEMO_COMPANY, "SPJY", "catering", False)]


def test_a_verifier_asking_beyond_its_allowance_gets_403_and_no_check_is_made(client, services, keys):
    elder = residents(services)[0]
    cases = [
        (keys["narrow"], {"code": services.issue_identity_code(elder), "type": "LNYD", "predicate": "age_over_60"}),
        (keys["narrow"], {"subject": DEMO_COMPANY, "type": "SPJY", "predicate": "catering"}),
        (keys["verifier"], {"subject": DEMO_COMPANY, "type": "YYZZ"}),
        (keys["verifier"], {"code": services.issue_identity_code(elder), "type": "LNYD",
                            "predicate": "age_over_65"}),
        (keys["verifier"], {"code": "not even a code", "type": "CJRZ"}),  # refused before the code is looked at
    ]
    for key, body in cases:
        response = post(client, "/api/v1/checks", body, key)
        assert_refused(response, 403, "forbidden", body)
        assert "not allowed" in response.json["message"]
        assert set(response.json) == {"error", "message"}
    assert check_records(services) == []


def test_malformed_or_unusable_checks_get_400_or_422_with_a_reason_and_no_check_is_made(client, services, keys):
    elder, adult = residents(services)[:2]
    code = services.issue_identity_code(elder)
    future = services.issue_identity_code(elder, now=dt.datetime.now(dt.UTC).timestamp() + 3600)
    with services.db.session() as s:
        resident_cert_code = show_code(s, services.keyring, cert_of(services, elder, "LNYD"), ["age_over_60"],
                                       lifetime=60)
    tampered = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]
    cases = [
        *[(body, status, error) for body, status, error in COMMON_MALFORMED if body != "{}"],
        ({"type": "LNYD"}, 400, "invalid_body"),
        ({"code": code, "subject": DEMO_COMPANY, "type": "SPJY"}, 400, "invalid_body"),
        ({"code": code}, 400, "invalid_body"),
        ({"code": code, "type": ["LNYD"]}, 400, "invalid_body"),
        ({"code": code, "type": "LNYD", "predicate": 60}, 400, "invalid_body"),
        ({"code": 12, "type": "LNYD"}, 400, "invalid_body"),
        ({"subject": None, "type": "SPJY"}, 400, "invalid_body"),
        ({"code": code, "type": "LNYD", "extra": True}, 400, "invalid_body"),
        ({"subject": elder, "type": "LNYD"}, 400, "invalid_subject"),  # a resident only by a scanned code
        ({"subject": "somebody", "type": "SPJY"}, 400, "invalid_subject"),
        ({"subject": DEMO_COMPANY[:-1] + ("0" if DEMO_COMPANY[-1] != "0" else "1"), "type": "SPJY"}, 422,
         "invalid_subject"),
        ({"code": resident_cert_code, "type": "LNYD"}, 422, "invalid_subject"),
        ({"code": "https://example.com", "type": "LNYD"}, 422, "code_refused"),
        ({"code": future, "type": "LNYD"}, 422, "code_refused"),
        ({"code": tampered, "type": "LNYD"}, 422, "code_refused"),
        ({"code": code, "type": "LNYD", "predicate": "catering"}, 422, "invalid_value"),  # not a predicate of LNYD
    ]
    for body, status, error in cases:
        response = post(client, "/api/v1/checks", body, keys["verifier"])
        assert_refused(response, status, error, body)
        assert "receipt" not in response.json
    refused = post(client, "/api/v1/checks", {"code": future, "type": "LNYD"}, keys["verifier"]).json
    assert refused["message"].startswith("not_yet_valid")
    refused = post(client, "/api/v1/checks", {"code": "https://example.com", "type": "LNYD"}, keys["verifier"]).json
    assert refused["message"].startswith("not_a_citycode")
    assert check_records(services) == []
    with services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(CheckRecord)) == 0
    # the same identity code still answers a well-formed question
    assert post(client, "/api/v1/checks", {"code": code, "type": "LNYD"}, keys["verifier"]).json["answer"] is True
    assert post(client, "/api/v1/checks", {"code": services.issue_identity_code(adult), "type": "LNYD"},
                keys["verifier"]).json["answer"] is False


def test_every_check_is_in_the_access_log(app):
    from codeservice.accesslog import service as accesslog
    from codeservice.certificates.service import check
    from codeservice.clients.service import add_api_client
    from codeservice.demo import DEMO_COMPANY

    services = app.extensions["citycode"]
    with services.db.session() as s:
        client, _ = add_api_client(s, "Food safety inspector", "verifier", ["SPJY"], ["catering"])
        check(s, client, subject=DEMO_COMPANY, type_code="SPJY", predicate="catering")
        (entry,) = accesslog.entries_about(s, DEMO_COMPANY)
        assert entry.action == "check" and entry.outcome == "yes" and entry.actor_label == "Food safety inspector"
        assert entry.what == [{"type": "SPJY", "fields": ["catering"]}]


def test_refused_checks_are_in_the_access_log_for_the_auditor_and_the_resident(client, services, keys):
    from tests.test_api import sign_in

    elder = residents(services)[0]
    with services.db.session() as s:
        narrow_id = s.scalars(select(ApiClient.id).where(ApiClient.name == "Corner shop")).one()
        wide_id = s.scalars(select(ApiClient.id).where(ApiClient.name == "Scenic site ticket office")).one()
        _, auditor = add_api_client(s, "City audit office", "auditor")
    future = services.issue_identity_code(elder, now=dt.datetime.now(dt.UTC).timestamp() + 3600)
    asked = [
        (keys["narrow"], {"code": services.issue_identity_code(elder), "type": "LNYD", "predicate": "age_over_60"},
         403),
        (keys["verifier"], {"code": services.issue_identity_code(elder), "type": "LNYD", "predicate": "age_over_65"},
         403),
        (keys["verifier"], {"subject": DEMO_COMPANY, "type": "YYZZ"}, 403),
        (keys["verifier"], {"code": "not even a code", "type": "CJRZ"}, 403),
        (keys["verifier"], {"code": future, "type": "LNYD"}, 422),
        (keys["verifier"], {"code": services.issue_identity_code(elder), "type": "LNYD", "predicate": "catering"},
         422),  # allowed to the verifier, but no predicate of LNYD
    ]
    for key, body, status in asked:
        assert post(client, "/api/v1/checks", body, key).status_code == status
    assert check_records(services) == []  # no check was made

    log = client.get("/api/v1/audit/log", headers=bearer(auditor))
    assert log.status_code == 200
    seen = [(e["actor"], e["actor_label"], e["subject"], e["action"], e["what"], e["outcome"])
            for e in log.json["entries"]]
    assert seen == [
        (f"verifier:{narrow_id}", "Corner shop", elder, "check", [{"type": "LNYD", "fields": ["age_over_60"]}],
         "refused: type_not_allowed"),
        (f"verifier:{wide_id}", "Scenic site ticket office", elder, "check",
         [{"type": "LNYD", "fields": ["age_over_65"]}], "refused: predicate_not_allowed"),
        (f"verifier:{wide_id}", "Scenic site ticket office", DEMO_COMPANY, "check",
         [{"type": "YYZZ", "fields": []}], "refused: type_not_allowed"),
        (f"verifier:{wide_id}", "Scenic site ticket office", None, "check", [{"type": "CJRZ", "fields": []}],
         "refused: type_not_allowed"),  # names nobody
        (f"verifier:{wide_id}", "Scenic site ticket office", elder, "check", [{"type": "LNYD", "fields": []}],
         seen[4][5]),
        (f"verifier:{wide_id}", "Scenic site ticket office", elder, "check", [{"type": "LNYD", "fields": ["catering"]}],
         "refused: invalid_value"),
    ]
    assert seen[4][5].startswith("refused: code not_yet_valid")
    verified = client.get("/api/v1/audit/verify", headers=bearer(auditor)).json
    assert verified["ok"] is True and verified["entries"] == 6

    # The resident reads the attempts about them in plain language.
    sign_in(client, elder)
    texts = [e["text"] for e in client.get("/api/v1/me/access-log").json["entries"]]
    assert len(texts) == 4 and "refused: that is not a question about it" in texts[0]
    texts = texts[1:]
    assert texts[2].startswith("Corner shop tried to check whether you hold your elderly preferential card "
                               f"(60 or older) for {CHECK_PURPOSE}; refused: they may not ask about that certificate")
    assert all(e["purpose"] == CHECK_PURPOSE for e in log.json["entries"])  # the purpose each check stated
    assert texts[1].startswith("Scenic site ticket office tried to check whether you hold")
    assert "refused: they may not ask that question" in texts[1]
    assert "refused: the code shown was not accepted" in texts[0]
